"""Tests for mrcnn.utils against hand-worked examples and independent
computations (pycocotools, scipy, scikit-image, plain loops)."""
import random

import numpy as np
import pytest
import scipy.ndimage
import skimage.transform
from pycocotools import mask as coco_mask

from mrcnn import utils


def random_boxes(rng, n, size=256, min_side=4, max_side=80, dtype=np.float32):
    yx = rng.uniform(0, size - max_side, (n, 2))
    hw = rng.uniform(min_side, max_side, (n, 2))
    return np.concatenate([yx, yx + hw], axis=1).astype(dtype)


def random_masks(rng, n, shape=(64, 80)):
    """Rectangles and ellipses of random size, some overlapping."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    masks = np.zeros((h, w, n), dtype=bool)
    for i in range(n):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(3, h / 3), rng.uniform(3, w / 3)
        if i % 2:
            masks[..., i] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        else:
            masks[..., i] = (abs(yy - cy) <= ry) & (abs(xx - cx) <= rx)
    return masks


def coco_box_iou(boxes1, boxes2):
    """IoU via pycocotools (xywh boxes, no +1)."""
    to_xywh = lambda b: np.stack([b[:, 1], b[:, 0], b[:, 3] - b[:, 1],  # noqa: E731
                                  b[:, 2] - b[:, 0]], 1).astype(np.float64)
    return np.asarray(coco_mask.iou(to_xywh(boxes1), to_xywh(boxes2),
                                    np.zeros(len(boxes2), np.uint8)))


############################################################
# Boxes
############################################################

def test_extract_bboxes_hand_worked():
    mask = np.zeros((10, 12, 3), dtype=bool)
    mask[2:5, 3:7, 0] = True        # box (2, 3, 5, 7)
    mask[9, 11, 1] = True           # single pixel at the corner
    boxes = utils.extract_bboxes(mask)   # instance 2 empty
    assert boxes.dtype == np.int32
    np.testing.assert_array_equal(boxes, [[2, 3, 5, 7], [9, 11, 10, 12], [0, 0, 0, 0]])


def test_extract_bboxes_empty_and_random_against_loop():
    assert utils.extract_bboxes(np.zeros((5, 5, 0), bool)).shape == (0, 4)
    masks = random_masks(np.random.default_rng(0), 12)
    boxes = utils.extract_bboxes(masks)
    for i in range(masks.shape[-1]):
        ys, xs = np.nonzero(masks[..., i])
        assert tuple(boxes[i]) == (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
    with pytest.raises(ValueError, match="height, width, instances"):
        utils.extract_bboxes(np.zeros((5, 5)))


def test_compute_iou_hand_worked():
    box = np.array([0, 0, 10, 10])
    boxes = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [20, 20, 30, 30], [0, 0, 5, 10]])
    area = 100
    areas = np.array([100, 100, 100, 50])
    np.testing.assert_allclose(utils.compute_iou(box, boxes, area, areas),
                               [1.0, 25 / 175, 0.0, 0.5])


def test_compute_overlaps_matches_pycocotools_and_compute_iou():
    rng = np.random.default_rng(1)
    b1, b2 = random_boxes(rng, 40), random_boxes(rng, 25)
    overlaps = utils.compute_overlaps(b1, b2)
    assert overlaps.shape == (40, 25) and overlaps.dtype == np.float64
    np.testing.assert_allclose(overlaps, coco_box_iou(b1, b2), rtol=1e-5, atol=1e-6)
    # Bit-identical to the original's column-by-column compute_iou.
    a1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    a2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
    for j in range(len(b2)):
        np.testing.assert_array_equal(overlaps[:, j], utils.compute_iou(b2[j], b1, a2[j], a1))


def test_compute_overlaps_integer_boxes_and_empty():
    b = np.array([[0, 0, 2, 2], [1, 1, 3, 3]], dtype=np.int32)
    np.testing.assert_allclose(utils.compute_overlaps(b, b), [[1, 1 / 7], [1 / 7, 1]])
    assert utils.compute_overlaps(np.zeros((0, 4)), b).shape == (0, 2)
    assert utils.compute_overlaps(b, np.zeros((0, 4))).shape == (2, 0)


def test_compute_overlaps_masks_matches_pycocotools():
    rng = np.random.default_rng(2)
    m1, m2 = random_masks(rng, 7), random_masks(rng, 5)
    ours = utils.compute_overlaps_masks(m1, m2)
    rle1 = coco_mask.encode(np.asfortranarray(m1.astype(np.uint8)))
    rle2 = coco_mask.encode(np.asfortranarray(m2.astype(np.uint8)))
    expected = np.asarray(coco_mask.iou(rle1, rle2, np.zeros(5, np.uint8)))
    np.testing.assert_allclose(ours, expected, rtol=1e-6)


def test_compute_overlaps_masks_hand_worked_and_empty():
    m1 = np.zeros((4, 4, 2), bool)
    m1[:2, :2, 0] = True          # 4 px
    m2 = np.zeros((4, 4, 1), bool)
    m2[:2, :, 0] = True           # 8 px, contains m1[0]
    np.testing.assert_allclose(utils.compute_overlaps_masks(m1, m2), [[0.5], [0.0]])
    # An empty mask against an empty mask is 0, not NaN (the original: NaN).
    empty = np.zeros((4, 4, 1), bool)
    assert utils.compute_overlaps_masks(empty, empty)[0, 0] == 0.0
    assert utils.compute_overlaps_masks(np.zeros((4, 4, 0)), m2).shape == (0, 1)
    assert utils.compute_overlaps_masks(m1, np.zeros((4, 4, 0))).shape == (2, 0)
    with pytest.raises(ValueError, match="same height and width"):
        utils.compute_overlaps_masks(m1, np.zeros((5, 4, 1), bool))


def greedy_nms_reference(boxes, scores, threshold):
    """Greedy NMS over a precomputed pycocotools IoU matrix."""
    order = scores.argsort()[::-1]
    iou = coco_box_iou(boxes, boxes)
    keep = []
    for i in order:
        if all(iou[i, k] <= threshold for k in keep):
            keep.append(i)
    return np.array(keep)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_non_max_suppression_against_greedy_reference(threshold):
    rng = np.random.default_rng(3)
    boxes = random_boxes(rng, 700, size=300)   # > 2 blocks of 256
    scores = rng.random(700).astype(np.float32)
    keep = utils.non_max_suppression(boxes, scores, threshold)
    assert keep.dtype == np.int32
    np.testing.assert_array_equal(keep, greedy_nms_reference(boxes, scores, threshold))


def test_non_max_suppression_hand_worked():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]])
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    # IoU(box3, box0) = 0.9 > 0.5 -> box0 removed; box1 vs box3: 72/(90+100-72) = 0.61
    np.testing.assert_array_equal(utils.non_max_suppression(boxes, scores, 0.5), [3, 2])
    np.testing.assert_array_equal(utils.non_max_suppression(boxes, scores, 0.95), [3, 0, 1, 2])
    assert utils.non_max_suppression(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)
    with pytest.raises(ValueError, match="4 boxes but 3 scores"):
        utils.non_max_suppression(boxes, scores[:3], 0.5)


def test_box_refinement_and_apply_box_deltas_round_trip():
    rng = np.random.default_rng(4)
    boxes = random_boxes(rng, 30)
    gt = random_boxes(rng, 30)
    deltas = utils.box_refinement(boxes, gt)
    # Hand-worked: box (0,0,10,10) to (5,5,25,25): centre (5,5)->(15,15),
    # size 10 -> 20: dy = dx = 1.0, dh = dw = log 2.
    np.testing.assert_allclose(utils.box_refinement(np.array([[0, 0, 10, 10]]),
                                                    np.array([[5, 5, 25, 25]])),
                               [[1, 1, np.log(2), np.log(2)]], rtol=1e-6)
    np.testing.assert_allclose(utils.apply_box_deltas(boxes, deltas), gt, rtol=1e-4, atol=1e-3)
    assert utils.apply_box_deltas(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0, 4)


def test_box_refinement_graph_matches_numpy():
    rng = np.random.default_rng(5)
    boxes, gt = random_boxes(rng, 10), random_boxes(rng, 10)
    graph = utils.box_refinement_graph(boxes, gt).numpy()
    np.testing.assert_allclose(graph, utils.box_refinement(boxes, gt), rtol=1e-5, atol=1e-6)


############################################################
# Resizing
############################################################

def skimage_resize_image(image, scale, out_shape):
    return skimage.transform.resize(image, out_shape, order=1, mode="constant",
                                    preserve_range=True, anti_aliasing=False)


def test_resize_image_square_matches_original_semantics():
    rng = np.random.default_rng(6)
    image = rng.integers(0, 256, (48, 64, 3)).astype(np.uint8)
    out, window, scale, padding, crop = utils.resize_image(image, min_dim=80, max_dim=128)
    # min side 48 -> 80 gives scale 5/3, long side 107 <= 128
    assert scale == pytest.approx(80 / 48)
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    assert window == (24, 10, 104, 117)
    assert padding == [(24, 24), (10, 11), (0, 0)]
    assert crop is None
    expected = skimage_resize_image(image, scale, (80, 107)).astype(np.uint8)
    inner = out[24:104, 10:117].astype(int)
    assert np.abs(inner - expected).max() <= 1
    assert (out[:24] == 0).all() and (out[:, :10] == 0).all() and (out[:, 117:] == 0).all()


def test_resize_image_max_dim_limits_scale():
    image = np.zeros((100, 400, 3), np.uint8)
    out, window, scale, padding, _ = utils.resize_image(image, min_dim=200, max_dim=256)
    assert scale == pytest.approx(256 / 400)
    assert out.shape == (256, 256, 3)
    assert window == (96, 0, 160, 256)


def test_resize_image_none_pad64_and_crop():
    image = np.full((50, 70, 3), 7, np.uint8)
    out, window, scale, padding, crop = utils.resize_image(image, mode="none")
    assert out is image and window == (0, 0, 50, 70) and scale == 1
    out, window, scale, padding, crop = utils.resize_image(image, min_dim=64, mode="pad64")
    # scale 64/50 -> 64 x 90 -> padded to 64 x 128
    assert out.shape == (64, 128, 3)
    assert padding == [(0, 0), (19, 19), (0, 0)]
    assert window == (0, 19, 64, 109)
    out, window, scale, padding, crop = utils.resize_image(image, mode="pad64")
    assert out.shape == (64, 128, 3) and scale == 1 and window == (7, 29, 57, 99)
    # crop mode on an image smaller than the crop: scaled up, then cropped.
    random.seed(0)
    out, window, scale, padding, crop = utils.resize_image(image, min_dim=128, mode="crop")
    assert out.shape == (128, 128, 3) and window == (0, 0, 128, 128)
    assert crop[2:] == (128, 128) and 0 <= crop[1] <= round(70 * 128 / 50) - 128
    # Integer pixels are rounded (a flat image stays flat away from the
    # original image border, which bilinear "constant" mode darkens).
    y, x = crop[:2]
    scaled_h, scaled_w = 128, round(70 * 128 / 50)
    border = np.zeros(out.shape[:2], bool)
    border[0] |= y == 0
    border[-1] |= y + 128 == scaled_h
    border[:, 0] |= x == 0
    border[:, -1] |= x + 128 == scaled_w
    assert (out[~border] == 7).all()


def test_resize_image_errors_and_grayscale():
    image = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="Mode bogus not supported"):
        utils.resize_image(image, 64, 64, mode="bogus")
    with pytest.raises(ValueError, match="multiple of 64"):
        utils.resize_image(image, min_dim=50, mode="pad64")
    with pytest.raises(ValueError, match="crop mode needs min_dim"):
        utils.resize_image(image, mode="crop")
    with pytest.raises(ValueError, match="non-zero sides"):
        utils.resize_image(np.zeros((0, 10, 3)), 64, 64)
    gray, window, *_ = utils.resize_image(np.ones((32, 16), np.uint8), 64, 64)
    assert gray.shape == (64, 64) and window == (0, 16, 64, 48)


def test_resize_matches_skimage_on_float_and_bool():
    rng = np.random.default_rng(7)
    image = rng.random((13, 17, 2))
    for shape in [(40, 31), (5, 9), (13, 17)]:
        expected = skimage.transform.resize(image, shape, order=1, mode="constant",
                                            anti_aliasing=False)
        np.testing.assert_allclose(utils.resize(image, shape), expected, atol=1e-12)
    mask = rng.random((11, 7)) > 0.5
    expected = skimage.transform.resize(mask.astype(float), (28, 28), order=1,
                                        mode="constant", anti_aliasing=False)
    np.testing.assert_allclose(utils.resize(mask, (28, 28)), expected, atol=1e-6)
    # Other modes go to scikit-image unchanged.
    expected = skimage.transform.resize(image, (20, 20), order=0, mode="edge")
    np.testing.assert_array_equal(utils.resize(image, (20, 20), order=0, mode="edge"), expected)


def test_resize_mask_matches_scipy_nearest_zoom():
    rng = np.random.default_rng(8)
    mask = random_masks(rng, 3, shape=(31, 45))
    for scale in [0.37, 1.0, 1.6, 3.3]:
        padding = [(2, 3), (4, 1), (0, 0)]
        out = utils.resize_mask(mask, scale, padding)
        zoomed = scipy.ndimage.zoom(mask, [scale, scale, 1], order=0, mode="nearest")
        np.testing.assert_array_equal(out, np.pad(zoomed, padding))
    out = utils.resize_mask(mask, 2.0, None, crop=(5, 6, 20, 30))
    zoomed = scipy.ndimage.zoom(mask, [2, 2, 1], order=0, mode="nearest")
    np.testing.assert_array_equal(out, zoomed[5:25, 6:36])


def test_minimize_expand_mask_round_trip_and_zero_area_error():
    mask = np.zeros((64, 64, 2), bool)
    mask[10:42, 8:40, 0] = True     # a full box: survives exactly
    mask[30:50, 30:60, 1] = True
    mask[30:35, 30:35, 1] = False   # a notch
    bbox = utils.extract_bboxes(mask)
    mini = utils.minimize_mask(bbox, mask, (16, 16))
    assert mini.shape == (16, 16, 2) and mini.dtype == bool
    expected = np.around(skimage.transform.resize(
        mask[30:50, 30:60, 1].astype(float), (16, 16), order=1, mode="constant",
        anti_aliasing=False)).astype(bool)
    np.testing.assert_array_equal(mini[..., 1], expected)
    full = utils.expand_mask(bbox, mini, (64, 64, 3))
    assert full.shape == (64, 64, 2)
    iou = utils.compute_overlaps_masks(full, mask).diagonal()
    assert iou[0] > 0.9 and iou[1] > 0.85
    bad = bbox.copy()
    bad[1] = [5, 5, 5, 9]
    with pytest.raises(ValueError, match="instance 1 has a bounding box with zero area"):
        utils.minimize_mask(bad, mask, (16, 16))
    assert utils.minimize_mask(np.zeros((0, 4), int), np.zeros((8, 8, 0)), (4, 4)).shape == (4, 4, 0)


def test_unmold_mask_places_resized_mask_in_box():
    small = np.zeros((4, 4), np.float32)
    small[:, :2] = 0.9           # left half on
    full = utils.unmold_mask(small, (2, 4, 10, 12), (16, 20, 3))
    assert full.shape == (16, 20) and full.dtype == bool
    assert full[2:10, 4:7].all() and not full[2:10, 9:12].any()
    assert not full[:2].any() and not full[10:].any() and not full[:, :4].any()
    # Degenerate box: nothing drawn, no error.
    assert not utils.unmold_mask(small, (3, 3, 3, 8), (16, 20)).any()


############################################################
# Anchors
############################################################

def test_generate_anchors_hand_worked():
    anchors = utils.generate_anchors([8], [0.5, 1, 2], [2, 2], 4, 1)
    assert anchors.shape == (12, 4)
    # First cell (0, 0): ratio 0.5 is tall: h = 8/sqrt(.5), w = 8*sqrt(.5)
    h, w = 8 / np.sqrt(0.5), 8 * np.sqrt(0.5)
    np.testing.assert_allclose(anchors[0], [-h / 2, -w / 2, h / 2, w / 2])
    np.testing.assert_allclose(anchors[1], [-4, -4, 4, 4])
    # Order: row-major over cells, ratios fastest: cell (0, 1) centre x = 4.
    np.testing.assert_allclose(anchors[3], [-h / 2, 4 - w / 2, h / 2, 4 + w / 2])
    np.testing.assert_allclose(anchors[4], [-4, 0, 4, 8])
    np.testing.assert_allclose(anchors[7], [4 - 4, -4, 4 + 4, 4])   # cell (1, 0), ratio 1


def test_generate_pyramid_anchors_counts_and_order():
    shapes = [[16, 16], [8, 8], [4, 4], [2, 2], [1, 1]]
    anchors = utils.generate_pyramid_anchors((8, 16, 32, 64, 128), [0.5, 1, 2], shapes,
                                             [4, 8, 16, 32, 64], 1)
    assert anchors.shape == (3 * (256 + 64 + 16 + 4 + 1), 4)
    # Scale of level 0 first, then level 1 ...
    sides = np.sqrt((anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1]))
    np.testing.assert_allclose(sides[:768], 8)
    np.testing.assert_allclose(sides[768:768 + 192], 16)
    np.testing.assert_allclose(sides[-3:], 128)
    with pytest.raises(ValueError, match="one of each per pyramid level"):
        utils.generate_pyramid_anchors((8, 16), [1], shapes, [4, 8, 16, 32, 64], 1)


def test_anchor_stride_two_skips_cells():
    anchors = utils.generate_anchors([8], [1], [4, 4], 4, 2)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    np.testing.assert_allclose(centres, [[0, 0], [0, 8], [8, 0], [8, 8]])


############################################################
# Evaluation
############################################################

def test_trim_zeros():
    x = np.array([[0, 0], [1, 0], [0, 0], [0, 2]])
    np.testing.assert_array_equal(utils.trim_zeros(x), [[1, 0], [0, 2]])
    with pytest.raises(ValueError):
        utils.trim_zeros(np.zeros(3))


def make_instances():
    """Three GT squares; predictions: a perfect match, a wrong class, a
    duplicate of GT 0, and a miss."""
    masks = np.zeros((40, 40, 3), bool)
    masks[0:10, 0:10, 0] = True
    masks[0:10, 20:30, 1] = True
    masks[20:30, 0:10, 2] = True
    gt_boxes = utils.extract_bboxes(masks)
    gt_class_ids = np.array([1, 1, 2])
    pred_masks = np.zeros((40, 40, 4), bool)
    pred_masks[..., 0] = masks[..., 0]                 # matches GT 0
    pred_masks[0:10, 20:30, 1] = True                  # GT 1's place, wrong class
    pred_masks[0:10, 1:10, 2] = True                   # duplicate of GT 0
    pred_masks[30:40, 30:40, 3] = True                 # background
    pred_boxes = utils.extract_bboxes(pred_masks)
    pred_class_ids = np.array([1, 2, 1, 2])
    pred_scores = np.array([0.9, 0.8, 0.95, 0.6])
    return gt_boxes, gt_class_ids, masks, pred_boxes, pred_class_ids, pred_scores, pred_masks


def test_compute_matches_hand_worked():
    gt_match, pred_match, overlaps = utils.compute_matches(*make_instances())
    # Score order: 0.95 (dup of GT0, IoU .9), 0.9 (GT0), 0.8 (wrong class), 0.6 (miss)
    np.testing.assert_array_equal(pred_match, [0, -1, -1, -1])
    np.testing.assert_array_equal(gt_match, [0, -1, -1])
    assert overlaps.shape == (4, 3)
    assert overlaps[0, 0] == pytest.approx(0.9)
    assert overlaps[1, 0] == pytest.approx(1.0)


def test_compute_matches_takes_best_free_gt_of_same_class():
    masks = np.zeros((20, 20, 2), bool)
    masks[0:10, 0:10, 0] = True
    masks[0:10, 2:12, 1] = True
    pred = np.zeros((20, 20, 1), bool)
    pred[0:10, 1:11, 0] = True
    gt_boxes = utils.extract_bboxes(masks)
    # Both GTs overlap the prediction equally well (IoU 9/11); the tie goes
    # to the higher index, as the original's reversed argsort did.
    gt_match, pred_match, _ = utils.compute_matches(
        gt_boxes, np.array([1, 1]), masks, utils.extract_bboxes(pred), np.array([1]),
        np.array([0.5]), pred)
    np.testing.assert_array_equal(pred_match, [1])
    # With GT 1 of another class, GT 0 is taken.
    gt_match, pred_match, _ = utils.compute_matches(
        gt_boxes, np.array([1, 3]), masks, utils.extract_bboxes(pred), np.array([1]),
        np.array([0.5]), pred)
    np.testing.assert_array_equal(pred_match, [0])
    # score_threshold above the IoU: no match.
    _, pred_match, _ = utils.compute_matches(
        gt_boxes, np.array([1, 1]), masks, utils.extract_bboxes(pred), np.array([1]),
        np.array([0.5]), pred, score_threshold=0.9)
    np.testing.assert_array_equal(pred_match, [-1])


def test_compute_ap_hand_worked():
    ap, precisions, recalls, overlaps = utils.compute_ap(*make_instances())
    # Predictions in score order: hit, miss, miss, miss; 3 GT.
    # precision = [1, .5, .33, .25], recall = [1/3]*4 -> AP = 1/3 * 1.
    assert ap == pytest.approx(1 / 3)
    np.testing.assert_allclose(recalls, [0, 1 / 3, 1 / 3, 1 / 3, 1 / 3, 1], rtol=1e-6)
    np.testing.assert_allclose(precisions, [1, 1, 0.5, 1 / 3, 0.25, 0])


def test_compute_ap_two_step_curve():
    # Precisions 1, 1/2, 2/3 at recalls 1/2, 1/2, 1 -> envelope makes 2/3 on
    # the second step: AP = 1/2 * 1 + 1/2 * 2/3.
    masks = np.zeros((30, 30, 2), bool)
    masks[0:10, 0:10, 0] = True
    masks[20:30, 20:30, 1] = True
    pred = np.zeros((30, 30, 3), bool)
    pred[..., 0] = masks[..., 0]
    pred[10:15, 10:15, 1] = True
    pred[..., 2] = masks[..., 1]
    ap, *_ = utils.compute_ap(utils.extract_bboxes(masks), np.array([1, 1]), masks,
                              utils.extract_bboxes(pred), np.array([1, 1, 1]),
                              np.array([0.9, 0.8, 0.7]), pred)
    assert ap == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_compute_ap_empty_inputs():
    gt = make_instances()
    none_pred = (np.zeros((0, 4)), np.zeros(0, int), np.zeros(0), np.zeros((40, 40, 0), bool))
    ap, precisions, recalls, overlaps = utils.compute_ap(*gt[:3], *none_pred)
    assert ap == 0.0 and overlaps.shape == (0, 3)
    # No ground truth: 0.0, not NaN (the original divided by zero).
    no_gt = (np.zeros((0, 4)), np.zeros(0, int), np.zeros((40, 40, 0), bool))
    ap, precisions, recalls, overlaps = utils.compute_ap(*no_gt, *gt[3:])
    assert ap == 0.0 and not np.isnan(recalls).any()
    ap, *_ = utils.compute_ap(*no_gt, *none_pred)
    assert ap == 0.0


def test_compute_ap_range_accepts_arrays_and_lists(capsys):
    inst = make_instances()
    per_threshold = [utils.compute_ap(*inst, iou_threshold=t)[0] for t in (0.5, 0.95)]
    for thresholds in (np.array([0.5, 0.95]), [0.5, 0.95], (0.5, 0.95)):
        assert utils.compute_ap_range(*inst, iou_thresholds=thresholds, verbose=0) == \
            pytest.approx(np.mean(per_threshold))
    ap = utils.compute_ap_range(*inst, verbose=1)
    out = capsys.readouterr().out
    assert "AP @0.50:" in out and "AP @0.50-0.95:" in out
    # Default thresholds 0.5, 0.55, ... 0.95. The duplicate (score .95, IoU
    # .9) is the hit up to 0.85 (AP 1/3); from arange's 0.9000000000000001
    # on, the exact prediction (2nd by score) is: AP 1/6. Mean: 0.3.
    assert ap == pytest.approx(0.3)


def test_compute_recall():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]])
    pred = np.array([[0, 0, 10, 10], [0, 0, 10, 11], [20, 20, 26, 30], [60, 60, 70, 70]])
    recall, positive_ids = utils.compute_recall(pred, gt, 0.5)
    assert recall == pytest.approx(2 / 3)
    np.testing.assert_array_equal(positive_ids, [0, 1, 2])
    assert utils.compute_recall(np.zeros((0, 4)), gt, 0.5)[0] == 0.0
    assert utils.compute_recall(pred, np.zeros((0, 4)), 0.5)[0] == 0.0


############################################################
# Coordinates and download
############################################################

def test_norm_denorm_boxes_hand_worked():
    boxes = np.array([[0, 0, 128, 256], [10, 20, 30, 40]])
    norm = utils.norm_boxes(boxes, (128, 256))
    np.testing.assert_allclose(norm[0], [0, 0, 1, 1])
    np.testing.assert_allclose(norm[1], [10 / 127, 20 / 255, 29 / 127, 39 / 255], rtol=1e-6)
    np.testing.assert_array_equal(utils.denorm_boxes(norm, (128, 256)), boxes)
    assert utils.norm_boxes(np.zeros((0, 4)), (10, 10)).shape == (0, 4)


def test_download_trained_weights_from_local_file(tmp_path):
    source = tmp_path / "served.h5"
    source.write_bytes(b"\x89HDF\r\n\x1a\n" + b"w" * 1000)
    target = tmp_path / "weights" / "mask_rcnn_coco.h5"
    path = utils.download_trained_weights(str(target), verbose=0, url=source.as_uri())
    assert path == str(target)
    assert target.read_bytes() == source.read_bytes()
    assert not (tmp_path / "weights" / "mask_rcnn_coco.h5.part").exists()


def test_download_trained_weights_offline_error_keeps_existing_file(tmp_path):
    target = tmp_path / "mask_rcnn_coco.h5"
    target.write_bytes(b"good weights")
    url = "http://127.0.0.1:9/mask_rcnn_coco.h5"     # discard port: refused
    with pytest.raises(utils.WeightsDownloadError) as info:
        utils.download_trained_weights(str(target), verbose=0, url=url)
    message = str(info.value)
    assert url in message and str(target) in message and "internet" in message
    assert target.read_bytes() == b"good weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask_rcnn_coco.h5"]
