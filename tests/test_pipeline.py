"""The tf.data training pipeline: permutations per pass, skipping, error
handling, augmentation sources and constant inputs."""
import logging
import os

import numpy as np
import pytest

from mrcnn.dataset import Dataset
from mrcnn.data.pipeline import make_dataset

SIGNATURE = [("input_id", (1,), np.int64), ("input_flag", (2,), np.float32)]


def make(count, sources=("a",)):
    dataset = Dataset()
    for i in range(count):
        source = sources[i % len(sources)]
        dataset.add_image(source, image_id=i, path="/data/{}/{}.png".format(source, i))
    dataset.prepare()
    return dataset


def ids_of(batches):
    return [int(i) for b in batches for i in b["input_id"].numpy().ravel()]


def test_each_pass_is_a_fresh_permutation():
    dataset = make(12)
    data = make_dataset(dataset, lambda i, aug: [np.array([i]), np.zeros(2)], SIGNATURE,
                        batch_size=4, seed=7)
    batches = list(data.take(9))  # three passes of 12 images
    ids = ids_of(batches)
    passes = [ids[0:12], ids[12:24], ids[24:36]]
    for p in passes:
        assert sorted(p) == list(range(12))  # no duplicates, nothing dropped
    assert passes[0] != passes[1] and passes[1] != passes[2]
    assert batches[0]["input_id"].shape == (4, 1)


def test_a_shard_is_every_count_th_image_and_the_shards_cover_the_dataset():
    dataset = make(10)
    seen = []
    for index in range(3):
        data = make_dataset(dataset, lambda i, aug: [np.array([i]), np.zeros(2)], SIGNATURE,
                            batch_size=1, seed=index, shard=(index, 3))
        ids = ids_of(data.take(8))
        share = list(range(10))[index::3]
        assert sorted(set(ids)) == share          # only this worker's images, all of them
        seen += share
    assert sorted(seen) == list(range(10))
    with pytest.raises(ValueError, match="fewer than the 4 workers"):
        make_dataset(make(3), None, SIGNATURE, batch_size=1, shard=(0, 4))


def test_images_without_instances_are_skipped():
    dataset = make(10)
    data = make_dataset(dataset, lambda i, aug: None if i % 2 else [np.array([i]), np.zeros(2)],
                        SIGNATURE, batch_size=5, shuffle=False, repeat=False)
    assert ids_of(data) == [0, 2, 4, 6, 8]


def test_failed_image_is_logged_with_its_path_and_skipped(caplog):
    dataset = make(6)

    def sample(i, aug):
        if i == 3:
            raise IOError("cannot read")
        return [np.array([i]), np.zeros(2)]

    with caplog.at_level(logging.WARNING, logger="mrcnn.data.pipeline"):
        data = make_dataset(dataset, sample, SIGNATURE, batch_size=5, shuffle=False,
                            repeat=False)
        assert ids_of(data) == [0, 1, 2, 4, 5]
    assert "/data/a/3.png" in caplog.text and "cannot read" in caplog.text


def test_repeated_failures_stop_the_pipeline():
    dataset = make(8)

    def sample(i, aug):
        raise IOError("disk gone")

    data = make_dataset(dataset, sample, SIGNATURE, batch_size=2, shuffle=False)
    with pytest.raises(Exception, match="disk gone"):
        list(data.take(1))


def test_no_augmentation_sources_and_constants():
    dataset = make(6, sources=("plain", "augmented"))
    seen = {}

    def sample(i, aug):
        seen[i] = aug
        return [np.array([i]), np.zeros(2)]

    data = make_dataset(dataset, sample, SIGNATURE, batch_size=3, shuffle=False, repeat=False,
                        augmentation="flip", no_augmentation_sources=["plain"],
                        constants={"input_anchors": np.arange(8, dtype=np.float32).reshape(2, 4)})
    batches = list(data)
    assert all(seen[i] is None for i in range(0, 6, 2))
    assert all(seen[i] == "flip" for i in range(1, 6, 2))
    anchors = batches[0]["input_anchors"].numpy()
    assert anchors.shape == (3, 2, 4)
    np.testing.assert_array_equal(anchors[2], np.arange(8).reshape(2, 4))


def test_wrong_sample_shape_names_the_image():
    dataset = make(2)
    data = make_dataset(dataset, lambda i, aug: [np.array([i, i]), np.zeros(2)], SIGNATURE,
                        batch_size=1, shuffle=False, repeat=False)
    with pytest.raises(Exception, match=r"input_id has shape \(2,\), expected \(1,\)"):
        list(data)


def test_empty_or_small_dataset_is_rejected():
    with pytest.raises(ValueError, match="prepare"):
        make_dataset(Dataset(), None, SIGNATURE, batch_size=1)
    with pytest.raises(ValueError, match="fewer than one batch"):
        make_dataset(make(2), None, SIGNATURE, batch_size=4, repeat=False)


def test_endless_dataset_smaller_than_a_batch_spans_passes():
    data = make_dataset(make(3), lambda i, aug: [np.array([i]), np.zeros(2)], SIGNATURE,
                        batch_size=4, shuffle=False)
    assert ids_of(data.take(3)) == [0, 1, 2] * 4


EXIT_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from tiny_models import TinyConfig, shapes_dataset
from mrcnn import model as modellib
model = modellib.MaskRCNN("training", TinyConfig(), {logs!r})
iterator = iter(model.training_dataset(shapes_dataset(20, 0)))
next(iterator)
print("exiting with a live iterator", flush=True)
"""


def test_process_exits_while_an_iterator_is_alive(tmp_path):
    # Without the at-exit release, interpreter shutdown destroys the
    # iterator while loader threads wait for the GIL, and the process hangs
    # forever (seen with a model's training_dataset, as in a notebook that
    # looks at a batch).
    import subprocess
    import sys
    script = tmp_path / "exit_with_iterator.py"
    script.write_text(EXIT_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)),
                                         logs=str(tmp_path)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=90, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "exiting with a live iterator" in result.stdout


def test_pipelines_run_without_the_autotune_thread():
    """Destroying an autotuned iterator waits for its optimisation thread's
    sleep (Keras destroys the validation iterator every epoch: the shapes
    sample idled 15-17 s in every other epoch). Autotuning is off, and the
    pipeline still loads in parallel and prefetches."""
    data = make_dataset(make(6), lambda i, aug: [np.array([i]), np.zeros(2)], SIGNATURE,
                        batch_size=2, shuffle=False, repeat=False)
    assert data.options().autotune.enabled is False
    assert ids_of(data) == list(range(6))
