"""Tests for mrcnn.backbone: ResNet/FPN/RPN shapes and the layer names
released weights load by."""
import keras
import numpy as np
import pytest

from mrcnn import backbone
from mrcnn.config import Config
from mrcnn.maskrcnn import rpn


def build(architecture, train_bn=False):
    image = keras.Input(shape=[64, 64, 3], name="input_image")
    C1, C2, C3, C4, C5 = backbone.resnet_graph(image, architecture, stage5=True,
                                               train_bn=train_bn)
    P = backbone.fpn_graph(C2, C3, C4, C5, 32)
    return keras.Model(image, [C2, C3, C4, C5] + P)


@pytest.mark.parametrize("architecture, last_block", [("resnet50", "f"), ("resnet101", "w")])
def test_resnet_fpn_shapes_and_names(architecture, last_block):
    model = build(architecture)
    names = {layer.name for layer in model.layers}
    for name in ["conv1", "bn_conv1", "res2a_branch2a", "bn2a_branch2a", "res2a_branch1",
                 "bn2a_branch1", "res3d_branch2c", "res4{}_branch2c".format(last_block),
                 "res5c_branch2c", "bn5c_branch2c", "fpn_c5p5", "fpn_c4p4", "fpn_c3p3",
                 "fpn_c2p2", "fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5", "fpn_p6"]:
        assert name in names, name
    next_block = chr(ord(last_block) + 1)
    assert "res4{}_branch2a".format(next_block) not in names
    outputs = model.predict(np.zeros((2, 64, 64, 3), np.float32), verbose=0)
    shapes = [o.shape for o in outputs]
    assert shapes[:4] == [(2, 16, 16, 256), (2, 8, 8, 512), (2, 4, 4, 1024), (2, 2, 2, 2048)]
    assert shapes[4:] == [(2, 16, 16, 32), (2, 8, 8, 32), (2, 4, 4, 32), (2, 2, 2, 32),
                          (2, 1, 1, 32)]


def test_resnet_rejects_unknown_architecture():
    with pytest.raises(ValueError, match="Unknown ResNet architecture 'resnet152'"):
        backbone.resnet_graph(keras.Input(shape=[64, 64, 3]), "resnet152")


@pytest.mark.parametrize("architecture, convs, widths", [
    ("resnet18", 1 + 2 * 8 + 3, (64, 128, 256, 512)),
    ("resnet34", 1 + 2 * 16 + 3, (64, 128, 256, 512)),
])
def test_basic_block_resnets(architecture, convs, widths):
    image = keras.Input(shape=[64, 64, 3])
    stages = backbone.resnet_graph(image, architecture, stage5=True)
    assert [tuple(c.shape[1:]) for c in stages[1:]] == [
        (64 // s, 64 // s, w) for s, w in zip((4, 8, 16, 32), widths)]
    model = keras.Model(image, stages[1:])
    names = [l.name for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    # 1 stem conv, two per basic block, one projection shortcut per stage 3-5.
    assert len(names) == convs
    assert {"conv1", "res2a_branch2a", "res2b_branch2b", "res3a_branch1",
            "res5b_branch2b"} <= set(names)
    assert "res2a_branch1" not in names  # stage 2 keeps width and stride


def test_batchnorm_training_flag_is_honoured():
    bn = backbone.BatchNorm()
    x = np.random.default_rng(0).normal(5, 2, (8, 4)).astype(np.float32)
    frozen = bn(x, training=False).numpy()
    # Untrained moving stats (mean 0, var 1): inference mode leaves x ~ unchanged.
    np.testing.assert_allclose(frozen, x / np.sqrt(1 + bn.epsilon), rtol=1e-5)
    trained = bn(x, training=True).numpy()
    np.testing.assert_allclose(trained.mean(axis=0), 0, atol=1e-4)


def test_rpn_model_outputs():
    model = rpn.build_rpn_model(1, 3, 32)
    assert model.name == "rpn_model"
    assert {"rpn_conv_shared", "rpn_class_raw", "rpn_bbox_pred"} <= {l.name for l in model.layers}
    logits, probs, bbox = model.predict(np.zeros((2, 4, 5, 32), np.float32), verbose=0)
    assert logits.shape == (2, 60, 2) and probs.shape == (2, 60, 2) and bbox.shape == (2, 60, 4)
    np.testing.assert_allclose(probs.sum(-1), 1, rtol=1e-5)


def test_compute_backbone_shapes():
    config = Config()
    shapes = backbone.compute_backbone_shapes(config, [1024, 1024, 3])
    np.testing.assert_array_equal(shapes, [[256, 256], [128, 128], [64, 64], [32, 32], [16, 16]])
    np.testing.assert_array_equal(backbone.compute_backbone_shapes(config, [100, 200, 3])[-1],
                                  [2, 4])
    config.BACKBONE = lambda *a: None
    config.COMPUTE_BACKBONE_SHAPE = lambda image_shape: [[1, 2]]
    assert backbone.compute_backbone_shapes(config, [64, 64, 3]) == [[1, 2]]


def test_yolact_style_pyramid_at_550():
    """P3-P7 with bilinear top-down resizing and ReLU (YOLACT's FPN) works
    at 550 px, which does not halve evenly: 69, 35, 18, 9, 5 cells."""
    from tiny_models import TinyConfig
    image = keras.Input(shape=[550, 550, 3])
    levels = backbone.build_feature_pyramid(image, TinyConfig(),
                                            levels=("P3", "P4", "P5", "P6", "P7"),
                                            upsampling="bilinear", relu=True)
    assert [tuple(p.shape[1:3]) for p in levels] == [(69, 69), (35, 35), (18, 18), (9, 9), (5, 5)]
    model = keras.Model(image, levels)
    names = {layer.name for layer in model.layers}
    assert {"fpn_c3p3", "fpn_p3", "fpn_p6_conv", "fpn_p7_conv"} <= names
    assert "fpn_c2p2" not in names and "fpn_p6" not in names  # no P2, no max-pool P6
    outputs = model(np.random.default_rng(0).normal(size=(1, 550, 550, 3)).astype("float32"))
    assert all(float(np.min(p)) >= 0 for p in outputs[:3])  # ReLU after the 3x3 convolutions
    # Mask R-CNN's pyramid is unchanged: nearest 2x upsampling, no ReLU.
    image = keras.Input(shape=[64, 64, 3])
    p2 = backbone.build_feature_pyramid(image, TinyConfig())[0]
    assert any(isinstance(layer, keras.layers.UpSampling2D)
               for layer in keras.Model(image, p2).layers)


def test_resize_like_is_half_pixel_bilinear():
    from test_yolact_targets import _bilinear_reference
    x = np.random.default_rng(1).normal(size=(1, 18, 18, 2)).astype("float32")
    like = np.zeros((1, 35, 35, 1), "float32")
    out = backbone.ResizeLike()([x, like]).numpy()[0]
    np.testing.assert_allclose(out, _bilinear_reference(x[0].astype("float64"), 35, 35),
                               atol=1e-5)
