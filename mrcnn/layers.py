"""
Mask R-CNN
The custom graph layers: ProposalLayer, PyramidROIAlign,
DetectionTargetLayer and DetectionLayer, and the TensorFlow box helpers
they use.

Differences from the original: every layer works on the whole batch with
tensor operations (the original sliced the batch in Python, which fixed the
batch size when the graph was built), and every layer has ``get_config`` so
models using them save and reload.

Coordinate frames: boxes inside the graph are normalised
``(y1, x1, y2, x2)`` (see utils.norm_boxes: ``(y2, x2)`` shifted by -1 and
divided by ``(h - 1, w - 1)``), which is what ``tf.image.crop_and_resize``
expects.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import layers as KL

from mrcnn.boxes import box_refinement_graph


############################################################
#  Graph helpers
############################################################

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


def parse_image_meta_graph(meta):
    """Parses a tensor that contains image attributes to its components.
    See compose_image_meta() for more details.

    meta: [batch, meta length] where meta length depends on NUM_CLASSES

    Returns a dict of the parsed tensors.
    """
    image_id = meta[:, 0]
    original_image_shape = meta[:, 1:4]
    image_shape = meta[:, 4:7]
    window = meta[:, 7:11]  # (y1, x1, y2, x2) window of image in in pixels
    scale = meta[:, 11]
    active_class_ids = meta[:, 12:]
    return {
        "image_id": image_id,
        "original_image_shape": original_image_shape,
        "image_shape": image_shape,
        "window": window,
        "scale": scale,
        "active_class_ids": active_class_ids,
    }


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


def _as_float_list(values):
    return [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]


class ConfiguredLayer(KL.Layer):
    """Base of layers whose settings come from a Config.

    ``FIELDS`` maps each setting to (Config attribute, converter, default).
    Built from a config (``Layer(config, name=...)``) the attributes are
    read from it; rebuilt by ``from_config`` the settings come back as
    keyword arguments. ``self.settings`` holds plain Python values, which
    is also what ``get_config`` records.
    """
    FIELDS = {}

    def __init__(self, config=None, **kwargs):
        kwargs.setdefault("dtype", "float32")  # box arithmetic stays float32
        settings = {}
        for name, (attribute, convert, default) in self.FIELDS.items():
            value = kwargs.pop(name, None)
            if config is not None:
                value = getattr(config, attribute)
            settings[name] = convert(default if value is None else value)
        super().__init__(**kwargs)
        self.settings = settings

    def get_config(self):
        config = super().get_config()
        config.update(self.settings)
        return config


############################################################
#  Proposal Layer
############################################################

def batched_nms_padded(boxes, scores, max_output_size, iou_threshold):
    """Greedy NMS of each image of a batch, indices padded to a fixed size.

    boxes: [B, K, (y1, x1, y2, x2)] float32 (any consistent frame, y2 >= y1,
    x2 >= x1). scores: [B, K]. Returns (keep [B, max_output_size] int32
    indices into K, highest score first, zero-padded; valid [B] int32 count
    of real entries per image).

    Runs TensorFlow's C++ greedy kernel on each image inside a graph loop.
    ``tf.image.non_max_suppression_padded`` (batched, tile-based) gives the
    same result but slows down with the number of suppressed boxes: on a
    trained RPN, whose top boxes pile up on each object, it took 0.26 s of a
    0.55 s shapes training step (batch 8, 4,092 anchors) against 0.02 s at
    random initialisation.
    """
    def one_image(args):
        image_boxes, image_scores = args
        keep, valid = tf.raw_ops.NonMaxSuppressionV4(
            boxes=image_boxes, scores=image_scores, max_output_size=max_output_size,
            iou_threshold=iou_threshold, score_threshold=float("-inf"),
            pad_to_max_output_size=True)
        return keep, valid

    return tf.map_fn(one_image, (boxes, scores),
                     fn_output_signature=(tf.TensorSpec([max_output_size], tf.int32),
                                          tf.TensorSpec([], tf.int32)))


@keras.saving.register_keras_serializable(package="mrcnn")
class ProposalLayer(KL.Layer):
    """Receives anchor scores and selects a subset to pass as proposals
    to the second stage. Filtering is done based on anchor scores and
    non-max suppression to remove overlaps. It also applies bounding
    box refinement deltas to anchors.

    Inputs:
        rpn_probs: [batch, num_anchors, (bg prob, fg prob)]
        rpn_bbox: [batch, num_anchors, (dy, dx, log(dh), log(dw))]
        anchors: [batch, num_anchors, (y1, x1, y2, x2)] anchors in normalized coordinates

    Returns:
        Proposals in normalized coordinates [batch, proposal_count, (y1, x1, y2, x2)],
        highest score first, zero-padded when NMS keeps fewer boxes.

    Steps: top PRE_NMS_LIMIT anchors by foreground score, deltas times
    RPN_BBOX_STD_DEV applied, clipped to the image [0, 1], NMS at
    ``nms_threshold``. ``stages(...)`` returns the intermediate tensors for
    inspection (see MaskRCNN.run_graph).
    """

    def __init__(self, proposal_count, nms_threshold, config=None,
                 pre_nms_limit=None, rpn_bbox_std_dev=None, **kwargs):
        kwargs.setdefault("dtype", "float32")  # box arithmetic stays float32
        super().__init__(**kwargs)
        self.proposal_count = int(proposal_count)
        self.nms_threshold = float(nms_threshold)
        if config is not None:
            pre_nms_limit = config.PRE_NMS_LIMIT if pre_nms_limit is None else pre_nms_limit
            if rpn_bbox_std_dev is None:
                rpn_bbox_std_dev = config.RPN_BBOX_STD_DEV
        self.pre_nms_limit = int(6000 if pre_nms_limit is None else pre_nms_limit)
        self.rpn_bbox_std_dev = _as_float_list(
            [0.1, 0.1, 0.2, 0.2] if rpn_bbox_std_dev is None else rpn_bbox_std_dev)

    def get_config(self):
        config = super().get_config()
        config.update({"proposal_count": self.proposal_count,
                       "nms_threshold": self.nms_threshold,
                       "pre_nms_limit": self.pre_nms_limit,
                       "rpn_bbox_std_dev": self.rpn_bbox_std_dev})
        return config

    def stages(self, rpn_probs, rpn_bbox, anchors):
        """All proposal stages as a dict of tensors:
        pre_nms_anchors [B, K, 4], refined_anchors [B, K, 4],
        refined_anchors_clipped [B, K, 4], scores [B, K],
        rpn_non_max_suppression [B, proposal_count] int32 indices into the K
        pre-NMS boxes (-1 padded), proposals [B, proposal_count, 4]."""
        scores = rpn_probs[:, :, 1]
        deltas = rpn_bbox * tf.constant(self.rpn_bbox_std_dev, shape=[1, 1, 4])
        anchors = tf.cast(anchors, tf.float32)
        pre_nms_limit = tf.minimum(self.pre_nms_limit, tf.shape(anchors)[1])
        scores, ix = tf.math.top_k(scores, pre_nms_limit, sorted=True, name="top_anchors")
        deltas = tf.gather(deltas, ix, batch_dims=1)
        pre_nms_anchors = tf.gather(anchors, ix, batch_dims=1)
        boxes = apply_box_deltas_graph(pre_nms_anchors, deltas)
        clipped = clip_boxes_graph(boxes, tf.constant([0., 0., 1., 1.]))
        keep, valid = batched_nms_padded(clipped, scores, self.proposal_count,
                                         self.nms_threshold)
        valid_mask = tf.range(self.proposal_count)[None, :] < valid[:, None]
        proposals = tf.gather(clipped, keep, batch_dims=1)
        proposals = tf.where(valid_mask[..., None], proposals, 0.0)
        return {"pre_nms_anchors": pre_nms_anchors, "refined_anchors": boxes,
                "refined_anchors_clipped": clipped, "scores": scores,
                "rpn_non_max_suppression": tf.where(valid_mask, keep, -1),
                "proposals": proposals}

    def call(self, inputs):
        rpn_probs, rpn_bbox, anchors = inputs
        return self.stages(rpn_probs, rpn_bbox, anchors)["proposals"]

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.proposal_count, 4)


############################################################
#  ROIAlign Layer
############################################################

def roi_levels_graph(boxes, image_shape):
    """FPN level (2..5) of each box, from its size (Feature Pyramid Networks
    paper, eq. 1, with k0 = 4 and canonical size 224).

    boxes: [..., (y1, x1, y2, x2)] normalised. image_shape: [(h, w, ...)]
    of the molded image (a 1-D tensor).

    Returns: int32 levels, shape boxes.shape[:-1]. Zero (padding) boxes
    get level 2.
    """
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    image_area = tf.cast(image_shape[0] * image_shape[1], tf.float32)
    # Boxes are normalised: sqrt(h * w * area) is the side in pixels.
    side = tf.sqrt(tf.maximum(h * w, 0.0) * image_area)
    roi_level = tf.math.log(tf.maximum(side, 1e-6) / 224.0) / tf.math.log(2.0)
    roi_level = 4 + tf.cast(tf.round(roi_level), tf.int32)
    return tf.minimum(5, tf.maximum(2, roi_level))


@keras.saving.register_keras_serializable(package="mrcnn")
class PyramidROIAlign(KL.Layer):
    """Implements ROI Pooling on multiple levels of the feature pyramid.

    Params:
    - pool_shape: [pool_height, pool_width] of the output pooled regions. Usually [7, 7]

    Inputs:
    - boxes: [batch, num_boxes, (y1, x1, y2, x2)] in normalized
             coordinates. Possibly padded with zeros if not enough
             boxes to fill the array.
    - image_meta: [batch, (meta data)] Image details. See compose_image_meta()
    - feature_maps: List of feature maps from different levels of the pyramid.
                    Each is [batch, height, width, channels]

    Output:
    Pooled regions in the shape: [batch, num_boxes, pool_height, pool_width, channels].
    The width and height are those specific in the pool_shape in the layer
    constructor.

    Each box is cropped from the level given by roi_levels_graph with
    bilinear crop-and-resize; gradients do not flow into the box coordinates
    (as in the original).
    """

    def __init__(self, pool_shape, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.pool_shape = tuple(int(s) for s in pool_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"pool_shape": list(self.pool_shape)})
        return config

    def call(self, inputs):
        boxes = tf.cast(inputs[0], tf.float32)
        image_meta = inputs[1]
        feature_maps = inputs[2:]
        image_shape = parse_image_meta_graph(image_meta)['image_shape'][0]
        roi_level = roi_levels_graph(boxes, image_shape)

        batch = tf.shape(boxes)[0]
        num_boxes = tf.shape(boxes)[1]
        pooled = []
        box_positions = []
        for i, level in enumerate(range(2, 6)):
            ix = tf.where(tf.equal(roi_level, level))        # [M, (batch, box)]
            level_boxes = tf.stop_gradient(tf.gather_nd(boxes, ix))
            box_indices = tf.stop_gradient(tf.cast(ix[:, 0], tf.int32))
            pooled.append(tf.image.crop_and_resize(
                feature_maps[i], level_boxes, box_indices, self.pool_shape,
                method="bilinear"))
            box_positions.append(ix[:, 0] * tf.cast(num_boxes, tf.int64) + ix[:, 1])
        pooled = tf.concat(pooled, axis=0)
        box_positions = tf.concat(box_positions, axis=0)
        # Every box sits in exactly one level: scatter back into box order.
        channels = tf.shape(feature_maps[0])[-1]
        flat_shape = tf.stack([batch * num_boxes, self.pool_shape[0],
                               self.pool_shape[1], channels])
        pooled = tf.scatter_nd(box_positions[:, None], pooled, tf.cast(flat_shape, tf.int64))
        out_shape = tf.stack([batch, num_boxes, self.pool_shape[0], self.pool_shape[1],
                              channels])
        return tf.reshape(pooled, out_shape)

    def compute_output_shape(self, input_shape):
        return input_shape[0][:2] + self.pool_shape + (input_shape[2][-1],)


############################################################
#  Detection Target Layer
############################################################

def detection_targets_graph(proposals, gt_class_ids, gt_boxes, gt_masks, config):
    """Generates detection targets for one image. Subsamples proposals and
    generates target class IDs, bounding box deltas, and masks for each.

    Inputs:
    proposals: [POST_NMS_ROIS_TRAINING, (y1, x1, y2, x2)] in normalized coordinates. Might
               be zero padded if there are not enough proposals.
    gt_class_ids: [MAX_GT_INSTANCES] int class IDs (negative: crowd)
    gt_boxes: [MAX_GT_INSTANCES, (y1, x1, y2, x2)] in normalized coordinates.
    gt_masks: [height, width, MAX_GT_INSTANCES] of boolean type (mini-masks
              when config["use_mini_mask"]).
    config: dict with train_rois_per_image, roi_positive_ratio,
            bbox_std_dev, mask_shape, use_mini_mask.

    Returns: Target ROIs and corresponding class IDs, bounding box shifts,
    and masks.
    rois: [TRAIN_ROIS_PER_IMAGE, (y1, x1, y2, x2)] in normalized coordinates
    class_ids: [TRAIN_ROIS_PER_IMAGE]. Integer class IDs. Zero padded.
    deltas: [TRAIN_ROIS_PER_IMAGE, (dy, dx, log(dh), log(dw))]
    masks: [TRAIN_ROIS_PER_IMAGE, height, width]. Masks cropped to bbox
           boundaries and resized to neural network output size.

    Note: Returned arrays might be zero padded if not enough target ROIs.
    """
    rois_per_image = config["train_rois_per_image"]
    positive_ratio = config["roi_positive_ratio"]
    # Remove zero padding
    proposals, _ = trim_zeros_graph(proposals, name="trim_proposals")
    gt_boxes, non_zeros = trim_zeros_graph(gt_boxes, name="trim_gt_boxes")
    gt_class_ids = tf.boolean_mask(gt_class_ids, non_zeros, name="trim_gt_class_ids")
    gt_masks = tf.gather(gt_masks, tf.where(non_zeros)[:, 0], axis=2, name="trim_gt_masks")

    # Handle COCO crowds: a crowd box in COCO is a bounding box around
    # several instances. Exclude them from training; proposals that overlap
    # a crowd are not used as negatives either.
    crowd_ix = tf.where(gt_class_ids < 0)[:, 0]
    non_crowd_ix = tf.where(gt_class_ids > 0)[:, 0]
    crowd_boxes = tf.gather(gt_boxes, crowd_ix)
    gt_class_ids = tf.gather(gt_class_ids, non_crowd_ix)
    gt_boxes = tf.gather(gt_boxes, non_crowd_ix)
    gt_masks = tf.gather(gt_masks, non_crowd_ix, axis=2)

    # Compute overlaps matrix [proposals, gt_boxes]
    overlaps = overlaps_graph(proposals, gt_boxes)
    crowd_overlaps = overlaps_graph(proposals, crowd_boxes)
    crowd_iou_max = tf.reduce_max(
        tf.concat([crowd_overlaps, tf.zeros_like(proposals[:, :1])], axis=1), axis=1)
    no_crowd_bool = crowd_iou_max < 0.001

    # Determine positive and negative ROIs
    roi_iou_max = tf.reduce_max(
        tf.concat([overlaps, tf.zeros_like(proposals[:, :1])], axis=1), axis=1)
    # 1. Positive ROIs are those with >= 0.5 IoU with a GT box
    positive_indices = tf.where(roi_iou_max >= 0.5)[:, 0]
    # 2. Negative ROIs are those with < 0.5 with every GT box. Skip crowds.
    negative_indices = tf.where(tf.logical_and(roi_iou_max < 0.5, no_crowd_bool))[:, 0]

    # Subsample ROIs. Aim for ROI_POSITIVE_RATIO positive.
    positive_count = int(rois_per_image * positive_ratio)
    positive_indices = tf.random.shuffle(positive_indices)[:positive_count]
    positive_count = tf.shape(positive_indices)[0]
    # Negative ROIs. Add enough to maintain positive:negative ratio.
    r = 1.0 / positive_ratio
    negative_count = tf.cast(r * tf.cast(positive_count, tf.float32), tf.int32) - positive_count
    negative_indices = tf.random.shuffle(negative_indices)[:negative_count]
    positive_rois = tf.gather(proposals, positive_indices)
    negative_rois = tf.gather(proposals, negative_indices)

    # Assign positive ROIs to GT boxes.
    positive_overlaps = tf.gather(overlaps, positive_indices)
    roi_gt_box_assignment = tf.cond(
        tf.greater(tf.shape(positive_overlaps)[1], 0),
        true_fn=lambda: tf.argmax(positive_overlaps, axis=1),
        false_fn=lambda: tf.zeros([0], tf.int64))
    roi_gt_boxes = tf.gather(gt_boxes, roi_gt_box_assignment)
    roi_gt_class_ids = tf.gather(gt_class_ids, roi_gt_box_assignment)

    # Compute bbox refinement for positive ROIs
    deltas = box_refinement_graph(positive_rois, roi_gt_boxes)
    deltas /= tf.constant(config["bbox_std_dev"], dtype=tf.float32)

    # Assign positive ROIs to GT masks: [N, height, width, 1]
    transposed_masks = tf.expand_dims(tf.transpose(gt_masks, [2, 0, 1]), -1)
    roi_masks = tf.gather(transposed_masks, roi_gt_box_assignment)

    # Compute mask targets
    boxes = positive_rois
    if config["use_mini_mask"]:
        # Transform ROI coordinates from normalized image space
        # to normalized mini-mask space.
        y1, x1, y2, x2 = tf.split(positive_rois, 4, axis=1)
        gt_y1, gt_x1, gt_y2, gt_x2 = tf.split(roi_gt_boxes, 4, axis=1)
        gt_h = gt_y2 - gt_y1
        gt_w = gt_x2 - gt_x1
        y1 = (y1 - gt_y1) / gt_h
        x1 = (x1 - gt_x1) / gt_w
        y2 = (y2 - gt_y1) / gt_h
        x2 = (x2 - gt_x1) / gt_w
        boxes = tf.concat([y1, x1, y2, x2], 1)
    box_ids = tf.range(0, tf.shape(roi_masks)[0])
    masks = tf.image.crop_and_resize(tf.cast(roi_masks, tf.float32), boxes,
                                     box_ids, config["mask_shape"])
    # Remove the extra dimension from masks.
    masks = tf.squeeze(masks, axis=3)
    # Threshold mask pixels at 0.5 to have GT masks be 0 or 1 to use with
    # binary cross entropy loss.
    masks = tf.round(masks)

    # Append negative ROIs and pad bbox deltas and masks that
    # are not used for negative ROIs with zeros.
    rois = tf.concat([positive_rois, negative_rois], axis=0)
    N = tf.shape(negative_rois)[0]
    P = tf.maximum(rois_per_image - tf.shape(rois)[0], 0)
    rois = tf.pad(rois, [(0, P), (0, 0)])
    roi_gt_class_ids = tf.pad(roi_gt_class_ids, [(0, N + P)])
    deltas = tf.pad(deltas, [(0, N + P), (0, 0)])
    masks = tf.pad(masks, [[0, N + P], (0, 0), (0, 0)])

    mask_h, mask_w = config["mask_shape"]
    return (tf.ensure_shape(rois, [rois_per_image, 4]),
            tf.ensure_shape(tf.cast(roi_gt_class_ids, tf.int32), [rois_per_image]),
            tf.ensure_shape(deltas, [rois_per_image, 4]),
            tf.ensure_shape(masks, [rois_per_image, mask_h, mask_w]))


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionTargetLayer(ConfiguredLayer):
    """Subsamples proposals and generates target box refinement, class_ids,
    and masks for each.

    Inputs:
    proposals: [batch, N, (y1, x1, y2, x2)] in normalized coordinates. Might
               be zero padded if there are not enough proposals.
    gt_class_ids: [batch, MAX_GT_INSTANCES] Integer class IDs.
    gt_boxes: [batch, MAX_GT_INSTANCES, (y1, x1, y2, x2)] in normalized
              coordinates.
    gt_masks: [batch, height, width, MAX_GT_INSTANCES] of boolean type

    Returns: Target ROIs and corresponding class IDs, bounding box shifts,
    and masks.
    rois: [batch, TRAIN_ROIS_PER_IMAGE, (y1, x1, y2, x2)] in normalized
          coordinates
    target_class_ids: [batch, TRAIN_ROIS_PER_IMAGE]. Integer class IDs.
    target_deltas: [batch, TRAIN_ROIS_PER_IMAGE, (dy, dx, log(dh), log(dw))]
    target_mask: [batch, TRAIN_ROIS_PER_IMAGE, height, width]
                 Masks cropped to bbox boundaries and resized to neural
                 network output size.

    Positives: IoU >= 0.5 with a non-crowd GT; negatives: IoU < 0.5 with all
    and < 0.001 with every crowd; ROI_POSITIVE_RATIO of TRAIN_ROIS_PER_IMAGE
    positive at most. Images are processed by tf.map_fn inside the graph,
    so any batch size works.
    """

    FIELDS = {
        "train_rois_per_image": ("TRAIN_ROIS_PER_IMAGE", int, 200),
        "roi_positive_ratio": ("ROI_POSITIVE_RATIO", float, 0.33),
        "bbox_std_dev": ("BBOX_STD_DEV", _as_float_list, (0.1, 0.1, 0.2, 0.2)),
        "mask_shape": ("MASK_SHAPE", lambda v: [int(s) for s in v], (28, 28)),
        "use_mini_mask": ("USE_MINI_MASK", bool, True),
    }

    def call(self, inputs):
        proposals, gt_class_ids, gt_boxes, gt_masks = inputs
        rois_per_image = self.settings["train_rois_per_image"]
        mask_h, mask_w = self.settings["mask_shape"]

        def one_image(args):
            return detection_targets_graph(*args, config=self.settings)

        return tf.map_fn(
            one_image,
            (tf.cast(proposals, tf.float32), tf.cast(gt_class_ids, tf.int32),
             tf.cast(gt_boxes, tf.float32), gt_masks),
            fn_output_signature=(
                tf.TensorSpec([rois_per_image, 4], tf.float32),
                tf.TensorSpec([rois_per_image], tf.int32),
                tf.TensorSpec([rois_per_image, 4], tf.float32),
                tf.TensorSpec([rois_per_image, mask_h, mask_w], tf.float32)))

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0]
        n = self.settings["train_rois_per_image"]
        mask_h, mask_w = self.settings["mask_shape"]
        return [(batch, n, 4), (batch, n), (batch, n, 4), (batch, n, mask_h, mask_w)]


############################################################
#  Detection Layer
############################################################

def refine_detections_graph(rois, probs, deltas, window, settings):
    """Refine classified proposals and filter overlaps and return final
    detections, for a whole batch.

    Inputs:
        rois: [batch, N, (y1, x1, y2, x2)] in normalized coordinates
        probs: [batch, N, num_classes]. Class probabilities.
        deltas: [batch, N, num_classes, (dy, dx, log(dh), log(dw))]. Class-specific
                bounding box deltas.
        window: [batch, (y1, x1, y2, x2)] in normalized coordinates. The part
            of the image that contains the image excluding the padding.
        settings: dict with bbox_std_dev, min_confidence, nms_threshold,
            max_instances.

    Returns detections shaped: [batch, max_instances, (y1, x1, y2, x2,
    class_id, score)] with coordinates normalized, highest score first,
    zero padded.

    Each ROI keeps its most likely class; background ROIs and those below
    DETECTION_MIN_CONFIDENCE are dropped; NMS runs per class; the
    DETECTION_MAX_INSTANCES best survivors over all classes are returned.
    """
    max_instances = settings["max_instances"]
    num_classes = tf.shape(probs)[2]
    class_ids = tf.argmax(probs, axis=2, output_type=tf.int32)           # [B, N]
    class_scores = tf.gather(probs, class_ids, batch_dims=2)              # [B, N]
    deltas_specific = tf.gather(deltas, class_ids, batch_dims=2)         # [B, N, 4]
    refined_rois = apply_box_deltas_graph(
        rois, deltas_specific * tf.constant(settings["bbox_std_dev"], shape=[1, 1, 4]))
    refined_rois = clip_boxes_graph(refined_rois, window[:, None, :])

    keep = tf.logical_and(class_ids > 0, class_scores >= settings["min_confidence"])
    # One score column per foreground class; rejected ROIs score -1 so the
    # NMS score threshold of -0.5 drops them whatever min_confidence is.
    one_hot = tf.one_hot(class_ids, num_classes, on_value=1.0, off_value=0.0)
    per_class = tf.where(keep[..., None] & (one_hot > 0), class_scores[..., None], -1.0)
    nms = tf.image.combined_non_max_suppression(
        refined_rois[:, :, None, :], per_class[:, :, 1:],
        max_output_size_per_class=max_instances, max_total_size=max_instances,
        iou_threshold=settings["nms_threshold"], score_threshold=-0.5,
        pad_per_class=False, clip_boxes=False)
    valid = tf.range(max_instances)[None, :] < nms.valid_detections[:, None]
    valid_f = tf.cast(valid, tf.float32)[..., None]
    detections = tf.concat([nms.nmsed_boxes,
                            (nms.nmsed_classes[..., None] + 1.0),
                            nms.nmsed_scores[..., None]], axis=2)
    return detections * valid_f


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionLayer(ConfiguredLayer):
    """Takes classified proposal boxes and their bounding box deltas and
    returns the final detection boxes.

    Inputs: [rpn_rois [batch, N, 4], mrcnn_class [batch, N, num_classes],
    mrcnn_bbox [batch, N, num_classes, 4], image_meta [batch, meta]].

    Returns:
    [batch, num_detections, (y1, x1, y2, x2, class_id, class_score)] where
    coordinates are normalized.
    """

    FIELDS = {
        "bbox_std_dev": ("BBOX_STD_DEV", _as_float_list, (0.1, 0.1, 0.2, 0.2)),
        "min_confidence": ("DETECTION_MIN_CONFIDENCE", float, 0.7),
        "nms_threshold": ("DETECTION_NMS_THRESHOLD", float, 0.3),
        "max_instances": ("DETECTION_MAX_INSTANCES", int, 100),
    }

    def call(self, inputs):
        rois, mrcnn_class, mrcnn_bbox, image_meta = inputs
        # Get windows of images in normalized coordinates. Windows are the
        # area in the image that excludes the padding.
        m = parse_image_meta_graph(image_meta)
        image_shape = m['image_shape'][0]
        window = norm_boxes_graph(m['window'], image_shape[:2])
        return refine_detections_graph(tf.cast(rois, tf.float32), mrcnn_class,
                                       mrcnn_bbox, window, self.settings)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.settings["max_instances"], 6)
