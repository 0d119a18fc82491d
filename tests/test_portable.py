"""mrcnn.portable: inside builtin_ops() each function computes what the
TensorFlow operation it stands for computes (checked against that
operation, or the NumPy post-processing), and outside it is that
operation."""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn import portable, serving, transform


def test_builtin_ops_is_scoped_and_restored_after_errors():
    assert not portable.active()
    with pytest.raises(KeyError):
        with portable.builtin_ops():
            assert portable.active()
            with portable.builtin_ops():
                assert portable.active()
            assert portable.active()
            raise KeyError("inside")
    assert not portable.active()


@pytest.mark.parametrize("crop_size", [(7, 7), (14, 5), (1, 1), (1, 4)])
def test_crop_and_resize_equals_tensorflow(crop_size):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 9, 13, 3)).astype(np.float32)
    # Boxes inside, partly and wholly outside the image, flipped, and one
    # whose corners sit exactly on pixel centres.
    boxes = np.concatenate([rng.uniform(-0.3, 1.3, (30, 4)),
                            [[0.0, 0.0, 1.0, 1.0], [0.25, 0.5, 0.75, 1.0],
                             [0.8, 0.9, 0.1, 0.2], [1.5, 1.5, 2.0, 2.0]]]).astype(np.float32)
    indices = rng.integers(0, 2, len(boxes)).astype(np.int32)
    expected = tf.image.crop_and_resize(image, boxes, indices, crop_size).numpy()
    assert np.array_equal(portable.crop_and_resize(image, boxes, indices, crop_size).numpy(),
                          expected)
    with portable.builtin_ops():
        got = portable.crop_and_resize(image, boxes, indices, crop_size).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert (got[-1] == 0).all()          # wholly outside: the extrapolation value 0


def test_class_nms_equals_combined_non_max_suppression():
    rng = np.random.default_rng(1)
    n, classes, max_out = 60, 4, 12
    corners = rng.uniform(0, 0.8, (n, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(0.05, 0.3, (n, 2))], axis=1)
    boxes = np.clip(boxes, 0, 1).astype(np.float32)
    class_ids = rng.integers(1, classes, n).astype(np.int32)
    scores = rng.uniform(0, 1, n).astype(np.float32)
    scores[::7] = -1.0                   # not candidates
    per_class = np.full((n, classes - 1), -1.0, np.float32)
    per_class[np.arange(n), class_ids - 1] = scores
    nms = tf.image.combined_non_max_suppression(
        boxes[None, :, None, :], per_class[None], max_output_size_per_class=max_out,
        max_total_size=max_out, iou_threshold=0.3, score_threshold=-0.5, clip_boxes=False)
    count = int(nms.valid_detections[0])
    keep, got_count = portable.class_nms(boxes, scores, class_ids, max_out, 0.3)
    assert int(got_count) == count == max_out   # enough survivors to fill the slots
    keep = keep.numpy()[:count]
    np.testing.assert_allclose(boxes[keep], nms.nmsed_boxes[0, :count].numpy())
    np.testing.assert_array_equal(class_ids[keep], nms.nmsed_classes[0, :count].numpy() + 1)
    np.testing.assert_allclose(scores[keep], nms.nmsed_scores[0, :count].numpy())
    # The same boxes under one class suppress each other: fewer survive.
    _, one_class = portable.class_nms(boxes, scores, np.ones(n, np.int32), n, 0.3)
    _, all_classes = portable.class_nms(boxes, scores, class_ids, n, 0.3)
    assert int(one_class) < int(all_classes)


def test_map_fn_unrolls_a_static_axis_only():
    elems = (tf.constant([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), tf.constant([1, 2, 3]))

    def fn(args):
        row, k = args
        return row * tf.cast(k, tf.float32), tf.reduce_sum(row)

    signature = (tf.TensorSpec([2], tf.float32), tf.TensorSpec([], tf.float32))
    expected = tf.map_fn(fn, elems, fn_output_signature=signature)
    with portable.builtin_ops():
        got = portable.map_fn(fn, elems, fn_output_signature=signature)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a.numpy(), b.numpy())

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    def dynamic(x):
        return portable.map_fn(tf.reduce_sum, x, fn_output_signature=tf.float32)

    with portable.builtin_ops():
        with pytest.raises(ValueError, match="needs a fixed batch size"):
            dynamic.get_concrete_function()


def test_vectorized_mask_pasting_equals_numpy():
    rng = np.random.default_rng(2)
    masks = rng.uniform(0, 1, (9, 28, 28)).astype(np.float32)
    # Inside, crossing each edge, thin, without area, and outside.
    boxes = np.array([[5, 6, 30, 40], [-5, -8, 12, 10], [20, 30, 60, 90], [10, 10, 11, 50],
                      [10, 10, 10, 20], [0, 0, 50, 70], [45, 60, 49, 69], [60, 80, 70, 90],
                      [3, 3, 4, 4]], np.int32)
    expected = np.moveaxis(transform.paste_masks(masks, boxes, (50, 70)), -1, 0)
    got = serving.paste_masks_vectorized_graph(masks, boxes, tf.constant([50, 70])).numpy()
    assert got.shape == expected.shape and got.dtype == np.uint8
    # float32 weights: a pixel may flip only where the value is at 0.5 to
    # float32 precision; these random masks have none.
    np.testing.assert_array_equal(got.astype(bool), expected)
    with portable.builtin_ops():
        dispatched = serving.paste_masks_graph(masks, boxes, tf.constant([50, 70])).numpy()
    np.testing.assert_array_equal(dispatched, got)


def test_nms_without_area_in_tflite_selects_each_box_once():
    """TFLite's NonMaxSuppressionV4 returns a box without area over and
    over (it cannot suppress itself); nms_padded widens such boxes while
    tracing for TFLite, so the converted kernel keeps what TensorFlow's
    keeps."""
    boxes = np.array([[0.2, 0.0, 0.3, 0.0], [0.5, 0.5, 0.9, 0.9], [0.0, 0.0, 0.4, 0.1],
                      [0.6, 0.6, 0.9, 0.9]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)

    def nms(b, s):
        keep, count = portable.nms_padded(b, s, 5, 0.3, -0.5)
        return {"keep": keep, "count": count}

    expected = nms(boxes, scores)
    np.testing.assert_array_equal(expected["keep"].numpy(), [0, 1, 2, 0, 0])
    function = tf.function(nms, input_signature=[tf.TensorSpec([4, 4]), tf.TensorSpec([4])])
    with portable.builtin_ops():
        graph = function.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([graph], tf.Module())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    runner = tf.lite.Interpreter(model_content=converter.convert()).get_signature_runner()
    got = runner(b=boxes, s=scores)
    np.testing.assert_array_equal(got["keep"], [0, 1, 2, 0, 0])
    assert int(got["count"]) == 3
