"""
The box head on regions of interest, shared by the modes with a second
stage (Mask R-CNN; CenterNet's two-stage variant): the classifier and
regressor on pooled ROIs (``fpn_classifier_graph``), the final detections
(``refine_detections_graph``, ``DetectionLayer``) and the head's two losses
(``mrcnn_class_loss``, ``mrcnn_bbox_loss``, also registered by name for
``LossLayer``).

Layer names follow the reference (``mrcnn_class_conv1``, ``mrcnn_bbox_fc``,
...) so the released weights load by name. Head layers are wrapped in
``roi_heads.RoiDistributed`` (the reference's ``TimeDistributed``, folded
into the batch axis: one call over ``[batch * num_rois, ...]``).

Coordinate frames: boxes are normalised ``(y1, x1, y2, x2)`` (see
utils.norm_boxes); box deltas are ``(dy, dx, log(dh), log(dw))`` divided by
BBOX_STD_DEV.

Differences from the reference: ``DetectionLayer`` works on the whole batch
with tensor operations (the reference sliced the batch in Python, which
fixed the batch size when the graph was built); the class loss uses each
image's own active classes (the reference used the first image's).
"""

import keras
import tensorflow as tf
from keras import layers as KL
from keras import ops

from mrcnn import portable
from mrcnn.backbone import BatchNorm, bn_training
from mrcnn.box_ops import apply_box_deltas_graph, clip_boxes_graph, norm_boxes_graph
from mrcnn.image_meta import parse_image_meta_graph
from mrcnn.roi_heads import PyramidROIAlign, RoiDistributed
from mrcnn.roi_sampling import ConfiguredLayer, _as_float_list
from mrcnn.training.losses import register_loss_function, safe_mean


############################################################
#  Classifier and regressor
############################################################

@keras.saving.register_keras_serializable(package="mrcnn")
class FullWindowConv2D(KL.Conv2D):
    """A "valid" Conv2D whose kernel covers its whole input (the classifier
    head's 7x7 convolution on 7x7 pooled features), computed as one matrix
    product.

    Same weights and output ([N, 1, 1, filters]) as Conv2D, so checkpoints
    and released weights load unchanged; TensorFlow's CPU gradient of such a
    convolution is pathologically slow (a third of a training step in our
    profile), the matrix product's is not. Inputs of another size fall back
    to the ordinary convolution.
    """

    def call(self, inputs):
        kh, kw = self.kernel_size
        if tuple(inputs.shape[1:3]) != (kh, kw) or self.padding != "valid":
            return super().call(inputs)
        flat = ops.reshape(inputs, (-1, kh * kw * inputs.shape[-1]))
        outputs = ops.matmul(flat, ops.reshape(self.kernel, (-1, self.filters)))
        if self.use_bias:
            outputs = outputs + self.bias
        if self.activation is not None:
            outputs = self.activation(outputs)
        return ops.reshape(outputs, (-1, 1, 1, self.filters))


def fpn_classifier_graph(rois, feature_maps, image_meta,
                         pool_size, num_classes, train_bn=True,
                         fc_layers_size=1024, levels=(2, 3, 4, 5)):
    """Builds the computation graph of the feature pyramid network classifier
    and regressor heads.

    rois: [batch, num_rois, (y1, x1, y2, x2)] Proposal boxes in normalized
          coordinates.
    feature_maps: List of feature maps from different layers of the pyramid,
                  [P2, P3, P4, P5]. Each has a different resolution.
    image_meta: [batch, (meta data)] Image details. See compose_image_meta()
    pool_size: The width of the square feature map generated from ROI Pooling.
    num_classes: number of classes, which determines the depth of the results
    train_bn: Boolean (or None). Train or freeze Batch Norm layers
    fc_layers_size: Size of the 2 FC layers
    levels: the pyramid levels of ``feature_maps`` (see PyramidROIAlign);
        CenterNet's two-stage variant pools from P3-P5.

    Returns:
        logits: [batch, num_rois, NUM_CLASSES] classifier logits (before softmax)
        probs: [batch, num_rois, NUM_CLASSES] classifier probabilities
        bbox_deltas: [batch, num_rois, NUM_CLASSES, (dy, dx, log(dh), log(dw))] Deltas to apply to
                     proposal boxes
    """
    training = bn_training(train_bn)
    # ROI Pooling. Shape: [batch, num_rois, POOL_SIZE, POOL_SIZE, channels]
    x = PyramidROIAlign([pool_size, pool_size], levels=levels,
                        name="roi_align_classifier")([rois, image_meta] + feature_maps)
    # Two 1024 FC layers (implemented with Conv2D for consistency)
    x = RoiDistributed(FullWindowConv2D(fc_layers_size, (pool_size, pool_size), padding="valid"),
                       name="mrcnn_class_conv1")(x)
    x = RoiDistributed(BatchNorm(), name='mrcnn_class_bn1')(x, training=training)
    x = KL.Activation('relu')(x)
    # A 1x1 convolution of 1x1 maps: a matrix product too (its Conv2D
    # gradient took 0.8 s of a 4.5 s ResNet50 training step at 512 px).
    x = RoiDistributed(FullWindowConv2D(fc_layers_size, (1, 1)), name="mrcnn_class_conv2")(x)
    x = RoiDistributed(BatchNorm(), name='mrcnn_class_bn2')(x, training=training)
    x = KL.Activation('relu')(x)
    # [batch, num_rois, 1, 1, fc] -> [batch, num_rois, fc]
    shared = KL.Reshape((-1, fc_layers_size), name="pool_squeeze")(x)

    # Classifier head. The output layers compute in float32 under mixed
    # precision (a few percent of the head's work), so logits, probabilities
    # and deltas keep float32 precision.
    mrcnn_class_logits = RoiDistributed(KL.Dense(num_classes, dtype="float32"),
                                        name='mrcnn_class_logits', dtype="float32")(shared)
    mrcnn_probs = KL.Activation("softmax", name="mrcnn_class", dtype="float32")(mrcnn_class_logits)

    # BBox head: [batch, num_rois, NUM_CLASSES * (dy, dx, log(dh), log(dw))]
    x = RoiDistributed(KL.Dense(num_classes * 4, activation='linear', dtype="float32"),
                       name='mrcnn_bbox_fc', dtype="float32")(shared)
    mrcnn_bbox = KL.Reshape((-1, num_classes, 4), name="mrcnn_bbox", dtype="float32")(x)
    return mrcnn_class_logits, mrcnn_probs, mrcnn_bbox


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
    if portable.active():
        # The same selection with TFLite built-ins: each ROI has one class.
        def one_image(args):
            image_boxes, image_scores, image_classes = args
            kept, count = portable.class_nms(image_boxes, image_scores, image_classes,
                                             max_instances, settings["nms_threshold"])
            rows = tf.concat([tf.gather(image_boxes, kept),
                              tf.cast(tf.gather(image_classes, kept), tf.float32)[:, None],
                              tf.gather(image_scores, kept)[:, None]], axis=1)
            return rows * tf.cast(tf.range(max_instances) < count, tf.float32)[:, None]

        return portable.map_fn(one_image, (refined_rois, tf.where(keep, class_scores, -1.0),
                                           class_ids),
                               fn_output_signature=tf.TensorSpec([max_instances, 6], tf.float32))
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


############################################################
#  Losses
############################################################

def smooth_l1_loss(y_true, y_pred):
    """Implements Smooth-L1 loss (elementwise).
    y_true and y_pred are typically: [N, 4], but could be any shape.
    """
    diff = tf.abs(y_true - y_pred)
    less_than_one = tf.cast(diff < 1.0, tf.float32)
    return (less_than_one * 0.5 * diff ** 2) + (1 - less_than_one) * (diff - 0.5)


def mrcnn_class_loss_graph(target_class_ids, pred_class_logits, active_class_ids):
    """Loss for the classifier head of Mask RCNN.

    target_class_ids: [batch, num_rois]. Integer class IDs. Uses zero
        padding to fill in the array.
    pred_class_logits: [batch, num_rois, num_classes]
    active_class_ids: [batch, num_classes]. Has a value of 1 for
        classes that are in the dataset of the image, and 0
        for classes that are not in the dataset.

    Cross-entropy averaged over the ROIs whose predicted class is active in
    that ROI's own image. The reference used the first image's active
    classes for the whole batch; that is fixed here.
    """
    target_class_ids = tf.cast(target_class_ids, tf.int32)
    logits = tf.cast(pred_class_logits, tf.float32)
    pred_class_ids = tf.argmax(logits, axis=2, output_type=tf.int32)
    pred_active = tf.gather(tf.cast(active_class_ids, tf.float32), pred_class_ids, batch_dims=1)
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target_class_ids,
                                                          logits=logits)
    return safe_mean(tf.reduce_sum(loss * pred_active), tf.reduce_sum(pred_active))


def mrcnn_bbox_loss_graph(target_bbox, target_class_ids, pred_bbox):
    """Loss for Mask R-CNN bounding box refinement.

    target_bbox: [batch, num_rois, (dy, dx, log(dh), log(dw))]
    target_class_ids: [batch, num_rois]. Integer class IDs.
    pred_bbox: [batch, num_rois, num_classes, (dy, dx, log(dh), log(dw))]

    Smooth-L1 of the true class's deltas, averaged over the 4 coordinates of
    the positive ROIs.
    """
    class_ids = tf.cast(target_class_ids, tf.int32)
    positive = class_ids > 0
    pred = tf.gather(tf.cast(pred_bbox, tf.float32), tf.maximum(class_ids, 0), batch_dims=2)
    loss = smooth_l1_loss(tf.cast(target_bbox, tf.float32), pred)
    weight = tf.cast(positive, tf.float32)[..., None]
    return safe_mean(tf.reduce_sum(loss * weight), 4.0 * tf.reduce_sum(weight))


@keras.saving.register_keras_serializable(package="mrcnn")
def mrcnn_class_loss(target_class_ids, pred_class_logits, image_meta):
    """The ``mrcnn_class_loss`` layer's function: mrcnn_class_loss_graph
    with each image's active class ids read from its image_meta
    [batch, IMAGE_META_SIZE] (the reference used the first image's for the
    whole batch)."""
    active_class_ids = parse_image_meta_graph(image_meta)["active_class_ids"]
    return mrcnn_class_loss_graph(target_class_ids, pred_class_logits, active_class_ids)


@keras.saving.register_keras_serializable(package="mrcnn")
def mrcnn_bbox_loss(target_bbox, target_class_ids, pred_bbox):
    """The ``mrcnn_bbox_loss`` layer's function: mrcnn_bbox_loss_graph."""
    return mrcnn_bbox_loss_graph(target_bbox, target_class_ids, pred_bbox)


register_loss_function("mrcnn_class_loss", mrcnn_class_loss)
register_loss_function("mrcnn_bbox_loss", mrcnn_bbox_loss)
