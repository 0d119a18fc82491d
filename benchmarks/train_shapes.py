"""Learning benchmark: train a model mode (Mask R-CNN by default, ``--arch
yolact``) from random initialisation on the synthetic shapes data (the shapes sample's dataset and ShapesConfig) for a
wall-clock budget, then report mAP@0.5 (utils.compute_ap) and
mAP@[.5:.95] on validation images drawn with a different seed.

Usage (from the repository root):

    python benchmarks/train_shapes.py                  # 15 minutes, 50 validation images
    python benchmarks/train_shapes.py --minutes 2 --val-images 10   # smoke test
    python benchmarks/train_shapes.py --arch yolact    # the YOLACT mode
    python benchmarks/train_shapes.py --arch centernet --set CENTERNET_TWO_STAGE=true

The same checkpoint is also evaluated with bfloat16 inference
(``MIXED_PRECISION = "bfloat16"``; target: mAP within 0.01 of float32)
unless ``--no-bfloat16-check``.

With ``--curve N`` the mAP@0.5 on the first 10 validation images is also
measured every N epochs (the learning curve, in the JSON; its evaluation
time counts against the budget).

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
from mrcnn import cli  # noqa: E402
from mrcnn.cli import config_assignment  # noqa: E402
from samples_loader import load_sample  # noqa: E402


def load_shapes():
    return load_sample('samples/shapes/shapes.py', 'shapes_sample')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--val-images", type=int, default=50)
    parser.add_argument("--train-images", type=int, default=500)
    parser.add_argument("--logs", default=None, help="model directory (default: a temp dir)")
    parser.add_argument("--arch", default="mask_rcnn", help="Config.MODEL (default mask_rcnn)")
    parser.add_argument("--set", type=config_assignment, action="append", default=[],
                        metavar="KEY=VALUE", dest="set_values",
                        help="a configuration value over ShapesConfig (JSON where it is "
                             "JSON), e.g. CENTERNET_TWO_STAGE=true; repeatable")
    parser.add_argument("--curve", type=int, default=0, metavar="N",
                        help="also measure mAP@0.5 on 10 validation images every N epochs")
    parser.add_argument("--no-bfloat16-check", dest="bfloat16_check", action="store_false",
                        help="skip evaluating the same checkpoint with MIXED_PRECISION="
                             "'bfloat16' inference (by default both are reported)")
    args = parser.parse_args()

    import keras
    import numpy as np

    shapes = load_shapes()
    model_dir = args.logs or tempfile.mkdtemp(prefix="train_shapes_")

    step_times = []
    epoch_ends = []
    start = time.time()

    class StepTimer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.t = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            step_times.append(time.perf_counter() - self.t)

        def on_epoch_end(self, epoch, logs=None):
            epoch_ends.append(time.time() - start)

    config = shapes.ShapesConfig()
    config.MODEL = args.arch
    inference_config = shapes.InferenceConfig()
    inference_config.MODEL = args.arch
    for key, value in args.set_values:
        for target in (config, inference_config):
            cli._apply(target, {key: value}, "--set", {})
    config.validate()
    _, dataset_val = shapes.make_datasets(0, args.val_images)
    callbacks = [StepTimer()]
    curve = None
    if args.curve > 0:
        from mrcnn import model as modellib
        from mrcnn.callbacks import MeanAveragePrecisionCallback
        curve = MeanAveragePrecisionCallback(
            modellib.create_model("inference", inference_config, model_dir), dataset_val,
            every_n_epochs=args.curve, limit=10)
        callbacks.append(curve)
    model, history, train_seconds = shapes.train(
        model_dir, minutes=args.minutes, epochs=1000, config=config,
        train_images=args.train_images, val_images=args.val_images, verbose=2,
        callbacks=callbacks)

    infer, checkpoint = shapes.inference_model(model_dir, "last", inference_config)
    eval_start = time.time()
    scores = shapes.evaluate(infer, dataset_val)
    eval_seconds = time.time() - eval_start
    scores_bf16 = None
    if args.bfloat16_check:
        inference_config.MIXED_PRECISION = "bfloat16"
        infer_bf16, _ = shapes.inference_model(model_dir, checkpoint, inference_config)
        scores_bf16 = shapes.evaluate(infer_bf16, dataset_val)
    result = {
        "benchmark": "train_shapes",
        "arch": args.arch,
        "settings": dict(args.set_values),
        "target": {"mAP@0.5": 0.90, "minutes": 15,
                   "bfloat16 inference mAP within": 0.01},
        "scores": scores,
        "scores_bfloat16_inference": scores_bf16,
        "bfloat16_mAP@0.5_delta": scores_bf16 and round(
            scores_bf16["mAP@0.5"] - scores["mAP@0.5"], 4),
        "training_minutes": round(train_seconds / 60, 2),
        "epochs": len(history.epoch),
        "steps": len(step_times),
        "batch_size": config.BATCH_SIZE,
        "median_step_s": round(float(np.median(step_times)), 3) if step_times else None,
        "final_losses": {k: round(float(v[-1]), 4) for k, v in history.history.items()
                         if k != "val_mAP"},
        "history": {k: [round(float(x), 4) for x in v] for k, v in history.history.items()},
        "epoch_minutes": [round(t / 60, 2) for t in epoch_ends],
        "curve": [{"epoch": epoch, "minutes": round(epoch_ends[epoch - 1] / 60, 2),
                   "val_mAP@0.5 (10 images)": round(value, 4)}
                  for epoch, value in (curve.history if curve else [])],
        "evaluation_s": round(eval_seconds, 1),
        "checkpoint": checkpoint,
        "machine": machine_info(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    from mrcnn.quiet import quiet_tensorflow
    quiet_tensorflow()  # before TensorFlow loads; TF_CPP_MIN_LOG_LEVEL set by the user wins
    main()
