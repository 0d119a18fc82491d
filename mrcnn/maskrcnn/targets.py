"""
Mask R-CNN
Training targets in NumPy: RPN anchor targets (``build_rpn_targets``) and,
for training the heads without the RPN and for debugging, random proposals
(``generate_random_rois``) and head targets (``build_detection_targets``).
Also the reference's Python ``data_generator``. ``mrcnn.model`` re-exports
these names, as the original had them in ``model.py``.

Frames: boxes are ``[N, (y1, x1, y2, x2)]`` in pixels of the molded image,
``y2, x2`` exclusive; deltas are ``[N, (dy, dx, log(dh), log(dw))]`` divided
by ``RPN_BBOX_STD_DEV`` (RPN) or ``BBOX_STD_DEV`` (heads). Class 0 is
background; negative ids are crowds. Every function takes an optional
``rng`` (numpy Generator or RandomState; default the global np.random).
"""

import logging

import numpy as np

from mrcnn import utils
from mrcnn.backbone import compute_backbone_shapes
from mrcnn.data.groundtruth import (MAX_CONSECUTIVE_ERRORS, ErrorCounter, _describe_image,
                                    _generator, load_image_gt, mold_image, select_instances)

logger = logging.getLogger(__name__)


############################################################
#  Random numbers
############################################################


def _randint(rng, low, high, size=None):
    """Integers in [low, high) (bounds may be arrays) from rng or np.random."""
    gen = _generator(rng)
    draw = getattr(gen, "integers", None) or gen.randint
    return draw(low, high, size)


############################################################
#  RPN targets
############################################################

def build_rpn_targets(image_shape, anchors, gt_class_ids, gt_boxes, config, rng=None):
    """Given the anchors and GT boxes, compute overlaps and identify positive
    anchors and deltas to refine them to match their corresponding GT boxes.

    image_shape: [H, W, C] of the molded image (unused; the original's
    signature). anchors: [num_anchors, (y1, x1, y2, x2)] in image pixels.
    gt_class_ids: [num_gt_boxes] (negative = crowd). gt_boxes: [num_gt_boxes,
    (y1, x1, y2, x2)] in image pixels. rng: optional numpy Generator for the
    subsampling (default np.random).

    Returns:
    rpn_match: [num_anchors] int32. 1 = positive (IoU >= 0.7 with a GT, or a
        GT's best anchor, ties included), -1 = negative (max IoU < 0.3 and
        IoU < 0.001 with every crowd), 0 = neutral. At most
        RPN_TRAIN_ANCHORS_PER_IMAGE // 2 positives, negatives fill up to
        RPN_TRAIN_ANCHORS_PER_IMAGE; random extras are set to 0.
    rpn_bbox: [RPN_TRAIN_ANCHORS_PER_IMAGE, (dy, dx, log(dh), log(dw))]
        float32: row i = deltas from the i-th positive anchor (anchor order)
        to its highest-IoU GT box / RPN_BBOX_STD_DEV; zero padded.

    Differs from the original: no GT boxes (or only crowds) gives all anchors
    negative (subsampled) instead of crashing in np.argmax; class id 0 rows
    (padding) are ignored even without crowds; a GT box overlapping no anchor
    does not make every zero-IoU anchor positive; rpn_bbox is float32 and the
    deltas are one vectorised box_refinement call.
    """
    anchors = np.asarray(anchors)
    gt_class_ids = np.asarray(gt_class_ids).reshape(-1)
    gt_boxes = np.asarray(gt_boxes).reshape(-1, 4)
    total = config.RPN_TRAIN_ANCHORS_PER_IMAGE
    gen = _generator(rng)
    rpn_match = np.zeros([anchors.shape[0]], dtype=np.int32)
    rpn_bbox = np.zeros((total, 4), dtype=np.float32)

    # COCO crowd boxes surround several instances: not a target, and anchors
    # touching them are not clean negatives either.
    crowd_boxes = gt_boxes[gt_class_ids < 0]
    gt_boxes = gt_boxes[gt_class_ids > 0]
    if crowd_boxes.shape[0]:
        crowd_iou_max = utils.compute_overlaps(anchors, crowd_boxes).max(axis=1)
        no_crowd = crowd_iou_max < 0.001
    else:
        no_crowd = np.ones([anchors.shape[0]], dtype=bool)

    if gt_boxes.shape[0]:
        overlaps = utils.compute_overlaps(anchors, gt_boxes)  # [anchors, gt]
        anchor_iou_argmax = overlaps.argmax(axis=1)
        anchor_iou_max = overlaps[np.arange(overlaps.shape[0]), anchor_iou_argmax]
        # 1. Negatives first; matches below overwrite them.
        rpn_match[(anchor_iou_max < 0.3) & no_crowd] = -1
        # 2. Every GT box gets its best anchor(s), ties included, whatever the IoU.
        gt_iou_max = overlaps.max(axis=0)
        best = (overlaps == gt_iou_max) & (gt_iou_max > 0)
        rpn_match[best.any(axis=1)] = 1
        # 3. High-overlap anchors are positive.
        rpn_match[anchor_iou_max >= 0.7] = 1
    else:
        anchor_iou_argmax = np.zeros([anchors.shape[0]], dtype=np.intp)
        rpn_match[no_crowd] = -1

    # Balance: positives at most half, negatives fill the rest.
    ids = np.flatnonzero(rpn_match == 1)
    extra = len(ids) - total // 2
    if extra > 0:
        rpn_match[gen.choice(ids, extra, replace=False)] = 0
    ids = np.flatnonzero(rpn_match == -1)
    extra = len(ids) - (total - np.sum(rpn_match == 1))
    if extra > 0:
        rpn_match[gen.choice(ids, extra, replace=False)] = 0

    positive = np.flatnonzero(rpn_match == 1)
    if positive.size:
        deltas = utils.box_refinement(anchors[positive],
                                      gt_boxes[anchor_iou_argmax[positive]])
        rpn_bbox[:positive.size] = deltas / np.asarray(config.RPN_BBOX_STD_DEV)
    return rpn_match, rpn_bbox


############################################################
#  Detection targets (head-only training and debugging)
############################################################

def generate_random_rois(image_shape, count, gt_class_ids, gt_boxes, rng=None):
    """Generates ROI proposals similar to what a region proposal network
    would generate.

    image_shape: [H, W, C]. count: number of ROIs. gt_class_ids: [N] (unused,
    as in the original). gt_boxes: [N, (y1, x1, y2, x2)] in pixels.
    rng: optional numpy Generator (default np.random).

    Returns: [count, (y1, x1, y2, x2)] int32 ROIs in pixels, corners in
    [0, side), at least 1 pixel high and wide. int(0.9 * count / N) per GT box
    (GT by GT) lie in the box grown by its size on each side, clipped to the
    image; the rest anywhere in the image.

    Differs from the original: corners are two distinct integers drawn in one
    vectorised call (the distribution of the original's rejection loop);
    zero-area GT boxes are ignored and no GT boxes gives all-random ROIs (the
    original divided by zero); regions under 2 pixels are widened instead of
    looping forever.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    if height < 2 or width < 2:
        raise ValueError("generate_random_rois: image {} is too small for ROIs "
                         "of non-zero area".format(tuple(image_shape)))
    boxes = np.asarray(gt_boxes, dtype=np.int64).reshape(-1, 4)
    size = boxes[:, 2:] - boxes[:, :2]  # (h, w)
    keep = np.all(size > 0, axis=1)
    boxes, size = boxes[keep], size[keep]
    per_box = int(0.9 * count / len(boxes)) if len(boxes) else 0
    n_random = count - per_box * len(boxes)
    # Sampling region [low, high) of every ROI, (y, x) columns.
    limits = np.array([height, width])
    low = np.concatenate([np.repeat(np.maximum(boxes[:, :2] - size, 0), per_box, axis=0),
                          np.zeros((n_random, 2), np.int64)])
    high = np.concatenate([np.repeat(np.minimum(boxes[:, 2:] + size, limits), per_box,
                                     axis=0), np.tile(limits, (n_random, 1))])
    y1, y2 = _distinct_pairs(rng, low[:, 0], high[:, 0], height)
    x1, x2 = _distinct_pairs(rng, low[:, 1], high[:, 1], width)
    return np.stack([y1, x1, y2, x2], axis=1).astype(np.int32)


def _distinct_pairs(rng, low, high, size):
    """Two distinct integers in [low, high) per entry, sorted; regions shorter
    than 2 are widened inside [0, size)."""
    high = np.maximum(high, np.minimum(low + 2, size))
    low = np.minimum(low, high - 2)
    a = _randint(rng, low, high)
    b = _randint(rng, low, high - 1)
    b = b + (b >= a)  # skip a: uniform over the other values
    return np.minimum(a, b), np.maximum(a, b)


def build_detection_targets(rpn_rois, gt_class_ids, gt_boxes, gt_masks, config,
                            rng=None):
    """Generate targets for training Stage 2 classifier and mask heads.
    Not used in normal training (DetectionTargetLayer does it in the graph);
    for debugging or training the heads without the RPN (USE_RPN_ROIS=False).

    rpn_rois: [N, (y1, x1, y2, x2)] proposals in image pixels.
    gt_class_ids: [instances] (0 = padding and <0 = crowd are ignored).
    gt_boxes: [instances, (y1, x1, y2, x2)] in image pixels.
    gt_masks: [height, width, instances]: mini-masks when
        config.USE_MINI_MASK, else image-sized.
    rng: optional numpy Generator for the subsampling (default np.random).

    Returns:
    rois: [TRAIN_ROIS_PER_IMAGE, (y1, x1, y2, x2)] chosen ROIs, rpn_rois dtype.
    class_ids: [TRAIN_ROIS_PER_IMAGE] int32: the GT class for positive ROIs
        (IoU > 0.5; at most int(TRAIN_ROIS_PER_IMAGE * ROI_POSITIVE_RATIO)),
        0 for background ROIs (IoU < 0.5).
    bboxes: [TRAIN_ROIS_PER_IMAGE, NUM_CLASSES, (dy, dx, log(dh), log(dw))]
        float32 refinements / BBOX_STD_DEV in the positive ROI's class slot.
    masks: [TRAIN_ROIS_PER_IMAGE, MASK_SHAPE[0], MASK_SHAPE[1], NUM_CLASSES]
        float32 GT mask cropped to the ROI and resized (bilinear, 0..1) in the
        positive ROI's class slot.

    Differs from the original: ValueError instead of asserts, and inputs are
    cast to int32/bool instead of rejected; with no background ROI to repeat,
    kept ROIs are repeated (the original crashed in np.random.choice); IoUs
    are one compute_overlaps call; a mini-mask is expanded once per GT box,
    not per ROI, into an IMAGE_SHAPE canvas grown to hold the box if needed.
    """
    rpn_rois = np.asarray(rpn_rois)
    gt_class_ids = np.asarray(gt_class_ids).astype(np.int32).reshape(-1)
    gt_boxes = np.asarray(gt_boxes).astype(np.int32).reshape(-1, 4)
    gt_masks = np.asarray(gt_masks).astype(bool)
    rois_per_image = config.TRAIN_ROIS_PER_IMAGE
    gen = _generator(rng)
    if rpn_rois.shape[0] == 0:
        raise ValueError("build_detection_targets: rpn_rois is empty")

    # Trim padding and crowds.
    instance_ids = np.flatnonzero(gt_class_ids > 0)
    if instance_ids.size == 0:
        raise ValueError("build_detection_targets: the image must contain instances "
                         "(no class id > 0)")
    gt_class_ids = gt_class_ids[instance_ids]
    gt_boxes = gt_boxes[instance_ids]
    gt_masks = gt_masks[:, :, instance_ids]

    overlaps = utils.compute_overlaps(rpn_rois, gt_boxes)  # [rois, gt]
    roi_iou_argmax = overlaps.argmax(axis=1)
    roi_iou_max = overlaps[np.arange(overlaps.shape[0]), roi_iou_argmax]
    fg_ids = np.flatnonzero(roi_iou_max > 0.5)
    bg_ids = np.flatnonzero(roi_iou_max < 0.5)

    # Subsample: aim for ROI_POSITIVE_RATIO foreground.
    fg_count = int(rois_per_image * config.ROI_POSITIVE_RATIO)
    if fg_ids.size > fg_count:
        fg_ids = gen.choice(fg_ids, fg_count, replace=False)
    remaining = rois_per_image - fg_ids.size
    if bg_ids.size > remaining:
        bg_ids = gen.choice(bg_ids, remaining, replace=False)
    keep = np.concatenate([fg_ids, bg_ids]).astype(np.intp)
    remaining = rois_per_image - keep.size
    if remaining > 0:
        # Not enough samples for the balance: repeat background ROIs (or any
        # kept ROI when there is no background at all).
        pool = bg_ids if bg_ids.size else keep
        if pool.size == 0:
            raise ValueError("build_detection_targets: no ROI has IoU > 0.5 or < 0.5 "
                             "with the GT boxes")
        keep = np.concatenate([keep, gen.choice(pool, remaining, replace=True)])

    rois = rpn_rois[keep]
    roi_gt_ids = roi_iou_argmax[keep]
    positive = roi_iou_max[keep] > 0.5
    roi_gt_class_ids = np.where(positive, gt_class_ids[roi_gt_ids], 0).astype(np.int32)

    # Class-specific box refinements.
    pos_ids = np.flatnonzero(positive)
    bboxes = np.zeros((rois_per_image, config.NUM_CLASSES, 4), dtype=np.float32)
    bboxes[pos_ids, roi_gt_class_ids[pos_ids]] = utils.box_refinement(
        rois[pos_ids], gt_boxes[roi_gt_ids[pos_ids]]) / np.asarray(config.BBOX_STD_DEV)

    # Class-specific mask targets: crop the GT mask to the ROI, resize.
    masks = np.zeros((rois_per_image, config.MASK_SHAPE[0], config.MASK_SHAPE[1],
                      config.NUM_CLASSES), dtype=np.float32)
    full_masks = {}
    for i in pos_ids:
        gt_id = roi_gt_ids[i]
        if gt_id not in full_masks:
            full_masks[gt_id] = _full_gt_mask(gt_masks[:, :, gt_id], gt_boxes[gt_id], config)
        y1, x1, y2, x2 = rois[i].astype(np.int32)
        crop = full_masks[gt_id][max(y1, 0):y2, max(x1, 0):x2]
        masks[i, :, :, roi_gt_class_ids[i]] = utils.resize(crop, config.MASK_SHAPE)
    return rois, roi_gt_class_ids, bboxes, masks


def _full_gt_mask(mask, box, config):
    """[H, W] bool image-frame mask of one GT (expanding a mini-mask into an
    IMAGE_SHAPE canvas, enlarged if the box reaches beyond it)."""
    if not config.USE_MINI_MASK:
        return mask
    height = max(int(config.IMAGE_SHAPE[0]), int(box[2]))
    width = max(int(config.IMAGE_SHAPE[1]), int(box[3]))
    return utils.expand_mask(box[None], mask[:, :, None], (height, width))[:, :, 0]


############################################################
#  The reference's Python generator
############################################################

def data_generator(dataset, config, shuffle=True, augment=False, augmentation=None,
                   random_rois=0, batch_size=1, detection_targets=False,
                   no_augmentation_sources=None):
    """A generator (endless, Keras style) of training batches.

    shuffle: shuffle (np.random) at the start of every epoch.
    augment: (deprecated) random horizontal flips. augmentation:
        albumentations transform or callable, see load_image_gt().
    random_rois: if > 0, also yield that many random proposals per image
        (training the heads without the RPN). detection_targets: with
        random_rois, also yield build_detection_targets() targets.
    no_augmentation_sources: sources whose images are never augmented.

    Yields (inputs, outputs). inputs:
    - images: [batch, H, W, C] float32, molded (mean subtracted)
    - image_meta: [batch, 12 + NUM_CLASSES] float32, see compose_image_meta()
    - rpn_match: [batch, num_anchors, 1] int32 (1 / -1 / 0)
    - rpn_bbox: [batch, RPN_TRAIN_ANCHORS_PER_IMAGE, 4] float32 deltas
    - gt_class_ids: [batch, MAX_GT_INSTANCES] int32, zero padded
    - gt_boxes: [batch, MAX_GT_INSTANCES, (y1, x1, y2, x2)] int32, zero padded
    - gt_masks: [batch, height, width, MAX_GT_INSTANCES] bool; MINI_MASK_SHAPE
      sized when USE_MINI_MASK
    - with random_rois: rpn_rois [batch, random_rois, 4] int32; with
      detection_targets too: rois [batch, TRAIN_ROIS_PER_IMAGE, 4]
    outputs: [] or, with detection_targets, class ids [batch, rois, 1], box
    deltas and masks from build_detection_targets().

    Images without instances (no class id > 0) are skipped. Instances beyond
    MAX_GT_INSTANCES are subsampled (select_instances) after the RPN targets
    are built from all of them.

    Differs from the original: a failing image is logged (logging.warning,
    with its id and path) and skipped, and the error re-raised when
    MAX_CONSECUTIVE_ERRORS (5) images fail in a row (the original counted
    errors over the whole run and raised at the 6th); a full pass without a
    usable image raises ValueError instead of looping forever; rpn_bbox and
    image_meta are float32.
    """
    image_ids = np.copy(dataset.image_ids)
    if len(image_ids) == 0:
        raise ValueError("data_generator: the dataset has no images (did you call "
                         "dataset.prepare()?)")
    no_augmentation_sources = no_augmentation_sources or []
    backbone_shapes = compute_backbone_shapes(config, config.IMAGE_SHAPE)
    anchors = utils.generate_pyramid_anchors(
        config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, backbone_shapes,
        config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE)
    image_index = -1
    b = 0  # batch item index
    errors = ErrorCounter(MAX_CONSECUTIVE_ERRORS, len(np.unique(image_ids)))

    while True:
        image_index = (image_index + 1) % len(image_ids)
        if shuffle and image_index == 0:
            np.random.shuffle(image_ids)
        image_id = image_ids[image_index]
        try:
            source = dataset.image_info[image_id]["source"]
            sample = _training_sample(
                dataset, config, image_id, anchors, random_rois, detection_targets,
                augmentation=None if source in no_augmentation_sources else augmentation,
                augment=augment)
            if sample is not None:
                if b == 0:
                    # Fresh arrays per batch: a yielded batch is never written again.
                    batch = [np.zeros((batch_size,) + a.shape, dtype=a.dtype)
                             for a in sample]
                for array, value in zip(batch, sample):
                    array[b] = value
        except Exception as error:
            logger.warning("data_generator: skipping %s after an error: %s",
                           _describe_image(dataset, image_id), error, exc_info=True)
            if errors.failure():
                logger.error("data_generator: %d images in a row failed, the last %s; "
                             "giving up", MAX_CONSECUTIVE_ERRORS,
                             _describe_image(dataset, image_id))
                raise
            sample = None
        else:
            errors.success()
        if errors.usable(image_id, sample is not None):
            raise ValueError("data_generator: no usable image in a full pass over "
                             "the dataset: each had no instances (no class id > 0) "
                             "or failed to load")
        if sample is None:  # no instances of the classes we train on, or failed
            continue

        b += 1
        if b >= batch_size:
            inputs, outputs = batch[:7], []
            if random_rois:
                inputs.append(batch[7])
                if detection_targets:
                    inputs.append(batch[8])
                    outputs = batch[9:12]
            yield inputs, outputs
            b = 0


def _training_sample(dataset, config, image_id, anchors, random_rois,
                     detection_targets, augmentation, augment):
    """One image's arrays in data_generator's batch order (without the batch
    axis), or None when the image has no instances (no class id > 0)."""
    image, image_meta, gt_class_ids, gt_boxes, gt_masks = load_image_gt(
        dataset, config, image_id, augmentation=augmentation,
        use_mini_mask=config.USE_MINI_MASK, augment=augment)
    if not np.any(gt_class_ids > 0):
        return None
    rpn_match, rpn_bbox = build_rpn_targets(image.shape, anchors, gt_class_ids,
                                            gt_boxes, config)
    extra = []
    if random_rois:
        rpn_rois = generate_random_rois(image.shape, random_rois, gt_class_ids, gt_boxes)
        extra.append(rpn_rois)
        if detection_targets:
            rois, class_ids, deltas, masks = build_detection_targets(
                rpn_rois, gt_class_ids, gt_boxes, gt_masks, config)
            # Keras wants targets with the outputs' rank: class ids [rois, 1].
            extra += [rois, class_ids[:, np.newaxis], deltas, masks]
    # RPN targets use every instance; the padded GT arrays hold at most
    # MAX_GT_INSTANCES of them.
    max_gt = config.MAX_GT_INSTANCES
    gt_class_ids, gt_boxes, gt_masks = select_instances(
        gt_class_ids, gt_boxes, gt_masks, max_gt)
    pad = max_gt - gt_class_ids.shape[0]
    return [mold_image(image, config), image_meta, rpn_match[:, np.newaxis], rpn_bbox,
            np.pad(gt_class_ids.astype(np.int32), (0, pad)),
            np.pad(gt_boxes.astype(np.int32), ((0, pad), (0, 0))),
            np.pad(gt_masks.astype(bool), ((0, 0), (0, 0), (0, pad)))] + extra
