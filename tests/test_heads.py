"""Head layers: the fast full-window convolution and ROI folding."""
import numpy as np


def test_full_window_conv_equals_conv2d():
    import keras
    from mrcnn.maskrcnn.heads import FullWindowConv2D
    x = np.random.default_rng(1).normal(size=(5, 7, 7, 6)).astype(np.float32)
    fast = FullWindowConv2D(4, (7, 7), padding="valid", activation="relu")
    plain = keras.layers.Conv2D(4, (7, 7), padding="valid", activation="relu")
    fast.build(x.shape)
    plain.build(x.shape)
    plain.set_weights(fast.get_weights())
    np.testing.assert_allclose(fast(x).numpy(), plain(x).numpy(), rtol=1e-5, atol=1e-5)
    assert [w.shape for w in fast.weights] == [(7, 7, 6, 4), (4,)]
    # A larger input falls back to the ordinary convolution.
    big = np.random.default_rng(2).normal(size=(2, 9, 9, 6)).astype(np.float32)
    np.testing.assert_allclose(fast(big).numpy(), plain(big).numpy(), rtol=1e-5, atol=1e-5)


def test_roi_distributed_folds_rois_into_the_batch():
    import keras
    from mrcnn.roi_heads import RoiDistributed
    x = np.random.default_rng(3).normal(size=(2, 5, 4, 4, 3)).astype(np.float32)
    layer = RoiDistributed(keras.layers.Conv2D(2, 3, padding="same"), name="mrcnn_mask_conv1")
    out = layer(x).numpy()
    assert out.shape == (2, 5, 4, 4, 2)
    inner = layer.layer
    for b in range(2):
        for r in range(5):
            np.testing.assert_allclose(out[b, r], inner(x[b, r][None]).numpy()[0],
                                       rtol=1e-5, atol=1e-5)
    # The wrapper's weights are the wrapped layer's (as TimeDistributed's were).
    assert [w.shape for w in layer.weights] == [(3, 3, 3, 2), (2,)]
    restored = RoiDistributed.from_config(layer.get_config())
    assert restored.name == "mrcnn_mask_conv1"


def test_mask_head_rois_are_the_positive_prefix_and_the_mask_loss_is_unchanged():
    import tensorflow as tf
    from mrcnn.roi_heads import PositiveRois, mrcnn_mask_loss_graph
    rng = np.random.RandomState(0)
    rois = rng.rand(2, 8, 4).astype(np.float32)
    # Positives first (DetectionTargetLayer's order): 3 in image 0, 1 in image 1.
    class_ids = np.array([[2, 1, 3, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0]], np.int32)
    kept = PositiveRois(max_count=4)([rois, class_ids]).numpy()
    np.testing.assert_array_equal(kept, rois[:, :3])
    # No positives at all: one slot (the heads keep a non-empty batch).
    assert PositiveRois(max_count=4)([rois, np.zeros_like(class_ids)]).shape == (2, 1, 4)
    # More positives than max_count: capped.
    assert PositiveRois(max_count=2)([rois, class_ids]).shape == (2, 2, 4)
    # The mask loss over the kept slots equals the loss over every slot.
    targets = (rng.rand(2, 8, 6, 6) > 0.5).astype(np.float32)
    pred = rng.uniform(0.05, 0.95, (2, 8, 6, 6, 4)).astype(np.float32)
    full = mrcnn_mask_loss_graph(targets, class_ids, pred)
    cut = mrcnn_mask_loss_graph(targets, class_ids, tf.constant(pred[:, :kept.shape[1]]))
    np.testing.assert_allclose(float(cut), float(full), rtol=1e-6)
    # By hand: mean BCE of each positive ROI's own class mask.
    terms = []
    for b, i in zip(*np.nonzero(class_ids > 0)):
        p = pred[b, i, :, :, class_ids[b, i]]
        t = targets[b, i]
        terms.append(-(t * np.log(p) + (1 - t) * np.log(1 - p)).mean())
    np.testing.assert_allclose(float(full), np.mean(terms), rtol=1e-4)


def test_detection_masks_run_on_the_detected_slots_and_zero_the_rest():
    """DetectedRois keeps the slots up to the largest detection count of the
    batch; PadDetectionMasks restores every slot with zeros where there is
    no detection. Inside portable.builtin_ops() every slot is kept."""
    from mrcnn import portable
    from mrcnn.roi_heads import DetectedRois, PadDetectionMasks
    rng = np.random.RandomState(1)
    detections = np.zeros((2, 6, 6), np.float32)
    detections[:, :, :4] = rng.rand(2, 6, 4)
    detections[0, :3, 4] = [2, 1, 3]          # 3 detections in image 0
    detections[1, :1, 4] = [1]                # 1 in image 1
    detections[..., 5] = detections[..., 4] > 0
    boxes = DetectedRois()(detections).numpy()
    np.testing.assert_array_equal(boxes, detections[:, :3, :4])
    with portable.builtin_ops():
        assert DetectedRois()(detections).shape == (2, 6, 4)
    # No detection anywhere: one slot, its mask zeroed below.
    empty = np.zeros_like(detections)
    assert DetectedRois()(empty).shape == (2, 1, 4)
    masks = rng.uniform(0.1, 1, (2, 3, 4, 4, 2)).astype(np.float32)
    padded = PadDetectionMasks()([masks, detections]).numpy()
    assert padded.shape == (2, 6, 4, 4, 2)
    np.testing.assert_array_equal(padded[0, :3], masks[0])
    np.testing.assert_array_equal(padded[1, :1], masks[1, :1])
    assert not padded[0, 3:].any() and not padded[1, 1:].any()
    assert not PadDetectionMasks()([masks[:, :1], empty]).numpy().any()
