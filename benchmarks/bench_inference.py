"""Inference speed: steady-state ``detect()`` latency and peak memory of
inference models with random weights (COCO class count): Mask R-CNN with
default detection settings on a 1024x768 photo, and YOLACT
(``yolact_resnet50@550``) with DETECTION_MIN_CONFIDENCE 0 on a 1024x1024
one, so that it too returns its 100 detections with masks (the worst case
of post-processing: on the photo, its best-scoring random detections lie in
the padding and are dropped; the larger square image only adds work for
YOLACT's mask resizing); CenterNet R50 (one-stage, and ``centernet2_``: the
two-stage variant) at 512 and 1024 on the photo, also with
DETECTION_MIN_CONFIDENCE 0 (100 detections with masks); plus the backbone's
convolution throughput. The JSON's ``ratios`` give each case over the Mask
R-CNN case it is compared with, per precision, and the target where there
is one (YOLACT-550 / Mask R-CNN-1024 at most 1/3; one-stage CenterNet /
Mask R-CNN at the same size at most 0.6).

Usage (from the repository root):

    python benchmarks/bench_inference.py                 # every case
    python benchmarks/bench_inference.py --only resnet50@512 --runs 3
    python benchmarks/bench_inference.py --only yolact_resnet50@550 --only resnet50@1024
    python benchmarks/bench_inference.py --only centernet_resnet50@512 --only resnet50@512
    python benchmarks/bench_inference.py --precision float32
    python benchmarks/bench_inference.py --only resnet50@1024 --detections 10  # a typical photo

``--detections N`` sets each case's DETECTION_MIN_CONFIDENCE so that the
image gives exactly N detections (of DETECTION_MAX_INSTANCES slots), the
case of a real photo with a handful of objects.

Every case runs in float32 and with ``MIXED_PRECISION = "bfloat16"`` (the
default ``--precision both``); bfloat16 pays off on CPUs with AMX or
AVX512-BF16, which the machine section reports.

Each case runs in its own subprocess so peak RSS is per case. Per case:
build the model, warm up with 2 calls, then time ``--runs`` calls on one
random image (1024x768, or 1024x1024 for YOLACT; median and min). The
backbone (ResNet + FPN, i.e. everything before the mode's head) is timed
alone as well, and its FLOPs
are counted from the Conv2D layers' shapes, giving GFLOP/s.
Prints one JSON object.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from machine import machine_info

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CASES = {"resnet50@1024": ("resnet50", 1024, "mask_rcnn"),
         "resnet101@1024": ("resnet101", 1024, "mask_rcnn"),
         "resnet50@512": ("resnet50", 512, "mask_rcnn"),
         "yolact_resnet50@550": ("resnet50", 550, "yolact"),
         "centernet_resnet50@512": ("resnet50", 512, "centernet"),
         "centernet_resnet50@1024": ("resnet50", 1024, "centernet"),
         "centernet2_resnet50@512": ("resnet50", 512, "centernet2"),
         "centernet2_resnet50@1024": ("resnet50", 1024, "centernet2")}

# Ratios reported: (case, the Mask R-CNN case it is compared with, target).
RATIOS = [("yolact_resnet50@550", "resnet50@1024", 1 / 3),
          ("centernet_resnet50@512", "resnet50@512", 0.6),
          ("centernet_resnet50@1024", "resnet50@1024", 0.6),
          ("centernet2_resnet50@512", "resnet50@512", None),
          ("centernet2_resnet50@1024", "resnet50@1024", None)]


def run_case(name, runs, precision, wanted=None, xla=False):
    import keras
    import numpy as np
    import tensorflow as tf

    from mrcnn import model as modellib
    from mrcnn.config import Config

    backbone, size, arch = CASES[name]
    two_stage = arch == "centernet2"
    mode = "centernet" if two_stage else arch

    class BenchConfig(Config):
        NAME = "bench"
        MODEL = mode
        CENTERNET_TWO_STAGE = two_stage
        NUM_CLASSES = 81
        GPU_COUNT = 1
        IMAGES_PER_GPU = 1
        BACKBONE = backbone
        IMAGE_MIN_DIM = size
        IMAGE_MAX_DIM = size
        MIXED_PRECISION = precision == "bfloat16" and "bfloat16"

    if arch in ("yolact", "centernet"):
        # Random heads score below the default threshold: every slot a
        # detection with a mask, the worst case.
        BenchConfig.DETECTION_MIN_CONFIDENCE = 0.0

    shape = (1024, 1024, 3) if arch == "yolact" else (768, 1024, 3)
    image = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    if wanted is not None:
        # A threshold between the wanted-th and the next score of all the
        # slots: the same network then returns exactly that many detections
        # (NMS keeps boxes in score order, so dropping lower scores first
        # changes nothing above them).
        BenchConfig.DETECTION_MIN_CONFIDENCE = 0.0
        keras.utils.set_random_seed(0)
        model = modellib.create_model("inference", BenchConfig(), "/tmp/bench_inference_logs")
        scores = np.sort(model.detect([image])[0]["scores"])[::-1]
        if len(scores) <= wanted:
            raise SystemExit("{}: only {} detections at confidence 0; --detections {} "
                             "cannot be met".format(name, len(scores), wanted))
        BenchConfig.DETECTION_MIN_CONFIDENCE = float(scores[wanted - 1] + scores[wanted]) / 2
    keras.utils.set_random_seed(0)
    model = modellib.create_model("inference", BenchConfig(), "/tmp/bench_inference_logs")
    for _ in range(2):
        detections = len(model.detect([image])[0]["class_ids"])
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        model.detect([image])
        times.append(time.perf_counter() - t)

    # Backbone alone (ResNet + FPN: image -> P2..P6), built with a fixed
    # input size so every layer's output shape, hence its FLOPs, is known.
    from mrcnn.backbone import fpn_graph, resnet_graph
    keras.config.set_dtype_policy(BenchConfig().dtype_policy_name())
    image_input = keras.Input((size, size, 3))
    _, c2, c3, c4, c5 = resnet_graph(image_input, backbone, stage5=True, train_bn=False)
    if arch == "yolact":  # P3-P5 with bilinear top-down resizing (P6, P7 are in its head)
        pyramid = fpn_graph(None, c3, c4, c5, 256, upsampling="bilinear", relu=True)[1:4]
    elif mode == "centernet":  # P3-P5 (P6, P7 are two small convolutions more)
        pyramid = fpn_graph(None, c3, c4, c5, 256)[1:4]
    else:
        pyramid = fpn_graph(c2, c3, c4, c5, 256)
    backbone_model = keras.Model(image_input, pyramid)
    x = tf.random.uniform((1, size, size, 3))

    def median_seconds(jit_compile):
        fn = tf.function(lambda x: backbone_model(x, training=False), jit_compile=jit_compile)
        for _ in range(2):
            fn(x)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            [o.numpy() for o in fn(x)]
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    b_median = median_seconds(False)
    # The same backbone compiled by XLA (jit_compile), for the decision
    # whether any part of inference should use it.
    xla_median = round(median_seconds(True), 3) if xla else None
    flops = 0
    for layer in backbone_model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            out_h, out_w = layer.output.shape[1:3]
            kh, kw = layer.kernel_size
            flops += 2 * out_h * out_w * kh * kw * layer.kernel.shape[2] * layer.filters
    return {
        "case": name, "model": arch, "precision": precision, "backbone": backbone,
        "image_size": size, "detections": detections,
        "detect_median_s": round(statistics.median(times), 3),
        "detect_min_s": round(min(times), 3),
        "backbone_median_s": round(b_median, 3),
        "backbone_xla_median_s": xla_median,
        "backbone_gflop": round(flops / 1e9, 1),
        "backbone_gflops_per_s": round(flops / 1e9 / b_median, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "runs": runs,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(CASES), action="append")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--precision", choices=["float32", "bfloat16", "both"], default="both")
    parser.add_argument("--detections", type=int, default=None, metavar="N",
                        help="set each case's DETECTION_MIN_CONFIDENCE so that the image "
                             "gives exactly N detections (default: the case's own setting)")
    parser.add_argument("--xla", action="store_true",
                        help="also time the backbone compiled with XLA (jit_compile)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.detections is not None and args.detections < 1:
        parser.error("--detections must be at least 1")
    if args.case:
        print(json.dumps(run_case(args.case, args.runs, args.precision, args.detections,
                                  args.xla)))
        return
    results = []
    precisions = ["float32", "bfloat16"] if args.precision == "both" else [args.precision]
    cases = [(name, precision) for name in args.only or list(CASES) for precision in precisions]
    for name, precision in cases:
        print("running", name, precision, file=sys.stderr)
        extra = [] if args.detections is None else ["--detections", str(args.detections)]
        extra += ["--xla"] if args.xla else []
        out = subprocess.run([sys.executable, __file__, "--case", name, "--runs",
                              str(args.runs), "--precision", precision] + extra,
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit("case {} ({}) failed:\n{}".format(name, precision,
                                                               out.stderr[-3000:]))
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    medians = {(r["case"], r["precision"]): r["detect_median_s"] for r in results}
    ratios = []
    for case, baseline, target in RATIOS:
        for precision in precisions:
            if (case, precision) in medians and (baseline, precision) in medians:
                ratios.append({"case": case, "over": baseline, "precision": precision,
                               "ratio": round(medians[(case, precision)]
                                              / medians[(baseline, precision)], 3),
                               "target": target and round(target, 3)})
    print(json.dumps({
        "benchmark": "bench_inference",
        "targets_s": {"resnet50@1024": 2.5, "resnet50@512": 0.8},
        "ratios": ratios,
        "results": results,
        "machine": machine_info(),
    }, indent=2))


if __name__ == "__main__":
    from mrcnn.quiet import quiet_tensorflow
    quiet_tensorflow()  # before TensorFlow loads; TF_CPP_MIN_LOG_LEVEL set by the user wins
    main()
