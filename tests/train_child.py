"""Training process for tests/test_reliability.py, which kills it.

    python train_child.py MODEL_DIR MODE

Trains the tiny test model towards epoch 3 and announces on stdout where
it is, then blocks at the chosen moment so the parent can kill it there:

* ``mid_epoch``: during the 2nd batch of epoch 2 (epoch 1's checkpoint is
  on disk);
* ``during_save``: half-way through writing epoch 2's checkpoint (the real
  writer, paused after some of its layer groups are in the file).

Each line is flushed; the parent waits for ``READY`` before killing.
"""
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402

from mrcnn import model as modellib  # noqa: E402
from mrcnn import weights  # noqa: E402
from mrcnn.weights import hdf5  # noqa: E402
from tiny_models import TinyConfig, shapes_dataset  # noqa: E402


def announce(text):
    print(text, flush=True)


def block():
    announce("READY")
    time.sleep(600)


class BlockMidEpoch(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        if self.epoch == 1 and batch == 1:
            block()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch


def block_during_save():
    real = hdf5._write_layer_group
    state = {"saves": 0, "layers": 0}
    original_save = weights.save_weights

    def counting_save(keras_model, filepath, **kwargs):
        state["saves"] += 1
        state["layers"] = 0
        return original_save(keras_model, filepath, **kwargs)

    def slow_write(f, layer):
        real(f, layer)
        state["layers"] += 1
        if state["saves"] == 2 and state["layers"] == 5:
            f.flush()
            block()

    hdf5._write_layer_group = slow_write
    weights.save_weights = counting_save


def main():
    model_dir, mode = sys.argv[1], sys.argv[2]
    callbacks = []
    if mode == "mid_epoch":
        callbacks.append(BlockMidEpoch())
    elif mode == "during_save":
        block_during_save()
    else:
        raise SystemExit("unknown mode {}".format(mode))
    config = TinyConfig()
    model = modellib.MaskRCNN("training", config, model_dir)
    announce("LOG_DIR " + model.log_dir)
    model.train(shapes_dataset(8, seed=1), shapes_dataset(4, seed=2), 0.01, epochs=3,
                layers="all", custom_callbacks=callbacks, verbose=0)
    announce("FINISHED")


if __name__ == "__main__":
    main()
