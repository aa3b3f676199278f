"""Model families, heads, decoding and weights loaded from a local file."""

import json
import math

import numpy as np
import pytest
import torch

from vit_facemap.models import KeypointModel, ModelConfig, build_model, with_settings
from vit_facemap.models.fmnet import facemap_available
from vit_facemap.models.heads import (
    decode_radius,
    gaussian_targets,
    local_soft_argmax,
    soft_argmax,
)
from vit_facemap.models.vit import build_vit
from vit_facemap.models.weights import load_weights, save_weights

SMALL = dict(depth=1, embed_dim=32, num_heads=2, input_w=64, input_h=48, decoder_channels=8)


@pytest.mark.parametrize("kw,shape", [
    (dict(family="hybrid", stem_widths=[8, 16, 32, 64]), (12, 16)),       # stride 4 with skip
    (dict(family="hybrid", stem_widths=[8, 16, 32], skip=False, n_up=1), (12, 16)),
    (dict(family="vit", patch_size=16, n_up=2), (12, 16)),
    (dict(family="vit", patch_size=8, n_up=1), (12, 16)),
    (dict(family="cnn", timm_name="resnet18", cnn_out_index=2, n_up=0), (6, 8)),
])
def test_heatmap_models(kw, shape):
    model = build_model(ModelConfig(**{**SMALL, **kw}), 5).eval()
    out = model(torch.randn(2, 1, 48, 64))
    assert out["heatmap"].shape == (2, 5, *shape)
    assert 48 // shape[0] == model.stride


def test_regression_head_and_rgb():
    model = build_model(ModelConfig(**SMALL, family="vit", head="regression", channels=3), 4)
    out = model(torch.randn(2, 3, 48, 64))
    assert out["coords"].shape == (2, 4, 2) and out["vis"].shape == (2, 4)
    assert (out["coords"][..., 0] <= 63).all() and (out["coords"] >= 0).all()


@pytest.mark.skipif(not facemap_available(), reason="facemap not installed")
def test_fmnet_peer():
    model = build_model(ModelConfig(family="fmnet", input_w=64, input_h=48), 3)
    out = model(torch.randn(1, 1, 48, 64))
    assert out["heatmap"].shape == (1, 3, 48 // model.stride, 64 // model.stride)


def test_fmnet_refuses_input_sides_it_cannot_take():
    """FMnet halves its input four times and joins each level to the decoder's: a side not a
    multiple of 16 builds, then fails at the first forward pass."""
    from vit_facemap.models.fmnet import FMnetModel

    with pytest.raises(ValueError, match=r"FMnet input 40x48: each side must be a multiple of "
                                         r"16 \(width 40: 32 or 48\)$"):
        ModelConfig(family="fmnet", input_w=40, input_h=48)
    config = ModelConfig(family="fmnet", input_w=64, input_h=48)
    config.input_h = 8  # changed after the config's own check
    with pytest.raises(ValueError, match=r"FMnet input 64x8: .*\(height 8: 16\)$"):
        KeypointModel(config, 3)
    with pytest.raises(ValueError, match="multiple of 16"):
        FMnetModel(3, 1, (72, 48))


def test_soft_argmax_finds_a_sub_cell_peak():
    h, w = 12, 16
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    logits = -((xs - 5.3) ** 2 + (ys - 7.6) ** 2) / (2 * 0.8**2)
    logits = logits[None, None]
    xy, _ = soft_argmax(logits)
    assert torch.allclose(xy[0, 0], torch.tensor([5.3, 7.6]), atol=0.02)
    # a distant second mode pulls the global expectation but not the local one
    logits2 = torch.logaddexp(logits, -((xs - 14) ** 2 + (ys - 1) ** 2)[None, None] / 2 - 1)
    xy_local, conf = local_soft_argmax(logits2, radius=2)
    assert torch.allclose(xy_local[0, 0], torch.tensor([5.3, 7.6]), atol=0.05)
    assert 0.5 < conf.item() <= 1.0


def test_decode_window_follows_the_target_width():
    # the default sigma keeps the window measured best on real data
    assert decode_radius(0.5) == decode_radius(1.0) == 2 and decode_radius(2.0) == 4
    for sigma in (1.0, 2.0):
        worst = 0.0
        for f in np.linspace(0, 1, 11):
            c = torch.tensor([[[10 + f, 8 + f / 2]]])
            logits = torch.log(gaussian_targets(c, torch.ones(1, 1), (20, 24), sigma).clamp_min(1e-30))
            xy, _ = local_soft_argmax(logits, decode_radius(sigma))
            worst = max(worst, float((xy - c).abs().max()))
        assert worst < 0.1, (sigma, worst)  # a window of 2 cells was 0.29 cells off for sigma 2


def test_weights_from_a_local_file(tmp_path):
    """Pretrained weights from a file: timm checkpoints, this project's runs, other grids."""
    kw = dict(size="tiny", patch_size=16, input_size=(64, 64), in_chans=1, depth=1, embed_dim=32,
              num_heads=2)
    source = build_vit(**kw)
    path = save_weights(source.vit, tmp_path / "vit.safetensors")
    loaded = build_vit(**kw, weights=str(path))
    for (k, a), (_, b) in zip(source.vit.state_dict().items(), loaded.vit.state_dict().items(),
                              strict=True):
        assert torch.equal(a, b), k
    # the same file at another input size and aspect: the position embedding is resampled
    other = build_vit(**{**kw, "input_size": (96, 48)}, weights=str(path))
    assert other.vit.pos_embed.shape[1] == 1 + 6 * 3
    # from a non-square grid (the default recipe's aspect) too: the file records its grid
    wide = save_weights(build_vit(**{**kw, "input_size": (96, 64)}).vit, tmp_path / "wide.safetensors")
    assert build_vit(**{**kw, "input_size": (128, 96)}, weights=str(wide)).vit.pos_embed.shape[1] == 49
    # a published (square, no metadata) grid is read as square whatever the input's aspect
    from safetensors.torch import load_file, save_file
    from timm.layers import resample_abs_pos_embed

    sq = load_file(str(path))  # 4x4 grid, saved with metadata: drop it as timm files have none
    save_file(sq, str(tmp_path / "plain.safetensors"))
    wide_model = build_vit(**{**kw, "input_size": (128, 32)}, weights=str(tmp_path / "plain.safetensors"))
    np.testing.assert_allclose(
        wide_model.vit.pos_embed.detach(),
        resample_abs_pos_embed(sq["pos_embed"], new_size=[2, 8], old_size=[4, 4]), atol=1e-6)
    # DataParallel's module. around a run's own prefix
    save_file({f"module.{k}": v for k, v in sq.items()}, str(tmp_path / "dp.safetensors"))
    assert torch.equal(build_vit(**kw, weights=str(tmp_path / "dp.safetensors")).vit.cls_token,
                       source.vit.cls_token)
    # an RGB file into a gray model: timm's input-conv adaptation sums the colours
    rgb = build_vit(**{**kw, "in_chans": 3})
    gray = build_vit(**kw, weights=str(save_weights(rgb.vit, tmp_path / "rgb.safetensors")))
    assert torch.allclose(gray.vit.patch_embed.proj.weight[:, 0],
                          rgb.vit.patch_embed.proj.weight.sum(1))
    # a trained keypoint run's weights (backbone.vit.* plus a head) start a backbone
    hyb = build_model(ModelConfig(**SMALL, family="hybrid", stem_widths=[8, 16, 32, 64]), 3)
    run_file = save_weights(hyb, tmp_path / "hyb.safetensors")
    again = build_model(ModelConfig(**SMALL, family="hybrid", stem_widths=[8, 16, 32, 64],
                                    weights=str(run_file)), 5)
    for k, v in hyb.backbone.vit.state_dict().items():
        assert torch.equal(v, again.backbone.vit.state_dict()[k]), k
    # ... and load whole into a model of the same keypoints (prediction's path)
    same = load_weights(build_model(ModelConfig(**SMALL, family="hybrid",
                                                stem_widths=[8, 16, 32, 64]), 3), run_file)
    x = torch.randn(1, 1, 48, 64)
    assert np.allclose(hyb.eval()(x)["heatmap"].detach(), same.eval()(x)["heatmap"].detach())


@pytest.mark.parametrize("family", ["hybrid", "vit"])
def test_without_positions_a_shifted_face_shifts_the_heatmap(family):
    # the hybrid_no_pos ablation rests on this: with no learned position per token, a blob
    # moved by whole tokens on a blank frame moves the heatmap by as much (away from the
    # borders, which the stem's padding marks), as in a fully convolutional network
    torch.manual_seed(0)
    blob = torch.rand(1, 1, 24, 24)
    x = torch.zeros(2, 1, 128, 192)
    x[0, :, 32:56, 48:72] = blob
    x[1, :, 48:72, 80:104] = blob  # one token down, two right (16-pixel tokens)
    moved = {}
    for pos in (True, False):
        model = build_model(ModelConfig(family=family, depth=2, pos_embed=pos), 3).eval()
        assert (model.backbone.vit.pos_embed is not None) == pos
        with torch.no_grad():
            h = model(x)["heatmap"]
        d = 16 // model.stride
        first, second = h[0, :, 4:20, 6:30], h[1, :, 4 + d:20 + d, 6 + 2 * d:30 + 2 * d]
        moved[pos] = (first - second).abs().max().item() / first.abs().max().item()
    assert moved[False] < 1e-4
    assert moved[True] > 0.05  # learned positions make where the face sits matter


def test_weights_with_positions_start_a_model_without(tmp_path):
    kw = dict(size="tiny", patch_size=16, input_size=(64, 64), in_chans=1, depth=1, embed_dim=32,
              num_heads=2)
    source = build_vit(**kw)
    path = save_weights(source.vit, tmp_path / "vit.safetensors")
    target = build_vit(**kw, pos_embed=False, weights=str(path))
    assert target.vit.pos_embed is None
    assert torch.equal(target.vit.blocks[0].attn.qkv.weight, source.vit.blocks[0].attn.qkv.weight)
    # the other way a file lacks what the model needs, and says which
    bare = save_weights(target.vit, tmp_path / "bare.safetensors")
    with pytest.raises(ValueError, match="missing: pos_embed"):
        build_vit(**kw, weights=str(bare))


def test_weights_of_another_model_are_refused(tmp_path):
    """A file that fits only part of the backbone must not leave the rest random unnoticed."""
    from vit_facemap.errors import DataError

    kw = dict(size="tiny", patch_size=16, input_size=(64, 64), in_chans=1, embed_dim=32,
              num_heads=2)
    two = save_weights(build_vit(**kw, depth=2).vit, tmp_path / "two.safetensors")
    with pytest.raises(DataError, match=r"two.safetensors: weights do not fit.*missing: blocks\.2"):
        build_vit(**kw, depth=4, weights=str(two))
    with pytest.raises(DataError, match="not in the model: blocks.1"):
        build_vit(**kw, depth=1, weights=str(two))
    with pytest.raises(DataError, match="other shape"):
        build_vit(**{**kw, "embed_dim": 64}, depth=2, weights=str(two))
    # a ViT with register tokens (DINOv2's reg4): its 16 patch positions were read as a class
    # token and a 3x5 grid, and its register tokens dropped, without a word
    from timm.models.vision_transformer import VisionTransformer

    reg = VisionTransformer(img_size=64, patch_size=16, in_chans=1, num_classes=0, depth=2,
                            embed_dim=32, num_heads=2, reg_tokens=4, no_embed_class=True)
    reg_file = save_weights(reg, tmp_path / "reg.safetensors")
    with pytest.raises(DataError, match=r"reg.safetensors: weights do not fit.*not in the model: "
                                        r"reg_token"):
        build_vit(**kw, depth=2, weights=str(reg_file))
    with pytest.raises(DataError, match="missing.safetensors: weights file not found"):
        build_vit(**kw, depth=2, weights=str(tmp_path / "missing.safetensors"))
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(DataError, match="junk.safetensors: cannot read weights"):
        build_vit(**kw, depth=2, weights=str(tmp_path / "junk.safetensors"))
    # files torch read with weights_only and refused, with advice to unpickle them anyway:
    # timm's training checkpoint (its command line beside the weights) is plain data
    import argparse

    from safetensors.torch import load_file

    weights = load_file(str(two))
    torch.save({"epoch": 3, "state_dict": weights, "args": argparse.Namespace(lr=0.1)},
               tmp_path / "model_best.pth.tar")
    build_vit(**kw, depth=2, weights=str(tmp_path / "model_best.pth.tar"))
    torch.save({"state_dict": weights, "metric": np.float64(0.5)}, tmp_path / "np.pth")
    with pytest.raises(DataError, match=r"np.pth: cannot read weights: the file holds Python "
                                        r"objects besides tensors \(numpy.*\), which are not "
                                        r"unpickled .*; save the state dict alone"):
        build_vit(**kw, depth=2, weights=str(tmp_path / "np.pth"))
    (tmp_path / "zeros.pth").write_bytes(b"\x00" * 64)
    with pytest.raises(DataError, match=r"zeros.pth: cannot read weights: not a safetensors "
                                        r"file or a torch state dict$"):
        build_vit(**kw, depth=2, weights=str(tmp_path / "zeros.pth"))
    # a safetensors file of another name (a hub download saved as .pt) is one
    (tmp_path / "two.pt").write_bytes(two.read_bytes())
    build_vit(**kw, depth=2, weights=str(tmp_path / "two.pt"))
    # CNNs: a ResNet-18 file (classifier and last stage included) starts a ResNet-18 cut at
    # stage 3; it does not fit a ResNet-34
    import timm

    r18 = save_weights(timm.create_model("resnet18", in_chans=1), tmp_path / "r18.safetensors")
    cnn = dict(SMALL, family="cnn", cnn_out_index=2, n_up=0, weights=str(r18))
    build_model(ModelConfig(**cnn, timm_name="resnet18"), 3)
    with pytest.raises(DataError, match="r18.safetensors: weights do not fit.*missing: layer1.2"):
        build_model(ModelConfig(**cnn, timm_name="resnet34"), 3)
    # a CNN whose feature wrapper renames its modules (convnext: stem.0 -> stem_0)
    from vit_facemap.models.cnn import CNNBackbone

    conv = timm.create_model("convnext_atto", in_chans=1)
    path = save_weights(conv, tmp_path / "convnext.safetensors")
    net = CNNBackbone("convnext_atto", 1, 1, str(path)).net
    assert torch.equal(net.state_dict()["stem_0.weight"], conv.state_dict()["stem.0.weight"])


def test_hub_weights_offline_say_so(monkeypatch):
    import huggingface_hub.constants

    from vit_facemap.errors import DataError

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError, match="cannot fetch model.safetensors from the hub.*without a network"):
        build_vit(input_size=(64, 64), depth=1, embed_dim=32, num_heads=2,
                  weights="hf-hub:timm/no_such_model_here")


def test_model_config_sizes_and_strides():
    # a named size gives timm's dimensions unless they are set explicitly
    assert ModelConfig(family="vit", size="small").dims()["embed_dim"] == 384
    assert ModelConfig(family="vit", size="small", depth=2).dims()["depth"] == 2
    assert ModelConfig().dims() == dict(depth=4, embed_dim=128, num_heads=4)  # the CPU recipe
    # through a run's --config, merged over a profile's settings (train.TrainConfig)
    from dataclasses import asdict

    from vit_facemap.train import TrainConfig, profile_config
    merged = asdict(profile_config("default"))
    merged["model"] = with_settings(merged["model"], dict(family="vit", size="small"))
    assert TrainConfig.from_dict(merged).model.dims()["embed_dim"] == 384
    with pytest.raises(ValueError, match="unknown ViT size"):
        ModelConfig(size="huge")
    with pytest.raises(ValueError, match=r"hybrid family is this project's \(choose its CNN with the stem setting"):
        build_model(ModelConfig(family="hybrid", timm_name="vit_base_r50_s16_224"), 3)
    # a registered model's own patch decides what input sizes are whole
    with pytest.raises(ValueError, match="multiple of vit_small_patch32_224's patch size 32x32"):
        build_vit(timm_name="vit_small_patch32_224", input_size=(208, 144))
    with pytest.raises(ValueError, match="multiple of the CNN's stride 16"):
        build_model(ModelConfig(family="cnn", input_w=200, input_h=192), 3)
    # a one-stage stem's skip map is at stride 2, and the model says so
    one = build_model(ModelConfig(**SMALL, family="hybrid", stem_widths=[16]), 3)
    assert one(torch.randn(1, 1, 48, 64))["heatmap"].shape[-2:] == (24, 32) and one.stride == 2


def test_masked_image_modelling_learns_and_masks_only_blanked_pixels():
    from vit_facemap.models.mae import MaskedImageModel

    torch.manual_seed(0)
    model = build_model(ModelConfig(**SMALL, family="hybrid", stem_widths=[8, 16, 32, 64]), 3)
    mim = MaskedImageModel(model.backbone, 1)
    x = torch.randn(4, 1, 48, 64).cumsum(-1) / 8  # smooth-ish images
    mask = mim.random_mask(x, 0.5, torch.Generator().manual_seed(0))
    assert mask.shape == (4, 1, 3, 4) and mask.sum() == 4 * 6
    opt = torch.optim.AdamW(mim.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = mim(x, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]
    # the backbone is shared: pre-training changed the keypoint model's weights
    assert mim.backbone is model.backbone


def test_soft_argmax_at_the_border_counts_each_cell_once():
    # the window is clamped to the map: its cells past the edge repeat the edge cell, which
    # must not weigh it more (the peak's window at cell 0 holds cells -2..2)
    from vit_facemap.models.heads import local_soft_argmax

    logits = torch.full((1, 1, 6, 6), -1e4)
    logits[0, 0, 0, 0] = np.log(3.0)
    logits[0, 0, 0, 1] = 0.0  # mass 3 : 1 on x = 0, 1 in row 0
    xy, conf = local_soft_argmax(logits, radius=2)
    assert xy[0, 0].tolist() == pytest.approx([0.25, 0.0], abs=1e-6)
    assert conf.item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("kw", [
    dict(family="vit", patch_size=14, n_up=2, input_w=56, input_h=42),  # stride 3.5
    dict(family="vit", patch_size=8, n_up=4),                           # stride 0.5
    dict(family="cnn", timm_name="resnet18", cnn_out_index=1, n_up=3),  # stride 4 / 8
])
def test_heatmap_stride_must_be_whole(kw):
    """Keypoints are read back as cell * stride: a fractional stride was rounded down (3.5 to
    3, 0.5 to 0), putting every keypoint of a trained model short of the right place."""
    with pytest.raises(ValueError, match=r"n_up \d: the backbone's stride \d+ is not a multiple"):
        build_model(ModelConfig(**{**SMALL, **kw}), 2)


@pytest.mark.parametrize("kw,why", [
    (dict(family="vit", n_up=-1), "n_up must be at least 0, got -1"),
    (dict(family="vit", depth=2, drop_path=1.5), r"drop_path must be in \[0, 1\], got 1.5"),
    (dict(family="hybrid", stem_widths=[]), r"stem_widths must be one or more widths"),
    (dict(family="hybrid", stem_widths=[0, 8]), r"stem_widths must be one or more widths"),
    (dict(family="vit", num_heads=3), "embed_dim 32 must be a multiple of num_heads 3"),
])
def test_model_config_refuses_what_fails_only_when_built_or_trained(kw, why):
    """These built (or failed to build with torch's IndexError, timm's AssertionError) and
    failed at the first forward pass of training, after the run's folder was written."""
    with pytest.raises(ValueError, match=why):
        ModelConfig(**{**SMALL, **kw})


@pytest.mark.parametrize("kw,why", [
    # timm's hybrid asserts, without a message, that its ResNet's map tiles its patches
    (dict(family="vit", timm_name="vit_tiny_r_s16_p8_224", input_w=200, input_h=136),
     r"timm cannot build vit_tiny_r_s16_p8_224 for input 200x136 \(AssertionError\)"),
    (dict(family="vit", timm_name="resnet18"), r"timm cannot build resnet18 .*img_size"),
    (dict(family="vit", timm_name="vit_no_such"), "timm_name 'vit_no_such' is not a model timm"),
    (dict(family="cnn", timm_name="resnet_no_such"), "'resnet_no_such' is not a model timm"),
    (dict(family="cnn", cnn_out_index=7), "cnn_out_index 7: resnet18 has feature stages 0 to 4"),
    # FMnet never read its weights file: it started from random weights without a word
    (dict(family="fmnet", weights="facemap_model.pt", input_w=64, input_h=64),
     "model weights: FMnet starts from random"),
])
def test_timm_models_that_cannot_be_built_are_named(kw, why):
    """timm's own AssertionError, TypeError, RuntimeError or IndexError named no setting."""
    with pytest.raises(ValueError, match=why):
        build_model(ModelConfig(**kw), 2)


def test_saved_weights_are_readable_as_the_users_other_files(tmp_path):
    # safetensors creates its files for their owner alone (-rw-------): a colleague who
    # could read a run folder on a shared server could not read its weights
    import os

    umask = os.umask(0o022)
    try:
        path = save_weights(torch.nn.Linear(2, 2), tmp_path / "m.safetensors")
        (tmp_path / "other.json").write_text("{}")
        assert path.stat().st_mode & 0o777 == (tmp_path / "other.json").stat().st_mode & 0o777
        assert path.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(umask)


def test_gaussian_target_and_cross_entropy_by_hand():
    """The target is exp(-d^2 / (2 sigma^2)) in x and in y, normalised; the loss is its
    cross-entropy to the spatial softmax (log 48 for flat logits on 6 x 8 cells), 0 for an
    unlabeled point. A target twice as narrow in x passed every test before (decoding
    finds the same centre)."""
    from vit_facemap.models.heads import heatmap_cross_entropy

    c = torch.tensor([[[3.0, 2.0], [1.0, 1.0]]])
    vis = torch.tensor([[1.0, 0.0]])
    g = gaussian_targets(c, vis, (6, 8), sigma=1.0)[0]
    assert float(g[0].sum()) == pytest.approx(1.0) and float(g[1].abs().sum()) == 0
    e = math.exp(-0.5)
    assert float(g[0, 2, 4] / g[0, 2, 3]) == pytest.approx(e)
    assert float(g[0, 3, 3] / g[0, 2, 3]) == pytest.approx(e)
    assert float(g[0, 2, 1] / g[0, 2, 3]) == pytest.approx(e ** 4)
    ce = heatmap_cross_entropy(torch.zeros(1, 2, 6, 8), c, vis, 1.0)
    assert ce[0].tolist() == pytest.approx([math.log(48), 0.0])


def test_a_resnet_stem_gives_the_hybrid_cnn_tokens_and_keeps_its_attention(tmp_path):
    # the default first stage: ResNet-18 features (stride 16) as the ViT's tokens, its
    # stride-4 map fused by the skip head, attention rollout as for the conv stem
    from dataclasses import asdict

    from vit_facemap.models.vit import TimmStem
    from vit_facemap.rollout import _MEASURED, attention_rollout, token_shift

    cfg = ModelConfig(stem="resnet18", depth=1, input_w=96, input_h=64)
    model = build_model(cfg, 3).eval()
    assert isinstance(model.backbone.stem, TimmStem)
    assert model.backbone.grid == (4, 6) and model.stride == 4
    assert model.backbone.stem.skip_channels == 64  # ResNet-18's layer1
    x = torch.rand(2, 1, 64, 96)
    with torch.no_grad():
        h = model(x)["heatmap"]
    assert h.shape == (2, 3, 16, 24)
    # cut at stride 16: ResNet-18's last stage (8.4 M weights) is not built
    assert not any(k.startswith("net.layer4") for k in model.backbone.stem.state_dict())
    maps = attention_rollout(model, x).maps
    assert maps.shape == (2, 4, 6) and np.isfinite(maps).all()
    # where a CNN stem centres its tokens is measured, not assumed as for the conv stem; a
    # ResNet's (stride-2 convolutions and pooling) comes out near that of the conv stem
    assert model.backbone.vit.patch_embed in _MEASURED
    assert abs(token_shift(model.backbone.vit) - 15 / 32) < 0.1
    # the config as a run saves it (JSON) and the weights file rebuild the same network
    saved = json.loads(json.dumps(asdict(cfg)))
    again = load_weights(build_model(ModelConfig(**saved), 3),
                         save_weights(model, tmp_path / "model.safetensors")).eval()
    with torch.no_grad():
        assert torch.equal(again(x)["heatmap"], h)


@pytest.mark.parametrize(("kw", "match"), [
    ({"family": "vit", "stem": "resnet18"}, "only the hybrid family has a stem"),
    ({"family": "cnn", "stem": "resnet18"}, "only the hybrid family has a stem"),
    ({"stem": "resnet_18"}, "neither 'conv' nor a CNN timm knows"),
])
def test_a_stem_the_model_cannot_take_is_refused_when_the_recipe_is_read(kw, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kw)


@pytest.mark.parametrize(("index", "match"), [
    (1, r"stage 1 \(stride 4\) is not coarser than the map the heatmap head fuses \(stride 4\)"),
    (5, "cnn_out_index 5: stem resnet18 has feature stages 0 to 4"),
])
def test_a_stem_cut_where_the_head_cannot_use_it_is_refused(index, match):
    with pytest.raises(ValueError, match=match):
        build_model(ModelConfig(stem="resnet18", cnn_out_index=index, depth=1), 3)


def test_the_default_recipe_has_a_resnet_stem_first_stage_and_conv_stem_crop_stages():
    from dataclasses import asdict, replace

    from vit_facemap.commands.train import merge_config
    from vit_facemap.train import TrainConfig, _refine_stage_config, profile_config

    default = TrainConfig()
    assert default.model == ModelConfig(stem="resnet18")
    for profile in ("quick", "default", "full"):
        assert profile_config(profile).model.stem == "resnet18"
    # the crop stages: the first stage's settings with the small conv stem, on crops whose
    # contrast is equalised (the first stage's inputs are not)
    second = _refine_stage_config(default, 2).model
    assert second == ModelConfig(input_w=128, input_h=128, equalize=2.0)
    assert default.model.equalize == 0.0
    # a dict without a model section is the default recipe's network; a saved run's section
    # without "stem" (written before it existed) had the conv stem
    assert TrainConfig.from_dict({"steps": 10}).model == default.model
    saved = {k: v for k, v in asdict(default.model).items() if k != "stem"}
    assert TrainConfig.from_dict({"model": saved}).model.stem == "conv"
    # a config file that moves the first stage to another family leaves the stem behind;
    # other model settings keep it, and a stem given with a family without one is refused
    cnn = merge_config(default, {"model": {"family": "cnn", "timm_name": "resnet18"}})
    assert cnn.model.family == "cnn" and cnn.model.stem == "conv"
    assert build_model(cnn.model, 3).stride == 4
    assert merge_config(default, {"model": {"depth": 2}}).model.stem == "resnet18"
    with pytest.raises(ValueError, match="only the hybrid family has a stem"):
        merge_config(default, {"model": {"family": "vit", "stem": "resnet18"}})
    assert with_settings({"family": "hybrid", "stem": "resnet18"}, {"family": "fmnet"}) == {
        "family": "fmnet", "stem": "conv", "weights": None}
    assert with_settings({"family": "hybrid", "stem": "resnet18"}, {"depth": 2})["stem"] == "resnet18"
    # a config's second-stage settings merge into the default's, which keep the conv stem
    merged = merge_config(default, {"refine": {"model": {"pos_embed": False}}})
    assert merged.refine.model == {"stem": "conv", "equalize": 2.0, "pos_embed": False}
    # second stages of another family need not say the stem either
    cnn_eyes = TrainConfig(refine=replace(default.refine, model={"family": "cnn"}))
    assert _refine_stage_config(cnn_eyes, 2).model.stem == "conv"
    # a weights file stays with the network it was made for unless the change names one
    w = {"family": "hybrid", "stem": "resnet18", "weights": "first.safetensors"}
    assert with_settings(w, {"stem": "conv"})["weights"] is None
    assert with_settings(w, {"depth": 2})["weights"] == "first.safetensors"
    assert with_settings(w, {"stem": "conv", "weights": "own.pth"})["weights"] == "own.pth"
    # masked pre-training reconstructs pixels through the ResNet stem as through the conv stem
    from vit_facemap.models.mae import MaskedImageModel

    net = build_model(ModelConfig(stem="resnet18", depth=1, input_w=64, input_h=48), 3)
    mim = MaskedImageModel(net.backbone, 1)
    x = torch.rand(2, 1, 48, 64)
    loss = mim(x, mim.random_mask(x, 0.5, torch.Generator().manual_seed(0)))
    loss.backward()
    assert torch.isfinite(loss) and net.backbone.stem.net.conv1.weight.grad.abs().sum() > 0
