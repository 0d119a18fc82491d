"""
YOLACT's heads on the shared feature pyramid (after dbolya/yolact
``yolact.py`` with ``yolact_base_config``):

* the protonet on P3: 3 x [3x3, 256, ReLU] -> 2x bilinear upsampling ->
  3x3, 256, ReLU -> 1x1, k, ReLU: ``k`` prototypes at twice P3's size (a
  quarter of the input);
* one prediction head shared by every level (``PredictionHead``: its
  layers are created once and called on each level): 3x3, 256, ReLU, then 3x3 convolutions for the box
  deltas, the class logits (background included) and the mask
  coefficients (tanh), ``A`` priors per location;
* the semantic segmentation head on P3 (1x1, NUM_CLASSES - 1 logits), used
  by the training loss only.

Tensors are NHWC. The prediction outputs of the levels are concatenated in
the priors' order (level -> row -> column -> anchor), so row ``i`` of every
output belongs to prior ``i`` of ``box_utils.make_priors``. Box deltas are
``(dy, dx, dh, dw)``: the reference's are x first, so its bbox layer's
output channels are permuted when its weights are converted.
"""

import keras
from keras import layers as KL


@keras.saving.register_keras_serializable(package="mrcnn")
class BilinearUpsample(KL.Layer):
    """[batch, h, w, C] -> [batch, factor * h, factor * w, C], bilinear with
    half-pixel centres (``F.interpolate(scale_factor=factor,
    mode="bilinear", align_corners=False)``). Unlike Keras's UpSampling2D
    it takes maps whose size is only known at run time inside a
    tf.function (detect() serves every image size with one trace)."""

    def __init__(self, factor=2, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)

    def get_config(self):
        config = super().get_config()
        config["factor"] = self.factor
        return config

    def call(self, x):
        import tensorflow as tf
        size = tf.shape(x)[1:3] * self.factor
        return tf.cast(tf.image.resize(x, size, method="bilinear"), x.dtype)

    def compute_output_shape(self, input_shape):
        batch, h, w, c = input_shape
        return (batch, None if h is None else h * self.factor,
                None if w is None else w * self.factor, c)


def protonet_graph(p3, num_prototypes, channels=256):
    """[batch, h, w, C] P3 -> [batch, 2h, 2w, num_prototypes] prototypes
    (non-negative)."""
    x = p3
    for i in range(1, 4):
        x = KL.Conv2D(channels, 3, padding="same", activation="relu",
                      name="yolact_proto_conv{}".format(i))(x)
    x = BilinearUpsample(2, name="yolact_proto_upsample")(x)
    x = KL.Conv2D(channels, 3, padding="same", activation="relu", name="yolact_proto_conv4")(x)
    return KL.Conv2D(num_prototypes, 1, activation="relu", name="yolact_proto_out",
                     dtype="float32")(x)


class PredictionHead(object):
    """The prediction head shared by every pyramid level: its four
    convolutions (``yolact_upfeature`` 3x3 + ReLU, then 3x3 ``yolact_bbox``,
    ``yolact_conf`` and ``yolact_coef`` + tanh) are created once and
    called on each level, so their weights are shared and each is a
    top-level layer of the model (``load_weights(exclude=["yolact_conf"])``
    leaves the class-specific one out when fine-tuning on another class
    count). The three output convolutions compute in float32 under mixed
    precision.

    ``head(feature)``: [batch, h, w, depth] -> (box deltas [batch, h * w *
    num_anchors, 4], class logits [..., num_classes], mask coefficients
    [..., num_prototypes] in (-1, 1)), rows location-major, anchor-minor.
    """

    def __init__(self, num_anchors, num_classes, num_prototypes, channels=256):
        self.num_classes = num_classes
        self.num_prototypes = num_prototypes
        self.upfeature = KL.Conv2D(channels, 3, padding="same", activation="relu",
                                   name="yolact_upfeature")
        self.bbox = KL.Conv2D(num_anchors * 4, 3, padding="same", name="yolact_bbox",
                              dtype="float32")
        self.conf = KL.Conv2D(num_anchors * num_classes, 3, padding="same",
                              name="yolact_conf", dtype="float32")
        self.coef = KL.Conv2D(num_anchors * num_prototypes, 3, padding="same",
                              activation="tanh", name="yolact_coef", dtype="float32")

    def __call__(self, feature):
        x = self.upfeature(feature)
        return (KL.Reshape((-1, 4), dtype="float32")(self.bbox(x)),
                KL.Reshape((-1, self.num_classes), dtype="float32")(self.conf(x)),
                KL.Reshape((-1, self.num_prototypes), dtype="float32")(self.coef(x)))


def build_prediction_head(num_anchors, num_classes, num_prototypes, channels=256):
    """A PredictionHead (its layers are shared by every call)."""
    return PredictionHead(num_anchors, num_classes, num_prototypes, channels)


def prediction_graph(feature_maps, num_anchors, num_classes, num_prototypes, channels=256):
    """The shared head on every level, concatenated in the priors' order:
    (loc [batch, P, 4], conf [batch, P, num_classes], coef [batch, P, k])."""
    head = build_prediction_head(num_anchors, num_classes, num_prototypes, channels)
    per_level = [head(level) for level in feature_maps]
    names = ("yolact_loc", "yolact_class_logits", "yolact_coefficients")
    return tuple(KL.Concatenate(axis=1, name=name, dtype="float32")(
        [level[i] for level in per_level]) for i, name in enumerate(names))


def semantic_segmentation_graph(p3, num_classes):
    """[batch, h, w, C] P3 -> [batch, h, w, num_classes - 1] logits."""
    return KL.Conv2D(num_classes - 1, 1, name="yolact_semantic", dtype="float32")(p3)
