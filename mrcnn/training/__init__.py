"""
Training machinery shared by every model mode. Nothing here knows about a
mode's heads: a mode supplies the graph (whose loss outputs are named
``LossLayer`` s), a regex for its "heads" and a checkpoint file prefix.

* ``model``: ``DetectionModel``, the Keras model with its own train/test step;
* ``losses``: ``LossLayer`` and ``register_loss_function``;
* ``optimizer``: SGD with warm-up and clipping, learning-rate helpers;
* ``trainable``: the ``layers=`` presets and ``set_trainable``;
* ``mrcnn.checkpoints`` (shared with ``mrcnn.weights``): log directories,
  checkpoint names, ``find_last_checkpoint``, re-exported here;
* ``callbacks``: ``StopOnNonFiniteLoss``, ``TimeBudget``;
* ``strategy``: ``distribution_strategy`` for GPU_COUNT and TF_CONFIG;
* ``distributed``: ``fit_multi_worker``, the training loop across workers.

Every name is importable from ``mrcnn.training`` itself, as before the
package was split.
"""

from mrcnn.training.callbacks import StopOnNonFiniteLoss, TimeBudget, training_callbacks
from mrcnn.checkpoints import (CheckpointCallback, checkpoint_pattern,  # noqa: F401
                               find_last_checkpoint, log_dir_name, parse_checkpoint_path,
                               remove_partial_checkpoints)
from mrcnn.training.losses import LossLayer, register_loss_function
from mrcnn.training.model import DetectionModel
from mrcnn.training.optimizer import (WarmupSchedule, build_optimizer, current_learning_rate,
                                      set_learning_rate_scale)
from mrcnn.training.distributed import WorkerLostError, fit_multi_worker, sync_from_chief
from mrcnn.training.strategy import (cluster_from_env, distribution_strategy, is_chief,
                                     is_multi_worker, local_tf_configs,
                                     multi_worker_strategy, start_multi_worker)
from mrcnn.training.trainable import backbone_presets, set_trainable

__all__ = [
    "DetectionModel", "LossLayer", "register_loss_function", "WarmupSchedule",
    "build_optimizer", "current_learning_rate", "set_learning_rate_scale", "backbone_presets",
    "set_trainable", "log_dir_name", "checkpoint_pattern", "parse_checkpoint_path",
    "find_last_checkpoint", "remove_partial_checkpoints", "CheckpointCallback",
    "StopOnNonFiniteLoss", "TimeBudget", "distribution_strategy", "cluster_from_env",
    "multi_worker_strategy", "is_multi_worker", "local_tf_configs", "is_chief", "fit_multi_worker",
    "sync_from_chief", "training_callbacks", "start_multi_worker",
    "WorkerLostError",
]
