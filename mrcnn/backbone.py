"""
Mask R-CNN
ResNet backbone, feature pyramid network and the region proposal network:
the parts every model mode shares.

Layer names are part of the public contract: the released Mask R-CNN
weights (Keras 2 HDF5) load by name. The backbone is ``conv1``, ``bn_conv1``
and ``res{stage}{block}_branch2a|2b|2c|1`` with ``bn...`` twins; the FPN is
``fpn_c5p5 ... fpn_c2p2`` and ``fpn_p2 ... fpn_p5``; the RPN is the nested
model ``rpn_model`` holding ``rpn_conv_shared``, ``rpn_class_raw`` and
``rpn_bbox_pred``.

Tensors are NHWC. Feature map Ck has stride 2**k relative to the input.
"""

import math

import keras
import numpy as np
from keras import layers as KL


def compute_backbone_shapes(config, image_shape):
    """Computes the width and height of each stage of the backbone network.

    Returns: [N, (height, width)] int array, one row per BACKBONE_STRIDES
    entry (ceil(side / stride)), or config.COMPUTE_BACKBONE_SHAPE(image_shape)
    when config.BACKBONE is a callable.
    """
    if callable(config.BACKBONE):
        return config.COMPUTE_BACKBONE_SHAPE(image_shape)
    if config.BACKBONE not in ("resnet50", "resnet101", "resnet18", "resnet34"):
        raise ValueError("BACKBONE={!r} is not supported; use resnet50, resnet101, "
                         "resnet18, resnet34 or "
                         "a callable with COMPUTE_BACKBONE_SHAPE".format(config.BACKBONE))
    return np.array([[int(math.ceil(image_shape[0] / stride)),
                      int(math.ceil(image_shape[1] / stride))]
                     for stride in config.BACKBONE_STRIDES])


@keras.saving.register_keras_serializable(package="mrcnn")
class BatchNorm(KL.BatchNormalization):
    """Batch normalisation whose training mode is decided by the caller.

    ``training`` is passed explicitly: False freezes the moving statistics
    (the usual choice for small batches), None lets Keras decide (train mode
    while fitting). Freezing gamma and beta as well is done by marking the
    layer non-trainable (see ``MaskRCNN.set_trainable`` and TRAIN_BN); the
    original left gamma/beta trainable when TRAIN_BN was False.

    Built under a strategy with several replicas (GPU_COUNT > 1, or
    several workers), batch statistics in training mode are those of the
    global batch (Keras's ``synchronized=True``), not of each replica's few
    images, so training on N replicas matches one device on the same
    batch. Pass ``synchronized`` to choose otherwise.
    """

    def __init__(self, *args, **kwargs):
        if "synchronized" not in kwargs:
            import tensorflow as tf
            kwargs["synchronized"] = tf.distribute.has_strategy() and \
                tf.distribute.get_strategy().num_replicas_in_sync > 1
        super().__init__(*args, **kwargs)

    def call(self, inputs, training=None):
        return super().call(inputs, training=training)


def bn_training(train_bn):
    """TRAIN_BN (None/True/False) -> the ``training`` argument for BatchNorm:
    None lets Keras decide (train mode while fitting), False freezes the
    statistics. Shared by every head built on the backbone."""
    return None if train_bn is None else bool(train_bn)


def _bottleneck(input_tensor, kernel_size, filters, stage, block, strides,
                use_bias, training):
    """Main path of a ResNet block: 1x1 (stride) -> kxk -> 1x1 convolutions
    with batch norm, ReLU between them. Returns the last BN's output."""
    nb_filter1, nb_filter2, nb_filter3 = filters
    conv_name_base = 'res' + str(stage) + block + '_branch'
    bn_name_base = 'bn' + str(stage) + block + '_branch'

    x = KL.Conv2D(nb_filter1, (1, 1), strides=strides,
                  name=conv_name_base + '2a', use_bias=use_bias)(input_tensor)
    x = BatchNorm(name=bn_name_base + '2a')(x, training=training)
    x = KL.Activation('relu')(x)

    x = KL.Conv2D(nb_filter2, (kernel_size, kernel_size), padding='same',
                  name=conv_name_base + '2b', use_bias=use_bias)(x)
    x = BatchNorm(name=bn_name_base + '2b')(x, training=training)
    x = KL.Activation('relu')(x)

    x = KL.Conv2D(nb_filter3, (1, 1), name=conv_name_base + '2c',
                  use_bias=use_bias)(x)
    return BatchNorm(name=bn_name_base + '2c')(x, training=training)


def identity_block(input_tensor, kernel_size, filters, stage, block,
                   use_bias=True, train_bn=True):
    """The identity_block is the block that has no conv layer at shortcut.

    input_tensor: [batch, H, W, C] with C == filters[2]
    kernel_size: the kernel size of the middle conv layer at main path
    filters: list of integers, the nb_filters of 3 conv layer at main path
    stage: integer, current stage label, used for generating layer names
    block: 'a','b'..., current block label, used for generating layer names
    use_bias: Boolean. To use or not use a bias in conv layers.
    train_bn: Boolean (or None). Train or freeze Batch Norm layers
    """
    x = _bottleneck(input_tensor, kernel_size, filters, stage, block, (1, 1),
                    use_bias, bn_training(train_bn))
    x = KL.Add()([x, input_tensor])
    x = KL.Activation('relu', name='res' + str(stage) + block + '_out')(x)
    return x


def conv_block(input_tensor, kernel_size, filters, stage, block,
               strides=(2, 2), use_bias=True, train_bn=True):
    """conv_block is the block that has a conv layer at shortcut.

    Same arguments as identity_block plus ``strides`` of the first conv
    and of the shortcut. Output: [batch, H/s, W/s, filters[2]].
    """
    training = bn_training(train_bn)
    x = _bottleneck(input_tensor, kernel_size, filters, stage, block, strides,
                    use_bias, training)
    nb_filter3 = filters[2]
    conv_name_base = 'res' + str(stage) + block + '_branch'
    bn_name_base = 'bn' + str(stage) + block + '_branch'
    shortcut = KL.Conv2D(nb_filter3, (1, 1), strides=strides,
                         name=conv_name_base + '1', use_bias=use_bias)(input_tensor)
    shortcut = BatchNorm(name=bn_name_base + '1')(shortcut, training=training)

    x = KL.Add()([x, shortcut])
    x = KL.Activation('relu', name='res' + str(stage) + block + '_out')(x)
    return x


def basic_block(input_tensor, filters, stage, block, strides=(1, 1), train_bn=True):
    """Two 3x3 convolutions with batch norm and a shortcut (ResNet-18/34).

    Names follow the bottleneck blocks: ``res{stage}{block}_branch2a|2b``,
    ``..._branch1`` for a projection shortcut (when the stride or width
    changes), ``bn...`` twins. Output: [batch, H/s, W/s, filters].
    """
    training = bn_training(train_bn)
    conv_name_base = 'res' + str(stage) + block + '_branch'
    bn_name_base = 'bn' + str(stage) + block + '_branch'
    x = KL.Conv2D(filters, (3, 3), strides=strides, padding="same",
                  name=conv_name_base + '2a')(input_tensor)
    x = BatchNorm(name=bn_name_base + '2a')(x, training=training)
    x = KL.Activation('relu')(x)
    x = KL.Conv2D(filters, (3, 3), padding="same", name=conv_name_base + '2b')(x)
    x = BatchNorm(name=bn_name_base + '2b')(x, training=training)
    shortcut = input_tensor
    if tuple(strides) != (1, 1) or input_tensor.shape[-1] != filters:
        shortcut = KL.Conv2D(filters, (1, 1), strides=strides,
                             name=conv_name_base + '1')(input_tensor)
        shortcut = BatchNorm(name=bn_name_base + '1')(shortcut, training=training)
    x = KL.Add()([x, shortcut])
    return KL.Activation('relu', name='res' + str(stage) + block + '_out')(x)


# Blocks per stage (2, 3, 4, 5).
RESNET_BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3),
                 "resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}
RESNET_STAGE4_BLOCKS = {name: blocks[2] - 1 for name, blocks in RESNET_BLOCKS.items()}
BASIC_BLOCK_RESNETS = ("resnet18", "resnet34")


def resnet_graph(input_image, architecture, stage5=False, train_bn=True):
    """Build a ResNet graph.

    input_image: [batch, H, W, channels] Keras tensor
    architecture: resnet50 or resnet101 (bottleneck blocks, as the original
        and the released weights), or resnet18 / resnet34 (basic blocks; far
        cheaper, for small datasets and CPU training; no released weights).
    stage5: Boolean. If False, stage5 of the network is not created
    train_bn: Boolean (or None). Train or freeze Batch Norm layers

    Returns: [C1, C2, C3, C4, C5] feature maps with strides 2, 4, 8, 16, 32
    (C5 is None when stage5 is False). Channels: 64 (C1); 256, 512, 1024,
    2048 (bottleneck) or 64, 128, 256, 512 (basic blocks).
    """
    if architecture not in RESNET_BLOCKS:
        raise ValueError("Unknown ResNet architecture {!r}; use one of {}".format(
            architecture, ", ".join(RESNET_BLOCKS)))
    training = bn_training(train_bn)
    # Stage 1
    x = KL.ZeroPadding2D((3, 3))(input_image)
    x = KL.Conv2D(64, (7, 7), strides=(2, 2), name='conv1', use_bias=True)(x)
    x = BatchNorm(name='bn_conv1')(x, training=training)
    x = KL.Activation('relu')(x)
    C1 = x = KL.MaxPooling2D((3, 3), strides=(2, 2), padding="same")(x)
    stages = [C1]
    for stage, blocks in zip(range(2, 6), RESNET_BLOCKS[architecture]):
        if stage == 5 and not stage5:
            stages.append(None)
            break
        width = 64 * 2 ** (stage - 2)
        strides = (1, 1) if stage == 2 else (2, 2)
        for i in range(blocks):
            block = chr(ord('a') + i)
            if architecture in BASIC_BLOCK_RESNETS:
                x = basic_block(x, width, stage, block, strides if i == 0 else (1, 1),
                                train_bn=train_bn)
            elif i == 0:
                x = conv_block(x, 3, [width, width, 4 * width], stage=stage, block=block,
                               strides=strides, train_bn=train_bn)
            else:
                x = identity_block(x, 3, [width, width, 4 * width], stage=stage,
                                   block=block, train_bn=train_bn)
        stages.append(x)
    return stages


@keras.saving.register_keras_serializable(package="mrcnn")
class ResizeLike(KL.Layer):
    """Inputs [x, like] -> x resized bilinearly to like's height and width
    (half-pixel centres: PyTorch's ``interpolate(mode="bilinear",
    align_corners=False)``), so a pyramid level can be added to a lateral
    of any size (YOLACT's 550 px input gives 69, 35 and 18 cells)."""

    def call(self, inputs):
        import tensorflow as tf
        x, like = inputs
        return tf.cast(tf.image.resize(x, tf.shape(like)[1:3], method="bilinear"), x.dtype)

    def compute_output_shape(self, input_shape):
        x, like = input_shape
        return (x[0], like[1], like[2], x[3])


def fpn_graph(C2, C3, C4, C5, pyramid_size, upsampling="nearest", relu=False):
    """Top-down feature pyramid over ResNet stages 2-5.

    C2..C5: backbone feature maps with strides 4, 8, 16, 32 (C2 may be None:
        no P2).
    pyramid_size: channels of every pyramid level (TOP_DOWN_PYRAMID_SIZE).
    upsampling: "nearest" (the reference Mask R-CNN's 2x nearest
        upsampling, sides must halve exactly) or "bilinear" (YOLACT's:
        resized to the lateral's size, any size).
    relu: a ReLU after each level's 3x3 convolution (YOLACT's
        ``relu_pred_layers``).

    Returns: [P2, P3, P4, P5, P6], strides 4..64, each [batch, h, w,
    pyramid_size] (P2 None without C2). P6 (a stride-2 subsample of P5) is
    used by the RPN only.
    """
    if upsampling not in ("nearest", "bilinear"):
        raise ValueError("fpn_graph: upsampling must be 'nearest' or 'bilinear', got {!r}"
                         .format(upsampling))

    def top_down(upper, lateral, level):
        if upsampling == "nearest":
            upper = KL.UpSampling2D(size=(2, 2), name="fpn_p{}upsampled".format(level))(upper)
        else:
            upper = ResizeLike(name="fpn_p{}upsampled".format(level))([upper, lateral])
        return KL.Add(name="fpn_p{}add".format(level - 1))([upper, lateral])

    P5 = KL.Conv2D(pyramid_size, (1, 1), name='fpn_c5p5')(C5)
    P4 = top_down(P5, KL.Conv2D(pyramid_size, (1, 1), name='fpn_c4p4')(C4), 5)
    P3 = top_down(P4, KL.Conv2D(pyramid_size, (1, 1), name='fpn_c3p3')(C3), 4)
    P2 = None if C2 is None else \
        top_down(P3, KL.Conv2D(pyramid_size, (1, 1), name='fpn_c2p2')(C2), 3)
    # Attach 3x3 conv to all P layers to get the final feature maps.
    activation = "relu" if relu else None
    if P2 is not None:
        P2 = KL.Conv2D(pyramid_size, (3, 3), padding="same", activation=activation,
                       name="fpn_p2")(P2)
    P3 = KL.Conv2D(pyramid_size, (3, 3), padding="same", activation=activation, name="fpn_p3")(P3)
    P4 = KL.Conv2D(pyramid_size, (3, 3), padding="same", activation=activation, name="fpn_p4")(P4)
    P5 = KL.Conv2D(pyramid_size, (3, 3), padding="same", activation=activation, name="fpn_p5")(P5)
    # P6 is used for the 5th anchor scale in RPN. Generated by
    # subsampling from P5 with stride of 2.
    P6 = KL.MaxPooling2D(pool_size=(1, 1), strides=2, name="fpn_p6")(P5)
    return [P2, P3, P4, P5, P6]


PYRAMID_LEVELS = ("P2", "P3", "P4", "P5", "P6", "P7")


def backbone_stages(input_image, config, train_bn=True):
    """[C2, C3, C4, C5] (strides 4, 8, 16, 32) of ``config.BACKBONE``: a
    ResNet name, or a callable ``f(input_image, stage5=True, train_bn=...)``
    returning [C1, ..., C5] as the reference allowed."""
    if callable(config.BACKBONE):
        stages = config.BACKBONE(input_image, stage5=True, train_bn=train_bn)
    else:
        stages = resnet_graph(input_image, config.BACKBONE, stage5=True, train_bn=train_bn)
    return list(stages[1:5])


def build_feature_pyramid(input_image, config, train_bn=True, levels=PYRAMID_LEVELS[:5],
                          upsampling="nearest", relu=False):
    """The shared backbone and feature pyramid, with the levels a mode asks for.

    input_image: [batch, H, W, IMAGE_CHANNEL_COUNT] Keras tensor.
    levels: consecutive names from "P2" (stride 4) to "P7" (stride 128), each
        TOP_DOWN_PYRAMID_SIZE channels. P2-P5 are ``fpn_graph``'s (the
        reference's layers and names, which the released weights fill;
        without "P2" no C2 lateral is built). P6 is the reference's stride-2
        subsample of P5 (``fpn_p6``) when P7 is not asked for (Mask R-CNN's
        P2-P6), else, as in RetinaNet-style heads (P3-P7: YOLACT,
        CenterNet), P6 and P7 are stride-2 3x3 convolutions of P5 and P6
        (``fpn_p6_conv``, ``fpn_p7_conv``), padded by one pixel on every side
        as PyTorch's ``padding=1`` (TensorFlow's "same" would pad even sides
        on the bottom and right only).
    upsampling, relu: see fpn_graph ("bilinear" and True are YOLACT's).

    Returns the requested levels, in order, as [batch, h, w, channels].
    """
    levels = tuple(levels)
    start = PYRAMID_LEVELS.index(levels[0]) if levels and levels[0] in PYRAMID_LEVELS else -1
    if start < 0 or levels != PYRAMID_LEVELS[start:start + len(levels)]:
        raise ValueError("levels must be consecutive pyramid levels from {}, got {!r}".format(
            ", ".join(PYRAMID_LEVELS), levels))
    C2, C3, C4, C5 = backbone_stages(input_image, config, train_bn=train_bn)
    P2, P3, P4, P5, P6 = fpn_graph(C2 if "P2" in levels else None, C3, C4, C5,
                                   config.TOP_DOWN_PYRAMID_SIZE, upsampling=upsampling,
                                   relu=relu)
    pyramid = {"P2": P2, "P3": P3, "P4": P4, "P5": P5, "P6": P6}
    if "P7" in levels:
        size = config.TOP_DOWN_PYRAMID_SIZE
        previous = P5
        for level in ("p6", "p7"):
            padded = KL.ZeroPadding2D(1, name="fpn_{}_pad".format(level))(previous)
            previous = KL.Conv2D(size, 3, strides=2, name="fpn_{}_conv".format(level))(padded)
            pyramid[level.upper()] = previous
    return [pyramid[name] for name in levels]
