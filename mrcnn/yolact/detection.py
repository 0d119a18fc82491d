"""
YOLACT's inference in the graph, batched (after dbolya/yolact
``layers/functions/detection.py`` and ``layers/output_utils.py``):
softmax, the priors whose best object class beats DETECTION_MIN_CONFIDENCE,
per-class top ``YOLACT_TOP_K`` and Fast NMS, the best
DETECTION_MAX_INSTANCES detections, and their masks assembled from the
prototypes, ``crop(sigmoid(prototypes @ coefficients), box)``, at prototype
resolution.

As in the reference, a kept prior brings all its class scores to Fast NMS
(a detection's own score may be below the confidence threshold; the
reference's ``second_threshold`` is off).
"""

import keras
import tensorflow as tf
from keras import layers as KL

from mrcnn import portable
from mrcnn.yolact.box_ops import crop_graph, decode_graph, fast_nms_graph


def detect_graph(loc, conf, coef, priors, proto, min_confidence=0.05, nms_threshold=0.5,
                 top_k=200, max_instances=100):
    """Detections of a batch.

    loc [B, P, 4] deltas, conf [B, P, C] logits, coef [B, P, k], priors
    [B, P, (cy, cx, h, w)] (or [P, 4]), proto [B, mh, mw, k].

    Returns (detections [B, D, (y1, x1, y2, x2, class_id, score)] relative
    boxes, zero rows past the detections; masks [B, mh, mw, D] in 0..1,
    zero past the detections), D = max_instances.
    """
    loc = tf.cast(loc, tf.float32)
    conf = tf.cast(conf, tf.float32)
    coef = tf.cast(coef, tf.float32)
    proto = tf.cast(proto, tf.float32)
    priors = tf.cast(priors, tf.float32)
    if len(priors.shape) == 2:
        priors = tf.broadcast_to(priors[None], tf.shape(loc))
    boxes = decode_graph(loc, priors)                                       # [B, P, 4]
    scores = tf.nn.softmax(conf, axis=-1)[..., 1:]                          # [B, P, C-1]
    kept = tf.reduce_max(scores, axis=-1) > min_confidence                  # [B, P]
    # Priors below the threshold take part with score -1: Fast NMS puts
    # them last and never returns them.
    scores = tf.where(kept[..., None], scores, -1.0)

    def one_image(args):
        image_boxes, image_scores, image_coef = args
        out_boxes, classes, out_scores, indices, valid = fast_nms_graph(
            image_boxes, tf.transpose(image_scores), nms_threshold, top_k, max_instances)
        out_coef = tf.gather(image_coef, indices) * tf.cast(valid, tf.float32)[:, None]
        detections = tf.concat([out_boxes, tf.cast(classes, tf.float32)[:, None],
                                out_scores[:, None]], axis=1)
        return detections * tf.cast(valid, tf.float32)[:, None], out_coef

    detections, det_coef = portable.map_fn(
        one_image, (boxes, scores, coef),
        fn_output_signature=(tf.TensorSpec([max_instances, 6], tf.float32),
                             tf.TensorSpec([max_instances, None], tf.float32)))
    masks = tf.sigmoid(tf.einsum("bhwk,bdk->bhwd", proto, det_coef))
    masks = crop_graph(masks, detections[..., :4])
    valid = tf.cast(detections[..., 4] > 0, tf.float32)
    return detections, masks * valid[:, None, None, :]


@keras.saving.register_keras_serializable(package="mrcnn")
class YolactDetection(KL.Layer):
    """``detect_graph`` as a layer. Inputs: [loc, conf, coef, priors,
    proto]; outputs: [detections, masks] (see detect_graph)."""

    def __init__(self, min_confidence=0.05, nms_threshold=0.5, top_k=200, max_instances=100,
                 **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.min_confidence = float(min_confidence)
        self.nms_threshold = float(nms_threshold)
        self.top_k = int(top_k)
        self.max_instances = int(max_instances)

    def get_config(self):
        config = super().get_config()
        config.update({"min_confidence": self.min_confidence,
                       "nms_threshold": self.nms_threshold, "top_k": self.top_k,
                       "max_instances": self.max_instances})
        return config

    def call(self, inputs):
        loc, conf, coef, priors, proto = inputs
        return list(detect_graph(loc, conf, coef, priors, proto, self.min_confidence,
                                 self.nms_threshold, self.top_k, self.max_instances))

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0]
        proto = input_shape[4]
        return [(batch, self.max_instances, 6),
                (batch, proto[1], proto[2], self.max_instances)]
