"""Head layers: the fast full-window convolution and ROI folding."""
import numpy as np


def test_full_window_conv_equals_conv2d():
    import keras
    from mrcnn.maskrcnn.heads import FullWindowConv2D
    x = np.random.default_rng(1).normal(size=(5, 7, 7, 6)).astype(np.float32)
    fast = FullWindowConv2D(4, (7, 7), padding="valid", activation="relu")
    plain = keras.layers.Conv2D(4, (7, 7), padding="valid", activation="relu")
    fast.build(x.shape)
    plain.build(x.shape)
    plain.set_weights(fast.get_weights())
    np.testing.assert_allclose(fast(x).numpy(), plain(x).numpy(), rtol=1e-5, atol=1e-5)
    assert [w.shape for w in fast.weights] == [(7, 7, 6, 4), (4,)]
    # A larger input falls back to the ordinary convolution.
    big = np.random.default_rng(2).normal(size=(2, 9, 9, 6)).astype(np.float32)
    np.testing.assert_allclose(fast(big).numpy(), plain(big).numpy(), rtol=1e-5, atol=1e-5)


def test_roi_distributed_folds_rois_into_the_batch():
    import keras
    from mrcnn.roi_heads import RoiDistributed
    x = np.random.default_rng(3).normal(size=(2, 5, 4, 4, 3)).astype(np.float32)
    layer = RoiDistributed(keras.layers.Conv2D(2, 3, padding="same"), name="mrcnn_mask_conv1")
    out = layer(x).numpy()
    assert out.shape == (2, 5, 4, 4, 2)
    inner = layer.layer
    for b in range(2):
        for r in range(5):
            np.testing.assert_allclose(out[b, r], inner(x[b, r][None]).numpy()[0],
                                       rtol=1e-5, atol=1e-5)
    # The wrapper's weights are the wrapped layer's (as TimeDistributed's were).
    assert [w.shape for w in layer.weights] == [(3, 3, 3, 2), (2,)]
    restored = RoiDistributed.from_config(layer.get_config())
    assert restored.name == "mrcnn_mask_conv1"
