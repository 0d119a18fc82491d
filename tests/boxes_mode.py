"""A small model mode defined outside the package: the proof that a head
plugs in through ``mrcnn.modes`` and ``ModelBase`` without editing any file
of ``mrcnn``.

"boxes_only" is a one-level, anchor-free detector: the shared backbone and
feature pyramid, then on P3 (stride 8) one 3x3 convolution and two 1x1
outputs per cell, class logits (background included) and the distances
from the cell's centre to the box sides, ``log(distance / stride)``. A
ground-truth box is assigned to the cell holding its centre (the smaller
box wins a shared cell). Detection takes each cell's best class, keeps the
DETECTION_MAX_INSTANCES best above DETECTION_MIN_CONFIDENCE after per-class
NMS, and returns its boxes as masks (filled rectangles at the original
size), so ``detect()`` returns the same dict as every mode.

Importing this module registers the mode.
"""
import keras
import numpy as np
import tensorflow as tf
from keras import layers as KL

from mrcnn import backbone, modes, transform, utils
from mrcnn.data import load_image_gt, mold_image
from mrcnn.modelbase import ModelBase
from mrcnn.training import DetectionModel, LossLayer

STRIDE = 8


@keras.saving.register_keras_serializable(package="boxes_mode")
def boxes_class_loss(target_classes, class_logits):
    """Mean softmax cross-entropy over all cells.
    target_classes: [batch, h, w] int32; class_logits: [batch, h, w, classes]."""
    loss = keras.ops.sparse_categorical_crossentropy(
        target_classes, tf.cast(class_logits, tf.float32), from_logits=True)
    return tf.reduce_mean(loss)


@keras.saving.register_keras_serializable(package="boxes_mode")
def boxes_box_loss(target_classes, target_boxes, box_logits):
    """Mean L1 distance of the log side distances over the positive cells
    (0 without any). target_boxes, box_logits: [batch, h, w, 4]."""
    positive = tf.cast(target_classes > 0, tf.float32)
    l1 = tf.reduce_sum(tf.abs(target_boxes - tf.cast(box_logits, tf.float32)), axis=-1)
    return tf.math.divide_no_nan(tf.reduce_sum(l1 * positive), tf.reduce_sum(positive))


class BoxesOnly(ModelBase):
    """The "boxes_only" mode (see the module docstring)."""

    LOSS_NAMES = ("boxes_class_loss", "boxes_box_loss")
    DEFAULT_LOSS_WEIGHTS = {"boxes_class_loss": 1.0, "boxes_box_loss": 1.0}
    CHECKPOINT_PREFIX = "boxes_only"
    HEADS_REGEX = r"(boxes_.*)|(fpn_.*)"
    CLASS_SPECIFIC_LAYERS = ("boxes_class_logits",)

    @classmethod
    def validate_config(cls, config, add):
        super().validate_config(config, add)
        # Its own rule, not Mask R-CNN's multiple of 64: P5 (stride 32) is
        # the coarsest level it builds.
        if config.IMAGE_RESIZE_MODE != "square":
            add("MODEL='boxes_only' needs IMAGE_RESIZE_MODE='square'")
        elif config.IMAGE_MAX_DIM % 32:
            add("IMAGE_MAX_DIM={} must be a multiple of 32 for MODEL='boxes_only'".format(
                config.IMAGE_MAX_DIM))

    def build(self, mode, config):
        training = mode == "training"
        train_bn = config.TRAIN_BN if training else False
        input_image = KL.Input(shape=[None, None, config.IMAGE_CHANNEL_COUNT],
                               name="input_image")
        features = backbone.build_feature_pyramid(input_image, config, train_bn=train_bn,
                                                  levels=("P3",))
        x = KL.Conv2D(16, 3, padding="same", activation="relu", name="boxes_conv")(features[0])
        class_logits = KL.Conv2D(config.NUM_CLASSES, 1, name="boxes_class_logits",
                                 dtype="float32")(x)
        box_logits = KL.Conv2D(4, 1, name="boxes_box", dtype="float32")(x)
        if not training:
            return DetectionModel([input_image], [class_logits, box_logits], name="boxes_only")
        target_classes = KL.Input(shape=[None, None], dtype="int32", name="input_target_classes")
        target_boxes = KL.Input(shape=[None, None, 4], name="input_target_boxes")
        class_loss = LossLayer(boxes_class_loss, name="boxes_class_loss")(
            [target_classes, class_logits])
        box_loss = LossLayer(boxes_box_loss, name="boxes_box_loss")(
            [target_classes, target_boxes, box_logits])
        return DetectionModel([input_image, target_classes, target_boxes],
                              [class_logits, box_logits, class_loss, box_loss],
                              name="boxes_only", loss_names=self.LOSS_NAMES,
                              loss_weights=self.loss_weights(config),
                              weight_decay=config.WEIGHT_DECAY)

    # Targets, computed in NumPy by the data pipeline.
    def training_signature(self):
        h, w, c = [int(v) for v in self.config.IMAGE_SHAPE]
        return [("input_image", (h, w, c), np.float32),
                ("input_target_classes", (h // STRIDE, w // STRIDE), np.int32),
                ("input_target_boxes", (h // STRIDE, w // STRIDE, 4), np.float32)]

    def training_sample(self, dataset, image_id, augmentation):
        image, _, class_ids, boxes, _ = load_image_gt(
            dataset, self.config, image_id, augmentation=augmentation, use_mini_mask=True)
        if not np.any(class_ids > 0):
            return None
        classes, distances = cell_targets(image.shape, class_ids, boxes)
        return [mold_image(image, self.config), classes, distances]

    # Inference
    def inference_inputs(self, molded_images, image_metas):
        return [np.asarray(molded_images, np.float32)]

    def postprocess(self, outputs, index, original_shape, molded_shape, window):
        class_logits, box_logits = outputs[0][index], outputs[1][index]
        boxes, class_ids, scores = decode_cells(class_logits, box_logits, self.config)
        boxes = transform.unmold_boxes(utils.norm_boxes(boxes, molded_shape[:2]), window,
                                       molded_shape, original_shape)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, class_ids, scores = boxes[keep], class_ids[keep], scores[keep]
        masks = transform.paste_masks(np.ones((len(boxes), 1, 1), np.float32), boxes,
                                      original_shape)
        return boxes, class_ids, scores, masks


def cell_targets(image_shape, class_ids, boxes):
    """[h/8, w/8] class ids and [h/8, w/8, 4] log(distance / stride) of the
    box sides from each positive cell's centre (top, left, bottom, right)."""
    h, w = image_shape[0] // STRIDE, image_shape[1] // STRIDE
    classes = np.zeros((h, w), np.int32)
    distances = np.zeros((h, w, 4), np.float32)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in np.argsort(-areas):  # smaller boxes last: they win shared cells
        if class_ids[i] <= 0:
            continue
        y1, x1, y2, x2 = boxes[i].astype(np.float32)
        row = int(min(max((y1 + y2) / 2 // STRIDE, 0), h - 1))
        col = int(min(max((x1 + x2) / 2 // STRIDE, 0), w - 1))
        cy, cx = (row + 0.5) * STRIDE, (col + 0.5) * STRIDE
        sides = np.maximum([cy - y1, cx - x1, y2 - cy, x2 - cx], 1.0)
        classes[row, col] = class_ids[i]
        distances[row, col] = np.log(sides / STRIDE)
    return classes, distances


def decode_cells(class_logits, box_logits, config):
    """Per-cell predictions -> ([N, 4] molded-image pixel boxes, class ids,
    scores), best first, after per-class NMS."""
    logits = class_logits - class_logits.max(axis=-1, keepdims=True)
    probs = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    class_ids = probs[..., 1:].argmax(axis=-1) + 1
    scores = np.take_along_axis(probs, class_ids[..., None], axis=-1)[..., 0]
    rows, cols = np.nonzero(scores >= config.DETECTION_MIN_CONFIDENCE)
    sides = np.exp(np.clip(box_logits[rows, cols], -4, 4)) * STRIDE
    cy, cx = (rows + 0.5) * STRIDE, (cols + 0.5) * STRIDE
    boxes = np.stack([cy - sides[:, 0], cx - sides[:, 1], cy + sides[:, 2],
                      cx + sides[:, 3]], axis=1).astype(np.float32)
    class_ids, scores = class_ids[rows, cols].astype(np.int32), scores[rows, cols]
    keep = []
    for class_id in np.unique(class_ids):
        members = np.flatnonzero(class_ids == class_id)
        kept = utils.non_max_suppression(boxes[members], scores[members],
                                         config.DETECTION_NMS_THRESHOLD)
        keep.extend(members[kept])
    keep = np.asarray(keep, np.int64)
    keep = keep[np.argsort(-scores[keep], kind="stable")][:config.DETECTION_MAX_INSTANCES]
    return boxes[keep], class_ids[keep], scores[keep].astype(np.float32)


modes.register_mode("boxes_only", BoxesOnly)
