"""The YOLACT mode (mrcnn.yolact.model): its configuration defaults and
rules, priors that line up with the network's rows, the training sample,
post-processing to original-image pixels, learning, run_graph, and
fine-tuning on another class count. The mode contract (train, detect,
checkpoints, resume, Keras-format reload, bfloat16) is in test_modes.py."""
import numpy as np
import pytest

from mrcnn import model as modellib
from mrcnn.config import Config, ConfigError
from mrcnn.data import load_image_gt
from mrcnn.yolact import box_utils
from mrcnn.yolact.model import (Yolact, level_shapes, priors_for_shape,
                                prototype_shape)
from mrcnn.yolact.targets import build_targets
from tiny_models import TinyConfig, shapes_dataset


class YolactConfig(Config):
    NAME = "yolact_test"
    MODEL = "yolact"
    NUM_CLASSES = 4


class TinyYolact(TinyConfig):
    MODEL = "yolact"
    NAME = "tinyyolact"
    IMAGE_MIN_DIM = 80
    IMAGE_MAX_DIM = 80
    YOLACT_NUM_PROTOTYPES = 8
    YOLACT_HEAD_CHANNELS = 16


def _tiny(**values):
    return type("Tiny", (TinyYolact,), values)()


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

def test_yolact_configs_default_to_the_reference_values():
    config = YolactConfig().validate()  # 550 is not a multiple of 64: fine here
    assert config.IMAGE_MAX_DIM == 550 and list(config.IMAGE_SHAPE) == [550, 550, 3]
    assert config.DETECTION_MIN_CONFIDENCE == 0.05
    assert config.DETECTION_NMS_THRESHOLD == 0.5
    assert config.DETECTION_MAX_INSTANCES == 100
    assert config.WEIGHT_DECAY == 5e-4
    assert config.LOSS_WEIGHTS == {"yolact_box_loss": 1.5, "yolact_class_loss": 1.0,
                                   "yolact_mask_loss": 6.125, "yolact_semantic_loss": 1.0}
    assert config.YOLACT_NUM_PROTOTYPES == 32 and config.YOLACT_TOP_K == 200
    assert tuple(config.YOLACT_ANCHOR_SCALES) == (24, 48, 96, 192, 384)
    assert (config.YOLACT_POSITIVE_IOU, config.YOLACT_NEGATIVE_IOU,
            config.YOLACT_CROWD_IOU) == (0.5, 0.4, 0.7)
    # The recorded configuration holds the values in effect.
    values = config.to_dict()
    assert values["DETECTION_MIN_CONFIDENCE"] == 0.05 and values["IMAGE_MAX_DIM"] == 550
    assert YolactConfig.from_dict(values).to_dict() == values


def test_values_a_config_sets_win_over_the_mode_defaults():
    class Mine(YolactConfig):
        DETECTION_MIN_CONFIDENCE = 0.3
        IMAGE_MAX_DIM = 320

    config = Mine()
    assert config.DETECTION_MIN_CONFIDENCE == 0.3 and config.IMAGE_MAX_DIM == 320
    assert config.DETECTION_NMS_THRESHOLD == 0.5  # not set: the mode's
    config.DETECTION_NMS_THRESHOLD = 0.6
    assert config.DETECTION_NMS_THRESHOLD == 0.6


def test_the_class_is_on_the_front_door():
    assert modellib.Yolact is Yolact
    assert modellib.create_model.__module__ == "mrcnn.modes"


def test_mask_rcnn_keeps_its_defaults_and_switching_the_mode_switches_them():
    class Mine(Config):
        NAME = "mine"
        NUM_CLASSES = 3

    config = Mine()
    assert config.DETECTION_MIN_CONFIDENCE == 0.7 and config.IMAGE_MAX_DIM == 1024
    assert Config.DETECTION_MIN_CONFIDENCE == 0.7
    config.MODEL = "yolact"  # what --arch yolact does
    assert config.DETECTION_MIN_CONFIDENCE == 0.05 and config.IMAGE_MAX_DIM == 550
    assert set(config.LOSS_WEIGHTS) == set(Yolact.LOSS_NAMES)
    config.validate()
    assert Config.DETECTION_MIN_CONFIDENCE == 0.7


@pytest.mark.parametrize("attribute, value, message", [
    ("LOSS_WEIGHTS", {"mrcnn_mask_loss": 2.0},
     r"LOSS_WEIGHTS has unknown keys \['mrcnn_mask_loss'\]; known: yolact_box_loss"),
    ("YOLACT_NEGATIVE_IOU", 0.6, r"YOLACT_NEGATIVE_IOU \(0.6\) must not exceed"),
    ("YOLACT_POSITIVE_IOU", 1.5, "YOLACT_POSITIVE_IOU must be between 0 and 1"),
    ("YOLACT_ANCHOR_SCALES", (24, 48), "YOLACT_ANCHOR_SCALES must be 5 positive sizes"),
    ("YOLACT_ANCHOR_RATIOS", (1, -2), "YOLACT_ANCHOR_RATIOS must be a non-empty list"),
    ("YOLACT_NUM_PROTOTYPES", 0, "YOLACT_NUM_PROTOTYPES must be a positive integer"),
    ("YOLACT_SCALES_PER_LEVEL", 1.5, "YOLACT_SCALES_PER_LEVEL must be a positive integer"),
    ("YOLACT_SQUARE_ANCHORS", "yes", "YOLACT_SQUARE_ANCHORS must be True or False"),
    ("IMAGE_MAX_DIM", 8, "IMAGE_MAX_DIM=8: YOLACT needs at least 16 px"),
])
def test_bad_yolact_values_are_named(attribute, value, message):
    config = YolactConfig()
    setattr(config, attribute, value)
    with pytest.raises(ConfigError, match=message):
        config.validate()


# ---------------------------------------------------------------------------
# Priors
# ---------------------------------------------------------------------------

def test_priors_at_550_are_the_references():
    priors = priors_for_shape(YolactConfig(), (550, 550))
    assert level_shapes((550, 550)) == [(69, 69), (35, 35), (18, 18), (9, 9), (5, 5)]
    assert prototype_shape((550, 550)) == (138, 138)
    assert len(priors) == 19248
    expected = box_utils.make_priors(level_shapes((550, 550)), [[24], [48], [96], [192], [384]],
                                     [1, 0.5, 2], max_size=550, square_anchors=True)
    np.testing.assert_allclose(priors, expected, rtol=1e-6)
    # YOLACT++: three scales per level, 2 ** (j / 3) apart.
    config = YolactConfig()
    config.YOLACT_SCALES_PER_LEVEL = 3
    plus = priors_for_shape(config, (550, 550))
    assert len(plus) == 3 * 19248
    np.testing.assert_allclose(plus[:9, 3] * 550,
                               np.outer([24, 24 * 2 ** (1 / 3), 24 * 2 ** (2 / 3)],
                                        np.sqrt([1, 0.5, 2])).ravel(), rtol=1e-5)


def test_priors_of_a_non_square_image_are_square_in_pixels():
    priors = priors_for_shape(YolactConfig(), (128, 256))
    assert len(priors) == 3 * sum(h * w for h, w in level_shapes((128, 256)))
    np.testing.assert_allclose(priors[:, 2] * 128, priors[:, 3] * 256, rtol=1e-5)
    # The first prior: 24 px of a 550 px image, at the 256 px side's scale.
    np.testing.assert_allclose(priors[0, 3] * 256, 24 * 256 / 550, rtol=1e-5)


def test_the_priors_line_up_with_the_networks_rows(tmp_path):
    config = _tiny(IMAGES_PER_GPU=1, IMAGE_RESIZE_MODE="none")
    model = modellib.create_model("inference", config, str(tmp_path))
    image = np.random.default_rng(0).integers(0, 255, (100, 150, 3), dtype=np.uint8)
    out = model.run_graph([image], [("prototypes", "yolact_prototypes"),
                                    ("coefficients", "yolact_coefficients"),
                                    ("detections", "yolact_detection")])
    assert out["coefficients"].shape == (1, len(model.priors_for((100, 150))), 8)
    assert out["prototypes"].shape == (1,) + prototype_shape((100, 150)) + (8,)
    detections, masks = out["detections"]
    assert detections.shape == (1, config.DETECTION_MAX_INSTANCES, 6)
    assert masks.shape == (1,) + prototype_shape((100, 150)) + (config.DETECTION_MAX_INSTANCES,)
    with pytest.raises(ValueError, match="no layer named .nope. in the Yolact inference model"):
        model.run_graph([image], [("x", "nope")])


def test_native_550_input_with_yolact_plus_plus_anchors(tmp_path):
    config = _tiny(IMAGES_PER_GPU=1, IMAGE_MIN_DIM=550, IMAGE_MAX_DIM=550,
                   YOLACT_SCALES_PER_LEVEL=3)
    model = modellib.create_model("inference", config, str(tmp_path))
    image = np.random.default_rng(1).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    out = model.run_graph([image], [("coefficients", "yolact_coefficients")])
    assert out["coefficients"].shape == (1, 3 * 19248, 8)
    result = model.detect([image])[0]
    assert result["masks"].shape[:2] == (300, 400)
    # Confidence 0: every slot is a detection; those wholly in the padding
    # have no area in the original image and are dropped.
    assert 1 <= len(result["class_ids"]) <= config.DETECTION_MAX_INSTANCES


# ---------------------------------------------------------------------------
# Training sample and post-processing
# ---------------------------------------------------------------------------

def test_training_sample_is_build_targets_of_the_loaded_image(tmp_path):
    config = _tiny()
    model = modellib.create_model("training", config, str(tmp_path))
    dataset = shapes_dataset(2, seed=5)
    signature = model.training_signature()
    sample = model.training_sample(dataset, 0, None)
    assert [name for name, _, _ in signature] == [
        "input_image", "input_yolact_loc", "input_yolact_conf", "input_yolact_index",
        "input_gt_boxes", "input_gt_masks", "input_yolact_segmentation"]
    for array, (name, shape, dtype) in zip(sample, signature):
        assert array.shape == tuple(shape) and array.dtype == dtype, name
    image, _, class_ids, boxes, masks = load_image_gt(dataset, config, 0)
    expected = build_targets(image.shape, class_ids, boxes, masks, model.priors_for((80, 80)),
                             (20, 20), (10, 10), 4, config.MAX_GT_INSTANCES)
    for array, key in zip(sample[1:], ["loc_t", "conf_t", "idx_t", "gt_boxes", "gt_masks",
                                       "segm_t"]):
        np.testing.assert_array_equal(array, expected[key], err_msg=key)
    assert np.sum(sample[2] > 0) >= np.sum(class_ids > 0)  # every instance has a prior


def test_unmold_detections_maps_boxes_and_masks_to_the_original_image(tmp_path):
    model = modellib.create_model("inference", _tiny(IMAGES_PER_GPU=1), str(tmp_path))
    # A 32 x 64 image molded into 64 x 64: scale 1, rows 16..48 are the image.
    window = np.array([16, 0, 48, 64])
    detections = np.zeros((4, 6), np.float32)
    detections[0] = [0.25, 0.25, 0.5, 0.75, 2, 0.9]   # molded px (16, 16, 32, 48)
    detections[1] = [0.5, 0.0, 0.75, 0.25, 1, 0.4]    # molded px (32, 0, 48, 16)
    masks = np.zeros((16, 16, 4), np.float32)
    masks[4:8, 4:12, 0] = 1.0                          # = molded px rows 16..32, cols 16..48
    masks[8:12, 0:4, 1] = 0.2                          # below 0.5 everywhere
    boxes, class_ids, scores, full = model.unmold_detections(detections, masks, (32, 64, 3),
                                                             (64, 64, 3), window)
    np.testing.assert_array_equal(boxes, [[0, 16, 16, 48], [16, 0, 32, 16]])
    np.testing.assert_array_equal(class_ids, [2, 1])
    np.testing.assert_allclose(scores, [0.9, 0.4])
    assert full.shape == (32, 64, 2) and full.dtype == bool
    expected = np.zeros((32, 64), bool)
    expected[0:16, 16:48] = True
    intersection = np.sum(full[..., 0] & expected)
    assert intersection / np.sum(full[..., 0] | expected) > 0.85
    assert not full[..., 1].any()


# ---------------------------------------------------------------------------
# Learning, fine-tuning
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def overfit(tmp_path_factory):
    """Three short epochs on the same two images."""
    model_dir = str(tmp_path_factory.mktemp("yolact_overfit"))
    config = _tiny(STEPS_PER_EPOCH=6, LEARNING_RATE_WARMUP_STEPS=0)
    model = modellib.create_model("training", config, model_dir)
    dataset = shapes_dataset(2, seed=21)
    history = model.train(dataset, None, 0.01, epochs=3, layers="all", verbose=0)
    return model, history


def test_the_loss_falls_on_repeated_images(overfit):
    _, history = overfit
    losses = history.history["loss"]
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0], losses
    for name in Yolact.LOSS_NAMES:
        assert np.isfinite(history.history[name]).all()


def test_fine_tuning_on_another_class_count_excludes_the_class_layers(overfit, tmp_path):
    model, _ = overfit
    checkpoint = model.find_last()
    other = modellib.create_model("training", _tiny(NUM_CLASSES=3), str(tmp_path))
    with pytest.raises(Exception, match="yolact_conf"):
        other.load_weights(checkpoint, by_name=True)
    report = other.load_weights(checkpoint, by_name=True, exclude=Yolact.CLASS_SPECIFIC_LAYERS)
    assert set(report.skipped) == {"yolact_conf", "yolact_semantic"}
    np.testing.assert_allclose(other.keras_model.get_layer("yolact_bbox").get_weights()[0],
                               model.keras_model.get_layer("yolact_bbox").get_weights()[0])
