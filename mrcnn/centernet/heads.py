"""
CenterNet's head on the shared feature pyramid (after mmdetection's
``CenterNetUpdateHead`` with its ``AnchorFreeHead`` towers):

* a class tower and a box tower, each 4 x [3x3 convolution without bias,
  GroupNorm(32), ReLU], their layers created once and called on every
  level (shared weights, top-level layers);
* class logits (3x3, NUM_CLASSES - 1 channels, bias -log((1 - 0.01) /
  0.01) so every class starts at probability 0.01);
* box distances (3x3, 4 channels: top, left, bottom, right) times a
  learnable scale per level, clamped at 0: distances in units of the
  level's stride (multiplied by the stride at inference).

Convolution kernels start from N(0, 0.01) as the reference's. Outputs are
concatenated over levels in ``targets.level_points`` order (level -> row
-> column) and computed in float32 under mixed precision.
"""

import math

import keras
from keras import layers as KL

PRIOR_PROBABILITY = 0.01


@keras.saving.register_keras_serializable(package="mrcnn")
class LevelScale(KL.Layer):
    """y = relu(x * scale), one learnable scalar (initially 1) per level:
    the reference's ``Scale`` followed by ``clamp(min=0)``."""

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(), initializer="ones")

    def call(self, x):
        return keras.ops.relu(x * keras.ops.cast(self.scale, x.dtype))

    def compute_output_shape(self, input_shape):
        return input_shape


class CenterNetHead(object):
    """The towers and output convolutions, shared by every level.

    ``head(feature, level)``: [batch, h, w, C] -> (class logits [batch, h,
    w, num_classes - 1], distances [batch, h, w, 4]) for pyramid level
    ``level`` (its own LevelScale).
    """

    def __init__(self, num_classes, levels, channels=256, tower_convs=4, groups=32):
        init = keras.initializers.RandomNormal(stddev=0.01)
        self.num_classes = num_classes
        self.towers = {}
        for kind in ("class", "box"):
            self.towers[kind] = [
                (KL.Conv2D(channels, 3, padding="same", use_bias=False, kernel_initializer=init,
                           name="centernet_{}_conv{}".format(kind, i + 1)),
                 KL.GroupNormalization(groups=groups,
                                       name="centernet_{}_gn{}".format(kind, i + 1)))
                for i in range(tower_convs)]
        bias = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
        self.logits = KL.Conv2D(num_classes - 1, 3, padding="same", kernel_initializer=init,
                                bias_initializer=keras.initializers.Constant(bias),
                                name="centernet_class_logits", dtype="float32")
        self.distances = KL.Conv2D(4, 3, padding="same", kernel_initializer=init,
                                   name="centernet_box", dtype="float32")
        self.scales = [LevelScale(name="centernet_scale_p{}".format(level), dtype="float32")
                       for level in levels]

    def _tower(self, kind, x):
        for conv, norm in self.towers[kind]:
            x = KL.Activation("relu")(norm(conv(x)))
        return x

    def __call__(self, feature, level):
        logits = self.logits(self._tower("class", feature))
        distances = self.scales[level](self.distances(self._tower("box", feature)))
        return logits, distances


def centernet_head_graph(feature_maps, num_classes, channels=256, tower_convs=4, groups=32):
    """The head on every level (P3 first): (logits [batch, M, num_classes -
    1], distances [batch, M, 4] in stride units, concatenated in the
    points' order; the per-level maps: [batch, h, w, ...] lists for
    inference)."""
    head = CenterNetHead(num_classes, range(3, 3 + len(feature_maps)), channels, tower_convs,
                         groups)
    per_level = [head(feature, i) for i, feature in enumerate(feature_maps)]
    level_logits = [level[0] for level in per_level]
    level_distances = [level[1] for level in per_level]
    flat = lambda x, c: KL.Reshape((-1, c), dtype="float32")(x)  # noqa: E731
    logits = KL.Concatenate(axis=1, name="centernet_logits", dtype="float32")(
        [flat(x, num_classes - 1) for x in level_logits])
    distances = KL.Concatenate(axis=1, name="centernet_distances", dtype="float32")(
        [flat(x, 4) for x in level_distances])
    return logits, distances, level_logits, level_distances
