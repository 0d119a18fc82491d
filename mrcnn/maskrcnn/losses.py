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

# The box head's losses are shared (mrcnn.box_head).
from mrcnn.box_head import (mrcnn_bbox_loss, mrcnn_bbox_loss_graph,  # noqa: F401
                            mrcnn_class_loss, mrcnn_class_loss_graph, smooth_l1_loss)
from mrcnn.roi_heads import mrcnn_mask_loss_graph
from mrcnn.training.losses import register_loss_function, safe_mean


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
