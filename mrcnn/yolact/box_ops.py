"""
The TensorFlow twins of ``mrcnn.yolact.box_utils`` that run in YOLACT's
inference graph, batched and with fixed output sizes: ``decode_graph``,
``crop_graph`` and ``fast_nms_graph``. Same frames as box_utils (relative,
y first).
"""

import tensorflow as tf

from mrcnn.yolact.box_utils import VARIANCES


def decode_graph(deltas, priors):
    """[..., N, (dy, dx, dh, dw)] on [N, (cy, cx, h, w)] -> [..., N,
    (y1, x1, y2, x2)] float32 (box_utils.decode)."""
    deltas = tf.cast(deltas, tf.float32)
    priors = tf.cast(priors, tf.float32)
    centre = priors[..., :2] + deltas[..., :2] * VARIANCES[0] * priors[..., 2:]
    size = priors[..., 2:] * tf.exp(deltas[..., 2:] * VARIANCES[1])
    return tf.concat([centre - size / 2, centre + size / 2], axis=-1)


def crop_graph(masks, boxes, padding=1):
    """[..., h, w, N] masks cropped to [..., N, (y1, x1, y2, x2)] relative
    boxes (box_utils.crop: ordered corners, ``padding`` pixels, clipped)."""
    shape = tf.shape(masks)
    h = tf.cast(shape[-3], tf.float32)
    w = tf.cast(shape[-2], tf.float32)
    boxes = tf.cast(boxes, tf.float32)

    def bounds(low, high, size):
        low, high = low * size, high * size
        low, high = tf.minimum(low, high), tf.maximum(low, high)
        return tf.maximum(low - padding, 0.0), tf.minimum(high + padding, size)

    y1, y2 = bounds(boxes[..., 0], boxes[..., 2], h)
    x1, x2 = bounds(boxes[..., 1], boxes[..., 3], w)
    rows = tf.range(h)[:, None, None]
    cols = tf.range(w)[None, :, None]
    # [..., 1, 1, N] bounds against [h, 1, 1] rows and [1, w, 1] columns.
    keep = ((rows >= y1[..., None, None, :]) & (rows < y2[..., None, None, :])
            & (cols >= x1[..., None, None, :]) & (cols < x2[..., None, None, :]))
    return masks * tf.cast(keep, masks.dtype)


def pairwise_iou_graph(boxes):
    """[..., K, 4] -> [..., K, K] IoU of every pair (box_utils.jaccard)."""
    a = boxes[..., :, None, :]
    b = boxes[..., None, :, :]
    extent = tf.maximum(tf.minimum(a[..., 2:], b[..., 2:]) - tf.maximum(a[..., :2], b[..., :2]),
                        0.0)
    inter = extent[..., 0] * extent[..., 1]
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    union = area[..., :, None] + area[..., None, :] - inter
    return tf.math.divide_no_nan(inter, union)


def fast_nms_graph(boxes, scores, iou_threshold=0.5, top_k=200, max_detections=100):
    """Fast NMS of one image in the graph (box_utils.fast_nms).

    boxes: [P, 4] candidate boxes; scores: [C, P] class scores without the
    background (P may be 0). Returns (boxes [D, 4], class_ids [D] int32,
    scores [D], prior indices [D] int32, valid [D] bool), best first, with
    D = max_detections; rows past the kept detections are zero and not
    valid.
    """
    boxes = tf.cast(boxes, tf.float32)
    scores = tf.cast(scores, tf.float32)
    num_classes = tf.shape(scores)[0]
    k = tf.minimum(top_k, tf.shape(scores)[1])
    sorted_scores, order = tf.math.top_k(scores, k=k, sorted=True)      # [C, K]
    candidates = tf.gather(boxes, order)                                 # [C, K, 4]
    iou = pairwise_iou_graph(candidates)
    # Upper triangle without the diagonal: each candidate against the
    # better-scored ones of its class; a column's max decides.
    iou = tf.linalg.band_part(iou, 0, -1) - tf.linalg.band_part(iou, 0, 0)
    keep = tf.reduce_max(tf.concat([iou, tf.zeros_like(iou[:, :1])], axis=1), axis=1) \
        <= iou_threshold
    classes = tf.broadcast_to(tf.range(num_classes)[:, None], tf.shape(order))
    flat_scores = tf.where(keep, sorted_scores, -1.0)
    flat_scores = tf.reshape(flat_scores, [-1])
    count = tf.minimum(max_detections, tf.size(flat_scores))
    best_scores, best = tf.math.top_k(flat_scores, k=count, sorted=True)
    valid = best_scores >= 0
    pad = max_detections - count

    def take(values, default):
        taken = tf.gather(tf.reshape(values, tf.concat([[-1], tf.shape(values)[2:]], 0)), best)
        taken = tf.where(tf.reshape(valid, [-1] + [1] * (len(taken.shape) - 1)), taken,
                         tf.zeros_like(taken) + default)
        paddings = tf.concat([[[0, pad]], tf.zeros([len(taken.shape) - 1, 2], tf.int32)], 0)
        return tf.pad(taken, paddings)

    out_boxes = take(candidates, 0.0)
    out_classes = take(classes + 1, 0)
    out_scores = take(sorted_scores, 0.0)
    out_indices = take(order, 0)
    out_valid = tf.pad(valid, [[0, pad]])
    return out_boxes, out_classes, out_scores, out_indices, out_valid
