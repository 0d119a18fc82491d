"""Tests for samples/coco.py: CocoDataset on COCO-format files (custom
category ids, crowd regions, the three segmentation formats, bad input seen
through load_coco), the official layout, downloads and the command line.
The format functions themselves are tested in test_cocoformat.py."""
import json
import logging
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from pycocotools import mask as maskUtils

from coco_fixtures import (B_CAT_MASK, CAT, CAT_BLOB, CAT_CLASS, CROWD_MASK, DOG, DOG_CLASS,
                           DOG_POLY_MASK, DOG_RLE_MASK, L_SHAPE, SIZE, fixture_json,
                           rect_polygon, write_eval_set, write_png)
from mrcnn.data import cocoformat
from mrcnn.weights import pretrained
from mrcnn.dataset import ImageLoadError
from mrcnn.weights.pretrained import COCO_CLASS_SPECIFIC_LAYERS
from conftest import load_sample

# pycocotools' decode() trips a NumPy 2 deprecation warning on every call.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

COCO_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                         os.pardir, "samples", "coco.py")




coco = load_sample('coco')

@pytest.fixture
def custom_files(tmp_path):
    """(annotation file, image folder) of the custom dataset."""
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.png", "empty.png"):
        write_png(images / name)
    path = tmp_path / "train.json"
    path.write_text(json.dumps(fixture_json()))
    return str(path), str(images)


def load_custom(custom_files, **kwargs):
    path, images = custom_files
    dataset = coco.CocoDataset()
    result = dataset.load_coco(None, None, annotation_file=path, image_dir=images, **kwargs)
    dataset.prepare()
    return dataset, result


# ---------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------

def test_configs():
    config = coco.CocoConfig()
    assert (config.NAME, config.IMAGES_PER_GPU, config.NUM_CLASSES) == ("coco", 2, 81)
    inference = coco.InferenceConfig()
    assert (inference.BATCH_SIZE, inference.DETECTION_MIN_CONFIDENCE) == (1, 0)
    config.validate()


# ---------------------------------------------------------------------------
# Loading a custom COCO-format dataset
# ---------------------------------------------------------------------------

def test_load_custom_classes_images_and_warnings(custom_files, caplog):
    with caplog.at_level(logging.WARNING):
        dataset, gt = load_custom(custom_files, return_coco=True)
    assert dataset.class_names == ["BG", "dog", "cat"]
    assert dataset.map_source_class_id("coco.3") == DOG_CLASS
    assert dataset.map_source_class_id("coco.7") == CAT_CLASS
    assert dataset.get_source_class_id(CAT_CLASS, "coco") == CAT
    # 404 has no annotations and is left out, as in the original.
    assert [info["id"] for info in dataset.image_info] == [101, 202, 303]
    assert dataset.image_info[0]["path"] == os.path.join(custom_files[1], "a.png")
    assert dataset.image_reference(0) == dataset.image_info[0]["path"]
    # Kept annotations of image 101: the bad ones (5, 7, 8) are gone and 6
    # lost its 2-point part.
    anns = dataset.image_info[0]["annotations"]
    assert [a["id"] for a in anns] == [1, 2, 3, 4, 6, 9]
    assert anns[4]["segmentation"] == [rect_polygon(5, 45, 15, 60)]
    # The returned COCO ground truth holds the same annotations.
    assert sorted(gt.anns) == [1, 2, 3, 4, 6, 9, 10, 11, 12]
    assert gt.anns[1]["area"] == L_SHAPE.sum()                 # filled in
    assert gt.anns[6]["bbox"] == [45.0, 5.0, 15.0, 10.0]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "(category 99: 1): annotation ids 7" in text
    assert "polygons with fewer than 3 points" in text and "annotations 5, 6" in text
    assert "without a usable segmentation" in text and "annotation ids 5, 8" in text
    assert "image ids not in 'images'" in text and "annotation ids 13" in text
    assert "missing.png" in text and "1 of 3 image files are missing" in text


def test_load_mask_values_and_crowds(custom_files):
    dataset, _ = load_custom(custom_files)
    masks, class_ids = dataset.load_mask(0)
    assert masks.dtype == bool and masks.shape == (SIZE, SIZE, 5)
    assert class_ids.dtype == np.int32
    # Annotation 9 (smaller than a pixel) is skipped; the crowd is negative.
    np.testing.assert_array_equal(class_ids, [CAT_CLASS, DOG_CLASS, CAT_CLASS, -DOG_CLASS,
                                              DOG_CLASS])
    for i, expected in enumerate([L_SHAPE, DOG_RLE_MASK, CAT_BLOB, CROWD_MASK, DOG_POLY_MASK]):
        np.testing.assert_array_equal(masks[:, :, i], expected, err_msg=str(i))
    # A crowd RLE of another size covers the whole image.
    masks, class_ids = dataset.load_mask(1)
    np.testing.assert_array_equal(class_ids, [CAT_CLASS, -DOG_CLASS])
    np.testing.assert_array_equal(masks[:, :, 0], B_CAT_MASK)
    assert masks[:, :, 1].all()


def test_load_mask_without_instances_and_other_sources(custom_files):
    dataset, _ = load_custom(custom_files)
    dataset.image_info[1]["annotations"] = [
        {"id": 50, "category_id": CAT, "segmentation": [[3.1, 3.1, 3.2, 3.1, 3.2, 3.2]]}]
    masks, class_ids = dataset.load_mask(1)
    assert masks.shape == (SIZE, SIZE, 0) and class_ids.shape == (0,)
    dataset.add_image("other", image_id=1, path=None)
    dataset.prepare()
    with pytest.warns(UserWarning, match="default load_mask"):
        dataset.load_mask(dataset.num_images - 1)
    assert dataset.image_reference(dataset.num_images - 1) == ""


def test_missing_image_file_error_names_the_file(custom_files):
    dataset, _ = load_custom(custom_files)
    assert dataset.load_image(0).shape == (SIZE, SIZE, 3)
    with pytest.raises(ImageLoadError, match="missing.png"):
        dataset.load_image(2)


def test_class_ids_subset(custom_files):
    dataset, _ = load_custom(custom_files, class_ids=[DOG])
    assert dataset.class_names == ["BG", "dog"]
    assert [info["id"] for info in dataset.image_info] == [101, 202]
    assert {a["category_id"] for info in dataset.image_info for a in info["annotations"]} \
        == {DOG}
    with pytest.raises(ValueError, match="42"):
        load_custom(custom_files, class_ids=[42])


def test_official_layout_paths_and_reference(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val2014").mkdir()
    for name in ("a.png", "b.png", "missing.png"):
        write_png(tmp_path / "val2014" / name)
    (tmp_path / "annotations" / "instances_minival2014.json").write_text(
        json.dumps(fixture_json()))
    dataset = coco.CocoDataset()
    dataset.load_coco(str(tmp_path), "minival", year=2014)
    dataset.prepare()
    assert dataset.image_info[0]["path"] == str(tmp_path / "val2014" / "a.png")
    assert dataset.image_reference(0) == "http://cocodataset.org/#explore?id=101"
    with pytest.raises(FileNotFoundError, match="instances_train2017.json"):
        coco.CocoDataset().load_coco(str(tmp_path), "train", year="2017")


# ---------------------------------------------------------------------------
# Bad files
# ---------------------------------------------------------------------------

def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.json"):
        coco.CocoDataset().load_coco(None, None, annotation_file=str(tmp_path / "nothere.json"))
    path = tmp_path / "a.json"
    path.write_text(json.dumps(fixture_json()))
    with pytest.raises(FileNotFoundError, match="Image folder not found: .*no_images"):
        coco.CocoDataset().load_coco(None, None, annotation_file=str(path),
                                     image_dir=str(tmp_path / "no_images"))


# ---------------------------------------------------------------------------
# annToMask / annToRLE
# ---------------------------------------------------------------------------

def test_ann_to_mask_methods_of_the_original():
    """CocoDataset.annToRLE / annToMask (the original's methods) give the
    mrcnn.cocoformat results for the three segmentation formats."""
    anns = {a["id"]: a for a in fixture_json()["annotations"]}
    dataset = coco.CocoDataset()
    for ann_id, expected in [(1, L_SHAPE), (2, DOG_RLE_MASK), (3, CAT_BLOB)]:
        m = dataset.annToMask(anns[ann_id], SIZE, SIZE)
        assert m.shape == (SIZE, SIZE)
        np.testing.assert_array_equal(m.astype(bool), expected, err_msg=str(ann_id))
        rle = dataset.annToRLE(anns[ann_id], SIZE, SIZE)
        assert maskUtils.area(rle) == expected.sum()
    # The reference module's evaluation names are importable from the sample.
    assert coco.build_coco_results is cocoformat.build_coco_results
    assert coco.evaluate_coco is cocoformat.evaluate_coco
    assert coco.CocoFormatError is cocoformat.CocoFormatError


# ---------------------------------------------------------------------------
# Downloads
# ---------------------------------------------------------------------------

def test_auto_download_from_urls_and_offline_error(tmp_path, monkeypatch):
    server = tmp_path / "server"
    server.mkdir()
    with zipfile.ZipFile(server / "val2014.zip", "w") as z:
        z.writestr("val2014/a.png", b"png")
    with zipfile.ZipFile(server / "minival.zip", "w") as z:
        z.writestr("instances_minival2014.json", json.dumps(fixture_json()))
    monkeypatch.setattr(coco, "COCO_IMAGES_URL",
                        (server / "{subset}{year}.zip").as_uri().replace("%7B", "{")
                        .replace("%7D", "}"))
    monkeypatch.setattr(coco, "COCO_MINIVAL_URLS",
                        {"minival": (server / "minival.zip").as_uri(),
                         "valminusminival": (server / "nothing.zip").as_uri()})
    root = tmp_path / "coco"
    dataset = coco.CocoDataset()
    annotations, images = dataset.auto_download(str(root), "minival", "2014")
    assert annotations == str(root / "annotations" / "instances_minival2014.json")
    assert (root / "val2014" / "a.png").read_bytes() == b"png"
    assert json.loads(open(annotations).read())["categories"][0]["name"] == "cat"
    assert not [p for p in os.listdir(root) if p.startswith(".") or p.endswith(".part")]

    # Offline: names the URL, where to put the file, and leaves nothing behind.
    with pytest.raises(coco.CocoDownloadError) as e:
        dataset.auto_download(str(root), "valminusminival", "2014")
    message = str(e.value)
    assert "nothing.zip" in message
    assert str(root / "instances_valminusminival2014.json.zip") in message
    assert not (root / "instances_valminusminival2014.json.zip").exists()
    assert not [p for p in os.listdir(root) if p.endswith(".part")]
    with pytest.raises(ValueError, match="2014 only"):
        dataset.auto_download(str(root), "minival", "2017")


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def test_download_is_a_flag():
    parser = coco.build_parser()
    args = parser.parse_args(["train", "--dataset", "d", "--model", "none", "--download"])
    assert args.download is True
    args = parser.parse_args(["evaluate", "--dataset", "d", "--model", "none"])
    assert args.download is False
    assert (args.limit, args.eval_type, args.year) == (500, "both", "2014")
    assert (args.epochs_heads, args.epochs_4plus, args.epochs_all) == (40, 120, 160)
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--dataset", "d", "--model", "none", "--download", "False"])


def test_cli_argument_errors(tmp_path, capsys):
    cases = [
        (["evaluate", "--dataset", str(tmp_path), "--model", str(tmp_path / "w.h5")],
         "--model: Weights file " + str(tmp_path / "w.h5") + " not found"),
        (["train", "--dataset", str(tmp_path / "nowhere"), "--model", "none"],
         "COCO dataset directory not found: " + str(tmp_path / "nowhere")),
        (["train", "--model", "none"], "give --dataset"),
        (["train", "--annotations", str(tmp_path / "x.json"), "--model", "none"],
         "needs --annotations and --val-annotations"),
        (["evaluate", "--annotations", str(tmp_path / "x.json"), "--model", "none"],
         "annotations file not found"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as e:
            coco.main(argv)
        assert e.value.code == 2
        assert message in capsys.readouterr().err, argv


def test_cli_dataset_error_is_reported(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{")
    with pytest.raises(SystemExit) as e:
        coco.main(["evaluate", "--annotations", str(path), "--model", "none"])
    assert "broken.json" in str(e.value) and "not valid JSON" in str(e.value)


def test_cli_coco_weights_offline(custom_files, tmp_path, monkeypatch):
    import keras

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    target = tmp_path / "weights" / "mask_rcnn_coco.h5"
    monkeypatch.setattr(coco, "COCO_MODEL_PATH", str(target))
    path, images = custom_files
    with pytest.raises(SystemExit) as e:
        coco.main(["evaluate", "--annotations", path, "--images", images, "--model", "coco",
                   "--logs", str(tmp_path / "logs")])
    message = str(e.value)
    assert "mask_rcnn_coco.h5" in message and "github.com/matterport" in message
    assert str(target) in message and "no network" in message
    assert not target.exists()


class RecordingModel:
    """Stands in for MaskRCNN in the command line: records weights and the
    train() calls instead of training."""
    instances = []

    def __init__(self, mode, config, model_dir):
        self.mode, self.config, self.model_dir = mode, config, model_dir
        self.epoch, self.log_dir = 0, os.path.join(model_dir, "run")
        self.loaded, self.trained, self.callbacks = [], [], []
        RecordingModel.instances.append(self)

    def load_weights(self, filepath, by_name=False, exclude=None):
        self.loaded.append((filepath, by_name, exclude))

    def train(self, train_dataset, val_dataset, learning_rate, epochs, layers,
              augmentation=None, custom_callbacks=None, verbose=1):
        self.trained.append((learning_rate, epochs, layers, augmentation,
                             train_dataset.num_images, val_dataset.num_images))
        self.callbacks.append(custom_callbacks)
        self.epoch = epochs


@pytest.fixture
def recording(monkeypatch):
    import mrcnn.model  # noqa: F401  (registers "mask_rcnn")
    from mrcnn import modelbase
    RecordingModel.instances = []
    # The command line builds modellib.create_model(mode, config, model_dir).
    monkeypatch.setitem(modelbase.MODEL_REGISTRY, "mask_rcnn", RecordingModel)
    return RecordingModel.instances


def custom_train_argv(custom_files, tmp_path, *extra):
    path, images = custom_files
    return ["train", "--annotations", path, "--images", images, "--val-annotations", path,
            "--val-images", images, "--logs", str(tmp_path / "logs")] + list(extra)


def test_cli_train_schedule_and_weights(custom_files, tmp_path, monkeypatch, recording):
    import albumentations

    weights = tmp_path / "mask_rcnn_coco.h5"
    weights.write_bytes(b"")
    monkeypatch.setattr(coco, "COCO_MODEL_PATH", str(weights))
    summary = coco.main(custom_train_argv(custom_files, tmp_path, "--model", "coco",
                                          "--steps-per-epoch", "3", "--validation-steps", "2"))
    model, = recording
    assert model.mode == "training" and isinstance(model.config, coco.CocoConfig)
    # NUM_CLASSES from the file's two categories; COCO weights without the
    # class-specific layers.
    assert model.config.NUM_CLASSES == 3
    assert (model.config.STEPS_PER_EPOCH, model.config.VALIDATION_STEPS) == (3, 2)
    assert model.loaded == [(str(weights), True, COCO_CLASS_SPECIFIC_LAYERS)]
    lr = model.config.LEARNING_RATE
    assert [t[:3] for t in model.trained] == [(lr, 40, "heads"), (lr, 120, "4+"),
                                              (lr / 10, 160, "all")]
    for *_, augmentation, train_images, val_images in model.trained:
        assert isinstance(augmentation, albumentations.HorizontalFlip)
        assert augmentation.p == 0.5
        assert (train_images, val_images) == (3, 3)
    assert summary["epochs"] == 160 and summary["weights"] == str(weights)

    # Short schedule, other weights.
    recording.clear()
    coco.main(custom_train_argv(custom_files, tmp_path, "--model", "none", "--epochs-heads",
                                "1", "--epochs-4plus", "1", "--epochs-all", "2"))
    model, = recording
    assert model.loaded == []
    assert [t[1:3] for t in model.trained] == [(1, "heads"), (2, "all")]
    recording.clear()
    checkpoint = tmp_path / "logs" / "coco20240101T0000" / "mask_rcnn_coco_0007.h5"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"")
    coco.main(custom_train_argv(custom_files, tmp_path, "--model", "last"))
    assert recording[0].loaded == [(str(checkpoint), True, None)]
    recording.clear()
    monkeypatch.setattr(pretrained, "get_imagenet_weights", lambda backbone: backbone + ".h5")
    coco.main(custom_train_argv(custom_files, tmp_path, "--model", "imagenet"))
    assert recording[0].loaded == [("resnet101.h5", True, None)]


def test_cli_configuration_flags(custom_files, tmp_path, recording, capsys):
    from mrcnn.training import TimeBudget
    coco.main(custom_train_argv(custom_files, tmp_path, "--model", "none",
                                "--backbone", "resnet50", "--image-size", "256",
                                "--images-per-gpu", "4", "--learning-rate", "0.005",
                                "--minutes", "2", "--arch", "mask_rcnn"))
    model, = recording
    config = model.config
    assert (config.BACKBONE, config.IMAGE_MIN_DIM, config.IMAGE_MAX_DIM) == ("resnet50", 256, 256)
    assert (config.IMAGES_PER_GPU, config.LEARNING_RATE, config.MODEL) == (4, 0.005, "mask_rcnn")
    assert config.NUM_CLASSES == 3
    assert [t[:3] for t in model.trained] == [(0.005, 40, "heads"), (0.005, 120, "4+"),
                                              (0.0005, 160, "all")]
    # --minutes: one budget for the schedule, shared by the stages in
    # proportion to their epochs (40, 120, 160 of 160).
    budgets = [callbacks[-1] for callbacks in model.callbacks]
    assert all(isinstance(b, TimeBudget) for b in budgets)
    assert [b.seconds for b in budgets] == [30.0, 90.0, 120.0]
    assert len({b.given_start for b in budgets}) == 1
    assert "--backbone resnet50 < --image-size 256" in capsys.readouterr().out

    # No flag: exactly CocoConfig (with the dataset's class count), no budget.
    recording.clear()
    coco.main(custom_train_argv(custom_files, tmp_path, "--model", "none"))
    expected = coco.CocoConfig()
    expected.NUM_CLASSES = 3
    assert recording[0].config.to_dict() == expected.to_dict()
    assert recording[0].callbacks == [[], [], []]


def test_cli_resume_uses_the_recorded_configuration(custom_files, tmp_path, monkeypatch,
                                                     recording, capsys):
    """train --model last continues with the configuration it was trained
    with; GPU_COUNT stays the machine's, flags and the dataset win."""
    recorded = coco.CocoConfig()
    recorded.BACKBONE, recorded.IMAGE_MIN_DIM, recorded.IMAGE_MAX_DIM = "resnet18", 128, 128
    recorded.TOP_DOWN_PYRAMID_SIZE, recorded.STEPS_PER_EPOCH = 64, 7
    recorded.NUM_CLASSES, recorded.GPU_COUNT = 5, 4
    checkpoint = tmp_path / "logs" / "coco20240101T0000" / "mask_rcnn_coco_0003.h5"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"")
    config_json = checkpoint.parent / "config.json"
    recorded.to_json(str(config_json))
    coco.main(custom_train_argv(custom_files, tmp_path, "--model", "last",
                                "--images-per-gpu", "3"))
    model, = recording
    config = model.config
    assert model.loaded == [(str(checkpoint), True, None)]
    assert (config.BACKBONE, config.IMAGE_MAX_DIM, config.TOP_DOWN_PYRAMID_SIZE,
            config.STEPS_PER_EPOCH) == ("resnet18", 128, 64, 7)
    assert (config.GPU_COUNT, config.IMAGES_PER_GPU, config.NUM_CLASSES) == (1, 3, 3)
    out = capsys.readouterr().out
    assert "Using the configuration saved with the checkpoint: {}".format(config_json) in out

    # --model coco is not a checkpoint of ours: a config.json beside it is ignored.
    recording.clear()
    coco_weights = checkpoint.parent / "mask_rcnn_coco.h5"
    coco_weights.write_bytes(b"")
    monkeypatch.setattr(coco, "COCO_MODEL_PATH", str(coco_weights))
    coco.main(custom_train_argv(custom_files, tmp_path, "--model", "coco"))
    assert recording[0].config.BACKBONE == "resnet101"


def test_cli_configuration_errors(custom_files, tmp_path, capsys):
    def error(*extra):
        with pytest.raises(SystemExit) as e:
            coco.main(custom_train_argv(custom_files, tmp_path, "--model", "none", *extra))
        assert e.value.code == 2
        return capsys.readouterr().err

    err = error("--arch", "unknown")
    assert re.search(r"argument --arch unknown: MODEL='unknown' is unknown; available: .*mask_rcnn", err)
    assert "Traceback" not in err
    assert "IMAGE_MAX_DIM=100 must be a positive multiple of 64" in error("--image-size", "100")
    assert "invalid choice: 'resnet152'" in error("--backbone", "resnet152")
    assert "--minutes: must be a positive number" in error("--minutes", "0")
    assert "--learning-rate: invalid number value: 'fast'" in error("--learning-rate", "fast")
    assert "--config file not found" in error("--config", str(tmp_path / "none.json"))


def small_config():
    """A non-default COCO configuration: ResNet-18, 64 px, narrow heads."""
    config = coco.CocoConfig()
    config.BACKBONE = "resnet18"
    config.IMAGE_MIN_DIM = config.IMAGE_MAX_DIM = 64
    config.NUM_CLASSES = 3
    config.RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    config.TOP_DOWN_PYRAMID_SIZE = 32
    config.RPN_CONV_CHANNELS = 32
    config.FPN_CLASSIF_FC_LAYERS_SIZE = 64
    config.MASK_HEAD_CHANNELS = 16
    config.POST_NMS_ROIS_INFERENCE = 64
    config.DETECTION_MAX_INSTANCES = 10
    return config


def test_cli_evaluate_uses_the_checkpoint_configuration(tmp_path, monkeypatch, capsys):
    """evaluate --model PATH on a checkpoint trained with another
    configuration builds the model from the config.json beside it (the
    default InferenceConfig is ResNet-101 at 1024 px and cannot load it)."""
    from mrcnn import model as modellib
    config = small_config()
    run = tmp_path / "logs" / "coco20240101T0000"
    run.mkdir(parents=True)
    checkpoint = str(run / "mask_rcnn_coco_0001.h5")
    modellib.MaskRCNN("inference", config, str(tmp_path / "logs")).save_weights(checkpoint)
    config.to_json(str(run / "config.json"))

    built = []
    create_model = modellib.create_model

    def spy(mode, config, model_dir):
        built.append(config)
        return create_model(mode, config, model_dir)

    monkeypatch.setattr(modellib, "create_model", spy)
    argv = ["evaluate", "--annotations", write_eval_set(tmp_path), "--model", checkpoint,
            "--logs", str(tmp_path / "logs"), "--limit", "0"]
    summary = coco.main(argv)
    assert summary["images"] == 2 and summary["weights"] == checkpoint
    out = capsys.readouterr().out
    assert "Using the configuration saved with the checkpoint: {}".format(
        run / "config.json") in out
    used, = built
    assert (used.BACKBONE, used.IMAGE_MAX_DIM, used.TOP_DOWN_PYRAMID_SIZE,
            used.MASK_HEAD_CHANNELS) == ("resnet18", 64, 32, 16)
    # What evaluation needs stays InferenceConfig's.
    assert (used.GPU_COUNT, used.IMAGES_PER_GPU, used.DETECTION_MIN_CONFIDENCE) == (1, 1, 0)

    # Without the saved configuration the same checkpoint does not fit
    # (flags for the backbone and size alone leave the default head sizes).
    os.rename(str(run / "config.json"), str(tmp_path / "saved.json"))
    with pytest.raises(SystemExit) as e:
        coco.main(argv + ["--backbone", "resnet18", "--image-size", "64"])
    assert "do not fit" in str(e.value)
    assert "Using the configuration saved" not in capsys.readouterr().out


def test_cli_evaluate_end_to_end(tmp_path):
    """A real (tiny, untrained) Mask R-CNN through evaluate --model none."""
    from tiny_models import TinyConfig

    class TinyCoco(TinyConfig):
        NAME = "coco"
        DETECTION_MIN_CONFIDENCE = 0

    summary = coco.main(["evaluate", "--annotations", write_eval_set(tmp_path),
                         "--model", "none", "--logs", str(tmp_path / "logs"), "--limit", "0"],
                        config=TinyCoco())
    assert summary["images"] == 2 and summary["weights"] == "none"
    for eval_type in ("bbox", "segm"):
        assert set(summary[eval_type]) == set(coco.STATS_NAMES)
        assert -1 <= summary[eval_type]["AP"] <= 1


@pytest.mark.parametrize("arch, settings", [
    ("yolact", dict(IMAGE_MIN_DIM=80, IMAGE_MAX_DIM=80, YOLACT_NUM_PROTOTYPES=4,
                    YOLACT_HEAD_CHANNELS=8)),
    ("centernet", dict(IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=64, CENTERNET_HEAD_CHANNELS=8,
                       CENTERNET_GROUPS=4, CENTERNET_TOWER_CONVS=1)),
])
def test_cli_evaluate_end_to_end_with_the_other_modes(tmp_path, arch, settings):
    """--arch yolact / centernet: a real (tiny, untrained) model of the mode
    through evaluate; its boxes and masks are scored."""
    from tiny_models import TinyConfig

    config = type("TinyCoco", (TinyConfig,), dict(NAME="coco", DETECTION_MIN_CONFIDENCE=0,
                                                  **settings))()
    annotations = write_eval_set(tmp_path)
    summary = coco.main(["evaluate", "--annotations", annotations, "--model", "none",
                         "--logs", str(tmp_path / "logs"), "--limit", "0", "--arch", arch],
                        config=config)
    assert summary["images"] == 2 and summary["weights"] == "none"
    for eval_type in ("bbox", "segm"):
        assert set(summary[eval_type]) == set(coco.STATS_NAMES)
        assert -1 <= summary[eval_type]["AP"] <= 1
    # Only Mask R-CNN has released COCO weights: --model coco says so.
    with pytest.raises(SystemExit, match="no released COCO weights for MODEL='{}'".format(arch)):
        coco.main(["evaluate", "--annotations", annotations, "--model", "coco",
                   "--logs", str(tmp_path / "logs"), "--arch", arch], config=config)


def test_runs_as_a_script():
    """The file runs as a script with the installed package."""
    result = subprocess.run([sys.executable, COCO_PATH, "train", "--model", "none"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "give --dataset" in result.stderr


def test_cli_train_eval_every_logs_coco_figures(tmp_path, capsys):
    """train --eval-every 1: a real (tiny) model; the COCO figures of each
    epoch reach coco_metrics.csv beside the checkpoints and the output."""
    from tiny_models import TinyConfig

    config = type("TinyCoco", (TinyConfig,), dict(NAME="coco"))()
    annotations = write_eval_set(tmp_path)
    summary = coco.main(["train", "--annotations", annotations, "--val-annotations", annotations,
                         "--model", "none", "--logs", str(tmp_path / "logs"),
                         "--epochs-heads", "1", "--epochs-4plus", "1", "--epochs-all", "2",
                         "--steps-per-epoch", "1", "--validation-steps", "1",
                         "--eval-every", "1", "--eval-type", "bbox", "--limit", "0"],
                        config=config)
    with open(os.path.join(summary["log_dir"], "coco_metrics.csv")) as f:
        lines = f.read().splitlines()
    assert lines[0] == "epoch,bbox_AP,bbox_AP50,bbox_AP75,images,seconds"
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2"]
    assert all(line.split(",")[4] == "2" for line in lines[1:])
    out = capsys.readouterr().out
    assert "Epoch 2: COCO bbox_AP = " in out
    with pytest.raises(SystemExit):
        coco.main(["train", "--annotations", annotations, "--val-annotations", annotations,
                   "--model", "none", "--eval-every", "0"], config=config)
    assert "argument --eval-every: must be a positive integer, got 0" in capsys.readouterr().err
