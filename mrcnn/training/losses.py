"""
Loss layers: a named scalar loss in a mode's training graph, with the
function it computes as an argument (serialisable), so a mode brings its
own losses and ``DetectionModel`` minimises them by name.
"""

import keras
import tensorflow as tf


def safe_mean(total, count):
    """total / count as float32, or 0 when count is 0 (a loss over no
    positive anchors or ROIs is 0, not NaN)."""
    count = tf.cast(count, tf.float32)
    return tf.where(count > 0, total / tf.maximum(count, 1.0), 0.0)


# Loss layer name -> function, for LossLayer(name=...) without a function
# (Mask R-CNN's five names; see mrcnn.maskrcnn.losses).
_NAMED_LOSS_FUNCTIONS = {}


def register_loss_function(name, function):
    """Make ``LossLayer(name=name)`` without a function call ``function``."""
    _NAMED_LOSS_FUNCTIONS[name] = function
    return function


@keras.saving.register_keras_serializable(package="mrcnn")
class LossLayer(keras.layers.Layer):
    """A named scalar loss in a training graph: ``LossLayer(fn, name=...)``
    outputs ``fn(*inputs)``, a float32 scalar that ``DetectionModel``
    minimises when ``name`` is among its ``loss_names``.

    fn: the loss function; for a model that is saved and reloaded it must be
        serialisable (a module-level function registered with
        ``keras.saving.register_keras_serializable``), which Keras's safe
        mode loads. Without ``fn`` the layer's name selects a function
        registered with ``register_loss_function`` (Mask R-CNN's
        ``rpn_class_loss`` ... ``mrcnn_mask_loss``, as the layer was built
        before it took a function).
    arguments: keyword arguments given to ``fn`` on every call (numbers,
        strings: a configuration value such as YOLACT's OHEM ratio); saved
        with the layer.
    """

    def __init__(self, fn=None, arguments=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self._named = fn is None
        if fn is None:
            if self.name not in _NAMED_LOSS_FUNCTIONS:
                raise ValueError(
                    "LossLayer {!r} has no loss function: pass fn=..., or its name must be one "
                    "of the registered names {}".format(self.name, sorted(_NAMED_LOSS_FUNCTIONS)))
            fn = _NAMED_LOSS_FUNCTIONS[self.name]
        elif isinstance(fn, dict):
            fn = keras.saving.deserialize_keras_object(fn)
        if not callable(fn):
            raise TypeError("LossLayer {!r}: fn must be callable, got {!r}".format(
                self.name, fn))
        self.fn = fn
        self.arguments = dict(arguments or {})

    def get_config(self):
        config = super().get_config()
        config["fn"] = None if self._named else keras.saving.serialize_keras_object(self.fn)
        if self.arguments:
            config["arguments"] = dict(self.arguments)
        return config

    def call(self, inputs):
        return self.fn(*inputs, **self.arguments)

    def compute_output_shape(self, input_shape):
        return ()
