"""Export benchmark: latency of the exported SavedModel's ``serve``
signature (molding, network, detection and un-molding in the graph)
against ``detect()`` on the same model and image, in one run, alternating.

Mask R-CNN ResNet50 at 512 px with random weights (COCO class count), one
1024x768 photo (downscaled to 512 in both). The target: ``serve`` within
10% of ``detect()``.

Usage (from the repository root):

    python benchmarks/bench_export.py [--runs 7] [--size 512] [--arch mask_rcnn]

Prints one JSON object: medians and minimums of both, their ratio, the
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
    parser.add_argument("--arch", default="mask_rcnn", choices=["mask_rcnn", "centernet"])
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

    for _ in range(2):
        detections = (run_detect(), run_serve())
    times = {"detect": [], "serve": []}
    for _ in range(args.runs):
        for name, fn in (("detect", run_detect), ("serve", run_serve)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({
        "benchmark": "bench_export",
        "arch": args.arch, "image_size": args.size, "photo": [768, 1024],
        "detections": {"detect": detections[0], "serve": detections[1]},
        "detect_median_s": round(medians["detect"], 3),
        "detect_min_s": round(min(times["detect"]), 3),
        "serve_median_s": round(medians["serve"], 3),
        "serve_min_s": round(min(times["serve"]), 3),
        "ratio_serve_over_detect": round(medians["serve"] / medians["detect"], 3),
        "target_ratio": 1.1,
        "runs": args.runs,
        "machine": machine_info(),
    }, indent=2))


if __name__ == "__main__":
    from mrcnn.quiet import quiet_tensorflow
    quiet_tensorflow()
    main()
