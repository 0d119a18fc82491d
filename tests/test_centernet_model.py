"""The CenterNet mode (mrcnn.centernet.model): configuration defaults and
rules, the training sample, learning on repeated images, the per-level
heatmaps through run_graph, fine-tuning on another class count. The mode
contract (train, detect, checkpoints, resume, Keras-format reload,
bfloat16) is in test_modes.py."""
import numpy as np
import pytest

from mrcnn import model as modellib
from mrcnn.centernet import targets
from mrcnn.centernet.model import LEVEL_STRIDES, CenterNet
from mrcnn.config import Config, ConfigError
from mrcnn.data import load_image_gt, select_instances
from tiny_models import TinyConfig, shapes_dataset


class TinyCenterNet(TinyConfig):
    MODEL = "centernet"
    NAME = "tinycenternet"
    IMAGE_MIN_DIM = 96
    IMAGE_MAX_DIM = 96
    CENTERNET_HEAD_CHANNELS = 16
    CENTERNET_GROUPS = 4
    CENTERNET_TOWER_CONVS = 2
    CENTERNET_REGRESS_RANGES = ((0, 24), (16, 48), (32, 96), (64, 192), (128, 1e9))


def _tiny(**values):
    return type("Tiny", (TinyCenterNet,), values)()


def test_centernet_configs_default_to_the_reference_values():
    class Mine(Config):
        NAME = "mine"
        MODEL = "centernet"
        NUM_CLASSES = 3

    config = Mine().validate()
    assert config.DETECTION_MIN_CONFIDENCE == 0.05 and config.DETECTION_NMS_THRESHOLD == 0.6
    assert config.LEARNING_RATE == 0.01
    assert config.LOSS_WEIGHTS == {"centernet_heatmap_loss": 1.0, "centernet_box_loss": 2.0,
                                   "mrcnn_mask_loss": 1.0}
    assert tuple(map(tuple, config.CENTERNET_REGRESS_RANGES)) == (
        (0, 80), (64, 160), (128, 320), (256, 640), (512, 1e9))
    assert (config.CENTERNET_MIN_RADIUS, config.CENTERNET_MIN_OVERLAP) == (4, 0.8)
    assert (config.CENTERNET_MORE_POS_THRESH, config.CENTERNET_MORE_POS_TOPK) == (0.2, 9)
    assert (config.CENTERNET_FOCAL_ALPHA, config.CENTERNET_FOCAL_GAMMA,
            config.CENTERNET_POS_WEIGHT, config.CENTERNET_NEG_WEIGHT) == (2.0, 4.0, 0.25, 0.75)
    assert config.CENTERNET_PRE_NMS_TOP_K == 1000 and config.DETECTION_MAX_INSTANCES == 100
    assert modellib.create_model.__module__ == "mrcnn.modes"


@pytest.mark.parametrize("attribute, value, message", [
    ("IMAGE_MAX_DIM", 100, "IMAGE_MAX_DIM=100 must be a positive multiple of 32 .* try 96"),
    ("CENTERNET_REGRESS_RANGES", ((0, 80),), "CENTERNET_REGRESS_RANGES must be 5"),
    ("CENTERNET_GROUPS", 5, r"CENTERNET_HEAD_CHANNELS \(16\) must be a multiple of "
                            r"CENTERNET_GROUPS \(5\)"),
    ("CENTERNET_MIN_OVERLAP", 1.0, "CENTERNET_MIN_OVERLAP must be a number in"),
    ("CENTERNET_MORE_POS_TOPK", 0, "CENTERNET_MORE_POS_TOPK must be a positive integer"),
    ("LOSS_WEIGHTS", {"rpn_class_loss": 1.0}, r"unknown keys \['rpn_class_loss'\]"),
])
def test_bad_centernet_values_are_named(attribute, value, message):
    config = _tiny()
    setattr(config, attribute, value)
    with pytest.raises(ConfigError, match=message):
        config.validate()


def test_training_sample_matches_the_target_builders(tmp_path):
    config = _tiny(MAX_GT_INSTANCES=2)
    model = modellib.create_model("training", config, str(tmp_path))
    dataset = shapes_dataset(3, seed=8)
    signature = model.training_signature()
    # Find an image with more instances than slots.
    for image_id in dataset.image_ids:
        _, _, class_ids, _, _ = load_image_gt(dataset, config, image_id, use_mini_mask=True)
        if len(class_ids) > 2:
            break
    np.random.seed(3)
    sample = model.training_sample(dataset, image_id, None)
    for array, (name, shape, dtype) in zip(sample, signature):
        assert array.shape == tuple(shape) and array.dtype == dtype, name
    image, _, class_ids, boxes, masks = load_image_gt(dataset, config, image_id,
                                                      use_mini_mask=True)
    ranges = np.asarray(config.CENTERNET_REGRESS_RANGES)
    dense = targets.build_targets(image.shape, class_ids, boxes, 4, LEVEL_STRIDES, ranges)
    # Heatmaps and box targets use every instance...
    np.testing.assert_array_equal(sample[2], dense["heatmap"])
    np.testing.assert_array_equal(sample[3], dense["box_target"])
    # ...the slots a random selection of at most MAX_GT_INSTANCES.
    np.random.seed(3)
    ids, chosen_boxes, _ = select_instances(class_ids, boxes, masks, 2)
    np.testing.assert_array_equal(sample[8], ids)
    np.testing.assert_array_equal(sample[9], chosen_boxes)
    cand = targets.candidate_targets(image.shape, ids, chosen_boxes, LEVEL_STRIDES, ranges, 2)
    np.testing.assert_array_equal(sample[4], cand["candidate_index"])
    np.testing.assert_array_equal(sample[7], cand["candidate_forced"])


@pytest.fixture(scope="module")
def overfit(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("centernet_overfit"))
    config = _tiny(STEPS_PER_EPOCH=6, LEARNING_RATE_WARMUP_STEPS=0)
    model = modellib.create_model("training", config, model_dir)
    history = model.train(shapes_dataset(2, seed=21), None, 0.01, epochs=3, layers="all",
                          verbose=0)
    return model, history


def test_the_loss_falls_on_repeated_images(overfit):
    _, history = overfit
    losses = history.history["loss"]
    assert all(np.isfinite(losses)) and losses[-1] < 0.8 * losses[0], losses
    for name in CenterNet.LOSS_NAMES:
        assert np.isfinite(history.history[name]).all()


def test_run_graph_returns_the_heatmaps_of_every_level(overfit, tmp_path):
    model, _ = overfit
    infer = modellib.create_model("inference", _tiny(IMAGES_PER_GPU=1), str(tmp_path))
    infer.load_weights(model.find_last(), by_name=True)
    image = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    names = [("p{}".format(level), "centernet_heatmap_p{}".format(level)) for level in range(3, 8)]
    out = infer.run_graph([image], names)
    assert [out[k].shape for k, _ in names] == [(1, 12, 12, 3), (1, 6, 6, 3), (1, 3, 3, 3),
                                                (1, 2, 2, 3), (1, 1, 1, 3)]
    assert all(0 <= out[k].min() and out[k].max() <= 1 for k, _ in names)


def test_fine_tuning_on_another_class_count_excludes_the_class_layers(overfit, tmp_path):
    model, _ = overfit
    other = modellib.create_model("training", _tiny(NUM_CLASSES=3), str(tmp_path))
    with pytest.raises(Exception, match="centernet_class_logits"):
        other.load_weights(model.find_last(), by_name=True)
    report = other.load_weights(model.find_last(), by_name=True,
                                exclude=CenterNet.CLASS_SPECIFIC_LAYERS)
    assert set(report.skipped) == {"centernet_class_logits", "mrcnn_mask"}
