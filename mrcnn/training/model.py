"""
The Keras model class every mode builds: a functional model whose training
step minimises the graph's own named loss outputs.
"""

import os

import keras
import tensorflow as tf

from mrcnn.nested import find_layer


############################################################
#  Keras model with named-loss outputs
############################################################

@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionModel(keras.Model):
    """A functional Keras model whose training step minimises the loss
    outputs of the graph itself.

    Build it like ``keras.Model(inputs, outputs, name=...)`` and pass
    ``loss_names``: the names of the layers among the outputs that produce
    scalar losses. ``train_step`` minimises
    ``sum(loss_weights[name] * loss) + weight_decay * sum(kernel ** 2)``
    and reports each named loss (and its validation counterpart) in the
    progress bar and History. Weight decay is the plain L2 penalty on the
    trainable convolution/dense kernels; the original divided each term by
    the kernel's size, which made it orders of magnitude weaker than stated,
    and also decayed biases.

    ``get_layer(name)`` also finds layers inside nested models (the RPN's
    ``rpn_conv_shared`` lives in ``rpn_model``).
    """

    def __init__(self, *args, loss_names=(), loss_weights=None, weight_decay=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_names = list(loss_names)
        self.loss_weights = {name: float((loss_weights or {}).get(name, 1.0))
                             for name in self.loss_names}
        self.weight_decay = float(weight_decay)
        self._trackers = {name: keras.metrics.Mean(name=name)
                          for name in ["loss"] + self.loss_names}

    def get_config(self):
        config = super().get_config()
        config.update({"loss_names": self.loss_names, "loss_weights": self.loss_weights,
                       "weight_decay": self.weight_decay})
        return config

    def get_layer(self, name=None, index=None):
        if name is None or index is not None:
            return super().get_layer(name=name, index=index)
        found = find_layer(self, name)
        if found is None:
            raise ValueError("No such layer: {}. Top-level layers: {}".format(
                name, ", ".join(l.name for l in self.layers)))
        return found

    def save_weights(self, filepath, overwrite=True, max_shard_size=None):
        """Keras's ``save_weights``, except that a ``.h5``/``.hdf5`` path that
        does not end in ``.weights.h5`` (the reference's
        ``save_weights("mask_rcnn_shapes.h5")``) writes the legacy Keras 2
        layout of the checkpoints with ``mrcnn.weights.save_weights``;
        ``overwrite=False`` then raises FileExistsError for an existing file."""
        if not _legacy_h5_path(filepath):
            return super().save_weights(filepath, overwrite=overwrite,
                                        max_shard_size=max_shard_size)
        if max_shard_size is not None:
            raise ValueError("max_shard_size needs a .weights.h5 or .weights.json path; "
                             "{} is a legacy .h5 file".format(filepath))
        if not overwrite and os.path.exists(filepath):
            raise FileExistsError("{} exists and overwrite=False".format(filepath))
        from mrcnn import weights  # mrcnn.weights needs only keras; keep imports one-way
        weights.save_weights(self, filepath)

    def load_weights(self, filepath, skip_mismatch=False, **kwargs):
        """Keras's ``load_weights``, except that a legacy ``.h5``/``.hdf5``
        path (not ``.weights.h5``) is read by ``mrcnn.weights.load_weights``
        (by order, or ``by_name=True``); that returns its LoadReport."""
        if not _legacy_h5_path(filepath):
            return super().load_weights(filepath, skip_mismatch=skip_mismatch, **kwargs)
        by_name = bool(kwargs.pop("by_name", False))
        if kwargs:
            raise ValueError("Invalid keyword arguments for a legacy .h5 file: {}".format(
                kwargs))
        from mrcnn import weights
        return weights.load_weights(self, filepath, by_name=by_name,
                                    skip_mismatch=skip_mismatch)

    @property
    def metrics(self):
        return list(self._trackers.values())

    def _named_losses(self, outputs):
        by_name = dict(zip(self.output_names, outputs))
        missing = [n for n in self.loss_names if n not in by_name]
        if missing:
            raise ValueError("The model has no outputs named {}; its outputs are {}".format(
                missing, self.output_names))
        return {name: by_name[name] for name in self.loss_names}

    def _total_loss(self, losses):
        total = tf.add_n([tf.cast(losses[n], tf.float32) * self.loss_weights[n]
                          for n in self.loss_names])
        if self.weight_decay > 0:
            kernels = [v for v in self.trainable_variables if v.name == "kernel"]
            if kernels:
                total += self.weight_decay * tf.add_n(
                    [tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in kernels])
        return total

    def _update_trackers(self, total, losses):
        self._trackers["loss"].update_state(total)
        for name in self.loss_names:
            self._trackers[name].update_state(losses[name])
        return {name: tracker.result() for name, tracker in self._trackers.items()}

    def apply_training_step(self, inputs):
        """One optimisation step on this replica's batch ``inputs``; returns
        ``(total, {name: loss})``, this replica's (unreduced) losses.

        Under a strategy with N replicas each replica's gradient is that of
        ``total / N``; with an optimizer from ``build_optimizer`` they are
        summed over replicas here, before the optimizer clips them, so a
        step equals the step of one device on the global batch (weight
        decay counted once). Other optimizers sum them themselves."""
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            outputs = self(inputs, training=True)
            losses = self._named_losses(outputs)
            total = self._total_loss(losses)
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(total / replicas)
        gradients = tape.gradient(scaled, variables)
        pairs = [(g, v) for g, v in zip(gradients, variables) if g is not None]
        inner = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        context = tf.distribute.get_replica_context()
        if replicas > 1 and pairs and context is not None \
                and getattr(inner, "SUMS_REPLICA_GRADIENTS", False):
            summed = context.all_reduce(tf.distribute.ReduceOp.SUM, [g for g, _ in pairs])
            pairs = list(zip(summed, [v for _, v in pairs]))
        self.optimizer.apply_gradients(pairs)
        return total, losses

    def evaluate_losses(self, inputs):
        """``(total, {name: loss})`` of this replica's batch, no update."""
        outputs = self(inputs, training=False)
        losses = self._named_losses(outputs)
        return self._total_loss(losses), losses

    def train_step(self, data):
        total, losses = self.apply_training_step(data[0] if isinstance(data, tuple) else data)
        return self._update_trackers(total, losses)

    def test_step(self, data):
        total, losses = self.evaluate_losses(data[0] if isinstance(data, tuple) else data)
        return self._update_trackers(total, losses)


def _legacy_h5_path(filepath):
    """A path (str or PathLike) ending .h5 or .hdf5 but not .weights.h5."""
    if not isinstance(filepath, (str, os.PathLike)):
        return False
    path = os.fsdecode(os.fspath(filepath)).lower()
    return path.endswith((".h5", ".hdf5")) and not path.endswith(".weights.h5")



