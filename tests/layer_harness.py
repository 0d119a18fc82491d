"""One harness for every custom layer: build and call (eagerly and on
symbolic Keras inputs, with the same output shapes), a ``get_config`` round
trip with non-default arguments (the clone has the same config, every
non-default argument is in it under its own name, and with the same
weights it computes the same outputs), Keras serialisation through safe
mode, and the output dtype under the mixed bfloat16 policy."""
import copy

import keras
import numpy as np
import tensorflow as tf


def _as_list(values):
    return list(values) if isinstance(values, (list, tuple)) else [values]


def _numpy(values):
    return [np.asarray(tf.cast(v, tf.float32)) for v in _as_list(values)]


def run_layer_test(layer_cls, init_kwargs, inputs, expected_shapes, mixed_dtype,
                   list_input=False, config_keys=None, deterministic=True):
    """Check a custom layer.

    layer_cls: the class; init_kwargs: non-default constructor arguments (or
        a function returning them, for arguments that are layers: a wrapped
        layer must be new for each construction).
    inputs: list of NumPy arrays (one per layer input).
    expected_shapes: list of output shapes (eager).
    mixed_dtype: the dtype of every output under ``mixed_bfloat16``
        ("float32" for layers that keep float32 outputs, "bfloat16" else).
    list_input: pass the inputs as a list even when there is one.
    config_keys: {config key: expected value} to find in get_config()
        (default: init_kwargs themselves).
    deterministic: False for layers that sample at random (proposal
        sampling): the clone is checked for output shapes, not values.
    """
    def make(**extra):
        kwargs = init_kwargs() if callable(init_kwargs) else init_kwargs
        return layer_cls(**dict(kwargs, **extra))

    def call(layer, values):
        return layer(values if len(values) > 1 or list_input else values[0])

    # Build and call, eagerly.
    layer = make()
    outputs = _as_list(call(layer, [tf.constant(x) for x in inputs]))
    assert [tuple(o.shape) for o in outputs] == [tuple(s) for s in expected_shapes], \
        [tuple(o.shape) for o in outputs]
    reference = _numpy(outputs)

    # Symbolically, inside a functional model: the same shapes, batch free.
    symbolic = [keras.Input(shape=x.shape[1:], dtype=str(x.dtype), batch_size=None)
                for x in inputs]
    sym_outputs = _as_list(call(make(), symbolic))
    for out, shape in zip(sym_outputs, expected_shapes):
        assert len(out.shape) == len(shape)
        for got, want in zip(list(out.shape)[1:], list(shape)[1:]):
            assert got is None or got == want, (out.shape, shape)

    # get_config round trip with non-default arguments.
    config = layer.get_config()
    if config_keys is None:
        config_keys = init_kwargs() if callable(init_kwargs) else init_kwargs
    for key, value in config_keys.items():
        if isinstance(value, keras.layers.Layer):
            continue
        assert key in config, "{} missing from get_config(): {}".format(key, sorted(config))
        got = config[key]
        if isinstance(value, (list, tuple, np.ndarray)):
            np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(value, dtype=float))
        elif callable(value):
            assert got is not None
        else:
            assert got == value, (key, got, value)
    # from_config may consume its argument (Keras's Wrapper pops "layer").
    clone = layer_cls.from_config(copy.deepcopy(config))
    assert clone.get_config() == config
    clone_outputs = _as_list(call(clone, [tf.constant(x) for x in inputs]))
    if layer.weights:
        clone.set_weights(layer.get_weights())
        clone_outputs = _as_list(call(clone, [tf.constant(x) for x in inputs]))
    for a, b in zip(reference, _numpy(clone_outputs)):
        if deterministic:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
        else:
            assert a.shape == b.shape

    # Keras serialisation, deserialised in safe mode.
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer), safe_mode=True)
    assert type(restored) is layer_cls and restored.get_config() == config

    # Output dtype under mixed precision.
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = make()
        values = [tf.constant(x) for x in inputs]
        mixed_outputs = _as_list(call(mixed, values))
    finally:
        keras.config.set_dtype_policy(previous)
    for out in mixed_outputs:
        if out.dtype.is_floating:
            assert out.dtype.name == mixed_dtype, (layer_cls.__name__, out.dtype.name)
    return reference
