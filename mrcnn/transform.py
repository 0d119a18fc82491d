"""
From the user's images to the network's input and back, for every model mode.

Frames:
* original image: ``[H, W, C]`` as the user passed it to ``detect()``;
* molded image: resized and padded by ``utils.resize_image`` to
  ``[h, w, C]``; ``window = (y1, x1, y2, x2)`` is where the original image
  lies in it (pixels, ``y2, x2`` exclusive), ``scale`` the resize factor;
* normalised boxes: molded-image boxes through ``utils.norm_boxes`` (what
  the graph layers work in).
"""

import numpy as np

from mrcnn import boxes as box_utils
from mrcnn import imaging
from mrcnn.data.groundtruth import mold_image
from mrcnn.image_meta import compose_image_meta


def unmold_boxes(boxes, window, molded_shape, original_shape):
    """Normalised boxes in the molded image -> int32 pixel boxes in the
    original image.

    boxes: [N, (y1, x1, y2, x2)] normalised to the molded image.
    window: (y1, x1, y2, x2) pixels of the original image in the molded one.
    molded_shape, original_shape: [h, w, ...] and [H, W, ...].

    Returns [N, (y1, x1, y2, x2)] int32 pixels of the original image, inside
    it (0 <= y1 <= y2 <= H, likewise for x).

    The same mapping as the reference's ``unmold_detections`` (boxes made
    relative to the normalised window, then ``denorm_boxes`` at the original
    size), except where the window is a single pixel thick, which the
    reference turned into NaN (0 / 0): a very thin image such as 2000 x 16
    molded into 64 x 64 keeps one column. There the whole thickness of the
    original image is the only answer the molded image can give, so boxes
    span it.
    """
    # float32 arithmetic as in the reference, so boxes round the same way.
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    window = box_utils.norm_boxes(np.asarray(window), tuple(int(v) for v in molded_shape[:2]))
    start = np.concatenate([window[:2], window[:2]])
    extent = np.concatenate([window[2:] - window[:2]] * 2)
    thin = extent <= 0
    relative = (boxes - start) / np.where(thin, np.float32(1), extent)
    # One-pixel-thick window: [0, 1] along that axis (the whole image).
    relative = np.where(thin, np.array([0, 0, 1, 1], np.float32), relative)
    height, width = (int(v) for v in original_shape[:2])
    pixels = box_utils.denorm_boxes(relative, (height, width))
    return np.clip(pixels, 0, [height, width, height, width]).astype(np.int32)


def paste_masks(masks, boxes, original_shape, threshold=0.5):
    """Small per-instance masks -> full-size instance masks.

    masks: [N, h, w] float (e.g. 28 x 28 sigmoid outputs), each covering its
        box. boxes: [N, (y1, x1, y2, x2)] int pixels of the original image.
    original_shape: [H, W, ...].

    Returns [H, W, N] bool: each mask resized to its box and thresholded.
    Filled instance-major (each instance's pixels contiguous) and returned
    as an [H, W, N] view: stacking N full-image masks along the last axis,
    as the reference did, cost more than the rest of post-processing.
    """
    height, width = (int(v) for v in original_shape[:2])
    full_masks = np.zeros((len(boxes), height, width), dtype=bool)
    for i in range(len(boxes)):
        imaging.paste_mask(masks[i], boxes[i], full_masks[i], threshold=threshold)
    return np.moveaxis(full_masks, 0, -1)


def mold(image, config):
    """One checked image -> (molded image, image_meta, window).

    image: [H, W, C] as ``data.check_image`` returns it.
    Returns the image resized and padded as the configuration asks
    (``utils.resize_image`` with IMAGE_MIN_DIM, IMAGE_MIN_SCALE,
    IMAGE_MAX_DIM, IMAGE_RESIZE_MODE) minus MEAN_PIXEL as float32
    ``[h, w, C]``; its ``image_meta`` ``[IMAGE_META_SIZE]`` (image id 0, no
    active classes: at inference every class is allowed); and the window
    ``[4]`` int, the original image's pixels in the molded one.
    """
    molded, window, scale, _, _ = imaging.resize_image(
        image, min_dim=config.IMAGE_MIN_DIM, min_scale=config.IMAGE_MIN_SCALE,
        max_dim=config.IMAGE_MAX_DIM, mode=config.IMAGE_RESIZE_MODE)
    molded = mold_image(molded, config)
    image_meta = compose_image_meta(0, image.shape, molded.shape, window, scale,
                                    np.zeros([config.NUM_CLASSES], dtype=np.int32))
    return molded, image_meta, np.asarray(window)


def unmold_roi_detections(detections, roi_masks, original_shape, molded_shape, window):
    """One image's detections of a mode with an ROI mask head (Mask R-CNN,
    CenterNet) -> ``detect()``'s values in original-image pixels.

    detections: [N, (y1, x1, y2, x2, class_id, score)] normalised to the
        molded image, zero padded (the first class_id 0 ends them).
    roi_masks: [N, h, w, num_classes] per-class mask probabilities, each
        covering its box.
    original_shape, molded_shape: [H, W, ...] and [h, w, ...]; window: the
        original image's pixels in the molded one.

    Returns (boxes [K, 4] int32, class_ids [K] int32, scores [K] float32,
    masks [H, W, K] bool): detections whose box has no area in the original
    image (early in training) are dropped; each mask is its class's,
    resized to its box and thresholded at 0.5.
    """
    zero_ix = np.where(detections[:, 4] == 0)[0]
    count = zero_ix[0] if zero_ix.shape[0] > 0 else detections.shape[0]
    boxes = detections[:count, :4]
    class_ids = detections[:count, 4].astype(np.int32)
    scores = detections[:count, 5].astype(np.float32)
    masks = roi_masks[np.arange(count), :, :, class_ids]
    boxes = unmold_boxes(boxes, window, molded_shape, original_shape)
    keep = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0
    boxes, class_ids, scores, masks = boxes[keep], class_ids[keep], scores[keep], masks[keep]
    return boxes, class_ids, scores, paste_masks(masks, boxes, original_shape)
