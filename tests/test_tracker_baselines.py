"""The keypoint baselines (mean shape, HOG + random forest) on frames of another size."""

import numpy as np
import pytest
from PIL import Image

from vit_facemap.baselines import HogForestConfig, HogForestPredictor, MeanShapePredictor
from vit_facemap.dlc import find_label_file, read_labels
from vit_facemap.images import load_image
from vit_facemap.synthetic import write_synthetic_set
from vit_facemap.transforms import rescale_points


def test_rescale_points_keeps_pixel_centres():
    # frame pixel 0 spans [-0.5, 0.5): at twice the size it is pixels 0 and 1, centred at 0.5
    np.testing.assert_allclose(rescale_points([[0.0, 0.0], [9.0, 4.0]], (10, 5), (20, 10)),
                               [[0.5, 0.5], [18.5, 8.5]])


def test_baselines_answer_in_the_pixels_of_the_frames_given(tmp_path):
    root = write_synthetic_set(tmp_path / "set", 12, 2, size=(128, 96))
    frames = read_labels(find_label_file(root))
    images = np.stack([load_image(p)[..., 0] if load_image(p).ndim == 3 else load_image(p)
                       for p in frames.image_paths])
    double = np.stack([np.asarray(Image.fromarray(f).resize((256, 192), Image.BILINEAR))
                       for f in images])
    mean = MeanShapePredictor(frames, frame_size=(128, 96))
    np.testing.assert_allclose(mean.predict(double)[0][0],
                               rescale_points(mean.predict(images)[0][0], (128, 96), (256, 192)))
    forest = HogForestPredictor(HogForestConfig(crop_width=64, n_estimators=5, n_jobs=1)).fit(frames)
    one, two = forest.predict(images)[0], forest.predict(double)[0]
    # the same frames at twice the size: the same places, in the larger frames' pixels (the
    # forest sees slightly different crops, hence the tolerance; it answered in the
    # training frames' pixels, half the size, before)
    np.testing.assert_allclose(two, rescale_points(one, (128, 96), (256, 192)), atol=6.0)


def _two_poses(root, missing_b):
    """Frames with a square on the left (the first 8) or on the right (the last 8); keypoint
    'a' on the square, 'b' below it, 'b' unlabeled in the frames ``missing_b``."""
    from vit_facemap.dlc import LabeledFrames

    index, kp = [], []
    for i in range(16):
        x = 30 if i < 8 else 90
        img = np.zeros((96, 128), np.uint8)
        img[38:58, x - 10:x + 10] = 255
        index.append(f"labeled-data/v/img{i:03d}.png")
        (root / index[-1]).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / index[-1])
        kp.append([[x, 40.0], [x, 70.0] if i not in missing_b else [np.nan, np.nan]])
    return LabeledFrames(root, index, np.array(kp, float), ["a", "b"]), load_image(root / index[0])


def test_hog_forest_leaves_missing_labels_out_of_its_fit(tmp_path):
    """'b' is labeled in 4 of the 8 left-hand frames: a missing label filled with b's mean
    over the set (mostly right-hand frames) would pull its left-hand prediction to the right."""
    frames, left = _two_poses(tmp_path, missing_b={4, 5, 6, 7})
    forest = HogForestPredictor(HogForestConfig(crop_width=128, n_estimators=10, n_jobs=1))
    kp, conf = forest.fit(frames).predict(left[None])
    assert np.all(np.isfinite(conf))
    np.testing.assert_allclose(kp[0], [[30.0, 40.0], [30.0, 70.0]], atol=5.0)


def test_hog_forest_refuses_a_keypoint_never_labeled(tmp_path):
    frames, _ = _two_poses(tmp_path, missing_b=set(range(16)))
    with pytest.raises(ValueError, match="keypoint 'b' is missing in every training frame"):
        HogForestPredictor(HogForestConfig(crop_width=128, n_estimators=2, n_jobs=1)).fit(frames)


def test_mean_shape_is_the_mean_over_labeled_frames_in_the_frames_pixels(tmp_path):
    """By hand: the mean (not the median) of each keypoint over the frames where it is
    labeled, scaled to frames of another size axis by axis (width and height apart)."""
    import warnings

    from vit_facemap.dlc import LabeledFrames

    kp = np.array([[[10, 20], [1, 1]], [[20, 30], [np.nan, np.nan]], [[60, 40], [3, 5]]], float)
    index = [f"labeled-data/v/img{i}.png" for i in range(3)]
    mean = MeanShapePredictor(LabeledFrames(tmp_path, index, kp, ["a", "b"]), frame_size=(80, 50))
    xy, conf = mean.predict(np.zeros((2, 50, 80), np.uint8))
    np.testing.assert_allclose(xy, [[[30, 30], [2, 3]]] * 2)
    assert conf.tolist() == [[1, 1], [1, 1]]
    # frames twice as wide, as high: x (30 + 0.5) * 2 - 0.5, y unchanged
    xy, _ = mean.predict(np.zeros((1, 50, 160), np.uint8))
    np.testing.assert_allclose(xy[0], [[60.5, 30], [4.5, 3]])
    kp[:, 1] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's mean of an empty slice
        with pytest.raises(ValueError, match="a keypoint is missing in every training frame"):
            MeanShapePredictor(LabeledFrames(tmp_path, index, kp, ["a", "b"]))
