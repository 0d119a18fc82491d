"""mrcnn.yolact.targets: bilinear mask downsampling against a NumPy
half-pixel-centre reference, and the per-image targets."""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.yolact import box_utils, targets


def _bilinear_reference(image, out_h, out_w):
    """PyTorch's bilinear interpolation with align_corners=False, written
    out: source coordinate (dst + 0.5) * scale - 0.5, clamped at 0 and the
    last pixel."""
    h, w = image.shape[:2]

    def axis(out, size):
        src = np.maximum((np.arange(out) + 0.5) * size / out - 0.5, 0)
        low = np.minimum(np.floor(src).astype(int), size - 1)
        high = np.minimum(low + 1, size - 1)
        return low, high, src - low

    y0, y1, fy = axis(out_h, h)
    x0, x1, fx = axis(out_w, w)
    top = image[y0][:, x0] * (1 - fx)[None, :, None] + image[y0][:, x1] * fx[None, :, None]
    bottom = image[y1][:, x0] * (1 - fx)[None, :, None] + image[y1][:, x1] * fx[None, :, None]
    return top * (1 - fy)[:, None, None] + bottom * fy[:, None, None]


@pytest.mark.parametrize("size,out", [((550, 550), (138, 138)), ((64, 64), (16, 16)),
                                      ((64, 48), (32, 24)), ((30, 70), (9, 20))])
def test_resize_masks_bilinear_matches_half_pixel_bilinear(size, out):
    rng = np.random.default_rng(0)
    masks = rng.uniform(0, 1, size + (3,)) > 0.6
    got = targets.resize_masks_bilinear(masks, out)
    expected = _bilinear_reference(masks.astype(np.float64), *out)
    # OpenCV computes the interpolation weights in single precision.
    np.testing.assert_allclose(got, expected, atol=1e-4)
    tf_resized = tf.image.resize(masks.astype(np.float32), out, method="bilinear").numpy()
    np.testing.assert_allclose(got, tf_resized, atol=1e-4)
    assert targets.resize_masks_bilinear(masks[..., :1], out).shape == out + (1,)


def _image():
    masks = np.zeros((64, 64, 3), bool)
    masks[8:24, 8:40, 0] = True      # class 1
    masks[32:60, 30:62, 1] = True    # class 2
    masks[0:64, 0:20, 2] = True      # crowd
    boxes = np.array([[8, 8, 24, 40], [32, 30, 60, 62], [0, 0, 64, 20]])
    return np.array([1, 2, -1]), boxes, masks


def test_build_targets_shapes_boxes_masks_and_semantic_maps():
    class_ids, boxes, masks = _image()
    priors = box_utils.make_priors([(8, 8), (4, 4)], [[12], [24]], [1, 0.5, 2], max_size=64)
    t = targets.build_targets((64, 64, 3), class_ids, boxes, masks, priors, (16, 16), (8, 8),
                              num_classes=4, max_instances=4)
    assert t["loc_t"].shape == (len(priors), 4) and t["conf_t"].shape == (len(priors),)
    np.testing.assert_allclose(t["gt_boxes"][:2], boxes[:2] / 64)
    assert not t["gt_boxes"][2:].any()
    # Prototype-size masks: 16 x 16 is a 4x downsample; rows 8..24 -> 2..6.
    assert t["gt_masks"].shape == (16, 16, 4) and t["gt_masks"].dtype == np.uint8
    np.testing.assert_array_equal(np.argwhere(t["gt_masks"][..., 0]).min(0), [2, 2])
    np.testing.assert_array_equal(np.argwhere(t["gt_masks"][..., 0]).max(0), [5, 9])
    assert not t["gt_masks"][..., 2:].any()          # the crowd has no slot
    # Semantic maps: class 1 and 2 channels, nothing for class 3 or the crowd.
    assert t["segm_t"].shape == (8, 8, 3)
    assert t["segm_t"][..., 0].sum() > 0 and t["segm_t"][..., 1].sum() > 0
    assert not t["segm_t"][..., 2].any()
    # Both objects have positive priors with their class; the crowd
    # neutralises background priors over it.
    assert {1, 2} <= set(t["conf_t"][t["conf_t"] > 0].tolist())
    plain = targets.build_targets((64, 64, 3), class_ids[:2], boxes[:2], masks[..., :2], priors,
                                  (16, 16), (8, 8), num_classes=4, max_instances=4)
    assert (t["conf_t"] == -1).sum() > (plain["conf_t"] == -1).sum()


def test_build_targets_without_instances_and_with_too_many():
    priors = box_utils.make_priors([(4, 4)], [[24]], [1], max_size=64)
    empty = targets.build_targets((64, 64, 3), np.zeros(0, int), np.zeros((0, 4)),
                                  np.zeros((64, 64, 0), bool), priors, (16, 16), (8, 8), 3, 2)
    assert not (empty["conf_t"] != 0).any() and not empty["gt_masks"].any()
    class_ids, boxes, masks = _image()
    few = targets.build_targets((64, 64, 3), class_ids[:2], boxes[:2], masks[..., :2], priors,
                                (16, 16), (8, 8), 4, max_instances=1,
                                rng=np.random.default_rng(0))
    assert few["gt_boxes"].shape == (1, 4) and set(few["idx_t"].tolist()) == {0}
    assert len(set(few["conf_t"][few["conf_t"] > 0].tolist())) == 1
