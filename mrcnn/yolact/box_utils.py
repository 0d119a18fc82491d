"""
YOLACT's box utilities, after dbolya/yolact ``layers/box_utils.py``,
``yolact.py`` (``PredictionModule.make_priors``) and
``layers/functions/detection.py`` (``fast_nms``).

Frames (y first, like the rest of the package; the reference is x first):

* boxes: ``[N, (y1, x1, y2, x2)]`` relative to the molded image (pixels /
  side, 0..1; no "-1" as in ``utils.norm_boxes``: the reference divides by
  the image size);
* priors: ``[N, (cy, cx, h, w)]`` in the same frame ("center-size");
* deltas: ``[N, (dy, dx, dh, dw)]`` with variances 0.1 (centre) and 0.2
  (size): ``dy = (cy_gt - cy_p) / (0.1 * h_p)``, ``dh = log(h_gt / h_p) / 0.2``.

NumPy functions build the training targets (``make_priors``, ``point_form``,
``jaccard``, ``match``, ``encode``, ``decode``, ``crop``); their TensorFlow
twins run in the inference graph (``decode_graph``, ``crop_graph``,
``fast_nms_graph``). ``fast_nms`` is the NumPy statement of Fast NMS.
"""

import numpy as np

VARIANCES = (0.1, 0.2)


############################################################
#  Priors
############################################################

def make_priors(feature_shapes, scales, aspect_ratios, max_size=550, square_anchors=True):
    """Prior boxes of every pyramid level, in the order of the prediction
    head's outputs: level -> row -> column -> scale -> ratio.

    feature_shapes: [(height, width)] of each level's feature map.
    scales: per level, the anchor sizes in pixels of a ``max_size`` image
        (yolact_base: [[24], [48], [96], [192], [384]]; YOLACT++: three
        scales per level). The priors are relative to the image, so they
        scale with the input size.
    aspect_ratios: the width / height ratios used on every level and scale
        ([1, 1/2, 2]).
    square_anchors: the reference's quirk (``use_square_anchors``, on in
        every released config, so the released weights line up): the
        height is set to the width, so the "aspect ratios" only change the
        size (by sqrt(ratio)). False gives true aspect ratios
        (h = scale / sqrt(ratio)).

    Centres are ``((row + 0.5) / height, (col + 0.5) / width)`` of the
    feature map, as the reference's, even where the map covers slightly
    more than the image (550 / 8 = 68.75 -> 69 cells).

    Returns [N, (cy, cx, h, w)] float32.
    """
    if len(scales) != len(feature_shapes):
        raise ValueError("make_priors: {} levels of scales for {} feature maps".format(
            len(scales), len(feature_shapes)))
    ratios = np.sqrt(np.asarray(aspect_ratios, dtype=np.float64))
    levels = []
    for (height, width), level_scales in zip(feature_shapes, scales):
        level_scales = np.asarray(level_scales, dtype=np.float64)
        # [scales, ratios] sizes, scale-major as the reference loops.
        w = level_scales[:, None] * ratios[None, :] / max_size
        h = w if square_anchors else level_scales[:, None] / ratios[None, :] / max_size
        cy = (np.arange(height) + 0.5) / height
        cx = (np.arange(width) + 0.5) / width
        grid = np.zeros((height, width, w.size, 4))
        grid[..., 0] = cy[:, None, None]
        grid[..., 1] = cx[None, :, None]
        grid[..., 2] = h.ravel()[None, None, :]
        grid[..., 3] = w.ravel()[None, None, :]
        levels.append(grid.reshape(-1, 4))
    return np.concatenate(levels).astype(np.float32)


def point_form(priors):
    """[N, (cy, cx, h, w)] -> [N, (y1, x1, y2, x2)]."""
    priors = np.asarray(priors)
    return np.concatenate([priors[:, :2] - priors[:, 2:] / 2,
                           priors[:, :2] + priors[:, 2:] / 2], axis=1)


def center_size(boxes):
    """[N, (y1, x1, y2, x2)] -> [N, (cy, cx, h, w)]."""
    boxes = np.asarray(boxes)
    return np.concatenate([(boxes[:, 2:] + boxes[:, :2]) / 2, boxes[:, 2:] - boxes[:, :2]],
                          axis=1)


def jaccard(boxes_a, boxes_b, iscrowd=False):
    """[A, B] overlaps of two sets of [N, (y1, x1, y2, x2)] boxes: IoU, or
    with ``iscrowd`` the intersection over the area of ``boxes_a`` (the
    reference puts the crowd boxes in ``boxes_b``)."""
    a = np.asarray(boxes_a, dtype=np.float64)[:, None, :]
    b = np.asarray(boxes_b, dtype=np.float64)[None, :, :]
    inter = np.prod(np.clip(np.minimum(a[..., 2:], b[..., 2:]) -
                            np.maximum(a[..., :2], b[..., :2]), 0, None), axis=-1)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    if iscrowd:
        return inter / area_a
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area_a + area_b - inter)


############################################################
#  Matching and box coding
############################################################

def match(truths, class_ids, priors, pos_thresh=0.5, neg_thresh=0.4, crowd_boxes=None,
          crowd_iou_threshold=0.7):
    """Assign each prior a ground-truth box, as the reference's ``match``.

    truths: [G, (y1, x1, y2, x2)] relative ground-truth boxes (no crowds).
    class_ids: [G] their class ids (1..NUM_CLASSES-1; the reference takes
        0-based labels and adds 1, which is the same).
    priors: [N, (cy, cx, h, w)] from make_priors.
    crowd_boxes: [C, 4] relative crowd boxes, or None.

    Each prior takes its best-overlapping box. Then every box is forced
    onto one prior, greedily: the (box, prior) pair of highest remaining
    overlap first, that box and that prior then taken out (so a box never
    loses its forced prior to a later one, and ties go to the lowest
    index). A forced prior counts as overlap 2, always positive. Priors
    below ``pos_thresh`` are neutral (-1), below ``neg_thresh`` background
    (0). Non-positive priors whose overlap with a crowd box (intersection
    over the prior's area) is above ``crowd_iou_threshold`` become neutral.

    Returns (deltas [N, 4] float32 (encode(), zeros without ground truth),
    conf [N] int32 (-1 neutral, 0 background, else the class id),
    index [N] int64 (the matched box; 0 without ground truth)).
    """
    priors = np.asarray(priors, dtype=np.float32)
    truths = np.asarray(truths, dtype=np.float32).reshape(-1, 4)
    class_ids = np.asarray(class_ids).reshape(-1).astype(np.int32)
    num_priors = len(priors)
    decoded = point_form(priors)
    if len(truths) == 0:
        conf = np.zeros(num_priors, np.int32)
        best_truth_idx = np.zeros(num_priors, np.int64)
        deltas = np.zeros((num_priors, 4), np.float32)
    else:
        overlaps = jaccard(truths, decoded)                     # [G, N]
        best_truth_overlap = overlaps.max(axis=0)
        best_truth_idx = overlaps.argmax(axis=0)
        for _ in range(len(truths)):
            best_prior_overlap = overlaps.max(axis=1)
            j = int(best_prior_overlap.argmax())
            i = int(overlaps[j].argmax())
            overlaps[:, i] = -1
            overlaps[j, :] = -1
            best_truth_overlap[i] = 2
            best_truth_idx[i] = j
        conf = class_ids[best_truth_idx].copy()
        conf[best_truth_overlap < pos_thresh] = -1
        conf[best_truth_overlap < neg_thresh] = 0
        deltas = encode(truths[best_truth_idx], priors)
    if crowd_boxes is not None and len(crowd_boxes) and crowd_iou_threshold < 1:
        crowd = jaccard(decoded, np.asarray(crowd_boxes, np.float32).reshape(-1, 4),
                        iscrowd=True).max(axis=1)
        conf[(conf <= 0) & (crowd > crowd_iou_threshold)] = -1
    return deltas.astype(np.float32), conf.astype(np.int32), best_truth_idx.astype(np.int64)


def encode(matched, priors):
    """[N, (y1, x1, y2, x2)] boxes matched to [N, (cy, cx, h, w)] priors ->
    [N, (dy, dx, dh, dw)] deltas (see the module docstring); the inverse of
    decode."""
    matched = np.asarray(matched, dtype=np.float64)
    priors = np.asarray(priors, dtype=np.float64)
    centre = (matched[:, :2] + matched[:, 2:]) / 2 - priors[:, :2]
    centre /= VARIANCES[0] * priors[:, 2:]
    size = np.log((matched[:, 2:] - matched[:, :2]) / priors[:, 2:]) / VARIANCES[1]
    return np.concatenate([centre, size], axis=1).astype(np.float32)


def decode(deltas, priors):
    """[N, (dy, dx, dh, dw)] deltas on [N, (cy, cx, h, w)] priors -> [N,
    (y1, x1, y2, x2)] boxes."""
    deltas = np.asarray(deltas, dtype=np.float64)
    priors = np.asarray(priors, dtype=np.float64)
    centre = priors[:, :2] + deltas[:, :2] * VARIANCES[0] * priors[:, 2:]
    size = priors[:, 2:] * np.exp(deltas[:, 2:] * VARIANCES[1])
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)


############################################################
#  Masks and suppression
############################################################

def _sanitize(low, high, size, padding):
    """Relative coordinates -> pixel bounds, ordered, padded and clipped to
    [0, size] (the reference's ``sanitize_coordinates`` without the cast)."""
    low, high = low * size, high * size
    low, high = np.minimum(low, high), np.maximum(low, high)
    return np.maximum(low - padding, 0), np.minimum(high + padding, size)


def crop(masks, boxes, padding=1):
    """Zero every mask outside its box, as the reference's ``crop``.

    masks: [h, w, N]; boxes: [N, (y1, x1, y2, x2)] relative. A box is
    scaled to the mask size, its corners put in order (reversed boxes are
    fine), grown by ``padding`` pixels and clipped to the mask: pixel
    (row, col) is kept when y1 <= row < y2 and x1 <= col < x2.
    """
    masks = np.asarray(masks)
    h, w = masks.shape[:2]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    y1, y2 = _sanitize(boxes[:, 0], boxes[:, 2], h, padding)
    x1, x2 = _sanitize(boxes[:, 1], boxes[:, 3], w, padding)
    rows = np.arange(h, dtype=np.float64)[:, None, None]
    cols = np.arange(w, dtype=np.float64)[None, :, None]
    keep = (rows >= y1) & (rows < y2) & (cols >= x1) & (cols < x2)
    return masks * keep.astype(masks.dtype)


def fast_nms(boxes, scores, iou_threshold=0.5, top_k=200, max_detections=100):
    """Fast NMS (YOLACT section 3.5), in NumPy.

    boxes: [P, 4] relative boxes of the candidate priors; scores: [C, P]
    class scores without the background (row c is class id c + 1).
    Per class, the ``top_k`` best candidates are sorted by score; a
    candidate is dropped when its IoU with any better-scored candidate of
    its class (kept or not: the "upper triangle, column max" of the paper)
    is above ``iou_threshold``. The survivors of every class are sorted by
    score and the best ``max_detections`` returned.

    Returns (boxes [K, 4], class_ids [K] int32, scores [K], prior indices
    [K] int64), best first.
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]       # [C, K]
    sorted_scores = np.take_along_axis(scores, order, axis=1)
    candidates = boxes[order]                                            # [C, K, 4]
    kept = []
    for c in range(scores.shape[0]):
        iou = np.triu(jaccard(candidates[c], candidates[c]), k=1)
        iou_max = iou.max(axis=0) if iou.size else np.zeros(0)
        for k in np.flatnonzero(iou_max <= iou_threshold):
            kept.append((sorted_scores[c, k], c, order[c, k]))
    kept.sort(key=lambda item: -item[0])
    kept = kept[:max_detections]
    indices = np.array([item[2] for item in kept], np.int64)
    return (boxes[indices].reshape(-1, 4), np.array([item[1] + 1 for item in kept], np.int32),
            np.array([item[0] for item in kept], np.float32), indices)
