"""Tests for mrcnn.layers: each layer against an independent NumPy
computation, plus get_config round trips."""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn import box_ops, roi_heads, utils
from mrcnn.maskrcnn import detection, rpn
from mrcnn.config import Config


class TinyConfig(Config):
    NAME = "tiny"
    NUM_CLASSES = 4
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    TRAIN_ROIS_PER_IMAGE = 30
    ROI_POSITIVE_RATIO = 0.33
    MASK_SHAPE = [28, 28]
    DETECTION_MAX_INSTANCES = 10
    DETECTION_MIN_CONFIDENCE = 0.5
    DETECTION_NMS_THRESHOLD = 0.3


def meta_for(shape=(128, 128), window=None, num_classes=4, batch=1):
    h, w = shape
    window = window or (0, 0, h, w)
    meta = np.concatenate([[0], [h, w, 3], [h, w, 3], window, [1.0],
                           np.ones(num_classes)]).astype(np.float32)
    return np.tile(meta[None], (batch, 1))


def test_apply_box_deltas_and_clip_match_numpy():
    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, 1, (2, 5, 4)).astype(np.float32)
    boxes[..., 2:] += boxes[..., :2]
    deltas = rng.normal(0, 0.3, (2, 5, 4)).astype(np.float32)
    out = box_ops.apply_box_deltas_graph(boxes, deltas).numpy()
    for b in range(2):
        np.testing.assert_allclose(out[b], utils.apply_box_deltas(boxes[b], deltas[b]),
                                   rtol=1e-5, atol=1e-6)
    clipped = box_ops.clip_boxes_graph(tf.constant(out), tf.constant([[0.1, 0.1, 0.9, 0.9],
                                                                    [0, 0, 1, 1.]])[:, None]).numpy()
    np.testing.assert_allclose(clipped[0], np.clip(out[0], 0.1, 0.9))
    np.testing.assert_allclose(clipped[1], np.clip(out[1], 0, 1))


def test_norm_denorm_boxes_graph_match_utils():
    boxes = np.array([[0, 0, 128, 256], [10, 20, 30, 40]], np.float32)
    norm = box_ops.norm_boxes_graph(boxes, np.array([128, 256])).numpy()
    np.testing.assert_allclose(norm, utils.norm_boxes(boxes, (128, 256)), rtol=1e-6)
    np.testing.assert_array_equal(box_ops.denorm_boxes_graph(norm, np.array([128, 256])).numpy(),
                                  boxes.astype(np.int32))


def test_proposal_layer_matches_numpy_pipeline():
    rng = np.random.default_rng(1)
    anchors = utils.norm_boxes(utils.generate_pyramid_anchors(
        (8, 16, 32, 64, 128), [0.5, 1, 2], [[32, 32], [16, 16], [8, 8], [4, 4], [2, 2]],
        [4, 8, 16, 32, 64], 1), (128, 128))
    n = anchors.shape[0]
    fg = rng.random((2, n)).astype(np.float32)
    probs = np.stack([1 - fg, fg], axis=-1)
    deltas = rng.normal(0, 1, (2, n, 4)).astype(np.float32)
    batch_anchors = np.broadcast_to(anchors, (2, n, 4)).astype(np.float32)
    layer = rpn.ProposalLayer(50, 0.7, pre_nms_limit=400, rpn_bbox_std_dev=[0.1, 0.1, 0.2, 0.2])
    proposals = layer([probs, deltas, batch_anchors]).numpy()
    assert proposals.shape == (2, 50, 4)
    for b in range(2):
        top = np.argsort(-fg[b], kind="stable")[:400]
        boxes = utils.apply_box_deltas(anchors[top], deltas[b, top] * [0.1, 0.1, 0.2, 0.2])
        boxes = np.clip(boxes, 0, 1)
        keep = utils.non_max_suppression(boxes, fg[b, top], 0.7)[:50]
        np.testing.assert_allclose(proposals[b, :len(keep)], boxes[keep], atol=1e-5)
        assert not proposals[b, len(keep):].any()
    stages = layer.stages(probs, deltas, batch_anchors)
    assert stages["pre_nms_anchors"].shape == (2, 400, 4)
    kept = stages["rpn_non_max_suppression"].numpy()
    assert kept.shape == (2, 50) and kept.max() < 400
    restored = rpn.ProposalLayer.from_config(layer.get_config())
    np.testing.assert_allclose(restored([probs, deltas, batch_anchors]).numpy(), proposals)


def test_batched_nms_matches_numpy_per_image_on_clustered_boxes():
    # A trained RPN piles its best boxes on few objects: most boxes are
    # suppressed, the regime where batched tile NMS was slow. Compare with
    # utils.non_max_suppression image by image.
    rng = np.random.default_rng(4)
    batch, count, max_out = 3, 800, 50
    centres = rng.uniform(0.2, 0.8, (batch, 3, 2))
    which = rng.integers(0, 3, (batch, count))
    centre = np.take_along_axis(centres, which[..., None], axis=1)
    size = rng.uniform(0.1, 0.12, (batch, count, 2))
    jitter = rng.normal(0, 0.005, (batch, count, 2))
    boxes = np.concatenate([centre + jitter - size / 2, centre + jitter + size / 2],
                           axis=-1).astype(np.float32)
    scores = rng.random((batch, count)).astype(np.float32)
    keep, valid = rpn.batched_nms_padded(tf.constant(boxes), tf.constant(scores),
                                            max_out, 0.7)
    keep, valid = keep.numpy(), valid.numpy()
    assert keep.shape == (batch, max_out) and keep.dtype == np.int32
    for b in range(batch):
        expected = utils.non_max_suppression(boxes[b], scores[b], 0.7)[:max_out]
        assert valid[b] == len(expected)
        np.testing.assert_array_equal(keep[b, :valid[b]], expected)
        assert np.all(keep[b, valid[b]:] == 0)
    assert valid.max() < max_out  # clustered: fewer survivors than slots


def test_roi_levels_follow_fpn_formula():
    # Image 1024x1024: a 224-pixel box is level 4, 112 -> 3, 56 -> 2 (and
    # smaller stays 2), 448 -> 5, 896 -> 5 (capped).
    sides = np.array([224, 112, 56, 20, 448, 896], np.float32) / 1024
    boxes = np.stack([np.zeros(6), np.zeros(6), sides, sides], axis=1)[None].astype(np.float32)
    levels = roi_heads.roi_levels_graph(boxes, tf.constant([1024., 1024., 3.])).numpy()
    np.testing.assert_array_equal(levels[0], [4, 3, 2, 2, 5, 5])
    expected = np.clip(4 + np.round(np.log2(sides * 1024 / 224)), 2, 5)
    np.testing.assert_array_equal(levels[0], expected)


def test_pyramid_roi_align_crops_from_the_right_level():
    rng = np.random.default_rng(2)
    maps = [rng.random((2, 128 // s, 128 // s, 3)).astype(np.float32) for s in (4, 8, 16, 32)]
    boxes = np.array([[[0.1, 0.1, 0.3, 0.3], [0, 0, 1, 1], [0.2, 0.3, 0.9, 0.7]],
                      [[0.5, 0.5, 0.6, 0.6], [0, 0, 0, 0], [0.0, 0.0, 0.5, 0.5]]], np.float32)
    layer = roi_heads.PyramidROIAlign([7, 7])
    pooled = layer([boxes, meta_for(batch=2)] + maps).numpy()
    assert pooled.shape == (2, 3, 7, 7, 3)
    levels = roi_heads.roi_levels_graph(boxes, tf.constant([128., 128., 3.])).numpy()
    for b in range(2):
        for n in range(3):
            fmap = maps[levels[b, n] - 2]
            expected = tf.image.crop_and_resize(fmap[b:b + 1], boxes[b, n:n + 1], [0], [7, 7])
            np.testing.assert_allclose(pooled[b, n], expected.numpy()[0], rtol=1e-5, atol=1e-6)
    assert roi_heads.PyramidROIAlign.from_config(layer.get_config()).pool_shape == (7, 7)


def detection_target_inputs():
    """One image: two GT boxes, a crowd, proposals around them."""
    gt_boxes = np.zeros((1, 5, 4), np.float32)
    gt_boxes[0, :3] = [[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.8], [0.0, 0.6, 0.3, 0.95]]
    gt_class_ids = np.array([[1, 3, -1, 0, 0]], np.int32)
    masks = np.zeros((1, 64, 64, 5), bool)
    masks[0, 6:26, 6:26, 0] = True
    masks[0, 32:58, 32:51, 1] = True
    masks[0, 0:20, 38:61, 2] = True
    rng = np.random.default_rng(3)
    jitter = rng.normal(0, 0.02, (40, 4)).astype(np.float32)
    proposals = np.concatenate([gt_boxes[0, :2].repeat(20, 0)[:40] + jitter,
                                [[0.0, 0.62, 0.3, 0.95]],          # on the crowd
                                rng.uniform(0, 0.5, (20, 4)).astype(np.float32)])
    proposals[-20:, 2:] += proposals[-20:, :2] + 0.05
    proposals = np.clip(proposals, 0, 1)[None].astype(np.float32)
    return proposals, gt_class_ids, gt_boxes, masks


def test_detection_target_layer_against_numpy():
    tf.random.set_seed(0)
    proposals, gt_class_ids, gt_boxes, masks = detection_target_inputs()
    config = TinyConfig()
    config.USE_MINI_MASK = False
    layer = detection.DetectionTargetLayer(config)
    rois, class_ids, deltas, target_masks = [t.numpy() for t in layer(
        [proposals, gt_class_ids, gt_boxes, masks])]
    assert rois.shape == (1, 30, 4) and class_ids.shape == (1, 30)
    assert deltas.shape == (1, 30, 4) and target_masks.shape == (1, 30, 28, 28)
    positives = np.flatnonzero(class_ids[0] > 0)
    assert len(positives) == int(30 * 0.33)
    real = np.flatnonzero(rois[0].any(axis=1))
    negatives = np.setdiff1d(real, positives)
    non_crowd = gt_boxes[0, :2]
    all_props = proposals[0]
    available = ((utils.compute_overlaps(all_props, non_crowd).max(axis=1) < 0.5)
                 & (utils.compute_overlaps(all_props, gt_boxes[0, 2:3])[:, 0] < 0.001)).sum()
    assert len(negatives) == min(available, int(len(positives) / 0.33) - len(positives))
    overlaps = utils.compute_overlaps(rois[0], non_crowd)
    for i in positives:
        j = overlaps[i].argmax()
        assert overlaps[i, j] >= 0.5
        assert class_ids[0, i] == gt_class_ids[0, j]
        expected = utils.box_refinement(rois[0, i:i + 1], non_crowd[j:j + 1]) / config.BBOX_STD_DEV
        np.testing.assert_allclose(deltas[0, i], expected[0], rtol=1e-4, atol=1e-5)
    crowd = utils.compute_overlaps(rois[0, negatives], gt_boxes[0, 2:3])
    assert (crowd < 0.001).all() and (overlaps[negatives].max(axis=1) < 0.5).all()
    assert not target_masks[0, negatives].any() and not deltas[0, negatives].any()
    assert set(np.unique(target_masks)) <= {0.0, 1.0}
    restored = detection.DetectionTargetLayer.from_config(layer.get_config())
    assert restored.settings == layer.settings


def test_detection_target_masks_for_a_roi_equal_to_its_gt():
    proposals, gt_class_ids, gt_boxes, masks = detection_target_inputs()
    proposals = gt_boxes[:, :1].copy()          # exactly GT 0
    config = TinyConfig()
    config.USE_MINI_MASK = False
    rois, class_ids, deltas, target_masks = [t.numpy() for t in detection.DetectionTargetLayer(
        config)([proposals, gt_class_ids, gt_boxes, masks])]
    assert class_ids[0, 0] == 1 and np.allclose(deltas[0, 0], 0, atol=1e-5)
    expected = tf.image.crop_and_resize(masks[..., :1].transpose(3, 1, 2, 0).astype(np.float32),
                                        gt_boxes[0, :1], [0], [28, 28]).numpy()[0, ..., 0]
    np.testing.assert_array_equal(target_masks[0, 0], np.round(expected))
    # The same with a mini-mask of GT 0 (full box -> whole mini mask).
    config.USE_MINI_MASK = True
    mini = np.zeros((1, 56, 56, 5), bool)
    mini[0, :, :, 0] = True
    _, _, _, mini_targets = [t.numpy() for t in detection.DetectionTargetLayer(config)(
        [proposals, gt_class_ids, gt_boxes, mini])]
    # (crop_and_resize's last sample can land a float ulp outside the mask
    # and read its zero extrapolation value, as in the original.)
    assert mini_targets[0, 0, :-1, :-1].all()


def test_detection_target_layer_without_gt_gives_only_negatives():
    proposals, gt_class_ids, gt_boxes, masks = detection_target_inputs()
    rois, class_ids, deltas, target_masks = detection.DetectionTargetLayer(TinyConfig())(
        [proposals, np.zeros_like(gt_class_ids), np.zeros_like(gt_boxes), masks])
    # No positives means no negatives either (ratio rule), all padding.
    assert not class_ids.numpy().any() and not rois.numpy().any()


def numpy_detections(rois, probs, deltas, window, config):
    """Per-class NMS with utils.non_max_suppression, as the original."""
    class_ids = probs.argmax(axis=1)
    scores = probs[np.arange(len(probs)), class_ids]
    specific = deltas[np.arange(len(probs)), class_ids] * config.BBOX_STD_DEV
    refined = utils.apply_box_deltas(rois, specific)
    refined = np.stack([np.clip(refined[:, 0], window[0], window[2]),
                        np.clip(refined[:, 1], window[1], window[3]),
                        np.clip(refined[:, 2], window[0], window[2]),
                        np.clip(refined[:, 3], window[1], window[3])], axis=1)
    keep = np.flatnonzero((class_ids > 0) & (scores >= config.DETECTION_MIN_CONFIDENCE))
    kept = []
    for c in np.unique(class_ids[keep]):
        ix = keep[class_ids[keep] == c]
        order = utils.non_max_suppression(refined[ix], scores[ix], config.DETECTION_NMS_THRESHOLD)
        kept.extend(ix[order[:config.DETECTION_MAX_INSTANCES]])
    kept = np.array(sorted(kept, key=lambda i: -scores[i])[:config.DETECTION_MAX_INSTANCES], int)
    return np.concatenate([refined[kept], class_ids[kept, None], scores[kept, None]], axis=1)


def test_detection_layer_matches_per_class_numpy_nms():
    rng = np.random.default_rng(4)
    config = TinyConfig()
    n = 60
    centres = rng.uniform(0.2, 0.8, (6, 2))
    rois = np.concatenate([np.repeat(centres, 10, 0) - 0.1, np.repeat(centres, 10, 0) + 0.1], 1)
    rois = (rois + rng.normal(0, 0.02, (n, 4))).astype(np.float32)
    logits = rng.normal(0, 2, (n, 4))
    probs = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    deltas = rng.normal(0, 0.5, (n, 4, 4)).astype(np.float32)
    meta = meta_for(window=(10, 0, 118, 128), batch=2)
    layer = detection.DetectionLayer(config)
    batch = [np.stack([rois, rois[::-1]]), np.stack([probs, probs[::-1]]),
             np.stack([deltas, deltas[::-1]]), meta]
    out = layer(batch).numpy()
    assert out.shape == (2, 10, 6)
    window = utils.norm_boxes(np.array([10, 0, 118, 128]), (128, 128))
    expected = numpy_detections(rois, probs, deltas, window, config)
    assert len(expected) > 2
    count = len(expected)
    np.testing.assert_allclose(out[0, :count], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out[1, :count], expected, rtol=1e-4, atol=1e-5)
    assert not out[:, count:].any()
    assert detection.DetectionLayer.from_config(layer.get_config()).settings == layer.settings


def test_overlaps_graph_matches_utils():
    rng = np.random.default_rng(5)
    b1 = rng.uniform(0, 50, (7, 4)).astype(np.float32)
    b1[:, 2:] += b1[:, :2]
    b2 = b1[::-1] + 3
    np.testing.assert_allclose(box_ops.overlaps_graph(b1, b2).numpy(),
                               utils.compute_overlaps(b1, b2), rtol=1e-5)
    assert box_ops.overlaps_graph(b1, np.zeros((0, 4), np.float32)).shape == (7, 0)


@pytest.mark.parametrize("cls, args", [
    (rpn.ProposalLayer, dict(proposal_count=10, nms_threshold=0.5)),
    (roi_heads.PyramidROIAlign, dict(pool_shape=[14, 14])),
    (detection.DetectionTargetLayer, dict(train_rois_per_image=64)),
    (detection.DetectionLayer, dict(max_instances=7)),
])
def test_layers_serialise(cls, args):
    import keras
    layer = cls(name="x", **args)
    restored = keras.layers.deserialize(keras.layers.serialize(layer),
                                        custom_objects={cls.__name__: cls})
    assert type(restored) is cls and restored.get_config() == layer.get_config()
