"""Bad inputs: broken image files, unusable images and masks, degenerate
boxes, NaN/Inf values, weights that do not fit, and data errors during
training. Each test pins down what happens (a clear error naming what was
wrong and what to do, or documented handling). Cases already covered
elsewhere are tested there: missing/empty/truncated PNG/text files and
grayscale/RGBA/palette/16-bit/single-pixel files in test_dataset.py, mask
size and class-count checks in test_data.py, MAX_GT_INSTANCES subsampling in
test_data.py, image sizes not divisible by 64 in test_config.py, class-count
and broken weight files in test_weights.py, detect() on a built model in
test_model.py."""
import logging
import os
import threading
import warnings

import h5py
import keras
import numpy as np
import pytest
from keras import layers as KL
from PIL import Image

from mrcnn import data, utils, weights
from mrcnn.maskrcnn import targets
from mrcnn import backbone
from mrcnn.config import Config
from mrcnn.dataset import ImageLoadError, read_image_rgb
from mrcnn.modelbase import ModelBase
from mrcnn.data.pipeline import make_dataset


class SmallConfig(Config):
    NAME = "bad_inputs"
    NUM_CLASSES = 2
    IMAGES_PER_GPU = 1
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    RPN_TRAIN_ANCHORS_PER_IMAGE = 32
    MAX_GT_INSTANCES = 3
    MINI_MASK_SHAPE = (14, 14)


def anchors_for(config):
    shapes = backbone.compute_backbone_shapes(config, config.IMAGE_SHAPE)
    return utils.generate_pyramid_anchors(config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
                                          shapes, config.BACKBONE_STRIDES,
                                          config.RPN_ANCHOR_STRIDE)


class ArrayDataset(utils.Dataset):
    """Images and masks given as arrays per image (path is only a label)."""

    def __init__(self, items):
        super().__init__()
        self.add_class("arrays", 1, "thing")
        for i, (image, mask) in enumerate(items):
            self.add_image("arrays", image_id=i, path="arrays/img{}.png".format(i),
                           image=image, mask=mask)
        self.prepare()

    def load_image(self, image_id):
        return self.image_info[image_id]["image"]

    def load_mask(self, image_id):
        mask = np.asarray(self.image_info[image_id]["mask"], dtype=bool)
        return mask, np.ones(mask.shape[-1], np.int32)


class FileDataset(utils.Dataset):
    """PNG files on disk (the base class's load_image) with one rectangle
    instance each."""

    def __init__(self, paths):
        super().__init__()
        self.add_class("files", 1, "thing")
        for i, path in enumerate(paths):
            self.add_image("files", image_id=i, path=str(path))
        self.prepare()

    def load_mask(self, image_id):
        mask = np.zeros((40, 40, 1), bool)
        mask[5:25, 10:30] = True
        return mask, np.ones(1, np.int32)


def rect_mask(shape, *boxes):
    mask = np.zeros(tuple(shape) + (len(boxes),), bool)
    for k, (y1, x1, y2, x2) in enumerate(boxes):
        mask[y1:y2, x1:x2, k] = True
    return mask


def run_with_timeout(fn, seconds=60):
    """fn()'s result, or its exception; fails instead of hanging forever."""
    outcome = {}

    def target():
        try:
            outcome["value"] = fn()
        except Exception as error:  # noqa: BLE001  (re-raised below)
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "still waiting after {} s".format(seconds)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


############################################################
#  Image files
############################################################

def test_truncated_jpeg_names_the_file(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)).save(
        tmp_path / "full.jpg", quality=95)
    whole = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "half.jpg").write_bytes(whole[:len(whole) // 2])
    dataset = FileDataset([tmp_path / "half.jpg"])
    with pytest.raises(ImageLoadError) as info:
        dataset.load_image(0)
    message = str(info.value)
    assert "image 0 (files)" in message and "half.jpg" in message
    assert "truncated" in message and "remove it from the dataset" in message


def test_directory_instead_of_a_file(tmp_path):
    (tmp_path / "album.png").mkdir()
    with pytest.raises(ImageLoadError, match=r"album.png: not a file \(a directory\?\)"):
        read_image_rgb(str(tmp_path / "album.png"))
    with pytest.raises(ImageLoadError, match="nothing.png: file not found; check the path"):
        read_image_rgb(str(tmp_path / "nothing.png"))


def test_16_bit_colour_png_gives_uint8_rgb(tmp_path):
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(1)
    rgb16 = rng.integers(0, 65536, (5, 7, 3)).astype(np.uint16)
    assert cv2.imwrite(str(tmp_path / "deep.png"), rgb16[:, :, ::-1])  # OpenCV is BGR
    image = read_image_rgb(str(tmp_path / "deep.png"))
    assert image.shape == (5, 7, 3) and image.dtype == np.uint8
    # Pillow keeps the high byte: within one level of the exact 255/65535 scaling.
    assert np.abs(image.astype(float) - rgb16 / 257.0).max() <= 1.0


############################################################
#  detect() and training image checks, NaN/Inf images
############################################################

def detect_molder():
    """A ModelBase without a network: its _mold_image is what detect() runs
    on every input image before the model sees it."""
    molder = object.__new__(ModelBase)
    molder.config = SmallConfig()
    return molder


def test_detect_input_checks_convert_or_name_the_problem():
    molder = detect_molder()
    checks = [molder._check_image, lambda image: data.check_image(image, 3)]
    for check in checks:
        gray = check(np.full((30, 40), 7, np.uint8))
        assert gray.shape == (30, 40, 3) and np.all(gray == 7)
        # RGBA loses its alpha channel, [H, W, 1] is repeated (as load_image).
        rgba = check(np.dstack([np.full((30, 40, 3), 9, np.uint8),
                                np.zeros((30, 40), np.uint8)]))
        assert rgba.shape == (30, 40, 3) and np.all(rgba == 9)
        single = check(np.full((30, 40, 1), 5, np.uint8))
        assert single.shape == (30, 40, 3) and np.all(single == 5)
        for image, message in [
                (np.zeros((30, 40, 5), np.uint8),
                 r"shape \[height, width, 3\] .*got \(30, 40, 5\)"),
                (np.zeros((2, 30, 40, 3), np.uint8), r"shape \[height, width, 3\]"),
                (np.zeros((0, 40, 3), np.uint8), "non-empty"),
                (np.full((4, 4, 3), "x"), "numeric"),
                (np.full((4, 4, 3), np.nan, np.float32), "NaN or Inf"),
                (np.array([[[0.0, np.inf, 0.0]]]), "NaN or Inf"),
                (np.full((4, 4, 3), 300, np.uint16), r"up to 300, beyond 0..255 \(a 16-bit")]:
            with pytest.raises(ValueError, match=message):
                check(image)
        # 8-bit values in a wider integer type are fine.
        assert check(np.full((4, 4, 3), 255, np.int32)).dtype == np.int32
    # Grayscale and single-pixel images mold to the model's square input.
    molded, meta, window = molder._mold_image(np.full((30, 40), 7, np.uint8))
    assert molded.shape == (64, 64, 3)
    np.testing.assert_array_equal(data.parse_image_meta(meta)["original_image_shape"],
                                  [30, 40, 3])
    pixel = np.array([[[200, 100, 50]]], np.uint8)
    molded, meta, window = molder._mold_image(pixel)
    assert molded.shape == (64, 64, 3) and molded.dtype == np.float32
    np.testing.assert_array_equal(window, [0, 0, 64, 64])
    # Bilinear upscaling keeps the original's constant-0 border: the centre
    # of a 64x upscaled pixel is near its value, the edges fade.
    np.testing.assert_allclose(molded[32, 32] + SmallConfig.MEAN_PIXEL, [197, 98, 49],
                               atol=1e-3)
    resized = utils.resize_image(pixel, min_dim=64, max_dim=64, mode="square")[0]
    np.testing.assert_allclose(molded + SmallConfig.MEAN_PIXEL, resized, atol=1e-3)


def test_mold_image_rejects_nan_and_inf():
    config = SmallConfig()
    for bad in (np.nan, np.inf, -np.inf):
        image = np.zeros((8, 8, 3), np.float32)
        image[3, 4, 1] = bad
        with pytest.raises(ValueError, match="mold_image: the image contains NaN or Inf"):
            data.mold_image(image, config)
    ok = data.mold_image(np.full((2, 2, 3), 10, np.uint8), config)
    np.testing.assert_allclose(ok[0, 0], 10 - config.MEAN_PIXEL, rtol=1e-6)


def test_load_image_gt_checks_what_load_image_returns():
    mask = rect_mask((40, 40), (5, 5, 20, 20))
    nan_image = np.zeros((40, 40, 3), np.float32)
    nan_image[0, 0, 0] = np.nan
    dataset = ArrayDataset([(np.full((40, 40), 9, np.uint8), mask),
                            (np.zeros((40, 40, 5), np.uint8), mask),
                            (nan_image, mask),
                            (np.dstack([np.full((40, 40, 3), 7, np.uint8),
                                        np.full((40, 40), 255, np.uint8)]), mask)])
    config = SmallConfig()
    image, meta, _, _, _ = data.load_image_gt(dataset, config, 0)
    assert image.shape == (64, 64, 3)  # grayscale made RGB
    np.testing.assert_array_equal(data.parse_image_meta(meta)["original_image_shape"],
                                  [40, 40, 3])
    with pytest.raises(ValueError) as info:
        data.load_image_gt(dataset, config, 1)
    message = str(info.value)
    assert "load_image() of image 1 (source 'arrays', path 'arrays/img1.png')" in message
    assert "got (40, 40, 5)" in message and "IMAGE_CHANNEL_COUNT" in message
    with pytest.raises(ValueError, match=r"image 2 .*img2.png.*NaN or Inf"):
        data.load_image_gt(dataset, config, 2)
    # An RGBA image from a custom load_image() loses its alpha channel, as
    # Dataset.load_image does for files.
    image, meta, _, _, _ = data.load_image_gt(dataset, config, 3)
    assert image.shape == (64, 64, 3) and np.all(image[8:56, 8:56] == 7)
    np.testing.assert_array_equal(data.parse_image_meta(meta)["original_image_shape"],
                                  [40, 40, 3])


############################################################
#  Instances and masks
############################################################

def test_all_zero_mask_is_dropped_and_logged(caplog):
    mask = rect_mask((40, 40), (5, 5, 20, 20), (0, 0, 0, 0), (25, 10, 35, 30))
    dataset = ArrayDataset([(np.zeros((40, 40, 3), np.uint8), mask)])
    with caplog.at_level(logging.DEBUG, logger="mrcnn.data"):
        _, _, class_ids, bbox, gt_mask = data.load_image_gt(dataset, SmallConfig(), 0,
                                                            use_mini_mask=True)
    assert class_ids.tolist() == [1, 1] and gt_mask.shape == (14, 14, 2)
    # 40 px scaled by 64/40 = 1.6: rows 5..20 -> 8..32, 25..35 -> 40..56.
    np.testing.assert_array_equal(bbox, [[8, 8, 32, 32], [40, 16, 56, 48]])
    assert "dropping instance(s) [1] of image 0" in caplog.text
    assert "arrays/img0.png" in caplog.text


def test_image_without_usable_instances_gives_no_training_sample():
    config = SmallConfig()
    anchors = anchors_for(config)
    image = np.zeros((40, 40, 3), np.uint8)
    dataset = ArrayDataset([(image, np.zeros((40, 40, 2), bool)),   # two all-zero masks
                            (image, np.zeros((40, 40, 0), bool)),   # no instances
                            (image, rect_mask((40, 40), (5, 5, 20, 20)))])

    def sample(image_id):
        return targets._training_sample(dataset, config, image_id, anchors, 0, False,
                                     augmentation=None, augment=False)

    assert sample(0) is None and sample(1) is None
    arrays = sample(2)
    assert arrays[4].tolist() == [1, 0, 0]  # gt_class_ids padded to MAX_GT_INSTANCES


def test_pipeline_without_any_usable_image_raises_instead_of_waiting_forever():
    dataset = ArrayDataset([(None, np.zeros((4, 4, 0)))] * 4)
    signature = [("input_id", (1,), np.int64)]
    batches = make_dataset(dataset, lambda image_id, aug: None, signature, batch_size=2)
    with pytest.raises(Exception) as info:
        run_with_timeout(lambda: list(batches.take(1)))
    assert "No usable image in a full pass over the dataset: each of its 4 images had no " \
           "instances" in str(info.value)
    # One usable image is enough: batches repeat it.
    batches = make_dataset(dataset, lambda i, aug: [np.array([i])] if i == 2 else None,
                           signature, batch_size=2, seed=0)
    got = run_with_timeout(lambda: list(batches.take(2)))
    assert [b["input_id"].numpy().ravel().tolist() for b in got] == [[2, 2], [2, 2]]


############################################################
#  Degenerate boxes and NaN boxes in the box utilities
############################################################

def test_compute_overlaps_degenerate_boxes():
    boxes1 = np.array([[0, 0, 0, 0], [0, 0, 10, 10], [5, 5, 5, 9]])
    boxes2 = np.array([[0, 0, 0, 0], [-10, -10, 10, 10], [3, 3, 3, 3]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0/0 RuntimeWarning
        overlaps = utils.compute_overlaps(boxes1, boxes2)
    # Zero-area boxes: IoU 0 with everything, each other included (was NaN).
    # Out-of-image coordinates are plain geometry: 100 / 400.
    np.testing.assert_array_equal(overlaps, [[0, 0, 0], [0, 0.25, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match=r"compute_overlaps: boxes1 row 1 is inverted, "
                                         r"\[10, 10, 0, 0\].*\(x1, y1, x2, y2\)"):
        utils.compute_overlaps(np.array([[0, 0, 5, 5], [10, 10, 0, 0]]), boxes2)
    with pytest.raises(ValueError, match=r"compute_overlaps: boxes2 row 2 has a NaN or Inf"):
        utils.compute_overlaps(boxes1, np.array([[0, 0, 1, 1], [0, 0, 2, 2],
                                                 [0, np.nan, 2, 2]]))


def test_box_refinement_rejects_degenerate_boxes():
    box = np.array([[0, 0, 10, 10], [-10, 20, 10, 40]], np.float32)
    gt = np.array([[0, 0, 20, 10], [-10, 20, 10, 40]], np.float32)
    np.testing.assert_allclose(utils.box_refinement(box, gt),
                               [[0.5, 0, np.log(2), 0], [0, 0, 0, 0]], atol=1e-6)
    with pytest.raises(ValueError, match=r"box_refinement: box row 1 has zero area"):
        utils.box_refinement(np.array([[0, 0, 10, 10], [5, 5, 5, 9]]), gt)
    with pytest.raises(ValueError, match=r"box_refinement: gt_box row 0 is inverted"):
        utils.box_refinement(box, np.array([[20, 0, 0, 10], [0, 0, 1, 1]]))
    with pytest.raises(ValueError, match=r"box_refinement: gt_box row 1 has a NaN or Inf"):
        utils.box_refinement(box, np.array([[0, 0, 1, 1], [0, 0, np.inf, 1]]))


def test_minimize_mask_rejects_boxes_outside_the_mask():
    mask = rect_mask((20, 20), (0, 0, 10, 10))
    np.testing.assert_array_equal(utils.minimize_mask([[0, 0, 10, 10]], mask, (4, 4))[..., 0],
                                  np.ones((4, 4), bool))
    # Negative coordinates used to wrap around to the far side of the mask.
    with pytest.raises(ValueError, match=r"instance 0 has a bounding box \(-5, -5, 10, 10\) "
                                         r"outside the mask of height 20 and width 20"):
        utils.minimize_mask([[-5, -5, 10, 10]], mask, (4, 4))
    with pytest.raises(ValueError, match="outside the mask"):
        utils.minimize_mask([[0, 0, 25, 10]], mask, (4, 4))
    with pytest.raises(ValueError, match=r"instance 0 has a bounding box with zero area "
                                         r"\(10, 0, 0, 10\)"):
        utils.minimize_mask([[10, 0, 0, 10]], mask, (4, 4))
    with pytest.raises(ValueError, match="instance 0 has a box with NaN or Inf"):
        utils.minimize_mask(np.array([[0, 0, np.nan, 10]]), mask, (4, 4))


def test_expand_and_unmold_mask_with_boxes_outside_the_image():
    mini = np.ones((4, 4, 2), bool)
    full = utils.expand_mask([[2, 2, 6, 6], [5, 5, 5, 9]], mini, (20, 20, 3))
    assert full[..., 0].sum() == 16 and not full[..., 1].any()  # zero area: empty
    with pytest.raises(ValueError, match=r"expand_mask: instance 0 has a bounding box "
                                         r"\(15, 15, 25, 25\) outside the image"):
        utils.expand_mask([[15, 15, 25, 25]], mini[..., :1], (20, 20))
    # unmold_mask keeps the part of the box that lies in the image: the same
    # pixels as unmolding onto a larger canvas and cropping.
    rng = np.random.default_rng(3)
    small = rng.uniform(size=(6, 6)).astype(np.float32)
    for box in ([15, 15, 25, 25], [-5, -3, 5, 7], [-4, 16, 30, 26]):
        shifted = [v + 10 for v in box]
        canvas = utils.unmold_mask(small, shifted, (40, 40))
        np.testing.assert_array_equal(utils.unmold_mask(small, box, (20, 20)),
                                      canvas[10:30, 10:30])
    assert not utils.unmold_mask(small, [30, 30, 40, 40], (20, 20)).any()
    with pytest.raises(ValueError, match="unmold_mask: instance 0 has a box with NaN"):
        utils.unmold_mask(small, [0, 0, np.nan, 4], (20, 20))


def test_build_rpn_targets_ignores_empty_and_outside_gt_boxes():
    config = SmallConfig()
    anchors = anchors_for(config)
    good = np.array([[8, 8, 40, 40]])
    degenerate = np.array([[8, 8, 40, 40], [30, 30, 30, 40], [500, 500, 520, 520]])
    match, bbox = targets.build_rpn_targets(config.IMAGE_SHAPE, anchors, [1], good, config,
                                         rng=np.random.default_rng(0))
    match2, bbox2 = targets.build_rpn_targets(config.IMAGE_SHAPE, anchors, [1, 1, 1], degenerate,
                                           config, rng=np.random.default_rng(0))
    assert (match == 1).sum() > 0
    np.testing.assert_array_equal(match2, match)
    np.testing.assert_array_equal(bbox2, bbox)
    assert np.all(np.isfinite(bbox2))
    with pytest.raises(ValueError, match=r"compute_overlaps: boxes2 row 0 is inverted"):
        targets.build_rpn_targets(config.IMAGE_SHAPE, anchors, [1], [[40, 8, 8, 40]], config)


def test_nan_values_raise_in_box_utilities():
    boxes = np.array([[0, 0, 10, 10], [np.nan, 0, 10, 10]])
    with pytest.raises(ValueError, match="non_max_suppression: boxes row 1 has a NaN"):
        utils.non_max_suppression(boxes, np.array([0.9, 0.8]), 0.5)
    with pytest.raises(ValueError, match="non_max_suppression: score 1 is NaN or Inf"):
        utils.non_max_suppression(np.array([[0, 0, 10, 10], [0, 0, 9, 9]]),
                                  np.array([0.9, np.nan]), 0.5)
    # Zero-area boxes are kept and suppress nothing.
    keep = utils.non_max_suppression(np.array([[0, 0, 10, 10], [3, 3, 3, 3], [3, 3, 3, 3]]),
                                     np.array([0.5, 0.9, 0.8]), 0.5)
    assert keep.tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match="apply_box_deltas: deltas row 0 has a NaN or Inf"):
        utils.apply_box_deltas(np.array([[0, 0, 10, 10]]), np.array([[0, 0, np.inf, 0]]))
    with pytest.raises(ValueError, match="apply_box_deltas: boxes row 0 has a NaN"):
        utils.apply_box_deltas(np.array([[0, np.nan, 10, 10]]), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="denorm_boxes: the boxes contain NaN or Inf"):
        utils.denorm_boxes(np.array([[0.1, 0.1, np.nan, 0.5]]), (64, 64))


############################################################
#  Weights files
############################################################

def dense_model(names, inputs=4, seed=0):
    """A chain of Dense(4) layers with the given names; seeded weights."""
    x = image = keras.Input((inputs,), name="input_image")
    for name in names:
        x = KL.Dense(4, name=name)(x)
    model = keras.Model(image, x)
    rng = np.random.default_rng(seed)
    for var in model.weights:
        var.assign(rng.uniform(-1, 1, tuple(var.shape)).astype("float32"))
    return model


def resnet_names(stage4_blocks, bottleneck):
    """Reference layer names of a ResNet stage 4 (enough to tell depths apart)."""
    names = ["conv1"]
    for b in range(stage4_blocks):
        letter = chr(ord("a") + b)
        names += ["res4{}_branch2a".format(letter), "res4{}_branch2b".format(letter)]
        if bottleneck:
            names.append("res4{}_branch2c".format(letter))
    return names + ["mrcnn_class_logits"]


def snapshot(model):
    return [np.array(var.numpy()) for var in model.weights]


def assert_unchanged(model, before):
    for value, var in zip(before, model.weights):
        np.testing.assert_array_equal(value, var.numpy(), err_msg=var.path)


def test_weights_of_another_backbone_are_refused(tmp_path, caplog):
    path = tmp_path / "resnet50.h5"
    weights.save_weights(dense_model(resnet_names(6, True), seed=1), path)
    for blocks, bottleneck, name in [(23, True, "resnet101"), (6, False, "resnet34")]:
        model = dense_model(resnet_names(blocks, bottleneck), seed=2)
        before = snapshot(model)
        for by_name in (True, False):
            with pytest.raises(weights.BackboneMismatchError) as info:
                weights.load_weights(model, path, by_name=by_name)
            message = str(info.value)
            assert str(path) in message
            assert "weights of a resnet50 backbone but the model's backbone is {}".format(
                name) in message
            assert "Set BACKBONE to match the file" in message
            assert isinstance(info.value, weights.WeightsMismatchError)
            assert_unchanged(model, before)
    # skip_mismatch loads whatever fits by name and shape, with a warning.
    model = dense_model(resnet_names(23, True), seed=2)
    with caplog.at_level(logging.WARNING, logger="mrcnn.weights"):
        report = weights.load_weights(model, path, by_name=True, skip_mismatch=True)
    assert "resnet50 backbone" in caplog.text
    assert "res4f_branch2c" in report.loaded and "res4g_branch2a" in report.missing


@pytest.mark.parametrize("damage", ["text values", "missing dataset"])
def test_failed_load_leaves_every_weight_unchanged(tmp_path, damage):
    names = ["conv1", "fpn_p2", "mrcnn_class_logits"]
    path = tmp_path / "damaged.h5"
    weights.save_weights(dense_model(names, seed=1), path)
    with h5py.File(path, "r+") as f:
        group = f["mrcnn_class_logits"]
        kernel = "mrcnn_class_logits/kernel:0"
        shape = group[kernel].shape
        del group[kernel]
        if damage == "text values":
            group.create_dataset(kernel, data=np.full(shape, b"x"))
    model = dense_model(names, seed=2)
    before = snapshot(model)
    with pytest.raises(weights.WeightsFileError) as info:
        weights.load_weights(model, path)
    message = str(info.value)
    assert "damaged.h5 is not a readable HDF5 weights file" in message
    assert "layer 'mrcnn_class_logits'" in message and "fetch it again" in message
    # conv1 and fpn_p2 come first in the file and were fine: still untouched.
    assert_unchanged(model, before)


def test_shape_mismatch_outside_the_class_heads_names_the_configuration(tmp_path):
    path = tmp_path / "four_channels.h5"
    weights.save_weights(dense_model(["conv1", "fpn_p2"], inputs=4), path)
    model = dense_model(["conv1", "fpn_p2"], inputs=3)
    before = snapshot(model)
    with pytest.raises(weights.WeightsMismatchError) as info:
        weights.load_weights(model, path, by_name=True)
    message = str(info.value)
    assert "conv1: conv1/kernel:0 has shape (4, 4) in the file, (3, 4) in the model" in message
    assert "IMAGE_CHANNEL_COUNT" in message and "NUM_CLASSES" not in message
    assert "exclude=['conv1']" in message
    assert_unchanged(model, before)


############################################################
#  Data errors during training
############################################################

def training_files(tmp_path, count, broken):
    """count PNGs img0..; ids in ``broken`` are missing ("missing") or a
    text file ("text")."""
    paths = []
    for i in range(count):
        path = tmp_path / "img{}.png".format(i)
        kind = broken.get(i)
        if kind == "text":
            path.write_text("not an image")
        elif kind is None:
            Image.fromarray(np.full((40, 40, 3), 30 * i, np.uint8)).save(path)
        paths.append(path)
    return FileDataset(paths)


def training_batches(dataset, config):
    """The tf.data pipeline over Mask R-CNN training samples, one pass."""
    anchors = anchors_for(config)

    def sample(image_id, augmentation):
        return targets._training_sample(dataset, config, image_id, anchors, 0, False,
                                     augmentation=augmentation, augment=False)

    names = ["input_image", "input_image_meta", "input_rpn_match", "input_rpn_bbox",
             "input_gt_class_ids", "input_gt_boxes", "input_gt_masks"]
    shapes = [(64, 64, 3), (config.IMAGE_META_SIZE,), (len(anchors), 1),
              (config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4), (3,), (3, 4), (14, 14, 3)]
    dtypes = [np.float32, np.float32, np.int32, np.float32, np.int32, np.int32, bool]
    return make_dataset(dataset, sample, list(zip(names, shapes, dtypes)), batch_size=1,
                        shuffle=False, repeat=False)


def test_training_skips_broken_images_naming_id_and_path(tmp_path, caplog):
    dataset = training_files(tmp_path, 5, {1: "missing", 3: "text"})
    with caplog.at_level(logging.WARNING, logger="mrcnn.data.pipeline"):
        batches = run_with_timeout(lambda: list(training_batches(dataset, SmallConfig())))
    ids = [int(data.parse_image_meta(b["input_image_meta"].numpy())["image_id"][0])
           for b in batches]
    assert ids == [0, 2, 4]
    text = caplog.text
    assert "Skipping image 1 (source 'files', path '{}')".format(tmp_path / "img1.png") in text
    assert "ImageLoadError" in text and "file not found" in text
    assert "Skipping image 3 (source 'files', path '{}')".format(tmp_path / "img3.png") in text
    assert "not a readable image" in text


def test_training_stops_after_consecutive_failures_naming_the_image(tmp_path, caplog):
    dataset = training_files(tmp_path, 8, {i: "missing" for i in range(8)})
    with caplog.at_level(logging.WARNING, logger="mrcnn.data.pipeline"), \
            pytest.raises(Exception) as info:
        run_with_timeout(lambda: list(training_batches(dataset, SmallConfig())))
    message = str(info.value)
    assert "5 images in a row failed to load; stopping. The last was image " in message
    assert "(source 'files', path '{}".format(os.path.join(str(tmp_path), "img")) in message
    assert "ImageLoadError: Cannot load image" in message and "file not found" in message
    assert "remove them from the dataset" in message
    assert caplog.text.count("Skipping image") == 4


############################################################
#  Dataset against configuration
############################################################

class ClassesDataset(ArrayDataset):
    """ArrayDataset with ``extra`` more classes and configurable class ids."""

    def __init__(self, items, extra=0, class_ids=None, source="arrays"):
        utils.Dataset.__init__(self)
        for k in range(1 + extra):
            self.add_class(source, k + 1, "thing{}".format(k))
        for i, (image, mask) in enumerate(items):
            self.add_image(source, image_id=i, path="arrays/img{}.png".format(i),
                           image=image, mask=mask)
        self.class_ids_override = class_ids
        self.prepare()

    def load_mask(self, image_id):
        mask, class_ids = super().load_mask(image_id)
        if self.class_ids_override is not None:
            class_ids = np.asarray(self.class_ids_override, np.int32)
        return mask, class_ids


def _items(count=2):
    return [(np.zeros((40, 40, 3), np.uint8), rect_mask((40, 40), (5, 5, 20, 20)))
            for _ in range(count)]


def test_dataset_with_more_classes_than_num_classes_names_the_value():
    dataset = ClassesDataset(_items(), extra=2)  # BG + 3 classes
    with pytest.raises(ValueError) as info:
        data.check_dataset(dataset, SmallConfig(), "train_dataset")
    message = str(info.value)
    assert "train_dataset has 4 classes" in message
    assert "NUM_CLASSES is 2" in message and "set NUM_CLASSES = 4" in message


def test_dataset_with_fewer_classes_warns_and_pads_the_meta(caplog):
    class Five(SmallConfig):
        NUM_CLASSES = 5
    dataset = ClassesDataset(_items())
    with caplog.at_level(logging.WARNING, logger="mrcnn.data"):
        data.check_dataset(dataset, Five(), "train_dataset")
    assert any("NUM_CLASSES is 5" in r.getMessage() for r in caplog.records)
    _, meta, _, _, _ = data.load_image_gt(dataset, Five(), 0)
    assert meta.shape == (Five().IMAGE_META_SIZE,)
    np.testing.assert_array_equal(data.parse_image_meta(meta[None])["active_class_ids"][0],
                                  [1, 1, 0, 0, 0])


def test_validation_dataset_with_other_classes_is_refused():
    train = ClassesDataset(_items())
    val = ClassesDataset(_items(), source="other")
    with pytest.raises(ValueError, match="val_dataset has other classes than the training"):
        data.check_dataset(val, SmallConfig(), "val_dataset", reference=train)
    data.check_dataset(ClassesDataset(_items()), SmallConfig(), "val_dataset", reference=train)


def test_unprepared_or_empty_dataset_is_refused():
    raw = utils.Dataset()
    raw.add_class("arrays", 1, "thing")
    with pytest.raises(ValueError, match=r"train_dataset is not prepared: call "
                                         r"train_dataset.prepare\(\)"):
        data.check_dataset(raw, SmallConfig(), "train_dataset")
    raw.prepare()
    with pytest.raises(ValueError, match="train_dataset has no images"):
        data.check_dataset(raw, SmallConfig(), "train_dataset")


def test_class_id_beyond_num_classes_names_the_image():
    dataset = ClassesDataset(_items(), class_ids=[3])
    with pytest.raises(ValueError, match=r"image 0 .*img0.png.*class id 3.*NUM_CLASSES=2"):
        data.load_image_gt(dataset, SmallConfig(), 0)


def test_train_checks_datasets_before_anything_is_written(tmp_path):
    from tiny_models import TinyConfig
    from mrcnn import model as modellib
    model = modellib.MaskRCNN("training", TinyConfig(), str(tmp_path))
    too_many = ClassesDataset(_items(), extra=5)  # 7 classes, NUM_CLASSES is 4
    with pytest.raises(ValueError, match="set NUM_CLASSES = 7"):
        model.train(too_many, too_many, 0.01, epochs=1, layers="heads", verbose=0)
    assert os.listdir(str(tmp_path)) == []
