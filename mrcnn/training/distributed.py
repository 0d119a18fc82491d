"""
Training across worker processes: ``fit_multi_worker`` runs the epochs of
``ModelBase.train`` under a ``MultiWorkerMirroredStrategy``, where Keras 3's
``fit()`` cannot (it fails converting the per-replica results,
keras-team/keras#20585).

The loop is fit()'s, by hand: the same callbacks (a Keras ``CallbackList``
with the progress bar and History), the model's own training step
(``DetectionModel.apply_training_step``, which sums gradients over replicas
before clipping), per-replica batches from each worker's shard of the data,
losses averaged over all replicas (the logs are the same on every worker),
and a stop that every worker agrees on, so a callback stopping one worker
(``TimeBudget``, a non-finite loss) stops them all at the same step instead
of leaving the others waiting in a collective.
"""

import logging

import numpy as np
import tensorflow as tf

logger = logging.getLogger(__name__)


class WorkerLostError(RuntimeError):
    """A multi-worker job lost a worker (or its network) while training."""


def sync_from_chief(strategy, model, epoch):
    """Give every worker the chief's weights and epoch counter.

    Workers load their starting weights themselves (``--weights last`` on a
    shared disk, ImageNet weights, ...); this makes them start from exactly
    the chief's, whatever each found. One all-reduce of the weights.
    Returns the chief's ``epoch``."""
    variables = [v for v in model.weights if tf.as_dtype(v.dtype).is_floating]

    @tf.function
    def gather():
        def from_first_replica():
            context = tf.distribute.get_replica_context()
            first = tf.equal(context.replica_id_in_sync_group, 0)
            values = [tf.where(first, tf.identity(v), tf.zeros_like(v)) for v in variables]
            values.append(tf.where(first, tf.constant(float(epoch)), 0.0))
            return context.all_reduce(tf.distribute.ReduceOp.SUM, values)
        return strategy.run(from_first_replica)

    values = [strategy.experimental_local_results(v)[0] for v in gather()]
    for variable, value in zip(variables, values[:-1]):
        variable.assign(value)
    return int(round(float(values[-1])))


def _distributed(strategy, make_dataset, per_replica_batch):
    """``make_dataset(batch_size, shard)`` -> a distributed dataset of
    ``per_replica_batch``-image batches, each worker reading its own shard."""
    def dataset_fn(context):
        return make_dataset(per_replica_batch,
                            (context.input_pipeline_id, context.num_input_pipelines))
    return strategy.distribute_datasets_from_function(dataset_fn)


class _Agreement(object):
    """Whether any worker wants to stop: one small all-reduce."""

    def __init__(self, strategy):
        self.strategy = strategy

        @tf.function
        def any_true(flag):
            votes = strategy.run(lambda f: tf.identity(f), args=(flag,))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, votes, axis=None) > 0
        self._any = any_true

    def __call__(self, flag):
        return bool(self._any(tf.constant(1.0 if flag else 0.0)))


def fit_multi_worker(model, strategy, train_data, per_replica_batch, epochs, initial_epoch,
                     steps_per_epoch, callbacks, validation_data=None, validation_steps=None,
                     verbose=1):
    """fit() for a ``DetectionModel`` under a multi-worker strategy.

    train_data, validation_data: callables ``(batch_size, shard)`` -> a
        tf.data pipeline of ``batch_size`` images from ``shard`` =
        (worker index, worker count). Every worker builds its own, of
        ``per_replica_batch`` (IMAGES_PER_GPU) images per batch.
    callbacks: Keras callbacks (the chief's include the checkpoint and
        TensorBoard writers; the others' do not).
    Other arguments as ``keras.Model.fit``. Returns the History (losses and
    val_ losses averaged over every replica of every worker).
    """
    import keras
    callback_list = keras.callbacks.CallbackList(
        callbacks, add_history=True, add_progbar=verbose != 0, model=model, verbose=verbose,
        epochs=epochs, steps=steps_per_epoch)
    with strategy.scope():
        model.optimizer.build(model.trainable_variables)
    train_iterator = iter(_distributed(strategy, train_data, per_replica_batch))
    val_iterator = None if validation_data is None else \
        iter(_distributed(strategy, validation_data, per_replica_batch))

    def mean(value):
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)

    @tf.function
    def train_step(iterator):
        total, losses = strategy.run(model.apply_training_step, args=(next(iterator),))
        return mean(total), {name: mean(v) for name, v in losses.items()}

    @tf.function
    def test_step(iterator):
        total, losses = strategy.run(model.evaluate_losses, args=(next(iterator),))
        return mean(total), {name: mean(v) for name, v in losses.items()}

    agree = _Agreement(strategy)

    def run_epochs():
        model.stop_training = False
        callback_list.on_train_begin()
        logs = {}
        for epoch in range(initial_epoch, epochs):
            callback_list.on_epoch_begin(epoch)
            sums = {}
            for step in range(steps_per_epoch):
                callback_list.on_train_batch_begin(step)
                logs = _running_means(sums, step + 1, *train_step(train_iterator))
                callback_list.on_train_batch_end(step, logs)
                if agree(model.stop_training):
                    model.stop_training = True
                    break
            epoch_logs = dict(logs)
            if val_iterator is not None:
                val_sums = {}
                for step in range(validation_steps or 1):
                    val_logs = _running_means(val_sums, step + 1, *test_step(val_iterator))
                epoch_logs.update({"val_" + name: value for name, value in val_logs.items()})
            callback_list.on_epoch_end(epoch, epoch_logs)
            if agree(model.stop_training):
                break
        callback_list.on_train_end(logs)
        return model.history

    try:
        return run_epochs()
    except (tf.errors.UnavailableError, tf.errors.AbortedError,
            tf.errors.DeadlineExceededError) as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        # TensorFlow's own words name the lost task on the line after "unhealthy".
        first_line = next((line + " " + lines[i + 1] for i, line in enumerate(lines[:-1])
                           if "unhealthy" in line), lines[0] if lines else type(error).__name__)
        raise WorkerLostError(
            "Multi-worker training stopped: a worker of the job is gone or unreachable ({}). "
            "The chief keeps the checkpoints of finished epochs; restart every worker with "
            "the same TF_CONFIG and --weights last (model.load_weights(model.find_last())) "
            "to resume from the last one.".format(first_line)) from error


def _running_means(sums, count, total, losses):
    """Add a step's reduced losses to ``sums``; the epoch's means so far."""
    values = dict(loss=total, **losses)
    for name, value in values.items():
        sums[name] = sums.get(name, 0.0) + float(value)
    return {name: np.float32(value / count) for name, value in sums.items()}
