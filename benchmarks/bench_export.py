"""Export benchmark: latency of the exported SavedModel's ``serve``
signature (molding, network, detection and un-molding in the graph)
against ``detect()`` on the same model and image, in one run, alternating.

Mask R-CNN ResNet50 at 512 px with random weights (COCO class count), one
1024x768 photo (downscaled to 512 in both). The target: ``serve`` within
10% of ``detect()``. With ``--tflite`` the TFLite export for that photo's
size (``input_size=(768, 1024)``) runs too, in TensorFlow's TFLite
interpreter on all cores, and its latency is reported beside them (no
target: the issue asks for the figure), with its conversion time.

Usage (from the repository root):

    python benchmarks/bench_export.py [--runs 7] [--size 512] [--arch mask_rcnn] [--tflite]

Prints one JSON object: medians and minimums of each, the ratios, the
detections each returned, and the machine.
"""

import argparse
import json
import os
import statistics
import tempfile
import time

from machine import machine_info

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--arch", default="mask_rcnn",
                        choices=["mask_rcnn", "centernet", "yolact"])
    parser.add_argument("--tflite", action="store_true",
                        help="also time the TFLite export at the photo's size")
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    from mrcnn import model as modellib
    from mrcnn.config import Config

    class BenchConfig(Config):
        NAME = "bench"
        MODEL = args.arch
        NUM_CLASSES = 81
        GPU_COUNT = 1
        IMAGES_PER_GPU = 1
        BACKBONE = "resnet50"
        IMAGE_MIN_DIM = args.size
        IMAGE_MAX_DIM = args.size

    keras.utils.set_random_seed(0)
    model = modellib.create_model("inference", BenchConfig(), tempfile.mkdtemp())
    path = model.export(os.path.join(tempfile.mkdtemp(), "exported"))
    serve = tf.saved_model.load(path).signatures["serving_default"]
    image = np.random.default_rng(0).integers(0, 255, (768, 1024, 3), dtype=np.uint8)
    batch = tf.constant(image[None])

    def run_detect():
        return len(model.detect([image])[0]["class_ids"])

    def run_serve():
        out = serve(images=batch)
        return int(out["num_detections"].numpy()[0] + 0 * out["masks"].numpy().size)

    runners = [("detect", run_detect), ("serve", run_serve)]
    result = {}
    if args.tflite:
        start = time.perf_counter()
        lite_path = model.export(os.path.join(tempfile.mkdtemp(), "model.tflite"),
                                 format="tflite", input_size=image.shape[:2])
        result["tflite_conversion_s"] = round(time.perf_counter() - start, 1)
        result["tflite_mb"] = round(os.path.getsize(lite_path) / 2 ** 20, 1)
        interpreter = tf.lite.Interpreter(model_path=lite_path, num_threads=os.cpu_count())
        lite = interpreter.get_signature_runner()

        def run_tflite():
            return int(lite(images=image[None])["num_detections"][0])

        runners.append(("tflite", run_tflite))
    for _ in range(2):
        detections = {name: fn() for name, fn in runners}
    times = {name: [] for name, _ in runners}
    for _ in range(args.runs):
        for name, fn in runners:
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    medians = {k: statistics.median(v) for k, v in times.items()}
    figures = {}
    for name in times:
        figures[name + "_median_s"] = round(medians[name], 3)
        figures[name + "_min_s"] = round(min(times[name]), 3)
    figures["ratio_serve_over_detect"] = round(medians["serve"] / medians["detect"], 3)
    figures["target_ratio"] = 1.1
    if "tflite" in medians:
        figures["ratio_tflite_over_detect"] = round(medians["tflite"] / medians["detect"], 3)
    print(json.dumps(dict({
        "benchmark": "bench_export",
        "arch": args.arch, "image_size": args.size, "photo": [768, 1024],
        "detections": detections}, **figures, **result, runs=args.runs,
        machine=machine_info()), indent=2))


if __name__ == "__main__":
    from mrcnn.quiet import quiet_tensorflow
    quiet_tensorflow()
    main()
