"""Speed against torchvision's Mask R-CNN, measured side by side: our
``detect()`` and torchvision's ``maskrcnn_resnet50_fpn`` (ResNet50-FPN,
random weights, COCO class count, 100 detections with masks) at 512 and
1024, in float32 and bfloat16, and one training step at 512 px (batch 1,
all layers). torchvision is not a dependency: pass the Python of an
environment that has it (``python3 -m venv /tmp/tv && /tmp/tv/bin/pip install
torch torchvision`` makes one).

Usage (from the repository root):

    python3 -m venv /tmp/tv && /tmp/tv/bin/pip install torch torchvision
    PY=/tmp/tv/bin/python
    python benchmarks/bench_vs_torchvision.py --peer "$PY"
    python benchmarks/bench_vs_torchvision.py --peer "$PY" --sizes 512 --precision float32 --runs 5
    python benchmarks/bench_vs_torchvision.py --peer "$PY" --no-train

Each side is one long-lived process (models are built once, warmed up with
2 calls, then kept); the orchestrator alternates single calls between them,
``--runs`` per case, so both see the same machine state. Reported: median
and minimum seconds per side and ``ratio`` = ours / torchvision (medians;
below 1 is faster). Same inputs on both sides: a 1024x768 uint8 image
(inference; each library resizes it its own default way to the size, ours
to a padded square, torchvision to the longer side), and for training a
512x512 shapes image with its boxes, classes and masks. Precision
(``--precision auto``: bfloat16 too where the CPU has AMX or AVX512-BF16):
``MIXED_PRECISION = "bfloat16"`` on our side, ``torch.autocast("cpu",
torch.bfloat16)`` on theirs. Both train with frozen batch normalisation in
the backbone (our TRAIN_BN = False default; torchvision's FrozenBatchNorm2d,
as when fine-tuning) and SGD. Prints one JSON object.

The two networks differ in arithmetic: the reference's RPN convolution has
512 channels (torchvision's 256: at 1024 px about 200 against 77 GFLOP),
our default "square" resize mode pads the 1024x768 photo to 1024x1024
(torchvision runs it at 1024x768: a third fewer backbone pixels), and we
sample 200 training ROIs per image to torchvision's 512. So a third process
(``--no-matched`` skips it) runs torchvision rebuilt with our arithmetic:
a 512-channel RPN convolution, the image padded to a square the same way,
200 training ROIs a third positive. ``ratio_same_arithmetic`` = ours /
that: the speed of the implementation, where ``ratio`` is the speed of the
default network against torchvision's. ``detections`` / ``first_loss`` list
ours, torchvision's and the matched one's.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NUM_CLASSES = 81          # ours: COCO's 80 + background; torchvision's COCO head has 91


# ---------------------------------------------------------------------------
# Our side
# ---------------------------------------------------------------------------

class Ours(object):
    def __init__(self, data):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.data = data
        self.models = {}

    def config(self, size, precision):
        from mrcnn.config import Config

        class BenchConfig(Config):
            NAME = "bench"
            NUM_CLASSES = 81
            GPU_COUNT = 1
            IMAGES_PER_GPU = 1
            BACKBONE = "resnet50"
            IMAGE_MIN_DIM = size
            IMAGE_MAX_DIM = size
            DETECTION_MIN_CONFIDENCE = 0.0     # random weights: 100 detections with masks
            MIXED_PRECISION = precision == "bfloat16" and "bfloat16"
        return BenchConfig()

    def setup(self, task, size, precision):
        import keras
        import numpy as np
        from mrcnn import model as modellib
        keras.utils.set_random_seed(0)
        logs = tempfile.mkdtemp(prefix="bench_vs_torchvision_")
        if task == "infer":
            model = modellib.create_model("inference", self.config(size, precision), logs)
            image = self.data["image"]
            run = lambda: len(model.detect([image])[0]["class_ids"])  # noqa: E731
        else:
            config = self.config(size, precision)
            model = modellib.create_model("training", config, logs)
            batch = next(iter(model.training_dataset(one_image_dataset(self.data), seed=0)))
            model.set_trainable(".*", verbose=0)
            model.compile(config.LEARNING_RATE)
            run = lambda: float(np.asarray(  # noqa: E731
                model.keras_model.train_on_batch(batch, return_dict=True)["loss"]))
        self.models[(task, size, precision)] = run
        return run()

    def run(self, task, size, precision):
        return self.models[(task, size, precision)]()


def one_image_dataset(data):
    """A prepared mrcnn Dataset holding the one training image."""
    import numpy as np
    from mrcnn.dataset import Dataset

    class OneImage(Dataset):
        def load_image(self, image_id):
            return data["train_image"]

        def load_mask(self, image_id):
            return data["train_masks"].astype(bool), data["train_class_ids"].astype(np.int32)

    dataset = OneImage()
    for class_id in range(1, NUM_CLASSES):
        dataset.add_class("bench", class_id, "class{}".format(class_id))
    dataset.add_image("bench", image_id=0, path=None)
    dataset.prepare()
    return dataset


# ---------------------------------------------------------------------------
# torchvision's side (runs in the peer Python; imports no mrcnn/TensorFlow)
# ---------------------------------------------------------------------------

class Torchvision(object):
    """torchvision's Mask R-CNN as shipped (``matched=False``), or rebuilt to
    do our arithmetic (``matched=True``): the reference's 512-channel RPN
    convolution (torchvision's has 256), images padded to a square as our
    default IMAGE_RESIZE_MODE "square" does (torchvision keeps the aspect
    ratio: 1024x768 instead of 1024x1024), and our training ROI sampling (200
    per image, a third positive; torchvision's 512, a quarter)."""

    def __init__(self, data, matched=False):
        import torch
        self.torch = torch
        self.data = data
        self.matched = matched
        self.models = {}

    def build(self, size):
        import torchvision
        from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
        from torchvision.models.detection.mask_rcnn import MaskRCNN
        from torchvision.models.detection.rpn import RPNHead
        from torchvision.ops.misc import FrozenBatchNorm2d
        self.torch.manual_seed(0)
        backbone = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
        backbone = _resnet_fpn_extractor(backbone, 5)      # all layers trainable
        options = {}
        if self.matched:
            nn = self.torch.nn
            head = RPNHead(256, 3)
            head.conv = nn.Sequential(nn.Conv2d(256, 512, 3, padding=1), nn.ReLU(inplace=True))
            head.cls_logits = nn.Conv2d(512, 3, 1)
            head.bbox_pred = nn.Conv2d(512, 12, 1)
            for layer in head.modules():
                if isinstance(layer, nn.Conv2d):
                    nn.init.normal_(layer.weight, std=0.01)
                    nn.init.constant_(layer.bias, 0)
            options = dict(rpn_head=head, box_batch_size_per_image=200,
                           box_positive_fraction=0.33)
        return MaskRCNN(backbone, num_classes=91, min_size=size, max_size=size,
                        box_score_thresh=0.0, box_detections_per_img=100, **options)

    def square(self, image, size):
        """image [3, H, W] scaled so its longer side is ``size`` and padded
        with zeros to size x size, centred (our "square" resize mode)."""
        import torch.nn.functional as F
        h, w = image.shape[1:]
        scale = size / max(h, w)
        nh, nw = round(h * scale), round(w * scale)
        if (nh, nw) != (h, w):
            image = F.interpolate(image[None], size=(nh, nw), mode="bilinear",
                                  align_corners=False)[0]
        top, left = (size - nh) // 2, (size - nw) // 2
        return F.pad(image, (left, size - nw - left, top, size - nh - top))

    def autocast(self, precision):
        import contextlib
        if precision == "bfloat16":
            return self.torch.autocast("cpu", dtype=self.torch.bfloat16)
        return contextlib.nullcontext()

    def setup(self, task, size, precision):
        torch = self.torch
        model = self.build(size)
        if task == "infer":
            model.eval()
            image = torch.from_numpy(self.data["image"]).permute(2, 0, 1).float() / 255.0

            def run():
                with torch.inference_mode(), self.autocast(precision):
                    out = model([self.square(image, size) if self.matched else image])[0]
                    return int(out["masks"].shape[0])
        else:
            model.train()
            image = torch.from_numpy(self.data["train_image"]).permute(2, 0, 1).float() / 255.0
            masks = torch.from_numpy(self.data["train_masks"].transpose(2, 0, 1).copy())
            target = {"boxes": torch.from_numpy(self.data["train_boxes"]).float(),
                      "labels": torch.from_numpy(self.data["train_class_ids"]).long(),
                      "masks": masks.to(torch.uint8)}
            optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad],
                                        lr=0.001, momentum=0.9, weight_decay=1e-4)

            def run():
                with self.autocast(precision):
                    losses = model([image], [target])
                    loss = sum(losses.values())
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                return float(loss.detach())
        self.models[(task, size, precision)] = run
        return run()

    def run(self, task, size, precision):
        return self.models[(task, size, precision)]()


def serve(side, data_path):
    """Answer JSON commands on stdin, one JSON line each on stdout."""
    import numpy as np
    data = dict(np.load(data_path))
    engine = Ours(data) if side == "ours" else Torchvision(data, matched=side == "matched")
    out = sys.stdout
    sys.stdout = sys.stderr            # library chatter must not reach the protocol
    for line in sys.stdin:
        command = json.loads(line)
        key = (command["task"], command["size"], command["precision"])
        if command["op"] == "setup":
            reply = {"result": engine.setup(*key)}
            engine.run(*key)           # second warm-up call
        else:
            start = time.perf_counter()
            result = engine.run(*key)
            reply = {"seconds": time.perf_counter() - start, "result": result}
        out.write(json.dumps(reply) + "\n")
        out.flush()


# ---------------------------------------------------------------------------
# Orchestrator
# ---------------------------------------------------------------------------

class Side(object):
    def __init__(self, python, side, data_path):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, ROOT]),
                   TF_CPP_MIN_LOG_LEVEL="2")
        self.name = side
        self.proc = subprocess.Popen([python, os.path.abspath(__file__), "--serve", side,
                                      "--data", data_path], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)

    def ask(self, **command):
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("the {} process ended (see its errors above)".format(self.name))
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def make_data(path):
    """The shared inputs: a photo-sized random image, and a 512 px shapes
    image with its ground truth."""
    import numpy as np
    from samples_loader import load_sample
    shapes = load_sample(os.path.join("samples", "shapes", "shapes.py"), "shapes_sample")
    dataset = shapes.ShapesDataset()
    dataset.load_shapes(1, 512, 512, seed=1)
    dataset.prepare()
    masks, class_ids = dataset.load_mask(0)
    from mrcnn.utils import extract_bboxes
    boxes = extract_bboxes(masks)[:, [1, 0, 3, 2]]      # y1, x1, y2, x2 -> x1, y1, x2, y2
    np.savez(path, image=np.random.default_rng(0).integers(0, 255, (768, 1024, 3),
                                                          dtype=np.uint8),
             train_image=dataset.load_image(0), train_masks=masks.astype(np.uint8),
             train_class_ids=class_ids.astype(np.int64), train_boxes=boxes.astype(np.float32))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer", help="a Python with torch and torchvision (python3 -m "
                        "venv /tmp/tv && /tmp/tv/bin/pip install torch torchvision)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--precision", choices=["auto", "float32", "bfloat16", "both"],
                        default="auto", help="auto (default): both where the CPU has "
                        "bfloat16 arithmetic (AMX or AVX512-BF16), else float32 (without it "
                        "torch's bfloat16 autocast runs orders of magnitude slower)")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--no-train", action="store_true", help="skip the training step")
    parser.add_argument("--train-precision", choices=["float32", "bfloat16", "both"],
                        default="float32")
    parser.add_argument("--no-matched", action="store_true",
                        help="skip torchvision rebuilt with our arithmetic (ratio_same_arithmetic)")
    parser.add_argument("--serve", choices=["ours", "torchvision", "matched"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args.data)
    if not args.peer:
        parser.error("--peer PYTHON is required: a Python with torchvision "
                     "(python3 -m venv /tmp/tv && /tmp/tv/bin/pip install torch torchvision)")
    try:
        check = subprocess.run([args.peer, "-c", "import torch, torchvision; "
                                "print(torch.__version__, torchvision.__version__)"],
                               capture_output=True, text=True)
    except OSError as error:
        parser.error("--peer {} cannot be run ({}): pass the path of a Python that has torch "
                     "and torchvision (python3 -m venv /tmp/tv && /tmp/tv/bin/pip install "
                     "torch torchvision)".format(args.peer, error.strerror))
    if check.returncode:
        parser.error("--peer {} cannot import torch and torchvision: {}".format(
            args.peer, check.stderr.strip().splitlines()[-1:] or check.returncode))
    versions = check.stdout.split()

    from machine import machine_info
    machine = machine_info()
    bf16_hardware = bool({"amx_bf16", "avx512_bf16"} & set(machine["cpu_features"]))
    if args.precision == "auto":
        args.precision = "both" if bf16_hardware else "float32"

    def precisions(choice):
        return ["float32", "bfloat16"] if choice == "both" else [choice]
    cases = [("infer", size, p) for size in args.sizes for p in precisions(args.precision)]
    if not args.no_train:
        cases += [("train", 512, p) for p in precisions(args.train_precision)]

    data_path = os.path.join(tempfile.mkdtemp(prefix="bench_vs_torchvision_"), "data.npz")
    make_data(data_path)
    sides = [Side(sys.executable, "ours", data_path), Side(args.peer, "torchvision", data_path)]
    if not args.no_matched:
        sides.append(Side(args.peer, "matched", data_path))
    results = []
    try:
        for task, size, precision in cases:
            print("case", task, size, precision, file=sys.stderr)
            setup = [s.ask(op="setup", task=task, size=size, precision=precision)["result"]
                     for s in sides]
            runs = args.runs if task == "infer" else args.train_steps
            times = [[] for _ in sides]
            for _ in range(runs):
                for i, side in enumerate(sides):
                    times[i].append(side.ask(op="run", task=task, size=size,
                                             precision=precision)["seconds"])
            medians = [statistics.median(t) for t in times]
            entry = {"task": task, "size": size, "precision": precision, "runs": runs,
                     "ours_median_s": round(medians[0], 3), "ours_min_s": round(min(times[0]), 3),
                     "torchvision_median_s": round(medians[1], 3),
                     "torchvision_min_s": round(min(times[1]), 3),
                     "ratio": round(medians[0] / medians[1], 3)}
            if len(sides) == 3:
                entry.update({"matched_median_s": round(medians[2], 3),
                              "matched_min_s": round(min(times[2]), 3),
                              "ratio_same_arithmetic": round(medians[0] / medians[2], 3)})
            entry["detections" if task == "infer" else "first_loss"] = setup
            results.append(entry)
    finally:
        for side in sides:
            side.close()
    print(json.dumps({
        "benchmark": "bench_vs_torchvision",
        "targets_ratio": {"infer float32": 0.70, "infer bfloat16": 0.40, "train float32": 0.60},
        "torch": versions[0], "torchvision": versions[1],
        "bfloat16_hardware": bf16_hardware, "results": results, "machine": machine}, indent=2))


if __name__ == "__main__":
    main()
