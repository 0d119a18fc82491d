"""Every registered model mode against the mode contract (mrcnn.modelbase):
build, a training step with finite named losses, detect() on images of
mixed sizes, checkpoints / find_last / resume, Keras-format save and
safe-mode reload, float32 outputs under bfloat16. "boxes_only" is defined
in tests/boxes_mode.py, outside the package: it passes the same contract
without any file of mrcnn knowing about it."""
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import boxes_mode  # noqa: F401  (registers "boxes_only")
from mrcnn import modes, weights
from mrcnn import model as modellib
from mrcnn.config import ConfigError
from mrcnn.modelbase import ModelBase
from tiny_models import TinyConfig, shapes_dataset

# The modes the package plans but has not registered yet are not tested here.
MODES = [name for name in modes.available_modes()]


class BoxesTinyConfig(TinyConfig):
    MODEL = "boxes_only"
    NAME = "tinyboxes"
    IMAGE_MIN_DIM = 96  # a multiple of 32: boxes_only's own rule (Mask R-CNN wants 64)
    IMAGE_MAX_DIM = 96


class YolactTinyConfig(TinyConfig):
    MODEL = "yolact"
    NAME = "tinyyolact"
    IMAGE_MIN_DIM = 80  # YOLACT takes any side (550 is its own)
    IMAGE_MAX_DIM = 80
    YOLACT_NUM_PROTOTYPES = 8
    YOLACT_HEAD_CHANNELS = 16


class CenterNetTinyConfig(TinyConfig):
    MODEL = "centernet"
    NAME = "tinycenternet"
    IMAGE_MIN_DIM = 96  # a multiple of 32: CenterNet's own rule
    IMAGE_MAX_DIM = 96
    CENTERNET_HEAD_CHANNELS = 16
    CENTERNET_GROUPS = 4
    CENTERNET_TOWER_CONVS = 2
    CENTERNET_REGRESS_RANGES = ((0, 24), (16, 48), (32, 96), (64, 192), (128, 1e9))


class CenterNetTwoStageTinyConfig(CenterNetTinyConfig):
    NAME = "tinycenternet2"
    CENTERNET_TWO_STAGE = True


TINY = {"mask_rcnn": TinyConfig, "boxes_only": BoxesTinyConfig, "yolact": YolactTinyConfig,
        "centernet": CenterNetTinyConfig, "centernet_two_stage": CenterNetTwoStageTinyConfig}
# Configuration variants a mode builds differently, held to the same contract.
VARIANTS = ["centernet_two_stage"]


def mode_of(name):
    """The mode a TINY entry (a mode or one of its VARIANTS) configures."""
    return TINY[name].MODEL


def tiny_config(mode_name, **values):
    base = TINY[mode_name]
    config = type("Tiny_" + mode_name, (base,), dict(values))()
    return config


def inference_config(mode_name, **values):
    return tiny_config(mode_name, IMAGES_PER_GPU=1, **values)


@pytest.fixture(scope="module")
def datasets():
    return shapes_dataset(6, seed=11), shapes_dataset(3, seed=12)


@pytest.fixture(scope="module", params=MODES + VARIANTS)
def trained(request, datasets, tmp_path_factory):
    """One epoch of one step for each mode, in its own model directory."""
    name = request.param
    model_dir = str(tmp_path_factory.mktemp(name))
    config = tiny_config(name, STEPS_PER_EPOCH=1, VALIDATION_STEPS=1)
    model = modellib.create_model("training", config, model_dir)
    history = model.train(datasets[0], datasets[1], 0.001, epochs=1, layers="all", verbose=0)
    return name, model, history, model_dir


def test_every_registered_mode_is_tested():
    assert set(MODES) <= set(TINY), "add a tiny config for each registered mode"
    assert {"mask_rcnn", "boxes_only", "yolact", "centernet"} <= set(MODES)


def test_training_step_gives_finite_named_losses(trained):
    name, model, history, model_dir = trained
    assert type(model) is modes.mode_class(mode_of(name))
    # A configuration trains the mode's losses or a subset of them.
    names = model.keras_model.loss_names
    assert names and set(names) <= set(model.LOSS_NAMES), (names, model.LOSS_NAMES)
    for loss in names:
        for key in (loss, "val_" + loss):
            assert key in history.history, (key, sorted(history.history))
            assert np.isfinite(history.history[key][0]), (key, history.history[key])
    # The total is the weighted sum the mode declares.
    assert np.isfinite(history.history["loss"][0])


def test_checkpoint_has_the_mode_prefix_and_config_records_the_mode(trained):
    name, model, _, model_dir = trained
    last = model.find_last()
    expected = "{}_{}_0001.h5".format(model.CHECKPOINT_PREFIX, model.config.NAME.lower())
    assert os.path.basename(last) == expected
    with open(os.path.join(os.path.dirname(last), "config.json")) as f:
        assert json.load(f)["MODEL"] == mode_of(name)


def test_resume_continues_from_the_checkpoint(trained, datasets):
    name, model, _, model_dir = trained
    resumed = modellib.create_model("training", model.config, model_dir)
    resumed.load_weights(resumed.find_last(), by_name=True)
    assert resumed.epoch == 1
    resumed.train(datasets[0], datasets[1], 0.001, epochs=2, layers="heads", verbose=0)
    assert resumed.epoch == 2
    assert os.path.basename(resumed.find_last()).endswith("_0002.h5")


def _check_result(result, image, num_classes):
    h, w = image.shape[:2]
    n = len(result["class_ids"])
    assert set(result) == {"rois", "class_ids", "scores", "masks"}
    assert result["rois"].dtype == np.int32 and result["rois"].shape == (n, 4)
    assert result["class_ids"].dtype == np.int32 and result["class_ids"].shape == (n,)
    assert result["scores"].dtype == np.float32 and result["scores"].shape == (n,)
    assert result["masks"].dtype == bool and result["masks"].shape == (h, w, n)
    assert np.all((result["class_ids"] >= 1) & (result["class_ids"] < num_classes))
    assert np.all(result["rois"][:, :2] >= 0)
    assert np.all(result["rois"][:, 2] <= h) and np.all(result["rois"][:, 3] <= w)
    assert np.all(result["rois"][:, 2:] >= result["rois"][:, :2])


@pytest.fixture(scope="module")
def inference(trained):
    name, model, _, model_dir = trained
    infer = modellib.create_model("inference", inference_config(name), model_dir)
    infer.load_weights(model.find_last(), by_name=True)
    return name, infer


def test_detect_returns_the_documented_dict_for_mixed_sizes(inference):
    name, infer = inference
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 255, s, dtype=np.uint8)
              for s in [(96, 96, 3), (70, 130, 3), (150, 60, 3)]]
    for count in (1, 3):
        results = infer.detect(images[:count])
        assert len(results) == count
        for result, image in zip(results, images):
            _check_result(result, image, infer.config.NUM_CLASSES)
    if name == "boxes_only":
        # Checked on real detections too: every cell is a candidate at
        # DETECTION_MIN_CONFIDENCE 0, and boxes of 16 px on each side of
        # their cell survive un-molding (after one training step they may be
        # too small to; a Mask R-CNN trained one step may call everything
        # background, so it is not asked for detections).
        sized = modellib.create_model("inference", infer.config, infer.model_dir)
        sized.keras_model.set_weights(infer.keras_model.get_weights())
        layer = sized.keras_model.get_layer("boxes_box")
        kernel, bias = layer.get_weights()
        layer.set_weights([np.zeros_like(kernel), np.full_like(bias, np.log(2.0))])
        results = sized.detect(images)
        assert all(len(r["class_ids"]) > 0 for r in results)
        for result, image in zip(results, images):
            _check_result(result, image, infer.config.NUM_CLASSES)


def test_keras_format_save_and_safe_mode_reload_detect_the_same(inference, tmp_path):
    name, infer = inference
    path = str(tmp_path / "model.keras")
    infer.keras_model.save(path)
    reloaded = modellib.create_model("inference", infer.config, str(tmp_path))
    reloaded.keras_model = keras.models.load_model(path, safe_mode=True)
    image = np.random.default_rng(4).integers(0, 255, (80, 110, 3), dtype=np.uint8)
    a, b = infer.detect([image])[0], reloaded.detect([image])[0]
    for key in ("rois", "class_ids", "masks"):
        np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_allclose(a["scores"], b["scores"], rtol=1e-5)


def test_bfloat16_outputs_are_float32(trained, tmp_path):
    name, model, _, model_dir = trained
    infer = modellib.create_model("inference", inference_config(name, MIXED_PRECISION="bfloat16"),
                                  str(tmp_path))
    infer.load_weights(model.find_last(), by_name=True)
    image = np.random.default_rng(5).integers(0, 255, (64, 90, 3), dtype=np.uint8)
    molded, metas, _ = infer.mold_inputs([image])
    outputs = infer.predict_molded(molded, metas)
    assert all(o.dtype == np.float32 for o in outputs), [o.dtype for o in outputs]
    _check_result(infer.detect([image])[0], image, infer.config.NUM_CLASSES)


def test_another_modes_checkpoint_is_refused_naming_both(trained, tmp_path):
    name, model, _, _ = trained
    name = mode_of(name)
    other = [m for m in MODES if m != name][0]
    target = modellib.create_model("inference", inference_config(other), str(tmp_path))
    before = [w.numpy().copy() for w in target.keras_model.weights]
    with pytest.raises(weights.WeightsModeError) as info:
        target.load_weights(model.find_last(), by_name=True)
    message = str(info.value)
    assert repr(name) in message and repr(other) in message
    for w, old in zip(target.keras_model.weights, before):
        np.testing.assert_array_equal(w.numpy(), old)


def test_find_last_looks_for_the_modes_own_checkpoints(trained, tmp_path):
    name, model, _, model_dir = trained
    other = [m for m in MODES if m != mode_of(name)][0]
    config = tiny_config(other, NAME=model.config.NAME)
    with pytest.raises(FileNotFoundError):
        modellib.create_model("inference", config, model_dir).find_last()


# ---------------------------------------------------------------------------
# The contract itself
# ---------------------------------------------------------------------------

def test_mode_rules_come_from_the_mode():
    # 96 px is fine for boxes_only, not for Mask R-CNN (multiples of 64).
    BoxesTinyConfig().validate()
    with pytest.raises(ConfigError, match="IMAGE_MAX_DIM=96 must be a positive multiple of 64"):
        tiny_config("mask_rcnn", IMAGE_MIN_DIM=96, IMAGE_MAX_DIM=96).validate()
    with pytest.raises(ConfigError, match="IMAGE_MAX_DIM=80 must be a multiple of 32"):
        tiny_config("boxes_only", IMAGE_MIN_DIM=80, IMAGE_MAX_DIM=80).validate()
    # Mask R-CNN's RPN settings do not concern boxes_only...
    tiny_config("boxes_only", RPN_ANCHOR_SCALES=(8,), MASK_SHAPE=[5, 5]).validate()
    # ...and LOSS_WEIGHTS are checked against the mode's own losses.
    with pytest.raises(ConfigError, match=r"LOSS_WEIGHTS has unknown keys \['rpn_class_loss'\]"):
        tiny_config("boxes_only", LOSS_WEIGHTS={"rpn_class_loss": 2.0}).validate()
    config = tiny_config("boxes_only", LOSS_WEIGHTS={"boxes_box_loss": 3.0})
    assert boxes_mode.BoxesOnly.loss_weights(config) == {"boxes_class_loss": 1.0,
                                                          "boxes_box_loss": 3.0}
    # The base Config's untouched (Mask R-CNN) default does not bother other modes.
    assert boxes_mode.BoxesOnly.loss_weights(BoxesTinyConfig()) == {
        "boxes_class_loss": 1.0, "boxes_box_loss": 1.0}


def test_unknown_and_planned_modes_are_named():
    with pytest.raises(ConfigError, match="MODEL='detr' is unknown; available: .*boxes_only"):
        tiny_config("mask_rcnn", MODEL="detr").validate()
    with pytest.raises(ConfigError, match="MODEL='mask2former' is reserved"):
        tiny_config("mask_rcnn", MODEL="mask2former").validate()
    with pytest.raises(modes.UnknownModeError, match="available"):
        modes.create_model("training", tiny_config("mask_rcnn", MODEL="detr"), "logs")


def test_building_a_class_for_another_models_config_fails_naming_both(tmp_path):
    with pytest.raises(ValueError, match=r"MaskRCNN is the 'mask_rcnn' model mode but "
                                         r"config.MODEL is 'boxes_only'"):
        modellib.MaskRCNN("inference", BoxesTinyConfig(), str(tmp_path))


def test_mode_class_attributes_are_checked_when_the_class_is_created():
    with pytest.raises(TypeError, match="LOSS_NAMES must be a non-empty list"):
        class NoLosses(ModelBase):
            CHECKPOINT_PREFIX = "x"
            HEADS_REGEX = ".*"
            DEFAULT_LOSS_WEIGHTS = {}

            def build(self, mode, config):
                pass
    with pytest.raises(TypeError, match="CHECKPOINT_PREFIX must be lower-case"):
        class BadPrefix(ModelBase):
            LOSS_NAMES = ("a_loss",)
            DEFAULT_LOSS_WEIGHTS = {"a_loss": 1.0}
            CHECKPOINT_PREFIX = "My Model"
            HEADS_REGEX = ".*"

            def build(self, mode, config):
                pass
    with pytest.raises(TypeError, match=r"DEFAULT_LOSS_WEIGHTS has keys \['b_loss'\]"):
        class BadWeights(ModelBase):
            LOSS_NAMES = ("a_loss",)
            DEFAULT_LOSS_WEIGHTS = {"b_loss": 1.0}
            CHECKPOINT_PREFIX = "x"
            HEADS_REGEX = "(unclosed"

            def build(self, mode, config):
                pass


def test_unimplemented_hooks_name_themselves():
    class Partial(ModelBase):
        LOSS_NAMES = ("a_loss",)
        DEFAULT_LOSS_WEIGHTS = {"a_loss": 1.0}
        CHECKPOINT_PREFIX = "partial"
        HEADS_REGEX = ".*"

        def build(self, mode, config):
            return keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])

    model = Partial("training", TinyConfig(), "unused_logs")
    for call, hook in [(model.training_signature, "training_signature()"),
                       (lambda: model.training_sample(None, 0, None), "training_sample("),
                       (lambda: model.inference_inputs(None, None), "inference_inputs("),
                       (lambda: model.postprocess(None, 0, None, None, None), "postprocess(")]:
        with pytest.raises(NotImplementedError,
                           match=re.escape("Partial does not implement " + hook)):
            call()
    assert model.training_constants((64, 64, 3)) == {}


def test_the_registry_imports_nothing_until_a_mode_is_used():
    code = ("import sys\n"
            "from mrcnn import modes, config\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
            "assert isinstance(modes.MODEL_REGISTRY['mask_rcnn'], str)\n"
            "print(modes.mode_class('mask_rcnn').__name__)\n"
            "assert 'tensorflow' in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "MaskRCNN"


def test_register_mode_checks_its_arguments():
    with pytest.raises(ValueError, match="package.module:Class"):
        modes.register_mode("x", "no_colon_here")
    with pytest.raises(TypeError, match="ModelBase subclass"):
        modes.register_mode("x", 42)
    modes.register_mode("broken_for_test", "no_such_package.model:Nothing")
    try:
        with pytest.raises(ImportError, match="'broken_for_test' is registered as "
                                              "'no_such_package.model:Nothing'"):
            modes.mode_class("broken_for_test")
    finally:
        del modes.MODEL_REGISTRY["broken_for_test"]
