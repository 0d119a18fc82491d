"""
YOLACT's losses, after dbolya/yolact ``layers/modules/multibox_loss.py``
with the ``yolact_base_config`` settings, batched in TensorFlow.

Inputs (per batch of B images, P priors, C classes with the background,
k prototypes, G ground-truth slots):

* ``conf_t`` [B, P] int: -1 neutral, 0 background, else the class id
  (``box_utils.match``); ``loc_t`` [B, P, 4] encoded deltas; ``idx_t``
  [B, P] the matched ground-truth slot;
* ``loc_p`` [B, P, 4], ``conf_p`` [B, P, C] logits, ``coef_p`` [B, P, k]
  (tanh), ``proto`` [B, mh, mw, k] (ReLU), ``segm_p`` [B, sh, sw, C - 1];
* ``gt_boxes`` [B, G, (y1, x1, y2, x2)] relative; ``gt_masks`` [B, mh, mw, G]
  in {0, 1}: the ground-truth masks resized bilinearly to the prototypes'
  size and thresholded at 0.5; ``segm_t`` [B, sh, sw, C - 1] in {0, 1}.

Like the reference, the box, class and mask losses are divided by the
number of positive priors in the whole batch, the semantic loss by the
batch size; the loss weights (``bbox_alpha`` 1.5, ``conf_alpha`` 1,
``mask_alpha`` 6.125, ``semantic_segmentation_alpha`` 1) are applied by
``DetectionModel`` through ``LOSS_WEIGHTS``. A batch without a positive
prior gives 0 where the reference divided by zero.
"""

import keras
import tensorflow as tf

from mrcnn.yolact.box_ops import crop_graph


def _num_positives(conf_t):
    return tf.reduce_sum(tf.cast(conf_t > 0, tf.float32))


@keras.saving.register_keras_serializable(package="mrcnn.yolact")
def box_loss(conf_t, loc_t, loc_p):
    """Smooth-L1 (beta 1) of the deltas of the positive priors, summed and
    divided by the batch's positive count. Scalar float32."""
    positive = tf.cast(conf_t > 0, tf.float32)
    diff = tf.abs(tf.cast(loc_t, tf.float32) - tf.cast(loc_p, tf.float32))
    smooth_l1 = tf.where(diff < 1.0, 0.5 * diff * diff, diff - 0.5)
    total = tf.reduce_sum(tf.reduce_sum(smooth_l1, axis=-1) * positive)
    return tf.math.divide_no_nan(total, _num_positives(conf_t))


@keras.saving.register_keras_serializable(package="mrcnn.yolact")
def ohem_class_loss(conf_t, conf_p, negpos_ratio=3):
    """Softmax cross-entropy over the positive priors and the hardest
    negatives (online hard example mining, ``negpos_ratio`` negatives per
    positive of the same image, at most P - 1), summed and divided by the
    batch's positive count. Negatives are ranked by ``logsumexp(logits) -
    background logit``; positive and neutral priors are never negatives.
    Scalar float32."""
    conf_t = tf.cast(conf_t, tf.int32)
    conf_p = tf.cast(conf_p, tf.float32)
    positive = conf_t > 0
    neutral = conf_t < 0
    mining = tf.reduce_logsumexp(conf_p, axis=-1) - conf_p[..., 0]
    mining = tf.where(positive | neutral, tf.zeros_like(mining), mining)
    order = tf.argsort(mining, axis=1, direction="DESCENDING", stable=True)
    rank = tf.argsort(order, axis=1, stable=True)
    num_priors = tf.shape(conf_t)[1]
    num_neg = tf.minimum(negpos_ratio * tf.reduce_sum(tf.cast(positive, tf.int32), axis=1),
                         num_priors - 1)
    negative = (rank < num_neg[:, None]) & ~positive & ~neutral
    targets = tf.maximum(conf_t, 0)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=conf_p)
    total = tf.reduce_sum(ce * tf.cast(positive | negative, tf.float32))
    return tf.math.divide_no_nan(total, _num_positives(conf_t))


def _clamped_log(x):
    """log(x) clamped at -100 as torch's binary_cross_entropy, with a finite
    gradient at 0 (log(0) would give 0 * inf = NaN through the clamp)."""
    positive = x > 0
    return tf.where(positive, tf.maximum(tf.math.log(tf.where(positive, x, 1.0)), -100.0),
                    -100.0)


def _bce(pred, target):
    """Binary cross-entropy of probabilities with torch's clamp of each log
    at -100 (so a probability of exactly 0 or 1 gives a finite loss and a
    finite gradient)."""
    return -(target * _clamped_log(pred) + (1.0 - target) * _clamped_log(1.0 - pred))


@keras.saving.register_keras_serializable(package="mrcnn.yolact")
def lincomb_mask_loss(conf_t, idx_t, coef_p, proto, gt_boxes, gt_masks, masks_to_train=100,
                      seed=None):
    """YOLACT's mask loss: each positive prior's mask ``sigmoid(proto @
    coef)`` at prototype resolution, cropped to its ground-truth box (1
    pixel of padding), binary cross-entropy with the ground-truth mask
    summed over the pixels and divided by the box's area in prototype
    pixels ("emulate ROI pooling"). At most ``masks_to_train`` positives
    per image, chosen at random, the image's sum then scaled by positives /
    masks_to_train. Summed over the batch and divided by its positive
    count. Scalar float32."""
    conf_t = tf.cast(conf_t, tf.int32)
    proto = tf.cast(proto, tf.float32)
    coef_p = tf.cast(coef_p, tf.float32)
    gt_masks = tf.cast(gt_masks, tf.float32)
    mask_h = tf.cast(tf.shape(proto)[1], tf.float32)
    mask_w = tf.cast(tf.shape(proto)[2], tf.float32)
    positive = conf_t > 0
    num_pos = tf.reduce_sum(tf.cast(positive, tf.int32), axis=1)             # [B]
    count = tf.minimum(masks_to_train, tf.shape(conf_t)[1])
    # A random order of each image's positives; the first `count` are used.
    noise = tf.random.uniform(tf.shape(conf_t), seed=seed)
    _, chosen = tf.math.top_k(tf.where(positive, noise, -1.0), k=count)    # [B, M]
    valid = tf.gather(positive, chosen, batch_dims=1)
    coef = tf.gather(coef_p, chosen, batch_dims=1)                          # [B, M, k]
    slot = tf.gather(tf.cast(idx_t, tf.int32), chosen, batch_dims=1)        # [B, M]
    boxes = tf.gather(tf.cast(gt_boxes, tf.float32), slot, batch_dims=1)    # [B, M, 4]
    target = tf.gather(tf.transpose(gt_masks, [0, 3, 1, 2]), slot, batch_dims=1)
    target = tf.transpose(target, [0, 2, 3, 1])                             # [B, mh, mw, M]
    pred = tf.sigmoid(tf.einsum("bhwk,bmk->bhwm", proto, coef))
    pred = crop_graph(pred, boxes)
    per_mask = tf.reduce_sum(_bce(tf.clip_by_value(pred, 0.0, 1.0), target), axis=[1, 2])
    area = (boxes[..., 2] - boxes[..., 0]) * mask_h * (boxes[..., 3] - boxes[..., 1]) * mask_w
    per_mask = tf.math.divide_no_nan(per_mask, area) * tf.cast(valid, tf.float32)
    used = tf.minimum(num_pos, masks_to_train)
    scale = tf.math.divide_no_nan(tf.cast(num_pos, tf.float32), tf.cast(used, tf.float32))
    total = tf.reduce_sum(tf.reduce_sum(per_mask, axis=1) * scale)
    return tf.math.divide_no_nan(total, _num_positives(conf_t))


@keras.saving.register_keras_serializable(package="mrcnn.yolact")
def semantic_segmentation_loss(segm_t, segm_p):
    """Per-class sigmoid cross-entropy of the semantic segmentation head
    (on P3) against the class maps of the ground-truth masks, summed,
    divided by the map's area and by the batch size. Scalar float32."""
    segm_p = tf.cast(segm_p, tf.float32)
    loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(segm_t, tf.float32),
                                                   logits=segm_p)
    shape = tf.cast(tf.shape(segm_p), tf.float32)
    return tf.reduce_sum(loss) / (shape[1] * shape[2] * shape[0])
