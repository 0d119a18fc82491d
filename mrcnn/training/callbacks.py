"""
Callbacks ``train()`` uses: stop on a non-finite loss before its epoch's
checkpoint is written, and keep a run within a wall-time budget.
"""

import logging

import keras

from mrcnn.checkpoints import CheckpointCallback
from mrcnn.training.optimizer import set_learning_rate_scale

logger = logging.getLogger(__name__)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop training at the first batch whose total or named loss is NaN or
    Inf, raising FloatingPointError that names the losses. The exception
    ends fit() before the epoch's checkpoint is written, so the last
    checkpoint on disk holds the last good weights."""

    def on_train_batch_end(self, batch, logs=None):
        import math
        bad = {k: float(v) for k, v in (logs or {}).items()
               if k.endswith("loss") and not math.isfinite(float(v))}
        if bad:
            self.model.stop_training = True
            raise FloatingPointError(
                "Training stopped at batch {}: non-finite loss {}. The last checkpoint "
                "holds the last good weights; lower the learning rate (or raise "
                "LEARNING_RATE_WARMUP_STEPS) and resume from it.".format(
                    batch, ", ".join("{}={}".format(k, v) for k, v in sorted(bad.items()))))


class TimeBudget(keras.callbacks.Callback):
    """Stop training so that it ends within ``seconds`` of wall time.

    The clock starts at ``start`` (a ``time.time()`` value, e.g. taken before
    building the datasets, so set-up counts against the budget) or, by
    default, at the start of fit(). Training stops after the batch at which
    the time left no longer covers the work done at the end of an epoch
    (validation, checkpoint, other callbacks), as long as the last one took; the
    epoch in progress is cut short there and still validated and
    checkpointed, so the run finishes near the budget rather than one
    validation past it.

    decay_at: fractions of the budget (e.g. ``(0.8,)``) after which the
        learning rate is multiplied by ``decay_factor`` once more each, the
        usual step decay of detection training expressed in wall time, for
        runs whose length is a time budget rather than a number of steps.
        Needs an optimizer from ``build_optimizer`` (every ``train()``).
    """

    def __init__(self, seconds, decay_at=(), decay_factor=0.1, start=None):
        super().__init__()
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                or not seconds > 0:
            raise ValueError("TimeBudget needs a positive number of seconds, got {!r}"
                             .format(seconds))
        if start is not None and (isinstance(start, bool)
                                  or not isinstance(start, (int, float))):
            raise ValueError("TimeBudget start must be a time.time() value or None, got "
                             "{!r}".format(start))
        self.seconds = float(seconds)
        self.decay_at = sorted(float(f) for f in decay_at)
        if any(not 0.0 < f < 1.0 for f in self.decay_at):
            raise ValueError("decay_at takes fractions of the budget between 0 and 1, got "
                             "{}".format(list(decay_at)))
        self.decay_factor = float(decay_factor)
        self.given_start = start
        self.start = None
        self.decays_done = 0
        # Time between the last epoch's last batch and the next epoch's
        # start (validation, checkpoint, callbacks). The latest gap is kept:
        # the first also holds one-time tracing of the validation step.
        self.epoch_end_seconds = 0.0
        self._last_batch_end = None

    def on_train_begin(self, logs=None):
        import time
        self.start = time.time() if self.given_start is None else float(self.given_start)
        self.decays_done = 0
        self._last_batch_end = None
        if self.decay_at:
            set_learning_rate_scale(self.model.optimizer, 1.0)

    def on_epoch_begin(self, epoch, logs=None):
        import time
        if self._last_batch_end is not None:
            self.epoch_end_seconds = time.time() - self._last_batch_end
            self._last_batch_end = None

    def on_train_batch_end(self, batch, logs=None):
        import time
        now = time.time()
        self._last_batch_end = now
        elapsed = now - self.start
        due = sum(1 for f in self.decay_at if elapsed >= f * self.seconds)
        if due > self.decays_done:
            self.decays_done = due
            set_learning_rate_scale(self.model.optimizer, self.decay_factor ** due)
            logger.info("Learning rate scaled by %g after %.0f s", self.decay_factor ** due,
                        elapsed)
        if elapsed + self.epoch_end_seconds >= self.seconds:
            self.model.stop_training = True


def training_callbacks(custom_callbacks, log_dir, checkpoint_path, save_fn, chief=True):
    """The callbacks of ``ModelBase.train``: the user's first, so that values
    they add to the epoch logs (val_mAP, val_bbox_AP, ...) reach
    TensorBoard, the progress bar and the History (those with a
    ``set_log_dir`` method learn the run's folder), then TensorBoard, the
    non-finite-loss stop and the checkpoint writer. A worker that is not
    the chief of a multi-worker job writes neither logs nor checkpoints."""
    custom_callbacks = list(custom_callbacks or [])
    for callback in custom_callbacks:
        getattr(callback, "set_log_dir", lambda _: None)(log_dir)
    callbacks = custom_callbacks
    if chief:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir, histogram_freq=0,
                                                     write_graph=False))
    callbacks.append(StopOnNonFiniteLoss())
    if chief:
        callbacks.append(CheckpointCallback(checkpoint_path, save_fn))
    return callbacks
