"""Model families, heads, decoding and weights loaded from a local file."""

import numpy as np
import pytest
import torch

from vit_facemap.models import ModelConfig, build_model
from vit_facemap.models.fmnet import facemap_available
from vit_facemap.models.heads import local_soft_argmax, soft_argmax
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


def test_weights_from_a_local_file_through_timm(tmp_path):
    """The local-file path of pretrained weights (timm pretrained_cfg_overlay)."""
    # square, as published checkpoints are (timm infers the source grid as a square)
    kw = dict(size="tiny", patch_size=16, input_size=(64, 64), in_chans=1, depth=1, embed_dim=32,
              num_heads=2)
    source = build_vit(**kw)
    path = save_weights(source.vit, tmp_path / "vit.safetensors")
    loaded = build_vit(**kw, weights=str(path))
    for (k, a), (_, b) in zip(source.vit.state_dict().items(), loaded.vit.state_dict().items(),
                              strict=True):
        assert torch.equal(a, b), k
    # the same file at another input size and aspect: timm resamples the position embedding
    other = build_vit(**{**kw, "input_size": (96, 48)}, weights=str(path))
    assert other.vit.pos_embed.shape[1] == 1 + 6 * 3
    # a hybrid backbone loads its own weights file (strictly)
    hyb = build_model(ModelConfig(**SMALL, family="hybrid", stem_widths=[8, 16, 32, 64]), 3)
    save_weights(hyb, tmp_path / "hyb.safetensors")
    again = load_weights(build_model(ModelConfig(**SMALL, family="hybrid",
                                                 stem_widths=[8, 16, 32, 64]), 3),
                         tmp_path / "hyb.safetensors")
    x = torch.randn(1, 1, 48, 64)
    assert np.allclose(hyb.eval()(x)["heatmap"].detach(), again.eval()(x)["heatmap"].detach())


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
