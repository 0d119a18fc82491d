"""
CenterNet's losses, after mmdetection's ``CenterNetUpdateHead.loss_by_feat``
with ``GaussianFocalLoss`` (``gaussian_focal_loss_with_pos_inds``) and
``GIoULoss``, batched in TensorFlow.

Inputs (B images, M points of all levels in ``targets.level_points``
order, C = NUM_CLASSES - 1 object classes, G ground-truth slots, K = 9 x
levels candidates per slot):

* ``heatmap`` [B, M, C] (``targets.heatmaps``), ``logits`` [B, M, C];
* ``box_target`` [B, M, 4] distances (top, left, bottom, right) in stride
  units, -1 rows for non-positives; ``box_pred`` [B, M, 4] the head's
  distances (stride units, clamped at 0);
* ``gt_class_ids`` [B, G] (0: padding), ``candidate_index`` [B, G, K],
  ``candidate_target`` [B, G, K, 4], ``candidate_valid``,
  ``candidate_forced`` [B, G, K] (``targets.centre_candidates``).

Both losses are normalised over the whole batch, as the reference on one
device: the focal loss by max(number of classification positives, 1), the
GIoU loss by max(number of box positives, 1). Images and batches without
instances give finite losses (the focal loss is then its negative term
alone). The loss weights (heatmap 1, box 2) are applied through
``LOSS_WEIGHTS``.
"""

import keras
import tensorflow as tf

INF = 1e9


def giou_loss_graph(pred, target, eps=1e-6):
    """1 - GIoU of boxes given as distances from the same point, [..., 4]
    (top, left, bottom, right) -> [...] (``targets.giou_loss``'s twin)."""
    pred = tf.cast(pred, tf.float32)
    target = tf.cast(target, tf.float32)
    area_p = (pred[..., 0] + pred[..., 2]) * (pred[..., 1] + pred[..., 3])
    area_t = (target[..., 0] + target[..., 2]) * (target[..., 1] + target[..., 3])
    inter_h = tf.maximum(tf.minimum(pred[..., 0], target[..., 0])
                         + tf.minimum(pred[..., 2], target[..., 2]), 0.0)
    inter_w = tf.maximum(tf.minimum(pred[..., 1], target[..., 1])
                         + tf.minimum(pred[..., 3], target[..., 3]), 0.0)
    overlap = inter_h * inter_w
    union = tf.maximum(area_p + area_t - overlap, eps)
    enclose = tf.maximum((tf.maximum(pred[..., 0], target[..., 0])
                          + tf.maximum(pred[..., 2], target[..., 2]))
                         * (tf.maximum(pred[..., 1], target[..., 1])
                            + tf.maximum(pred[..., 3], target[..., 3])), eps)
    return 1.0 - (overlap / union - (enclose - union) / enclose)


def extra_positives_graph(candidate_loss, valid, forced, topk=9, threshold=0.2):
    """``targets.extra_positives``'s twin, batched: [..., K] -> [..., K]
    bool (strictly below min(topk-th smallest, threshold))."""
    loss = tf.where(tf.cast(valid, tf.bool), tf.cast(candidate_loss, tf.float32), INF)
    loss = tf.where(tf.cast(forced, tf.bool), 0.0, loss)
    k = min(int(topk), int(loss.shape[-1]))
    smallest = -tf.math.top_k(-loss, k=k).values                      # ascending
    bound = tf.minimum(smallest[..., k - 1], threshold)
    return loss < bound[..., None]


@keras.saving.register_keras_serializable(package="mrcnn.centernet")
def heatmap_focal_loss(heatmap, logits, box_pred, gt_class_ids, candidate_index,
                       candidate_target, candidate_valid, candidate_forced, alpha=2.0,
                       gamma=4.0, pos_weight=0.25, neg_weight=0.75, sigmoid_clamp=1e-4,
                       topk=9, threshold=0.2, class_agnostic=False):
    """Gaussian focal loss over the heatmaps with the extra positives.

    Positives: per ground-truth box, its candidates selected by
    ``extra_positives_graph`` on the ranking loss 1 - GIoU(predicted box
    at the candidate, the box) (predictions held constant), each with the
    box's class (the single heatmap channel when ``class_agnostic``, the
    two-stage variant's objectness); a point chosen by two boxes counts
    twice, as in the reference. With p = clamp(sigmoid(logits), sigmoid_clamp, 1 -
    sigmoid_clamp) and n = max(positives, 1):
    ``pos_weight * sum(-log(p) (1 - p)^alpha over positives) / n +
    neg_weight * sum(-log(1 - p) p^alpha (1 - heatmap)^gamma) / n``.
    Scalar float32.
    """
    eps = 1e-12
    heatmap = tf.cast(heatmap, tf.float32)
    prob = tf.clip_by_value(tf.sigmoid(tf.cast(logits, tf.float32)), sigmoid_clamp,
                            1.0 - sigmoid_clamp)
    candidate_index = tf.cast(candidate_index, tf.int32)
    batch, slots, k = (tf.shape(candidate_index)[0], tf.shape(candidate_index)[1],
                       tf.shape(candidate_index)[2])
    flat_index = tf.reshape(candidate_index, [batch, -1])                     # [B, G*K]
    candidate_pred = tf.reshape(
        tf.gather(tf.stop_gradient(tf.cast(box_pred, tf.float32)), flat_index, batch_dims=1),
        [batch, slots, k, 4])
    ranking = giou_loss_graph(candidate_pred, candidate_target)
    real = tf.cast(gt_class_ids, tf.int32) > 0
    valid = tf.cast(candidate_valid, tf.bool) & real[..., None]
    forced = tf.cast(candidate_forced, tf.bool) & real[..., None]
    chosen = extra_positives_graph(ranking, valid, forced, topk, threshold)  # [B, G, K]
    classes = tf.maximum(tf.cast(gt_class_ids, tf.int32) - 1, 0)
    if class_agnostic:
        classes = tf.zeros_like(classes)
    classes = tf.broadcast_to(classes[..., None], tf.shape(candidate_index))
    gathered = tf.gather(prob, flat_index, batch_dims=1)                      # [B, G*K, C]
    pos_prob = tf.gather(gathered, tf.reshape(classes, [batch, -1]), batch_dims=2)
    pos_prob = tf.reshape(pos_prob, tf.shape(candidate_index))
    chosen_f = tf.cast(chosen, tf.float32)
    pos_loss = tf.reduce_sum(-tf.math.log(pos_prob + eps) * (1.0 - pos_prob) ** alpha * chosen_f)
    neg_loss = tf.reduce_sum(-tf.math.log(1.0 - prob + eps) * prob ** alpha
                             * (1.0 - heatmap) ** gamma)
    num_pos = tf.maximum(tf.reduce_sum(chosen_f), 1.0)
    return (pos_weight * pos_loss + neg_weight * neg_loss) / num_pos


@keras.saving.register_keras_serializable(package="mrcnn.centernet")
def box_giou_loss(box_target, box_pred):
    """Sum of 1 - GIoU over the box positives (rows of box_target that are
    not -1), divided by max(their count, 1). Scalar float32."""
    box_target = tf.cast(box_target, tf.float32)
    positive = tf.cast(tf.reduce_max(box_target, axis=-1) >= 0, tf.float32)
    loss = giou_loss_graph(box_pred, tf.maximum(box_target, 0.0))
    return tf.reduce_sum(loss * positive) / tf.maximum(tf.reduce_sum(positive), 1.0)
