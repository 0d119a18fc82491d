"""
YOLACT's training targets for one image, in NumPy: what the reference's
``MultiBoxLoss`` computes from the ground truth before its losses (the
prior matching, the masks at prototype resolution, the semantic class maps),
computed once per image by the data pipeline instead.

Frames: ``boxes`` in molded-image pixels ``(y1, x1, y2, x2)`` with ``y2, x2``
exclusive (``data.load_image_gt``), turned into relative boxes (pixels /
side) as the reference's; masks ``[H, W, N]`` bool at the molded size.
"""

import cv2
import numpy as np

from mrcnn.yolact.box_utils import match


def resize_masks_bilinear(masks, shape):
    """[H, W, N] masks -> [h, w, N] float32, bilinear with half-pixel
    centres and no antialiasing: ``F.interpolate(mode="bilinear",
    align_corners=False)`` of the reference (and ``tf.image.resize``)."""
    masks = np.asarray(masks, dtype=np.float32)
    height, width = int(shape[0]), int(shape[1])
    count = masks.shape[-1]
    out = np.zeros((height, width, count), np.float32)
    # OpenCV resizes at most 512 channels at a time.
    for start in range(0, count, 512):
        chunk = masks[..., start:start + 512]
        resized = cv2.resize(chunk, (width, height), interpolation=cv2.INTER_LINEAR)
        out[..., start:start + 512] = resized.reshape(height, width, -1)
    return out


def build_targets(image_shape, class_ids, boxes, masks, priors, proto_shape, segm_shape,
                  num_classes, max_instances, pos_thresh=0.5, neg_thresh=0.4,
                  crowd_iou_threshold=0.7, rng=None):
    """YOLACT's targets for one molded image.

    image_shape: [H, W, ...] of the molded image.
    class_ids: [N] int; negative ids are crowd regions (they only make
        overlapping non-positive priors neutral).
    boxes: [N, (y1, x1, y2, x2)] pixels; masks: [H, W, N] bool.
    priors: [P, (cy, cx, h, w)] (box_utils.make_priors).
    proto_shape, segm_shape: (h, w) of the prototypes and of the semantic
        segmentation map (P3).
    max_instances: G, the ground-truth slots; with more (non-crowd)
        instances a random G of them are kept (rng: a numpy Generator).

    Returns a dict of arrays:
      ``loc_t`` [P, 4] float32 deltas, ``conf_t`` [P] int32 (-1 neutral, 0
      background, else the class id), ``idx_t`` [P] int32 (ground-truth
      slot), ``gt_boxes`` [G, 4] float32 relative (zero padded),
      ``gt_masks`` [h, w, G] uint8: the masks resized bilinearly to the
      prototypes' size and thresholded at 0.5, ``segm_t`` [sh, sw,
      num_classes - 1] uint8: per class, the union of its masks at P3
      size, thresholded likewise.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    class_ids = np.asarray(class_ids).reshape(-1).astype(np.int64)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    masks = np.asarray(masks).reshape(height, width, -1)
    scale = np.array([height, width, height, width], np.float64)
    crowd = class_ids < 0
    crowd_boxes = boxes[crowd] / scale if crowd.any() else None
    keep = np.flatnonzero(~crowd & (class_ids > 0))
    if len(keep) > max_instances:
        rng = np.random.default_rng() if rng is None else rng
        keep = np.sort(rng.choice(keep, max_instances, replace=False))
    truths = boxes[keep] / scale
    loc_t, conf_t, idx_t = match(truths, class_ids[keep], priors, pos_thresh, neg_thresh,
                                 crowd_boxes, crowd_iou_threshold)

    gt_boxes = np.zeros((max_instances, 4), np.float32)
    gt_boxes[:len(keep)] = truths
    gt_masks = np.zeros(tuple(proto_shape) + (max_instances,), np.uint8)
    segm_t = np.zeros(tuple(segm_shape) + (num_classes - 1,), np.uint8)
    if len(keep):
        instance_masks = masks[..., keep]
        gt_masks[..., :len(keep)] = resize_masks_bilinear(instance_masks, proto_shape) > 0.5
        small = resize_masks_bilinear(instance_masks, segm_shape) > 0.5
        for k, class_id in enumerate(class_ids[keep]):
            segm_t[..., class_id - 1] |= small[..., k]
    return {"loc_t": loc_t, "conf_t": conf_t, "idx_t": idx_t.astype(np.int32),
            "gt_boxes": gt_boxes, "gt_masks": gt_masks, "segm_t": segm_t}
