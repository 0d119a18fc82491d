"""mrcnn.yolact.detection: the in-graph inference against the NumPy
pipeline (decode, softmax, confidence filter, Fast NMS, assembled and
cropped masks)."""
import numpy as np

from mrcnn.yolact import box_utils
from mrcnn.yolact.detection import YolactDetection, detect_graph


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_detect_graph_matches_the_numpy_pipeline():
    rng = np.random.default_rng(0)
    priors = box_utils.make_priors([(6, 6), (3, 3)], [[16], [32]], [1, 0.5, 2], max_size=64)
    batch, num, classes, k, max_det = 2, len(priors), 4, 5, 12
    loc = rng.normal(0, 0.5, (batch, num, 4)).astype(np.float32)
    conf = rng.normal(0, 2, (batch, num, classes)).astype(np.float32)
    coef = np.tanh(rng.normal(0, 1, (batch, num, k))).astype(np.float32)
    proto = np.maximum(rng.normal(0, 1, (batch, 16, 16, k)), 0).astype(np.float32)
    detections, masks = detect_graph(loc, conf, coef, priors, proto, min_confidence=0.3,
                                     nms_threshold=0.5, top_k=20, max_instances=max_det)
    detections, masks = detections.numpy(), masks.numpy()
    assert detections.shape == (batch, max_det, 6) and masks.shape == (batch, 16, 16, max_det)
    for b in range(batch):
        boxes = box_utils.decode(loc[b], priors)
        scores = _softmax(conf[b])[:, 1:]
        kept = scores.max(1) > 0.3
        scores = np.where(kept[:, None], scores, -1.0)
        e_boxes, e_classes, e_scores, e_index = box_utils.fast_nms(boxes, scores.T, 0.5, 20,
                                                                   max_det)
        real = e_scores >= 0
        n = int(real.sum())
        assert (detections[b, :, 4] > 0).sum() == n
        np.testing.assert_allclose(detections[b, :n, :4], e_boxes[real], rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(detections[b, :n, 4], e_classes[real])
        np.testing.assert_allclose(detections[b, :n, 5], e_scores[real], rtol=1e-5)
        assert not detections[b, n:].any() and not masks[b, ..., n:].any()
        expected = 1 / (1 + np.exp(-(proto[b] @ coef[b][e_index[real]].T)))
        expected = box_utils.crop(expected, e_boxes[real])
        np.testing.assert_allclose(masks[b, ..., :n], expected, rtol=1e-4, atol=1e-5)


def test_nothing_above_the_threshold_gives_no_detections():
    priors = box_utils.make_priors([(2, 2)], [[16]], [1], max_size=64)
    conf = np.zeros((1, 4, 3), np.float32)
    conf[..., 0] = 10.0                    # background everywhere
    layer = YolactDetection(min_confidence=0.05, max_instances=5)
    detections, masks = layer([np.zeros((1, 4, 4), np.float32), conf,
                               np.zeros((1, 4, 2), np.float32), priors,
                               np.ones((1, 8, 8, 2), np.float32)])
    assert not np.asarray(detections).any() and not np.asarray(masks).any()
