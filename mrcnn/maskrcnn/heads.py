"""
Mask R-CNN's box head: the classifier/regressor on pooled ROIs
(``fpn_classifier_graph``), and the glue layers the graph uses (``NormBoxes``,
``SliceRois``). The mask head is shared: ``mrcnn.roi_heads``.

Layer names follow the reference (``mrcnn_class_conv1``, ``mrcnn_bbox_fc``,
...) so the released weights load by name. Head layers are wrapped in
``roi_heads.RoiDistributed`` (the reference's ``TimeDistributed``, folded
into the batch axis: one call over ``[batch * num_rois, ...]``).
"""

import keras
from keras import layers as KL
from keras import ops

from mrcnn.backbone import BatchNorm, bn_training
# NormBoxes and SliceRois are shared with the other modes' ROI heads.
from mrcnn.roi_heads import NormBoxes, PyramidROIAlign, RoiDistributed, SliceRois  # noqa: F401


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
    training = bn_training(train_bn)
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


############################################################
#  Glue layers (serialisable replacements of the reference's Lambdas)
############################################################
