"""
Graph operations that TensorFlow Lite's built-in kernels run, for the
TFLite export (``export(model, path, format="tflite")``).

TensorFlow Lite runs a fixed set of built-in operations; anything else
needs the "Flex" delegate, which the TFLite runtimes of the pip packages
and of most phones do not have. Four things in the models are not built
in: ``tf.image.crop_and_resize`` (ROIAlign), ``combined_non_max_suppression``
(per-class NMS), graph loops over the images of a batch or the detections
of an image (``tf.map_fn``: tensor lists), and float64 arithmetic.

While ``builtin_ops()`` is active (the TFLite export traces the model
inside it) the functions here compute the same values with built-in
operations only; outside it they are exactly the TensorFlow operations
they stand for, so training, ``detect()`` and the SavedModel export do not
change:

=====================  ====================================================
``map_fn``             ``tf.map_fn``; unrolled over a static leading axis
``crop_and_resize``    ``tf.image.crop_and_resize`` (bilinear); by gathers
``class_nms``          per-class greedy NMS of ROIs that each have one
                       class (``combined_non_max_suppression`` in the
                       detection layer); one NMS with the classes moved
                       apart
``nms_padded``         ``NonMaxSuppressionV4``; boxes without area widened
                       (TFLite's kernel returns such a box repeatedly)
=====================  ====================================================

``serving`` also checks ``active()``: it pastes masks without a loop over
them and computes boxes in float32 (TFLite has no float64 arithmetic).
"""

import contextlib
import threading

import tensorflow as tf

_STATE = threading.local()


@contextlib.contextmanager
def builtin_ops():
    """Trace with TFLite built-in operations only (see the module docstring)."""
    previous = getattr(_STATE, "active", False)
    _STATE.active = True
    try:
        yield
    finally:
        _STATE.active = previous


def active():
    """True inside ``builtin_ops()``."""
    return getattr(_STATE, "active", False)


def map_fn(fn, elems, fn_output_signature):
    """``tf.map_fn(fn, elems, fn_output_signature=...)``. Inside
    ``builtin_ops()`` the loop is unrolled, which needs the leading axis of
    ``elems`` to be static (the TFLite export fixes the batch size); a
    ValueError says so otherwise."""
    if not active():
        return tf.map_fn(fn, elems, fn_output_signature=fn_output_signature)
    flat = tf.nest.flatten(elems)
    count = flat[0].shape[0]
    if count is None:
        raise ValueError("A TFLite export needs a fixed batch size: a loop over a dynamic "
                         "axis of {} cannot be unrolled".format(flat[0]))
    results = [fn(tf.nest.pack_sequence_as(elems, [x[i] for x in flat]))
               for i in range(count)]
    return tf.nest.map_structure(lambda *xs: tf.stack(xs), *results)


def crop_and_resize(image, boxes, box_indices, crop_size):
    """``tf.image.crop_and_resize(image, boxes, box_indices, crop_size,
    method="bilinear")``: image [B, H, W, C], boxes [M, (y1, x1, y2, x2)]
    normalised (corners at pixel centres 0 and H-1), box_indices [M] ->
    [M, crop_h, crop_w, C] float32; samples outside the image are 0.

    Inside ``builtin_ops()``: the same sampling (one sample at the box's
    centre along an axis of crop size 1) by four gathers of the flattened
    feature map."""
    if not active():
        return tf.image.crop_and_resize(image, boxes, box_indices, crop_size,
                                        method="bilinear")
    image = tf.cast(image, tf.float32)
    boxes = tf.cast(boxes, tf.float32)
    shape = tf.shape(image)
    height, width, channels = shape[1], shape[2], shape[3]
    crop_h, crop_w = int(crop_size[0]), int(crop_size[1])

    def samples(start, end, size, count):
        # [M, count] positions in pixels along one axis.
        extent = tf.cast(size - 1, tf.float32)
        if count > 1:
            steps = tf.range(count, dtype=tf.float32) / float(count - 1)
            return (start[:, None] + (end - start)[:, None] * steps[None]) * extent
        return (0.5 * (start + end) * extent)[:, None]

    ys = samples(boxes[:, 0], boxes[:, 2], height, crop_h)               # [M, ch]
    xs = samples(boxes[:, 1], boxes[:, 3], width, crop_w)                # [M, cw]
    inside_y = (ys >= 0.0) & (ys <= tf.cast(height - 1, tf.float32))
    inside_x = (xs >= 0.0) & (xs <= tf.cast(width - 1, tf.float32))
    y0f, x0f = tf.floor(ys), tf.floor(xs)
    wy, wx = ys - y0f, xs - x0f
    y0 = tf.clip_by_value(tf.cast(y0f, tf.int32), 0, height - 1)
    x0 = tf.clip_by_value(tf.cast(x0f, tf.int32), 0, width - 1)
    y1 = tf.minimum(y0 + 1, height - 1)
    x1 = tf.minimum(x0 + 1, width - 1)
    flat = tf.reshape(image, [-1, channels])
    base = tf.cast(box_indices, tf.int32)[:, None, None] * (height * width)

    def corner(rows, cols):
        index = base + rows[:, :, None] * width + cols[:, None, :]       # [M, ch, cw]
        return tf.gather(flat, index)                                   # [M, ch, cw, C]

    wy = wy[:, :, None, None]
    wx = wx[:, None, :, None]
    top = corner(y0, x0) * (1.0 - wx) + corner(y0, x1) * wx
    bottom = corner(y1, x0) * (1.0 - wx) + corner(y1, x1) * wx
    crops = top * (1.0 - wy) + bottom * wy
    inside = tf.cast(inside_y[:, :, None] & inside_x[:, None, :], tf.float32)
    return crops * inside[..., None]


def nms_padded(boxes, scores, max_output, iou_threshold, score_threshold):
    """``NonMaxSuppressionV4`` with ``pad_to_max_output_size``: (indices
    [max_output] int32, highest score first, zero padded; count int32).

    Inside ``builtin_ops()`` boxes thinner than 1e-4 along an axis are
    first widened to 1e-4 there: TFLite's kernel selects a box without area
    again and again (it cannot suppress itself: IoU 0), where TensorFlow's
    selects it once. Two identical boxes without area then suppress each
    other, which TensorFlow's would not."""
    if active():
        boxes = tf.concat([boxes[:, :2], tf.maximum(boxes[:, 2:], boxes[:, :2] + 1e-4)],
                          axis=1)
    keep, count = tf.raw_ops.NonMaxSuppressionV4(
        boxes=boxes, scores=scores, max_output_size=max_output,
        iou_threshold=iou_threshold, score_threshold=score_threshold,
        pad_to_max_output_size=True)
    return keep, count


def class_nms(boxes, scores, class_ids, max_output, iou_threshold):
    """Greedy NMS of one image's boxes within each class, best first.

    boxes [N, 4] normalised (inside [0, 1]), scores [N] (below -0.5: not
    a candidate), class_ids [N] int32, each box having one class. Returns
    (indices [max_output] int32 into N, highest score first, zero padded;
    count int32): the boxes that no better box of their class overlaps by
    more than ``iou_threshold``, at most ``max_output``: what
    ``tf.image.combined_non_max_suppression`` keeps for one class column
    per box. The classes are moved 2 apart so one NMS (a TFLite built-in)
    never compares boxes of different classes."""
    shifted = boxes + 2.0 * tf.cast(class_ids, tf.float32)[:, None]
    return nms_padded(shifted, scores, max_output, iou_threshold, -0.5)
