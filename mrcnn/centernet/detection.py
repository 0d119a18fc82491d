"""
CenterNet's inference in the graph, batched (mmdetection's
``BaseDenseHead._predict_by_feat_single`` and ``_bbox_post_process`` as
``CenterNetUpdateHead`` uses them): per level, the (point, class) pairs
whose sigmoid score beats DETECTION_MIN_CONFIDENCE, the best
CENTERNET_PRE_NMS_TOP_K of them; boxes decoded from the points and the
distances times the stride, clipped to the image window; boxes under a
pixel on a side dropped; class-aware NMS at DETECTION_NMS_THRESHOLD; the best
DETECTION_MAX_INSTANCES.

Output format: Mask R-CNN's ``DetectionLayer``'s, ``[B, D, (y1, x1, y2, x2,
class_id, score)]`` with boxes normalised as ``utils.norm_boxes`` (so the
shared ROI mask head and post-processing take them as they are), zero rows
after the detections.
"""

import keras
import tensorflow as tf
from keras import layers as KL

from mrcnn import portable
from mrcnn.image_meta import parse_image_meta_graph


def decode_graph(points, distances, strides):
    """Pixel boxes (y1, x1, y2, x2) from points [..., (y, x)], distances
    [..., (top, left, bottom, right)] in stride units and strides [...]."""
    scaled = distances * strides[..., None]
    return tf.concat([points - scaled[..., :2], points + scaled[..., 2:]], axis=-1)


def level_points_graph(height, width, stride):
    """[h * w, (y, x)] cell centres of a level, row-major (the twin of
    ``targets.level_points``)."""
    ys = (tf.range(height, dtype=tf.float32) + 0.5) * stride
    xs = (tf.range(width, dtype=tf.float32) + 0.5) * stride
    grid = tf.stack(tf.meshgrid(ys, xs, indexing="ij"), axis=-1)
    return tf.reshape(grid, [-1, 2])


def detect_graph(level_logits, level_distances, strides, window, image_hw,
                 min_confidence=0.05, pre_nms_top_k=1000, nms_threshold=0.6,
                 max_instances=100):
    """Detections of a batch.

    level_logits: per level [B, h, w, C] (object classes, class id =
    channel + 1); level_distances: per level [B, h, w, 4] in stride units;
    strides: per level; window [B, 4] pixels of the image in the molded
    one; image_hw [B, 2] the molded size (for normalising).

    Returns [B, max_instances, 6] float32 (see the module docstring).
    """
    window = tf.cast(window, tf.float32)
    cand_boxes, cand_scores, cand_classes = [], [], []
    for logits, distances, stride in zip(level_logits, level_distances, strides):
        logits = tf.cast(logits, tf.float32)
        shape = tf.shape(logits)
        batch, height, width, num_classes = shape[0], shape[1], shape[2], shape[3]
        points = level_points_graph(height, width, float(stride))               # [hw, 2]
        distances = tf.reshape(tf.cast(distances, tf.float32), [batch, -1, 4])
        boxes = decode_graph(points[None], distances, tf.fill(tf.shape(distances)[:2],
                                                               float(stride)))
        boxes = tf.stack([tf.clip_by_value(boxes[..., i], window[:, None, i % 2],
                                           window[:, None, 2 + i % 2]) for i in range(4)],
                         axis=-1)
        scores = tf.reshape(tf.sigmoid(logits), [batch, -1])                    # [B, hw*C]
        k = tf.minimum(int(pre_nms_top_k), tf.shape(scores)[1])
        top = tf.math.top_k(scores, k=k)
        cand_boxes.append(tf.gather(boxes, top.indices // num_classes, batch_dims=1))
        cand_scores.append(top.values)
        cand_classes.append(top.indices % num_classes + 1)
    cand_boxes = tf.concat(cand_boxes, axis=1)
    cand_scores = tf.concat(cand_scores, axis=1)
    cand_classes = tf.concat(cand_classes, axis=1)
    # Boxes under a pixel on a side are dropped: the normalised frame's
    # (y2 - 1, x2 - 1) would put their corners in the wrong order (the
    # reference drops boxes without area).
    area_ok = (cand_boxes[..., 2] - cand_boxes[..., 0] >= 1.0) & \
        (cand_boxes[..., 3] - cand_boxes[..., 1] >= 1.0)
    cand_scores = tf.where((cand_scores > min_confidence) & area_ok, cand_scores, -1.0)
    height = tf.cast(image_hw[:, 0], tf.float32)
    width = tf.cast(image_hw[:, 1], tf.float32)

    def one_image(args):
        image_boxes, image_scores, image_classes, h, w = args
        # Class-aware NMS in one call: each class moved to its own region.
        offset = tf.cast(image_classes, tf.float32) * (tf.maximum(h, w) + 1.0)
        shifted = image_boxes + offset[:, None]
        keep = tf.image.non_max_suppression(shifted, image_scores, max_instances,
                                            iou_threshold=nms_threshold, score_threshold=0.0)
        keep = tf.boolean_mask(keep, tf.gather(image_scores, keep) > 0)
        kept_boxes = tf.gather(image_boxes, keep)
        scale = tf.stack([h - 1.0, w - 1.0, h - 1.0, w - 1.0])
        normalised = (kept_boxes - tf.constant([0.0, 0.0, 1.0, 1.0])) / scale
        rows = tf.concat([normalised, tf.cast(tf.gather(image_classes, keep), tf.float32)[:, None],
                          tf.gather(image_scores, keep)[:, None]], axis=1)
        return tf.pad(rows, [[0, max_instances - tf.shape(rows)[0]], [0, 0]])

    return portable.map_fn(one_image, (cand_boxes, cand_scores, cand_classes, height, width),
                     fn_output_signature=tf.TensorSpec([max_instances, 6], tf.float32))


@keras.saving.register_keras_serializable(package="mrcnn")
class CenterNetDetection(KL.Layer):
    """``detect_graph`` as a layer. Inputs: [logits of each level...,
    distances of each level..., image_meta] (4-D maps, P3 first); output
    [B, max_instances, 6]. Any image size: the points come from the maps'
    shapes."""

    def __init__(self, strides=(8, 16, 32, 64, 128), min_confidence=0.05, pre_nms_top_k=1000,
                 nms_threshold=0.6, max_instances=100, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.strides = [int(v) for v in strides]
        self.min_confidence = float(min_confidence)
        self.pre_nms_top_k = int(pre_nms_top_k)
        self.nms_threshold = float(nms_threshold)
        self.max_instances = int(max_instances)

    def get_config(self):
        config = super().get_config()
        config.update({"strides": self.strides, "min_confidence": self.min_confidence,
                       "pre_nms_top_k": self.pre_nms_top_k, "nms_threshold": self.nms_threshold,
                       "max_instances": self.max_instances})
        return config

    def call(self, inputs):
        levels = len(self.strides)
        image_meta = inputs[-1]
        meta = parse_image_meta_graph(image_meta)
        return detect_graph(inputs[:levels], inputs[levels:2 * levels], self.strides,
                            meta["window"], meta["image_shape"][:, :2], self.min_confidence,
                            self.pre_nms_top_k, self.nms_threshold, self.max_instances)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.max_instances, 6)


@keras.saving.register_keras_serializable(package="mrcnn")
class ProposalScores(KL.Layer):
    """The two-stage variant's detection scores (CenterNet2's
    ``MULT_PROPOSAL_SCORE``): sqrt(class probability x the proposal's
    objectness score).

    Inputs: [class probabilities [B, N, NUM_CLASSES] of the box head,
    proposals [B, N, (y1, x1, y2, x2, class_id, score)]]. Output [B, N,
    NUM_CLASSES] float32; each ROI's most likely class is unchanged (zero
    padded proposals score 0 and drop out of ``DetectionLayer``).
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, inputs):
        probs, proposals = inputs
        objectness = tf.maximum(tf.cast(proposals[..., 5:6], tf.float32), 0.0)
        return tf.sqrt(tf.cast(probs, tf.float32) * objectness)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])
