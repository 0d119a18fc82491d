"""Learning benchmark on real data: train Mask R-CNN from random weights on
the nucleus subset of the 2018 Data Science Bowl (../shared/data/nucleus:
75 training images) for a wall-clock budget, then report mAP@0.5
(utils.compute_ap) on the 25 validation images the original sample held out,
and the learning curve (losses per epoch, validation losses included).

The configuration is the nucleus sample's (crop training, nucleus anchors,
MEAN_PIXEL, 200 GT instances, the sample's augmentation) sized for a CPU:
ResNet-18, 256 px crops, batch 4, narrower FPN and heads, all layers from
the first step (random weights: no heads-only stage), a 100-step warm-up
and a tenfold learning-rate drop after 80% of the budget. Inference uses
the sample's NucleusInferenceConfig settings (pad64, 2x upscaling) with the
same backbone and heads.

Usage (from the repository root):

    python benchmarks/train_nucleus.py                      # 30 minutes
    python benchmarks/train_nucleus.py --minutes 3 --val-limit 3   # smoke test

Prints one JSON object.
"""

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from machine import machine_info  # noqa: E402
from samples_loader import load_sample  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.join(ROOT, "..", "shared", "data", "nucleus")


def load_nucleus():
    return load_sample('samples/nucleus/nucleus.py', 'nucleus_sample')


def cpu_configs(nucleus):
    """(training config, inference config) for a CPU run from scratch."""
    sizes = dict(BACKBONE="resnet18", TRAIN_BN=None, TOP_DOWN_PYRAMID_SIZE=128,
                 RPN_CONV_CHANNELS=256, FPN_CLASSIF_FC_LAYERS_SIZE=512, MASK_HEAD_CHANNELS=64)

    class CpuNucleusConfig(nucleus.NucleusConfig):
        IMAGES_PER_GPU = 4
        IMAGE_MIN_DIM = 256
        IMAGE_MAX_DIM = 256
        STEPS_PER_EPOCH = 50
        VALIDATION_STEPS = 5
        POST_NMS_ROIS_TRAINING = 600
        LEARNING_RATE = 0.01
        LEARNING_RATE_WARMUP_STEPS = 100

    class CpuNucleusInferenceConfig(nucleus.NucleusInferenceConfig):
        POST_NMS_ROIS_INFERENCE = 1000

    for cls in (CpuNucleusConfig, CpuNucleusInferenceConfig):
        for key, value in sizes.items():
            setattr(cls, key, value)
    return CpuNucleusConfig(), CpuNucleusInferenceConfig()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=DEFAULT_DATA)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--val-limit", type=int, default=0,
                        help="evaluate only the first N validation images (default: all 25)")
    parser.add_argument("--logs", default=None, help="model directory (default: a temp dir)")
    args = parser.parse_args()
    if not os.path.isdir(os.path.join(args.dataset, "stage1_train")):
        parser.error("{} has no stage1_train/ folder; give --dataset".format(args.dataset))

    from mrcnn import model as modellib
    from mrcnn.callbacks import mean_average_precision
    from mrcnn.training import TimeBudget

    start = time.time()  # the budget covers set-up, training, validation, checkpoints
    nucleus = load_nucleus()
    config, inference_config = cpu_configs(nucleus)
    model_dir = args.logs or tempfile.mkdtemp(prefix="train_nucleus_")
    dataset_train, dataset_val = nucleus.load_datasets(args.dataset, "train")

    import keras

    class StepCounter(keras.callbacks.Callback):
        steps = 0

        def on_train_batch_end(self, batch, logs=None):
            StepCounter.steps += 1

    model = modellib.create_model("training", config, model_dir)
    history = model.train(dataset_train, dataset_val, config.LEARNING_RATE, epochs=1000,
                          layers="all", augmentation=nucleus.default_augmentation(),
                          custom_callbacks=[TimeBudget(args.minutes * 60, decay_at=(0.8,),
                                                       start=start),
                                            StepCounter()],
                          verbose=2)
    train_seconds = time.time() - start

    infer = modellib.create_model("inference", inference_config, model_dir)
    checkpoint = infer.find_last()
    infer.load_weights(checkpoint, by_name=True)
    ids = list(dataset_val.image_ids)
    if args.val_limit:
        ids = ids[:args.val_limit]
    eval_start = time.time()
    scores = mean_average_precision(infer, dataset_val, ids, iou_threshold=0.5, iou_range=True)
    curve = {key: [round(float(v), 4) for v in values]
             for key, values in history.history.items()}
    print(json.dumps({
        "benchmark": "train_nucleus",
        "scores": {"mAP@0.5": round(scores["mAP"], 4),
                   "mAP@[.5:.95]": round(scores["mAP@[.5:.95]"], 4),
                   "images": scores["images"]},
        "training_minutes": round(train_seconds / 60, 2),
        "epochs": len(history.epoch),
        "steps": StepCounter.steps,
        "batch_size": config.BATCH_SIZE,
        "learning_curve": curve,
        "evaluation_s": round(time.time() - eval_start, 1),
        "checkpoint": checkpoint,
        "machine": machine_info(),
    }, indent=1))


if __name__ == "__main__":
    from mrcnn.quiet import quiet_tensorflow
    quiet_tensorflow()  # before TensorFlow loads; TF_CPP_MIN_LOG_LEVEL set by the user wins
    main()
