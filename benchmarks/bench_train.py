"""Training speed: one optimizer step at batch 1, 512x512 images, all layers
trainable (ResNet50, COCO class count, default config otherwise), and the
input pipeline's throughput on its own.

Usage (from the repository root):

    python benchmarks/bench_train.py            # 5 timed steps after 2 warm-up steps
    python benchmarks/bench_train.py --backbone resnet101 --steps 3
    python benchmarks/bench_train.py --precision bfloat16

Steps are timed in float32 and with ``MIXED_PRECISION = "bfloat16"`` (the
default ``--precision both``); bfloat16 pays off on CPUs with AMX or
AVX512-BF16, which the machine section reports.

Data: synthetic shapes images rendered at 512x512 (the shapes sample's
dataset), through the same tf.data pipeline train() uses. The step time is
the median (and min) of ``--steps`` ``train_on_batch`` calls on batches
already fetched, so it excludes input time; the pipeline is then timed alone
over 30 batches (images per second), and the ratio of the two says whether
loading can keep up. Prints one JSON object.
"""

import argparse
import json
import os
import statistics
import tempfile
import time

from machine import machine_info
from samples_loader import load_sample

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def time_steps(args, dataset, precision):
    """Median/min seconds of one train_on_batch step and the first step."""
    import keras

    from mrcnn import model as modellib
    from mrcnn.config import Config

    class BenchConfig(Config):
        NAME = "bench"
        NUM_CLASSES = 81
        GPU_COUNT = 1
        IMAGES_PER_GPU = 1
        BACKBONE = args.backbone
        IMAGE_MIN_DIM = args.size
        IMAGE_MAX_DIM = args.size
        MIXED_PRECISION = precision == "bfloat16" and "bfloat16"

    keras.utils.set_random_seed(0)
    config = BenchConfig()
    model = modellib.create_model("training", config, tempfile.mkdtemp(prefix="bench_train_"))
    iterator = iter(model.training_dataset(dataset, seed=0))
    batches = [next(iterator) for _ in range(args.steps + 2)]
    model.set_trainable(".*", verbose=0)
    model.compile(config.LEARNING_RATE)
    t = time.perf_counter()
    model.keras_model.train_on_batch(batches[0])
    first_step = time.perf_counter() - t
    model.keras_model.train_on_batch(batches[1])
    times = []
    for batch in batches[2:]:
        t = time.perf_counter()
        model.keras_model.train_on_batch(batch)
        times.append(time.perf_counter() - t)
    return model, {"precision": precision, "step_median_s": round(statistics.median(times), 3),
                   "step_min_s": round(min(times), 3),
                   "first_step_s (trace + step)": round(first_step, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--precision", choices=["float32", "bfloat16", "both"], default="both")
    args = parser.parse_args()

    shapes = load_sample(os.path.join("samples", "shapes", "shapes.py"), "shapes_sample")
    dataset = shapes.ShapesDataset()
    dataset.load_shapes(40, args.size, args.size, seed=1)
    # COCO-sized heads: pad the class list to 81 (the images use 1-3).
    for class_id in range(4, 81):
        dataset.add_class("shapes", class_id, "unused{}".format(class_id))
    dataset.prepare()
    precisions = ["float32", "bfloat16"] if args.precision == "both" else [args.precision]
    steps = []
    for precision in precisions:
        model, result = time_steps(args, dataset, precision)
        steps.append(result)

    # The input pipeline alone (fresh iterator, warmed by one batch).
    iterator = iter(model.training_dataset(dataset))
    next(iterator)
    count = 30
    t = time.perf_counter()
    for _ in range(count):
        next(iterator)
    pipeline_s = time.perf_counter() - t
    images_per_s = count * model.config.BATCH_SIZE / pipeline_s
    slowest = max(r["step_median_s"] for r in steps)
    fastest = min(r["step_median_s"] for r in steps)
    print(json.dumps({
        "benchmark": "bench_train",
        "backbone": args.backbone, "image_size": args.size, "batch_size": 1,
        "target_step_s": 1.8,
        "steps": steps,
        "pipeline_images_per_s": round(images_per_s, 1),
        # How many times faster than the fastest (and slowest) step loading is.
        "pipeline_vs_training_speed": [round(images_per_s * fastest, 1),
                                       round(images_per_s * slowest, 1)],
        "machine": machine_info(),
    }, indent=2))


if __name__ == "__main__":
    from mrcnn.quiet import quiet_tensorflow
    quiet_tensorflow()  # before TensorFlow loads; TF_CPP_MIN_LOG_LEVEL set by the user wins
    main()
