"""mrcnn.serving: the graph twins of detect()'s NumPy pre- and
post-processing give the same values as the NumPy functions (molding,
image metas, box un-molding, mask pasting, ROI detections), including
upscaled, downscaled, padded and very thin images."""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn import imaging, serving, transform
from mrcnn.config import Config


class SquareConfig(Config):
    NAME = "square"
    NUM_CLASSES = 4
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 128


@pytest.mark.parametrize("shape", [(128, 128), (60, 90), (200, 150), (300, 40), (2, 500),
                                   (40, 64), (97, 128), (1, 1)])
def test_molding_matches_detect(shape):
    config = SquareConfig()
    rng = np.random.default_rng(sum(shape))
    images = rng.integers(0, 256, (2,) + shape + (3,), dtype=np.uint8)
    molded, metas, window, scale = serving.resize_image_graph(tf.constant(images), config)
    for i in range(2):
        expected, expected_meta, expected_window = transform.mold(images[i], config)
        np.testing.assert_array_equal(molded.numpy()[i], expected)
        np.testing.assert_array_equal(metas.numpy()[i], expected_meta)
        np.testing.assert_array_equal(window.numpy(), expected_window)
    _, _, expected_scale, _, _ = imaging.resize_image(
        images[0], min_dim=64, max_dim=128, mode="square")
    assert float(scale) == pytest.approx(expected_scale, rel=1e-12)


def test_other_resize_modes_are_refused():
    config = SquareConfig()
    config.IMAGE_RESIZE_MODE = "pad64"
    with pytest.raises(ValueError, match="supports IMAGE_RESIZE_MODE 'square'"):
        serving.resize_image_graph(tf.zeros([1, 64, 64, 3], tf.uint8), config)


@pytest.mark.parametrize("in_size, out_size", [(28, 28), (28, 5), (28, 97), (3, 1), (1, 7)])
def test_linear_taps(in_size, out_size):
    expected = imaging._linear_taps(in_size, out_size)
    got = serving.linear_taps_graph(in_size, out_size)
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(g.numpy(), e)


@pytest.mark.parametrize("window, original", [((0, 0, 128, 128), (128, 128)),
                                              ((21, 0, 107, 128), (60, 90)),
                                              ((0, 63, 128, 64), (2000, 16)),
                                              ((32, 0, 96, 128), (200, 400))])
def test_unmold_boxes(window, original):
    rng = np.random.default_rng(1)
    boxes = np.sort(rng.uniform(-0.1, 1.1, (50, 2, 2)), axis=1).transpose(0, 2, 1)
    boxes = boxes.reshape(50, 4)[:, [0, 1, 2, 3]].astype(np.float32)
    boxes = boxes[:, [0, 2, 1, 3]]
    expected = transform.unmold_boxes(boxes, window, (128, 128), original)
    got = serving.unmold_boxes_graph(boxes, window, (128, 128), original)
    np.testing.assert_array_equal(got.numpy(), expected)


def test_paste_masks():
    rng = np.random.default_rng(2)
    masks = rng.uniform(0, 1, (6, 28, 28)).astype(np.float32)
    boxes = np.array([[10, 12, 50, 70], [0, 0, 28, 28], [-5, 80, 30, 130], [40, 40, 40, 60],
                      [55, 3, 60, 4], [0, 0, 1, 1]], np.int32)
    expected = transform.paste_masks(masks, boxes, (60, 100))
    got = serving.paste_masks_graph(masks, boxes, tf.constant([60, 100]))
    np.testing.assert_array_equal(got.numpy(), np.moveaxis(expected, -1, 0).astype(np.uint8))


def test_paste_no_masks():
    got = serving.paste_masks_graph(tf.zeros([0, 28, 28]), tf.zeros([0, 4], tf.int32),
                                    tf.constant([60, 100]))
    assert got.shape == (0, 60, 100)


def test_unmold_roi_detections_in_fixed_slots():
    rng = np.random.default_rng(3)
    detections = np.zeros((8, 6), np.float32)
    boxes = np.array([[0.1, 0.1, 0.5, 0.6], [0.3, 0.2, 0.9, 0.95], [0.0, 0.2, 0.05, 0.4],
                      [0.0, 0.0, 1.0, 1.0], [0.4, 0.4, 0.7, 0.5]], np.float32)
    detections[:5, :4] = boxes
    detections[:5, 4] = [1, 3, 2, 1, 2]
    detections[:5, 5] = [0.9, 0.8, 0.7, 0.6, 0.5]
    detections[6] = [0.1, 0.1, 0.4, 0.4, 1, 0.4]   # after the first empty row: ignored
    masks = rng.uniform(0, 1, (8, 28, 28, 4)).astype(np.float32)
    window, original = (16, 0, 112, 128), (150, 200)
    boxes_e, ids_e, scores_e, masks_e = transform.unmold_roi_detections(
        detections, masks, original, (128, 128), window)
    out = serving.unmold_roi_graph(tf.constant(detections), tf.constant(masks),
                                   tf.constant(window), tf.constant([128, 128]),
                                   tf.constant(original))
    n = int(out["num_detections"])
    assert n == len(ids_e) == 4     # the box in the padding is dropped, as detect() does
    np.testing.assert_array_equal(out["boxes"].numpy()[:n], boxes_e)
    np.testing.assert_array_equal(out["class_ids"].numpy()[:n], ids_e)
    np.testing.assert_array_equal(out["scores"].numpy()[:n], scores_e)
    np.testing.assert_array_equal(out["masks"].numpy()[:n],
                                  np.moveaxis(masks_e, -1, 0).astype(np.uint8))
    assert not out["boxes"].numpy()[n:].any() and not out["masks"].numpy()[n:].any()
    assert out["masks"].shape == (8, 150, 200)
