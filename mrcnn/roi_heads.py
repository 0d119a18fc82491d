"""
Heads that work on regions of interest, shared by the modes that pool
features per box: multi-level ROIAlign (``PyramidROIAlign``), the ROI-wise
layer wrapper (``RoiDistributed``, the reference's TimeDistributed), the
box helpers ``NormBoxes`` and ``SliceRois``, and the FPN mask head with its
loss. Proposal sampling is ``mrcnn.roi_sampling``. Mask R-CNN uses them on its detections;
CenterNet's masks go through the same head.

Layer names are the reference's (``roi_align_mask``, ``mrcnn_mask_conv1``
... ``mrcnn_mask``), so the released weights load into the mask head.
"""

import keras
import tensorflow as tf
from keras import layers as KL
from keras import ops

from mrcnn import portable
from mrcnn.backbone import BatchNorm, bn_training
from mrcnn.box_ops import norm_boxes_graph
from mrcnn.image_meta import parse_image_meta_graph
from mrcnn.training.losses import safe_mean


def roi_levels_graph(boxes, image_shape, min_level=2, max_level=5):
    """FPN level of each box, from its size (Feature Pyramid Networks
    paper, eq. 1, with k0 = 4 and canonical size 224), clipped to
    ``min_level..max_level`` (P2-P5 for Mask R-CNN; P3-P5 for heads on a
    P3-P7 pyramid, as CenterNet2's).

    boxes: [..., (y1, x1, y2, x2)] normalised. image_shape: [(h, w, ...)]
    of the molded image (a 1-D tensor).

    Returns: int32 levels, shape boxes.shape[:-1]. Zero (padding) boxes
    get ``min_level``.
    """
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    image_area = tf.cast(image_shape[0] * image_shape[1], tf.float32)
    # Boxes are normalised: sqrt(h * w * area) is the side in pixels.
    side = tf.sqrt(tf.maximum(h * w, 0.0) * image_area)
    roi_level = tf.math.log(tf.maximum(side, 1e-6) / 224.0) / tf.math.log(2.0)
    roi_level = 4 + tf.cast(tf.round(roi_level), tf.int32)
    return tf.minimum(max_level, tf.maximum(min_level, roi_level))


@keras.saving.register_keras_serializable(package="mrcnn")
class PyramidROIAlign(KL.Layer):
    """Implements ROI Pooling on multiple levels of the feature pyramid.

    Params:
    - pool_shape: [pool_height, pool_width] of the output pooled regions. Usually [7, 7]

    Inputs:
    - boxes: [batch, num_boxes, (y1, x1, y2, x2)] in normalized
             coordinates. Possibly padded with zeros if not enough
             boxes to fill the array.
    - image_meta: [batch, (meta data)] Image details. See compose_image_meta()
    - feature_maps: List of feature maps from different levels of the pyramid.
                    Each is [batch, height, width, channels]

    Output:
    Pooled regions in the shape: [batch, num_boxes, pool_height, pool_width, channels].
    The width and height are those specific in the pool_shape in the layer
    constructor.

    Each box is cropped from the level given by roi_levels_graph with
    bilinear crop-and-resize; gradients do not flow into the box coordinates
    (as in the original). ``levels``: the pyramid levels of the feature
    maps, in order (P2-P5 by default; (3, 4, 5) for P3-P5).
    """

    def __init__(self, pool_shape, levels=(2, 3, 4, 5), **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.pool_shape = tuple(int(s) for s in pool_shape)
        self.levels = tuple(int(v) for v in levels)
        if list(self.levels) != list(range(self.levels[0], self.levels[0] + len(self.levels))):
            raise ValueError("PyramidROIAlign: levels must be consecutive, got {}".format(
                self.levels))

    def get_config(self):
        config = super().get_config()
        config.update({"pool_shape": list(self.pool_shape)})
        if self.levels != (2, 3, 4, 5):
            config["levels"] = list(self.levels)
        return config

    def call(self, inputs):
        boxes = tf.cast(inputs[0], tf.float32)
        image_meta = inputs[1]
        feature_maps = inputs[2:]
        image_shape = parse_image_meta_graph(image_meta)['image_shape'][0]
        roi_level = roi_levels_graph(boxes, image_shape, self.levels[0], self.levels[-1])

        batch = tf.shape(boxes)[0]
        num_boxes = tf.shape(boxes)[1]
        pooled = []
        box_positions = []
        for i, level in enumerate(self.levels):
            ix = tf.where(tf.equal(roi_level, level))        # [M, (batch, box)]
            level_boxes = tf.stop_gradient(tf.gather_nd(boxes, ix))
            box_indices = tf.stop_gradient(tf.cast(ix[:, 0], tf.int32))
            pooled.append(portable.crop_and_resize(
                feature_maps[i], level_boxes, box_indices, self.pool_shape))
            box_positions.append(ix[:, 0] * tf.cast(num_boxes, tf.int64) + ix[:, 1])
        pooled = tf.concat(pooled, axis=0)
        box_positions = tf.concat(box_positions, axis=0)
        # Every box sits in exactly one level: scatter back into box order.
        channels = tf.shape(feature_maps[0])[-1]
        flat_shape = tf.stack([batch * num_boxes, self.pool_shape[0],
                               self.pool_shape[1], channels])
        pooled = tf.scatter_nd(box_positions[:, None], pooled, tf.cast(flat_shape, tf.int64))
        out_shape = tf.stack([batch, num_boxes, self.pool_shape[0], self.pool_shape[1],
                              channels])
        return tf.reshape(pooled, out_shape)

    def compute_output_shape(self, input_shape):
        return input_shape[0][:2] + self.pool_shape + (input_shape[2][-1],)


@keras.saving.register_keras_serializable(package="mrcnn")
class RoiDistributed(KL.Wrapper):
    """Apply ``layer`` to every ROI of every image in one call.

    Input: [batch, num_rois, ...]; the wrapped layer sees
    [batch * num_rois, ...]. Output: [batch, num_rois, ...layer output].
    The weights are the wrapped layer's, so ``RoiDistributed(Conv2D(...),
    name="mrcnn_mask_conv1")`` has exactly the weights the reference's
    ``TimeDistributed`` layer of that name had.
    """

    def build(self, input_shape):
        inner_shape = (None,) + tuple(input_shape[2:])
        if not self.layer.built:
            self.layer.build(inner_shape)
        self.built = True

    def call(self, inputs, training=None):
        shape = ops.shape(inputs)
        folded = ops.reshape(inputs, (-1,) + tuple(inputs.shape[2:]))
        if isinstance(self.layer, KL.BatchNormalization):
            outputs = self.layer(folded, training=training)
        else:
            outputs = self.layer(folded)
        return ops.reshape(outputs, (shape[0], shape[1]) + tuple(outputs.shape[1:]))

    def compute_output_shape(self, input_shape):
        inner = self.layer.compute_output_shape((None,) + tuple(input_shape[2:]))
        return tuple(input_shape[:2]) + tuple(inner[1:])


@keras.saving.register_keras_serializable(package="mrcnn")
class NormBoxes(KL.Layer):
    """Pixel boxes -> normalised boxes for the size of an image tensor.

    Inputs: [boxes [batch, N, (y1, x1, y2, x2)] pixels, image [batch, H, W, C]].
    Output: [batch, N, 4] float32, see utils.norm_boxes."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, inputs):
        boxes, image = inputs
        return norm_boxes_graph(ops.cast(boxes, "float32"), ops.shape(image)[1:3])

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])


@keras.saving.register_keras_serializable(package="mrcnn")
class SliceRois(KL.Layer):
    """[batch, N, ...] -> [batch, count, ...]: the first ``count`` ROIs, and
    optionally only the first ``columns`` values of the last axis."""

    def __init__(self, count=None, columns=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.count = None if count is None else int(count)
        self.columns = None if columns is None else int(columns)

    def get_config(self):
        config = super().get_config()
        config.update({"count": self.count, "columns": self.columns})
        return config

    def call(self, inputs):
        x = inputs if self.count is None else inputs[:, :self.count]
        return x if self.columns is None else x[..., :self.columns]

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        if self.count is not None:
            shape[1] = self.count if shape[1] is None else min(self.count, shape[1])
        if self.columns is not None:
            shape[-1] = self.columns
        return tuple(shape)


@keras.saving.register_keras_serializable(package="mrcnn")
class PositiveRois(KL.Layer):
    """The ROI slots that hold a positive in some image of the batch.

    Inputs: rois [batch, N, 4] and target_class_ids [batch, N] from
    DetectionTargetLayer, which puts each image's positive ROIs first.
    Output: rois[:, :K], K = the largest number of positives of an image in
    the batch (at least 1, at most ``max_count``, the slots that can be
    positive). The mask head runs on these only: its loss counts positives
    alone, so the remaining slots were work without effect (with random or
    early weights an image often has a handful of positives out of
    TRAIN_ROIS_PER_IMAGE * ROI_POSITIVE_RATIO slots). K varies per batch.
    """

    def __init__(self, max_count, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.max_count = int(max_count)

    def get_config(self):
        config = super().get_config()
        config.update({"max_count": self.max_count})
        return config

    def call(self, inputs):
        rois, class_ids = inputs
        positives = tf.reduce_sum(tf.cast(class_ids[:, :self.max_count] > 0, tf.int32), axis=1)
        count = tf.clip_by_value(tf.reduce_max(positives), 1, self.max_count)
        return rois[:, :count]

    def compute_output_shape(self, input_shape):
        shape = list(input_shape[0])
        shape[1] = None
        return tuple(shape)


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectedRois(KL.Layer):
    """The boxes of the detection slots that hold a detection in some image
    of the batch.

    Input: detections [batch, D, (y1, x1, y2, x2, class_id, score)]
    normalised, each image's detections first and zeros after them (the
    detection layers of every mode pad so). Output: boxes [batch, K, 4], K =
    the largest number of detections of an image in the batch (at least 1).
    The mask head runs on these only: with D = DETECTION_MAX_INSTANCES = 100
    and a handful of objects, running it on every slot (as the reference
    did) cost as much as the ResNet50 backbone at 512 px (``detect()`` with
    10 detections: 0.63 s before, 0.41 s after). ``PadDetectionMasks`` restores the D
    slots. While ``portable.builtin_ops()`` is active (TFLite export), K = D:
    the exported graph keeps static shapes.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, detections):
        boxes = detections[..., :4]
        if portable.active():
            return boxes
        found = tf.reduce_sum(tf.cast(detections[..., 4] > 0, tf.int32), axis=1)
        count = tf.clip_by_value(tf.reduce_max(found), 1, tf.shape(detections)[1])
        return boxes[:, :count]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None, 4)


@keras.saving.register_keras_serializable(package="mrcnn")
class PadDetectionMasks(KL.Layer):
    """Masks of the first K detection slots -> masks of all D slots.

    Inputs: masks [batch, K, h, w, classes] (the mask head on
    ``DetectedRois``), detections [batch, D, 6]. Output: [batch, D, h, w,
    classes] float32, zero in every slot without a detection (class id 0).
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, inputs):
        masks, detections = inputs
        masks = tf.cast(masks, tf.float32)
        slots = tf.shape(detections)[1]
        masks = tf.pad(masks, [[0, 0], [0, slots - tf.shape(masks)[1]], [0, 0], [0, 0], [0, 0]])
        found = tf.cast(detections[..., 4] > 0, tf.float32)
        return masks * found[:, :, None, None, None]

    def compute_output_shape(self, input_shape):
        masks, detections = input_shape
        return (masks[0], detections[1]) + tuple(masks[2:])


def build_detection_mask_graph(detections, feature_maps, image_meta, pool_size, num_classes,
                               conv_channels=256, levels=(2, 3, 4, 5)):
    """The inference graph's masks: the FPN mask head (inference-mode batch
    norm) on the detection slots that hold detections (``DetectedRois``,
    named ``detection_boxes``), padded back to every slot
    (``PadDetectionMasks``, named ``detection_masks``).

    detections: [batch, D, (y1, x1, y2, x2, class_id, score)] normalised.
    Returns masks [batch, D, 2 * pool_size, 2 * pool_size, num_classes],
    zero in the slots without a detection. The ``mrcnn_mask`` layer's own
    output (``run_graph``) holds only the first K slots.
    """
    boxes = DetectedRois(name="detection_boxes")(detections)
    masks = build_fpn_mask_graph(boxes, feature_maps, image_meta, pool_size, num_classes,
                                 train_bn=False, conv_channels=conv_channels, levels=levels)
    return PadDetectionMasks(name="detection_masks")([masks, detections])


def positive_mask_rois(rois, target_class_ids, config):
    """The training graph's ROIs for the mask head: the slots of
    DetectionTargetLayer's ``rois`` that hold positives (``PositiveRois``),
    at most TRAIN_ROIS_PER_IMAGE * ROI_POSITIVE_RATIO of them."""
    slots = int(config.TRAIN_ROIS_PER_IMAGE * config.ROI_POSITIVE_RATIO)
    return PositiveRois(max(slots, 1), name="mask_rois")([rois, target_class_ids])


def build_fpn_mask_graph(rois, feature_maps, image_meta,
                         pool_size, num_classes, train_bn=True, conv_channels=256,
                         levels=(2, 3, 4, 5)):
    """Builds the computation graph of the mask head of Feature Pyramid Network.

    rois: [batch, num_rois, (y1, x1, y2, x2)] Proposal boxes in normalized
          coordinates.
    feature_maps: List of feature maps from different layers of the pyramid,
                  [P2, P3, P4, P5]. Each has a different resolution.
    image_meta: [batch, (meta data)] Image details. See compose_image_meta()
    pool_size: The width of the square feature map generated from ROI Pooling.
    num_classes: number of classes, which determines the depth of the results
    train_bn: Boolean (or None). Train or freeze Batch Norm layers
    conv_channels: width of the four 3x3 convolutions and the deconvolution
        (256 in the reference and the released weights; MASK_HEAD_CHANNELS).
    levels: the pyramid levels of ``feature_maps`` (see PyramidROIAlign).

    Returns: Masks [batch, num_rois, 2 * pool_size, 2 * pool_size, NUM_CLASSES],
    per-class probabilities (sigmoid).
    """
    training = bn_training(train_bn)
    # ROI Pooling. Shape: [batch, num_rois, MASK_POOL_SIZE, MASK_POOL_SIZE, channels]
    x = PyramidROIAlign([pool_size, pool_size], levels=levels,
                        name="roi_align_mask")([rois, image_meta] + list(feature_maps))
    for i in range(1, 5):
        x = RoiDistributed(KL.Conv2D(conv_channels, (3, 3), padding="same"),
                           name="mrcnn_mask_conv{}".format(i))(x)
        x = RoiDistributed(BatchNorm(), name='mrcnn_mask_bn{}'.format(i))(x, training=training)
        x = KL.Activation('relu')(x)
    x = RoiDistributed(KL.Conv2DTranspose(conv_channels, (2, 2), strides=2, activation="relu"),
                       name="mrcnn_mask_deconv")(x)
    # float32 output under mixed precision, as the classifier's.
    x = RoiDistributed(KL.Conv2D(num_classes, (1, 1), strides=1, activation="sigmoid",
                                 dtype="float32"), name="mrcnn_mask", dtype="float32")(x)
    return x


def mrcnn_mask_loss_graph(target_masks, target_class_ids, pred_masks):
    """Mask binary cross-entropy loss for the masks head.

    target_masks: [batch, num_rois, height, width].
        A float32 tensor of values 0 or 1. Uses zero padding to fill array.
    target_class_ids: [batch, num_rois]. Integer class IDs. Zero padded.
    pred_masks: [batch, proposals, height, width, num_classes] float32 tensor
                with values from 0 to 1.

    Binary cross-entropy of the true class's mask, averaged over the pixels
    of the positive ROIs. ``pred_masks`` may cover only the first
    ``proposals <= num_rois`` ROIs (the model predicts masks only for the
    slots that can hold positives; see DetectionTargetLayer); the targets
    are cut to match.
    """
    num = tf.shape(pred_masks)[1]
    class_ids = tf.cast(target_class_ids[:, :num], tf.int32)
    targets = tf.cast(target_masks[:, :num], tf.float32)
    # [batch, num, num_classes, h, w] -> the true class's mask [batch, num, h, w]
    pred = tf.transpose(tf.cast(pred_masks, tf.float32), [0, 1, 4, 2, 3])
    pred = tf.gather(pred, tf.maximum(class_ids, 0), batch_dims=2)
    bce = keras.ops.binary_crossentropy(targets, pred)
    weight = tf.cast(class_ids > 0, tf.float32)
    pixels = tf.cast(tf.shape(targets)[2] * tf.shape(targets)[3], tf.float32)
    total = tf.reduce_sum(tf.reduce_sum(bce, axis=[2, 3]) * weight)
    return safe_mean(total, pixels * tf.reduce_sum(weight))
