"""Long-run memory: resident memory over many consecutive ``detect()`` calls
on images of varying sizes, as a detection service would make them.

Usage (from the repository root):

    python benchmarks/bench_memory.py                        # 1000 calls, ResNet50, up to 256 px
    python benchmarks/bench_memory.py --calls 200 --backbone resnet18

The model is an inference MaskRCNN with random weights and
DETECTION_MIN_CONFIDENCE 0, so every call returns DETECTION_MAX_INSTANCES
detections and unmolds that many full-size masks (the heaviest path). Image
sizes cycle through a list of shapes (portrait, landscape, square, small and
large) and ``--resize-mode`` ``pad64`` (default) gives a different molded
shape for most of them, which is what would make a per-shape graph retrace;
``square`` gives one molded shape.

Warm-up is the first ``--warmup`` calls (every image shape seen at least
once); then RSS is sampled every ``--every`` calls. Reports the RSS after
warm-up, at the end, the growth between them (target: at most 100 MB over
1000 calls), the least-squares slope in MB per 1000 calls, the number of
traces of the inference function (must stay 1), open matplotlib figures,
and the latency. Prints one JSON object.
"""

import argparse
import gc
import json
import os
import statistics
import sys
import time

from machine import machine_info

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = [(256, 256), (192, 256), (256, 160), (128, 128), (200, 130), (97, 250), (256, 64),
          (150, 150)]


def rss_mb():
    """Current resident set size of this process in MB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--size", type=int, default=256, help="IMAGE_MAX_DIM")
    parser.add_argument("--resize-mode", default="pad64", choices=["pad64", "square"])
    args = parser.parse_args()
    if args.warmup < len(SHAPES):
        parser.error("--warmup must cover every image shape once ({} calls)".format(len(SHAPES)))

    import keras
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from mrcnn import model as modellib
    from mrcnn.config import Config

    class MemoryConfig(Config):
        NAME = "memory"
        NUM_CLASSES = 81
        GPU_COUNT = 1
        IMAGES_PER_GPU = 1
        BACKBONE = args.backbone
        IMAGE_RESIZE_MODE = args.resize_mode
        IMAGE_MIN_DIM = 64 if args.resize_mode == "pad64" else args.size
        IMAGE_MAX_DIM = args.size
        POST_NMS_ROIS_INFERENCE = 300
        DETECTION_MIN_CONFIDENCE = 0.0

    keras.utils.set_random_seed(0)
    model = modellib.create_model("inference", MemoryConfig(), os.path.join(ROOT, "logs"))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in SHAPES]
    molded_shapes = sorted({model.mold_inputs([im])[0].shape[1:3] for im in images})

    samples, latencies, detections = [], [], 0
    baseline = None
    start = time.time()
    for call in range(args.calls):
        image = images[call % len(images)]
        t = time.perf_counter()
        result = model.detect([image])[0]
        latencies.append(time.perf_counter() - t)
        detections += len(result["class_ids"])
        del result
        done = call + 1
        if done == args.warmup:
            gc.collect()
            baseline = rss_mb()
            samples.append((done, baseline))
        elif done > args.warmup and (done - args.warmup) % args.every == 0:
            samples.append((done, rss_mb()))
            print("{} calls, RSS {:.1f} MB, {:.2f} s/call".format(
                done, samples[-1][1], statistics.median(latencies[-args.every:])),
                file=sys.stderr, flush=True)
    gc.collect()
    final = rss_mb()
    if not samples or samples[-1][0] != args.calls:
        samples.append((args.calls, final))
    calls_after = args.calls - args.warmup
    xs = np.array([s[0] for s in samples], dtype=float)
    ys = np.array([s[1] for s in samples], dtype=float)
    slope = float(np.polyfit(xs, ys, 1)[0] * 1000) if len(samples) > 2 else None
    traces = model._predict_fn.experimental_get_tracing_count()
    result = {
        "benchmark": "bench_memory",
        "target": {"growth_mb_per_1000_calls": 100, "traces": 1},
        "backbone": args.backbone,
        "resize_mode": args.resize_mode,
        "image_shapes": ["{}x{}".format(h, w) for h, w in SHAPES],
        "molded_shapes": ["{}x{}".format(int(h), int(w)) for h, w in molded_shapes],
        "calls": args.calls,
        "warmup_calls": args.warmup,
        "rss_after_warmup_mb": round(baseline, 1),
        "rss_end_mb": round(final, 1),
        "growth_mb": round(final - baseline, 1),
        "growth_mb_per_1000_calls": round((final - baseline) * 1000 / max(calls_after, 1), 1),
        "slope_mb_per_1000_calls": None if slope is None else round(slope, 1),
        "rss_samples_mb": {str(int(x)): round(y, 1) for x, y in samples},
        "traces": int(traces),
        "open_figures": len(plt.get_fignums()),
        "median_latency_s": round(statistics.median(latencies[args.warmup:] or latencies), 4),
        "detections_per_call": round(detections / args.calls, 1),
        "wall_s": round(time.time() - start, 1),
        "machine": machine_info(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    from mrcnn.quiet import quiet_tensorflow
    quiet_tensorflow()  # before TensorFlow loads; TF_CPP_MIN_LOG_LEVEL set by the user wins
    main()
