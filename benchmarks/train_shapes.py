"""Learning benchmark: train Mask R-CNN from random initialisation on the
synthetic shapes data (the shapes sample's dataset and ShapesConfig) for a
wall-clock budget, then report mAP@0.5 (utils.compute_ap) and
mAP@[.5:.95] on validation images drawn with a different seed.

Usage (from the repository root):

    python benchmarks/train_shapes.py                  # 15 minutes, 50 validation images
    python benchmarks/train_shapes.py --minutes 2 --val-images 10   # smoke test

Prints one JSON object: the scores, the training minutes (wall time of
train(), tracing and validation included), steps run, the median step time,
the checkpoint evaluated and the machine.
"""

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from machine import machine_info  # noqa: E402
from samples_loader import load_sample  # noqa: E402


def load_shapes():
    return load_sample('samples/shapes/shapes.py', 'shapes_sample')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--val-images", type=int, default=50)
    parser.add_argument("--train-images", type=int, default=500)
    parser.add_argument("--logs", default=None, help="model directory (default: a temp dir)")
    args = parser.parse_args()

    import keras
    import numpy as np

    shapes = load_shapes()
    model_dir = args.logs or tempfile.mkdtemp(prefix="train_shapes_")

    step_times = []

    class StepTimer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.t = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            step_times.append(time.perf_counter() - self.t)

    config = shapes.ShapesConfig()
    model, history, train_seconds = shapes.train(
        model_dir, minutes=args.minutes, epochs=1000, config=config,
        train_images=args.train_images, val_images=args.val_images, verbose=2,
        callbacks=[StepTimer()])
    _, dataset_val = shapes.make_datasets(0, args.val_images)

    infer, checkpoint = shapes.inference_model(model_dir, "last")
    eval_start = time.time()
    scores = shapes.evaluate(infer, dataset_val)
    result = {
        "benchmark": "train_shapes",
        "target": {"mAP@0.5": 0.90, "minutes": 15},
        "scores": scores,
        "training_minutes": round(train_seconds / 60, 2),
        "epochs": len(history.epoch),
        "steps": len(step_times),
        "batch_size": config.BATCH_SIZE,
        "median_step_s": round(float(np.median(step_times)), 3) if step_times else None,
        "final_losses": {k: round(float(v[-1]), 4) for k, v in history.history.items()},
        "evaluation_s": round(time.time() - eval_start, 1),
        "checkpoint": checkpoint,
        "machine": machine_info(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    from mrcnn.quiet import quiet_tensorflow
    quiet_tensorflow()  # before TensorFlow loads; TF_CPP_MIN_LOG_LEVEL set by the user wins
    main()
