"""
Proposal sampling for the heads that learn on regions of interest, shared
by every mode that has them: ``DetectionTargetLayer`` samples a mode's
proposals (Mask R-CNN's RPN proposals, CenterNet's own detections) against
the ground truth and builds the targets of the box classifier and the ROI
mask head; ``ConfiguredLayer`` is the base of graph layers whose settings
come from a Config.

Coordinate frames: boxes are normalised ``(y1, x1, y2, x2)`` (see
utils.norm_boxes), which is what ``tf.image.crop_and_resize`` expects.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import layers as KL

from mrcnn.box_ops import box_refinement_graph, overlaps_graph, trim_zeros_graph


############################################################
#  Graph helpers
############################################################


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
