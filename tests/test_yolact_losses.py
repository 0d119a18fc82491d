"""mrcnn.yolact.losses against NumPy re-computations of the reference's
losses on a tiny batch (loops over images and positives, as the reference
does them)."""
import numpy as np
import pytest

from mrcnn.yolact import box_utils, losses


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _batch(seed=0, empty_second=False):
    """Two images, their matched targets and random predictions."""
    rng = np.random.default_rng(seed)
    priors = box_utils.make_priors([(4, 4), (2, 2)], [[20], [40]], [1, 0.5, 2], max_size=64)
    boxes = [np.array([[0.1, 0.1, 0.5, 0.45], [0.5, 0.55, 0.9, 0.95]]),
             np.zeros((0, 4)) if empty_second else np.array([[0.2, 0.3, 0.7, 0.6]])]
    classes = [np.array([1, 3]), np.zeros(0, np.int64) if empty_second else np.array([2])]
    G = 2
    conf_t, loc_t, idx_t = [], [], []
    gt_boxes = np.zeros((2, G, 4), np.float32)
    for b in range(2):
        deltas, conf, index = box_utils.match(boxes[b], classes[b], priors)
        conf_t.append(conf), loc_t.append(deltas), idx_t.append(index)
        gt_boxes[b, :len(boxes[b])] = boxes[b]
    mh = mw = 8
    gt_masks = (rng.uniform(0, 1, (2, mh, mw, G)) > 0.5).astype(np.float32)
    n = len(priors)
    return dict(
        priors=priors, conf_t=np.stack(conf_t), loc_t=np.stack(loc_t), idx_t=np.stack(idx_t),
        gt_boxes=gt_boxes, gt_masks=gt_masks,
        loc_p=rng.normal(0, 1, (2, n, 4)).astype(np.float32),
        conf_p=rng.normal(0, 2, (2, n, 4)).astype(np.float32),
        coef_p=np.tanh(rng.normal(0, 1, (2, n, 5))).astype(np.float32),
        proto=np.maximum(rng.normal(0, 1, (2, mh, mw, 5)), 0).astype(np.float32),
        segm_p=rng.normal(0, 1, (2, 6, 6, 3)).astype(np.float32),
        segm_t=(rng.uniform(0, 1, (2, 6, 6, 3)) > 0.7).astype(np.float32))


def test_box_loss_is_smooth_l1_over_positives():
    d = _batch()
    pos = d["conf_t"] > 0
    diff = np.abs(d["loc_t"] - d["loc_p"])[pos]
    expected = np.where(diff < 1, 0.5 * diff ** 2, diff - 0.5).sum() / pos.sum()
    got = losses.box_loss(d["conf_t"], d["loc_t"], d["loc_p"]).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def _reference_ohem(conf_t, conf_p, ratio=3):
    total = 0.0
    for b in range(conf_t.shape[0]):
        logits = conf_p[b].astype(np.float64)
        top = logits.max(1, keepdims=True)
        lse = np.log(np.exp(logits - top).sum(1)) + top[:, 0]
        mining = lse - logits[:, 0]
        pos, neutral = conf_t[b] > 0, conf_t[b] < 0
        mining[pos] = 0
        mining[neutral] = 0
        order = np.argsort(-mining, kind="stable")
        rank = np.argsort(order, kind="stable")
        num_neg = min(ratio * pos.sum(), len(mining) - 1)
        neg = (rank < num_neg) & ~pos & ~neutral
        chosen = pos | neg
        log_softmax = logits - lse[:, None]
        target = np.maximum(conf_t[b], 0)
        total += -log_softmax[np.arange(len(target)), target][chosen].sum()
    return total / (conf_t > 0).sum()


@pytest.mark.parametrize("seed", range(3))
def test_ohem_class_loss_matches_the_reference(seed):
    d = _batch(seed)
    # Some neutral priors must be present for the check to mean something.
    assert (d["conf_t"] < 0).any() and (d["conf_t"] > 0).any()
    got = losses.ohem_class_loss(d["conf_t"], d["conf_p"]).numpy()
    np.testing.assert_allclose(got, _reference_ohem(d["conf_t"], d["conf_p"]), rtol=1e-5)
    # Neutral priors that look like objects would be the hardest negatives:
    # they must stay out of the loss.
    neutral = d["conf_t"] < 0
    d["conf_p"][neutral, 0], d["conf_p"][neutral, 1] = -10.0, 10.0
    got = losses.ohem_class_loss(d["conf_t"], d["conf_p"]).numpy()
    np.testing.assert_allclose(got, _reference_ohem(d["conf_t"], d["conf_p"]), rtol=1e-5)


def _reference_mask_loss(d):
    total = 0.0
    mh, mw = d["proto"].shape[1:3]
    for b in range(2):
        positives = np.flatnonzero(d["conf_t"][b] > 0)
        if not len(positives):
            continue
        pred = _sigmoid(d["proto"][b].astype(np.float64) @ d["coef_p"][b][positives].T)
        boxes = d["gt_boxes"][b][d["idx_t"][b][positives]]
        pred = box_utils.crop(pred, boxes)
        target = d["gt_masks"][b][..., d["idx_t"][b][positives]]
        p = np.clip(pred, 0, 1)
        with np.errstate(divide="ignore"):  # log(0) -> -inf, clamped at -100 as torch does
            bce = -(target * np.maximum(np.log(p), -100) +
                    (1 - target) * np.maximum(np.log(1 - p), -100))
        area = (boxes[:, 2] - boxes[:, 0]) * mh * (boxes[:, 3] - boxes[:, 1]) * mw
        total += (bce.sum(axis=(0, 1)) / area).sum()
    return total / (d["conf_t"] > 0).sum()


def test_lincomb_mask_loss_matches_the_reference():
    d = _batch()
    got = losses.lincomb_mask_loss(d["conf_t"], d["idx_t"], d["coef_p"], d["proto"],
                                   d["gt_boxes"], d["gt_masks"]).numpy()
    np.testing.assert_allclose(got, _reference_mask_loss(d), rtol=1e-5)


def test_lincomb_mask_loss_subsamples_and_rescales():
    d = _batch()
    # Every positive of an image with the same coefficients and the same box
    # and mask: each one's loss is the same, so any subset, rescaled by
    # positives / masks_to_train, gives the full loss.
    for b in range(2):
        positives = d["conf_t"][b] > 0
        d["coef_p"][b][positives] = d["coef_p"][b][positives][0]
        d["idx_t"][b][positives] = d["idx_t"][b][positives][0]
    assert (d["conf_t"][0] > 0).sum() > 1  # the first image is subsampled
    full = losses.lincomb_mask_loss(d["conf_t"], d["idx_t"], d["coef_p"], d["proto"],
                                    d["gt_boxes"], d["gt_masks"]).numpy()
    one = losses.lincomb_mask_loss(d["conf_t"], d["idx_t"], d["coef_p"], d["proto"],
                                   d["gt_boxes"], d["gt_masks"], masks_to_train=1).numpy()
    np.testing.assert_allclose(one, full, rtol=1e-5)
    np.testing.assert_allclose(full, _reference_mask_loss(d), rtol=1e-5)


def test_semantic_segmentation_loss_matches_numpy():
    d = _batch()
    x, t = d["segm_p"].astype(np.float64), d["segm_t"]
    bce = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
    expected = bce.sum() / 6 / 6 / 2
    got = losses.semantic_segmentation_loss(d["segm_t"], d["segm_p"]).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_losses_of_a_batch_without_instances_are_finite():
    d = _batch(empty_second=True)
    assert not (d["conf_t"][1] > 0).any()  # the first image alone carries the positives
    values = [losses.box_loss(d["conf_t"], d["loc_t"], d["loc_p"]),
              losses.ohem_class_loss(d["conf_t"], d["conf_p"]),
              losses.lincomb_mask_loss(d["conf_t"], d["idx_t"], d["coef_p"], d["proto"],
                                       d["gt_boxes"], d["gt_masks"])]
    assert all(np.isfinite(v.numpy()) for v in values)
    np.testing.assert_allclose(values[2].numpy(), _reference_mask_loss(d), rtol=1e-5)
    # No positive prior at all: every loss is 0, not NaN.
    none = np.zeros_like(d["conf_t"])
    assert losses.box_loss(none, d["loc_t"], d["loc_p"]).numpy() == 0
    assert losses.ohem_class_loss(none, d["conf_p"]).numpy() == 0
    assert losses.lincomb_mask_loss(none, d["idx_t"], d["coef_p"], d["proto"], d["gt_boxes"],
                                    d["gt_masks"]).numpy() == 0
