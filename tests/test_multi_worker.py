"""Multi-worker training: two worker processes on localhost, configured by
TF_CONFIG, as a cluster launcher starts them.

* The arithmetic: two workers with one image each take exactly the steps
  one process takes on the two-image global batch (losses, weights after
  three SGD steps with weight decay and gradient clipping that binds).
* The job: a tiny Mask R-CNN trains on two workers; only the chief writes
  checkpoints, logs and config.json; a worker killed mid-epoch ends the job
  and the restarted job resumes from the chief's last checkpoint.
"""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from mrcnn import training
from mrcnn.training import strategy as strategylib

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)


def tf_config(ports, index):
    return training.local_tf_configs(len(ports), ports)[index]


def test_local_tf_configs_name_one_cluster_of_free_ports():
    configs = [json.loads(c) for c in training.local_tf_configs(3)]
    hosts = configs[0]["cluster"]["worker"]
    assert len(set(hosts)) == 3 and all(h.startswith("localhost:") for h in hosts)
    assert [c["cluster"]["worker"] for c in configs] == [hosts] * 3
    assert [c["task"] for c in configs] == [{"type": "worker", "index": i} for i in range(3)]
    assert strategylib.cluster_from_env({"TF_CONFIG": json.dumps(configs[2])}) == {
        "task_type": "worker", "task_index": 2, "workers": 3}
    with pytest.raises(ValueError, match="1 ports for 2 workers"):
        training.local_tf_configs(2, [2222])


def run_workers(script, args, tmp_path, timeout=300, kill=None):
    """Start one process per worker; returns their CompletedProcess-like
    (returncode, stdout, stderr) once all exit."""
    configs = training.local_tf_configs(2)
    path = tmp_path / "worker.py"
    path.write_text(script)
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=configs[index], PYTHONPATH=os.pathsep.join(
            [TESTS, ROOT, os.environ.get("PYTHONPATH", "")]), TF_CPP_MIN_LOG_LEVEL="2")
        procs.append(subprocess.Popen([sys.executable, str(path)] + [str(a) for a in args],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    results = []
    deadline = time.time() + timeout
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=max(1, deadline - time.time()))
            results.append((proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


def last_json(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------
# TF_CONFIG parsing and chief selection (no processes)
# ---------------------------------------------------------------------------

def test_cluster_from_env_reads_the_task_and_ignores_single_task_configs():
    two = {"TF_CONFIG": tf_config([1, 2], 1)}
    assert strategylib.cluster_from_env(two) == {"task_type": "worker", "task_index": 1,
                                                 "workers": 2}
    chief = json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]},
                        "task": {"type": "chief", "index": 0}})
    assert strategylib.cluster_from_env({"TF_CONFIG": chief})["workers"] == 3
    single = json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker",
                                                                  "index": 0}})
    assert strategylib.cluster_from_env({"TF_CONFIG": single}) is None
    assert strategylib.cluster_from_env({}) is None
    assert strategylib.cluster_from_env({"TF_CONFIG": "  "}) is None


@pytest.mark.parametrize("text, match", [
    ("{not json", "not valid JSON"),
    ('{"cluster": {"worker": ["a:1", "b:1"]}}', 'needs a "cluster" object and a "task"'),
    (json.dumps({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker",
                                                                  "index": 2}}),
     "is not in its cluster"),
    (json.dumps({"cluster": {"worker": ["a:1"], "ps": ["b:1"]},
                 "task": {"type": "worker", "index": 0}}), "'ps' tasks"),
])
def test_bad_tf_config_is_a_clear_error(text, match):
    with pytest.raises(ValueError, match=match):
        strategylib.cluster_from_env({"TF_CONFIG": text})


def test_without_tf_config_training_is_single_process(monkeypatch):
    import tensorflow as tf
    from mrcnn.config import Config
    monkeypatch.delenv("TF_CONFIG", raising=False)
    strategy = training.distribution_strategy(Config())
    assert strategy is tf.distribute.get_strategy()
    assert training.is_chief(strategy) and not training.is_multi_worker(strategy)


def test_gpu_count_above_one_on_a_worker_without_gpus_is_a_clear_error(monkeypatch):
    from mrcnn.config import Config
    monkeypatch.setenv("TF_CONFIG", training.local_tf_configs(2)[0])
    monkeypatch.setattr(strategylib, "_MULTI_WORKER", {})
    config = Config()
    config.GPU_COUNT = 2
    with pytest.raises(ValueError, match="GPU_COUNT=2 but this worker has no GPU"):
        training.distribution_strategy(config)


LATE = r"""
import os, sys
import tensorflow as tf
from mrcnn import model as modellib
from tiny_models import TinyConfig
tf.constant(1.0) + 1.0          # TensorFlow runs an operation first
try:
    modellib.MaskRCNN("training", TinyConfig(), sys.argv[1])
except RuntimeError as error:
    print(error)
    sys.exit(3)
"""


def test_multi_worker_after_tensorflow_ran_says_what_to_do(tmp_path):
    script = tmp_path / "late.py"
    script.write_text(LATE)
    env = dict(os.environ, TF_CONFIG=training.local_tf_configs(2)[0], TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join([TESTS, ROOT]))
    result = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "Build the training model (or call" in result.stdout
    assert "start_multi_worker(config)) before anything else uses TensorFlow" in result.stdout


# ---------------------------------------------------------------------------
# Two workers take one worker's steps on the global batch
# ---------------------------------------------------------------------------

TOY = r"""
import numpy as np
import keras
import tensorflow as tf
from mrcnn import training
from mrcnn.backbone import BatchNorm
from mrcnn.config import Config

class ToyConfig(Config):
    NAME = "toy"
    GRADIENT_CLIP_NORM = 0.05     # binds: clipping must see the global gradient
    LEARNING_MOMENTUM = 0.9
    LEARNING_RATE_WARMUP_STEPS = 0

def mse(pred, y):
    return tf.reduce_mean(tf.square(pred - y))

def toy_model(strategy):
    with strategy.scope():
        x = keras.Input((3,), name="x")
        y = keras.Input((1,), name="y")
        # Batch normalisation in training mode: its statistics must be the
        # global batch's, not each worker's single image.
        hidden = keras.layers.Dense(4, name="hidden", kernel_initializer="ones")(x)
        hidden = BatchNorm(name="bn")(hidden)
        pred = keras.layers.Dense(1, name="dense",
                                  kernel_initializer=keras.initializers.Constant(0.5))(hidden)
        loss = training.LossLayer(mse, name="mse_loss")([pred, y])
        model = training.DetectionModel({"x": x, "y": y}, [pred, loss], loss_names=["mse_loss"],
                                        weight_decay=0.01)
        model.compile(optimizer=training.build_optimizer(ToyConfig(), 0.1))
    return model

def toy_data():
    rng = np.random.RandomState(0)
    x = (rng.rand(4, 3) * [[1.0, 2.0, 3.0]]).astype("float32")
    return x, (x @ np.array([[1.0], [-2.0], [3.0]], "float32") + 1.0)
"""

TOY_WORKER = TOY + r"""
import json, sys
strategy = training.multi_worker_strategy(ToyConfig())
model = toy_model(strategy)
x, y = toy_data()

def shard_data(batch_size, shard):
    index, count = shard
    return tf.data.Dataset.from_tensor_slices(
        {"x": x[index::count], "y": y[index::count]}).repeat().batch(batch_size)

history = training.fit_multi_worker(model, strategy, shard_data, 1, epochs=3, initial_epoch=0,
                                    steps_per_epoch=1, callbacks=[], verbose=0)
print(json.dumps({"loss": [float(v) for v in history.history["loss"]],
                  "mse": [float(v) for v in history.history["mse_loss"]],
                  "kernel": model.get_layer("dense").kernel.numpy().ravel().tolist(),
                  "bias": model.get_layer("dense").bias.numpy().ravel().tolist(),
                  "moving_mean": model.get_layer("bn").moving_mean.numpy().tolist(),
                  "chief": training.is_chief(strategy),
                  "replicas": strategy.num_replicas_in_sync}))
"""


def single_process_toy_steps():
    """Three steps of the toy model on the global batch, one device."""
    import tensorflow as tf
    namespace = {}
    exec(TOY, namespace)
    model = namespace["toy_model"](tf.distribute.get_strategy())
    x, y = namespace["toy_data"]()
    # Step k's global batch: worker 0's k-th image and worker 1's (shards
    # x[0::2] and x[1::2], one image per step, repeating after two steps).
    losses = []
    for step in range(3):
        k = step % 2
        batch = {"x": x[[2 * k, 2 * k + 1]], "y": y[[2 * k, 2 * k + 1]]}
        total, parts = model.apply_training_step(batch)
        losses.append((float(total), float(parts["mse_loss"])))
    return losses, model


@pytest.mark.slow
def test_two_workers_take_the_single_process_steps_on_the_global_batch(tmp_path):
    results = run_workers(TOY_WORKER, [], tmp_path, timeout=240)
    for code, out, err in results:
        assert code == 0, err[-3000:]
    reports = [last_json(out) for _, out, _ in results]
    assert [r["chief"] for r in reports] == [True, False]
    assert reports[0]["replicas"] == 2
    # Both workers hold the same weights and log the same (all-replica) losses.
    assert reports[0]["kernel"] == reports[1]["kernel"]
    assert reports[0]["loss"] == reports[1]["loss"]
    losses, model = single_process_toy_steps()
    # Per-step logs are the epoch's mean so far; one step per epoch here.
    np.testing.assert_allclose(reports[0]["loss"], [t for t, _ in losses], rtol=1e-5)
    np.testing.assert_allclose(reports[0]["mse"], [m for _, m in losses], rtol=1e-5)
    np.testing.assert_allclose(reports[0]["kernel"],
                               model.get_layer("dense").kernel.numpy().ravel(), rtol=1e-5)
    np.testing.assert_allclose(reports[0]["bias"], model.get_layer("dense").bias.numpy(),
                               rtol=1e-5)
    np.testing.assert_allclose(reports[0]["moving_mean"],
                               model.get_layer("bn").moving_mean.numpy(), rtol=1e-5)


# ---------------------------------------------------------------------------
# A Mask R-CNN job: chief-only writes, a killed worker, resuming
# ---------------------------------------------------------------------------

JOB_WORKER = r"""
import json, os, sys
import keras
from mrcnn import model as modellib
from tiny_models import TinyConfig, shapes_dataset

model_dir, epochs, die_at_epoch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

class TwoWorkerConfig(TinyConfig):
    IMAGES_PER_GPU = 1
    STEPS_PER_EPOCH = 3

# The training model first: TensorFlow sets up its collectives before any
# other operation runs.
model = modellib.MaskRCNN("training", TwoWorkerConfig(), model_dir)
index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
last = model.find_last() if sys.argv[4] == "resume" else None
if last:
    model.load_weights(last)
start = model.epoch

class DieAt(keras.callbacks.Callback):
    # Worker 1 dies in the middle of epoch `die_at_epoch` (1-based), as a
    # machine that is lost would.
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
    def on_train_batch_end(self, batch, logs=None):
        if index == 1 and self.epoch + 1 == die_at_epoch and batch == 1:
            os._exit(7)

data = shapes_dataset(6, seed=1)
history = model.train(data, data, 0.01, epochs=epochs, layers="all",
                      custom_callbacks=[DieAt()], verbose=0)
print(json.dumps({"start": start, "epochs": history.epoch,
                  "loss": [float(v) for v in history.history["loss"]],
                  "val_loss": [float(v) for v in history.history["val_loss"]],
                  "log_dir": model.log_dir, "epoch": model.epoch}))
"""


def listing(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder)
                  for d, _, files in os.walk(folder) for f in files)


@pytest.mark.slow
def test_two_worker_job_chief_writes_and_resumes_after_a_worker_dies(tmp_path):
    logs = tmp_path / "logs"
    # Two epochs, worker 1 never dies.
    results = run_workers(JOB_WORKER, [logs, 2, 0, "fresh"], tmp_path)
    for code, out, err in results:
        assert code == 0, err[-3000:]
    chief, other = (last_json(out) for _, out, _ in results)
    assert chief["epochs"] == other["epochs"] == [0, 1]
    assert chief["loss"] == other["loss"] and np.all(np.isfinite(chief["loss"]))
    assert chief["val_loss"] == other["val_loss"]
    files = listing(str(logs))
    run = os.path.basename(chief["log_dir"])
    checkpoints = [f for f in files if f.endswith(".h5")]
    assert checkpoints == [os.path.join(run, "mask_rcnn_tiny_000{}.h5".format(e))
                           for e in (1, 2)]
    assert os.path.join(run, "config.json") in files
    assert any("events" in f for f in files)          # the chief's TensorBoard log
    # Only one run folder: the other worker wrote nothing.
    assert {f.split(os.sep)[0] for f in files} == {run}

    # Resume for epochs 3-4; worker 1 dies during epoch 4. The job fails
    # (the chief does not hang) and writes no checkpoint for epoch 4.
    results = run_workers(JOB_WORKER, [logs, 4, 4, "resume"], tmp_path)
    assert results[1][0] == 7
    assert results[0][0] != 0
    assert "WorkerLostError" in results[0][2] and "task:1" in results[0][2]
    assert "--weights last" in results[0][2]
    checkpoints = [f for f in listing(str(logs)) if f.endswith(".h5")]
    assert checkpoints[-1] == os.path.join(run, "mask_rcnn_tiny_0003.h5")

    # Restarted, the job resumes from the chief's epoch-3 checkpoint.
    results = run_workers(JOB_WORKER, [logs, 4, 0, "resume"], tmp_path)
    for code, out, err in results:
        assert code == 0, err[-3000:]
    chief, other = (last_json(out) for _, out, _ in results)
    assert chief["start"] == other["start"] == 3
    assert chief["epochs"] == [3] and chief["epoch"] == 4
    checkpoints = [f for f in listing(str(logs)) if f.endswith(".h5")]
    assert checkpoints == [os.path.join(run, "mask_rcnn_tiny_000{}.h5".format(e))
                           for e in (1, 2, 3, 4)]
