"""mrcnn.yolact.box_utils and box_ops: priors, matching, box coding, crop
and Fast NMS against hand-worked cases and independent NumPy computations
(a literal x-first transcription of the reference's match, per-class loops
for Fast NMS)."""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.yolact import box_ops, box_utils

BASE_SCALES = [[24], [48], [96], [192], [384]]
RATIOS = [1, 0.5, 2]


def test_make_priors_hand_worked_and_ordered():
    priors = box_utils.make_priors([(2, 2)], [[24]], RATIOS)
    assert priors.shape == (12, 4) and priors.dtype == np.float32
    # Row 0, column 0, the three ratios: square quirk, h = w = 24 sqrt(r) / 550.
    w = 24 * np.sqrt([1, 0.5, 2]) / 550
    np.testing.assert_allclose(priors[:3], np.stack([[0.25] * 3, [0.25] * 3, w, w], 1),
                               rtol=1e-6)
    # Then column 1 (cx 0.75), then row 1.
    np.testing.assert_allclose(priors[3:6, :2], [[0.25, 0.75]] * 3)
    np.testing.assert_allclose(priors[6:9, :2], [[0.75, 0.25]] * 3)
    true_ratio = box_utils.make_priors([(2, 2)], [[24]], RATIOS, square_anchors=False)
    np.testing.assert_allclose(true_ratio[1, 2:], [24 / np.sqrt(0.5) / 550,
                                                   24 * np.sqrt(0.5) / 550], rtol=1e-6)
    # Scale before ratio, level before row.
    two = box_utils.make_priors([(1, 1), (1, 1)], [[24, 30], [48]], [1, 2])
    np.testing.assert_allclose(two[:, 3] * 550, [24, 24 * np.sqrt(2), 30, 30 * np.sqrt(2),
                                                 48, 48 * np.sqrt(2)], rtol=1e-5)


def test_make_priors_at_550_has_the_references_count():
    shapes = [(69, 69), (35, 35), (18, 18), (9, 9), (5, 5)]
    assert len(box_utils.make_priors(shapes, BASE_SCALES, RATIOS)) == 19248


def test_encode_decode_hand_worked_and_inverse():
    prior = np.array([[0.5, 0.5, 0.2, 0.4]], np.float32)
    box = np.array([[0.45, 0.3, 0.65, 0.7]], np.float32)
    # Centre (0.55, 0.5): dy = 0.05 / (0.1 * 0.2) = 2.5; same size: 0.
    np.testing.assert_allclose(box_utils.encode(box, prior), [[2.5, 0, 0, 0]], atol=1e-5)
    wide = np.array([[0.4, 0.1, 0.6, 0.9]], np.float32)       # h 0.2, w 0.8
    np.testing.assert_allclose(box_utils.encode(wide, prior)[0, 3], np.log(2) / 0.2,
                               rtol=1e-5)
    rng = np.random.default_rng(0)
    priors = box_utils.make_priors([(4, 4)], [[100]], RATIOS)
    deltas = rng.normal(0, 1, (len(priors), 4)).astype(np.float32)
    boxes = box_utils.decode(deltas, priors)
    np.testing.assert_allclose(box_utils.encode(boxes, priors), deltas, atol=1e-4)
    np.testing.assert_allclose(box_ops.decode_graph(deltas, priors).numpy(), boxes, atol=1e-6)


def _reference_match(truths, labels, priors, pos, neg, crowds, crowd_thresh):
    """The reference's match transcribed literally, x first: truths and
    crowds [.., (x1, y1, x2, y2)], priors [.., (cx, cy, w, h)]."""
    decoded = np.concatenate([priors[:, :2] - priors[:, 2:] / 2,
                              priors[:, :2] + priors[:, 2:] / 2], 1)

    def iou(a, b, iscrowd=False):
        lo = np.maximum(a[:, None, :2], b[None, :, :2])
        hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
        inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
        area_a = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None]
        area_b = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[None, :]
        return inter / area_a if iscrowd else inter / (area_a + area_b - inter)

    overlaps = iou(truths, decoded)
    best_truth_overlap, best_truth_idx = overlaps.max(0), overlaps.argmax(0)
    for _ in range(overlaps.shape[0]):
        best_prior_overlap, best_prior_idx = overlaps.max(1), overlaps.argmax(1)
        j = best_prior_overlap.argmax(0)
        i = best_prior_idx[j]
        overlaps[:, i] = -1
        overlaps[j, :] = -1
        best_truth_overlap[i] = 2
        best_truth_idx[i] = j
    conf = labels[best_truth_idx] + 1
    conf[best_truth_overlap < pos] = -1
    conf[best_truth_overlap < neg] = 0
    if crowds is not None:
        crowd = iou(decoded, crowds, iscrowd=True).max(1)
        conf[(conf <= 0) & (crowd > crowd_thresh)] = -1
    matches = truths[best_truth_idx]
    g_c = ((matches[:, :2] + matches[:, 2:]) / 2 - priors[:, :2]) / (0.1 * priors[:, 2:])
    g_wh = np.log((matches[:, 2:] - matches[:, :2]) / priors[:, 2:]) / 0.2
    return np.concatenate([g_c, g_wh], 1), conf, best_truth_idx


def _xy(boxes):
    return np.asarray(boxes)[:, [1, 0, 3, 2]]


@pytest.mark.parametrize("seed", range(5))
def test_match_equals_the_reference_transcription(seed):
    rng = np.random.default_rng(seed)
    priors = box_utils.make_priors([(8, 8), (4, 4)], [[12], [24]], RATIOS, max_size=64)
    count = rng.integers(1, 6)
    corner = rng.uniform(0, 0.7, (count, 2))
    truths = np.concatenate([corner, corner + rng.uniform(0.05, 0.3, (count, 2))], 1)
    class_ids = rng.integers(1, 4, count)
    crowds = np.array([[0.0, 0.0, 0.3, 0.3]]) if seed % 2 else None
    deltas, conf, index = box_utils.match(truths, class_ids, priors, crowd_boxes=crowds)
    ref_deltas, ref_conf, ref_index = _reference_match(
        _xy(truths).astype(np.float64), class_ids - 1, priors[:, [1, 0, 3, 2]].astype(np.float64),
        0.5, 0.4, None if crowds is None else _xy(crowds), 0.7)
    np.testing.assert_array_equal(conf, ref_conf)
    np.testing.assert_array_equal(index, ref_index)
    np.testing.assert_allclose(deltas, ref_deltas[:, [1, 0, 3, 2]], rtol=1e-4, atol=1e-4)
    # Every box is matched to at least one positive prior.
    assert set(index[conf > 0]) == set(range(count))


def test_match_hand_worked_forcing_ties_crowds_and_no_ground_truth():
    # Three priors side by side; box A overlaps prior 0 only, box B prior 1 only.
    priors = np.array([[0.5, 0.1, 0.2, 0.2], [0.5, 0.3, 0.2, 0.2], [0.5, 0.8, 0.2, 0.2]],
                      np.float32)
    a = [0.4, 0.0, 0.6, 0.16]     # IoU with prior 0: 0.16*0.2 / (0.04+0.032-0.032) = 0.8
    b = [0.4, 0.25, 0.6, 0.37]    # IoU with prior 1: 0.024 / 0.04 = 0.6
    _, conf, index = box_utils.match(np.array([a, b]), [1, 2], priors)
    assert conf.tolist() == [1, 2, 0] and index[:2].tolist() == [0, 1]
    # Exact tie: two identical boxes, the first box takes the prior first
    # (lowest index), the second the next best.
    _, conf, index = box_utils.match(np.array([a, a]), [1, 2], priors)
    assert index[0] == 0 and conf[0] == 1 and conf[1] == 2 and index[1] == 1
    # Forcing goes by highest overlap, not box order: box 0 prefers prior 0
    # (IoU 0.82), but box 1 is prior 0 exactly (IoU 1) and is forced first;
    # box 0 then gets prior 1 (0.43, forced to positive). Box order would
    # give prior 0 to box 0.
    pair = np.array([[0.5, 0.1, 0.2, 0.2], [0.5, 0.2, 0.2, 0.2]], np.float32)
    _, conf, index = box_utils.match(np.array([[0.4, 0.02, 0.6, 0.22], [0.4, 0.0, 0.6, 0.2]]),
                                     [1, 2], pair)
    assert index.tolist() == [1, 0] and conf.tolist() == [2, 1]
    # A crowd over prior 2 makes that background prior neutral.
    _, conf, _ = box_utils.match(np.array([a]), [1], priors,
                                 crowd_boxes=np.array([[0.3, 0.65, 0.7, 0.95]]))
    assert conf.tolist() == [1, 0, -1]
    # No ground truth: all background, zero deltas.
    deltas, conf, index = box_utils.match(np.zeros((0, 4)), [], priors)
    assert conf.tolist() == [0, 0, 0] and not deltas.any() and not index.any()


def test_crop_hand_worked_reversed_and_out_of_range():
    masks = np.ones((10, 10, 3), np.float32)
    boxes = np.array([[0.2, 0.3, 0.5, 0.6],        # rows 2..5 -> 1..5, cols 3..6 -> 2..6
                      [0.5, 0.6, 0.2, 0.3],        # the same box, corners reversed
                      [-0.5, -0.5, 2.0, 2.0]])     # beyond the mask: all of it
    out = box_utils.crop(masks, boxes)
    expected = np.zeros((10, 10))
    expected[1:6, 2:7] = 1
    np.testing.assert_array_equal(out[..., 0], expected)
    np.testing.assert_array_equal(out[..., 1], expected)
    np.testing.assert_array_equal(out[..., 2], np.ones((10, 10)))
    np.testing.assert_array_equal(box_utils.crop(masks, boxes, padding=0)[2:5, 3:6, 0], 1)
    assert box_utils.crop(masks, boxes, padding=0)[..., 0].sum() == 9
    np.testing.assert_array_equal(box_ops.crop_graph(tf.constant(masks), boxes).numpy(), out)
    # Batched: [batch, h, w, N] with [batch, N, 4].
    batched = box_ops.crop_graph(tf.constant(np.stack([masks, masks])),
                                 np.stack([boxes, boxes[::-1]])).numpy()
    np.testing.assert_array_equal(batched[1, ..., 0], out[..., 2])


def _loop_fast_nms(boxes, scores, threshold, top_k, max_detections):
    """Per class, per candidate: dropped if any better-scored candidate of
    its class overlaps it more than the threshold."""
    found = []
    for c in range(scores.shape[0]):
        order = sorted(range(scores.shape[1]), key=lambda p: (-scores[c, p], p))[:top_k]
        for rank, p in enumerate(order):
            if all(box_utils.jaccard(boxes[[p]], boxes[[q]])[0, 0] <= threshold
                   for q in order[:rank]):
                found.append((scores[c, p], c + 1, p))
    found.sort(key=lambda item: -item[0])
    return found[:max_detections]


@pytest.mark.parametrize("seed", range(3))
def test_fast_nms_against_a_per_class_loop_and_in_the_graph(seed):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.2, 0.8, (5, 2))
    boxes = np.concatenate([np.repeat(centres, 8, 0) + rng.normal(0, 0.03, (40, 2)) - 0.1,
                            np.repeat(centres, 8, 0) + rng.normal(0, 0.03, (40, 2)) + 0.1], 1)
    scores = rng.uniform(0, 1, (3, 40)).astype(np.float32)
    expected = _loop_fast_nms(boxes, scores, 0.5, 20, 15)
    out_boxes, classes, out_scores, indices = box_utils.fast_nms(boxes, scores, 0.5, 20, 15)
    assert [(c, p) for _, c, p in expected] == list(zip(classes.tolist(), indices.tolist()))
    np.testing.assert_allclose(out_scores, [s for s, _, _ in expected])
    np.testing.assert_allclose(out_boxes, boxes[indices], rtol=1e-6)
    g_boxes, g_classes, g_scores, g_indices, g_valid = [
        t.numpy() for t in box_ops.fast_nms_graph(boxes, scores, 0.5, 20, 15)]
    n = len(expected)
    assert g_valid.sum() == n and g_valid[:n].all()
    np.testing.assert_array_equal(g_classes[:n], classes)
    np.testing.assert_array_equal(g_indices[:n], indices)
    np.testing.assert_allclose(g_scores[:n], out_scores, rtol=1e-6)
    np.testing.assert_allclose(g_boxes[:n], out_boxes, rtol=1e-6)
    assert not g_classes[n:].any() and not g_scores[n:].any()


def test_fast_nms_graph_with_no_candidates():
    boxes, classes, scores, indices, valid = box_ops.fast_nms_graph(
        np.zeros((0, 4), np.float32), np.zeros((3, 0), np.float32), max_detections=4)
    assert boxes.shape == (4, 4) and not valid.numpy().any()
