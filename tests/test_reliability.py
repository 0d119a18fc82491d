"""Training never loses progress: a training process killed mid-epoch or in
the middle of writing a checkpoint resumes from the last complete epoch
with the right epoch number and learning-rate schedule, and a non-finite
loss stops training with a message while keeping the last good checkpoint."""
import os
import signal
import subprocess
import sys
import threading

import keras
import numpy as np
import pytest

from mrcnn import model as modellib
from mrcnn import training
from tiny_models import TinyConfig, shapes_dataset

HERE = os.path.dirname(os.path.abspath(__file__))


def _run_until_ready(model_dir, mode, timeout=240):
    """Start tests/train_child.py and return (process, log_dir) once it has
    reached the point where it waits to be killed."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "train_child.py"),
                             model_dir, mode], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    log_dir, lines = None, []
    try:
        for line in proc.stdout:
            lines.append(line.strip())
            if line.startswith("LOG_DIR "):
                log_dir = line.split(" ", 1)[1].strip()
            if line.strip() == "READY":
                return proc, log_dir
    finally:
        timer.cancel()
    proc.kill()
    raise AssertionError("training child ended before it was ready: {}".format(lines))


def _kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def datasets():
    return shapes_dataset(8, seed=1), shapes_dataset(4, seed=2)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["mid_epoch", "during_save"])
def test_killed_training_resumes_from_last_complete_epoch(mode, datasets, tmp_path):
    model_dir = str(tmp_path)
    proc, log_dir = _run_until_ready(model_dir, mode)
    _kill(proc)

    files = sorted(os.listdir(log_dir))
    assert "mask_rcnn_tiny_0001.h5" in files
    assert "mask_rcnn_tiny_0002.h5" not in files
    leftovers = [f for f in files if f.endswith(".tmp")]
    if mode == "during_save":
        # The half-written file exists under a temporary name only.
        assert len(leftovers) == 1 and leftovers[0].startswith(".mask_rcnn_tiny_0002.h5.")
    else:
        assert leftovers == []

    # --model=last: find_last() picks epoch 1, never the partial file.
    model = modellib.MaskRCNN("training", TinyConfig(), model_dir)
    last = model.find_last()
    assert last == os.path.join(log_dir, "mask_rcnn_tiny_0001.h5")
    model.load_weights(last, by_name=True)
    assert model.epoch == 1 and model.log_dir == log_dir

    steps = []

    class RecordStep(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            steps.append(int(self.model.optimizer.iterations.numpy()))

    history = model.train(datasets[0], datasets[1], 0.01, epochs=3, layers="all",
                          custom_callbacks=[RecordStep()], verbose=0)
    assert history.epoch == [1, 2]
    per_epoch = TinyConfig.STEPS_PER_EPOCH
    # The schedule continues from the first step of epoch 2.
    assert steps == list(range(per_epoch, 3 * per_epoch))
    files = sorted(os.listdir(log_dir))
    assert [f for f in files if f.endswith(".h5")] == [
        "mask_rcnn_tiny_0001.h5", "mask_rcnn_tiny_0002.h5", "mask_rcnn_tiny_0003.h5"]
    # Train() removed the interrupted save's leftover.
    assert [f for f in files if f.endswith(".tmp")] == []
    assert model.find_last().endswith("mask_rcnn_tiny_0003.h5")


class _PoisonMaskHead(keras.callbacks.Callback):
    """Sets the mask head's and the classifier's kernels to NaN before the
    first batch of epoch 2 (the classifier loss covers every sampled ROI, so
    it turns NaN even in a batch without positive ROIs, where the mask loss
    is 0)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.epoch == 1 and batch == 0:
            for name in ("mrcnn_mask", "mrcnn_class_logits"):
                kernel = next(w for w in self.model.get_layer(name).weights
                              if w.name == "kernel")
                kernel.assign(np.full(kernel.shape, np.nan, dtype="float32"))


def test_nan_loss_stops_training_and_keeps_last_good_checkpoint(datasets, tmp_path):
    model = modellib.MaskRCNN("training", TinyConfig(), str(tmp_path))
    with pytest.raises(FloatingPointError) as err:
        model.train(datasets[0], datasets[1], 0.01, epochs=3, layers="all",
                    custom_callbacks=[_PoisonMaskHead()], verbose=0)
    message = str(err.value)
    assert "non-finite loss" in message and "mrcnn_class_loss=nan" in message
    assert "resume" in message
    files = sorted(f for f in os.listdir(model.log_dir) if f.endswith(".h5"))
    assert files == ["mask_rcnn_tiny_0001.h5"]
    # The kept checkpoint is finite and loads.
    fresh = modellib.MaskRCNN("training", TinyConfig(), str(tmp_path))
    fresh.load_weights(fresh.find_last(), by_name=True)
    assert all(np.isfinite(w.numpy()).all() for w in fresh.keras_model.weights)
    assert fresh.epoch == 1


def test_stale_temporary_checkpoints_are_removed_at_train_start(tmp_path):
    log_dir = tmp_path / "tiny20250101T0000"
    log_dir.mkdir()
    stale = log_dir / ".mask_rcnn_tiny_0004.h5.0123456789ab.tmp"
    stale.write_bytes(b"partial")
    keep = [log_dir / "notes.tmp", log_dir / ".other_0004.h5.0123456789ab.tmp",
            log_dir / "mask_rcnn_tiny_0003.h5"]
    for path in keep:
        path.write_bytes(b"user file")
    removed = training.remove_partial_checkpoints(str(log_dir), "mask_rcnn", "tiny")
    assert removed == [str(stale)]
    assert not stale.exists() and all(p.exists() for p in keep)


# ---------------------------------------------------------------------------
# Loading files from an unknown source changes nothing but weights
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_inference(tmp_path_factory):
    from tiny_models import TinyInferenceConfig
    return modellib.MaskRCNN("inference", TinyInferenceConfig(),
                             str(tmp_path_factory.mktemp("safe")))


def test_weights_file_cannot_change_the_model_beyond_weights(tiny_inference, tmp_path):
    import h5py
    model = tiny_inference
    path = str(tmp_path / "crafted.h5")
    model.save_weights(path)
    target = next(w for w in model.keras_model.get_layer("mrcnn_bbox_fc").weights
                  if w.name == "bias")
    new_bias = np.arange(np.prod(target.shape), dtype="float32").reshape(target.shape)
    with h5py.File(path, "r+") as f:
        # A full-model file's architecture and training settings, with code
        # in a Lambda layer; and a group for a layer this model lacks.
        f.attrs["model_config"] = json_lambda_config()
        f.attrs["training_config"] = b'{"loss": "os.system"}'
        f.create_group("evil_layer").attrs["weight_names"] = [b"evil_layer/kernel:0"]
        f["evil_layer"].create_dataset("evil_layer/kernel:0", data=np.ones(3))
        group = f["mrcnn_bbox_fc"]
        name = next(n for n in _all_datasets(group) if n.endswith("bias:0"))
        group[name][...] = new_bias
    layer_names = [layer.name for layer in model.keras_model.layers]
    config_before = model.config.to_dict()
    model.load_weights(path, by_name=True)
    np.testing.assert_array_equal(target.numpy(), new_bias)
    assert [layer.name for layer in model.keras_model.layers] == layer_names
    assert model.config.to_dict() == config_before


def json_lambda_config():
    import json
    return json.dumps({"class_name": "Functional", "config": {"layers": [
        {"class_name": "Lambda", "config": {"function": "__import__('os').system('touch x')"}}]}})


def _all_datasets(group):
    import h5py
    names = []
    group.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset)
                     else None)
    return names


def test_keras_file_with_code_is_refused_in_safe_mode(tmp_path):
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: x * 2.0)(inputs)
    path = str(tmp_path / "lambda.keras")
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(ValueError, match="(?i)unsafe|safe_mode"):
        keras.saving.load_model(path)


def test_non_numeric_weights_are_rejected_without_assigning(tiny_inference, tmp_path):
    import h5py
    from mrcnn import weights
    model = tiny_inference
    path = str(tmp_path / "strings.h5")
    model.save_weights(path)
    with h5py.File(path, "r+") as f:
        group = f["mrcnn_bbox_fc"]
        name = next(n for n in _all_datasets(group) if n.endswith("kernel:0"))
        shape = group[name].shape
        del group[name]
        group.create_dataset(name, data=np.full(shape, "x", dtype=object),
                             dtype=h5py.string_dtype())
    before = [w.numpy().copy() for w in model.keras_model.weights]
    with pytest.raises((weights.WeightsFileError, weights.WeightsMismatchError),
                       match="mrcnn_bbox_fc"):
        model.load_weights(path, by_name=True)
    for w, b in zip(model.keras_model.weights, before):
        np.testing.assert_array_equal(w.numpy(), b)
