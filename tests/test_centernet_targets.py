"""mrcnn.centernet.targets and losses: points, radii, box positives,
heatmaps, the 3x3 candidates and the extra positives against hand-worked
cases; the TensorFlow losses against NumPy re-computations, and images
without instances."""
import numpy as np
import pytest

from mrcnn.centernet import losses, targets

STRIDES = (8, 16)
RANGES = ((0, 20), (20, 1e9))


def _points(image_shape=(64, 64)):
    shapes = targets.level_shapes(image_shape, STRIDES)
    points, strides, levels = targets.level_points(shapes, STRIDES)
    return shapes, points, strides, np.asarray(RANGES)[levels]


def test_points_are_cell_centres_level_row_column():
    shapes = targets.level_shapes((20, 40), STRIDES)
    assert shapes == [(3, 5), (2, 3)]
    points, strides, levels = targets.level_points(shapes, STRIDES)
    assert len(points) == 15 + 6
    np.testing.assert_array_equal(points[:6], [[4, 4], [4, 12], [4, 20], [4, 28], [4, 36],
                                               [12, 4]])
    np.testing.assert_array_equal(points[15:17], [[8, 8], [8, 24]])
    np.testing.assert_array_equal(strides[[0, 14, 15, 20]], [8, 8, 16, 16])
    np.testing.assert_array_equal(levels[[14, 15]], [0, 1])


def test_heatmap_radius():
    # delta = 0.2 / 1.8 = 1/9; 2 delta^2 * area = 2 * 1600 / 81.
    np.testing.assert_allclose(targets.heatmap_radius2([[0, 0, 40, 40], [0, 0, 10, 10]]),
                               [3200 / 81, 16.0])


def test_box_positive_is_the_centre_cell_on_the_level_of_its_size():
    _, points, strides, ranges = _points()
    box = np.array([[8, 8, 40, 40]], np.float64)   # centre (24, 24), half diagonal 22.6
    r2 = targets.heatmap_radius2(box)
    box_target, assigned = targets.box_targets(points, strides, ranges, box, r2)
    positives = np.flatnonzero(assigned >= 0)
    # Level 2 (stride 16, points 8, 24, 40, 56): of the 3x3 around (24, 24),
    # only (24, 24) is strictly inside the box (8 and 40 are on its sides).
    assert positives.tolist() == [64 + 1 * 4 + 1]
    np.testing.assert_allclose(box_target[positives[0]], [1, 1, 1, 1])   # 16 px / stride 16
    assert np.all(box_target[assigned < 0] == -1)


def test_box_positive_3x3_and_ties_go_to_the_nearer_normalised_centre():
    _, points, strides, ranges = _points()
    # Half diagonals 14.1 and 5.7 (< 20): level 1, stride 8, points 4, 12, 20, ...
    # The first box's centre (20, 20) gives the 3x3 of rows / cols 12, 20, 28,
    # all strictly inside it; the second's centre (20, 28) is one of them.
    boxes = np.array([[10, 10, 30, 30], [16, 24, 24, 32]], np.float64)
    r2 = targets.heatmap_radius2(boxes)
    box_target, assigned = targets.box_targets(points, strides, ranges, boxes, r2)
    grid = {(int(p[0]), int(p[1])): i for i, p in enumerate(points[:64])}
    first = {k for k, i in grid.items() if assigned[i] == 0}
    # (20, 28): 64 / 16 = 4 from the first centre, 0 (its centre cell) for the second.
    assert first == {(y, x) for y in (12, 20, 28) for x in (12, 20, 28)} - {(20, 28)}
    assert {k for k, i in grid.items() if assigned[i] == 1} == {(20, 28)}
    assert np.all(assigned[64:] == -1)
    np.testing.assert_allclose(box_target[grid[(20, 28)]], np.array([4, 4, 4, 4]) / 8)
    np.testing.assert_allclose(box_target[grid[(12, 12)]], np.array([2, 2, 18, 18]) / 8)


def test_heatmaps():
    _, points, strides, _ = _points()
    boxes = np.array([[10, 10, 30, 30], [40, 40, 60, 60]], np.float64)
    r2 = targets.heatmap_radius2(boxes)                      # both 16 (min radius 4)
    hm = targets.heatmaps(points, strides, boxes, [2, 2], 3, r2)
    assert hm.shape == (len(points), 2) and not hm[:, 0].any()
    by_point = {(int(p[0]), int(p[1]), int(s)): hm[i, 1] for i, (p, s) in
                enumerate(zip(points, strides))}
    # Exactly 1 at each box's centre cell, on every level.
    assert by_point[(20, 20, 8)] == 1 and by_point[(52, 52, 8)] == 1
    assert by_point[(24, 24, 16)] == 1 and by_point[(56, 56, 16)] == 1
    # Elsewhere exp(-d^2 / r^2) of the nearer centre (no factor 2).
    np.testing.assert_allclose(by_point[(28, 20, 8)], np.exp(-64 / 16), rtol=1e-6)
    # Below 1e-4 is 0: (4, 4) is 512 / 16 = 32 from the first centre.
    assert by_point[(4, 4, 8)] == 0
    # No boxes: zeros (the reference's num_classes fill is a bug).
    assert not targets.heatmaps(points, strides, np.zeros((0, 4)), [], 3, np.zeros(0)).any()


def test_centre_candidates():
    shapes, points, strides, _ = _points()
    box = np.array([[8, 8, 40, 40]], np.float64)
    index, target, valid, forced = targets.centre_candidates(box, shapes, STRIDES, RANGES)
    assert index.shape == (1, 18) and target.shape == (1, 18, 4)
    # Level 1: centre cell (3, 3) (point (28, 28)); level 2: cell (1, 1).
    assert index[0, 4] == 3 * 8 + 3 and index[0, 13] == 64 + 1 * 4 + 1
    np.testing.assert_array_equal(points[index[0, 13]], [24, 24])
    assert forced[0].tolist() == [False] * 13 + [True] + [False] * 4
    # Candidate distances follow the neighbour: row above, left (dy = dx = -1).
    np.testing.assert_allclose(target[0, 9], [0, 0, 2, 2])       # point (8, 8), stride 16
    np.testing.assert_allclose(target[0, 0], [(20 - 8) / 8, (20 - 8) / 8, (40 - 20) / 8,
                                             (40 - 20) / 8])
    # Sides count as inside here (>= 0); everything of this box is on the map.
    assert valid[0].all()
    # Off the map: a box in the corner has no neighbours above / left; the
    # others touch its sides (distance 0 counts as inside here).
    index, _, valid, _ = targets.centre_candidates(np.array([[0, 0, 12, 12.0]]), shapes,
                                                   STRIDES, RANGES)
    assert valid[0, :9].tolist() == [False] * 4 + [True, True, False, True, True]
    assert np.all(index[0][~valid[0]] == 0)


def test_extra_positives_rule():
    loss = np.array([[0.05, 0.3, 0.1, 0.15, 0.19, 0.01, 0.02, 0.03, 0.04, 0.5, 0.06]])
    valid = np.ones_like(loss, bool)
    forced = np.zeros_like(loss, bool)
    # 9th smallest is 0.19 (< 0.2): strictly below it.
    chosen = targets.extra_positives(loss, valid, forced)
    assert chosen[0].tolist() == [v < 0.19 for v in loss[0]]
    # Invalid never, forced always; with fewer than 9 valid the bound is 0.2.
    valid[0, 5:] = False
    forced[0, 9] = True
    chosen = targets.extra_positives(loss, valid, forced)
    assert chosen[0].tolist() == [True, False, True, True, True, False, False, False, False,
                                  True, False]
    assert targets.extra_positives(np.zeros((0, 5)), np.zeros((0, 5), bool),
                                   np.zeros((0, 5), bool)).shape == (0, 5)
    # The TensorFlow twin agrees.
    rng = np.random.default_rng(0)
    loss = rng.uniform(0, 0.4, (3, 4, 45))
    valid = rng.uniform(size=loss.shape) > 0.3
    forced = rng.uniform(size=loss.shape) > 0.9
    np.testing.assert_array_equal(
        np.asarray(losses.extra_positives_graph(loss, valid, forced)),
        targets.extra_positives(loss.reshape(-1, 45), valid.reshape(-1, 45),
                                forced.reshape(-1, 45)).reshape(loss.shape))


def test_giou_loss():
    same = np.array([1.0, 2, 3, 4])
    assert targets.giou_loss(same, same) == pytest.approx(0.0)
    # Point-centred boxes: [1,1,1,1] (2x2) inside [2,2,2,2] (4x4): IoU 1/4.
    assert targets.giou_loss([1, 1, 1, 1], [2, 2, 2, 2]) == pytest.approx(0.75)
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0, 3, (2, 50, 4))
    np.testing.assert_allclose(np.asarray(losses.giou_loss_graph(a, b)),
                               targets.giou_loss(a, b), rtol=1e-5, atol=1e-6)


def _numpy_focal(hm, logits, box_pred, cls, index, target, valid, forced):
    p = np.clip(1 / (1 + np.exp(-logits)), 1e-4, 1 - 1e-4)
    pos, count = 0.0, 0
    for b in range(hm.shape[0]):
        for g in range(cls.shape[1]):
            if cls[b, g] == 0:
                continue
            pred = box_pred[b, index[b, g]]
            rank = targets.giou_loss(pred, target[b, g])
            chosen = targets.extra_positives(rank[None], valid[b, g][None].astype(bool),
                                             forced[b, g][None].astype(bool))[0]
            for k in np.flatnonzero(chosen):
                q = p[b, index[b, g, k], cls[b, g] - 1]
                pos += -np.log(q + 1e-12) * (1 - q) ** 2
                count += 1
    neg = np.sum(-np.log(1 - p + 1e-12) * p ** 2 * (1 - hm) ** 4)
    return (0.25 * pos + 0.75 * neg) / max(count, 1)


def test_focal_and_box_losses_match_numpy_on_a_small_batch():
    rng = np.random.default_rng(2)
    image_shape = (48, 64)
    shapes = targets.level_shapes(image_shape, STRIDES)
    m = sum(h * w for h, w in shapes)
    batch = []
    for boxes, classes in [([[4, 6, 30, 40], [20, 30, 46, 60]], [1, 2]), ([], [])]:
        boxes = np.array(boxes).reshape(-1, 4)
        t = targets.build_targets(image_shape, classes, boxes, 3, STRIDES, RANGES)
        t.update(targets.candidate_targets(image_shape, classes, boxes, STRIDES, RANGES, 3))
        t["gt_class_ids"] = np.pad(np.asarray(classes, np.int32), (0, 3 - len(classes)))
        batch.append(t)
    stack = {key: np.stack([t[key] for t in batch]) for key in batch[0]}
    logits = rng.normal(-2, 1.5, (2, m, 2)).astype(np.float32)
    box_pred = rng.uniform(0, 3, (2, m, 4)).astype(np.float32)
    value = losses.heatmap_focal_loss(
        stack["heatmap"], logits, box_pred, stack["gt_class_ids"], stack["candidate_index"],
        stack["candidate_target"], stack["candidate_valid"], stack["candidate_forced"])
    expected = _numpy_focal(stack["heatmap"], logits.astype(np.float64), box_pred,
                            stack["gt_class_ids"], stack["candidate_index"],
                            stack["candidate_target"], stack["candidate_valid"],
                            stack["candidate_forced"])
    assert float(value) == pytest.approx(expected, rel=1e-4)

    positive = stack["box_target"].max(-1) >= 0
    assert positive[0].any() and not positive[1].any()
    expected_box = targets.giou_loss(box_pred[positive], stack["box_target"][positive]).sum() \
        / positive.sum()
    assert float(losses.box_giou_loss(stack["box_target"], box_pred)) == pytest.approx(
        expected_box, rel=1e-5)


def test_a_batch_without_instances_gives_finite_losses():
    image_shape = (32, 32)
    t = targets.build_targets(image_shape, [], np.zeros((0, 4)), 3, STRIDES, RANGES)
    t.update(targets.candidate_targets(image_shape, [], np.zeros((0, 4)), STRIDES, RANGES, 2))
    t["gt_class_ids"] = np.zeros(2, np.int32)
    assert not t["heatmap"].any() and np.all(t["box_target"] == -1)
    assert not t["candidate_valid"].any() and not t["candidate_forced"].any()
    m = len(t["heatmap"])
    logits = np.full((1, m, 2), -4.6, np.float32)
    box_pred = np.ones((1, m, 4), np.float32)
    focal = losses.heatmap_focal_loss(*[t[k][None] for k in ("heatmap",)], logits, box_pred,
                                      *[t[k][None] for k in ("gt_class_ids", "candidate_index",
                                                             "candidate_target",
                                                             "candidate_valid",
                                                             "candidate_forced")])
    p = 1 / (1 + np.exp(4.6))
    assert float(focal) == pytest.approx(0.75 * m * 2 * -np.log(1 - p) * p ** 2, rel=1e-4)
    assert float(losses.box_giou_loss(t["box_target"][None], box_pred)) == 0.0


def test_candidate_slots_follow_the_given_instances():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 40, 40], [20, 20, 44, 44]], np.float64)
    t = targets.candidate_targets((48, 48), [2, -1, 3], boxes, STRIDES, RANGES, 4)
    assert t["candidate_index"].shape == (4, 18)
    # Slot 1 is a crowd, slot 3 padding: no candidates.
    assert t["candidate_valid"][[0, 2]].any(axis=1).all()
    assert not t["candidate_valid"][[1, 3]].any() and not t["candidate_forced"][[1, 3]].any()
    index, _, _, _ = targets.centre_candidates(boxes[2:], targets.level_shapes((48, 48), STRIDES),
                                                STRIDES, RANGES)
    np.testing.assert_array_equal(t["candidate_index"][2], index[0])
    # Crowds shape neither the heatmap nor the box targets.
    full = targets.build_targets((48, 48), [2, -1, 3], boxes, 4, STRIDES, RANGES)
    alone = targets.build_targets((48, 48), [2, 3], boxes[[0, 2]], 4, STRIDES, RANGES)
    np.testing.assert_array_equal(full["heatmap"], alone["heatmap"])
    np.testing.assert_array_equal(full["box_target"], alone["box_target"])
