"""Tests for samples/nucleus/nucleus.py: the Data Science Bowl folder layout
and the train/val split, mask loading, Kaggle run-length encoding (against
hand-worked strings), overlap handling in mask_to_rle, the training
schedule, detect() with a stand-in model, the command line's argument
errors, configuration flags and use of the checkpoint's configuration, and a
few images of the real data in ../shared/data/nucleus."""
import csv
import os

import numpy as np
import pytest
from PIL import Image

from mrcnn import utils
from conftest import load_sample

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUCLEUS_PATH = os.path.join(ROOT, "samples", "nucleus", "nucleus.py")
REAL_DATA = os.path.join(ROOT, "..", "shared", "data", "nucleus")




nucleus = load_sample('nucleus')

H, W = 24, 32
VAL_A, VAL_B = nucleus.VAL_IMAGE_IDS[3], nucleus.VAL_IMAGE_IDS[0]
TRAIN_ID = "00ab" * 16


# ---------------------------------------------------------------------------
# A tiny dataset in the competition's layout
# ---------------------------------------------------------------------------

def box_mask(y1, x1, y2, x2):
    mask = np.zeros((H, W), bool)
    mask[y1:y2, x1:x2] = True
    return mask


MASKS = {
    TRAIN_ID: [box_mask(2, 3, 8, 10), box_mask(12, 15, 20, 30)],
    VAL_A: [box_mask(0, 0, 5, 5), box_mask(4, 4, 10, 12), box_mask(18, 20, 24, 32)],
    VAL_B: [box_mask(6, 6, 9, 9)],
}


def write_sample(stage_dir, image_id, image, masks, empty_mask=False):
    os.makedirs(os.path.join(stage_dir, image_id, "images"))
    Image.fromarray(image).save(os.path.join(stage_dir, image_id, "images", image_id + ".png"))
    if masks is None:
        return
    mask_dir = os.path.join(stage_dir, image_id, "masks")
    os.makedirs(mask_dir)
    for i, mask in enumerate(masks):
        # Names whose sorted order is the list order; the second mask stores
        # 0/1 instead of 0/255 (any nonzero value is inside).
        Image.fromarray(mask.astype(np.uint8) * (1 if i == 1 else 255)).save(
            os.path.join(mask_dir, "m{:02d}.png".format(i)))
    if empty_mask:
        Image.fromarray(np.zeros((H, W), np.uint8)).save(os.path.join(mask_dir, "zz.png"))


@pytest.fixture
def dsb(tmp_path):
    """stage1_train with one training and two validation images (one RGBA,
    one grayscale, one with an empty mask file), a stray folder, and
    stage1_test with one image without masks."""
    rng = np.random.default_rng(0)
    images = {}
    train_dir = str(tmp_path / "stage1_train")
    for k, image_id in enumerate([TRAIN_ID, VAL_A, VAL_B]):
        if k == 0:   # RGBA, as many of the competition's images are
            image = rng.integers(0, 256, size=(H, W, 4), dtype=np.uint8)
        elif k == 1:
            image = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
        else:        # grayscale
            image = rng.integers(0, 256, size=(H, W), dtype=np.uint8)
        images[image_id] = image
        write_sample(train_dir, image_id, image, MASKS[image_id], empty_mask=(k == 1))
    os.makedirs(os.path.join(train_dir, "not_an_image", "images"))
    write_sample(str(tmp_path / "stage1_test"), "7e57" * 16,
                 rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8), None)
    return str(tmp_path), images


def load(root, subset):
    dataset = nucleus.NucleusDataset()
    dataset.load_nucleus(root, subset)
    dataset.prepare()
    return dataset


# ---------------------------------------------------------------------------
# Configuration and the validation ids
# ---------------------------------------------------------------------------

def test_configs():
    config = nucleus.NucleusConfig()
    assert (config.NAME, config.NUM_CLASSES, config.IMAGES_PER_GPU, config.BACKBONE) == \
        ("nucleus", 2, 6, "resnet50")
    assert (config.IMAGE_RESIZE_MODE, config.IMAGE_MIN_DIM, config.IMAGE_MAX_DIM,
            config.IMAGE_MIN_SCALE) == ("crop", 512, 512, 2.0)
    assert list(config.IMAGE_SHAPE) == [512, 512, 3]
    assert (config.STEPS_PER_EPOCH, config.VALIDATION_STEPS) == (105, 4)
    assert (config.DETECTION_MIN_CONFIDENCE, config.RPN_NMS_THRESHOLD) == (0, 0.9)
    assert (config.MAX_GT_INSTANCES, config.DETECTION_MAX_INSTANCES) == (200, 400)
    np.testing.assert_allclose(config.MEAN_PIXEL, [43.53, 39.56, 48.22])
    assert config.validate() is config
    inference = nucleus.NucleusInferenceConfig()
    assert (inference.IMAGE_RESIZE_MODE, inference.BATCH_SIZE,
            inference.RPN_NMS_THRESHOLD) == ("pad64", 1, 0.7)
    assert inference.validate() is inference


def test_val_image_ids():
    ids = nucleus.VAL_IMAGE_IDS
    assert len(ids) == 25 and len(set(ids)) == 25
    assert all(len(i) == 64 and set(i) <= set("0123456789abcdef") for i in ids)
    assert ids[0] == "0c2550a23b8a0f29a7575de8c61690d3c31bc897dd5ba66caec201d201a278c2"
    assert ids[-1] == "8ecdb93582b2d5270457b36651b62776256ade3aaa2d7432ae65c14f07432d49"


# ---------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------

def ids_of(dataset):
    return [info["id"] for info in dataset.image_info]


def test_subsets(dsb):
    root, _ = dsb
    with pytest.warns(UserWarning, match="not_an_image"):
        train = load(root, "train")
    assert ids_of(train) == [TRAIN_ID]
    assert train.class_names == ["BG", "nucleus"]
    with pytest.warns(UserWarning) as record:
        val = load(root, "val")
    assert any("23 of the 25 validation images" in str(w.message) for w in record)
    assert ids_of(val) == [VAL_B, VAL_A]  # VAL_IMAGE_IDS order
    with pytest.warns(UserWarning):
        assert ids_of(load(root, "stage1_train")) == sorted([TRAIN_ID, VAL_A, VAL_B])
    assert ids_of(load(root, "stage1_test")) == ["7e57" * 16]
    assert val.image_reference(0) == VAL_B
    assert val.image_info[1]["path"] == os.path.join(root, "stage1_train", VAL_A, "images",
                                                     VAL_A + ".png")
    with pytest.raises(ValueError, match="subset"):
        load(root, "test")
    with pytest.raises(FileNotFoundError, match="stage2_test"):
        load(root, "stage2_test")
    with pytest.raises(FileNotFoundError, match="stage1_train"):
        load(os.path.join(root, "stage1_train"), "train")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_images_and_masks(dsb):
    root, images = dsb
    dataset = load(root, "stage1_train")
    for index, image_id in enumerate(ids_of(dataset)):
        image = dataset.load_image(index)
        written = images[image_id]
        expected = np.dstack([written] * 3) if written.ndim == 2 else written[:, :, :3]
        np.testing.assert_array_equal(image, expected)  # alpha dropped, gray repeated

        masks, class_ids = dataset.load_mask(index)
        assert masks.dtype == bool and class_ids.dtype == np.int32
        # The empty mask file of VAL_A is dropped.
        np.testing.assert_array_equal(masks, np.stack(MASKS[image_id], axis=-1))
        np.testing.assert_array_equal(class_ids, np.ones(len(MASKS[image_id])))

    test = load(root, "stage1_test")
    masks, class_ids = test.load_mask(0)
    assert masks.shape == (H, W, 0) and class_ids.shape == (0,)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_mask_of_the_wrong_size(dsb):
    root, _ = dsb
    Image.fromarray(np.zeros((H + 1, W), np.uint8)).save(
        os.path.join(root, "stage1_train", TRAIN_ID, "masks", "m99.png"))
    with pytest.raises(ValueError, match="m99.png is 25x32 but its image"):
        load(root, "train").load_mask(0)


# ---------------------------------------------------------------------------
# Run-length encoding
# ---------------------------------------------------------------------------

HAND_MASK = np.array([[0, 1, 0, 0],
                      [0, 1, 1, 0],
                      [1, 0, 1, 0],
                      [0, 0, 1, 1]], dtype=bool)
# Pixels are numbered down the columns from 1: column 0 holds 1-4, column 1
# holds 5-8, ... Set: 3 | 5, 6 | 10, 11, 12 | 16.
HAND_RLE = "3 1 5 2 10 3 16 1"


def test_rle_encode_hand_worked():
    assert nucleus.rle_encode(HAND_MASK) == HAND_RLE
    assert nucleus.rle_encode(HAND_MASK.astype(np.uint8)) == HAND_RLE
    # A run continues from the bottom of one column to the top of the next:
    # rows 2, 3 of column 0 and row 0 of column 1 are pixels 3, 4, 5.
    wrap = np.zeros((4, 4), bool)
    wrap[2:, 0] = True
    wrap[0, 1] = True
    assert nucleus.rle_encode(wrap) == "3 3"
    # Non-square: 2 rows x 3 columns, last pixel (row 1, column 2) is number 6.
    tall = np.zeros((2, 3), bool)
    tall[1, 2] = tall[0, 0] = True
    assert nucleus.rle_encode(tall) == "1 1 6 1"
    assert nucleus.rle_encode(np.ones((2, 3))) == "1 6"
    assert nucleus.rle_encode(np.zeros((3, 3))) == ""
    with pytest.raises(ValueError, match="height, width"):
        nucleus.rle_encode(np.zeros((2, 2, 1)))


def test_rle_decode_and_round_trip():
    np.testing.assert_array_equal(nucleus.rle_decode(HAND_RLE, (4, 4)), HAND_MASK)
    np.testing.assert_array_equal(nucleus.rle_decode("", (2, 3)), np.zeros((2, 3), bool))
    rng = np.random.default_rng(1)
    for shape in [(5, 7), (8, 3), (16, 16)]:
        for density in (0.1, 0.5, 0.9):
            mask = rng.random(shape) < density
            rle = nucleus.rle_encode(mask)
            decoded = nucleus.rle_decode(rle, shape)
            assert decoded.dtype == bool
            np.testing.assert_array_equal(decoded, mask)
    for bad, match in [("3 1 5", "pairs"), ("0 2", ">= 1"), ("3 0", ">= 1"),
                       ("15 3", "past the last pixel"), ("a b", "integers")]:
        with pytest.raises(ValueError, match=match):
            nucleus.rle_decode(bad, (4, 4))


def test_mask_to_rle_resolves_overlaps_by_score():
    low = np.zeros((4, 4), bool)
    low[0:2, 0:2] = True             # pixels 1, 2, 5, 6
    high = np.zeros((4, 4), bool)
    high[1:3, 1:3] = True            # pixels 6, 7, 10, 11
    hidden = np.zeros((4, 4), bool)
    hidden[2, 2] = True              # pixel 11, inside `high`
    masks = np.stack([low, high, hidden], axis=-1)
    lines = nucleus.mask_to_rle("img", masks, np.array([0.5, 0.9, 0.3]))
    # Highest score first; `low` loses pixel 6; `hidden` loses everything.
    assert lines == "img,6 2 10 2\nimg,1 2 5 1"
    # The same masks in another order give the same lines.
    assert nucleus.mask_to_rle("img", masks[:, :, ::-1], np.array([0.3, 0.9, 0.5])) == lines
    assert nucleus.mask_to_rle("img", np.zeros((4, 4, 0), bool), np.zeros(0)) == "img,"
    assert nucleus.mask_to_rle("img", np.zeros((4, 4, 2), bool), np.ones(2)) == "img,"
    with pytest.raises(ValueError, match="scores"):
        nucleus.mask_to_rle("img", masks, np.ones(2))


# ---------------------------------------------------------------------------
# Training and detection with stand-in models
# ---------------------------------------------------------------------------

class RecordingModel:
    def __init__(self):
        self.config = nucleus.NucleusConfig()
        self.epoch = 0
        self.calls = []

    def train(self, train_dataset, val_dataset, learning_rate, epochs, augmentation, layers,
              custom_callbacks):
        self.calls.append(dict(train=ids_of(train_dataset), val=ids_of(val_dataset),
                               learning_rate=learning_rate, epochs=epochs, layers=layers,
                               augmentation=augmentation, callbacks=custom_callbacks))
        self.epoch = epochs


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_train_schedule(dsb):
    from mrcnn.training import TimeBudget
    root, _ = dsb
    model = RecordingModel()
    nucleus.train(model, root, "train")
    heads, everything = model.calls
    assert (heads["layers"], heads["epochs"]) == ("heads", 20)
    assert (everything["layers"], everything["epochs"]) == ("all", 40)
    assert heads["train"] == [TRAIN_ID] and heads["val"] == [VAL_B, VAL_A]
    assert heads["learning_rate"] == model.config.LEARNING_RATE
    assert type(heads["augmentation"]).__module__.startswith("albumentations")
    assert heads["callbacks"] == []

    # A resumed run past the heads stage trains all layers only; a budget
    # adds a TimeBudget callback.
    model = RecordingModel()
    model.epoch = 7
    nucleus.train(model, root, epochs=10, minutes=5, augmentation=None)
    (only,) = model.calls
    assert (only["layers"], only["epochs"], only["augmentation"]) == ("all", 10, None)
    (budget,) = only["callbacks"]
    assert isinstance(budget, TimeBudget) and 0 < budget.seconds <= 300


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_default_augmentation_keeps_masks_aligned(dsb):
    from mrcnn.data import load_image_gt

    class SmallCrops(nucleus.NucleusConfig):
        IMAGE_MIN_DIM = 64
        IMAGE_MAX_DIM = 64
        IMAGE_MIN_SCALE = 2.0

    root, _ = dsb
    dataset = load(root, "val")
    augmentation = nucleus.default_augmentation()
    for seed in range(4):
        np.random.seed(seed)
        image, _, class_ids, boxes, masks = load_image_gt(dataset, SmallCrops(), 1,
                                                          augmentation=augmentation)
        assert image.shape == (64, 64, 3) and masks.shape[:2] == (64, 64)
        assert len(class_ids) == masks.shape[-1] == len(boxes) > 0


class GroundTruthModel:
    """Stands in for an inference MaskRCNN: returns the image's own masks
    (looked up by image content) with descending scores."""

    def __init__(self, dataset):
        self.answers = []
        for index in dataset.image_ids:
            masks, class_ids = dataset.load_mask(index)
            self.answers.append((dataset.load_image(index), masks, class_ids))

    def detect(self, images, verbose=0):
        results = []
        for image in images:
            (masks, class_ids), = [(m, c) for im, m, c in self.answers
                                   if np.array_equal(im, image)]
            results.append({"rois": utils.extract_bboxes(masks), "masks": masks,
                            "class_ids": class_ids,
                            "scores": np.linspace(0.9, 0.5, len(class_ids)).astype(np.float32)})
        return results


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_detect_writes_submission_and_pngs(dsb, tmp_path):
    root, _ = dsb
    model = GroundTruthModel(load(root, "val"))
    submit_dir = nucleus.detect(model, root, "val", results_dir=str(tmp_path / "results"))
    assert os.path.basename(submit_dir).startswith("submit_")
    with open(os.path.join(submit_dir, "submission.csv")) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["ImageId", "EncodedPixels"]
    decoded = {}
    for image_id, rle in rows[1:]:
        decoded.setdefault(image_id, []).append(nucleus.rle_decode(rle, (H, W)))
    assert sorted(decoded) == sorted([VAL_A, VAL_B])
    np.testing.assert_array_equal(decoded[VAL_B][0], MASKS[VAL_B][0])
    # VAL_A's first two masks overlap in 1 pixel: the first (higher score) keeps it.
    first, second, third = decoded[VAL_A]
    np.testing.assert_array_equal(first, MASKS[VAL_A][0])
    np.testing.assert_array_equal(second, MASKS[VAL_A][1] & ~MASKS[VAL_A][0])
    np.testing.assert_array_equal(third, MASKS[VAL_A][2])
    for image_id in (VAL_A, VAL_B):
        with Image.open(os.path.join(submit_dir, image_id + ".png")) as png:
            assert png.size[0] > 100


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def cli_error(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        nucleus.main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_cli_argument_errors(dsb, capsys, tmp_path):
    root, _ = dsb
    assert "needs --dataset" in cli_error(capsys, ["train", "--weights", "none"])
    assert "needs --dataset" in cli_error(capsys, ["detect", "--subset", "val"])
    assert "detect needs --subset" in cli_error(capsys, ["detect", "--dataset", root])
    assert "train needs --weights" in cli_error(capsys, ["train", "--dataset", root])
    assert "--subset must be one of" in cli_error(
        capsys, ["train", "--dataset", root, "--weights", "none", "--subset", "everything"])
    err = cli_error(capsys, ["train", "--dataset", str(tmp_path / "nowhere"),
                             "--weights", "none"])
    assert "stage1_train not found" in err
    err = cli_error(capsys, ["detect", "--dataset", root, "--subset", "stage2_test"])
    assert "stage2_test not found" in err
    assert "argument --minutes: must be a positive number" in cli_error(
        capsys, ["train", "--dataset", root, "--weights", "none", "--minutes", "0"])
    assert "--epochs must be at least 1" in cli_error(
        capsys, ["train", "--dataset", root, "--weights", "none", "--epochs", "0"])
    assert "argument --minutes: invalid number value: 'soon'" in cli_error(
        capsys, ["train", "--dataset", root, "--weights", "none", "--minutes", "soon"])
    err = cli_error(capsys, ["detect", "--dataset", root, "--subset", "val", "--weights",
                             str(tmp_path / "missing.h5")])
    assert "missing.h5 not found" in err


# ---------------------------------------------------------------------------
# The real data (../shared/data/nucleus), when present
# ---------------------------------------------------------------------------

@pytest.mark.skipif(not os.path.isdir(os.path.join(REAL_DATA, "stage1_train")),
                    reason="no ../shared/data/nucleus")
def test_real_data_split_and_two_images():
    train = load(REAL_DATA, "train")
    val = load(REAL_DATA, "val")
    assert ids_of(val) == nucleus.VAL_IMAGE_IDS
    assert train.num_images == 75 and not set(ids_of(train)) & set(ids_of(val))
    for dataset in (train, val):
        image = dataset.load_image(0)
        masks, class_ids = dataset.load_mask(0)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert masks.shape[:2] == image.shape[:2] and masks.shape[-1] == len(class_ids) > 0
        mask_dir = os.path.join(os.path.dirname(os.path.dirname(dataset.image_info[0]["path"])),
                                "masks")
        files = sorted(os.listdir(mask_dir))
        assert masks.shape[-1] <= len(files)
        with Image.open(os.path.join(mask_dir, files[0])) as first:
            np.testing.assert_array_equal(masks[:, :, 0], np.asarray(first) > 0)


def test_random_start_skips_the_heads_stage(dsb, monkeypatch):
    root, _ = dsb
    model = RecordingModel()
    nucleus.train(model, root, epochs=6, heads_epochs=0, augmentation=None)
    assert [(c["layers"], c["epochs"]) for c in model.calls] == [("all", 6)]

    # The command line does that for --weights none.
    seen = {}
    monkeypatch.setattr(nucleus, "train", lambda model, *a, **kw: seen.update(kw))
    import mrcnn.model  # noqa: F401  (registers "mask_rcnn")
    from mrcnn import modelbase

    class Built:
        epoch, log_dir = 0, "logs"

        def __init__(self, mode, config, model_dir):
            self.config = config

    monkeypatch.setitem(modelbase.MODEL_REGISTRY, "mask_rcnn", Built)
    nucleus.main(["train", "--dataset", root, "--weights", "none", "--epochs", "4"])
    assert seen["heads_epochs"] == 0 and seen["epochs"] == 4


# ---------------------------------------------------------------------------
# Command line: configuration flags and the checkpoint's configuration
# ---------------------------------------------------------------------------

class BuiltModel:
    """Stands in for modellib.create_model's result in the command line."""
    built = []

    def __init__(self, mode, config, model_dir):
        self.mode, self.config, self.epoch, self.log_dir = mode, config, 0, "logs"
        self.loaded = []
        BuiltModel.built.append(self)

    def load_weights(self, filepath, by_name=False, exclude=None):
        self.loaded.append(filepath)


@pytest.fixture
def built(monkeypatch):
    import mrcnn.model  # noqa: F401  (registers "mask_rcnn")
    from mrcnn import modelbase
    BuiltModel.built = []
    monkeypatch.setitem(modelbase.MODEL_REGISTRY, "mask_rcnn", BuiltModel)
    return BuiltModel.built


def test_cli_train_flags(dsb, monkeypatch, built):
    root, _ = dsb
    seen = {}
    monkeypatch.setattr(nucleus, "train", lambda model, *a, **kw: seen.update(kw))
    nucleus.main(["train", "--dataset", root, "--weights", "none", "--backbone", "resnet18",
                  "--image-size", "256", "--images-per-gpu", "2", "--learning-rate", "0.02",
                  "--minutes", "30"])
    config = built[0].config
    assert (config.BACKBONE, config.IMAGE_MIN_DIM, config.IMAGE_MAX_DIM) == ("resnet18", 256, 256)
    assert (config.IMAGE_RESIZE_MODE, config.IMAGES_PER_GPU, config.LEARNING_RATE) == \
        ("crop", 2, 0.02)
    assert seen["minutes"] == 30 and seen["start"] is not None
    built.clear()
    nucleus.main(["train", "--dataset", root, "--weights", "none"])
    assert built[0].config.to_dict() == nucleus.NucleusConfig().to_dict()
    assert seen["minutes"] is None


def test_cli_detect_uses_the_checkpoint_configuration(dsb, monkeypatch, built, capsys):
    root, _ = dsb
    run = os.path.join(root, "logs", "nucleus20240101T0000")
    os.makedirs(run)
    weights = os.path.join(run, "mask_rcnn_nucleus_0004.h5")
    open(weights, "wb").close()
    recorded = nucleus.NucleusConfig()
    recorded.BACKBONE, recorded.IMAGE_MIN_DIM, recorded.IMAGE_MAX_DIM = "resnet18", 256, 256
    recorded.TOP_DOWN_PYRAMID_SIZE = 64
    recorded.to_json(os.path.join(run, "config.json"))
    detected = []
    monkeypatch.setattr(nucleus, "detect", lambda model, *a, **kw: detected.append(model))
    nucleus.main(["detect", "--dataset", root, "--subset", "stage1_test",
                  "--logs", os.path.join(root, "logs")])
    model, = built
    assert detected == [model] and model.loaded == [weights]
    config = model.config
    assert (config.BACKBONE, config.IMAGE_MIN_DIM, config.TOP_DOWN_PYRAMID_SIZE) == \
        ("resnet18", 256, 64)
    # Detection keeps what NucleusInferenceConfig sets: whole images, not crops.
    assert (config.IMAGE_RESIZE_MODE, config.RPN_NMS_THRESHOLD, config.IMAGES_PER_GPU) == \
        ("pad64", 0.7, 1)
    assert "Using the configuration saved with the checkpoint" in capsys.readouterr().out
