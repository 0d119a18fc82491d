"""Straightforward NumPy baselines for the functions in ``mrcnn.utils``.

Each function here does the same job as its ``mrcnn.utils`` counterpart the
way the original Keras Mask R-CNN did it (or, where the original had no
per-item version, the plain per-box / per-pair loop): one box, one pair or
one anchor per Python iteration. ``bench_utils.py`` times them next to the
vectorised versions and checks that both give the same results.

These are reference implementations for benchmarking only; they are not
part of the ``mrcnn`` package.
"""

import math
import warnings

import numpy as np
import scipy.ndimage
import skimage.transform


############################################################
#  Boxes
############################################################

def iou_one_to_many(box, boxes, box_area, boxes_area):
    """IoU of one box [y1, x1, y2, x2] with every row of ``boxes`` [N, 4].

    The areas are passed in so callers compute them once. Same arithmetic as
    the original's ``compute_iou``: clipped intersection sides multiplied,
    union = box_area + boxes_area - intersection.
    """
    y1 = np.maximum(box[0], boxes[:, 0])
    y2 = np.minimum(box[2], boxes[:, 2])
    x1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[3], boxes[:, 3])
    intersection = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    union = box_area + boxes_area - intersection
    return intersection / union


def compute_overlaps_loop(boxes1, boxes2):
    """IoU matrix [len(boxes1), len(boxes2)] (float64), one column per
    iteration: the IoU of ``boxes2[i]`` against all of ``boxes1``.
    """
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    overlaps = np.zeros((boxes1.shape[0], boxes2.shape[0]))
    for i in range(boxes2.shape[0]):
        overlaps[:, i] = iou_one_to_many(boxes2[i], boxes1, area2[i], area1)
    return overlaps


def non_max_suppression_loop(boxes, scores, threshold):
    """Greedy NMS, one kept box per iteration (the original's algorithm).

    Sort by score (highest first); take the top box, compute its IoU with
    all remaining boxes, drop it and every box whose IoU is above
    ``threshold`` with np.delete; repeat until none remain.

    Returns int32 indices of the kept boxes in the order they were picked.
    """
    if boxes.dtype.kind != "f":
        boxes = boxes.astype(np.float32)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    ixs = scores.argsort()[::-1]
    pick = []
    while len(ixs) > 0:
        i = ixs[0]
        pick.append(i)
        rest = ixs[1:]
        iou = iou_one_to_many(boxes[i], boxes[rest], area[i], area[rest])
        # +1 because the IoUs are for ixs[1:]; 0 removes the picked box.
        remove = np.append(np.where(iou > threshold)[0] + 1, 0)
        ixs = np.delete(ixs, remove)
    return np.array(pick, dtype=np.int32)


############################################################
#  Masks
############################################################

def compute_overlaps_masks_loop(masks1, masks2):
    """IoU matrix [N1, N2] (float32) of two sets of [H, W, N] masks, one
    pair per iteration: count of logical_and over count of logical_or.

    Each mask is first copied to a contiguous flat row so that every pair
    reads memory in order (a strided [H, W, N] channel would be far slower).
    A pair whose union is empty gets IoU 0 (as ``mrcnn.utils`` documents).
    """
    flat1 = np.ascontiguousarray(np.moveaxis(masks1 > .5, -1, 0)).reshape(masks1.shape[-1], -1)
    flat2 = np.ascontiguousarray(np.moveaxis(masks2 > .5, -1, 0)).reshape(masks2.shape[-1], -1)
    overlaps = np.zeros((flat1.shape[0], flat2.shape[0]), dtype=np.float32)
    for i in range(flat1.shape[0]):
        m1 = flat1[i]
        for j in range(flat2.shape[0]):
            m2 = flat2[j]
            intersection = np.count_nonzero(np.logical_and(m1, m2))
            union = np.count_nonzero(np.logical_or(m1, m2))
            if union:
                overlaps[i, j] = np.float32(intersection) / np.float32(union)
    return overlaps


############################################################
#  Anchors
############################################################

def generate_pyramid_anchors_loop(scales, ratios, feature_shapes, feature_strides,
                                  anchor_stride):
    """[N, (y1, x1, y2, x2)] float64 anchors built one at a time in Python.

    Order as the original: pyramid level (one scale each), then feature-map
    position (row-major, every ``anchor_stride``-th cell), then ratio. An
    anchor of scale s and ratio r (width / height) centred on the cell's
    image position (y * stride, x * stride) has height s / sqrt(r) and
    width s * sqrt(r).
    """
    anchors = []
    for scale, shape, stride in zip(scales, feature_shapes, feature_strides):
        sizes = [(scale / math.sqrt(r), scale * math.sqrt(r)) for r in ratios]
        for row in range(0, shape[0], anchor_stride):
            cy = row * stride
            for col in range(0, shape[1], anchor_stride):
                cx = col * stride
                for h, w in sizes:
                    anchors.append((cy - 0.5 * h, cx - 0.5 * w,
                                    cy + 0.5 * h, cx + 0.5 * w))
    return np.array(anchors, dtype=np.float64)


############################################################
#  Evaluation
############################################################

def _trim_zero_rows(x):
    return x[~np.all(x == 0, axis=1)]


def compute_ap_loop(gt_boxes, gt_class_ids, gt_masks,
                    pred_boxes, pred_class_ids, pred_scores, pred_masks,
                    iou_threshold=0.5):
    """Average precision at one IoU threshold, the original's way.

    1. Trim zero-padded boxes; sort predictions by score (highest first).
    2. Mask IoUs [P, G] from one float32 matrix product of the full
       flattened masks (intersections) and the mask areas.
    3. For each prediction in score order, walk its GTs in decreasing IoU
       (argsort): skip GTs already matched, stop at the first IoU under the
       threshold, match the first GT of the same class.
    4. Precision / recall after each prediction; the precision envelope is
       made non-increasing with a backwards Python loop; AP is the area
       under the resulting step curve.

    Returns (mAP, precisions, recalls, overlaps).
    """
    gt_boxes = _trim_zero_rows(gt_boxes)
    gt_masks = gt_masks[..., :gt_boxes.shape[0]]
    pred_boxes = _trim_zero_rows(pred_boxes)
    pred_scores = pred_scores[:pred_boxes.shape[0]]
    order = np.argsort(pred_scores)[::-1]
    pred_class_ids = pred_class_ids[order]
    pred_masks = pred_masks[..., order]

    # Overlaps: one big float32 product of the flattened masks.
    m1 = np.reshape(pred_masks > .5, (-1, pred_masks.shape[-1])).astype(np.float32)
    m2 = np.reshape(gt_masks > .5, (-1, gt_masks.shape[-1])).astype(np.float32)
    area1 = np.sum(m1, axis=0)
    area2 = np.sum(m2, axis=0)
    intersections = np.dot(m1.T, m2)
    union = area1[:, None] + area2[None, :] - intersections
    with np.errstate(divide="ignore", invalid="ignore"):
        overlaps = intersections / union
    overlaps[union == 0] = 0  # empty pairs: 0 (mrcnn.utils' documented choice)

    # Greedy matching, one prediction and one candidate GT at a time.
    pred_match = -1 * np.ones([len(order)])
    gt_match = -1 * np.ones([gt_boxes.shape[0]])
    for i in range(len(order)):
        for j in np.argsort(overlaps[i])[::-1]:
            if gt_match[j] > -1:
                continue
            if overlaps[i, j] < iou_threshold:
                break
            if pred_class_ids[i] == gt_class_ids[j]:
                gt_match[j] = i
                pred_match[i] = j
                break

    hits = np.cumsum(pred_match > -1)
    precisions = hits / (np.arange(len(pred_match)) + 1)
    recalls = hits.astype(np.float32) / len(gt_match)
    precisions = np.concatenate([[0], precisions, [0]])
    recalls = np.concatenate([[0], recalls, [1]])
    for i in range(len(precisions) - 2, -1, -1):
        precisions[i] = max(precisions[i], precisions[i + 1])
    indices = np.where(recalls[:-1] != recalls[1:])[0] + 1
    mAP = np.sum((recalls[indices] - recalls[indices - 1]) * precisions[indices])
    return mAP, precisions, recalls, overlaps


############################################################
#  Resizing
############################################################

def resize_image_skimage(image, min_dim, max_dim):
    """Square-mode resize_image as the original did it: scale so the short
    side is ``min_dim`` (never down) unless the long side would exceed
    ``max_dim``; bilinear ``skimage.transform.resize`` (float64,
    preserve_range); zero padding to max_dim x max_dim; cast back.

    Returns (image, window, scale, padding).
    """
    dtype = image.dtype
    h, w = image.shape[:2]
    scale = max(1, min_dim / min(h, w))
    if round(max(h, w) * scale) > max_dim:
        scale = max_dim / max(h, w)
    image = skimage.transform.resize(
        image, (round(h * scale), round(w * scale)), order=1, mode="constant",
        preserve_range=True, anti_aliasing=False)
    h, w = image.shape[:2]
    top, left = (max_dim - h) // 2, (max_dim - w) // 2
    padding = [(top, max_dim - h - top), (left, max_dim - w - left), (0, 0)]
    image = np.pad(image, padding, mode="constant", constant_values=0)
    window = (top, left, h + top, w + left)
    return image.astype(dtype), window, scale, padding


def resize_mask_zoom(mask, scale, padding):
    """resize_mask as the original did it: nearest-neighbour
    ``scipy.ndimage.zoom(mask, [scale, scale, 1], order=0)``, then zero
    padding."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mask = scipy.ndimage.zoom(mask, zoom=[scale, scale, 1], order=0)
    return np.pad(mask, padding, mode="constant", constant_values=0)
