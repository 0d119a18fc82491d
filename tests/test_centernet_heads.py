"""mrcnn.centernet.heads and detection: the towers shared across levels,
the initial class probability, the per-level scale and clamp; inference
against a NumPy statement of the reference's (per-level top-k, decoding,
clipping, class-aware NMS)."""
import keras
import numpy as np

from mrcnn import utils
from mrcnn.centernet import detection, heads, targets
from mrcnn.image_meta import compose_image_meta

LEVELS = ((8, 8), (4, 4))


def _model(classes=4, channels=32):
    keras.utils.set_random_seed(0)
    inputs = [keras.Input((h, w, 16)) for h, w in LEVELS]
    logits, distances, level_logits, level_distances = heads.centernet_head_graph(
        inputs, classes, channels=channels, tower_convs=2, groups=8)
    return keras.Model(inputs, [logits, distances] + level_logits + level_distances)


def test_head_is_shared_starts_at_probability_001_and_clamps_distances():
    model = _model()
    for name in ("centernet_class_conv1", "centernet_box_gn2", "centernet_class_logits",
                 "centernet_box"):
        assert sum(1 for layer in model.layers if layer.name == name) == 1, name
    assert {l.name for l in model.layers if l.name.startswith("centernet_scale")} == {
        "centernet_scale_p3", "centernet_scale_p4"}
    assert not model.get_layer("centernet_class_conv1").use_bias
    rng = np.random.default_rng(0)
    values = [rng.normal(size=(2, h, w, 16)).astype(np.float32) for h, w in LEVELS]
    logits, distances, l3, l4, d3, d4 = [np.asarray(o) for o in model(values)]
    assert logits.shape == (2, 64 + 16, 3) and distances.shape == (2, 80, 4)
    np.testing.assert_allclose(logits[:, :64], l3.reshape(2, 64, 3), rtol=1e-6)
    np.testing.assert_allclose(distances[:, 64:], d4.reshape(2, 16, 4), rtol=1e-6)
    # Kernels of N(0, 0.01): every class starts near sigmoid(bias) = 0.01
    # (logits spread by about 0.01 * sqrt(9 * 32) = 0.17 around the bias).
    prob = 1 / (1 + np.exp(-logits))
    assert abs(np.median(prob) - 0.01) < 0.001 and 0.003 < prob.min() and prob.max() < 0.03
    assert distances.min() >= 0
    # The scale of P4 multiplies P4's distances only.
    model.get_layer("centernet_scale_p4").scale.assign(2.0)
    _, distances2 = [np.asarray(o) for o in model(values)[:2]]
    np.testing.assert_allclose(distances2[:, :64], distances[:, :64], rtol=1e-6)
    np.testing.assert_allclose(distances2[:, 64:], 2 * distances[:, 64:], rtol=1e-5, atol=1e-7)


def _numpy_detect(level_logits, level_distances, strides, window, shape, threshold,
                  top_k, iou, count):
    boxes_all, scores_all, classes_all = [], [], []
    for logits, distances, stride in zip(level_logits, level_distances, strides):
        h, w, c = logits.shape
        points, _, _ = targets.level_points([(h, w)], [stride])
        d = distances.reshape(-1, 4) * stride
        boxes = np.concatenate([points - d[:, :2], points + d[:, 2:]], axis=1)
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], window[0], window[2])
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], window[1], window[3])
        scores = (1 / (1 + np.exp(-logits))).reshape(-1)
        order = np.argsort(-scores, kind="stable")[:top_k]
        boxes_all.append(boxes[order // c])
        scores_all.append(scores[order])
        classes_all.append(order % c + 1)
    boxes, scores, classes = (np.concatenate(v) for v in (boxes_all, scores_all, classes_all))
    ok = (scores > threshold) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, scores, classes = boxes[ok], scores[ok], classes[ok]
    kept = []
    for c in np.unique(classes):
        ix = np.flatnonzero(classes == c)
        kept += list(ix[utils.non_max_suppression(boxes[ix], scores[ix], iou)])
    kept = sorted(kept, key=lambda i: -scores[i])[:count]
    norm = utils.norm_boxes(boxes[kept], shape)
    return np.concatenate([norm, classes[kept, None], scores[kept, None]], axis=1)


def test_detection_matches_the_numpy_statement():
    rng = np.random.default_rng(3)
    shape = (64, 64)
    window = np.array([8, 0, 56, 64])
    level_logits = [rng.normal(-1, 2, (h, w, 3)).astype(np.float32) for h, w in LEVELS]
    level_distances = [rng.uniform(0, 2, (h, w, 4)).astype(np.float32) for h, w in LEVELS]
    meta = compose_image_meta(0, (48, 64, 3), (64, 64, 3), window, 1.0, np.zeros(4))
    layer = detection.CenterNetDetection(strides=(8, 16), min_confidence=0.3, pre_nms_top_k=20,
                                         nms_threshold=0.5, max_instances=12)
    out = np.asarray(layer([x[None] for x in level_logits] + [x[None] for x in level_distances]
                           + [meta[None].astype(np.float32)]))
    assert out.shape == (1, 12, 6)
    expected = _numpy_detect(level_logits, level_distances, (8, 16), window, shape, 0.3, 20,
                             0.5, 12)
    n = len(expected)
    assert 0 < n <= 12
    np.testing.assert_allclose(out[0, :n], expected, rtol=1e-5, atol=1e-5)
    assert not out[0, n:].any()
    # Same layer, another image size: the points follow the maps.
    bigger = [rng.normal(-1, 2, (1, 2 * h, 2 * w, 3)).astype(np.float32) for h, w in LEVELS]
    far = [rng.uniform(0, 2, (1, 2 * h, 2 * w, 4)).astype(np.float32) for h, w in LEVELS]
    meta = compose_image_meta(0, (128, 128, 3), (128, 128, 3), [0, 0, 128, 128], 1.0,
                              np.zeros(4))
    out = np.asarray(layer(bigger + far + [meta[None].astype(np.float32)]))
    expected = _numpy_detect([x[0] for x in bigger], [x[0] for x in far], (8, 16),
                             [0, 0, 128, 128], (128, 128), 0.3, 20, 0.5, 12)
    np.testing.assert_allclose(out[0, :len(expected)], expected, rtol=1e-5, atol=1e-5)
