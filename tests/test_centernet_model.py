"""The CenterNet mode (mrcnn.centernet.model): configuration defaults and
rules, the training sample, learning on repeated images, the per-level
heatmaps through run_graph, fine-tuning on another class count. The mode
contract (train, detect, checkpoints, resume, Keras-format reload,
bfloat16) is in test_modes.py."""
import numpy as np
import pytest

from mrcnn import model as modellib
from mrcnn.centernet import targets
from mrcnn.centernet.model import LEVEL_STRIDES, LOSS_NAMES, TWO_STAGE_LOSS_NAMES, CenterNet
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
    # The box head's two losses weigh only in the two-stage variant.
    assert config.LOSS_WEIGHTS == {"centernet_heatmap_loss": 1.0, "centernet_box_loss": 2.0,
                                   "mrcnn_class_loss": 1.0, "mrcnn_bbox_loss": 1.0,
                                   "mrcnn_mask_loss": 1.0}
    assert config.CENTERNET_TWO_STAGE is False
    # CenterNet2's proposals: score above 1e-4, NMS 0.9, 256 at inference.
    assert (config.CENTERNET_PROPOSAL_MIN_CONFIDENCE, config.CENTERNET_PROPOSAL_NMS_THRESHOLD,
            config.POST_NMS_ROIS_INFERENCE) == (1e-4, 0.9, 256)
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
    ("CENTERNET_TWO_STAGE", "yes", "CENTERNET_TWO_STAGE must be True or False, got 'yes'"),
])
def test_bad_centernet_values_are_named(attribute, value, message):
    config = _tiny()
    setattr(config, attribute, value)
    with pytest.raises(ConfigError, match=message):
        config.validate()


def test_two_stage_proposal_values_are_checked():
    config = _tiny(CENTERNET_TWO_STAGE=True, CENTERNET_PROPOSAL_NMS_THRESHOLD=1.5,
                   POST_NMS_ROIS_INFERENCE=0)
    with pytest.raises(ConfigError) as info:
        config.validate()
    assert "CENTERNET_PROPOSAL_NMS_THRESHOLD must be a number in [0, 1], got 1.5" in str(info.value)
    assert "POST_NMS_ROIS_INFERENCE must be a positive integer for CENTERNET_TWO_STAGE" in \
        str(info.value)
    # The one-stage variant does not use them.
    _tiny(CENTERNET_PROPOSAL_NMS_THRESHOLD=1.5, POST_NMS_ROIS_INFERENCE=0).validate()


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


def test_two_stage_sample_has_one_objectness_heatmap(tmp_path):
    config = _tiny(CENTERNET_TWO_STAGE=True)
    model = modellib.create_model("training", config, str(tmp_path))
    dataset = shapes_dataset(2, seed=8)
    np.random.seed(4)
    sample = model.training_sample(dataset, 0, None)
    image, _, class_ids, boxes, _ = load_image_gt(dataset, config, 0, use_mini_mask=True)
    ranges = np.asarray(config.CENTERNET_REGRESS_RANGES)
    every_class = targets.build_targets(image.shape, class_ids, boxes, 4, LEVEL_STRIDES, ranges)
    agnostic = targets.build_targets(image.shape, np.ones_like(class_ids), boxes, 2,
                                     LEVEL_STRIDES, ranges)
    assert sample[2].shape == (every_class["heatmap"].shape[0], 1)
    np.testing.assert_array_equal(sample[2], agnostic["heatmap"])
    # One channel holds every class's peaks.
    np.testing.assert_allclose(sample[2][:, 0], every_class["heatmap"].max(axis=1))
    # The ground-truth slots keep their classes (the box head learns them).
    assert set(sample[8][sample[8] > 0]) == set(class_ids)


@pytest.fixture(scope="module")
def overfit(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("centernet_overfit"))
    config = _tiny(STEPS_PER_EPOCH=6, LEARNING_RATE_WARMUP_STEPS=0)
    model = modellib.create_model("training", config, model_dir)
    history = model.train(shapes_dataset(2, seed=21), None, 0.01, epochs=3, layers="all",
                          verbose=0)
    return model, history


@pytest.fixture(scope="module")
def overfit_two_stage(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("centernet2_overfit"))
    config = _tiny(STEPS_PER_EPOCH=6, LEARNING_RATE_WARMUP_STEPS=0, CENTERNET_TWO_STAGE=True,
                   NAME="tinycenternet2")
    model = modellib.create_model("training", config, model_dir)
    history = model.train(shapes_dataset(2, seed=21), None, 0.01, epochs=3, layers="all",
                          verbose=0)
    return model, history


@pytest.mark.parametrize("variant, names", [("overfit", LOSS_NAMES),
                                            ("overfit_two_stage", TWO_STAGE_LOSS_NAMES)])
def test_the_loss_falls_on_repeated_images(variant, names, request):
    model, history = request.getfixturevalue(variant)
    assert tuple(model.keras_model.loss_names) == names
    losses = history.history["loss"]
    assert all(np.isfinite(losses)) and losses[-1] < 0.8 * losses[0], losses
    for name in names:
        assert np.isfinite(history.history[name]).all()


def test_two_stage_scores_are_the_geometric_mean_of_proposal_and_class(overfit_two_stage,
                                                                          tmp_path):
    model, _ = overfit_two_stage
    config = _tiny(IMAGES_PER_GPU=1, CENTERNET_TWO_STAGE=True, NAME="tinycenternet2")
    infer = modellib.create_model("inference", config, str(tmp_path))
    infer.load_weights(model.find_last(), by_name=True)
    # A box head trained 18 steps may call every proposal background: make
    # it favour class 2 so there are detections to check.
    layer = infer.keras_model.get_layer("mrcnn_class_logits")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * 0.1, np.array([0.0, 0.0, 3.0, 0.0], np.float32)])
    image = shapes_dataset(1, seed=21).load_image(0)
    out = infer.run_graph([image], [("proposals", "centernet_proposals"),
                                    ("probs", "mrcnn_class"),
                                    ("scores", "centernet_detection_scores"),
                                    ("detections", "centernet_detection"),
                                    ("p3", "centernet_heatmap_p3")])
    proposals, probs = out["proposals"][0], out["probs"][0]
    assert proposals.shape == (config.POST_NMS_ROIS_INFERENCE, 6)
    assert out["p3"].shape == (1, 12, 12, 1)  # one objectness channel
    real = proposals[:, 4] > 0
    assert real.any() and np.all(proposals[real, 4] == 1)
    assert np.all(proposals[real, 2:4] >= proposals[real, :2])
    np.testing.assert_allclose(out["scores"][0], np.sqrt(probs * proposals[:, 5:6]), rtol=1e-5,
                               atol=1e-7)
    detections = out["detections"][0]
    kept = detections[:, 4] > 0
    assert kept.any()
    # Each detection's score is its proposal's combined score for its class.
    combined = out["scores"][0]
    for row in detections[kept]:
        assert np.isclose(combined[:, int(row[4])], row[5], rtol=1e-5).any()
    result = infer.detect([image])[0]
    assert result["masks"].shape[:2] == image.shape[:2]
    assert 0 < len(result["class_ids"]) <= kept.sum()


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
