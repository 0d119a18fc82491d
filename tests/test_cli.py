"""Tests for mrcnn/cli.py: the configuration flags every sample accepts,
--config files, the config.json saved beside a checkpoint, their
precedence (sample < checkpoint config.json < --config < flags < extra),
the errors for bad values and files, and the wall-time budget. The samples'
own use of it is tested in test_coco.py, test_shapes.py, test_balloon.py
and test_nucleus.py; here every sample's --help and --arch error."""
import argparse
import importlib.util
import json
import os
import re
import time

import numpy as np
import pytest

from mrcnn import cli
from mrcnn.config import BACKBONES, Config
from conftest import SAMPLES, load_sample
from tiny_models import load_shapes_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
shapes = load_shapes_module()


class SmallConfig(Config):
    NAME = "small"
    NUM_CLASSES = 3
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128


class SmallInferenceConfig(SmallConfig):
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1
    DETECTION_MIN_CONFIDENCE = 0


def parser():
    p = argparse.ArgumentParser(prog="sample.py")
    cli.add_config_arguments(p)
    return p


def build(argv, base=None, **kwargs):
    p = parser()
    return cli.config_from_args(p, p.parse_args(argv), base or SmallConfig(), **kwargs)


def error(capsys, argv, **kwargs):
    with pytest.raises(SystemExit) as e:
        build(argv, **kwargs)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def checkpoint(folder, recorded=None):
    """An (empty) checkpoint file, with ``recorded`` (a Config or JSON
    text) as the config.json beside it."""
    run = folder / "small20240101T0000"
    run.mkdir(parents=True, exist_ok=True)
    path = run / "mask_rcnn_small_0002.h5"
    path.write_bytes(b"")
    if isinstance(recorded, Config):
        recorded.to_json(str(run / "config.json"))
    elif recorded is not None:
        (run / "config.json").write_text(recorded)
    return str(path)


# ---------------------------------------------------------------------------
# Flags
# ---------------------------------------------------------------------------

def test_no_flags_leave_the_sample_config_exactly():
    base = SmallConfig()
    base.STEPS_PER_EPOCH = 17          # an instance value is kept too
    config, sources = build([], base=base)
    assert config is not base and config.to_dict() == base.to_dict()
    assert sources == [cli.Source("SmallConfig", {})]
    args = parser().parse_args([])
    assert all(getattr(args, name) is None for name in
               ("config", "arch", "backbone", "image_size", "images_per_gpu",
                "learning_rate", "minutes"))


def test_each_flag_reaches_the_config():
    config, sources = build(["--arch", "mask_rcnn", "--backbone", "resnet34",
                             "--image-size", "256", "--images-per-gpu", "3",
                             "--learning-rate", "0.02"])
    assert (config.MODEL, config.BACKBONE) == ("mask_rcnn", "resnet34")
    assert (config.IMAGE_MIN_DIM, config.IMAGE_MAX_DIM) == (256, 256)
    assert list(config.IMAGE_SHAPE) == [256, 256, 3]
    assert (config.IMAGES_PER_GPU, config.BATCH_SIZE, config.LEARNING_RATE) == (3, 3, 0.02)
    assert cli.describe_sources(sources) == (
        "SmallConfig < --arch mask_rcnn < --backbone resnet34 < --image-size 256 < "
        "--images-per-gpu 3 < --learning-rate 0.02")
    for backbone in BACKBONES:
        assert build(["--backbone", backbone])[0].BACKBONE == backbone
    assert parser().parse_args(["--minutes", "2.5"]).minutes == 2.5
    p = argparse.ArgumentParser()
    cli.add_config_arguments(p, minutes=15.0)
    assert p.parse_args([]).minutes == 15.0


def test_set_changes_any_value_after_the_other_flags(tmp_path):
    path = tmp_path / "small.json"
    path.write_text(json.dumps({"LEARNING_RATE": 0.1, "BACKBONE": "resnet18"}))
    config, sources = build(["--config", str(path), "--set", "LEARNING_RATE=0.3",
                             "--learning-rate", "0.2", "--set", "CENTERNET_TWO_STAGE=true",
                             "--set", "RPN_ANCHOR_SCALES=[8, 16, 32, 64, 128]",
                             "--set", "BACKBONE=resnet34", "--set", 'NAME="run-7"'])
    assert config.LEARNING_RATE == 0.3             # --set comes after the named flags
    assert config.CENTERNET_TWO_STAGE is True       # JSON true
    assert config.RPN_ANCHOR_SCALES == (8, 16, 32, 64, 128)  # the default's type (a tuple)
    assert (config.BACKBONE, config.NAME) == ("resnet34", "run-7")  # strings, bare or JSON
    assert [s.label for s in sources][-5:] == [
        "--set LEARNING_RATE=0.3", "--set CENTERNET_TWO_STAGE=true",
        "--set RPN_ANCHOR_SCALES=[8, 16, 32, 64, 128]", '--set BACKBONE="resnet34"',
        '--set NAME="run-7"']


def test_bad_set_values_are_argparse_errors(capsys):
    err = error(capsys, ["--set", "LEARNING_RATE"])
    assert "argument --set: expected KEY=VALUE (e.g. CENTERNET_TWO_STAGE=true), got " \
        "'LEARNING_RATE'" in err
    err = error(capsys, ["--set", "LERNING_RATE=0.1"])
    assert "argument --set: 'LERNING_RATE' is not a configuration value; did you mean " \
        "LEARNING_RATE" in err
    assert "is not a configuration value" in error(capsys, ["--set", "IMAGE_SHAPE=[1, 1, 3]"])
    # Values are checked with the configuration, against the flag that set them.
    err = error(capsys, ["--set", "IMAGE_MAX_DIM=100"])
    assert "argument --set IMAGE_MAX_DIM=100: IMAGE_MAX_DIM=100 must be a positive multiple " \
        "of 64" in err


def test_config_file_applies_and_flags_win(tmp_path):
    path = tmp_path / "small.json"
    path.write_text(json.dumps({"BACKBONE": "resnet18", "IMAGE_MIN_DIM": 64,
                                "IMAGE_MAX_DIM": 64, "LEARNING_RATE": 0.1,
                                "MEAN_PIXEL": [1, 2, 3], "RPN_ANCHOR_SCALES": [8, 16, 32, 64, 128],
                                "IMAGE_SHAPE": [1, 1, 1]}))       # derived: ignored
    config, sources = build(["--config", str(path), "--backbone", "resnet50",
                             "--learning-rate", "0.5"])
    assert (config.BACKBONE, config.LEARNING_RATE) == ("resnet50", 0.5)    # flags win
    assert (config.IMAGE_MIN_DIM, config.IMAGE_MAX_DIM) == (64, 64)        # from the file
    assert isinstance(config.MEAN_PIXEL, np.ndarray) and list(config.MEAN_PIXEL) == [1, 2, 3]
    assert config.RPN_ANCHOR_SCALES == (8, 16, 32, 64, 128)
    assert list(config.IMAGE_SHAPE) == [64, 64, 3]
    assert [s.label for s in sources] == ["SmallConfig", "--config " + str(path),
                                          "--backbone resnet50", "--learning-rate 0.5"]
    # A full Config.to_json file round-trips.
    full = SmallConfig()
    full.BACKBONE, full.TOP_DOWN_PYRAMID_SIZE = "resnet34", 64
    full.to_json(str(path))
    assert build(["--config", str(path)])[0].to_dict() == full.to_dict()


def test_precedence_checkpoint_config_file_flags_extra(tmp_path, capsys):
    recorded = SmallConfig()
    recorded.BACKBONE, recorded.IMAGE_MIN_DIM, recorded.IMAGE_MAX_DIM = "resnet18", 64, 64
    recorded.TOP_DOWN_PYRAMID_SIZE, recorded.LEARNING_RATE = 32, 0.3
    recorded.IMAGES_PER_GPU, recorded.GPU_COUNT, recorded.DETECTION_MIN_CONFIDENCE = 8, 2, 0.9
    recorded.NAME, recorded.MIXED_PRECISION = "mine", "bfloat16"
    weights = checkpoint(tmp_path, recorded)
    config_json = os.path.join(os.path.dirname(weights), "config.json")
    file = tmp_path / "override.json"
    file.write_text(json.dumps({"IMAGE_MIN_DIM": 128, "IMAGE_MAX_DIM": 128,
                                "LEARNING_RATE": 0.2}))

    # Training from a checkpoint: everything but GPU_COUNT from config.json.
    config, sources = build([], weights_spec="last", weights_path=weights)
    assert (config.BACKBONE, config.IMAGE_MAX_DIM, config.TOP_DOWN_PYRAMID_SIZE) == \
        ("resnet18", 64, 32)
    assert (config.IMAGES_PER_GPU, config.DETECTION_MIN_CONFIDENCE, config.NAME,
            config.MIXED_PRECISION) == (8, 0.9, "mine", "bfloat16")
    assert config.GPU_COUNT == 1
    assert "Using the configuration saved with the checkpoint: " + config_json in \
        capsys.readouterr().out

    # Inference: the command keeps what its inference config sets.
    keep = cli.command_keys(SmallInferenceConfig, SmallConfig)
    assert keep == ("GPU_COUNT", "IMAGES_PER_GPU", "DETECTION_MIN_CONFIDENCE")
    config, _ = build([], base=SmallInferenceConfig(), weights_spec=weights,
                      weights_path=weights, keep=keep)
    assert (config.BACKBONE, config.TOP_DOWN_PYRAMID_SIZE) == ("resnet18", 32)
    assert (config.GPU_COUNT, config.IMAGES_PER_GPU, config.DETECTION_MIN_CONFIDENCE) == \
        (1, 1, 0)

    # config.json < --config < flags < extra.
    config, sources = build(["--config", str(file), "--learning-rate", "0.1",
                             "--images-per-gpu", "2"], weights_spec="last",
                            weights_path=weights,
                            extra=[("the dataset", {"NUM_CLASSES": 7, "NAME": None})])
    assert config.BACKBONE == "resnet18"                       # config.json
    assert config.IMAGE_MAX_DIM == 128                         # --config over config.json
    assert config.LEARNING_RATE == 0.1                         # flag over --config
    assert (config.IMAGES_PER_GPU, config.NUM_CLASSES, config.NAME) == (2, 7, "mine")
    assert [s.label for s in sources] == [
        "SmallConfig", "the configuration saved with the checkpoint, " + config_json,
        "--config " + str(file), "--images-per-gpu 2", "--learning-rate 0.1", "the dataset"]
    assert sources[-1].values == {"NUM_CLASSES": 7}

    # Downloaded weights (coco, imagenet) are not our checkpoints.
    assert cli.checkpoint_config_path("coco", weights) is None
    assert cli.checkpoint_config_path("IMAGENET", weights) is None
    assert cli.checkpoint_config_path("last", weights) == config_json
    assert cli.checkpoint_config_path("last", None) is None
    assert build([], weights_spec="coco", weights_path=weights)[0].BACKBONE == "resnet101"


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

def test_invalid_flag_values_are_argparse_errors(capsys):
    err = error(capsys, ["--image-size", "100"])
    assert "usage:" in err
    assert ("argument --image-size 100: IMAGE_MAX_DIM=100 must be a positive multiple of 64 "
            "in 'square' mode") in err and "try 128" in err
    err = error(capsys, ["--arch", "unknown"])
    assert re.search(r"argument --arch unknown: MODEL='unknown' is unknown; available: .*mask_rcnn", err)
    assert "reserved" in error(capsys, ["--arch", "mask2former"])
    assert "argument --backbone: invalid choice: 'resnet152' (choose from" in \
        error(capsys, ["--backbone", "resnet152"])
    assert "argument --image-size: must be a positive integer, got 0" in \
        error(capsys, ["--image-size", "0"])
    assert "argument --image-size: invalid integer value: '1.5'" in \
        error(capsys, ["--image-size", "1.5"])
    assert "argument --images-per-gpu: must be a positive integer" in \
        error(capsys, ["--images-per-gpu", "-1"])
    assert "argument --learning-rate: must be a positive number" in \
        error(capsys, ["--learning-rate", "0"])
    assert "argument --minutes: invalid number value: 'soon'" in \
        error(capsys, ["--minutes", "soon"])
    # In crop mode the minimum side is what must be a multiple of 64.
    crop = SmallConfig()
    crop.IMAGE_RESIZE_MODE = "crop"
    assert "IMAGE_MIN_DIM=96 must be a positive multiple of 64 in 'crop' mode" in \
        error(capsys, ["--image-size", "96"], base=crop)


def test_bad_config_files(tmp_path, capsys):
    missing = str(tmp_path / "missing.json")
    assert "--config file not found: " + missing in error(capsys, ["--config", missing])
    for text, message in [("{", "is not valid JSON"), ("[1, 2]", "must hold a JSON object"),
                          ('{"backbone": "resnet50"}', "'backbone' is not a configuration "
                                                       "value"),
                          ('{"BACKBONE": "resnet152"}', "BACKBONE='resnet152' is unknown")]:
        path = tmp_path / "bad.json"
        path.write_text(text)
        err = error(capsys, ["--config", str(path)])
        assert str(path) in err and message in err, (text, err)


def test_bad_checkpoint_config_names_the_file_and_changes_nothing(tmp_path, capsys):
    cases = [("{", "is not valid JSON"), ('"x"', "must hold a JSON object"),
             ('{"IMAGE_MAX_DIM": 100}', "IMAGE_MAX_DIM=100 must be a positive multiple of 64"),
             ('{"BACKBONE": "nowhere:backbone"}', "cannot import")]
    for i, (text, message) in enumerate(cases):
        weights = checkpoint(tmp_path / str(i), text)
        config_json = os.path.join(os.path.dirname(weights), "config.json")
        err = error(capsys, [], weights_spec="last", weights_path=weights)
        assert "the configuration saved with the checkpoint" in err and config_json in err
        assert message in err, (text, err)
        assert "Nothing was changed" in err and "--config FILE.json" in err
        with open(config_json) as f:
            assert f.read() == text
        assert os.path.exists(weights)
    # A flag can repair what the file got wrong.
    weights = os.path.join(str(tmp_path / "2"), "small20240101T0000", "mask_rcnn_small_0002.h5")
    config, _ = build(["--image-size", "128"], weights_spec="last", weights_path=weights)
    assert config.IMAGE_MAX_DIM == 128


def test_build_config_raises_without_a_parser(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    args = parser().parse_args(["--config", str(bad)])
    with pytest.raises(cli.ConfigSourceError) as e:
        cli.build_config(SmallConfig(), args)
    assert e.value.path == str(bad)
    args = parser().parse_args(["--image-size", "100"])
    with pytest.raises(cli.FlagError) as e:
        cli.build_config(SmallConfig(), args)
    assert e.value.flags == ["--image-size"]


# ---------------------------------------------------------------------------
# Time budget
# ---------------------------------------------------------------------------

def test_training_budget():
    from mrcnn.training import TimeBudget
    assert cli.TrainingBudget(None).callbacks() == []
    assert cli.TrainingBudget(0).callbacks(0.5) == [] and not cli.TrainingBudget(None).over()
    start = time.time()
    budget = cli.TrainingBudget(2, start=start)
    (callback,) = budget.callbacks(0.25, decay_at=(0.8,))
    assert isinstance(callback, TimeBudget)
    assert (callback.seconds, callback.given_start, callback.decay_at) == (30.0, start, [0.8])
    assert not budget.over(0.25)
    late = cli.TrainingBudget(1, start=start - 45)
    assert late.over(0.5) and not late.over(1.0)
    with pytest.raises(ValueError, match="positive"):
        cli.TrainingBudget(-1)


# ---------------------------------------------------------------------------
# Every sample
# ---------------------------------------------------------------------------





def sample_argv(name, tmp_path):
    """Arguments of a command that gets as far as building its config."""
    if name == "coco":
        from coco_fixtures import write_eval_set
        return ["evaluate", "--annotations", write_eval_set(tmp_path), "--model", "none"]
    if name == "balloon":
        from PIL import Image
        image = str(tmp_path / "x.png")
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
        return ["splash", "--image", image, "--weights", "none"]
    if name == "nucleus":
        (tmp_path / "stage1_test").mkdir()
        return ["detect", "--dataset", str(tmp_path), "--subset", "stage1_test",
                "--weights", "none"]
    return ["evaluate", "--weights", "none"]


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_sample_has_the_flags_and_a_clean_arch_error(name, tmp_path, capsys):
    sample = load_sample(name, name + "_cli_test")
    with pytest.raises(SystemExit) as e:
        sample.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--config", "--arch", "--backbone", "--image-size", "--images-per-gpu",
                 "--learning-rate", "--minutes"):
        assert flag in out, (name, flag)
    argv = sample_argv(name, tmp_path) + ["--logs", str(tmp_path / "logs")]
    with pytest.raises(SystemExit) as e:
        sample.main(argv + ["--arch", "unknown"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert re.search(r"argument --arch unknown: MODEL='unknown' is unknown; available: .*mask_rcnn", err)
    with pytest.raises(SystemExit) as e:
        sample.main(argv + ["--image-size", "100"])
    assert "IMAGE_M" in capsys.readouterr().err and e.value.code == 2
