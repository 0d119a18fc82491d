"""
Mask R-CNN's region proposal network: the RPN head shared across pyramid
levels (the nested model ``rpn_model`` holding ``rpn_conv_shared``,
``rpn_class_raw`` and ``rpn_bbox_pred``, names the released weights load
by) and the ProposalLayer that turns its scores and deltas into proposals.
"""

import keras
import tensorflow as tf
from keras import layers as KL

from mrcnn import portable
from mrcnn.box_ops import apply_box_deltas_graph, clip_boxes_graph
from mrcnn.maskrcnn.detection import _as_float_list


def rpn_graph(feature_map, anchors_per_location, anchor_stride, conv_channels=512):
    """Builds the computation graph of Region Proposal Network.

    feature_map: backbone features [batch, height, width, depth]
    anchors_per_location: number of anchors per pixel in the feature map
    anchor_stride: Controls the density of anchors. Typically 1 (anchors for
                   every pixel in the feature map), or 2 (every other pixel).
    conv_channels: width of the shared 3x3 convolution (512 in the original
                   and the released weights; RPN_CONV_CHANNELS).

    Returns:
        rpn_class_logits: [batch, H * W * anchors_per_location, 2] Anchor classifier logits (before softmax)
        rpn_probs: [batch, H * W * anchors_per_location, 2] Anchor classifier probabilities.
        rpn_bbox: [batch, H * W * anchors_per_location, (dy, dx, log(dh), log(dw))] Deltas to be
                  applied to anchors.
    """
    # Shared convolutional base of the RPN
    shared = KL.Conv2D(conv_channels, (3, 3), padding='same', activation='relu',
                       strides=anchor_stride,
                       name='rpn_conv_shared')(feature_map)

    # Anchor Score. [batch, height, width, anchors per location * 2].
    # The output layers compute in float32 under mixed precision (two 1x1
    # convolutions with few filters), so scores and deltas keep float32
    # precision.
    x = KL.Conv2D(2 * anchors_per_location, (1, 1), padding='valid',
                  activation='linear', name='rpn_class_raw', dtype="float32")(shared)

    # Reshape to [batch, anchors, 2]
    rpn_class_logits = KL.Reshape((-1, 2), dtype="float32")(x)

    # Softmax on last dimension of BG/FG.
    rpn_probs = KL.Activation("softmax", name="rpn_class_xxx", dtype="float32")(rpn_class_logits)

    # Bounding box refinement. [batch, H, W, anchors per location * depth]
    # where depth is [x, y, log(w), log(h)]
    x = KL.Conv2D(anchors_per_location * 4, (1, 1), padding="valid",
                  activation='linear', name='rpn_bbox_pred', dtype="float32")(shared)

    # Reshape to [batch, anchors, 4]
    rpn_bbox = KL.Reshape((-1, 4), dtype="float32")(x)

    return [rpn_class_logits, rpn_probs, rpn_bbox]


def build_rpn_model(anchor_stride, anchors_per_location, depth, conv_channels=512):
    """Builds a Keras model of the Region Proposal Network.
    It wraps the RPN graph so it can be used multiple times with shared
    weights.

    anchors_per_location: number of anchors per pixel in the feature map
    anchor_stride: Controls the density of anchors. Typically 1 (anchors for
                   every pixel in the feature map), or 2 (every other pixel).
    depth: Depth of the backbone feature map.
    conv_channels: width of the shared convolution (RPN_CONV_CHANNELS).

    Returns a Keras Model object named "rpn_model". The model outputs, when
    called, are:
    rpn_class_logits: [batch, H * W * anchors_per_location, 2] Anchor classifier logits (before softmax)
    rpn_probs: [batch, H * W * anchors_per_location, 2] Anchor classifier probabilities.
    rpn_bbox: [batch, H * W * anchors_per_location, (dy, dx, log(dh), log(dw))] Deltas to be
                applied to anchors.
    """
    input_feature_map = KL.Input(shape=[None, None, depth],
                                 name="input_rpn_feature_map")
    outputs = rpn_graph(input_feature_map, anchors_per_location, anchor_stride,
                        conv_channels=conv_channels)
    return keras.Model([input_feature_map], outputs, name="rpn_model")


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
        return portable.nms_padded(image_boxes, image_scores, max_output_size,
                                   iou_threshold, float("-inf"))

    return portable.map_fn(one_image, (boxes, scores),
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
