"""
Mask R-CNN
The second-stage heads: box classifier/regressor and mask predictor.

Layer names follow the reference (``mrcnn_class_conv1``, ``mrcnn_mask_bn4``,
``mrcnn_bbox_fc``, ...) so the released weights load by name. The reference
wrapped every head layer in ``TimeDistributed``; Keras 3's TimeDistributed
runs the wrapped layer once per ROI in a Python loop, which for 200 ROIs is
both slow and, for batch normalisation, statistically wrong (statistics per
ROI slot instead of over all ROIs). ``RoiDistributed`` folds the ROI axis
into the batch axis instead: one call over ``[batch * num_rois, ...]``, same
weights, same weight shapes, same output shapes as the reference.
"""

import keras
from keras import layers as KL
from keras import ops

from mrcnn.backbone import BatchNorm
from mrcnn.layers import PyramidROIAlign


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


def _bn_mode(train_bn):
    """TRAIN_BN -> ``training`` argument: False freezes the statistics."""
    return None if train_bn is None else bool(train_bn)


def fpn_classifier_graph(rois, feature_maps, image_meta,
                         pool_size, num_classes, train_bn=True,
                         fc_layers_size=1024):
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

    Returns:
        logits: [batch, num_rois, NUM_CLASSES] classifier logits (before softmax)
        probs: [batch, num_rois, NUM_CLASSES] classifier probabilities
        bbox_deltas: [batch, num_rois, NUM_CLASSES, (dy, dx, log(dh), log(dw))] Deltas to apply to
                     proposal boxes
    """
    training = _bn_mode(train_bn)
    # ROI Pooling. Shape: [batch, num_rois, POOL_SIZE, POOL_SIZE, channels]
    x = PyramidROIAlign([pool_size, pool_size],
                        name="roi_align_classifier")([rois, image_meta] + feature_maps)
    # Two 1024 FC layers (implemented with Conv2D for consistency)
    x = RoiDistributed(FullWindowConv2D(fc_layers_size, (pool_size, pool_size), padding="valid"),
                       name="mrcnn_class_conv1")(x)
    x = RoiDistributed(BatchNorm(), name='mrcnn_class_bn1')(x, training=training)
    x = KL.Activation('relu')(x)
    x = RoiDistributed(KL.Conv2D(fc_layers_size, (1, 1)), name="mrcnn_class_conv2")(x)
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


def build_fpn_mask_graph(rois, feature_maps, image_meta,
                         pool_size, num_classes, train_bn=True, conv_channels=256):
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

    Returns: Masks [batch, num_rois, 2 * pool_size, 2 * pool_size, NUM_CLASSES],
    per-class probabilities (sigmoid).
    """
    training = _bn_mode(train_bn)
    # ROI Pooling. Shape: [batch, num_rois, MASK_POOL_SIZE, MASK_POOL_SIZE, channels]
    x = PyramidROIAlign([pool_size, pool_size],
                        name="roi_align_mask")([rois, image_meta] + feature_maps)
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


############################################################
#  Glue layers (serialisable replacements of the reference's Lambdas)
############################################################

@keras.saving.register_keras_serializable(package="mrcnn")
class NormBoxes(KL.Layer):
    """Pixel boxes -> normalised boxes for the size of an image tensor.

    Inputs: [boxes [batch, N, (y1, x1, y2, x2)] pixels, image [batch, H, W, C]].
    Output: [batch, N, 4] float32, see utils.norm_boxes."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, inputs):
        from mrcnn.layers import norm_boxes_graph
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
