"""The eye locator: crop geometry of its second stage, saving and loading, old runs."""

import numpy as np
import pytest
import torch

from vit_facemap.eyes import EyeLocator, LocatorConfig, _view_coords, crop_views

TINY = LocatorConfig(epochs=2, channels=8, batch_size=4, refine_size=32)


@pytest.mark.parametrize("angle,flip,side,size", [
    (0.0, 1.0, 64.0, 64), (0.3, 1.0, 64.0, 64), (-0.5, -1.0, 64.0, 64),
    (0.0, 1.0, 150.0, 32), (0.4, -1.0, 150.0, 32),  # shrunk 4.7x: box-filtered in 4x4 blocks
])
def test_view_coords_follow_the_crop(angle, flip, side, size):
    # one bright blob off the crop centre: where the view shows it is where _view_coords says
    # (frame pixel x is centred at x, as the keypoints are; the frame is not a multiple of
    # the filter's block)
    dot = np.array([[70.3, 50.6]])
    yy, xx = np.mgrid[:123, :161]
    blob = 4 * side / 64
    frame = (250 * np.exp(-((xx - dot[0, 0]) ** 2 + (yy - dot[0, 1]) ** 2) / blob**2)).astype(np.uint8)
    centre = np.array([[80.0, 60.0]])
    view = crop_views([frame], centre, np.array([side]), size, np.array([angle]),
                      np.array([flip]))[0, 0].numpy()
    weight = np.clip(view - np.percentile(view, 90), 0, None)
    vy, vx = np.mgrid[:size, :size] + 0.5  # view units: pixel j's centre is (j + 0.5) / size
    seen = np.array([(weight * vx).sum(), (weight * vy).sum()]) / weight.sum()
    expected = _view_coords(dot, centre, np.array([side]), np.array([angle]), np.array([flip]))[0]
    np.testing.assert_allclose(seen, expected * size, atol=0.15)  # was 0.5 px off


def test_eye_crops_are_centred_on_the_eye():
    from vit_facemap.eyes import crop_eyes

    yy, xx = np.mgrid[:120, :160]
    for x, y, w in ((70.0, 50.0, 20.0), (90.3, 61.7, 31.0)):
        frame = (250 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 8)).astype(np.uint8)
        crop = crop_eyes([frame], np.array([[x, y, w]]), 3.0, 60)[0].astype(float)
        cy, cx = np.mgrid[:60, :60]
        seen = np.array([(crop * cx).sum(), (crop * cy).sum()]) / crop.sum()
        # the crop's centre, (size - 1) / 2, up to the rounding of its edges to whole pixels
        np.testing.assert_allclose(seen, [29.5, 29.5], atol=0.5 * 60 / (3 * w) + 0.05)


def test_crop_outside_the_frame_is_black_and_standardized():
    frame = np.full((40, 40), 200, np.uint8)
    view = crop_views([frame], np.array([[0.0, 0.0]]), np.array([40.0]), 16)[0, 0]
    assert view[:4, :4].max() < view[-4:, -4:].min()  # the frame's corner, not the padding
    assert abs(float(view.mean())) < 1e-4


def _frames(n: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    frames, boxes = [], []
    for _ in range(n):
        f = rng.integers(0, 40, (90, 120)).astype(np.uint8)
        x, y = rng.uniform(30, 90), rng.uniform(25, 65)
        yy, xx = np.mgrid[:90, :120]
        f[(xx - x) ** 2 / 144 + (yy - y) ** 2 / 64 < 1] = 220  # an eye 24 px wide
        frames.append(f)
        boxes.append([x, y, 24.0])
    return frames, np.array(boxes)


def test_locator_with_crop_stage_round_trips_through_its_state():
    frames, boxes = _frames()
    loc = EyeLocator.fit(frames, boxes, TINY, progress=False)
    assert loc.refine is not None
    found = loc.predict(frames)
    assert found.shape == (8, 3) and np.isfinite(found).all()
    state = loc.state_dict()
    assert any(k.startswith("locator_refine.") for k in state)
    again = EyeLocator.from_state_dict(TINY, state).predict(frames)
    np.testing.assert_allclose(found, again, rtol=1e-5, atol=1e-4)


def test_runs_saved_before_the_crop_stage_still_load():
    # such runs stored only the coarse network; their config had no refine settings
    from vit_facemap.classifier import ClassifierConfig

    frames, boxes = _frames()
    old = EyeLocator.fit(frames, boxes, LocatorConfig(epochs=1, channels=8, refine_steps=0),
                         progress=False)
    state = {k: v for k, v in old.state_dict().items()}
    assert not any(k.startswith("locator_refine.") for k in state)
    cfg = ClassifierConfig.from_dict({"model": "vit", "locator": {"epochs": 1, "channels": 8}})
    assert cfg.locator.refine_steps == 0
    assert cfg.heatmap_weight == 0.0  # nor keypoint heatmaps: loaded as trained
    loaded = EyeLocator.from_state_dict(cfg.locator, state)
    assert loaded.refine is None and loaded.predict(frames[:2]).shape == (2, 3)


def test_eye_boxes_without_a_width_do_not_train_the_locator():
    # one box of width 0 made every weight NaN, and predict failed converting NaN to int
    frames, boxes = _frames()
    boxes[3, 2], boxes[5, 2] = 0.0, -4.0
    loc = EyeLocator.fit(frames, boxes, TINY, progress=False)
    assert all(torch.isfinite(p).all() for net in (loc.net, loc.refine) for p in net.parameters())
    assert np.isfinite(loc.predict(frames[:2])).all()


def test_locator_sizes_its_network_cannot_decode_are_refused():
    # they failed in the first training step: "The size of tensor a (144) must match ... (169)"
    with pytest.raises(ValueError, match=r"locator refine_size=100: .* multiples of 8"):
        LocatorConfig(refine_size=100)
    # without a second stage the size is never used: a run saved so still loads
    assert LocatorConfig(refine_size=100, refine_steps=0).refine_size == 100
    with pytest.raises(ValueError, match=r"locator width=100, height=0: "):
        LocatorConfig(width=100, height=0)


def test_locator_augmentation_ranges_the_wrong_way_round_are_refused():
    # they failed in the first training step: "uniform_ expects to return a [from, to) range"
    for bad in ({"zoom": 0.8}, {"rotation": -0.1}, {"shift": -0.1}):
        with pytest.raises(ValueError, match=r"locator zoom must be >= 1 .*rotation and shift >= 0"):
            LocatorConfig(**bad)
    assert LocatorConfig(zoom=1.0, rotation=0.0, shift=0.0).zoom == 1.0  # no augmentation: fine


def test_locator_is_seeded():
    frames, boxes = _frames()
    torch.manual_seed(123)
    a = EyeLocator.fit(frames, boxes, TINY, progress=False).predict(frames[:3])
    torch.manual_seed(456)
    b = EyeLocator.fit(frames, boxes, TINY, progress=False).predict(frames[:3])
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_crop_stage_learns_to_reject_the_coarse_stage_s_wrong_peaks(monkeypatch):
    import vit_facemap.eyes as eyes

    frames, boxes = _frames()
    seen = {}
    real = eyes._fit_refine

    def spy(frames_, boxes_, config, progress=True, hard=None):
        seen["hard"] = hard
        return real(frames_, boxes_, config, progress, hard)

    monkeypatch.setattr(eyes, "_fit_refine", spy)
    loc = EyeLocator.fit(frames, boxes, TINY, progress=False)
    cand = loc._candidates(frames)
    assert cand.shape == (TINY.candidates, len(frames), 3) and np.isfinite(cand).all()
    hard = seen["hard"]
    assert len(hard) == len(frames) and sum(len(h) for h in hard) > 0
    for h, box in zip(hard, boxes, strict=True):
        # every hard negative is a candidate more than one eye width from the labeled eye
        assert (np.linalg.norm(h[:, :2] - box[:2], axis=1) > box[2]).all()
    EyeLocator.fit(frames, boxes, TINY.__class__(**{**TINY.__dict__, "refine_hard": 0.0}),
                   progress=False)
    assert seen["hard"] is None


def test_hard_negative_crops_are_cut_at_the_wrong_candidates(monkeypatch):
    import vit_facemap.eyes as eyes

    frames, boxes = _frames()
    # one wrong candidate per frame, far from its eye, each with its own place and width
    n = len(frames)
    wrong = np.column_stack([np.linspace(5, 115, n), np.full(n, 80.0), np.linspace(20, 60, n)])
    cut = []
    real = eyes.crop_views

    def spy(frames_, centres, sides, size, *args, **kw):
        idx = [next(i for i, f in enumerate(frames) if f is g) for g in frames_]
        cut.append((np.array(idx), centres.copy(), np.asarray(sides).copy()))
        return real(frames_, centres, sides, size, *args, **kw)

    monkeypatch.setattr(eyes, "crop_views", spy)
    config = TINY.__class__(**{**TINY.__dict__, "refine_negatives": 1.0, "refine_hard": 1.0})
    eyes._fit_refine(frames, boxes, config, progress=False, hard=[w[None] for w in wrong])
    idx = np.concatenate([i for i, _, _ in cut])
    centres = np.concatenate([c for _, c, _ in cut])
    sides = np.concatenate([s for _, _, s in cut])
    assert len(idx) == config.epochs * n
    # every crop is a negative and every negative a hard one: centred within a few tenths of
    # its own frame's candidate width of that candidate, at the side the prediction would cut
    dist = np.linalg.norm(centres - wrong[idx, :2], axis=1)
    assert (dist < 0.5 * wrong[idx, 2]).all()
    np.testing.assert_allclose(sides, config.refine_factor * wrong[idx, 2], rtol=0.11)
    # with no hard pool the negatives land anywhere in the frame
    cut.clear()
    eyes._fit_refine(frames, boxes, config, progress=False, hard=None)
    idx = np.concatenate([i for i, _, _ in cut])
    far = np.linalg.norm(np.concatenate([c for _, c, _ in cut]) - wrong[idx, :2], axis=1) > 20
    assert far.mean() > 0.5


def test_coarse_boxes_in_frame_pixels():
    # a heatmap peaked on one cell (row 3, column 10 of 12 x 16) of a 160 x 120 frame: the
    # cell's centre in frame pixels (pixel x centred at x), and the width in frame widths
    from vit_facemap.eyes import _boxes

    config = LocatorConfig()
    h, w = config.height // 8, config.width // 8
    logits = torch.full((1, h * w), -1e4)
    logits[0, 3 * w + 10] = 0.0
    box = _boxes(logits, torch.tensor([np.log(0.25)]), config, np.array([[160.0, 120.0]]))
    np.testing.assert_allclose(box, [[10.5 / 16 * 160 - 0.5, 3.5 / 12 * 120 - 0.5, 40.0]],
                               rtol=1e-5)


def test_a_view_that_shrinks_the_frame_is_box_filtered():
    # one-pixel stripes seen 4.7x smaller: a grey (their mean), not an aliased pattern
    stripes = np.zeros((120, 160), np.uint8)
    stripes[:, :80:2] = 255
    grey = np.zeros((120, 160), np.float32)
    grey[:, :80] = 127.5
    args = (np.array([[80.0, 60.0]]), np.array([150.0]), 32)
    np.testing.assert_allclose(crop_views([stripes], *args), crop_views([grey], *args),
                               atol=1e-4)


def test_eye_crops_are_factor_eye_widths_wide():
    from vit_facemap.eyes import crop_eyes

    frame = np.zeros((120, 160), np.uint8)
    frame[40:60, 60:80] = 255  # an 'eye' 20 px wide centred at pixel (69.5, 49.5)
    crop = crop_eyes([frame], np.array([[69.5, 49.5, 20.0]]), 2.0, 40)[0]
    assert abs((crop > 127).mean() - 1 / 4) < 0.03  # its side is half the crop's
