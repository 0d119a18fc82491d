"""Small configurations shared by the model tests.

``tiny_backbone`` is a user-callable backbone (the reference allowed
``BACKBONE`` to be a callable): four strided convolutions giving C2..C5 at
strides 4..32. It builds and traces in a fraction of the time of ResNet50,
which keeps end-to-end tests fast; the ResNet graphs have their own tests.
"""
import os

import numpy as np
from keras import layers as KL

from conftest import load_sample
from mrcnn.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_backbone(input_image, stage5=True, train_bn=True):
    """[C1, C2, C3, C4, C5] with strides 2, 4, 8, 16, 32 and 8-32 channels."""
    x = KL.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="tiny_c1")(input_image)
    outputs = [x]
    for i, width in enumerate((8, 16, 16, 32), start=2):
        x = KL.Conv2D(width, 3, strides=2, padding="same", name="tiny_c{}".format(i))(x)
        x = KL.BatchNormalization(name="tiny_bn{}".format(i))(
            x, training=None if train_bn is None else bool(train_bn))
        x = KL.Activation("relu")(x)
        outputs.append(x)
    return outputs


def tiny_backbone_shapes(image_shape):
    return np.array([[int(np.ceil(image_shape[0] / s)), int(np.ceil(image_shape[1] / s))]
                     for s in (4, 8, 16, 32, 64)])


class TinyConfig(Config):
    """64 px images, three classes, a tiny backbone and narrow heads."""
    NAME = "tiny"
    IMAGES_PER_GPU = 2
    NUM_CLASSES = 4
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    BACKBONE = staticmethod(tiny_backbone)
    COMPUTE_BACKBONE_SHAPE = staticmethod(tiny_backbone_shapes)
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TOP_DOWN_PYRAMID_SIZE = 16
    FPN_CLASSIF_FC_LAYERS_SIZE = 32
    MASK_HEAD_CHANNELS = 8
    TRAIN_ROIS_PER_IMAGE = 16
    POST_NMS_ROIS_TRAINING = 64
    POST_NMS_ROIS_INFERENCE = 32
    PRE_NMS_LIMIT = 500
    RPN_TRAIN_ANCHORS_PER_IMAGE = 64
    MAX_GT_INSTANCES = 6
    DETECTION_MAX_INSTANCES = 8
    DETECTION_MIN_CONFIDENCE = 0.0
    STEPS_PER_EPOCH = 2
    VALIDATION_STEPS = 1
    TRAIN_BN = None
    LEARNING_RATE = 0.01


class TinyInferenceConfig(TinyConfig):
    IMAGES_PER_GPU = 1


def load_shapes_module():
    """samples/shapes/shapes.py as a module."""
    return load_sample("shapes", "shapes_sample_for_tests")


def shapes_dataset(count, seed):
    """A prepared ShapesDataset of 128 px images."""
    module = load_shapes_module()
    dataset = module.ShapesDataset()
    dataset.load_shapes(count, 128, 128, seed=seed)
    dataset.prepare()
    return dataset
