"""
Mask R-CNN
Evaluation: mask IoU, prediction/ground-truth matching, AP, AP over IoU
ranges and recall. Re-exported by mrcnn.utils.
"""

import numpy as np

from mrcnn.boxes import compute_overlaps


def compute_overlaps_masks(masks1, masks2):
    """Computes IoU overlaps between two sets of masks.
    masks1, masks2: [Height, Width, instances]

    Returns: [instances1, instances2] float32 IoU matrix.

    Differs from the original: two empty masks have IoU 0 instead of NaN
    (0 / 0), so an empty prediction can never "match" a ground truth. Only
    pixels where both sets have some mask take part in the product, which
    makes it several times faster on typical sparse instance masks.
    """
    masks1 = np.asarray(masks1)
    masks2 = np.asarray(masks2)
    # If either set of masks is empty return empty result
    if masks1.shape[-1] == 0 or masks2.shape[-1] == 0:
        return np.zeros((masks1.shape[-1], masks2.shape[-1]), dtype=np.float32)
    if masks1.shape[:2] != masks2.shape[:2]:
        raise ValueError("compute_overlaps_masks: masks must have the same height "
                         "and width, got {} and {}".format(masks1.shape[:2],
                                                           masks2.shape[:2]))
    flat1 = masks1.reshape(-1, masks1.shape[-1]) > .5
    flat2 = masks2.reshape(-1, masks2.shape[-1]) > .5
    area1 = np.count_nonzero(flat1, axis=0).astype(np.float32)
    area2 = np.count_nonzero(flat2, axis=0).astype(np.float32)

    # Intersections only come from pixels covered in both sets.
    shared = np.flatnonzero(flat1.any(axis=1) & flat2.any(axis=1))
    a = flat1[shared].astype(np.float32)
    b = flat2[shared].astype(np.float32)
    intersections = a.T @ b
    union = area1[:, None] + area2[None, :] - intersections
    with np.errstate(divide="ignore", invalid="ignore"):
        overlaps = np.where(union > 0, intersections / union, 0).astype(np.float32)
    return overlaps


def trim_zeros(x):
    """It's common to have tensors larger than the available data and
    pad with zeros. This function removes rows that are all zeros.

    x: [rows, columns].
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError("trim_zeros expects a 2-D array, got shape {}".format(x.shape))
    return x[~np.all(x == 0, axis=1)]


def compute_matches(gt_boxes, gt_class_ids, gt_masks,
                    pred_boxes, pred_class_ids, pred_scores, pred_masks,
                    iou_threshold=0.5, score_threshold=0.0):
    """Finds matches between prediction and ground truth instances.

    gt_boxes: [G, (y1, x1, y2, x2)], gt_class_ids: [G], gt_masks: [H, W, G]
    pred_boxes: [P, (y1, x1, y2, x2)], pred_class_ids: [P], pred_scores: [P],
    pred_masks: [H, W, P]. Zero-padded rows of the box arrays are trimmed.
    iou_threshold: minimum mask IoU of a match.
    score_threshold: overlaps below this value are never considered (the
        original's name; it is compared with IoU, not with scores).

    Returns:
        gt_match: 1-D array. For each GT box it has the index of the matched
                  predicted box (-1 if unmatched).
        pred_match: 1-D array. For each predicted box, it has the index of
                    the matched ground truth box (-1 if unmatched).
        overlaps: [pred_boxes, gt_boxes] IoU overlaps.
    Predictions are sorted by score (highest first) before matching; the
    indices refer to that order, as in the original.

    Each prediction, in score order, takes the unmatched ground truth of its
    class with the highest IoU at or above the thresholds; ties are broken as
    the original's argsort did.
    """
    # Trim zero padding
    gt_boxes = trim_zeros(gt_boxes)
    gt_masks = np.asarray(gt_masks)[..., :gt_boxes.shape[0]]
    gt_class_ids = np.asarray(gt_class_ids)[:gt_boxes.shape[0]]
    pred_boxes = trim_zeros(pred_boxes)
    pred_scores = np.asarray(pred_scores)[:pred_boxes.shape[0]]
    # Sort predictions by score from high to low
    indices = np.argsort(pred_scores)[::-1]
    pred_boxes = pred_boxes[indices]
    pred_class_ids = np.asarray(pred_class_ids)[indices]
    pred_scores = pred_scores[indices]

    # Compute IoU overlaps [pred_masks, gt_masks] on the masks as given and
    # reorder the rows: reordering a [H, W, N] mask array costs more than
    # the overlaps themselves.
    pred_masks = np.asarray(pred_masks)[..., :pred_boxes.shape[0]]
    overlaps = compute_overlaps_masks(pred_masks, gt_masks)[indices]

    pred_match = -1 * np.ones([pred_boxes.shape[0]])
    gt_match = -1 * np.ones([gt_boxes.shape[0]])
    if overlaps.size == 0:
        return gt_match, pred_match, overlaps

    # Candidate ground truths of each prediction, in the original's order.
    sorted_ixs = np.argsort(overlaps, axis=1)[:, ::-1]
    sorted_iou = np.take_along_axis(overlaps, sorted_ixs, axis=1)
    candidate = ((sorted_iou >= iou_threshold) & (sorted_iou >= score_threshold)
                 & (pred_class_ids[:, None] == gt_class_ids[sorted_ixs]))
    gt_free = np.ones(gt_boxes.shape[0], dtype=bool)
    # The greedy pass is sequential over predictions (a match takes its GT
    # away from later ones); each step is one vector operation over the GTs.
    for i in np.flatnonzero(candidate.any(axis=1)):
        options = candidate[i] & gt_free[sorted_ixs[i]]
        if options.any():
            j = sorted_ixs[i, options.argmax()]
            gt_free[j] = False
            gt_match[j] = i
            pred_match[i] = j
    return gt_match, pred_match, overlaps


def compute_ap(gt_boxes, gt_class_ids, gt_masks,
               pred_boxes, pred_class_ids, pred_scores, pred_masks,
               iou_threshold=0.5):
    """Compute Average Precision at a set IoU threshold (default 0.5).

    Returns:
    mAP: Mean Average Precision
    precisions: List of precisions at different class score thresholds.
    recalls: List of recall values at different class score thresholds.
    overlaps: [pred_boxes, gt_boxes] IoU overlaps.

    Differs from the original: with no ground truth instances the AP is 0.0
    (the original divided by zero and returned NaN) and recalls are 0.
    """
    # Get matches and overlaps
    gt_match, pred_match, overlaps = compute_matches(
        gt_boxes, gt_class_ids, gt_masks,
        pred_boxes, pred_class_ids, pred_scores, pred_masks,
        iou_threshold)

    # Compute precision and recall at each prediction box step
    hits = np.cumsum(pred_match > -1)
    precisions = hits / (np.arange(len(pred_match)) + 1)
    if len(gt_match):
        recalls = hits.astype(np.float32) / len(gt_match)
    else:
        recalls = np.zeros(len(pred_match), dtype=np.float32)

    # Pad with start and end values to simplify the math
    precisions = np.concatenate([[0], precisions, [0]])
    recalls = np.concatenate([[0], recalls, [1]])

    # Ensure precision values decrease but don't increase. This way, the
    # precision value at each recall threshold is the maximum it can be
    # for all following recall thresholds, as specified by the VOC paper.
    precisions = np.maximum.accumulate(precisions[::-1])[::-1]

    if not len(gt_match):
        return 0.0, precisions, recalls, overlaps

    # Compute mean AP over recall range
    indices = np.where(recalls[:-1] != recalls[1:])[0] + 1
    mAP = np.sum((recalls[indices] - recalls[indices - 1]) *
                 precisions[indices])

    return mAP, precisions, recalls, overlaps


def compute_ap_range(gt_box, gt_class_id, gt_mask,
                     pred_box, pred_class_id, pred_score, pred_mask,
                     iou_thresholds=None, verbose=1):
    """Compute AP over a range or IoU thresholds. Default range is 0.5-0.95.

    iou_thresholds: list, tuple or NumPy array of IoU thresholds.

    Returns: the mean of the APs at each threshold.

    Differs from the original: a NumPy array of thresholds works (the
    original's ``iou_thresholds or ...`` raised "truth value of an array is
    ambiguous").
    """
    # Default is 0.5 to 0.95 with increments of 0.05
    if iou_thresholds is None:
        iou_thresholds = np.arange(0.5, 1.0, 0.05)
    iou_thresholds = np.atleast_1d(np.asarray(iou_thresholds, dtype=np.float64))
    if iou_thresholds.size == 0:
        raise ValueError("compute_ap_range: iou_thresholds is empty")

    # Compute AP over range of IoU thresholds
    AP = []
    for iou_threshold in iou_thresholds:
        ap, precisions, recalls, overlaps = \
            compute_ap(gt_box, gt_class_id, gt_mask,
                       pred_box, pred_class_id, pred_score, pred_mask,
                       iou_threshold=iou_threshold)
        if verbose:
            print("AP @{:.2f}:\t {:.3f}".format(iou_threshold, ap))
        AP.append(ap)
    AP = np.array(AP).mean()
    if verbose:
        print("AP @{:.2f}-{:.2f}:\t {:.3f}".format(
            iou_thresholds[0], iou_thresholds[-1], AP))
    return AP


def compute_recall(pred_boxes, gt_boxes, iou):
    """Compute the recall at the given IoU threshold. It's an indication
    of how many GT boxes were found by the given prediction boxes.

    pred_boxes: [N, (y1, x1, y2, x2)] in image coordinates
    gt_boxes: [N, (y1, x1, y2, x2)] in image coordinates

    Returns: (recall, positive_ids) where positive_ids are the indices of the
    predictions whose best IoU with a GT box is >= iou.

    Differs from the original: no predictions or no ground truth give a
    recall of 0.0 and no positive ids instead of an exception.
    """
    pred_boxes = np.asarray(pred_boxes)
    gt_boxes = np.asarray(gt_boxes)
    if pred_boxes.shape[0] == 0 or gt_boxes.shape[0] == 0:
        return 0.0, np.zeros([0], dtype=np.int64)
    # Measure overlaps
    overlaps = compute_overlaps(pred_boxes, gt_boxes)
    iou_max = np.max(overlaps, axis=1)
    iou_argmax = np.argmax(overlaps, axis=1)
    positive_ids = np.where(iou_max >= iou)[0]
    matched_gt_boxes = iou_argmax[positive_ids]

    recall = len(np.unique(matched_gt_boxes)) / gt_boxes.shape[0]
    return recall, positive_ids
