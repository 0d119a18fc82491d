"""
Mask R-CNN
Bounding boxes: IoU, non-maximum suppression, box deltas and coordinate
normalisation. All functions are vectorised NumPy (box_refinement_graph is
TensorFlow).

Boxes are [N, (y1, x1, y2, x2)] in pixels with y2, x2 exclusive; deltas are
[N, (dy, dx, log(dh), log(dw))]. Public names are re-exported by mrcnn.utils.
"""

import contextlib

import numpy as np


def _check_box_array(boxes, func, what="boxes"):
    """boxes as an array; ValueError unless they are [N, >=4] numbers."""
    boxes = np.asarray(boxes)
    if boxes.ndim != 2 or boxes.shape[1] < 4:
        raise ValueError("{}: {} must have shape [N, (y1, x1, y2, x2)], got {}".format(
            func, what, boxes.shape))
    if boxes.dtype.kind not in "biuf":
        raise ValueError("{}: {} must be numbers, got dtype {}".format(func, what, boxes.dtype))
    return boxes


def _check_boxes(boxes, func, what="boxes", positive=False, columns=None):
    """Raise ValueError, naming ``func``, the row and its values, when boxes
    are not [N, >=4] or a box has a NaN/Inf coordinate, is inverted
    (y2 < y1 or x2 < x1) or, with ``positive``, has zero height or width.

    columns: optional contiguous [4, N] copy of the coordinates (faster
    checks on large anchor sets). Returns the boxes as an array."""
    boxes = _check_box_array(boxes, func, what)
    coords = boxes[:, :4].T if columns is None else columns[:4]
    y1, x1, y2, x2 = coords
    # Cheap whole-array tests first (this runs on every anchor set); rows are
    # located only when something is wrong.
    if boxes.dtype.kind == "f" and not np.isfinite(coords).all():
        row = int(np.argmin(np.isfinite(boxes[:, :4]).all(axis=1)))
        raise ValueError("{}: {} row {} has a NaN or Inf coordinate: {}".format(
            func, what, row, boxes[row, :4].tolist()))
    bad = ((y2 <= y1) | (x2 <= x1)) if positive else ((y2 < y1) | (x2 < x1))
    if bad.any():
        row = int(np.argmax(bad))
        height = boxes[:, 2] - boxes[:, 0]
        width = boxes[:, 3] - boxes[:, 1]
        box = boxes[row, :4].tolist()
        if height[row] < 0 or width[row] < 0:
            raise ValueError("{}: {} row {} is inverted, {}: boxes are (y1, x1, y2, x2) with "
                             "y2 >= y1 and x2 >= x1 (were (x1, y1, x2, y2) boxes passed?)"
                             .format(func, what, row, box))
        raise ValueError("{}: {} row {} has zero area, {}: it needs y2 > y1 and x2 > x1 "
                         "(drop empty boxes first)".format(func, what, row, box))
    return boxes


def extract_bboxes(mask):
    """Compute bounding boxes from masks.
    mask: [height, width, num_instances]. Mask pixels are either 1 or 0.

    Returns: bbox array [num_instances, (y1, x1, y2, x2)] int32. An instance
    with an empty mask gets the box (0, 0, 0, 0).
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError("extract_bboxes expects masks of shape [height, width, "
                         "instances], got shape {}".format(mask.shape))
    height, width, count = mask.shape
    boxes = np.zeros([count, 4], dtype=np.int32)
    if count == 0 or height == 0 or width == 0:
        return boxes
    on = mask.astype(bool, copy=False)
    cols = on.any(axis=0)  # [width, N]
    rows = on.any(axis=1)  # [height, N]
    present = cols.any(axis=0)
    # First and last True index along each axis; argmax finds the first.
    x1 = cols.argmax(axis=0)
    x2 = width - cols[::-1].argmax(axis=0)
    y1 = rows.argmax(axis=0)
    y2 = height - rows[::-1].argmax(axis=0)
    boxes[present] = np.stack([y1, x1, y2, x2], axis=1)[present]
    return boxes


def compute_iou(box, boxes, box_area, boxes_area):
    """Calculates IoU of the given box with the array of the given boxes.
    box: 1D vector [y1, x1, y2, x2]
    boxes: [boxes_count, (y1, x1, y2, x2)]
    box_area: float. the area of 'box'
    boxes_area: array of length boxes_count.

    Note: the areas are passed in rather than calculated here for
    efficiency. Calculate once in the caller to avoid duplicate work.
    No validation (as in the original): two zero-area boxes give NaN;
    compute_overlaps() checks its boxes and returns 0 there.
    """
    # Calculate intersection areas
    y1 = np.maximum(box[0], boxes[:, 0])
    y2 = np.minimum(box[2], boxes[:, 2])
    x1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[3], boxes[:, 3])
    intersection = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    union = box_area + boxes_area[:] - intersection[:]
    iou = intersection / union
    return iou


def _box_areas(boxes):
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _pairwise_iou(boxes1, boxes2, area1, area2):
    """IoU matrix [len(boxes1), len(boxes2)], computed with the same
    arithmetic as compute_iou() so values are bit-identical to it.

    boxes1, boxes2: [4, N] coordinate rows (y1, x1, y2, x2), contiguous, so
    that every broadcast reads memory in order."""
    h = np.minimum(boxes1[2][:, None], boxes2[2][None, :])
    h -= np.maximum(boxes1[0][:, None], boxes2[0][None, :])
    np.maximum(h, 0, out=h)
    w = np.minimum(boxes1[3][:, None], boxes2[3][None, :])
    w -= np.maximum(boxes1[1][:, None], boxes2[1][None, :])
    np.maximum(w, 0, out=w)
    w *= h  # intersection
    union = np.add(area1[:, None], area2[None, :], out=h)
    union -= w
    w /= union
    return w


def compute_overlaps(boxes1, boxes2):
    """Computes IoU overlaps between two sets of boxes.
    boxes1, boxes2: [N, (y1, x1, y2, x2)].

    Returns: [len(boxes1), len(boxes2)] float64 IoU matrix (empty if either
    set is empty).

    Degenerate boxes: a zero-area box has IoU 0 with every box, itself and
    other zero-area boxes included (the original gave NaN for two of them).
    Boxes are plain geometry: coordinates outside an image are fine and
    nothing is clipped. ValueError for NaN/Inf coordinates and inverted boxes
    (y2 < y1 or x2 < x1), naming the row.
    """
    boxes1 = np.asarray(boxes1)
    boxes2 = np.asarray(boxes2)
    if boxes1.shape[0] == 0 or boxes2.shape[0] == 0:
        return np.zeros((boxes1.shape[0], boxes2.shape[0]))
    given1 = _check_box_array(boxes1, "compute_overlaps", "boxes1")
    given2 = _check_box_array(boxes2, "compute_overlaps", "boxes2")
    # Integer boxes: exact in float64, where the original's int/int ended up.
    if boxes1.dtype.kind != "f":
        boxes1 = boxes1.astype(np.float64)
    if boxes2.dtype.kind != "f":
        boxes2 = boxes2.astype(np.float64)
    columns1, columns2 = np.ascontiguousarray(boxes1.T), np.ascontiguousarray(boxes2.T)
    _check_boxes(given1, "compute_overlaps", "boxes1", columns=columns1)
    _check_boxes(given2, "compute_overlaps", "boxes2", columns=columns2)
    area1, area2 = _box_areas(boxes1), _box_areas(boxes2)
    overlaps = np.empty((boxes1.shape[0], boxes2.shape[0]),
                        dtype=np.result_type(boxes1.dtype, boxes2.dtype))
    # Two zero-area boxes are 0 / 0; such pairs are set to 0 below.
    empty1, empty2 = area1 == 0, area2 == 0
    degenerate = bool(empty1.any() and empty2.any())
    with np.errstate(invalid="ignore") if degenerate else contextlib.nullcontext():
        # Row blocks keep the temporaries in cache.
        for start in range(0, boxes1.shape[0], 128):
            rows = slice(start, start + 128)
            overlaps[rows] = _pairwise_iou(columns1[:, rows], columns2, area1[rows], area2)
    if degenerate:
        overlaps[np.ix_(empty1, empty2)] = 0
    return overlaps.astype(np.float64, copy=False)


def non_max_suppression(boxes, scores, threshold):
    """Performs non-maximum suppression and returns indices of kept boxes.
    boxes: [N, (y1, x1, y2, x2)]. Notice that (y2, x2) lays outside the box.
    scores: 1-D array of box scores.
    threshold: Float. IoU threshold to use for filtering: a box is removed
        when its IoU with a kept, higher-scoring box is above it.

    Returns: int32 indices of the kept boxes, highest score first (the same
    indices, in the same order, as the original's greedy loop).

    Differs from the original: zero boxes return an empty array instead of
    failing an assert; NaN/Inf boxes or scores and inverted boxes raise
    ValueError (zero-area boxes are kept and suppress nothing). The greedy
    pass works on blocks of boxes: IoUs are
    computed block by block, and only for boxes still alive, so it costs a
    fraction of the original's per-box np.delete loop.
    """
    boxes = np.asarray(boxes)
    scores = np.asarray(scores)
    if boxes.shape[0] != scores.shape[0]:
        raise ValueError("non_max_suppression: {} boxes but {} scores".format(
            boxes.shape[0], scores.shape[0]))
    if boxes.shape[0] == 0:
        return np.zeros([0], dtype=np.int32)
    boxes = _check_boxes(boxes, "non_max_suppression")
    if scores.dtype.kind == "f" and not np.all(np.isfinite(scores)):
        raise ValueError("non_max_suppression: score {} is NaN or Inf".format(
            int(np.argmin(np.isfinite(scores)))))
    if boxes.dtype.kind != "f":
        boxes = boxes.astype(np.float32)

    # Indices of boxes sorted by scores (highest first), as the original.
    order = scores.argsort()[::-1]
    sorted_boxes = np.ascontiguousarray(boxes[order].T)  # [4, N]
    area = (sorted_boxes[2] - sorted_boxes[0]) * (sorted_boxes[3] - sorted_boxes[1])
    alive = np.ones(len(order), dtype=bool)
    block = 256
    # A zero-area pair has IoU 0 / 0 = NaN, which is never above the
    # threshold: such boxes suppress nothing.
    with np.errstate(invalid="ignore"):
        _greedy_suppress(sorted_boxes, area, alive, block, threshold)
    return order[alive].astype(np.int32)


def _greedy_suppress(sorted_boxes, area, alive, block, threshold):
    """non_max_suppression's greedy pass over [4, N] score-sorted boxes;
    clears ``alive`` of suppressed boxes in place."""
    for start in range(0, alive.size, block):
        end = min(start + block, alive.size)
        # Greedy within the block (boxes before it have already suppressed).
        block_boxes = sorted_boxes[:, start:end]
        local = _pairwise_iou(block_boxes, block_boxes,
                              area[start:end], area[start:end]) > threshold
        for i in range(end - start):
            if alive[start + i]:
                alive[start + i + 1:end] &= ~local[i, i + 1:]
        # Kept boxes of this block suppress the alive boxes after it.
        kept = start + np.flatnonzero(alive[start:end])
        rest = end + np.flatnonzero(alive[end:])
        if kept.size and rest.size:
            suppressed = (_pairwise_iou(sorted_boxes[:, kept], sorted_boxes[:, rest],
                                        area[kept], area[rest]) > threshold).any(axis=0)
            alive[rest[suppressed]] = False


def apply_box_deltas(boxes, deltas):
    """Applies the given deltas to the given boxes.
    boxes: [N, (y1, x1, y2, x2)]. Note that (y2, x2) is outside the box.
    deltas: [N, (dy, dx, log(dh), log(dw))]

    Returns: [N, (y1, x1, y2, x2)] float32 boxes.

    ValueError for NaN/Inf in boxes or deltas and for inverted boxes (naming
    the row). Deltas are not clipped: a huge log(dh) gives an Inf box, as in
    the original (the graph's version clips).
    """
    boxes = _check_boxes(boxes, "apply_box_deltas").astype(np.float32)
    deltas = np.asarray(deltas)
    if deltas.dtype.kind == "f" and not np.all(np.isfinite(deltas)):
        raise ValueError("apply_box_deltas: deltas row {} has a NaN or Inf value".format(
            int(np.argmin(np.isfinite(deltas).all(axis=-1)))))
    # Convert to y, x, h, w
    height = boxes[:, 2] - boxes[:, 0]
    width = boxes[:, 3] - boxes[:, 1]
    center_y = boxes[:, 0] + 0.5 * height
    center_x = boxes[:, 1] + 0.5 * width
    # Apply deltas
    center_y += deltas[:, 0] * height
    center_x += deltas[:, 1] * width
    height *= np.exp(deltas[:, 2])
    width *= np.exp(deltas[:, 3])
    # Convert back to y1, x1, y2, x2
    y1 = center_y - 0.5 * height
    x1 = center_x - 0.5 * width
    y2 = y1 + height
    x2 = x1 + width
    return np.stack([y1, x1, y2, x2], axis=1)


def box_refinement(box, gt_box):
    """Compute refinement needed to transform box to gt_box.
    box and gt_box are [N, (y1, x1, y2, x2)]. (y2, x2) is
    assumed to be outside the box.

    Returns: [N, (dy, dx, log(dh), log(dw))] float32.

    Every box must have a positive height and width and finite coordinates:
    ValueError naming the row otherwise (the original returned Inf/NaN
    deltas for zero-area boxes). Boxes may lie outside an image.
    """
    box = _check_boxes(box, "box_refinement", "box", positive=True).astype(np.float32)
    gt_box = _check_boxes(gt_box, "box_refinement", "gt_box",
                          positive=True).astype(np.float32)

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
    dh = np.log(gt_height / height)
    dw = np.log(gt_width / width)

    return np.stack([dy, dx, dh, dw], axis=1)


############################################################
#  Coordinate normalisation

def norm_boxes(boxes, shape):
    """Converts boxes from pixel coordinates to normalized coordinates.
    boxes: [N, (y1, x1, y2, x2)] in pixel coordinates
    shape: [..., (height, width)] in pixels

    Note: In pixel coordinates (y2, x2) is outside the box. But in normalized
    coordinates it's inside the box.

    Returns:
        [N, (y1, x1, y2, x2)] in normalized coordinates
    """
    h, w = shape
    scale = np.array([h - 1, w - 1, h - 1, w - 1])
    shift = np.array([0, 0, 1, 1])
    return np.divide((boxes - shift), scale).astype(np.float32)


def denorm_boxes(boxes, shape):
    """Converts boxes from normalized coordinates to pixel coordinates.
    boxes: [N, (y1, x1, y2, x2)] in normalized coordinates
    shape: [..., (height, width)] in pixels

    Note: In pixel coordinates (y2, x2) is outside the box. But in normalized
    coordinates it's inside the box.

    Returns:
        [N, (y1, x1, y2, x2)] in pixel coordinates (int32)

    ValueError for NaN/Inf coordinates (they have no integer value; the
    original turned them into -2147483648).
    """
    boxes = np.asarray(boxes)
    if boxes.dtype.kind == "f" and not np.all(np.isfinite(boxes)):
        raise ValueError("denorm_boxes: the boxes contain NaN or Inf coordinates")
    h, w = shape
    scale = np.array([h - 1, w - 1, h - 1, w - 1])
    shift = np.array([0, 0, 1, 1])
    return np.around(np.multiply(boxes, scale) + shift).astype(np.int32)
