"""Attention rollout against a two-layer example worked out by hand, and on a tiny timm ViT."""

import numpy as np
import pytest
import torch
from torch import nn

from vit_facemap.rollout import (
    attention_rollout,
    capture_attention,
    curve_auc,
    deletion_curve,
    gradient_rollout,
    mass_in_box,
    overlay,
    rollout,
    upsample,
)

# tokens: CLS, patch 1, patch 2; two heads, fused by max (rows then no longer sum to one,
# which is where normalising rows matters)
L1 = torch.tensor([[[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
                   [[0.2, 0.2, 0.6], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5]]])[None]
L2 = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]] * 2)[None]
# By hand: max over heads of L1 = [[.5,.5,.6],[0,1,0],[.5,0,1]]; + I -> rows sum 2.6, 2, 2.5
# -> Â1 = [[15/26, 5/26, 6/26], [0, 1, 0], [1/5, 0, 4/5]];  Â2 = [[1/2, 0, 1/2], [0, 1, 0], [0, 0, 1]]
# R = Â2 Â1:
EXPECTED = np.array([
    [15 / 52 + 1 / 10, 5 / 52, 6 / 52 + 2 / 5],
    [0.0, 1.0, 0.0],
    [1 / 5, 0.0, 4 / 5],
])


def test_rollout_matches_hand_computed_two_layer_example():
    r = rollout([L1, L2], head_fusion="max")[0].numpy()
    np.testing.assert_allclose(r, EXPECTED, atol=1e-6)
    np.testing.assert_allclose(r.sum(-1), 1.0, atol=1e-6)


def test_hand_example_catches_the_broadcasting_bug():
    # the widely copied normalisation a / a.sum(dim=-1) divides columns, not rows
    joint = None
    for layer in (L1, L2):
        a = layer.amax(1) + torch.eye(3)
        a = a / a.sum(dim=-1)
        joint = a if joint is None else a @ joint
    assert not np.allclose(joint[0].numpy(), EXPECTED, atol=1e-3)


def test_mean_fusion_and_discard_spares_cls():
    r = rollout([L1, L2], head_fusion="mean")[0].numpy()
    np.testing.assert_allclose(r.sum(-1), 1.0, atol=1e-6)
    a = torch.tensor([[[0.1, 0.05, 0.85], [0.01, 0.9, 0.09], [0.3, 0.3, 0.4]]])
    d = rollout([a[:, None]], discard_ratio=0.5)[0]
    # entries of the CLS row/column stay non-zero even though 0.01 and 0.05 are the weakest
    assert d[0, 1] > 0 and d[1, 0] > 0
    # of the four patch-patch entries the two weakest (0.09, 0.3) were zeroed
    assert d[1, 2] == 0 and d[2, 1] == 0
    with pytest.raises(ValueError, match="head fusion"):
        rollout([L1], head_fusion="median")


def test_discard_zeroes_exactly_the_ratio_of_patch_entries():
    """discard_ratio counts the patch-to-patch entries only: 0.5 of the four zeroes two (0.09
    and 0.3), not half of all nine (which zeroed every patch entry and passed every test)."""
    a = torch.tensor([[[0.1, 0.05, 0.85], [0.01, 0.9, 0.09], [0.3, 0.3, 0.4]]])
    d = rollout([a[:, None]], discard_ratio=0.5)[0].numpy()
    np.testing.assert_allclose(d, [[1.1 / 2, 0.05 / 2, 0.85 / 2], [0.01 / 1.91, 1.9 / 1.91, 0],
                                   [0.3 / 1.7, 0, 1.4 / 1.7]], atol=1e-6)


def test_discard_ratio_outside_zero_to_one_is_refused():
    """1.5 failed as torch's "selected index k out of range", NaN as "cannot convert float NaN
    to integer", -0.5 was taken as 0; the command line and the study refuse them already."""
    vit = tiny_vit()
    x = torch.randn(1, 1, 16, 16)
    for ratio in (1.5, float("nan"), 1.0, -0.5):
        with pytest.raises(ValueError, match=r"discard_ratio must be in \[0, 1\)"):
            rollout([L1, L2], discard_ratio=ratio)
        for explain in (attention_rollout, gradient_rollout):
            with pytest.raises(ValueError, match=r"discard_ratio must be in \[0, 1\)"):
                explain(vit, x, discard_ratio=ratio)


def tiny_vit():
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(img_size=16, patch_size=4, in_chans=1, num_classes=3, embed_dim=16,
                             depth=2, num_heads=2, global_pool="token").eval()


def test_capture_and_rollout_on_timm_vit_inside_a_wrapper():
    vit = tiny_vit()
    wrapper = nn.Sequential(vit)  # rollout must find the ViT inside any module
    x = torch.randn(2, 1, 16, 16)
    fused_before = [b.attn.fused_attn for b in vit.blocks]
    with capture_attention(wrapper) as store:
        wrapper(x)
    assert len(store["attn"]) == 2 and store["attn"][0].shape == (2, 2, 17, 17)
    np.testing.assert_allclose(store["attn"][0].sum(-1).numpy(), 1.0, atol=1e-5)
    assert [b.attn.fused_attn for b in vit.blocks] == fused_before  # restored
    maps = attention_rollout(wrapper, x)
    assert maps.maps.shape == (2, 4, 4) and maps.grid == (4, 4)
    np.testing.assert_allclose(maps.maps.sum((1, 2)), 1.0, atol=1e-5)
    # the captured attention rolled out by hand gives the same map
    joint = rollout(store["attn"])
    np.testing.assert_allclose(maps.maps[0].ravel(),
                               (joint[0, 0, 1:] / joint[0, 0, 1:].sum()).numpy(), atol=1e-5)


def test_rollout_of_a_vit_without_cls_token_pools_the_patch_rows():
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(img_size=16, patch_size=4, in_chans=1, num_classes=3, embed_dim=16,
                            depth=2, num_heads=2, class_token=False, global_pool="avg").eval()
    x = torch.randn(1, 1, 16, 16)
    with capture_attention(vit) as store:
        vit(x)
    joint = rollout(store["attn"], n_prefix=0)[0]
    expected = joint.mean(0) / joint.mean(0).sum()  # what the pooled prediction attends to
    # (reading "row 0" took patch (0, 0)'s attention for the CLS token's)
    np.testing.assert_allclose(attention_rollout(vit, x).maps[0].ravel(), expected.numpy(),
                               atol=1e-5)


def test_rollout_follows_the_head_not_the_cls_token():
    """A ViT with a CLS token whose head averages the patch tokens (global_pool 'avg'): the
    map is the mean of the patch rows, as its prediction; one pooled by attention is refused."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(img_size=16, patch_size=4, in_chans=1, num_classes=3, embed_dim=16,
                            depth=2, num_heads=2, class_token=True, global_pool="avg").eval()
    with torch.no_grad():  # sharper attention: the CLS row and the patch rows' mean apart
        vit.cls_token.normal_(0, 3)
        for block in vit.blocks:
            block.attn.qkv.weight.mul_(4)
    x = torch.randn(1, 1, 16, 16)
    with capture_attention(vit) as store:
        vit(x)
    joint = rollout(store["attn"])[0]
    expected = (joint[1:, 1:].mean(0) / joint[1:, 1:].mean(0).sum()).numpy()
    cls_row = (joint[0, 1:] / joint[0, 1:].sum()).numpy()
    assert np.abs(cls_row - expected).max() > 1e-3
    np.testing.assert_allclose(attention_rollout(vit, x).maps[0].ravel(), expected, atol=1e-6)
    grad = gradient_rollout(vit, x, target=0)  # reads the same rows of its own rollout
    assert np.isclose(grad.maps.sum(), 1) and grad.maps.shape == (1, 4, 4)
    attn_pool = VisionTransformer(img_size=16, patch_size=4, in_chans=1, num_classes=3,
                                  embed_dim=16, depth=1, num_heads=2, global_pool="map").eval()
    for explain in (attention_rollout, gradient_rollout):
        with pytest.raises(ValueError, match="global_pool='map'"):
            explain(attn_pool, x)


def _numpy_rollout(attentions, fusion="mean"):
    """Rollout written out again in numpy: fuse heads, add I, normalise rows, multiply."""
    joint = None
    for a in attentions:
        a = getattr(np, fusion)(np.asarray(a, np.float64), axis=1)
        a = a + np.eye(a.shape[-1])
        a = a / a.sum(-1, keepdims=True)
        joint = a if joint is None else a @ joint
    return joint


@pytest.mark.parametrize("kw", [dict(), dict(reg_tokens=2),
                                dict(class_token=False, reg_tokens=2, global_pool="avg")],
                         ids=["cls", "cls+registers", "registers+avg"])
def test_rollout_of_a_wide_grid_matches_numpy(kw):
    """A 16 x 24 image in 4-pixel patches: 4 rows of 6 tokens (a square grid would hide rows
    and columns swapped), with register tokens before the patches too."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(img_size=(16, 24), patch_size=4, in_chans=1, num_classes=3,
                            embed_dim=16, depth=3, num_heads=2, **kw).eval()
    n_prefix = vit.num_prefix_tokens
    x = torch.randn(2, 1, 16, 24)
    with capture_attention(vit) as store:
        vit(x)
    joints = {f: _numpy_rollout([a.numpy() for a in store["attn"]], f) for f in ("mean", "max")}
    for fusion, joint in joints.items():
        rows = joint[:, n_prefix:, n_prefix:].mean(1) if not vit.has_class_token else \
            joint[:, 0, n_prefix:]
        want = (rows / rows.sum(-1, keepdims=True)).reshape(2, 4, 6)
        got = attention_rollout(vit, x, head_fusion=fusion)
        assert got.grid == (4, 6)
        np.testing.assert_allclose(got.maps, want, atol=1e-6)
    # the patch token at grid row 1, column 4 (row-major: 6 + 4) reads its own row
    q = attention_rollout(vit, x, query=10).maps
    row = joints["mean"][:, n_prefix + 10, n_prefix:]
    np.testing.assert_allclose(q, (row / row.sum(-1, keepdims=True)).reshape(2, 4, 6), atol=1e-6)


def test_gradient_rollout_keeps_only_the_positive_evidence():
    """Ā = mean over heads of (∇A ⊙ A)^+ per layer, then rolled out: recomputed here from the
    captured attention and its gradient; without the clipping the map is another one."""
    vit = tiny_vit()
    torch.manual_seed(1)
    x = torch.randn(1, 1, 16, 16)
    with capture_attention(vit, keep_grad=True) as store:
        vit(x)[0, 1].backward()
    attn = [a.detach().numpy() for a in store["attn"]]
    grad = [g.numpy() for g in store["grad"]]
    products = [a * g for a, g in zip(attn, grad, strict=True)]
    clipped = [np.clip(p, 0, None).mean(1, keepdims=True) for p in products]
    signed = [p.mean(1, keepdims=True) for p in products]
    maps = []
    for weighted in (clipped, signed):
        row = np.clip(_numpy_rollout(weighted)[0, 0, 1:], 0, None)
        maps.append((row / row.sum()).reshape(4, 4))
    assert np.abs(maps[0] - maps[1]).max() > 1e-3  # the clipping matters here
    np.testing.assert_allclose(gradient_rollout(vit, x, target=1).maps[0], maps[0], atol=1e-5)


def test_gradient_rollout_is_class_specific():
    vit = tiny_vit()
    x = torch.randn(1, 1, 16, 16)
    a = gradient_rollout(vit, x, target=0).maps
    b = gradient_rollout(vit, x, target=1).maps
    assert a.shape == (1, 4, 4) and np.isfinite(a).all()
    np.testing.assert_allclose(a.sum(), 1.0, atol=1e-5)
    assert not np.allclose(a, b)
    # a scalar score instead of class logits (how a keypoint tracker would be explained)
    c = gradient_rollout(vit, x, score=lambda out: out[:, 2])
    np.testing.assert_allclose(c.maps, gradient_rollout(vit, x, target=2).maps, atol=1e-6)


def test_gradient_rollout_checks_its_targets():
    """A target list of the wrong length failed with numpy's "operands could not be broadcast
    together", a class past the outputs with torch's IndexError; -1 explained the last
    class and reported target -1."""
    vit = tiny_vit()
    x = torch.randn(2, 1, 16, 16)
    for target, words in (([0, 1, 2], "target gives 3 classes for 2 image"),
                          ([[0, 1]], "target gives 2 classes for 2 image"),
                          (3, "target 3 is not a class index of the model's 3 outputs"),
                          ([0, -1], "target -1 is not a class index")):
        with pytest.raises(ValueError, match=words):
            gradient_rollout(vit, x, target=target)
    assert gradient_rollout(vit, x, target=np.array([2, 0])).target.tolist() == [2, 0]


def test_gradient_rollout_leaves_the_model_as_it_found_it():
    # under a caller's inference mode autograd stayed off ("does not require grad"); the
    # parameters kept the backward pass's gradients; a failing score left the model in eval
    vit = tiny_vit()
    x = torch.randn(1, 1, 16, 16)
    with torch.inference_mode():
        maps = gradient_rollout(vit, x, target=0).maps
    np.testing.assert_allclose(maps, gradient_rollout(vit, x, target=0).maps, atol=1e-6)
    assert all(p.grad is None for p in vit.parameters())
    # gradients a caller has accumulated (a training step before optimizer.step()) stay:
    # they were set to None
    vit(x).sum().backward()
    before = [p.grad.clone() for p in vit.parameters()]
    np.testing.assert_allclose(gradient_rollout(vit, x, target=0).maps, maps, atol=1e-6)
    for p, g in zip(vit.parameters(), before, strict=True):
        assert p.grad is not None and torch.equal(p.grad, g)
    vit.zero_grad(set_to_none=True)
    vit.train()

    def broken(out):
        raise KeyError("no such keypoint")

    with pytest.raises(KeyError):
        gradient_rollout(vit, x, score=broken)
    assert vit.training


def test_mass_in_box_and_upsample():
    m = np.zeros((2, 2))
    m[0, 0] = 1.0
    dense = upsample(m, 10, 10)
    assert dense.sum() == pytest.approx(1.0)
    inside, chance = mass_in_box(m, (0, 0, 5, 5), 10, 10)
    assert inside == pytest.approx(1.0) and chance == pytest.approx(0.25)
    inside, chance = mass_in_box(np.ones((2, 2)), (0, 0, 10, 5), 10, 10)
    assert inside == pytest.approx(0.5) and chance == pytest.approx(0.5)
    assert overlay(np.zeros((10, 12)), m).shape == (10, 12, 3)


def test_upsample_and_mass_in_box_on_a_wide_image():
    """A 2 x 3 grid on 6 x 12 pixels: each token covers 3 rows and 4 columns, its mass spread
    evenly; a box's x runs along the width and its edges count partial pixels. The tests'
    square images and whole-pixel boxes let height and width swapped (grid rows spread
    over the width, box x taken as y, the chance over height * height) pass before."""
    m = np.arange(1.0, 7.0).reshape(2, 3) / 21
    dense = upsample(m, 6, 12)
    assert dense.shape == (6, 12) and dense.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(dense, np.kron(m / 12, np.ones((3, 4))))
    # x 1.5 .. 4 (2.5 columns of token column 0), y 0 .. 3 (token row 0)
    inside, chance = mass_in_box(m, (1.5, 0, 4, 3), 6, 12)
    assert inside == pytest.approx(m[0, 0] * 2.5 / 4) and chance == pytest.approx(7.5 / 72)
    # 5 pixels on 2 tokens: a pixel goes to the token its centre falls in (2.5 pixels
    # each, the middle pixel's centre on the edge goes right); pixels taken by their left
    # edge gave the first token 3 (passed before)
    np.testing.assert_allclose(upsample(np.array([[0.4, 0.6]]), 1, 5), [[0.2] * 5])


def test_overlay_peaks_where_the_shifted_token_sits():
    """A conv stem's token (1, 2) on a 4 x 4 grid of 8-pixel cells is centred on pixel
    (8, 16), 7/16 of a cell before its cell's middle (11.5, 19.5): its overlay peaks there."""
    one = np.zeros((4, 4))
    one[1, 2] = 1
    for shift, peak in ((7 / 16, (8, 16)), (0.0, (11, 19))):
        img = overlay(np.zeros((32, 32)), one, alpha=1.0, cmap="gray", shift=shift)[..., 0]
        # (0.0: the middle falls between pixels 11 and 12, 19 and 20; the first is taken)
        assert np.unravel_index(img.argmax(), img.shape) == peak, shift
        assert img[peak] == 255


def test_deletion_curve_on_a_model_that_reads_one_patch():
    # the "model" is confident in class 1 exactly when the top-left quarter is bright
    def predict(stack):
        p1 = stack[:, :5, :5].mean(axis=(1, 2)).clip(0, 1)
        return np.stack([1 - p1, p1], 1)

    img = np.zeros((10, 10), np.float32)
    img[:5, :5] = 1
    right = np.array([[1.0, 0], [0, 0]])
    frac, prob = deletion_curve(predict, img, right, target=1, fill=0.0, steps=4)
    assert frac[0] == 0 and frac[-1] == 1 and prob[0] == 1 and prob[1] == 0
    wrong = np.array([[0.0, 0], [0, 1]])
    _, prob_wrong = deletion_curve(predict, img, wrong, target=1, fill=0.0, steps=4)
    assert curve_auc(frac, prob) < curve_auc(frac, prob_wrong)


def test_deletion_removes_cells_in_the_maps_order():
    """Cells go strongest first: on this map cell 1, then 2, 3, 0. Each pixel's rank read from
    the order itself instead of its inverse (the same for the tests' maps, where the order
    is its own inverse) passed every test before."""
    seen = []

    def predict(stack):
        seen.append(stack.copy())
        return np.zeros((len(stack), 2))

    grid = np.array([[0.1, 0.4], [0.3, 0.2]])
    deletion_curve(predict, np.ones((4, 4), np.float32), grid, target=0, fill=0.0, steps=4)
    removed = [(1 - s.reshape(2, 2, 2, 2).mean((1, 3))).round().astype(int) for s in seen[0]]
    assert [r.ravel().tolist() for r in removed] == [
        [0, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0], [0, 1, 1, 1], [1, 1, 1, 1]]


def test_rollout_on_the_keypoint_tracker():
    from vit_facemap.models import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(family="hybrid", head="heatmap", depth=1, embed_dim=16, num_heads=2,
                      stem_widths=[4, 8, 8, 16], input_w=64, input_h=32, decoder_channels=8)
    model = build_model(cfg, n_keypoints=3).eval()
    x = torch.randn(1, 1, 32, 64)
    maps = attention_rollout(model, x)
    assert maps.scores is None and np.isclose(maps.maps.sum(), 1)
    gh, gw = maps.grid
    q = attention_rollout(model, x, query=gw + 1)  # the patch token at grid (1, 1)
    assert q.maps.shape == (1, gh, gw) and not np.allclose(q.maps, maps.maps)
    g = gradient_rollout(model, x, score=lambda out: out["heatmap"][:, 0].flatten(1).amax(1),
                         query=gw + 1)
    assert np.isfinite(g.maps).all() and np.isclose(g.maps.sum(), 1)
    # without score= its dict of heatmaps failed as "'dict' object has no attribute 'softmax'"
    with pytest.raises(ValueError, match="output is not class logits .* dict of heatmap.*score="):
        gradient_rollout(model, x, query=gw + 1)
    assert not model.training


def _where_token_looks(embed, n: int, side: int, token: tuple[int, int], grid: int):
    """Where token (row, col) of a patch embedding looks: the centroid (y, x) of its input
    gradient over ``n`` noise images of ``side`` x ``side``."""
    x = torch.randn(n, 1, side, side, requires_grad=True)
    embed(x)[:, token[0] * grid + token[1]].abs().sum().backward()
    g = x.grad[:, 0].abs().sum(0).numpy()
    ys, xs = np.mgrid[:side, :side]
    return np.array([(g * ys).sum(), (g * xs).sum()]) / g.sum()


def _where_drawn(grid: int, side: int, token: tuple[int, int], shift: float):
    """The centroid (y, x) of a one-hot map on token (row, col), upsampled with ``shift``."""
    from vit_facemap.rollout import upsample

    one = np.zeros((grid, grid))
    one[token] = 1
    d = upsample(one, side, side, shift)
    ys, xs = np.mgrid[:side, :side]
    return np.array([(d * ys).sum(), (d * xs).sum()]) / d.sum()


def test_maps_of_conv_stem_tokens_sit_where_the_tokens_look():
    """A conv stem's token j is centred on pixel p*j, half a cell before its drawn cell's
    middle: upsampled maps (and deletion cells, overlays) follow the tokens, not the cells."""
    from dataclasses import replace

    from vit_facemap.classifier import make_vit, profile_config
    from vit_facemap.rollout import token_shift

    cfg = replace(profile_config("test", model="vit"), stem="conv", patch_size=8, image_size=64)
    vit = make_vit(cfg, 2).eval()
    assert token_shift(vit) == 7 / 16 and token_shift(tiny_vit()) == 0.0
    torch.manual_seed(0)
    look = _where_token_looks(vit.patch_embed, 16, 64, (3, 3), 8)
    for shift, close in ((token_shift(vit), True), (0.0, False)):
        drawn = _where_drawn(8, 64, (3, 3), shift)
        # 8 pixels cannot centre on one pixel: half a pixel either way (vs 3.5 unshifted)
        assert (np.abs(drawn - look).max() <= 1.0) == close, (shift, drawn, look)


def test_maps_of_a_hybrid_with_a_wide_projection_sit_where_its_tokens_look():
    """timm's vit_tiny_r_s16_p8: a ResNet stem, then an 8 x 8 projection of its features:
    tokens sit near their cells' middles, not half a cell early as after a stem alone."""
    import timm

    from vit_facemap.models.vit import build_vit
    from vit_facemap.rollout import token_shift

    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_r_s16_p8_224", pretrained=False, img_size=128, in_chans=1,
                            num_classes=2, depth=1, embed_dim=16, num_heads=2).eval()
    assert vit.patch_embed.grid_size == (4, 4)  # 32-pixel cells
    shift = token_shift(vit)
    torch.manual_seed(1)  # other noise than token_shift's own measurement
    look = _where_token_looks(vit.patch_embed, 8, 128, (2, 2), 4)
    drawn = _where_drawn(4, 128, (2, 2), shift)
    # (the stem formula's 31/64 drew it 15 pixels early)
    assert np.abs(drawn - look).max() <= 1.5, (shift, drawn, look)
    # the project's hybrid tracker (a stem, no projection beyond one cell) keeps the formula
    hybrid = build_vit(input_size=(64, 32), depth=1, embed_dim=16, num_heads=2, hybrid=True,
                       stem_widths=(4, 8)).vit
    assert token_shift(hybrid) == 3 / 8


def test_rollout_under_inference_mode_measures_the_stem():
    """A stem whose shift is measured (by a backward pass) is measured under the caller's
    torch.inference_mode() too, where enable_grad alone does not bring gradients back."""
    import timm

    from vit_facemap.rollout import measure_shift

    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_r_s16_p8_224", pretrained=False, img_size=64, in_chans=1,
                            num_classes=2, depth=1, embed_dim=16, num_heads=2).eval()
    with torch.inference_mode():
        maps = attention_rollout(vit, torch.rand(1, 1, 64, 64))
    assert maps.shift == measure_shift(vit) != 0.0


def test_rollout_help_says_overwrite_replaces_the_earlier_maps(capsys):
    # --overwrite sets the earlier rollout's files aside and replaces them; it does not add
    # to them ("write into an existing folder", as the help said)
    from vit_facemap.cli import main

    with pytest.raises(SystemExit):
        main(["rollout", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "replace an earlier rollout's maps" in text
    assert "write into an existing folder" not in text


@pytest.mark.parametrize("family", ["hybrid", "cnn"])
def test_rollout_of_a_tracker_run_says_what_explains_it(tmp_path, capsys, family):
    # a keypoint-tracker run's config.json has no classifier config: "unreadable classifier
    # config: 'config'" said nothing of what the folder is or how to explain it
    import json

    from vit_facemap.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"train": {"model": {"family": family}},
                                                 "bodyparts": ["eye", "nose"]}))
    (run / "model.safetensors").write_bytes(b"")
    assert main(["rollout", str(run), str(tmp_path / "a.png"), "--out",
                 str(tmp_path / "maps")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "keypoint-tracker run" in err
    assert "classify train" in err
    if family == "cnn":
        assert "no attention" in err
    else:
        assert "attention_rollout(model, x, query=" in err and "load_run(" in err
    assert not (tmp_path / "maps").exists()


def test_query_must_be_a_patch_token():
    """query=-1 read the row of a prefix token (here the last register) as a patch's map;
    a query past the grid failed inside the rollout as a bare IndexError."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(img_size=(8, 12), patch_size=4, in_chans=1, num_classes=3,
                            embed_dim=16, depth=1, num_heads=2, reg_tokens=2).eval()
    x = torch.randn(1, 1, 8, 12)
    for query in (-1, -3, 6, 2.5):
        for explain in (attention_rollout, gradient_rollout):
            with pytest.raises(ValueError, match=r"2 x 3 patch grid has row-major indices 0 to 5"):
                explain(vit, x, query=query)
    assert attention_rollout(vit, x, query=5).maps.shape == (1, 2, 3)


def test_rollout_of_a_dynamic_size_vit_uses_the_inputs_grid():
    """A ViT built with dynamic_img_size takes other input sizes than its own: an 8 x 12
    model's map of a 12 x 8 input was drawn on the model's 2 x 3 grid (a token at the
    bottom-left read as at row 1, column 1), of a 16 x 16 one it failed in einops. Here the
    CLS token attends only to the one bright patch, so the map's peak must be on it."""
    from timm.models.vision_transformer import VisionTransformer

    vit = VisionTransformer(img_size=(8, 12), patch_size=4, in_chans=1, num_classes=3,
                            embed_dim=8, depth=1, num_heads=1, qkv_bias=False,
                            dynamic_img_size=True).eval()
    with torch.no_grad():
        vit.pos_embed.zero_()
        vit.patch_embed.proj.weight.zero_()
        vit.patch_embed.proj.bias.zero_()
        vit.patch_embed.proj.weight[0] = 1.0  # feature 0: the patch's brightness
        vit.cls_token.zero_()
        vit.cls_token[..., 0] = 1.0  # the CLS token's query matches bright patches' keys
        qkv = torch.zeros(24, 8)
        qkv[:16] = torch.eye(8).repeat(2, 1) * 10  # query = key = 10 x the token, value 0
        vit.blocks[0].attn.qkv.weight.copy_(qkv)
    for h, w in ((8, 12), (12, 8), (16, 16)):
        x = torch.zeros(1, 1, h, w)
        x[..., h - 4:, :4] = 1  # the bottom-left patch
        for explain in (attention_rollout, gradient_rollout):
            maps = explain(vit, x)
            assert maps.grid == (h // 4, w // 4) and maps.maps.shape == (1, h // 4, w // 4)
            if explain is attention_rollout:
                peak = np.unravel_index(maps.maps[0].argmax(), maps.grid)
                assert peak == (h // 4 - 1, 0) and maps.maps[0][peak] > 0.99
    assert attention_rollout(vit, torch.zeros(1, 1, 16, 16), query=15).maps.shape == (1, 4, 4)


def test_maps_match_attention_computed_from_the_weights():
    """Independent of the capture: each layer's attention softmax(q k^T / sqrt(d)) computed
    here from the block's input and its qkv weights, rolled out in numpy (discard: the weakest
    share of each matrix's patch-to-patch entries), for every head fusion, a batch of three
    and a 2 x 3 grid. The other tests roll out what the hooks captured, so a hook that caught
    the wrong matrix (timm's fused attention, dropout) would pass them."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(img_size=(8, 12), patch_size=4, in_chans=1, num_classes=3,
                            embed_dim=16, depth=3, num_heads=2, attn_drop_rate=0.5)
    with torch.no_grad():
        for block in vit.blocks:
            block.attn.qkv.weight.mul_(3)  # sharper attention than at initialisation
    assert vit.blocks[0].attn.fused_attn  # what the capture must switch off
    x = torch.randn(3, 1, 8, 12)
    inputs = []
    hooks = [b.register_forward_pre_hook(lambda _m, a: inputs.append(a[0].detach().double()))
             for b in vit.blocks]
    vit.eval()
    with torch.no_grad():
        vit(x)
    for h in hooks:
        h.remove()
    attn = []
    for block, z in zip(vit.blocks, inputs, strict=True):
        n = block.norm1
        z = torch.nn.functional.layer_norm(z, n.normalized_shape, n.weight.double(),
                                           n.bias.double(), n.eps)
        qkv = (z @ block.attn.qkv.weight.double().T + block.attn.qkv.bias.double()).detach().numpy()
        q, k = (qkv[..., i * 16:(i + 1) * 16].reshape(3, 7, 2, 8).transpose(0, 2, 1, 3)
                for i in (0, 1))
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(8)
        s = np.exp(s - s.max(-1, keepdims=True))
        attn.append(s / s.sum(-1, keepdims=True))
    vit.train()  # rollout must switch dropout off itself
    for fusion in ("mean", "max", "min"):
        for ratio in (0.0, 0.4):
            joint = None
            for a in attn:
                a = getattr(np, fusion)(a, axis=1)
                for b in range(3):
                    patches = a[b, 1:, 1:].ravel()  # a copy; the CLS row and column stay
                    patches[np.argsort(patches)[:int(patches.size * ratio)]] = 0
                    a[b, 1:, 1:] = patches.reshape(6, 6)
                a = a + np.eye(7)
                a = a / a.sum(-1, keepdims=True)
                joint = a if joint is None else a @ joint
            want = joint[:, 0, 1:] / joint[:, 0, 1:].sum(-1, keepdims=True)
            got = attention_rollout(vit, x, head_fusion=fusion, discard_ratio=ratio).maps
            np.testing.assert_allclose(got, want.reshape(3, 2, 3), atol=1e-6)
    assert vit.training and vit.blocks[0].attn.fused_attn
