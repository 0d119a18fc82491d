"""mrcnn.yolact.heads: shapes, prior order, weight sharing across levels,
activations, and float32 outputs under mixed precision."""
import keras
import numpy as np

from mrcnn.yolact import box_utils, heads


def _model(levels=((8, 8), (4, 4), (2, 2)), depth=16, anchors=3, classes=4, k=5):
    inputs = [keras.Input((h, w, depth)) for h, w in levels]
    loc, conf, coef = heads.prediction_graph(inputs, anchors, classes, k, channels=8)
    protos = heads.protonet_graph(inputs[0], k, channels=8)
    segm = heads.semantic_segmentation_graph(inputs[0], classes)
    return keras.Model(inputs, [loc, conf, coef, protos, segm])


def test_shapes_follow_the_priors():
    levels = ((8, 8), (4, 4), (2, 2))
    model = _model(levels)
    rng = np.random.default_rng(0)
    values = [rng.normal(size=(2, h, w, 16)).astype(np.float32) for h, w in levels]
    loc, conf, coef, protos, segm = model(values)
    priors = box_utils.make_priors(levels, [[8], [16], [32]], [1, 0.5, 2], max_size=64)
    assert loc.shape == (2, len(priors), 4) and conf.shape == (2, len(priors), 4)
    assert coef.shape == (2, len(priors), 5)
    assert protos.shape == (2, 16, 16, 5) and segm.shape == (2, 8, 8, 3)
    assert np.all(np.abs(coef) <= 1) and np.all(np.asarray(protos) >= 0)


def test_the_head_is_shared_and_rows_follow_level_row_column_anchor():
    levels = ((4, 4), (2, 2))
    model = _model(levels)
    names = ["yolact_upfeature", "yolact_bbox", "yolact_conf", "yolact_coef"]
    # One layer (one set of weights) per convolution, used by every level.
    for name in names:
        assert sum(1 for layer in model.layers if layer.name == name) == 1, name
    assert len(model.weights) == 2 * len(names) + 2 * 5 + 2  # + protonet (5 convs), semantic

    def head(level):
        x = model.get_layer("yolact_upfeature")(level)
        outputs = [np.asarray(model.get_layer(n)(x)) for n in names[1:]]
        return [o.reshape(o.shape[0], -1, size) for o, size in zip(outputs, (4, 4, 5))]

    # The concatenated outputs are the head's outputs of level 0 then of
    # level 1, rows location-major, anchor-minor (as make_priors).
    rng = np.random.default_rng(1)
    level0 = rng.normal(size=(1, 4, 4, 16)).astype(np.float32)
    level1 = rng.normal(size=(1, 2, 2, 16)).astype(np.float32)
    loc, conf, coef, _, _ = model([level0, level1])
    np.testing.assert_allclose(conf[0, :48], head(level0)[1][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loc[0, 48:], head(level1)[0][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(coef[0, 48:], head(level1)[2][0], rtol=1e-5, atol=1e-6)


def test_outputs_stay_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = _model()
    finally:
        keras.config.set_dtype_policy(previous)
    values = [np.zeros((1, h, w, 16), np.float32) for h, w in ((8, 8), (4, 4), (2, 2))]
    assert all(np.asarray(o).dtype == np.float32 for o in model(values))
