"""Tests for samples/balloon/balloon.py: BalloonDataset on VIA files (image
sizes, class ids, clipped and dropped regions, missing files), training with
a stand-in model, colour splash on images and videos and the command line's
argument errors, configuration flags and use of the checkpoint's
configuration. The VIA format itself is tested in test_via.py."""
import json
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from mrcnn.weights.pretrained import resolve_weights
from conftest import load_sample
from via_fixtures import (CIRCLE, H, OVERHANG, RECT, TRIANGLE, W, polygon, polygon_raster,
                          region, write_via1)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BALLOON_PATH = os.path.join(ROOT, "samples", "balloon", "balloon.py")




balloon = load_sample('balloon')


# ---------------------------------------------------------------------------
# Writing test datasets
# ---------------------------------------------------------------------------

def write_image(path, seed=0, height=H, width=W):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(image).save(path, quality=95)
    return image


def make_subset(root, subset, entries, writer=write_via1):
    subset_dir = os.path.join(root, subset)
    os.makedirs(subset_dir, exist_ok=True)
    for i, (filename, _) in enumerate(entries):
        write_image(os.path.join(subset_dir, filename), seed=i)
    writer(subset_dir, entries)
    return subset_dir


def load(root, subset="train", **kwargs):
    dataset = balloon.BalloonDataset()
    dataset.load_balloon(str(root), subset, **kwargs)
    dataset.prepare()
    return dataset


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

def test_config_values():
    config = balloon.BalloonConfig()
    assert (config.NAME, config.IMAGES_PER_GPU, config.NUM_CLASSES) == ("balloon", 2, 2)
    assert (config.STEPS_PER_EPOCH, config.DETECTION_MIN_CONFIDENCE) == (100, 0.9)
    assert config.validate() is config
    assert balloon.BalloonInferenceConfig().BATCH_SIZE == 1


# ---------------------------------------------------------------------------
# BalloonDataset
# ---------------------------------------------------------------------------

def test_via1_polygons_single_class_and_clipping(tmp_path):
    entries = [("a.jpg", [region(polygon(*TRIANGLE)), region(polygon(*OVERHANG))]),
               ("unannotated.jpg", []),
               ("b.jpg", [region(polygon([2.5, 20.5, 20.5, 2.5], [30.5, 30.5, 47.5, 47.5]))])]
    make_subset(tmp_path, "train", entries)
    dataset = load(tmp_path)

    assert dataset.class_names == ["BG", "balloon"]
    # VIA keeps images without regions; they are skipped as in the original.
    assert [info["id"] for info in dataset.image_info] == ["a.jpg", "b.jpg"]
    info = dataset.image_info[0]
    assert (info["height"], info["width"]) == (H, W)
    assert dataset.image_reference(0) == os.path.join(str(tmp_path), "train", "a.jpg")

    masks, class_ids = dataset.load_mask(0)
    assert masks.dtype == bool and masks.shape == (H, W, 2)
    np.testing.assert_array_equal(class_ids, [1, 1])
    assert class_ids.dtype == np.int32
    np.testing.assert_array_equal(masks[:, :, 0], polygon_raster(*TRIANGLE))
    overhang = polygon_raster(*OVERHANG)
    assert overhang[0].any() and overhang[:, -1].any()  # really clipped at two borders
    np.testing.assert_array_equal(masks[:, :, 1], overhang)
    assert dataset.load_image(0).shape == (H, W, 3)


def test_via1_region_classes_from_name_attribute(tmp_path):
    entries = [("a.png", [region(polygon(*TRIANGLE), name="duck"),
                          region(polygon(*OVERHANG), name="balloon")])]
    make_subset(tmp_path, "train", entries)
    dataset = load(tmp_path)
    assert dataset.class_attribute == "name"
    assert dataset.class_names == ["BG", "balloon", "duck"]  # sorted names
    _, class_ids = dataset.load_mask(0)
    np.testing.assert_array_equal(class_ids, [2, 1])


def test_val_gets_the_class_ids_of_train(tmp_path):
    make_subset(tmp_path, "train", [("a.png", [region(polygon(*TRIANGLE), label="cat"),
                                               region(CIRCLE, label="dog")])])
    make_subset(tmp_path, "val", [("b.png", [region(CIRCLE, label="dog")])])
    dataset_train, dataset_val = balloon.load_datasets(str(tmp_path))
    assert dataset_val.class_names == dataset_train.class_names == ["BG", "cat", "dog"]
    np.testing.assert_array_equal(dataset_val.load_mask(0)[1], [2])
    # A class that train does not know is an error.
    make_subset(tmp_path, "val", [("b.png", [region(CIRCLE, label="emu")])])
    with pytest.raises(ValueError, match="emu"):
        balloon.load_datasets(str(tmp_path))


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------

def test_missing_subsets_and_files(tmp_path):
    make_subset(tmp_path, "train", [("a.png", [region({"name": "circle", "cx": 3})])])
    with pytest.raises(ValueError, match="circle without cy, r"):
        load(tmp_path)
    with pytest.raises(FileNotFoundError, match="val"):
        load(tmp_path, "val")
    with pytest.raises(ValueError, match="subset"):
        load(tmp_path, "test")
    # An image listed in the JSON but missing on disk.
    subset_dir = make_subset(tmp_path, "train", [("a.png", [region(CIRCLE)])])
    os.remove(os.path.join(subset_dir, "a.png"))
    with pytest.raises(FileNotFoundError, match="a.png"):
        load(tmp_path)
    # Not VIA annotations.
    with open(os.path.join(subset_dir, "via_region_data.json"), "w") as f:
        json.dump({"images": [1, 2]}, f)
    with pytest.raises(ValueError, match="filename"):
        load(tmp_path)


def test_shape_entirely_outside_the_image_gives_no_mask(tmp_path):
    make_subset(tmp_path, "train", [("a.png", [region({"name": "circle", "cx": 500,
                                                       "cy": 500, "r": 3}),
                                               region(CIRCLE)])])
    masks, class_ids = load(tmp_path).load_mask(0)
    assert masks.shape == (H, W, 1) and class_ids.shape == (1,)


# ---------------------------------------------------------------------------
# Training (a stand-in model records the call)
# ---------------------------------------------------------------------------

class RecordingModel:
    def __init__(self, config):
        self.config = config
        self.calls = []

    def train(self, train_dataset, val_dataset, **kwargs):
        self.calls.append((train_dataset, val_dataset, kwargs))


def test_train_trains_heads_and_checks_class_count(tmp_path):
    make_subset(tmp_path, "train", [("a.png", [region(CIRCLE)])])
    make_subset(tmp_path, "val", [("b.png", [region(polygon(*TRIANGLE))])])
    model = RecordingModel(balloon.BalloonConfig())
    balloon.train(model, str(tmp_path))
    (train_set, val_set, kwargs), = model.calls
    assert kwargs["layers"] == "heads" and kwargs["epochs"] == 30
    assert kwargs["learning_rate"] == model.config.LEARNING_RATE
    assert [i["id"] for i in train_set.image_info] == ["a.png"]
    assert [i["id"] for i in val_set.image_info] == ["b.png"]

    config = balloon.BalloonConfig()
    config.NUM_CLASSES = 3
    with pytest.raises(ValueError, match="NUM_CLASSES = 2"):
        balloon.train(RecordingModel(config), str(tmp_path))


def test_default_augmentation_moves_masks_with_the_image(tmp_path):
    from mrcnn.data import load_image_gt

    class SmallConfig(balloon.BalloonConfig):
        IMAGE_MIN_DIM = 64
        IMAGE_MAX_DIM = 64

    make_subset(tmp_path, "train", [("a.png", [region(RECT), region(CIRCLE)])])
    dataset = load(tmp_path)
    _, _, class_ids, boxes, masks = load_image_gt(
        dataset, SmallConfig(), 0, augmentation=balloon.default_augmentation())
    assert masks.shape == (64, 64, 2) and class_ids.tolist() == [1, 1]
    areas = masks.sum(axis=(0, 1))
    assert sorted(areas.tolist()) == sorted(dataset.load_mask(0)[0].sum(axis=(0, 1)).tolist())


# ---------------------------------------------------------------------------
# Colour splash
# ---------------------------------------------------------------------------

def exact_gray(pixel):
    """Gray value of one RGB pixel, in exact integer arithmetic, rounded half up."""
    r, g, b = (int(v) for v in pixel)
    return (2125 * r + 7154 * g + 721 * b + 5000) // 10000


def test_color_splash_against_pixelwise_computation():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(12, 10, 3), dtype=np.uint8)
    mask = np.zeros((12, 10, 2), bool)
    mask[2:5, 1:4, 0] = True
    mask[4:9, 3:8, 1] = True
    splash = balloon.color_splash(image, mask)
    assert splash.dtype == np.uint8 and splash.shape == image.shape
    for r in range(12):
        for c in range(10):
            if mask[r, c].any():
                assert tuple(splash[r, c]) == tuple(image[r, c])
            else:
                assert tuple(splash[r, c]) == (exact_gray(image[r, c]),) * 3

    # Within one level of skimage's rgb2gray (what the original used).
    import skimage.color
    gray = skimage.color.rgb2gray(image) * 255
    outside = ~mask.any(axis=-1)
    assert np.abs(splash[outside][:, 0] - gray[outside]).max() <= 1.0

    # No instances: all gray; a 2-D mask works; a wrong-size mask does not.
    empty = balloon.color_splash(image, np.zeros((12, 10, 0), bool))
    np.testing.assert_array_equal(empty[:, :, 0], empty[:, :, 2])
    np.testing.assert_array_equal(balloon.color_splash(image, mask[:, :, 0]),
                                  balloon.color_splash(image, mask[:, :, :1]))
    with pytest.raises(ValueError, match="mask shape"):
        balloon.color_splash(image, np.zeros((5, 5, 1), bool))


class FakeModel:
    """Stands in for an inference MaskRCNN: one mask covering the left
    half of every image; records the images it was given."""

    def __init__(self):
        self.images = []

    @staticmethod
    def mask_for(shape):
        mask = np.zeros(shape[:2] + (1,), bool)
        mask[:, :shape[1] // 2, 0] = True
        return mask

    def detect(self, images, verbose=0):
        self.images.extend(images)
        return [{"rois": np.array([[0, 0, im.shape[0], im.shape[1] // 2]], np.int32),
                 "class_ids": np.array([1], np.int32), "scores": np.array([0.99], np.float32),
                 "masks": self.mask_for(im.shape)} for im in images]


def test_splash_image(tmp_path):
    path = str(tmp_path / "photo.png")
    image = write_image(path, seed=5)
    model = FakeModel()
    output = balloon.detect_and_color_splash(model, image_path=path, verbose=0)
    assert os.path.dirname(output) == str(tmp_path)
    assert os.path.basename(output).startswith("photo_splash_") and output.endswith(".png")
    written = np.asarray(Image.open(output))
    np.testing.assert_array_equal(written, balloon.color_splash(image, FakeModel.mask_for(
        image.shape)))
    # --output is honoured; an RGBA input reaches the model as RGB.
    rgba_path = str(tmp_path / "rgba.png")
    Image.fromarray(np.dstack([image, np.full((H, W), 200, np.uint8)])).save(rgba_path)
    target = str(tmp_path / "out.png")
    assert balloon.detect_and_color_splash(model, image_path=rgba_path, output=target,
                                           verbose=0) == target
    assert model.images[-1].shape == (H, W, 3)
    np.testing.assert_array_equal(np.asarray(Image.open(target)), written)


def write_video(path, frames, fps=5.0):
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), fps,
                             (frames[0].shape[1], frames[0].shape[0]))
    assert writer.isOpened()
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[:, :, ::-1]))  # RGB -> BGR
    writer.release()


def read_video(path):
    capture = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame[:, :, ::-1])  # BGR -> RGB
    capture.release()
    return frames


def test_splash_video(tmp_path):
    # Smooth, saturated frames survive MJPG coding well: red, green, blue.
    frames = []
    for colour in ([220, 30, 30], [30, 200, 40], [40, 50, 210], [220, 30, 30]):
        frame = np.empty((H, W, 3), np.uint8)
        frame[:] = colour
        frames.append(frame)
    path = str(tmp_path / "clip.avi")
    write_video(path, frames)
    decoded = read_video(path)
    assert len(decoded) == 4

    model = FakeModel()
    output = balloon.detect_and_color_splash(model, video_path=path, verbose=0)
    assert os.path.dirname(output) == str(tmp_path) and output.endswith(".avi")
    # The model saw RGB frames: the first is red.
    assert len(model.images) == 4
    first = model.images[0].astype(int)
    assert first[..., 0].mean() > first[..., 2].mean() + 100

    result = read_video(output)
    assert len(result) == 4 and result[0].shape == (H, W, 3)
    mask = FakeModel.mask_for((H, W))
    for got, source in zip(result, decoded):
        expected = balloon.color_splash(source, mask).astype(int)
        # MJPG is lossy: compare region means, away from the seam.
        left, right = got[:, :W // 2 - 4].astype(int), got[:, W // 2 + 4:].astype(int)
        assert np.abs(left.mean(axis=(0, 1)) - expected[:, :W // 2 - 4].mean(axis=(0, 1))).max() < 8
        assert np.abs(right.mean(axis=(0, 1)) - expected[:, W // 2 + 4:].mean(axis=(0, 1))).max() < 8
        assert np.ptp(right.mean(axis=(0, 1))) < 6      # gray half: R = G = B
        assert np.ptp(left.mean(axis=(0, 1))) > 100     # colour half keeps its colour

    target = str(tmp_path / "named.avi")
    assert balloon.detect_and_color_splash(model, video_path=path, output=target,
                                           verbose=0) == target
    assert len(read_video(target)) == 4


def test_splash_video_shows_its_progress(tmp_path, capsys):
    path = str(tmp_path / "clip.avi")
    write_video(path, [np.full((H, W, 3), v, np.uint8) for v in (10, 80, 160)])
    balloon.detect_and_color_splash(FakeModel(), video_path=path,
                                    output=str(tmp_path / "o.avi"))
    out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)
    # Keras' Progbar over the container's 3 frames, then the summary.
    assert re.search(r"3/3 .*/frame", out), out
    assert "3 frames" in out and "Saved to" in out


def test_splash_input_errors(tmp_path):
    model = FakeModel()
    with pytest.raises(ValueError, match="exactly one"):
        balloon.detect_and_color_splash(model)
    with pytest.raises(ValueError, match="exactly one"):
        balloon.detect_and_color_splash(model, image_path="a.png", video_path="b.avi")
    with pytest.raises(FileNotFoundError):
        balloon.detect_and_color_splash(model, image_path=str(tmp_path / "missing.png"))
    not_a_video = tmp_path / "noise.avi"
    not_a_video.write_bytes(b"not a video at all")
    with pytest.raises(IOError, match="noise.avi"):
        balloon.detect_and_color_splash(model, video_path=str(not_a_video), verbose=0)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def cli_error(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        balloon.main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_cli_argument_errors(tmp_path, capsys):
    assert "--image PATH or --video PATH" in cli_error(capsys, ["splash"])
    image = str(tmp_path / "x.png")
    write_image(image)
    assert "one of them" in cli_error(capsys, ["splash", "--image", image, "--video", image])
    assert "not found" in cli_error(capsys, ["splash", "--image", str(tmp_path / "no.png")])
    assert "needs --dataset" in cli_error(capsys, ["train", "--weights", "none"])
    missing = str(tmp_path / "nowhere")
    assert "is not a directory" in cli_error(capsys, ["train", "--dataset", missing,
                                                      "--weights", "none"])
    assert "needs --weights" in cli_error(capsys, ["train", "--dataset", str(tmp_path)])
    # A dataset folder without train/ and val/.
    err = cli_error(capsys, ["train", "--dataset", str(tmp_path), "--weights", "none"])
    assert "train" in err and "not found" in err
    assert "invalid choice" in cli_error(capsys, ["evaluate"])


def test_cli_weights_errors(tmp_path, capsys):
    image = str(tmp_path / "x.png")
    write_image(image)
    err = cli_error(capsys, ["splash", "--image", image, "--weights",
                             str(tmp_path / "missing.h5")])
    assert "missing.h5 not found" in err
    err = cli_error(capsys, ["splash", "--image", image, "--logs", str(tmp_path / "logs")])
    assert "Could not find model directory" in err


def test_resolve_weights_and_recorded_class_count(tmp_path):
    from mrcnn import cli
    config = balloon.BalloonConfig()
    assert resolve_weights("none", config, str(tmp_path)) == (None, None)
    weights = tmp_path / "run" / "w.h5"
    weights.parent.mkdir()
    weights.write_bytes(b"")
    assert resolve_weights(str(weights), config, str(tmp_path)) == (str(weights), None)
    assert cli.checkpoint_config_path(str(weights), str(weights)) is None
    (weights.parent / "config.json").write_text(json.dumps(
        {"NUM_CLASSES": 4, "IMAGES_PER_GPU": 2, "GPU_COUNT": 2}))
    recorded = cli.checkpoint_config_path(str(weights), str(weights))
    assert recorded == str(weights.parent / "config.json")
    # splash: the class count comes from the checkpoint; one image per batch
    # and the machine's GPU count stay the command's.
    keep = cli.command_keys(balloon.BalloonInferenceConfig, balloon.BalloonConfig)
    splash_config, _ = cli.build_config(balloon.BalloonInferenceConfig(),
                                        checkpoint_config=recorded, keep=keep)
    assert (splash_config.NUM_CLASSES, splash_config.IMAGES_PER_GPU,
            splash_config.GPU_COUNT) == (4, 1, 1)
    # "coco" with the file in place: no download, class-specific layers left out.
    path, exclude = resolve_weights("COCO", config, str(tmp_path),
                                            coco_path=str(weights))
    assert path == str(weights) and "mrcnn_class_logits" in exclude


def test_runs_as_a_script():
    """The file runs as a script with the installed package (no sys.path edits)."""
    result = subprocess.run([sys.executable, BALLOON_PATH, "splash"], capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2
    assert "--image PATH or --video PATH" in result.stderr


# ---------------------------------------------------------------------------
# Command line: configuration flags and the checkpoint's configuration
# ---------------------------------------------------------------------------

class BuiltModel(FakeModel):
    """Stands in for modellib.create_model's result in the command line."""
    built = []

    def __init__(self, mode, config, model_dir):
        super().__init__()
        self.mode, self.config, self.epoch = mode, config, 0
        self.loaded, self.calls = [], []
        BuiltModel.built.append(self)

    def load_weights(self, filepath, by_name=False, exclude=None):
        self.loaded.append(filepath)

    def train(self, train_dataset, val_dataset, **kwargs):
        self.calls.append(kwargs)


@pytest.fixture
def built(monkeypatch):
    import mrcnn.model  # noqa: F401  (registers "mask_rcnn")
    from mrcnn import modelbase
    BuiltModel.built = []
    monkeypatch.setitem(modelbase.MODEL_REGISTRY, "mask_rcnn", BuiltModel)
    return BuiltModel.built


def test_cli_train_flags_and_time_budget(tmp_path, built):
    from mrcnn.training import TimeBudget
    root = tmp_path / "data"
    make_subset(root, "train", [("a.png", [region(CIRCLE)])])
    make_subset(root, "val", [("b.png", [region(CIRCLE)])])
    argv = ["train", "--dataset", str(root), "--weights", "none", "--logs", str(tmp_path)]
    balloon.main(argv + ["--backbone", "resnet34", "--image-size", "128",
                         "--images-per-gpu", "1", "--learning-rate", "0.01", "--minutes", "2"])
    model, = built
    config = model.config
    assert (config.BACKBONE, config.IMAGE_MIN_DIM, config.IMAGE_MAX_DIM) == ("resnet34", 128, 128)
    assert (config.IMAGES_PER_GPU, config.LEARNING_RATE, config.NUM_CLASSES) == (1, 0.01, 2)
    (kwargs,) = model.calls
    assert kwargs["learning_rate"] == 0.01
    (budget,) = kwargs["custom_callbacks"]
    assert isinstance(budget, TimeBudget) and budget.seconds == 120
    # No flag: BalloonConfig as before, no budget.
    built.clear()
    balloon.main(argv)
    assert built[0].config.to_dict() == balloon.BalloonConfig().to_dict()
    assert built[0].calls[0]["custom_callbacks"] == []


def test_cli_splash_uses_the_checkpoint_configuration(tmp_path, built, capsys):
    image = str(tmp_path / "photo.png")
    write_image(image)
    run = tmp_path / "logs" / "balloon20240101T0000"
    run.mkdir(parents=True)
    weights = run / "mask_rcnn_balloon_0003.h5"
    weights.write_bytes(b"")
    recorded = balloon.BalloonConfig()
    recorded.NUM_CLASSES, recorded.BACKBONE, recorded.IMAGE_MAX_DIM = 4, "resnet18", 256
    recorded.IMAGES_PER_GPU = 4
    recorded.to_json(str(run / "config.json"))
    # --weights last (the default) finds it.
    balloon.main(["splash", "--image", image, "--logs", str(tmp_path / "logs")])
    model, = built
    assert model.loaded == [str(weights)] and model.mode == "inference"
    config = model.config
    assert (config.NUM_CLASSES, config.BACKBONE, config.IMAGE_MAX_DIM) == (4, "resnet18", 256)
    assert (config.IMAGES_PER_GPU, config.GPU_COUNT) == (1, 1)     # the command's
    out = capsys.readouterr().out
    assert "Using the configuration saved with the checkpoint: {}".format(
        run / "config.json") in out
    assert "Saved to" in out

    # An unreadable config.json: a clear error naming it; nothing is changed.
    (run / "config.json").write_text('{"NUM_CLASSES": ')
    err = cli_error(capsys, ["splash", "--image", image, "--weights", str(weights)])
    assert str(run / "config.json") in err and "not valid JSON" in err
    assert (run / "config.json").read_text() == '{"NUM_CLASSES": '
