"""Tests for mrcnn.data: image meta, molding, load_image_gt, RPN and detection
targets, random ROIs and the compatibility data_generator, on hand-made
examples checked against hand-worked values and independent computations."""
import logging
import random

import numpy as np
import pytest
import skimage.transform

from mrcnn import data, utils
from mrcnn.maskrcnn import targets
from mrcnn import backbone
from mrcnn.config import Config


############################################################
#  Fixtures: a tiny synthetic dataset and configs
############################################################

class RectDataset(utils.Dataset):
    """Images filled with a per-image noise pattern; instances are rectangles
    (y1, x1, y2, x2, class_id). A second source makes active_class_ids
    non-trivial."""

    def __init__(self):
        super().__init__()
        self.add_class("rects", 1, "square")
        self.add_class("rects", 2, "bar")
        self.add_class("other", 1, "thing")
        self.load_calls = []

    def add(self, shape, rects, fail=False, mask_shape=None, class_ids=None):
        index = len(self.image_info)
        self.add_image("rects", image_id=index, path="synthetic/img{}.png".format(index),
                       shape=shape, rects=rects, fail=fail, mask_shape=mask_shape,
                       class_ids=class_ids)

    def load_image(self, image_id):
        info = self.image_info[image_id]
        self.load_calls.append(image_id)
        if info["fail"]:
            raise IOError("cannot decode " + info["path"])
        h, w = info["shape"]
        rng = np.random.default_rng(image_id)
        image = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)
        for k, (y1, x1, y2, x2, _) in enumerate(info["rects"]):
            image[y1:y2, x1:x2] = (100 + 40 * k) % 256
        return image

    def load_mask(self, image_id):
        info = self.image_info[image_id]
        h, w = info["mask_shape"] or info["shape"]
        mask = np.zeros((h, w, len(info["rects"])), dtype=bool)
        for k, (y1, x1, y2, x2, _) in enumerate(info["rects"]):
            mask[y1:y2, x1:x2, k] = True
        class_ids = info["class_ids"]
        if class_ids is None:
            class_ids = [r[4] for r in info["rects"]]
        return mask, np.array(class_ids, dtype=np.int32)


def make_dataset(*images):
    dataset = RectDataset()
    for kwargs in images:
        dataset.add(**kwargs)
    dataset.prepare()
    return dataset


RECTS = [(10, 20, 40, 60, 1), (50, 90, 90, 140, 2), (0, 0, 20, 30, 1)]


class SquareConfig(Config):
    NAME = "test"
    NUM_CLASSES = 4  # BG, rects.1, rects.2, other.1
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 128
    MINI_MASK_SHAPE = (16, 16)


class TinyConfig(Config):
    NAME = "tiny"
    NUM_CLASSES = 4
    IMAGES_PER_GPU = 2
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    RPN_TRAIN_ANCHORS_PER_IMAGE = 32
    MAX_GT_INSTANCES = 4
    TRAIN_ROIS_PER_IMAGE = 16
    MINI_MASK_SHAPE = (14, 14)
    MASK_POOL_SIZE = 7
    MASK_SHAPE = [14, 14]


############################################################
#  Image meta, molding, backbone shapes
############################################################

def test_compose_image_meta_layout_and_parse_round_trip():
    meta = data.compose_image_meta(7, (100, 150, 3), (128, 128, 3), (21, 0, 106, 128),
                                   0.8533, [1, 1, 0, 1])
    assert meta.dtype == np.float32 and meta.shape == (12 + 4,)
    assert meta[0] == 7
    np.testing.assert_array_equal(meta[1:4], [100, 150, 3])
    np.testing.assert_array_equal(meta[4:7], [128, 128, 3])
    np.testing.assert_array_equal(meta[7:11], [21, 0, 106, 128])
    assert meta[11] == np.float32(0.8533)
    np.testing.assert_array_equal(meta[12:], [1, 1, 0, 1])

    other = data.compose_image_meta(3, (50, 60, 3), (64, 64, 3), (0, 2, 64, 62), 1, [1, 0, 1, 0])
    parsed = data.parse_image_meta(np.stack([meta, other]))
    np.testing.assert_array_equal(parsed["image_id"], [7, 3])
    np.testing.assert_array_equal(parsed["original_image_shape"], [[100, 150, 3], [50, 60, 3]])
    np.testing.assert_array_equal(parsed["image_shape"], [[128, 128, 3], [64, 64, 3]])
    np.testing.assert_array_equal(parsed["window"], [[21, 0, 106, 128], [0, 2, 64, 62]])
    np.testing.assert_allclose(parsed["scale"], [0.8533, 1.0], rtol=1e-6)
    np.testing.assert_array_equal(parsed["active_class_ids"], [[1, 1, 0, 1], [1, 0, 1, 0]])
    for key in ("image_id", "original_image_shape", "image_shape", "window",
                "active_class_ids"):
        assert parsed[key].dtype == np.int32, key
    assert parsed["scale"].dtype == np.float32
    with pytest.raises(ValueError, match="window"):
        data.compose_image_meta(1, (1, 2, 3), (1, 2, 3), (0, 0, 1), 1.0, [1])


def test_mold_unmold_round_trip():
    config = SquareConfig()
    images = np.random.default_rng(0).integers(0, 256, (2, 9, 7, 3)).astype(np.uint8)
    molded = data.mold_image(images, config)
    assert molded.dtype == np.float32
    np.testing.assert_allclose(molded, images - np.array([123.7, 116.8, 103.9]), atol=1e-4)
    np.testing.assert_array_equal(data.unmold_image(molded, config), images)
    # Out-of-range values clip instead of wrapping around.
    np.testing.assert_array_equal(
        data.unmold_image(np.full((1, 1, 3), 500.0), config), [[[255, 255, 255]]])


def test_compute_backbone_shapes():
    config = TinyConfig()
    np.testing.assert_array_equal(backbone.compute_backbone_shapes(config, (100, 64, 3)),
                                  [[25, 16], [13, 8], [7, 4], [4, 2], [2, 1]])
    config.BACKBONE = lambda *a: None
    config.COMPUTE_BACKBONE_SHAPE = lambda shape: [[shape[0], shape[1]]]
    assert backbone.compute_backbone_shapes(config, (10, 20, 3)) == [[10, 20]]


############################################################
#  load_image_gt
############################################################

def test_load_image_gt_square_mode_shapes_meta_and_boxes():
    dataset = make_dataset(dict(shape=(100, 150), rects=RECTS))
    image, meta, class_ids, bbox, mask = data.load_image_gt(dataset, SquareConfig(), 0)
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    assert mask.shape == (128, 128, 3) and mask.dtype == bool
    assert class_ids.dtype == np.int32 and bbox.dtype == np.int32
    np.testing.assert_array_equal(class_ids, [1, 2, 1])
    np.testing.assert_array_equal(bbox, utils.extract_bboxes(mask))
    # By hand: scale = 128 / 150, resized to 85 x 128, padded 21 on top.
    scale = 128 / 150
    parsed = data.parse_image_meta(meta[None])
    np.testing.assert_allclose(parsed["scale"], [scale], rtol=1e-6)
    np.testing.assert_array_equal(parsed["window"], [[21, 0, 106, 128]])
    np.testing.assert_array_equal(parsed["original_image_shape"], [[100, 150, 3]])
    np.testing.assert_array_equal(parsed["image_shape"], [[128, 128, 3]])
    np.testing.assert_array_equal(parsed["active_class_ids"], [[1, 1, 1, 0]])
    expected = np.array([[r[0] * scale + 21, r[1] * scale, r[2] * scale + 21, r[3] * scale]
                         for r in RECTS])
    assert np.abs(bbox - expected).max() <= 1
    assert not image[:21].any() and not image[106:].any()


def test_load_image_gt_mini_mask():
    dataset = make_dataset(dict(shape=(100, 150), rects=RECTS))
    _, _, class_ids, bbox, mask = data.load_image_gt(dataset, SquareConfig(), 0,
                                                     use_mini_mask=True)
    assert mask.shape == (16, 16, 3) and mask.dtype == bool
    assert mask.all()  # rectangles fill their boxes
    assert bbox.shape == (3, 4)


def test_load_image_gt_crop_drops_instances_outside(monkeypatch):
    config = SquareConfig()
    config.IMAGE_RESIZE_MODE = "crop"
    # resize_image picks the crop with random.randint: take the bottom-right one.
    monkeypatch.setattr(random, "randint", lambda low, high: high)
    dataset = make_dataset(dict(shape=(100, 150), rects=RECTS))
    original = dataset.load_image(0)
    image, meta, class_ids, bbox, mask = data.load_image_gt(dataset, config, 0)
    # Crop rows 36..100, columns 86..150; rects 0 and 2 lie outside it.
    np.testing.assert_array_equal(image, original[36:100, 86:150])
    np.testing.assert_array_equal(class_ids, [2])
    np.testing.assert_array_equal(bbox, [[50 - 36, 90 - 86, 90 - 36, 140 - 86]])
    assert mask.shape == (64, 64, 1)
    np.testing.assert_array_equal(data.parse_image_meta(meta)["window"], [0, 0, 64, 64])


def test_load_image_gt_validates_load_mask():
    dataset = make_dataset(dict(shape=(100, 150), rects=RECTS, mask_shape=(90, 150)),
                           dict(shape=(100, 150), rects=RECTS, class_ids=[1, 2]))
    with pytest.raises(ValueError) as info:
        data.load_image_gt(dataset, SquareConfig(), 0)
    message = str(info.value)
    assert "image 0" in message and "synthetic/img0.png" in message
    assert "(90, 150, 3)" in message and "(100, 150, 3)" in message
    with pytest.raises(ValueError, match="2 class ids for 3 masks"):
        data.load_image_gt(dataset, SquareConfig(), 1)


def test_load_image_gt_no_instances():
    dataset = make_dataset(dict(shape=(100, 150), rects=[]))
    _, _, class_ids, bbox, mask = data.load_image_gt(dataset, SquareConfig(), 0,
                                                     use_mini_mask=True)
    assert class_ids.shape == (0,) and bbox.shape == (0, 4) and mask.shape == (16, 16, 0)


def test_load_image_gt_albumentations_flip_moves_masks():
    import albumentations as A
    dataset = make_dataset(dict(shape=(100, 150), rects=RECTS))
    config = SquareConfig()
    image, _, class_ids, bbox, mask = data.load_image_gt(dataset, config, 0)
    f_image, _, f_class_ids, f_bbox, f_mask = data.load_image_gt(
        dataset, config, 0, augmentation=A.HorizontalFlip(p=1))
    width = image.shape[1]
    assert f_image.dtype == np.uint8 and f_mask.dtype == bool
    assert f_image[30, 5, 0] == image[30, width - 1 - 5, 0]
    np.testing.assert_array_equal(f_image, image[:, ::-1])
    np.testing.assert_array_equal(f_mask, mask[:, ::-1])
    np.testing.assert_array_equal(f_class_ids, class_ids)
    np.testing.assert_array_equal(
        f_bbox, np.stack([bbox[:, 0], width - bbox[:, 3], bbox[:, 2], width - bbox[:, 1]], 1))

    both = A.Compose([A.HorizontalFlip(p=1), A.VerticalFlip(p=1)])
    b_image, _, _, _, b_mask = data.load_image_gt(dataset, config, 0, augmentation=both)
    np.testing.assert_array_equal(b_image, image[::-1, ::-1])
    np.testing.assert_array_equal(b_mask, mask[::-1, ::-1])

    with pytest.raises(ValueError, match="changed the image"):
        data.load_image_gt(dataset, config, 0,
                           augmentation=A.Compose([A.RandomCrop(32, 32)]))


def test_load_image_gt_callable_augmentation_and_imgaug_rejected():
    dataset = make_dataset(dict(shape=(100, 150), rects=RECTS))
    config = SquareConfig()
    image, _, _, bbox, mask = data.load_image_gt(dataset, config, 0)
    u_image, _, _, u_bbox, u_mask = data.load_image_gt(
        dataset, config, 0, augmentation=lambda im, m: (np.flipud(im), np.flipud(m)))
    np.testing.assert_array_equal(u_image, image[::-1])
    np.testing.assert_array_equal(u_mask, mask[::-1])
    np.testing.assert_array_equal(u_bbox[:, [1, 3]], bbox[:, [1, 3]])

    with pytest.raises(ValueError, match="changed the image"):
        data.load_image_gt(dataset, config, 0, augmentation=lambda im, m: (im, m[:64]))

    class Fliplr:  # looks like an imgaug augmenter
        def __call__(self, *args, **kwargs):
            raise AssertionError("must not be called")
    Fliplr.__module__ = "imgaug.augmenters.flip"
    with pytest.raises(TypeError, match="albumentations"):
        data.load_image_gt(dataset, config, 0, augmentation=Fliplr())


def test_select_instances():
    class_ids = np.arange(1, 7, dtype=np.int32)
    bbox = np.arange(24).reshape(6, 4)
    mask = np.zeros((5, 5, 6), bool)
    mask[0, 0] = class_ids % 2 == 0
    c, b, m = data.select_instances(class_ids, bbox, mask, 4, np.random.default_rng(0))
    assert c.shape == (4,) and b.shape == (4, 4) and m.shape == (5, 5, 4)
    assert np.all(np.diff(c) > 0) and len(set(c)) == 4  # distinct, original order
    np.testing.assert_array_equal(b, bbox[c - 1])
    np.testing.assert_array_equal(m[0, 0], c % 2 == 0)
    same = data.select_instances(class_ids, bbox, mask, 6)
    assert same[0] is class_ids


############################################################
#  build_rpn_targets
############################################################

class RpnConfig(Config):
    NAME = "rpn"
    NUM_CLASSES = 3
    RPN_TRAIN_ANCHORS_PER_IMAGE = 16


GT1 = [0, 0, 20, 20]
GT2 = [100, 100, 120, 120]
CROWD = [300, 300, 340, 340]
ANCHORS = np.array([
    GT1,                   # 0: equal to GT1 -> positive
    [0, 5, 20, 25],        # 1: IoU 0.6 with GT1, not its best -> neutral
    [100, 110, 120, 130],  # 2: IoU 1/3 with GT2, tied best -> positive
    [110, 100, 130, 120],  # 3: IoU 1/3 with GT2, tied best -> positive
    [200, 200, 220, 220],  # 4: far from everything -> negative
    [300, 300, 320, 320],  # 5: IoU 0.25 with the crowd only -> neutral
    [0, 14, 20, 34],       # 6: IoU 0.18 with GT1 -> negative
    [0, 0, 20, 25],        # 7: IoU 0.8 with GT1 -> positive
], dtype=np.float64)


def test_build_rpn_targets_hand_made():
    config = RpnConfig()
    gt_class_ids = np.array([1, 2, -1, 0])
    gt_boxes = np.array([GT1, GT2, CROWD, [0, 0, 0, 0]])  # last row: zero padding
    match, deltas = targets.build_rpn_targets((400, 400, 3), ANCHORS, gt_class_ids,
                                           gt_boxes, config)
    assert match.dtype == np.int32 and deltas.dtype == np.float32
    assert deltas.shape == (16, 4)
    np.testing.assert_array_equal(match, [1, 0, 1, 1, -1, 0, -1, 1])
    # Deltas of the positives in anchor order, to their best GT box.
    expected = utils.box_refinement(ANCHORS[[0, 2, 3, 7]], np.array([GT1, GT2, GT2, GT1]))
    expected = expected / config.RPN_BBOX_STD_DEV
    np.testing.assert_allclose(deltas[:4], expected, rtol=1e-6, atol=1e-6)
    # By hand for anchor 7: centre x 12.5 -> 10, width 25 -> 20.
    np.testing.assert_allclose(deltas[3], [0, -2.5 / 25 / 0.1, 0, np.log(0.8) / 0.2], atol=1e-6)
    assert not deltas[4:].any()

    # Without the crowd, anchor 5 is a plain negative.
    match, _ = targets.build_rpn_targets((400, 400, 3), ANCHORS, gt_class_ids[:2],
                                      gt_boxes[:2], config)
    assert match[5] == -1


def test_build_rpn_targets_caps_positives_and_fills_negatives():
    config = RpnConfig()
    config.RPN_TRAIN_ANCHORS_PER_IMAGE = 8
    near = np.array([[0, 0, 20, 20 + k] for k in range(6)], dtype=np.float64)  # IoU >= 0.76
    far = np.array([[200 + 3 * k, 200, 220 + 3 * k, 220] for k in range(30)], dtype=np.float64)
    anchors = np.concatenate([near, far])
    gt_boxes = np.array([GT1])
    match, deltas = targets.build_rpn_targets((400, 400, 3), anchors, np.array([1]), gt_boxes,
                                           config, rng=np.random.default_rng(1))
    positive = np.flatnonzero(match == 1)
    assert len(positive) == 4 and set(positive) <= set(range(6))
    assert np.sum(match == -1) == 4 and np.all(match[6:] <= 0)
    assert np.sum(match != 0) == 8
    np.testing.assert_allclose(
        deltas[:4], utils.box_refinement(anchors[positive], gt_boxes[[0, 0, 0, 0]])
        / config.RPN_BBOX_STD_DEV, atol=1e-6)
    again, _ = targets.build_rpn_targets((400, 400, 3), anchors, np.array([1]), gt_boxes,
                                      config, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(again, match)


def test_build_rpn_targets_without_gt_boxes():
    config = RpnConfig()
    anchors = np.array([[10 * k, 0, 10 * k + 8, 8] for k in range(40)], dtype=np.float64)
    match, deltas = targets.build_rpn_targets((400, 400, 3), anchors, np.zeros([0], np.int32),
                                           np.zeros([0, 4], np.int32), config)
    assert np.sum(match == -1) == 16 and np.sum(match == 1) == 0
    assert not deltas.any()
    # Only a crowd: anchors touching it are neutral, the rest negative.
    match, _ = targets.build_rpn_targets((400, 400, 3), anchors[:10], np.array([-1]),
                                      np.array([[0, 0, 25, 8]]), config)
    np.testing.assert_array_equal(match, [0, 0, 0] + [-1] * 7)


############################################################
#  generate_random_rois and build_detection_targets
############################################################

def test_generate_random_rois():
    gt_boxes = np.array([[10, 20, 40, 60], [50, 90, 90, 140]], dtype=np.int32)
    rois = targets.generate_random_rois((100, 150, 3), 50, np.array([1, 2]), gt_boxes,
                                     rng=np.random.default_rng(0))
    assert rois.shape == (50, 4) and rois.dtype == np.int32
    assert np.all(rois[:, :2] >= 0) and np.all(rois[:, 2] <= 100) and np.all(rois[:, 3] <= 150)
    assert np.all(rois[:, 2] > rois[:, 0]) and np.all(rois[:, 3] > rois[:, 1])
    # 22 per GT box inside the box grown by its own size, clipped to the image.
    first, second = rois[:22], rois[22:44]
    assert np.all(first[:, 0] >= 0) and np.all(first[:, 2] <= 70)
    assert np.all(first[:, 1] >= 0) and np.all(first[:, 3] <= 100)
    assert np.all(second[:, 0] >= 10) and np.all(second[:, 2] <= 100)
    assert np.all(second[:, 1] >= 40) and np.all(second[:, 3] <= 150)
    # No GT boxes: all random. Corners are drawn from [0, side) as in the
    # original, so a 2-pixel-high image gives rows 0..1.
    rois = targets.generate_random_rois((2, 30, 3), 20, np.zeros(0), np.zeros((0, 4)))
    assert rois.shape == (20, 4)
    np.testing.assert_array_equal(rois[:, [0, 2]], np.tile([0, 1], (20, 1)))


def detection_setup():
    """Two GT instances with non-rectangular masks in a 128x128 image."""
    yy, xx = np.mgrid[:128, :128]
    masks = np.zeros((128, 128, 2), bool)
    masks[..., 0] = (yy >= 10) & (yy < 50) & (xx >= 10) & (xx < 60) & (xx - 10 <= (yy - 10) * 1.25)
    masks[..., 1] = ((yy - 90) / 20.0) ** 2 + ((xx - 90) / 30.0) ** 2 <= 1
    class_ids = np.array([1, 2], np.int32)
    boxes = utils.extract_bboxes(masks)
    rng = np.random.default_rng(3)
    background = []
    while len(background) < 40:  # small boxes with IoU < 0.5 with both GTs
        y, x = rng.integers(0, 110, 2)
        box = np.array([[y, x, y + 12, x + 12]])
        if utils.compute_overlaps(box, boxes).max() < 0.5:
            background.append(box[0])
    return masks, class_ids, boxes, np.array(background, np.int32)


class HeadConfig(Config):
    NAME = "heads"
    NUM_CLASSES = 3
    IMAGE_MAX_DIM = 128
    IMAGE_MIN_DIM = 128
    TRAIN_ROIS_PER_IMAGE = 30
    ROI_POSITIVE_RATIO = 0.33
    USE_MINI_MASK = False


def test_build_detection_targets_roi_equal_to_gt_gets_gt_mask():
    masks, class_ids, boxes, background = detection_setup()
    config = HeadConfig()
    rpn_rois = np.concatenate([boxes, background]).astype(np.int32)
    rois, roi_class_ids, deltas, mask_targets = targets.build_detection_targets(
        rpn_rois, class_ids, boxes, masks, config, rng=np.random.default_rng(0))
    assert rois.shape == (30, 4) and roi_class_ids.shape == (30,)
    assert deltas.shape == (30, 3, 4) and mask_targets.shape == (30, 28, 28, 3)
    assert roi_class_ids.dtype == np.int32
    assert sorted(roi_class_ids[roi_class_ids > 0]) == [1, 2]
    for j in range(2):
        i = np.flatnonzero(np.all(rois == boxes[j], axis=1))[0]
        assert roi_class_ids[i] == class_ids[j]
        y1, x1, y2, x2 = boxes[j]
        expected = skimage.transform.resize(masks[y1:y2, x1:x2, j].astype(float), (28, 28),
                                            order=1, mode="constant", anti_aliasing=False)
        np.testing.assert_allclose(mask_targets[i, :, :, class_ids[j]], expected, atol=1e-5)
        others = [c for c in range(3) if c != class_ids[j]]
        assert not mask_targets[i][..., others].any() and not deltas[i].any()
    background_rows = roi_class_ids == 0
    assert not mask_targets[background_rows].any() and not deltas[background_rows].any()

    # Mini-masks give (nearly) the same targets.
    config.USE_MINI_MASK = True
    mini = utils.minimize_mask(boxes, masks, config.MINI_MASK_SHAPE)
    m_rois, m_ids, _, m_targets = targets.build_detection_targets(
        rpn_rois, class_ids, boxes, mini, config, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(m_rois, rois)
    agree = (m_targets > 0.5) == (mask_targets > 0.5)
    assert agree.mean() > 0.99


def test_build_detection_targets_ratio_and_box_targets():
    masks, class_ids, boxes, background = detection_setup()
    config = HeadConfig()
    rng = np.random.default_rng(5)
    jittered, owner = [], []
    for j in range(2):
        for _ in range(20):
            jittered.append(boxes[j] + rng.integers(-2, 3, 4))
            owner.append(j)
    rpn_rois = np.concatenate([np.array(jittered), background]).astype(np.int32)
    owner_of = {tuple(r): j for r, j in zip(rpn_rois[:40], owner)}
    rois, roi_class_ids, deltas, _ = targets.build_detection_targets(
        rpn_rois, class_ids, boxes, masks, config, rng=rng)
    positive = np.flatnonzero(roi_class_ids > 0)
    assert len(positive) == int(30 * 0.33)  # 9 of 30: about ROI_POSITIVE_RATIO
    for i in positive:
        j = owner_of[tuple(rois[i])]
        assert roi_class_ids[i] == class_ids[j]
        expected = utils.box_refinement(rois[i:i + 1], boxes[j:j + 1])[0] / config.BBOX_STD_DEV
        np.testing.assert_allclose(deltas[i, class_ids[j]], expected, atol=1e-6)
        assert not np.delete(deltas[i], class_ids[j], axis=0).any()
    with pytest.raises(ValueError, match="instances"):
        targets.build_detection_targets(rpn_rois, np.array([0, -1]), boxes, masks, config)


############################################################
#  data_generator
############################################################

TINY_RECTS = [(4, 4, 30, 30, 1), (34, 10, 60, 40, 2)]
MANY_RECTS = [(2 + 10 * k, 2, 8 + 10 * k, 20, 1 + k % 2) for k in range(6)]
NUM_ANCHORS = (16 * 16 + 8 * 8 + 4 * 4 + 2 * 2 + 1) * 3


def tiny_dataset(fail=()):
    specs = [TINY_RECTS, [], [(5, 5, 30, 30, -1)], MANY_RECTS]
    return make_dataset(*[dict(shape=(64, 64), rects=r, fail=i in fail)
                          for i, r in enumerate(specs)])


def test_data_generator_batch_shapes_and_skips_images_without_instances():
    config = TinyConfig()
    gen = targets.data_generator(tiny_dataset(), config, shuffle=False, batch_size=2)
    inputs, outputs = next(gen)
    assert outputs == [] and len(inputs) == 7
    images, metas, rpn_match, rpn_bbox, class_ids, boxes, masks = inputs
    assert images.shape == (2, 64, 64, 3) and images.dtype == np.float32
    assert metas.shape == (2, 12 + 4) and metas.dtype == np.float32
    assert rpn_match.shape == (2, NUM_ANCHORS, 1) and rpn_match.dtype == np.int32
    assert rpn_bbox.shape == (2, 32, 4)
    assert class_ids.shape == (2, 4) and class_ids.dtype == np.int32
    assert boxes.shape == (2, 4, 4) and boxes.dtype == np.int32
    assert masks.shape == (2, 14, 14, 4) and masks.dtype == bool
    # Images 1 (no instances) and 2 (crowd only) are skipped.
    np.testing.assert_array_equal(data.parse_image_meta(metas)["image_id"], [0, 3])
    np.testing.assert_array_equal(class_ids[0], [1, 2, 0, 0])
    np.testing.assert_array_equal(boxes[0, :2], [r[:4] for r in TINY_RECTS])
    assert not boxes[0, 2:].any() and not masks[0, :, :, 2:].any()
    assert np.all(class_ids[1] > 0)  # 6 instances subsampled to MAX_GT_INSTANCES
    np.testing.assert_allclose(images[0] + config.MEAN_PIXEL,
                               tiny_dataset().load_image(0), atol=1e-4)
    assert np.all((rpn_match == 1).sum(axis=(1, 2)) > 0)


def test_data_generator_detection_targets_and_full_masks():
    config = TinyConfig()
    config.USE_MINI_MASK = False
    gen = targets.data_generator(tiny_dataset(), config, shuffle=True, batch_size=2,
                              random_rois=20, detection_targets=True)
    inputs, outputs = next(gen)
    assert len(inputs) == 9 and len(outputs) == 3
    assert inputs[6].shape == (2, 64, 64, 4)
    assert inputs[7].shape == (2, 20, 4) and inputs[8].shape == (2, 16, 4)
    assert outputs[0].shape == (2, 16, 1)
    assert outputs[1].shape == (2, 16, 4, 4)
    assert outputs[2].shape == (2, 16, 14, 14, 4)


def test_data_generator_logs_and_skips_failing_images(caplog):
    dataset = tiny_dataset(fail=(3,))
    gen = targets.data_generator(dataset, TinyConfig(), shuffle=False, batch_size=2)
    with caplog.at_level(logging.WARNING, logger="mrcnn.data"):
        inputs, _ = next(gen)
    np.testing.assert_array_equal(data.parse_image_meta(inputs[1])["image_id"], [0, 0])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "image 3" in warnings[0].getMessage()
    assert "synthetic/img3.png" in warnings[0].getMessage()


def test_data_generator_raises_after_five_consecutive_failures(caplog):
    dataset = make_dataset(*[dict(shape=(64, 64), rects=TINY_RECTS, fail=True)
                             for _ in range(8)])
    gen = targets.data_generator(dataset, TinyConfig(), shuffle=False)
    with caplog.at_level(logging.WARNING, logger="mrcnn.data"), \
            pytest.raises(IOError, match="cannot decode"):
        next(gen)
    assert dataset.load_calls == [0, 1, 2, 3, 4]


def test_data_generator_without_any_instances_raises():
    dataset = make_dataset(dict(shape=(64, 64), rects=[]), dict(shape=(64, 64), rects=[]))
    with pytest.raises(ValueError, match="no usable image"):
        next(targets.data_generator(dataset, TinyConfig()))
