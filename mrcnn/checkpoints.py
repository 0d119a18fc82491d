"""
Log directories and checkpoints: ``logs/<name><YYYYmmddTHHMM>/<prefix>_<name>_<epoch:04d>.h5``,
where the prefix is the model mode's (``mask_rcnn``); finding the newest
complete one, removing what an interrupted save left, and the callback
that writes one per epoch.
"""

import datetime
import logging
import os
import re

import keras

logger = logging.getLogger(__name__)


def log_dir_name(config_name, now):
    """``<name><YYYYmmddTHHMM>``, the reference's log directory name."""
    return "{}{:%Y%m%dT%H%M}".format(config_name.lower(), now)


def checkpoint_pattern(prefix, config_name):
    """Regex of a complete checkpoint file name, with the epoch as group 1."""
    return re.compile(r"{}_{}_(\d{{4}})\.h5$".format(re.escape(prefix),
                                                    re.escape(config_name.lower())))


def parse_checkpoint_path(path, prefix="mask_rcnn"):
    """(datetime of the run, epoch) from ``.../<name>YYYYmmddTHHMM/<prefix>_<name>_EEEE.h5``,
    or None when the path does not follow the convention."""
    m = re.match(r".*[/\\][\w.-]+?(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})[/\\]" +
                 re.escape(prefix) + r"_[\w.-]+_(\d{4})\.h5$", os.fspath(path))
    if not m:
        return None
    when = datetime.datetime(*(int(m.group(i)) for i in range(1, 6)))
    return when, int(m.group(6))


def find_last_checkpoint(model_dir, config_name, prefix="mask_rcnn"):
    """Path of the newest complete checkpoint of the newest run of
    ``config_name`` under ``model_dir``.

    Run directories are ``<name><YYYYmmddTHHMM>``; newer runs win; a run
    directory without a complete checkpoint (an aborted start) is passed
    over for the previous one. Only files named exactly
    ``<prefix>_<name>_<epoch:04d>.h5`` count, so temporary files of an
    interrupted save are never picked. Raises FileNotFoundError (errno
    ENOENT) naming the directory when there is none.
    """
    import errno
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(errno.ENOENT, "Could not find model directory under {}".format(
            model_dir))
    key = config_name.lower()
    run_re = re.compile(re.escape(key) + r"\d{8}T\d{4}$")
    runs = sorted(d for d in os.listdir(model_dir)
                  if run_re.match(d) and os.path.isdir(os.path.join(model_dir, d)))
    if not runs:
        raise FileNotFoundError(errno.ENOENT, "Could not find model directory under {}".format(
            model_dir))
    pattern = checkpoint_pattern(prefix, config_name)
    for run in reversed(runs):
        run_dir = os.path.join(model_dir, run)
        checkpoints = sorted(f for f in os.listdir(run_dir) if pattern.match(f))
        if checkpoints:
            return os.path.join(run_dir, checkpoints[-1])
    raise FileNotFoundError(errno.ENOENT, "Could not find weight files in {}".format(
        os.path.join(model_dir, runs[-1])))


def remove_partial_checkpoints(log_dir, prefix, config_name):
    """Delete the temporary files that an interrupted checkpoint save left in
    ``log_dir`` (``.<prefix>_<name>_EEEE.h5.<12 hex>.tmp``, the names
    ``weights.save_weights`` writes to before its atomic rename; such a file
    is never a complete checkpoint). Other files are untouched. Returns the
    removed paths."""
    pattern = re.compile(r"\.{}_{}_\d{{4}}\.h5\.[0-9a-f]{{12}}\.tmp$".format(
        re.escape(prefix), re.escape(config_name.lower())))
    if not os.path.isdir(log_dir):
        return []
    removed = []
    for name in sorted(os.listdir(log_dir)):
        if pattern.match(name):
            path = os.path.join(log_dir, name)
            os.remove(path)
            removed.append(path)
            logger.warning("Removed %s, left by an interrupted checkpoint save", path)
    return removed


class CheckpointCallback(keras.callbacks.Callback):
    """Save the weights at the end of every epoch to
    ``checkpoint_path.format(epoch=epoch + 1)`` with ``save_fn(path)``
    (an atomic writer), so epoch numbers on disk count completed epochs."""

    def __init__(self, checkpoint_path, save_fn):
        super().__init__()
        self.checkpoint_path = checkpoint_path
        self.save_fn = save_fn

    def on_epoch_end(self, epoch, logs=None):
        path = self.checkpoint_path.format(epoch=epoch + 1)
        self.save_fn(path)
        logger.info("Saved checkpoint %s", path)
