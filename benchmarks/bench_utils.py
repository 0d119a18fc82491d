"""Benchmark the vectorised NumPy utilities of ``mrcnn.utils`` against
straightforward per-box / per-pair loop baselines (``baselines.py``).

For every benchmark the script first checks that our output equals the
baseline's, then times both (median and min of several runs, with
time.perf_counter) and prints one JSON object to stdout. Progress goes to
stderr.

Usage (from the repository root):

    python benchmarks/bench_utils.py               # full sizes, 5 runs each
    python benchmarks/bench_utils.py --quick       # small sizes, 2 runs (smoke test)
    python benchmarks/bench_utils.py --only compute_ap
    python benchmarks/bench_utils.py --only non_max_suppression   # both NMS cases

Benchmarks: compute_overlaps, compute_overlaps_masks,
non_max_suppression_uniform, non_max_suppression_clustered,
generate_pyramid_anchors, compute_ap, resize_image, resize_mask.
"""

import argparse
import hashlib
import inspect
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import baselines  # noqa: E402
from mrcnn import utils  # noqa: E402


def _source_hashes():
    """sha256 (first 16 hex digits) of the mrcnn files that define the
    measured functions, read at import time: which code was measured."""
    files = {inspect.getsourcefile(getattr(utils, name)) for name in (
        "compute_overlaps", "compute_overlaps_masks", "non_max_suppression",
        "generate_pyramid_anchors", "compute_ap", "resize_image", "resize_mask")}
    files.add(utils.__file__)
    root = os.path.dirname(os.path.dirname(os.path.abspath(utils.__file__)))
    out = {}
    for path in sorted(files):
        with open(path, "rb") as f:
            out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()[:16]
    return out


SOURCES = _source_hashes()

SEED = 0
TARGET_SPEEDUP = 5
# A baseline slower than this (seconds, one call) is timed with fewer runs.
SLOW_BASELINE_S = 10.0
SLOW_BASELINE_RUNS = 3
# Set from --only: run just this benchmark (or group, see _GROUP).
_ONLY = None
_GROUP = {
    "non_max_suppression_uniform": "non_max_suppression",
    "non_max_suppression_clustered": "non_max_suppression",
    "resize_image": "resize",
    "resize_mask": "resize",
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


############################################################
#  Data
############################################################

def random_boxes(rng, n, image_size, min_side, max_side, dtype=np.float64):
    """[n, (y1, x1, y2, x2)] boxes inside a square image, sides uniform in
    [min_side, max_side]."""
    h = rng.uniform(min_side, max_side, n)
    w = rng.uniform(min_side, max_side, n)
    y1 = rng.uniform(0, image_size - h)
    x1 = rng.uniform(0, image_size - w)
    return np.stack([y1, x1, y1 + h, x1 + w], axis=1).astype(dtype)


def clustered_boxes(rng, n, image_size, objects, min_side, max_side):
    """RPN-like proposals: [n, 4] float32 boxes jittered around ``objects``
    object boxes (centre shift ~10% of the side, log-normal size change),
    with 10% background boxes anywhere, clipped to the image."""
    obj = random_boxes(rng, objects, image_size, min_side, max_side)
    n_bg = n // 10
    which = rng.integers(0, objects, n - n_bg)
    o = obj[which]
    oh, ow = o[:, 2] - o[:, 0], o[:, 3] - o[:, 1]
    cy = o[:, 0] + oh / 2 + rng.normal(0, 0.1, len(o)) * oh
    cx = o[:, 1] + ow / 2 + rng.normal(0, 0.1, len(o)) * ow
    h = oh * np.exp(rng.normal(0, 0.2, len(o)))
    w = ow * np.exp(rng.normal(0, 0.2, len(o)))
    jit = np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=1)
    boxes = np.concatenate([jit, random_boxes(rng, n_bg, image_size, min_side, max_side)])
    boxes = np.clip(boxes, 0, image_size)
    return boxes[rng.permutation(n)].astype(np.float32)


def random_masks(rng, n, height, width, min_side, max_side):
    """[height, width, n] bool instance masks: ellipses and rectangles with
    sides uniform in [min_side, max_side], fully inside the image."""
    masks = np.zeros((height, width, n), dtype=bool)
    for k in range(n):
        h = int(rng.integers(min_side, max_side + 1))
        w = int(rng.integers(min_side, max_side + 1))
        y = int(rng.integers(0, height - h + 1))
        x = int(rng.integers(0, width - w + 1))
        if rng.random() < 0.5:  # ellipse
            yy, xx = np.ogrid[:h, :w]
            shape = (((yy + 0.5 - h / 2) / (h / 2)) ** 2
                     + ((xx + 0.5 - w / 2) / (w / 2)) ** 2) <= 1
        else:
            shape = True
        masks[y:y + h, x:x + w, k] = shape
    return masks


def shift_mask(mask, dy, dx):
    """A 2-D mask translated by (dy, dx) pixels, zero-filled."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        mask[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def prediction_masks(rng, gt_masks, n_pred, n_fp, max_shift, min_side, max_side):
    """[H, W, n_pred] predicted masks: n_pred - n_fp copies of random GT
    masks shifted by up to max_shift pixels, then n_fp unrelated masks.
    Returns (masks, index of the copied GT or -1)."""
    height, width, n_gt = gt_masks.shape
    n_tp = n_pred - n_fp
    source = rng.integers(0, n_gt, n_tp)
    masks = np.empty((height, width, n_pred), dtype=bool)
    for k, g in enumerate(source):
        dy, dx = (int(v) for v in rng.integers(-max_shift, max_shift + 1, 2))
        masks[:, :, k] = shift_mask(gt_masks[:, :, g], dy, dx)
    masks[:, :, n_tp:] = random_masks(rng, n_fp, height, width, min_side, max_side)
    return masks, np.concatenate([source, -np.ones(n_fp, dtype=source.dtype)])


############################################################
#  Timing
############################################################

def time_runs(fn, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def run_benchmark(name, size, ours, baseline, check, runs):
    """Check ours() against baseline() once (these calls also warm up), then
    time both. check(ours_out, base_out) returns (equal, details).
    Returns None (and runs nothing) when --only names another benchmark."""
    if _ONLY is not None and _ONLY not in (name, _GROUP.get(name)):
        return None
    log("[{}] {}: checking".format(name, size))
    t0 = time.perf_counter()
    base_out = baseline()
    first_base_s = time.perf_counter() - t0
    ours_out = ours()
    equal, details = check(ours_out, base_out)
    del ours_out, base_out
    log("[{}] equal={} ({}); timing".format(name, equal, details))

    base_runs = runs
    if first_base_s > SLOW_BASELINE_S and runs > SLOW_BASELINE_RUNS:
        base_runs = SLOW_BASELINE_RUNS
    ours_t = time_runs(ours, runs)
    base_t = time_runs(baseline, base_runs)
    entry = {
        "name": name,
        "size": size,
        "ours_median_s": round(statistics.median(ours_t), 6),
        "ours_min_s": round(min(ours_t), 6),
        "baseline_median_s": round(statistics.median(base_t), 6),
        "baseline_min_s": round(min(base_t), 6),
        "speedup_median": round(statistics.median(base_t) / statistics.median(ours_t), 2),
        "speedup_min": round(min(base_t) / min(ours_t), 2),
        "meets_target": statistics.median(base_t) / statistics.median(ours_t) >= TARGET_SPEEDUP,
        "equal": bool(equal),
        "check": details,
        "runs": runs,
        "baseline_runs": base_runs,
    }
    log("[{}] ours {:.4f}s, baseline {:.4f}s, speed-up {}x".format(
        name, entry["ours_median_s"], entry["baseline_median_s"], entry["speedup_median"]))
    return entry


def exact(a, b):
    """Exact equality of arrays (shape, values); reports the first mismatch."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False, "shape {} vs baseline {}".format(a.shape, b.shape)
    diff = a != b
    if not diff.any():
        return True, "identical, shape {}, dtype {} (baseline {})".format(a.shape, a.dtype, b.dtype)
    idx = tuple(int(i) for i in np.argwhere(diff)[0])
    return False, "{} of {} values differ; first at {}: {!r} vs baseline {!r}".format(
        int(diff.sum()), diff.size, idx, a[idx], b[idx])


############################################################
#  Benchmarks
############################################################

def bench_compute_overlaps(rng, quick, runs):
    n = 300 if quick else 2000
    b1 = random_boxes(rng, n, 1024, 20, 200)
    b2 = random_boxes(rng, n, 1024, 20, 200)
    return [run_benchmark(
        "compute_overlaps", "{0} x {0} float64 boxes, sides 20-200 px in 1024".format(n),
        lambda: utils.compute_overlaps(b1, b2),
        lambda: baselines.compute_overlaps_loop(b1, b2),
        exact, runs)]


def bench_compute_overlaps_masks(rng, quick, runs):
    n, side, lo, hi = (20, 256, 10, 60) if quick else (100, 1024, 20, 200)
    m1 = random_masks(rng, n, side, side, lo, hi)
    # Second set: shifted copies of the first (prediction-like) plus 40% others.
    m2, _ = prediction_masks(rng, m1, n, int(n * 0.4), 15, lo, hi)
    return [run_benchmark(
        "compute_overlaps_masks",
        "{0} x {0} bool masks {1}x{1}; shapes {2}-{3} px, second set 60% shifted copies".format(
            n, side, lo, hi),
        lambda: utils.compute_overlaps_masks(m1, m2),
        lambda: baselines.compute_overlaps_masks_loop(m1, m2),
        exact, runs)]


def bench_nms(rng, quick, runs):
    n = 1000 if quick else 6000
    threshold = 0.7
    out = []
    cases = [
        ("uniform", random_boxes(rng, n, 1024, 20, 200, np.float32),
         "{} float32 boxes uniform over 1024, sides 20-200 px".format(n)),
        ("clustered", clustered_boxes(rng, n, 1024, 30, 20, 200),
         "{} float32 RPN-like boxes around 30 objects (+10% background)".format(n)),
    ]
    for label, boxes, desc in cases:
        scores = rng.random(n).astype(np.float32)
        keep = utils.non_max_suppression(boxes, scores, threshold)
        out.append(run_benchmark(
            "non_max_suppression_" + label,
            "{}, threshold {}, {} kept".format(desc, threshold, len(keep)),
            lambda b=boxes, s=scores: utils.non_max_suppression(b, s, threshold),
            lambda b=boxes, s=scores: baselines.non_max_suppression_loop(b, s, threshold),
            exact, runs))
    return out


def bench_anchors(rng, quick, runs):
    side = 256 if quick else 1024
    scales = (32, 64, 128, 256, 512)
    ratios = [0.5, 1, 2]
    strides = [4, 8, 16, 32, 64]
    shapes = [[side // s, side // s] for s in strides]
    args = (scales, ratios, shapes, strides, 1)
    total = sum(h * w for h, w in shapes) * len(ratios)
    return [run_benchmark(
        "generate_pyramid_anchors",
        "{0}x{0} input, default config, {1} anchors".format(side, total),
        lambda: utils.generate_pyramid_anchors(*args),
        lambda: baselines.generate_pyramid_anchors_loop(*args),
        exact, runs)]


def bench_compute_ap(rng, quick, runs):
    n_gt, n_pred, side, lo, hi = (20, 60, 256, 10, 60) if quick else (100, 300, 1024, 20, 200)
    gt_masks = random_masks(rng, n_gt, side, side, lo, hi)
    gt_class_ids = rng.integers(1, 6, n_gt).astype(np.int32)
    n_fp = n_pred // 3
    pred_masks, source = prediction_masks(rng, gt_masks, n_pred, n_fp, 12, lo, hi)
    # Copies keep their GT's class 85% of the time; others get a random class.
    pred_class_ids = rng.integers(1, 6, n_pred).astype(np.int32)
    copied = (source >= 0) & (rng.random(n_pred) < 0.85)
    pred_class_ids[copied] = gt_class_ids[source[copied]]
    pred_scores = rng.random(n_pred).astype(np.float32)
    gt_boxes = utils.extract_bboxes(gt_masks)
    pred_boxes = utils.extract_bboxes(pred_masks)
    args = (gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores,
            pred_masks)

    def check(ours, base):
        names = ("mAP", "precisions", "recalls", "overlaps")
        parts = []
        ok = True
        for nm, a, b in zip(names, ours, base):
            eq, det = exact(a, b)
            ok &= eq
            if not eq:
                parts.append("{}: {}".format(nm, det))
        return ok, "; ".join(parts) or "mAP {:.6f} and precisions, recalls, overlaps " \
                                          "identical".format(float(ours[0]))

    return [run_benchmark(
        "compute_ap",
        "{} GT, {} predictions ({} shifted GT copies, {} false positives), {}x{} masks "
        "{}-{} px, classes 1-5, IoU 0.5".format(n_gt, n_pred, n_pred - n_fp, n_fp, side, side,
                                                lo, hi),
        lambda: utils.compute_ap(*args),
        lambda: baselines.compute_ap_loop(*args),
        check, runs)]


def bench_resize(rng, quick, runs):
    h, w, n_masks = 480, 640, 50
    min_dim, max_dim = 800, 1024
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    masks = random_masks(rng, n_masks, h, w, 20, 200)
    _, window, scale, padding, _ = utils.resize_image(
        image, min_dim=min_dim, max_dim=max_dim, mode="square")

    def check_image(ours, base):
        img, win, sc, pad, _ = ours
        bimg, bwin, bsc, bpad = base
        if img.shape != bimg.shape or img.dtype != bimg.dtype:
            return False, "shape/dtype {} {} vs baseline {} {}".format(
                img.shape, img.dtype, bimg.shape, bimg.dtype)
        diff = np.abs(img.astype(np.int16) - bimg.astype(np.int16))
        meta = (tuple(win) == tuple(bwin) and sc == bsc
                and [tuple(p) for p in pad] == [tuple(p) for p in bpad])
        ok = bool(diff.max() <= 1) and meta
        return ok, "max |diff| {} grey level(s), {} of {} values differ; window/scale/padding " \
                   "{}".format(int(diff.max()), int((diff > 0).sum()), diff.size,
                               "equal" if meta else "DIFFER: {} {} {} vs {} {} {}".format(
                                   win, sc, pad, bwin, bsc, bpad))

    def check_mask(ours, base):
        if ours.shape != base.shape or ours.dtype != base.dtype:
            return False, "shape/dtype {} {} vs baseline {} {}".format(
                ours.shape, ours.dtype, base.shape, base.dtype)
        diff = ours != base
        # Allowed: only in the last row / column of the resized (unpadded) part.
        edge = np.zeros(diff.shape[:2], dtype=bool)
        edge[window[2] - 1, :] = True
        edge[:, window[3] - 1] = True
        inner = diff & ~edge[:, :, None]
        ok = not inner.any()
        return ok, "{} differing pixels in the last row/column, {} elsewhere".format(
            int((diff & edge[:, :, None]).sum()), int(inner.sum()))

    size_image = "{}x{} uint8 RGB -> {}x{} (scale {}, min_dim {}, max_dim {})".format(
        w, h, max_dim, max_dim, scale, min_dim, max_dim)
    size_mask = "{} bool masks {}x{} -> {}x{} (scale {}, padding {})".format(
        n_masks, h, w, max_dim, max_dim, scale, padding[:2])
    return [
        run_benchmark(
            "resize_image", size_image,
            lambda: utils.resize_image(image, min_dim=min_dim, max_dim=max_dim, mode="square"),
            lambda: baselines.resize_image_skimage(image, min_dim, max_dim),
            check_image, runs),
        run_benchmark(
            "resize_mask", size_mask,
            lambda: utils.resize_mask(masks, scale, padding),
            lambda: baselines.resize_mask_zoom(masks, scale, padding),
            check_mask, runs),
    ]


BENCHMARKS = [
    (("compute_overlaps",), bench_compute_overlaps),
    (("compute_overlaps_masks",), bench_compute_overlaps_masks),
    (("non_max_suppression", "non_max_suppression_uniform",
      "non_max_suppression_clustered"), bench_nms),
    (("generate_pyramid_anchors",), bench_anchors),
    (("compute_ap",), bench_compute_ap),
    (("resize_image", "resize_mask", "resize"), bench_resize),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and 2 runs (checks that the script works)")
    parser.add_argument("--only", metavar="NAME",
                        help="run one benchmark (or group, e.g. non_max_suppression, resize)")
    parser.add_argument("--runs", type=int, default=None,
                        help="timed runs per function (default 5, or 2 with --quick)")
    args = parser.parse_args(argv)
    runs = args.runs or (2 if args.quick else 5)
    global _ONLY
    _ONLY = args.only

    known = sorted({n for names, _ in BENCHMARKS for n in names})
    if args.only and args.only not in known:
        parser.error("unknown benchmark {!r}; choose from {}".format(args.only, ", ".join(known)))

    results = []
    t0 = time.perf_counter()
    for names, bench in BENCHMARKS:
        if args.only and args.only not in names:
            continue
        # Fresh, fixed seed per benchmark so --only gives the same data.
        rng = np.random.default_rng([SEED, BENCHMARKS.index((names, bench))])
        results.extend(e for e in bench(rng, args.quick, runs) if e is not None)

    report = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "target_speedup": TARGET_SPEEDUP,
        "mrcnn_sources_sha256": SOURCES,
        "quick": bool(args.quick),
        "seed": SEED,
        "total_s": round(time.perf_counter() - t0, 1),
        "benchmarks": results,
    }
    print(json.dumps(report, indent=2))
    return 0 if all(e["equal"] for e in results) else 1


if __name__ == "__main__":
    sys.exit(main())
