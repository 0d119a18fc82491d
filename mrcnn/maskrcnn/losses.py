"""
Mask R-CNN
The five training losses, batched (no per-image Python loops), and the
serialisable functions the Mask R-CNN graph's ``LossLayer`` s call under the
reference names (``rpn_class_loss``, ``rpn_bbox_loss``, ``mrcnn_class_loss``,
``mrcnn_bbox_loss``, ``mrcnn_mask_loss``).

Every loss returns a float32 scalar and is 0.0 (not NaN) when there is
nothing to average over (no positive anchors, no positive ROIs).
"""

import keras
import tensorflow as tf

from mrcnn.image_meta import parse_image_meta_graph
from mrcnn.roi_heads import mrcnn_mask_loss_graph
from mrcnn.training.losses import register_loss_function, safe_mean


def smooth_l1_loss(y_true, y_pred):
    """Implements Smooth-L1 loss (elementwise).
    y_true and y_pred are typically: [N, 4], but could be any shape.
    """
    diff = tf.abs(y_true - y_pred)
    less_than_one = tf.cast(diff < 1.0, tf.float32)
    return (less_than_one * 0.5 * diff ** 2) + (1 - less_than_one) * (diff - 0.5)



def rpn_class_loss_graph(rpn_match, rpn_class_logits):
    """RPN anchor classifier loss.

    rpn_match: [batch, anchors, 1]. Anchor match type. 1=positive,
               -1=negative, 0=neutral anchor.
    rpn_class_logits: [batch, anchors, 2]. RPN classifier logits for BG/FG.

    Mean cross-entropy over the non-neutral anchors of the whole batch.
    """
    rpn_match = tf.reshape(tf.cast(rpn_match, tf.int32), tf.shape(rpn_class_logits)[:2])
    anchor_class = tf.cast(rpn_match == 1, tf.int32)
    used = tf.cast(rpn_match != 0, tf.float32)
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=anchor_class, logits=tf.cast(rpn_class_logits, tf.float32))
    return safe_mean(tf.reduce_sum(loss * used), tf.reduce_sum(used))


def rpn_bbox_loss_graph(config, target_bbox, rpn_match, rpn_bbox):
    """Return the RPN bounding box loss graph.

    config: the model config object (unused; kept for the reference signature).
    target_bbox: [batch, max positive anchors, (dy, dx, log(dh), log(dw))].
        Uses 0 padding to fill in unused bbox deltas; row k of image b is the
        target of that image's k-th positive anchor (in anchor order).
    rpn_match: [batch, anchors, 1]. Anchor match type. 1=positive,
               -1=negative, 0=neutral anchor.
    rpn_bbox: [batch, anchors, (dy, dx, log(dh), log(dw))]

    Smooth-L1 averaged over the 4 coordinates of every positive anchor.
    The reference packed targets with a Python loop over IMAGES_PER_GPU;
    here each positive anchor finds its row by a cumulative count.
    """
    del config
    rpn_match = tf.reshape(tf.cast(rpn_match, tf.int32), tf.shape(rpn_bbox)[:2])
    positive = rpn_match == 1
    rank = tf.cumsum(tf.cast(positive, tf.int32), axis=1) - 1
    rank = tf.clip_by_value(rank, 0, tf.shape(target_bbox)[1] - 1)
    targets = tf.gather(tf.cast(target_bbox, tf.float32), rank, batch_dims=1)
    loss = smooth_l1_loss(targets, tf.cast(rpn_bbox, tf.float32))
    weight = tf.cast(positive, tf.float32)[..., None]
    return safe_mean(tf.reduce_sum(loss * weight), 4.0 * tf.reduce_sum(weight))


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
def rpn_class_loss(rpn_match, rpn_class_logits):
    """The ``rpn_class_loss`` layer's function: rpn_class_loss_graph."""
    return rpn_class_loss_graph(rpn_match, rpn_class_logits)


@keras.saving.register_keras_serializable(package="mrcnn")
def rpn_bbox_loss(target_bbox, rpn_match, rpn_bbox):
    """The ``rpn_bbox_loss`` layer's function: rpn_bbox_loss_graph without
    its (unused) config argument."""
    return rpn_bbox_loss_graph(None, target_bbox, rpn_match, rpn_bbox)


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


@keras.saving.register_keras_serializable(package="mrcnn")
def mrcnn_mask_loss(target_masks, target_class_ids, pred_masks):
    """The ``mrcnn_mask_loss`` layer's function: mrcnn_mask_loss_graph."""
    return mrcnn_mask_loss_graph(target_masks, target_class_ids, pred_masks)


# Loss layer name -> function of the layer's inputs, so that
# ``LossLayer(name="rpn_class_loss")`` (without a function, as models saved
# before losses were layer arguments) still finds its loss.
LOSS_FUNCTIONS = {
    "rpn_class_loss": rpn_class_loss,
    "rpn_bbox_loss": rpn_bbox_loss,
    "mrcnn_class_loss": mrcnn_class_loss,
    "mrcnn_bbox_loss": mrcnn_bbox_loss,
    "mrcnn_mask_loss": mrcnn_mask_loss,
}
for _name, _function in LOSS_FUNCTIONS.items():
    register_loss_function(_name, _function)
