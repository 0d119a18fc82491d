"""
Mask R-CNN's second-stage graph layers: ``DetectionLayer`` (refines,
filters and suppresses the final detections), and, re-exported from the
shared ``mrcnn.roi_sampling``, ``DetectionTargetLayer`` (samples proposals
and builds the heads' targets in the graph while training) and
``ConfiguredLayer``, their base. The proposal layer is ``rpn``; ROIAlign
is the shared ``mrcnn.roi_heads``; box maths is ``mrcnn.box_ops``.

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

from mrcnn.box_ops import apply_box_deltas_graph, clip_boxes_graph, norm_boxes_graph
from mrcnn.image_meta import parse_image_meta_graph
# Proposal sampling is shared with the other modes' ROI heads.
from mrcnn.roi_sampling import (ConfiguredLayer, DetectionTargetLayer,  # noqa: F401
                                _as_float_list, detection_targets_graph)


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
