"""Crop/resize mapping: exact inverse, image and keypoints move together; augmentation."""

import numpy as np
import pytest

from vit_facemap.augment import (
    AUTO_HFLIP,
    AugmentConfig,
    KeypointAugmenter,
    mirror_pairs,
    pupil_groups,
    replace_glints,
    resolve_hflip,
    scale_pupil,
)
from vit_facemap.transforms import (
    InputMapping,
    equalize,
    full_frame_box,
    label_box,
    normalise,
    rescale_points,
    to_channels,
)


@pytest.mark.parametrize("seed", range(5))
def test_inverse_is_exact(seed):
    r = np.random.default_rng(seed)
    m = InputMapping(int(r.integers(-50, 50)), int(r.integers(-50, 50)), int(r.integers(20, 900)),
                     int(r.integers(20, 700)), int(r.integers(16, 300)), int(r.integers(16, 300)))
    xy = r.uniform(-100, 1000, size=(7, 5, 2))
    assert np.abs(m.to_frame(m.to_input(xy)) - xy).max() < 1e-6
    uv = r.uniform(0, 300, size=(3, 2))
    assert np.abs(m.to_input(m.to_frame(uv)) - uv).max() < 1e-6
    nan = np.full((1, 2), np.nan)
    assert np.isnan(m.to_frame(m.to_input(nan))).all()


def test_resize_moves_a_bright_pixel_where_the_mapping_says():
    img = np.zeros((60, 80), np.uint8)
    img[20:24, 40:44] = 255  # a 4x4 block centred at (41.5, 21.5)
    m = InputMapping(0, 0, 80, 60, 40, 30)  # halve
    out = m.apply(img)
    assert out.shape == (30, 40)
    ys, xs = np.nonzero(out == out.max())
    centre = np.array([xs.mean(), ys.mean()])
    assert np.allclose(m.to_input(np.array([41.5, 21.5])), centre)


@pytest.mark.parametrize("factor", [0.9, 1.1, 1.5])
def test_scaled_box_keeps_its_centre_and_input(factor):
    m = InputMapping(13, -7, 200, 150, 96, 64)
    s = m.scaled(factor)
    assert (s.input_w, s.input_h) == (96, 64)
    assert abs(s.box_w - 200 * factor) <= 0.5 and abs(s.box_h - 150 * factor) <= 0.5
    # the centre moves by at most the half pixel of rounding
    assert abs((s.x0 + s.box_w / 2) - (13 + 100)) <= 0.5
    assert abs((s.y0 + s.box_h / 2) - (-7 + 75)) <= 0.5
    assert m.scaled(1.0) is m
    # sides are rounded to the nearest pixel: 67 * 1.1 = 73.7 -> 74, 49 * 1.1 = 53.9 -> 54
    odd = InputMapping(7, 3, 67, 49, 67, 49).scaled(1.1)
    assert (odd.box_w, odd.box_h) == (74, 54)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_scaled_box_maps_a_bright_pixel_back(factor):
    img = np.zeros((60, 80), np.uint8)
    img[20:24, 40:44] = 255  # a 4x4 block centred at (41.5, 21.5)
    m = InputMapping(7, 3, 67, 49, 67, 49).scaled(factor)  # odd sides: rounding
    out = m.apply(img).astype(float)
    ys, xs = np.mgrid[: out.shape[0], : out.shape[1]]
    centre = np.array([(xs * out).sum(), (ys * out).sum()]) / out.sum()
    assert np.abs(m.to_frame(centre) - [41.5, 21.5]).max() < 0.05


def test_crop_with_padding_outside_the_frame():
    img = np.full((10, 10), 7, np.uint8)
    m = InputMapping(-5, -5, 20, 20, 20, 20)
    out = m.apply(img)
    assert out.shape == (20, 20)
    assert out[0, 0] == 0 and out[10, 10] == 7
    assert np.allclose(m.to_input(np.array([0.0, 0.0])), [5.0, 5.0])


def test_crop_entirely_outside_the_frame_is_all_padding():
    """A box left of or above the frame ends at a negative x or y: as a slice end, that
    counts from the far side of the frame and would cut out real content."""
    img = np.full((100, 120, 3), 239, np.uint8)
    for x0, y0 in ((-40, 10), (10, -40), (-40, -40), (150, 10), (10, 130), (-20, 10)):
        out = InputMapping(x0, y0, 20, 20, 32, 32).apply(img)
        assert out.shape == (32, 32, 3) and out.dtype == np.uint8 and out.max() == 0, (x0, y0)
    # one column of the frame in the box: that column, the rest padding
    out = InputMapping(-19, 10, 20, 20, 20, 20).apply(img[..., 0])
    assert (out[:, -1] == 239).all() and out[:, :-1].max() == 0


def test_label_box_contains_labels_and_keeps_aspect():
    kp = np.array([[[100.0, 50.0], [400.0, 300.0], [np.nan, np.nan]]])
    m = label_box(kp, (864, 646), (192, 128), margin=0.1)
    uv = m.to_input(kp[0, :2])
    assert (uv >= 0).all() and (uv[:, 0] < 192).all() and (uv[:, 1] < 128).all()
    assert abs(m.box_w / m.box_h - 1.5) < 0.02
    f = full_frame_box((864, 646), (64, 48))
    assert f.box_w >= 864 and f.box_h >= 646


def test_frame_size_change_scales_the_box():
    m = InputMapping(100, 50, 400, 300, 80, 60)
    big = m.for_frame_size((720, 540), (1440, 1080))
    assert (big.x0, big.y0, big.box_w, big.box_h) == (200, 100, 800, 600)
    assert np.allclose(big.to_input(np.array([1000.0, 700.0])) ,
                       m.to_input(np.array([500.0, 350.0])), atol=0.1)


def test_channels_and_normalise():
    g = np.zeros((4, 5), np.uint8)
    assert to_channels(g, 3).shape == (4, 5, 3)
    assert to_channels(np.zeros((4, 5, 3), np.uint8), 1).shape == (4, 5, 1)
    x = normalise(np.zeros((2, 4, 5, 1), np.uint8))
    assert x.shape == (2, 1, 4, 5) and x.dtype == np.float32


def test_equalize_spreads_a_dark_input_and_keeps_its_shape():
    """CLAHE on a model input: off at 0 (the same array), a dark low-contrast gray input
    spread over more grey levels, an RGB input with equal channels kept gray, bad inputs
    refused with the setting's name."""
    rng = np.random.default_rng(0)
    dark = rng.integers(10, 30, (32, 48, 1), dtype=np.uint8)
    assert equalize(dark, 0.0) is dark
    out = equalize(dark, 2.0)
    assert out.shape == dark.shape and out.dtype == np.uint8
    assert out.std() > 2 * dark.std() and out.max() - out.min() > 2 * (dark.max() - dark.min())
    rgb = equalize(np.repeat(dark, 3, axis=-1), 2.0)
    assert rgb.shape == (32, 48, 3)
    assert np.abs(rgb.astype(int) - rgb[..., :1]).max() <= 1  # still gray
    assert rgb.std() > 2 * dark.std()  # its lightness spread as the gray input's
    with pytest.raises(ValueError, match="clip limit must be >= 0"):
        equalize(dark, -1.0)
    with pytest.raises(ValueError, match="uint8"):
        equalize(dark.astype(np.float32), 2.0)
    from vit_facemap.models import ModelConfig

    assert ModelConfig().equalize == 0.0 and ModelConfig(equalize=2).equalize == 2.0
    for bad in (-0.5, float("nan")):
        with pytest.raises(ValueError, match="model equalize"):
            ModelConfig(equalize=bad)


def test_augment_keypoints_leaving_become_missing():
    bp = ["a", "b", "c"]
    aug = KeypointAugmenter(AugmentConfig(rotate=0, scale=0, translate=0.3, p_geometric=1.0), bp, 0)
    img = np.zeros((48, 64), np.uint8)
    kp = np.array([[0.5, 0.5], [32.0, 24.0], [np.nan, np.nan]])
    n_lost = 0
    for _ in range(20):
        out_img, out = aug(img, kp)
        assert out_img.shape == img.shape
        assert np.isnan(out[2]).all()  # missing stays missing
        inside = ~np.isnan(out).any(-1)
        assert ((out[inside] >= -0.5) & (out[inside] <= [63.5, 47.5])).all()  # never clipped
        n_lost += np.isnan(out[0]).any()
    assert n_lost > 0  # the corner point leaves the image sometimes


def test_flip_needs_side_names_paired_and_swaps_them():
    # an empty list leaves "l" and "r" on the wrong sides of the mirror image
    with pytest.raises(ValueError, match=r"\['l', 'r'\] name a side but are in no flip pair"):
        KeypointAugmenter(AugmentConfig(hflip=0.5, flip_pairs=[]), ["l", "r"])
    with pytest.raises(ValueError, match=r"\['r'\] name a side"):
        KeypointAugmenter(AugmentConfig(hflip=0.5, flip_pairs=[["l", "m"]]), ["l", "r", "m"])
    cfg = AugmentConfig(rotate=0, scale=0, translate=0, p_geometric=0, hflip=1.0, brightness=0,
                        contrast=0, blur=0, noise=0, flip_pairs=[["l", "r"]])
    aug = KeypointAugmenter(cfg, ["l", "r", "m"])
    img = np.zeros((10, 20), np.uint8)
    img[5, 2] = 255  # left point
    _, out = aug(img, np.array([[2.0, 5.0], [17.0, 5.0], [10.0, 1.0]]))
    # "l" now holds the mirrored right point and vice versa; the image's x flips about its middle
    assert out[0, 0] < 10 and out[1, 0] > 10
    assert abs(out[0, 0] + 17.0 - 19.0) <= 1.0 and abs(out[2, 0] + 10.0 - 19.0) <= 1.0


def test_mirror_pairs_from_names():
    schroeder = ["nose", "leftpupil", "dorsalpupil", "rightpupil", "lefteyelid", "righteyelid"]
    assert mirror_pairs(schroeder) == [["leftpupil", "rightpupil"], ["lefteyelid", "righteyelid"]]
    assert mirror_pairs(["eye_L", "eye_R", "Left ear", "Right ear", "left paw"]) == [
        ["eye_L", "eye_R"], ["Left ear", "Right ear"]]
    # partners are found whatever their case; camelCase sides count
    assert mirror_pairs(["eye_l", "eye_R", "ear_Left", "ear_RIGHT", "pawL", "pawR"]) == [
        ["eye_l", "eye_R"], ["ear_Left", "ear_RIGHT"], ["pawL", "pawR"]]
    # anatomical names say nothing about the image side; "lip" holds no side word, and
    # "left" / "right" inside another word ("cleft", "upright") or a letter before a digit
    # ("r1") is no side either
    assert mirror_pairs(["eye front", "eye back", "lip", "whisker 1"]) == []
    assert mirror_pairs(["cleft", "cright", "upright", "upleft", "whisker r1", "whisker l1"]) == []
    # a name differing from another only in case is no side
    assert mirror_pairs(["lEFT", "right", "left"]) == [["right", "left"]]


def test_auto_flip_pairs_swap_like_declared_ones():
    bp = ["lefteye", "righteye", "nose"]
    kw = dict(rotate=0, scale=0, translate=0, p_geometric=0, hflip=1.0, brightness=0, contrast=0,
              blur=0, noise=0)
    img = np.zeros((10, 20), np.uint8)
    kp = np.array([[2.0, 5.0], [17.0, 6.0], [10.0, 1.0]])
    _, auto = KeypointAugmenter(AugmentConfig(**kw, flip_pairs="auto"), bp)(img, kp)
    _, given = KeypointAugmenter(AugmentConfig(**kw, flip_pairs=[["lefteye", "righteye"]]), bp)(img, kp)
    np.testing.assert_allclose(auto, given)
    assert auto[0, 1] == pytest.approx(6.0)  # "lefteye" now holds the mirrored right eye
    # anatomical names keep their points in the mirror image; only the x coordinate flips
    aug = KeypointAugmenter(AugmentConfig(**kw, flip_pairs="auto"), ["eye front", "eye back", "lip"])
    assert aug.pairs == []
    _, out = aug(img, kp)
    np.testing.assert_allclose(out[:, 1], kp[:, 1])
    np.testing.assert_allclose(out[:, 0], 19.0 - kp[:, 0], atol=1.0)
    # "auto" is the default
    _, default = KeypointAugmenter(AugmentConfig(**kw), bp)(img, kp)
    np.testing.assert_allclose(default, auto)
    with pytest.raises(ValueError, match="list of name pairs or 'auto'"):
        KeypointAugmenter(AugmentConfig(**kw, flip_pairs="Auto"), bp)
    # a side name without a partner would keep its label on the wrong side of the mirror
    with pytest.raises(ValueError, match=r"\['left paw'\] name a side"):
        KeypointAugmenter(AugmentConfig(**kw, flip_pairs="auto"), ["lefteye", "righteye", "left paw"])
    # a keypoint in two pairs makes the swap no mirror
    with pytest.raises(ValueError, match="more than once"):
        KeypointAugmenter(AugmentConfig(**kw, flip_pairs=[["a", "b"], ["b", "c"]]), ["a", "b", "c"])


_STILL = dict(rotate=0, scale=0, translate=0, p_geometric=0, brightness=0, contrast=0, blur=0,
              noise=0)


def test_flip_moves_a_missing_keypoint_to_its_partner():
    aug = KeypointAugmenter(AugmentConfig(**_STILL, hflip=1.0, flip_pairs=[["l", "r"]]),
                            ["l", "r", "m"])
    img = np.zeros((10, 20), np.uint8)
    _, out = aug(img, np.array([[np.nan, np.nan], [17.0, 5.0], [10.0, 1.0]]))
    # the right point, mirrored, is now the left one; the missing left one is now the right
    np.testing.assert_allclose(out[0], [2.0, 5.0])
    assert np.isnan(out[1]).all()
    np.testing.assert_allclose(out[2], [9.0, 1.0])


def test_keypoints_leave_the_image_at_its_pixel_edges():
    aug = KeypointAugmenter(AugmentConfig(**_STILL), ["a", "b", "c", "d"])
    img = np.zeros((10, 20), np.uint8)  # pixels cover x in [-0.5, 19.5], y in [-0.5, 9.5]
    kp = np.array([[-0.4, 5.0], [19.4, 5.0], [-0.6, 5.0], [5.0, 9.6]])
    _, out = aug(img, kp)
    np.testing.assert_allclose(out[:2], kp[:2])
    assert np.isnan(out[2:]).all()


def _augment_config(**kw):
    return AugmentConfig(**{**dict(rotate=20, scale=0.2, translate=0.1, p_geometric=0.9,
                                   hflip=0.5, flip_pairs=[["l", "r"]]), **kw})


def _draws(aug, n=6):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (24, 32), dtype=np.uint8)
    kp = np.array([[8.0, 12.0], [24.0, 12.0], [16.0, 4.0]])
    return [aug(img, kp) for _ in range(n)]


def _same(draws_a, draws_b):
    return all(np.array_equal(ia, ib) and np.array_equal(ka, kb, equal_nan=True)
               for (ia, ka), (ib, kb) in zip(draws_a, draws_b, strict=True))


def test_reseeded_augmenter_draws_as_one_built_with_that_seed():
    bp = ["l", "r", "m"]
    reseeded = KeypointAugmenter(_augment_config(), bp, seed=0)
    reseeded.reseed(7)
    assert _same(_draws(reseeded), _draws(KeypointAugmenter(_augment_config(), bp, seed=7)))
    assert not _same(_draws(KeypointAugmenter(_augment_config(), bp, seed=0)),
                     _draws(KeypointAugmenter(_augment_config(), bp, seed=7)))


def test_random_state_restored_repeats_the_same_augmentations():
    aug = KeypointAugmenter(_augment_config(), ["l", "r", "m"], seed=3)
    _draws(aug, 2)
    state = aug.random_state()
    first = _draws(aug, 8)
    aug.set_random_state(state)
    assert _same(_draws(aug, 8), first)
    # the flips' own stream too: without geometry, a flip is seen in "l"'s height alone
    aug = KeypointAugmenter(AugmentConfig(**_STILL, hflip=0.5, flip_pairs=[["l", "r"]]),
                            ["l", "r"], seed=3)
    img, kp = np.zeros((24, 32), np.uint8), np.array([[8.0, 10.0], [24.0, 14.0]])
    state = aug.random_state()
    flipped = [aug(img, kp)[1][0, 1] == 14.0 for _ in range(8)]
    assert any(flipped) and not all(flipped)
    aug.set_random_state(state)
    assert [aug(img, kp)[1][0, 1] == 14.0 for _ in range(8)] == flipped


def test_geometry_scales_and_rotates_both_ways():
    img = np.zeros((48, 64), np.uint8)
    centre = np.array([31.5, 23.5])
    kp = np.array([[41.5, 23.5]])  # 10 pixels right of the centre
    scaled = KeypointAugmenter(AugmentConfig(**{**_STILL, "scale": 0.3, "p_geometric": 1.0}),
                               ["a"], seed=0)
    radius = [np.linalg.norm(scaled(img, kp)[1][0] - centre) for _ in range(20)]
    assert min(radius) < 9.0 and max(radius) > 11.0
    turned = KeypointAugmenter(AugmentConfig(**{**_STILL, "rotate": 30, "p_geometric": 1.0}),
                               ["a"], seed=0)
    dy = [turned(img, kp)[1][0, 1] - centre[1] for _ in range(20)]
    assert min(dy) < -1.0 and max(dy) > 1.0


def test_shear_skews_each_axis_and_is_off_by_default():
    img = np.zeros((48, 64), np.uint8)
    centre = np.array([31.5, 23.5])
    kp = np.array([[41.5, 23.5], [31.5, 13.5]])  # 10 pixels right of, and above, the centre
    sheared = KeypointAugmenter(AugmentConfig(**{**_STILL, "shear": 20, "p_geometric": 1.0}),
                                ["a", "b"], seed=0)
    moved = np.array([sheared(img, kp)[1] - centre for _ in range(20)])
    # the point right of the centre moves up or down, the one above it left or right: a
    # shear, which rotation (moving both) and scale (moving neither across) do not give
    assert moved[:, 0, 1].min() < -1.0 and moved[:, 0, 1].max() > 1.0
    assert moved[:, 1, 0].min() < -1.0 and moved[:, 1, 0].max() > 1.0
    assert AugmentConfig().shear == 0
    # shear 0 draws the geometry of an Affine given no shear, as before the setting existed:
    # runs of the default recipe stay comparable with earlier ones
    import albumentations as A

    aug = KeypointAugmenter(AugmentConfig(**{**_STILL, "rotate": 20, "scale": 0.2,
                                             "translate": 0.1, "p_geometric": 1.0}), ["a", "b"],
                            seed=3)
    plain = A.Compose([A.Affine(scale=(0.8, 1.2), translate_percent=(-0.1, 0.1), rotate=(-20, 20),
                                border_mode=0, fill=0, p=1.0)],
                      keypoint_params=A.KeypointParams(format="xy", remove_invisible=False), seed=3)
    for _ in range(5):
        np.testing.assert_allclose(aug(img, kp)[1],
                                   np.asarray(plain(image=img, keypoints=kp)["keypoints"]))


def test_wide_tail_draws_some_turns_past_the_range_and_none_when_off():
    img = np.zeros((48, 64), np.uint8)
    centre = np.array([31.5, 23.5])
    kp = np.array([[41.5, 23.5]])  # 10 pixels right of the centre

    def angles(wide: float) -> np.ndarray:
        aug = KeypointAugmenter(AugmentConfig(**{**_STILL, "rotate": 10, "p_geometric": 1.0,
                                                 "wide": wide}), ["a"], seed=0)
        d = np.array([aug(img, kp)[1][0] - centre for _ in range(200)])
        return np.degrees(np.abs(np.arctan2(d[:, 1], d[:, 0])))

    assert angles(0.0).max() <= 10.01
    # a quarter of the draws from +-20 degrees, half of those past 10: about 25 of 200
    past = int((angles(0.25) > 10.01).sum())
    assert 10 <= past <= 45
    assert (angles(1.0) > 10.01).sum() > 70 and angles(1.0).max() <= 20.01
    assert AugmentConfig().wide == 0
    with pytest.raises(ValueError, match="wide is a probability"):
        AugmentConfig(wide=1.5)


def test_label_box_by_hand():
    # labels span x 100..300, y 50..100; margin 0.1 of the larger side (200): 20 on each side,
    # so 80..320 by 30..120, 241 x 91 pixels; grown to the input's 3:2 it is 241 x 161
    # (ceil of 241 / 1.5), centred at (200, 75): x0 = round(79.5) = 80, y0 = round(-5.5) = -6
    kp = np.array([[[100.0, 50.0], [300.0, 100.0]]])
    assert label_box(kp, (864, 646), (192, 128), margin=0.1) == InputMapping(80, 0, 241, 161,
                                                                             192, 128)
    # a frame too low for the box: it stays centred, the rest is padding
    assert label_box(kp, (864, 150), (192, 128), margin=0.1).y0 == -6
    # near the bottom of the frame the box slides up to end at its last row
    low = label_box(kp + [0.0, 100.0], (864, 200), (192, 128), margin=0.1)
    assert (low.x0, low.y0, low.y0 + low.box_h) == (80, 39, 200)
    # and near the right edge it slides left to end at the last column
    narrow = label_box(kp, (300, 646), (192, 128), margin=0.1)
    assert (narrow.x0, narrow.x0 + narrow.box_w, narrow.y0) == (59, 300, 0)


def test_full_frame_box_pads_to_the_input_aspect_by_hand():
    # 864 x 646 is wider than 4:3: padded below to 864 x 648
    assert full_frame_box((864, 646), (64, 48)) == InputMapping(0, 0, 864, 648, 64, 48)
    # narrower than 3:2: padded on the right to 600 x 400
    assert full_frame_box((500, 400), (96, 64)) == InputMapping(0, 0, 600, 400, 96, 64)


def test_rescale_points_and_box_scale_each_axis_by_its_own_factor():
    # x 3 times, y 2 times: (1 + 0.5) * 3 - 0.5 = 4, (1 + 0.5) * 2 - 0.5 = 2.5
    np.testing.assert_allclose(rescale_points([[1.0, 1.0]], (10, 5), (30, 10)), [[4.0, 2.5]])
    m = InputMapping(10, 5, 40, 20, 32, 16).for_frame_size((100, 50), (200, 150))
    assert (m.x0, m.y0, m.box_w, m.box_h) == (20, 15, 80, 60)


def test_enlarging_resize_interpolates_linearly():
    img = np.array([[0, 200]], np.uint8)
    # input pixel u sits at frame x (u + 0.5) / 2 - 0.5: -0.25, 0.25, 0.75, 1.25
    out = InputMapping(0, 0, 2, 1, 4, 1).apply(img)
    assert out.tolist() == [[0, 50, 150, 200]]


def test_channels_and_normalise_values():
    red = np.zeros((1, 1, 3), np.uint8)
    red[..., 0] = 255
    assert to_channels(red, 1).tolist() == [[[76]]]  # 0.299 * 255, as cv2's RGB to gray
    gray = np.array([[9]], np.uint8)
    assert to_channels(gray, 3).tolist() == [[[9, 9, 9]]]
    x = normalise(np.array([0, 255], np.uint8).reshape(1, 1, 2, 1))
    np.testing.assert_allclose(x.ravel(), [-1.8, 2.2], rtol=1e-6)


@pytest.mark.parametrize("kw,problem", [
    (dict(scale=1.0), r"scale must be in \[0, 1\)"),
    (dict(scale=1.5), r"scale must be in \[0, 1\)"),
    (dict(scale=float("nan")), r"scale must be in \[0, 1\)"),
    (dict(rotate=float("nan")), "rotate must be a finite number"),
    (dict(translate=float("inf")), "translate must be a finite number"),
    (dict(brightness=float("nan")), "brightness must be a finite number"),
    (dict(shear=float("nan")), "shear must be a finite number"),
    (dict(shear=-5.0), r"shear must be in \[0, 45\] degrees"),
    (dict(rotate=-15.0), "rotate is the half-width of a range around 0 and must be >= 0"),
    (dict(translate=-0.1), "translate is the half-width"),
    (dict(brightness=-0.2), "brightness is the half-width"),
    (dict(contrast=-0.2), "contrast is the half-width"),
    (dict(shear=60.0), r"shear must be in \[0, 45\] degrees"),
    (dict(pupil=-0.5), r"pupil must be >= 0 \(pupils are scaled by a factor in"),
    (dict(pupil=float("nan")), "pupil must be a finite number"),
    (dict(glints=1.5), "glints is a probability"),
])
def test_augment_settings_that_wreck_the_inputs_are_refused(kw, problem):
    """scale=1 drew factors in [0, 2]: inputs shrunk to a few pixels (to 0.17 of their size in
    50 draws), keypoints with them; a NaN scale or rotation made every keypoint missing and
    a NaN shift failed inside albumentations ('cannot convert float NaN to integer')."""
    with pytest.raises(ValueError, match=problem):
        AugmentConfig(**kw)
    AugmentConfig(scale=0.0, rotate=0.0, translate=0.0)  # no geometry at all is fine


def test_augmented_image_and_keypoints_agree_to_a_twentieth_of_a_pixel():
    """A blurred dot drawn at the keypoint is found at the augmented keypoint (its centroid)
    under rotation, scale, shear, shift and flip: the image and its labels share one pixel-centre
    convention. The other augmentation tests allow a pixel; a half-pixel disagreement (an
    albumentations release flipping about w/2 instead of (w - 1)/2) would pass them."""
    h, w = 48, 64
    ys, xs = np.mgrid[:h, :w]
    cfg = AugmentConfig(rotate=30, scale=0.3, translate=0.1, shear=15, p_geometric=1.0, hflip=0.5,
                        brightness=0, contrast=0, blur=0, noise=0)
    aug = KeypointAugmenter(cfg, ["a"], seed=1, pairs_required=False)
    rng = np.random.default_rng(0)
    n = 0
    for _ in range(12):
        x, y = rng.uniform(20, w - 20), rng.uniform(16, h - 16)
        dot = np.clip(200 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / 4.5), 0, 255).astype(np.uint8)
        img, kp = aug(dot, np.array([[x, y]]))
        if np.isnan(kp).any():
            continue
        m = img.astype(float)
        centroid = np.array([(xs * m).sum(), (ys * m).sum()]) / m.sum()
        assert np.abs(centroid - kp[0]).max() < 0.05, (x, y, centroid, kp[0])
        n += 1
    assert n >= 8


def test_crop_past_the_bottom_of_a_wide_frame_pads_by_the_frame_height():
    """The bottom padding is the box's overhang past the frame's height: taken from its
    width (80 here, wider than high) the crop came out short, and resizing it to the input
    stretched it, moving every pixel below the box's top."""
    img = np.zeros((60, 80), np.uint8)
    img[50:52, 20:22] = 200  # rows 50..51, columns 20..21 of the frame
    m = InputMapping(10, 40, 40, 40, 40, 40)  # rows 40..79: 20 of them below the frame
    out = m.apply(img)
    assert out.shape == (40, 40)
    assert np.argwhere(out == 200).tolist() == [[10, 10], [10, 11], [11, 10], [11, 11]]
    assert out[20:].max() == 0


def test_shrinking_resize_averages_the_pixels_it_merges():
    """Shrinking uses area interpolation, as the module says: a thin bright line falling
    between the sample points of a linear resize is kept, at its share of the area."""
    img = np.zeros((1, 8), np.uint8)
    img[0, 0] = 255
    assert InputMapping(0, 0, 8, 1, 2, 1).apply(img).tolist() == [[64, 0]]


def test_label_box_exactly_as_large_as_the_frame_is_the_frame():
    # the box of test_label_box_by_hand (241 x 161, at x0 80 and y0 -6) on a frame of just
    # its height or width slides onto it: no padding where the frame has pixels
    kp = np.array([[[100.0, 50.0], [300.0, 100.0]]])
    assert label_box(kp, (864, 161), (192, 128), margin=0.1).y0 == 0
    assert label_box(kp, (241, 646), (192, 128), margin=0.1).x0 == 0


def test_label_box_leaves_out_keypoints_with_a_missing_coordinate():
    kp = np.array([[[100.0, 50.0], [300.0, 100.0], [np.nan, 900.0]]])
    assert label_box(kp, (864, 646), (192, 128), margin=0.1) == label_box(
        kp[:, :2], (864, 646), (192, 128), margin=0.1)


SCHROEDER = ["nose", "leftpupil", "dorsalpupil", "rightpupil", "lefteyelid", "righteyelid"]
G7C1 = ["eye front", "eye back", "nose tip", "whisker 1", "mouth"]


def test_auto_flips_where_names_pair_or_videos_face_the_other_way():
    auto = AugmentConfig()
    assert auto.hflip == "auto" and auto.flip_pairs == "auto"
    p, why = resolve_hflip(auto, SCHROEDER)
    assert p == AUTO_HFLIP == 0.5 and "leftpupil/rightpupil, lefteyelid/righteyelid" in why
    # anatomical names: off, unless some training videos face the other way
    assert resolve_hflip(auto, G7C1) == (0.0, "auto: off, no keypoint names pair left / right "
                                         "and no training video shows the face from the other side")
    p, why = resolve_hflip(auto, G7C1, ["cam2", "cam3"])
    assert p == 0.5 and "2 training video(s)" in why and "cam2, cam3" in why
    # listed pairs count as names that pair; an empty list pairs nothing
    assert resolve_hflip(AugmentConfig(flip_pairs=[["eye1", "eye2"]]), ["eye1", "eye2"])[0] == 0.5
    assert resolve_hflip(AugmentConfig(flip_pairs=[]), ["eye1", "eye2"])[0] == 0.0
    # a side name out of every pair would land on the wrong side: off, even with such videos
    p, why = resolve_hflip(auto, ["lefteye", "righteye", "left paw"], ["cam2"])
    assert p == 0.0 and "['left paw']" in why
    # a number is kept as given
    assert resolve_hflip(AugmentConfig(hflip=0.0), SCHROEDER) == (0.0, "set in the recipe")
    assert resolve_hflip(AugmentConfig(hflip=0.3), G7C1)[0] == 0.3
    with pytest.raises(ValueError, match="hflip is a probability or 'auto'"):
        AugmentConfig(hflip="sometimes")


def test_auto_flips_off_draws_as_no_flips():
    """Where "auto" leaves flips off, training sees the augmentations it saw before flips
    were automatic: the flip's own random draw is skipped, not taken and ignored."""
    kw = dict(rotate=20, scale=0.2, translate=0.1, p_geometric=0.9)
    off = KeypointAugmenter(AugmentConfig(**kw), G7C1, seed=4)
    assert off.hflip == 0.0
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (24, 32), dtype=np.uint8)
    kp = rng.uniform(2, 20, (len(G7C1), 2))
    before = off.rng.bit_generator.state
    a = [off(img, kp) for _ in range(5)]
    assert off.rng.bit_generator.state == before  # no flip was drawn
    none = KeypointAugmenter(AugmentConfig(**kw, hflip=0.0), G7C1, seed=4)
    b = [none(img, kp) for _ in range(5)]
    assert _same(a, b)
    on = KeypointAugmenter(AugmentConfig(**kw), SCHROEDER, seed=4)
    assert on.hflip == 0.5 and on.pairs == [["leftpupil", "rightpupil"], ["lefteyelid", "righteyelid"]]


EYE = ["leftpupil", "dorsalpupil", "rightpupil", "ventralpupil",
       "lefteyelid", "dorsaleyelid", "righteyelid", "ventraleyelid"]


def _eye(h: int = 96, w: int = 128, radius: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    """A grey eye (ellipse 80 x 40 px) on light fur with a dark pupil left of its centre."""
    ys, xs = np.mgrid[:h, :w]
    img = np.full((h, w), 180, np.uint8)
    img[((xs - 64) / 40) ** 2 + ((ys - 48) / 20) ** 2 < 1] = 110
    px, py = 58.0, 49.0
    img[(xs - px) ** 2 + (ys - py) ** 2 < radius ** 2] = 20
    kp = np.array([[px - radius, py], [px, py - radius], [px + radius, py], [px, py + radius],
                   [24, 48], [64, 28], [104, 48], [64, 68]], dtype=float)
    return img, kp


def test_pupil_and_eye_outline_are_found_by_name():
    assert pupil_groups(["nose", *EYE]) == ([1, 2, 3, 4], [5, 6, 7, 8])
    assert pupil_groups(G7C1) == ([], [0, 1])  # g7c1's eye corners, and no pupil


@pytest.mark.parametrize("factor", [0.6, 1.7])
def test_scale_pupil_scales_the_dark_disc_with_its_points(factor):
    img, kp = _eye()
    out, moved = scale_pupil(img, kp, range(4), range(4, 8), factor)
    assert out.shape == img.shape and out.dtype == img.dtype
    # the pupil's width in its points and in its pixels (dark along its centre row)
    assert moved[2, 0] - moved[0, 0] == pytest.approx(16 * factor, rel=0.05)
    dark, was = np.flatnonzero(out[49] < 65), np.flatnonzero(img[49] < 65)
    assert dark.max() - dark.min() == pytest.approx((was.max() - was.min()) * factor, abs=1.0)
    # the pupil's centre stays; beyond the rim (1.2 times the eye) nothing moves
    np.testing.assert_allclose(moved[:4].mean(0), kp[:4].mean(0), atol=0.5)
    np.testing.assert_array_equal(out[:, :12], img[:, :12])
    np.testing.assert_array_equal(out[:16], img[:16])


@pytest.mark.parametrize("factor", [0.6, 1.8])
def test_scale_pupil_moves_pixels_and_points_together(factor):
    """A blurred dot lands where the keypoint map puts its centre: in the pupil, where the
    map scales, and in the iris and eyelids along the pupil's row, where it squeezes or
    stretches (across the knee between them a dot is bent, and its centroid shifts)."""
    img, kp = _eye()
    ys, xs = np.mgrid[:img.shape[0], :img.shape[1]]
    rng = np.random.default_rng(0)
    for x, y in [*rng.uniform([55, 47], [61, 51], (4, 2)), *rng.uniform([82, 49], [98, 49], (4, 2))]:
        dot = np.clip(200 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / 2.0), 0, 255)
        out, moved = scale_pupil(dot.astype(np.uint8), np.vstack([kp, [x, y]]), range(4),
                                 range(4, 8), factor)
        m = out.astype(float)
        centroid = np.array([(xs * m).sum(), (ys * m).sum()]) / m.sum()
        assert np.abs(centroid - moved[-1]).max() < 0.1, (x, y, centroid, moved[-1])


def test_scale_pupil_leaves_an_eye_it_cannot_read():
    img, kp = _eye()
    for bad in ([0, 1], [4, 5]):  # two pupil points, or two eyelid points, labeled
        k = kp.copy()
        k[bad] = np.nan
        out, moved = scale_pupil(img, k, range(4), range(4, 8), 1.5)
        np.testing.assert_array_equal(out, img)
        np.testing.assert_array_equal(moved, k)
    out, moved = scale_pupil(img, kp + np.array([[60, 0]] * 4 + [[0, 0]] * 4), range(4), range(4, 8), 1.5)
    np.testing.assert_array_equal(out, img)  # a pupil labeled outside its eye
    spot = kp.copy()
    spot[:4] = kp[:4].mean(0)
    np.testing.assert_array_equal(scale_pupil(img, spot, range(4), range(4, 8), 1.5)[0], img)


def test_pupil_augmentation_varies_pupils_and_draws_nothing_without_one():
    img, kp = _eye()
    still = dict(_STILL, hflip=0.0)
    widths = []
    aug = KeypointAugmenter(AugmentConfig(**still, pupil=1.0), EYE, seed=0)
    for _ in range(30):
        _, k = aug(img, kp)
        widths.append(k[2, 0] - k[0, 0])
    assert min(widths) < 16 * 0.8 and max(widths) > 16 * 1.25
    assert 16 * 0.5 - 0.01 <= min(widths) and max(widths) <= 16 * 2 + 0.01
    # a set without a pupil draws the augmentations it drew before the setting existed
    names, kw = ["a", "b", "c", "d", "e", "f", "g", "h"], dict(_STILL, hflip=0.5, flip_pairs=[])
    with_pupil = KeypointAugmenter(AugmentConfig(**kw, pupil=1.0), names, seed=3)
    without = KeypointAugmenter(AugmentConfig(**kw), names, seed=3)
    for _ in range(5):
        np.testing.assert_array_equal(with_pupil(img, kp)[1], without(img, kp)[1])


def test_replace_glints_paints_out_the_eyes_reflections_and_draws_spots_where_asked():
    img, kp = _eye()
    img[47:50, 57:60] = 250  # a reflection on the pupil
    img[5:8, 5:8] = 250      # a light patch of fur outside the eye
    rim = kp[4:]
    out = replace_glints(img, rim, np.zeros((0, 4)))
    assert out.shape == img.shape and out.dtype == np.uint8
    assert out[47:50, 57:60].max() < 120  # filled from the dark pupil round it
    np.testing.assert_array_equal(out[:20], img[:20])  # nothing outside the eye changes
    # a spot at the eye's centre and one half way to its rim, each of the asked peak
    out = replace_glints(img, rim, np.array([[0.0, 0.0, 1.5, 240.0], [0.5, 0.0, 1.0, 200.0]]))
    assert out[48, 64] == 240
    (y, x), = np.argwhere(out == 200)
    assert ((x - 64) / 40) ** 2 + ((y - 48) / 20) ** 2 == pytest.approx(0.25, abs=0.01)
    assert out[47:50, 57:60].max() < 120
    np.testing.assert_array_equal(out[:20], img[:20])
    colour = replace_glints(np.repeat(img[..., None], 3, -1), rim, np.array([[0, 0, 1.5, 240.0]]))
    assert colour.shape == (*img.shape, 3) and (colour[48, 64] == 240).all()


def test_glint_augmentation_leaves_keypoints_and_draws_nothing_when_off():
    img, kp = _eye()
    img[47:50, 57:60] = 250
    still = dict(_STILL, hflip=0.0)
    aug = KeypointAugmenter(AugmentConfig(**still, glints=1.0), EYE, seed=0)
    changed = 0
    for _ in range(5):
        out, k = aug(img, kp)
        np.testing.assert_array_equal(k, kp)
        changed += out[47:50, 57:60].max() < 250
    assert changed == 5
    off = KeypointAugmenter(AugmentConfig(**still), EYE, seed=0)
    np.testing.assert_array_equal(off(img, kp)[0], img)
    # nor where the eye has no pupil to place (its corners alone, as g7c1's)
    corners = KeypointAugmenter(AugmentConfig(**still, glints=1.0), ["a", "b", "c", "d", *EYE[4:]])
    np.testing.assert_array_equal(corners(img, kp)[0], img)
