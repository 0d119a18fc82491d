"""Tests for samples/shapes/shapes.py: ShapesConfig values, seeded and
reproducible ShapesDataset specs, image/mask consistency, the occlusion rule,
dropping fully hidden shapes, the training budget and the command line's
configuration flags and checkpoint configuration."""
import json
import os
import random
import subprocess
import sys
import time

import numpy as np
import pytest

from mrcnn import utils
from mrcnn.config import Config
from conftest import load_sample

SHAPES_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           os.pardir, "samples", "shapes", "shapes.py")




shapes = load_sample('shapes')


def make_dataset(count=20, seed=1, size=128):
    dataset = shapes.ShapesDataset()
    dataset.load_shapes(count, size, size, seed=seed)
    dataset.prepare()
    return dataset


def hand_made(shape_specs, bg_color=(10, 20, 30), size=128):
    """Dataset holding one image with the given list of shapes."""
    dataset = shapes.ShapesDataset()
    dataset.load_shapes(0, size, size)
    dataset.add_image("shapes", image_id=0, path=None, width=size, height=size,
                      bg_color=bg_color, shapes=shape_specs)
    dataset.prepare()
    return dataset


def specs(dataset):
    return [(info["bg_color"], info["shapes"]) for info in dataset.image_info]


def test_config_values_and_validate():
    config = shapes.ShapesConfig()
    assert isinstance(config, Config)
    expected = dict(NAME="shapes", GPU_COUNT=1, IMAGES_PER_GPU=8, NUM_CLASSES=4,
                    IMAGE_MIN_DIM=128, IMAGE_MAX_DIM=128,
                    RPN_ANCHOR_SCALES=(8, 16, 32, 64, 128), TRAIN_ROIS_PER_IMAGE=32,
                    STEPS_PER_EPOCH=100, VALIDATION_STEPS=5)
    for name, value in expected.items():
        assert getattr(shapes.ShapesConfig, name) == value, name
    assert config.BATCH_SIZE == 8
    assert list(config.IMAGE_SHAPE) == [128, 128, 3]
    # The from-scratch recipe: cheap backbone, trainable batch norm, warm-up.
    assert (config.BACKBONE, config.TRAIN_BN) == ("resnet18", None)
    assert config.LEARNING_RATE_WARMUP_STEPS > 0
    assert config.validate() is config


def test_classes():
    dataset = make_dataset(count=1)
    assert dataset.class_names == ["BG", "square", "circle", "triangle"]
    assert dataset.num_classes == shapes.ShapesConfig.NUM_CLASSES


def test_seeded_dataset_is_reproducible_and_seeds_differ():
    state = random.getstate()
    a, b, c = make_dataset(seed=1), make_dataset(seed=1), make_dataset(seed=2)
    assert random.getstate() == state  # seeded generation leaves `random` alone
    assert specs(a) == specs(b)
    assert specs(a) != specs(c)
    for image_id in a.image_ids[:5]:
        np.testing.assert_array_equal(a.load_image(image_id), b.load_image(image_id))
        # Images are rendered from the spec: repeated loads are identical.
        np.testing.assert_array_equal(a.load_image(image_id), a.load_image(image_id))
        for x, y in zip(a.load_mask(image_id), b.load_mask(image_id)):
            np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(a.load_image(i), c.load_image(i)) for i in a.image_ids)


def test_unseeded_uses_global_random_like_the_original():
    random.seed(123)
    a = shapes.ShapesDataset()
    a.load_shapes(5, 128, 128)
    random.seed(123)
    b = shapes.ShapesDataset()
    b.load_shapes(5, 128, 128)
    assert specs(a) == specs(b)


def test_images_masks_and_boxes():
    dataset = make_dataset(count=20, seed=7)
    for image_id in dataset.image_ids:
        info = dataset.image_info[image_id]
        assert 1 <= len(info["shapes"]) <= 4
        assert dataset.image_reference(image_id) == info["shapes"]
        image = dataset.load_image(image_id)
        assert image.dtype == np.uint8 and image.shape == (128, 128, 3)
        masks, class_ids = dataset.load_mask(image_id)
        n = masks.shape[-1]
        assert 1 <= n <= 4
        assert masks.dtype == bool and masks.shape == (128, 128, n)
        assert class_ids.dtype == np.int32 and class_ids.shape == (n,)
        assert np.all((class_ids >= 1) & (class_ids <= 3))
        assert masks.any(axis=(0, 1)).all()                   # no empty mask
        assert masks.sum(axis=-1).max() <= 1                  # occlusion: disjoint
        boxes = utils.extract_bboxes(masks)
        assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2:] <= 128)
        assert np.all(boxes[:, 2:] > boxes[:, :2])
        # Pixels: each mask has the colour of a shape of its class; the rest
        # is background.
        for i in range(n):
            colors = np.unique(image[masks[:, :, i]], axis=0)
            assert len(colors) == 1
            candidates = [tuple(c) for s, c, _ in info["shapes"]
                          if dataset.class_names.index(s) == class_ids[i]]
            assert tuple(colors[0]) in candidates
        background = image[~masks.any(axis=-1)]
        if background.size:
            assert np.all(background == np.array(info["bg_color"], np.uint8))


def test_occlusion_later_shape_wins():
    red, blue = (255, 0, 0), (0, 0, 255)
    first = ("square", red, (50, 50, 20))
    second = ("square", blue, (70, 70, 20))
    dataset = hand_made([first, second])
    masks, class_ids = dataset.load_mask(0)
    assert masks.shape == (128, 128, 2)
    np.testing.assert_array_equal(class_ids, [1, 1])
    alone_first = hand_made([first]).load_mask(0)[0][:, :, 0]
    alone_second = hand_made([second]).load_mask(0)[0][:, :, 0]
    overlap = alone_first & alone_second
    assert overlap.any() and overlap[60, 60]
    # The earlier shape loses exactly the overlapping pixels...
    np.testing.assert_array_equal(masks[:, :, 0], alone_first & ~overlap)
    # ...the later one keeps all of its pixels.
    np.testing.assert_array_equal(masks[:, :, 1], alone_second)
    image = dataset.load_image(0)
    assert tuple(image[60, 60]) == blue
    assert tuple(image[35, 35]) == red
    assert tuple(image[5, 5]) == (10, 20, 30)


def test_fully_hidden_shape_is_dropped():
    hidden = ("circle", (0, 255, 0), (64, 64, 10))
    cover = ("square", (255, 255, 0), (64, 64, 30))
    other = ("triangle", (0, 255, 255), (25, 105, 20))
    dataset = hand_made([hidden, cover, other])
    masks, class_ids = dataset.load_mask(0)
    assert masks.shape == (128, 128, 2)
    np.testing.assert_array_equal(class_ids, [1, 3])
    assert masks.any(axis=(0, 1)).all()
    assert tuple(dataset.load_image(0)[64, 64]) == (255, 255, 0)


def test_no_shapes_and_bad_sizes():
    masks, class_ids = hand_made([]).load_mask(0)
    assert masks.shape == (128, 128, 0) and masks.dtype == bool
    assert class_ids.shape == (0,) and class_ids.dtype == np.int32
    with pytest.raises(ValueError, match="at least"):
        shapes.ShapesDataset().load_shapes(1, 64, 64, seed=0)


def test_runs_as_a_script():
    result = subprocess.run([sys.executable, SHAPES_PATH, "--help"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for command in ("train", "evaluate", "detect"):
        assert command in result.stdout
    bad = subprocess.run([sys.executable, SHAPES_PATH, "fly"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_train_budget_decays_the_learning_rate_and_passes_callbacks(monkeypatch, tmp_path):
    import mrcnn.model  # noqa: F401  (registers "mask_rcnn")
    from mrcnn import modelbase
    from mrcnn.training import TimeBudget
    calls = []

    class Recorder:
        def __init__(self, mode, config, model_dir):
            self.config = config

        def train(self, *args, **kwargs):
            calls.append(kwargs)
            return "history"

    monkeypatch.setitem(modelbase.MODEL_REGISTRY, "mask_rcnn", Recorder)
    extra = object()
    model, history, _ = shapes.train(str(tmp_path), minutes=2, train_images=2, val_images=1,
                                     callbacks=[extra])
    (kwargs,) = calls
    budget, passed = kwargs["custom_callbacks"]
    assert isinstance(budget, TimeBudget) and budget.seconds == 120
    assert budget.decay_at == list(shapes.LEARNING_RATE_DECAY_AT) and budget.decay_factor == 0.1
    assert passed is extra and kwargs["layers"] == "all" and history == "history"
    calls.clear()
    shapes.train(str(tmp_path), minutes=0, train_images=2, val_images=1)
    assert calls[0]["custom_callbacks"] == []          # no budget: no TimeBudget


# ---------------------------------------------------------------------------
# Command line: configuration flags and the checkpoint's configuration
# ---------------------------------------------------------------------------

class StopBeforeTraining(Exception):
    pass


@pytest.fixture
def train_call(monkeypatch):
    """shapes.train replaced by a recorder that stops the command."""
    seen = {}

    def fake_train(model_dir, **kwargs):
        seen.update(kwargs, model_dir=model_dir)
        raise StopBeforeTraining

    monkeypatch.setattr(shapes, "train", fake_train)
    return seen


def test_cli_flags_reach_the_training_config(tmp_path, train_call):
    with pytest.raises(StopBeforeTraining):
        shapes.main(["train", "--logs", str(tmp_path), "--backbone", "resnet50",
                     "--image-size", "256", "--images-per-gpu", "4",
                     "--learning-rate", "0.005", "--minutes", "30"])
    config = train_call["config"]
    assert (config.BACKBONE, config.IMAGE_MIN_DIM, config.IMAGE_MAX_DIM) == ("resnet50", 256, 256)
    assert (config.IMAGES_PER_GPU, config.LEARNING_RATE) == (4, 0.005)
    assert train_call["minutes"] == 30 and train_call["start"] <= time.time()
    assert train_call["weights"] is None
    # No flag: ShapesConfig exactly, 15 minutes.
    with pytest.raises(StopBeforeTraining):
        shapes.main(["train", "--logs", str(tmp_path)])
    assert train_call["config"].to_dict() == shapes.ShapesConfig().to_dict()
    assert train_call["minutes"] == 15.0


def small_shapes_config():
    """Not ShapesConfig's network: 64 px, a narrower pyramid and heads."""
    config = shapes.InferenceConfig()
    config.IMAGE_MIN_DIM = config.IMAGE_MAX_DIM = 64
    config.TOP_DOWN_PYRAMID_SIZE = 32
    config.RPN_CONV_CHANNELS = 32
    config.FPN_CLASSIF_FC_LAYERS_SIZE = 64
    config.MASK_HEAD_CHANNELS = 16
    return config


def test_cli_resume_and_evaluate_use_the_checkpoint_configuration(tmp_path, monkeypatch,
                                                                   capsys, train_call):
    from mrcnn import model as modellib
    logs = tmp_path / "logs"
    run = logs / "shapes20240101T0000"
    run.mkdir(parents=True)
    config = small_shapes_config()
    checkpoint = str(run / "mask_rcnn_shapes_0002.h5")
    modellib.MaskRCNN("inference", config, str(logs)).save_weights(checkpoint)
    recorded = shapes.ShapesConfig()
    for key in ("IMAGE_MIN_DIM", "IMAGE_MAX_DIM", "TOP_DOWN_PYRAMID_SIZE", "RPN_CONV_CHANNELS",
                "FPN_CLASSIF_FC_LAYERS_SIZE", "MASK_HEAD_CHANNELS"):
        setattr(recorded, key, getattr(config, key))
    recorded.to_json(str(run / "config.json"))

    # train --weights last resumes with the recorded network; flags still win.
    with pytest.raises(StopBeforeTraining):
        shapes.main(["train", "--logs", str(logs), "--weights", "last",
                     "--learning-rate", "0.001"])
    resumed = train_call["config"]
    assert train_call["weights"] == checkpoint
    assert (resumed.IMAGE_MAX_DIM, resumed.TOP_DOWN_PYRAMID_SIZE, resumed.IMAGES_PER_GPU,
            resumed.LEARNING_RATE) == (64, 32, 8, 0.001)
    assert "Using the configuration saved with the checkpoint" in capsys.readouterr().out

    # evaluate (default --weights last): the recorded network, one image per batch.
    built = []
    create_model = modellib.create_model
    monkeypatch.setattr(modellib, "create_model",
                        lambda mode, config, model_dir: built.append(config) or
                        create_model(mode, config, model_dir))
    shapes.main(["evaluate", "--logs", str(logs), "--val-images", "2"])
    out = capsys.readouterr().out
    assert "Using the configuration saved with the checkpoint: {}".format(
        run / "config.json") in out
    result = json.loads(out[out.index("{"):])
    assert result["images"] == 2 and result["checkpoint"] == checkpoint
    used, = built
    assert (used.IMAGE_MAX_DIM, used.MASK_HEAD_CHANNELS, used.IMAGES_PER_GPU) == (64, 16, 1)


def test_cli_weights_errors(tmp_path, capsys):
    for argv, message in [(["evaluate", "--logs", str(tmp_path / "none")],
                           "Could not find model directory"),
                          (["evaluate", "--weights", str(tmp_path / "w.h5")], "not found"),
                          (["train", "--weights", "coco"], "checkpoint path or 'last'"),
                          (["detect", "--weights", "last"], "detect needs --image")]:
        with pytest.raises(SystemExit) as e:
            shapes.main(argv)
        assert e.value.code == 2 and message in capsys.readouterr().err, argv
