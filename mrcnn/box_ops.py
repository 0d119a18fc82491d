"""
Box maths in TensorFlow: the graph twins of ``mrcnn.boxes`` (NumPy), same
conventions. Boxes are ``[..., (y1, x1, y2, x2)]``, normalised (see
``boxes.norm_boxes``) unless a function says pixels; deltas are ``(dy, dx,
log(dh), log(dw))``.
"""

import numpy as np
import tensorflow as tf


# Largest log-scale change applied to a box: a box may grow at most
# 1000/16 times. Untrained or diverging heads can predict huge log(dh);
# exp() of those overflows to inf and the NaN boxes poison every loss.
BBOX_LOG_SCALE_CLIP = float(np.log(1000.0 / 16))


def apply_box_deltas_graph(boxes, deltas):
    """Applies the given deltas to the given boxes.

    boxes: [..., (y1, x1, y2, x2)] boxes to update
    deltas: [..., (dy, dx, log(dh), log(dw))] refinements to apply

    Returns: [..., (y1, x1, y2, x2)], same leading shape.

    Differs from the original: log(dh) and log(dw) are clipped at
    BBOX_LOG_SCALE_CLIP (log(1000/16), as in torchvision), so exp() cannot
    overflow. Deltas from a trained model are far below the clip.
    """
    height = boxes[..., 2] - boxes[..., 0]
    width = boxes[..., 3] - boxes[..., 1]
    center_y = boxes[..., 0] + 0.5 * height
    center_x = boxes[..., 1] + 0.5 * width
    center_y += deltas[..., 0] * height
    center_x += deltas[..., 1] * width
    height *= tf.exp(tf.minimum(deltas[..., 2], BBOX_LOG_SCALE_CLIP))
    width *= tf.exp(tf.minimum(deltas[..., 3], BBOX_LOG_SCALE_CLIP))
    y1 = center_y - 0.5 * height
    x1 = center_x - 0.5 * width
    y2 = y1 + height
    x2 = x1 + width
    return tf.stack([y1, x1, y2, x2], axis=-1, name="apply_box_deltas_out")


def clip_boxes_graph(boxes, window):
    """Clip boxes into a window.

    boxes: [..., (y1, x1, y2, x2)]
    window: (y1, x1, y2, x2) broadcastable to boxes, e.g. [4] or [batch, 1, 4]

    Returns: boxes with every coordinate inside the window.
    """
    window = tf.cast(window, boxes.dtype)
    low = tf.stack([window[..., 0], window[..., 1], window[..., 0], window[..., 1]], axis=-1)
    high = tf.stack([window[..., 2], window[..., 3], window[..., 2], window[..., 3]], axis=-1)
    return tf.minimum(tf.maximum(boxes, low), high, name="clipped_boxes")


def norm_boxes_graph(boxes, shape):
    """Converts boxes from pixel coordinates to normalized coordinates.
    boxes: [..., (y1, x1, y2, x2)] in pixel coordinates
    shape: [..., (height, width)] in pixels

    Note: In pixel coordinates (y2, x2) is outside the box. But in normalized
    coordinates it's inside the box.

    Returns:
        [..., (y1, x1, y2, x2)] in normalized coordinates
    """
    h, w = tf.split(tf.cast(shape, tf.float32), 2, axis=-1)
    scale = tf.concat([h, w, h, w], axis=-1) - tf.constant(1.0)
    shift = tf.constant([0., 0., 1., 1.])
    return tf.math.divide(tf.cast(boxes, tf.float32) - shift, scale)


def denorm_boxes_graph(boxes, shape):
    """Converts boxes from normalized coordinates to pixel coordinates.
    boxes: [..., (y1, x1, y2, x2)] in normalized coordinates
    shape: [..., (height, width)] in pixels

    Returns:
        [..., (y1, x1, y2, x2)] int32 in pixel coordinates
    """
    h, w = tf.split(tf.cast(shape, tf.float32), 2, axis=-1)
    scale = tf.concat([h, w, h, w], axis=-1) - tf.constant(1.0)
    shift = tf.constant([0., 0., 1., 1.])
    return tf.cast(tf.round(tf.math.multiply(boxes, scale) + shift), tf.int32)


def overlaps_graph(boxes1, boxes2):
    """Computes IoU overlaps between two sets of boxes.
    boxes1, boxes2: [N, (y1, x1, y2, x2)] and [M, (y1, x1, y2, x2)].

    Returns: [N, M] IoU. Empty inputs give an empty matrix.
    """
    b1 = boxes1[:, None, :]
    b2 = boxes2[None, :, :]
    y1 = tf.maximum(b1[..., 0], b2[..., 0])
    x1 = tf.maximum(b1[..., 1], b2[..., 1])
    y2 = tf.minimum(b1[..., 2], b2[..., 2])
    x2 = tf.minimum(b1[..., 3], b2[..., 3])
    intersection = tf.maximum(x2 - x1, 0) * tf.maximum(y2 - y1, 0)
    area1 = (b1[..., 2] - b1[..., 0]) * (b1[..., 3] - b1[..., 1])
    area2 = (b2[..., 2] - b2[..., 0]) * (b2[..., 3] - b2[..., 1])
    union = area1 + area2 - intersection
    return tf.math.divide_no_nan(intersection, union)


def trim_zeros_graph(boxes, name='trim_zeros'):
    """Often boxes are represented with matrices of shape [N, 4] and
    are padded with zeros. This removes zero boxes.

    boxes: [N, 4] matrix of boxes.
    non_zeros: [N] a 1D boolean mask identifying the rows to keep
    """
    non_zeros = tf.cast(tf.reduce_sum(tf.abs(boxes), axis=1), tf.bool)
    boxes = tf.boolean_mask(boxes, non_zeros, name=name)
    return boxes, non_zeros


def box_refinement_graph(box, gt_box):
    """Compute refinement needed to transform box to gt_box (TensorFlow).
    box and gt_box are [N, (y1, x1, y2, x2)]

    Returns: [N, (dy, dx, log(dh), log(dw))] float32 tensor. Inside the
    graph nothing is validated: zero-area boxes give Inf/NaN (callers pass
    only positive ROIs matched to real GT boxes).
    """
    box = tf.cast(box, tf.float32)
    gt_box = tf.cast(gt_box, tf.float32)

    height = box[:, 2] - box[:, 0]
    width = box[:, 3] - box[:, 1]
    center_y = box[:, 0] + 0.5 * height
    center_x = box[:, 1] + 0.5 * width

    gt_height = gt_box[:, 2] - gt_box[:, 0]
    gt_width = gt_box[:, 3] - gt_box[:, 1]
    gt_center_y = gt_box[:, 0] + 0.5 * gt_height
    gt_center_x = gt_box[:, 1] + 0.5 * gt_width

    dy = (gt_center_y - center_y) / height
    dx = (gt_center_x - center_x) / width
    dh = tf.math.log(gt_height / height)
    dw = tf.math.log(gt_width / width)

    return tf.stack([dy, dx, dh, dw], axis=1)
