"""Tests for mrcnn.config.Config: reference defaults, derived values that
follow edits, validation messages and the JSON round trip."""
import json

import numpy as np
import pytest

from mrcnn.config import Config, ConfigError


class ShapesConfig(Config):
    NAME = "shapes"
    GPU_COUNT = 1
    IMAGES_PER_GPU = 8
    NUM_CLASSES = 1 + 3
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)


REFERENCE_DEFAULTS = {
    "NAME": None, "GPU_COUNT": 1, "IMAGES_PER_GPU": 2, "STEPS_PER_EPOCH": 1000,
    "VALIDATION_STEPS": 50, "BACKBONE": "resnet101", "COMPUTE_BACKBONE_SHAPE": None,
    "BACKBONE_STRIDES": [4, 8, 16, 32, 64], "FPN_CLASSIF_FC_LAYERS_SIZE": 1024,
    "TOP_DOWN_PYRAMID_SIZE": 256, "NUM_CLASSES": 1,
    "RPN_ANCHOR_SCALES": (32, 64, 128, 256, 512), "RPN_ANCHOR_RATIOS": [0.5, 1, 2],
    "RPN_ANCHOR_STRIDE": 1, "RPN_NMS_THRESHOLD": 0.7, "RPN_TRAIN_ANCHORS_PER_IMAGE": 256,
    "PRE_NMS_LIMIT": 6000, "POST_NMS_ROIS_TRAINING": 2000, "POST_NMS_ROIS_INFERENCE": 1000,
    "USE_MINI_MASK": True, "MINI_MASK_SHAPE": (56, 56), "IMAGE_RESIZE_MODE": "square",
    "IMAGE_MIN_DIM": 800, "IMAGE_MAX_DIM": 1024, "IMAGE_MIN_SCALE": 0,
    "IMAGE_CHANNEL_COUNT": 3, "TRAIN_ROIS_PER_IMAGE": 200, "ROI_POSITIVE_RATIO": 0.33,
    "POOL_SIZE": 7, "MASK_POOL_SIZE": 14, "MASK_SHAPE": [28, 28], "MAX_GT_INSTANCES": 100,
    "DETECTION_MAX_INSTANCES": 100, "DETECTION_MIN_CONFIDENCE": 0.7,
    "DETECTION_NMS_THRESHOLD": 0.3, "LEARNING_RATE": 0.001, "LEARNING_MOMENTUM": 0.9,
    "WEIGHT_DECAY": 0.0001, "USE_RPN_ROIS": True, "TRAIN_BN": False,
    "GRADIENT_CLIP_NORM": 5.0,
}


def test_reference_defaults():
    config = Config()
    for name, value in REFERENCE_DEFAULTS.items():
        assert getattr(config, name) == value, name
    np.testing.assert_allclose(config.MEAN_PIXEL, [123.7, 116.8, 103.9])
    np.testing.assert_allclose(config.RPN_BBOX_STD_DEV, [0.1, 0.1, 0.2, 0.2])
    np.testing.assert_allclose(config.BBOX_STD_DEV, [0.1, 0.1, 0.2, 0.2])
    assert config.LOSS_WEIGHTS == {k: 1. for k in ("rpn_class_loss", "rpn_bbox_loss",
                                                   "mrcnn_class_loss", "mrcnn_bbox_loss",
                                                   "mrcnn_mask_loss")}
    assert config.MODEL == "mask_rcnn"
    # Additions keep the original's behaviour by default.
    assert config.MASK_HEAD_CHANNELS == 256
    assert config.RPN_CONV_CHANNELS == 512
    assert config.LEARNING_RATE_WARMUP_STEPS == 0
    assert config.MIXED_PRECISION is False
    # 45 reference attributes + MODEL + 4 additions + 3 derived values
    # + 12 YOLACT and 17 CenterNet settings.
    names = set(config.to_dict())
    assert len(names) == 45 + 1 + 4 + 3 + 12 + 17
    assert len([n for n in names if n.startswith("CENTERNET_")]) == 17
    assert len([n for n in names if n.startswith("YOLACT_")]) == 12


def test_derived_values_follow_later_edits():
    config = ShapesConfig()
    assert config.BATCH_SIZE == 8
    np.testing.assert_array_equal(config.IMAGE_SHAPE, [128, 128, 3])
    assert config.IMAGE_META_SIZE == 12 + 4
    config.IMAGES_PER_GPU = 1
    config.GPU_COUNT = 2
    config.IMAGE_MAX_DIM = 256
    config.NUM_CLASSES = 81
    assert config.BATCH_SIZE == 2
    np.testing.assert_array_equal(config.IMAGE_SHAPE, [256, 256, 3])
    assert config.IMAGE_META_SIZE == 12 + 81
    config.IMAGE_RESIZE_MODE = "crop"
    config.IMAGE_MIN_DIM = 192
    np.testing.assert_array_equal(config.IMAGE_SHAPE, [192, 192, 3])


def test_inference_subclass_pattern():
    class InferenceConfig(ShapesConfig):
        GPU_COUNT = 1
        IMAGES_PER_GPU = 1
    assert InferenceConfig().BATCH_SIZE == 1
    assert ShapesConfig().BATCH_SIZE == 8


def test_display_lists_values(capsys):
    ShapesConfig().display()
    out = capsys.readouterr().out
    assert "Configurations:" in out
    assert "BATCH_SIZE                     8" in out
    assert "NUM_CLASSES                    4" in out
    assert "IMAGE_SHAPE                    [128 128   3]" in out
    assert "validate" not in out


def test_validate_accepts_good_config():
    config = ShapesConfig()
    assert config.validate() is config


@pytest.mark.parametrize("value, policy", [
    (False, "float32"), (True, "mixed_float16"), ("float16", "mixed_float16"),
    ("bfloat16", "mixed_bfloat16"), ("mixed_bfloat16", "mixed_bfloat16"),
    ("float32", "float32")])
def test_mixed_precision_values_map_to_keras_policies(value, policy):
    config = ShapesConfig()
    config.MIXED_PRECISION = value
    assert config.validate().dtype_policy_name() == policy
    assert ShapesConfig.from_dict(config.to_dict()).dtype_policy_name() == policy


@pytest.mark.parametrize("attribute, value, message", [
    ("NUM_CLASSES", 1, "NUM_CLASSES must be at least 2"),
    ("IMAGE_MAX_DIM", 100, "IMAGE_MAX_DIM=100 must be a positive multiple of 64"),
    ("BACKBONE", "resnet152", "BACKBONE='resnet152' is unknown"),
    ("RPN_ANCHOR_RATIOS", [0.5, -1], "RPN_ANCHOR_RATIOS must be a non-empty list"),
    ("RPN_ANCHOR_RATIOS", [], "RPN_ANCHOR_RATIOS must be a non-empty list"),
    ("RPN_ANCHOR_SCALES", (8, 16), "RPN_ANCHOR_SCALES has 2 entries but BACKBONE_STRIDES has 5"),
    ("MODEL", "mask2former", "MODEL='mask2former' is reserved"),
    ("MODEL", "detr", "MODEL='detr' is unknown"),
    ("IMAGES_PER_GPU", 0, "IMAGES_PER_GPU must be a positive integer"),
    ("IMAGE_RESIZE_MODE", "stretch", "IMAGE_RESIZE_MODE='stretch' is unknown"),
    ("DETECTION_MIN_CONFIDENCE", 1.5, "DETECTION_MIN_CONFIDENCE must be between 0 and 1"),
    ("MASK_SHAPE", [56, 56], "MASK_SHAPE must be [2 * MASK_POOL_SIZE]"),
    ("MEAN_PIXEL", np.array([1.0, 2.0]), "MEAN_PIXEL has 2 values but IMAGE_CHANNEL_COUNT is 3"),
    ("LOSS_WEIGHTS", {"rpn_class_loss": 1.0, "bogus": 2.0}, "LOSS_WEIGHTS has unknown keys"),
    ("TRAIN_BN", "yes", "TRAIN_BN must be None"),
    ("GRADIENT_CLIP_NORM", -1, "GRADIENT_CLIP_NORM must be a positive number"),
    ("MIXED_PRECISION", "bf16", 'MIXED_PRECISION must be False, True, "float16" or "bfloat16"'),
    ("MIXED_PRECISION", 1, 'MIXED_PRECISION must be False, True, "float16" or "bfloat16"'),
])
def test_validate_reports_problem(attribute, value, message):
    config = ShapesConfig()
    setattr(config, attribute, value)
    with pytest.raises(ConfigError) as info:
        config.validate()
    assert message in str(info.value)


def test_validate_lists_every_problem_and_suggests_size():
    config = ShapesConfig()
    config.NUM_CLASSES = 1
    config.IMAGE_MAX_DIM = 500
    with pytest.raises(ConfigError) as info:
        config.validate()
    text = str(info.value)
    assert "NUM_CLASSES" in text and "IMAGE_MAX_DIM=500" in text and "try 512" in text


def test_crop_and_pad64_size_rules():
    config = ShapesConfig()
    config.IMAGE_RESIZE_MODE = "crop"
    config.IMAGE_MIN_DIM = 100
    with pytest.raises(ConfigError, match="IMAGE_MIN_DIM=100"):
        config.validate()
    config.IMAGE_RESIZE_MODE = "pad64"
    with pytest.raises(ConfigError, match="IMAGE_MIN_DIM=100"):
        config.validate()
    config.IMAGE_MIN_DIM = None       # pad64 without upscaling is fine
    config.validate()


def custom_backbone(input_image, stage5=False, train_bn=True):
    return []


def custom_shapes(config, image_shape):
    return []


def test_callable_backbone_needs_shape_function():
    config = ShapesConfig()
    config.BACKBONE = custom_backbone
    with pytest.raises(ConfigError, match="COMPUTE_BACKBONE_SHAPE must be a callable"):
        config.validate()
    config.COMPUTE_BACKBONE_SHAPE = custom_shapes
    config.validate()


def test_json_round_trip(tmp_path):
    config = ShapesConfig()
    config.LEARNING_RATE = 0.02
    config.BACKBONE = custom_backbone
    config.COMPUTE_BACKBONE_SHAPE = custom_shapes
    path = tmp_path / "config.json"
    text = config.to_json(str(path))
    data = json.loads(path.read_text())
    assert data == json.loads(text)
    assert data["BATCH_SIZE"] == 8 and data["MEAN_PIXEL"] == [123.7, 116.8, 103.9]
    assert data["BACKBONE"] == "{}:custom_backbone".format(__name__)

    restored = Config.from_json(str(path))
    assert type(restored) is Config
    assert restored.NUM_CLASSES == 4 and restored.LEARNING_RATE == 0.02
    assert restored.BATCH_SIZE == 8 and restored.IMAGE_META_SIZE == 16
    assert isinstance(restored.MEAN_PIXEL, np.ndarray)
    assert isinstance(restored.MINI_MASK_SHAPE, tuple)
    assert restored.RPN_ANCHOR_SCALES == (8, 16, 32, 64, 128)
    assert restored.BACKBONE is custom_backbone
    assert restored.to_dict() == config.to_dict()
    restored.validate()
    assert Config.from_json(text).to_dict() == config.to_dict()


def test_from_dict_errors():
    with pytest.raises(TypeError, match="expects a dict"):
        Config.from_dict([1, 2])
    with pytest.raises(ConfigError, match="'learning_rate' is not a configuration value"):
        Config.from_dict({"learning_rate": 0.1})
    with pytest.raises(ConfigError, match="not valid JSON"):
        Config.from_json("{not json")
    with pytest.raises(ConfigError, match="cannot import 'nowhere:thing'"):
        Config.from_dict({"BACKBONE": "nowhere:thing"})
    config = ShapesConfig()
    config.BACKBONE = lambda *a: None
    with pytest.raises(ConfigError, match="cannot be recorded by name"):
        config.to_dict()
