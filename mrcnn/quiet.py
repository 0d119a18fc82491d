"""
A quiet start for the package's entry points (samples, notebooks, benchmarks).

TensorFlow prints dozens of lines before a training run's first epoch: CUDA
probing on machines without a GPU ("Could not find cuda drivers", "failed
call to cuInit"), CPU feature and oneDNN notices, and grappler's
"Error in PredictCost()" for ops it has no cost model for. None of them is
something a user of this package can act on. ``quiet_tensorflow()`` silences
them, unless the user asked for TensorFlow's logs by setting
``TF_CPP_MIN_LOG_LEVEL`` themselves, and says what matters in our own words:
a GPU that is present but invisible to TensorFlow.

Library code never calls this: importing ``mrcnn`` changes no logging.
"""

import glob
import logging
import os
import re
import sys
import tempfile

logger = logging.getLogger(__name__)

# Lines TensorFlow writes to the process's stderr while it is imported,
# before its log level applies (absl logs them ahead of InitializeLog), that
# carry no information for our users. Anything else is passed through.
_IMPORT_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} "                                  # absl INFO / WARNING lines
    r"|E\d{4} .*(Unable to register cu(DNN|FFT|BLAS) factory|cuda_platform|cuInit)"
    r"|To enable the following instructions:"
    r"|oneDNN custom operations are on)")

_done = False
# Set with TF_CPP_MIN_LOG_LEVEL, so that child processes know it was not the user.
_MARKER = "MRCNN_QUIET_TENSORFLOW"


def quiet_tensorflow():
    """Silence TensorFlow's start-up and C++ logs for an entry point.

    Call it before TensorFlow is imported (first thing in a script or a
    notebook); later it can only quiet the Python-side loggers. Does
    nothing when ``TF_CPP_MIN_LOG_LEVEL`` is already set: the user's choice
    wins. Otherwise sets it to 3 (C++ errors that matter also surface as
    Python exceptions with their message), imports TensorFlow with the
    lines it writes during import filtered (lines we do not recognise as
    noise are passed on; if the import fails everything is shown), and sets
    the ``tensorflow`` Python logger to ERROR. Then warns once, in our own
    words, when the machine has an NVIDIA device that TensorFlow cannot use.

    Returns True when it quieted TensorFlow, False when the user's
    ``TF_CPP_MIN_LOG_LEVEL`` was left to decide.
    """
    global _done
    if _done:
        return True
    # A child process of an entry point inherits our setting: not the user's.
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ and os.environ.get(_MARKER) != "1":
        return False
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ[_MARKER] = "1"
    _done = True
    if "tensorflow" not in sys.modules:
        _import_filtered("tensorflow")
    import tensorflow as tf
    tf.get_logger().setLevel(logging.ERROR)
    _warn_if_gpu_unusable(tf)
    return True


def _import_filtered(module):
    """Import ``module`` with file descriptor 2 captured; write back the
    captured lines that are not start-up noise (all of them on failure)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        __import__(module)  # no usable file descriptor 2: nothing to filter
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        failed = True
        try:
            __import__(module)
            failed = False
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf8", errors="replace")
            kept = [line for line in text.splitlines()
                    if failed or not _IMPORT_NOISE.match(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")


def _warn_if_gpu_unusable(tf):
    """One warning when an NVIDIA device exists but TensorFlow sees no GPU
    (a CPU-only TensorFlow build, or a driver/CUDA mismatch)."""
    if not glob.glob("/dev/nvidia[0-9]*"):
        return
    try:
        gpus = tf.config.list_physical_devices("GPU")
    except RuntimeError:
        return
    if not gpus:
        logger.warning(
            "This machine has an NVIDIA GPU but TensorFlow cannot use it, so everything runs "
            "on the CPU. Install TensorFlow with CUDA (pip install 'tensorflow[and-cuda]') or "
            "check the driver; set TF_CPP_MIN_LOG_LEVEL=0 to see TensorFlow's own messages.")
