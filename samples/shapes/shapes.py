"""
Mask R-CNN
Configurations and data loading for the synthetic shapes toy dataset:
squares, circles and triangles of random colours on a random background.

A port of matterport's ``samples/shapes/shapes.py`` (the "train_shapes"
tutorial). Images are generated, never read from disk: ``load_shapes()``
draws a random *spec* for each image (background colour and a list of
``(shape, color, (x, y, s))``), and ``load_image()`` / ``load_mask()`` render
that spec with OpenCV, so the same spec always gives the same pixels.

Usage::

    config = ShapesConfig()
    dataset_train = ShapesDataset()
    dataset_train.load_shapes(500, 128, 128, seed=1)
    dataset_train.prepare()
    dataset_val = ShapesDataset()
    dataset_val.load_shapes(50, 128, 128, seed=2)
    dataset_val.prepare()

Differences from the original:

* ``load_shapes(..., seed=...)`` makes a dataset reproducible with its own
  ``numpy.random.Generator`` (training and validation sets should use
  different seeds). Without a seed the global ``random`` module is used in
  the original's order of calls, so ``random.seed()`` works as before.
* ``load_mask()`` drops instances that are completely hidden by shapes drawn
  after them (the original returned an all-zero mask for them).
* ``load_mask()`` does not need ``prepare()`` to have been called, and
  ``image_reference()`` returns the base class's answer for other sources
  (the original forgot to return it).

Command line::

    python samples/shapes/shapes.py train [--minutes 15] [--map-every 2]
    python samples/shapes/shapes.py train --backbone resnet50 --image-size 256 --minutes 30
    python samples/shapes/shapes.py evaluate [--weights last|PATH]
    python samples/shapes/shapes.py detect --image picture.png

Configuration flags (``mrcnn.cli``): ``--config FILE.json`` (a
``Config.to_json`` file), ``--arch`` (Config.MODEL), ``--backbone``,
``--image-size`` (IMAGE_MIN_DIM = IMAGE_MAX_DIM; the images are still
generated at 128 px and resized), ``--images-per-gpu``, ``--learning-rate``
and ``--minutes`` (train: wall-time budget, default 15). ``evaluate``,
``detect`` and a resumed ``train`` (``--weights last`` or a path) build the
model from the ``config.json`` saved beside the checkpoint, so they need no
flags; evaluation and detection keep IMAGES_PER_GPU = 1. Precedence, lowest
first: ShapesConfig (train) or InferenceConfig < config.json beside the
checkpoint < ``--config`` < the flags.

This file can be run as a script or loaded with importlib (tests and
benchmarks do); it imports ``mrcnn`` as an installed package.
"""

import math
import random

import cv2
import numpy as np

from mrcnn import cli, utils
from mrcnn.config import Config

# Shape names, in class id order (class 1 is "square").
SHAPE_NAMES = ("square", "circle", "triangle")


############################################################
#  Configurations
############################################################

class ShapesConfig(Config):
    """Configuration for training on the toy shapes dataset.

    Derives from the base Config class and overrides values specific to the
    toy shapes dataset: small 128x128 images, 3 classes, small anchors and
    few ROIs per image, so training is fast.
    """
    # Give the configuration a recognizable name
    NAME = "shapes"

    # Train on 1 GPU (or the CPU) and 8 images per GPU. We can put multiple
    # images on each GPU because the images are small.
    GPU_COUNT = 1

    # Number of classes (including background)
    NUM_CLASSES = 1 + 3  # background + 3 shapes

    # Use small images for faster training. Set the limits of the small side
    # the large side, and that determines the image shape.
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128

    # Use smaller anchors because our image and objects are small
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)  # anchor side in pixels

    # Reduce training ROIs per image because the images are small and have
    # few objects. Aim to allow ROI sampling to pick 33% positive ROIs.
    TRAIN_ROIS_PER_IMAGE = 32

    # Use a small epoch since the data is simple
    STEPS_PER_EPOCH = 100

    # use small validation steps since the epoch is small
    VALIDATION_STEPS = 5

    # ---- The from-scratch recipe (not in the original tutorial, which
    # fine-tuned COCO weights on a GPU). It trains from random weights on a
    # laptop CPU: a ResNet-18 backbone (ResNet-50/101 are built for ImageNet
    # and spend most of a CPU step on 128 px toy images), batch statistics in
    # every batch norm (trainable normalisation), narrow FPN, RPN and heads
    # sized for three classes, a short warm-up and a learning rate of 0.01
    # (the linear scaling rule's rate for batch 8: detection recipes use
    # 0.02 for 16 images). At 0.02 the unnormalised FPN features grew to
    # magnitudes of 10-70 within the first epochs, and in two of six
    # 15-minute runs the RPN's shared ReLU convolution went silent on P4-P6
    # (the levels whose anchors fit these shapes) for good: rpn_bbox_loss
    # stayed at 0.61, the value of predicting the mean delta, and mAP@0.5
    # ended at 0.25 and 0.62 (0.83-0.93 in the other runs).
    IMAGES_PER_GPU = 8
    BACKBONE = "resnet18"
    TRAIN_BN = None
    TOP_DOWN_PYRAMID_SIZE = 64
    RPN_CONV_CHANNELS = 128
    FPN_CLASSIF_FC_LAYERS_SIZE = 256
    MASK_HEAD_CHANNELS = 32
    LEARNING_RATE = 0.01
    LEARNING_RATE_WARMUP_STEPS = 100
    MAX_GT_INSTANCES = 10
    POST_NMS_ROIS_TRAINING = 500
    POST_NMS_ROIS_INFERENCE = 250
    DETECTION_MAX_INSTANCES = 20

    # ---- YOLACT (--arch yolact; Mask R-CNN ignores these) ----
    # Anchors sized for 40-64 px shapes in 128 px images: 32, 64, 96, 128
    # and 160 px on P3-P7 (the sizes are given for a 550 px image).
    YOLACT_ANCHOR_SCALES = (137.5, 275, 412.5, 550, 687.5)
    YOLACT_HEAD_CHANNELS = 64

    # ---- CenterNet (--arch centernet; the others ignore these) ----
    # Levels by box half-diagonal sized for 128 px images (the shapes' are
    # 28-45 px: P3 and P4), and narrower towers.
    CENTERNET_REGRESS_RANGES = ((0, 32), (24, 64), (48, 128), (96, 256), (192, 1e9))
    CENTERNET_HEAD_CHANNELS = 64


############################################################
#  Dataset
############################################################

class ShapesDataset(utils.Dataset):
    """Generates the shapes synthetic dataset. The dataset consists of simple
    shapes (triangles, squares, circles) placed randomly on a blank surface.
    The images are generated on the fly. No file access required.

    Image specs, stored in ``image_info[i]``: ``height``, ``width``,
    ``bg_color`` (tuple of 3 ints) and ``shapes``, a list of
    ``(shape_name, (r, g, b), (x, y, s))`` with plain Python ints; shapes are
    drawn in list order, so later shapes cover earlier ones.
    """

    # Shapes closer than this to the border are not generated (centre), and
    # this is also the smallest half-size s.
    BUFFER = 20
    # Shapes whose boxes overlap more than this IoU are removed (the later
    # shape is kept).
    NMS_THRESHOLD = 0.3

    def load_shapes(self, count, height, width, seed=None):
        """Generate the requested number of synthetic images.

        count: number of images to generate.
        height, width: the size of the generated images.
        seed: None (default) draws from the global ``random`` module like the
            original; anything else (an int, a SeedSequence or a
            ``numpy.random.Generator``) is passed to
            ``numpy.random.default_rng`` and makes the specs reproducible
            without touching global random state. Use different seeds for
            training and validation sets.
        """
        # Add classes
        for class_id, name in enumerate(SHAPE_NAMES, start=1):
            self.add_class("shapes", class_id, name)

        rng = None if seed is None else np.random.default_rng(seed)

        # Add images
        # Generate random specifications of images (i.e. color and
        # list of shapes sizes and locations). This is more compact than
        # actual images. Images are generated on the fly in load_image().
        for i in range(count):
            bg_color, shapes = self.random_image(height, width, rng=rng)
            self.add_image("shapes", image_id=i, path=None,
                           width=width, height=height,
                           bg_color=bg_color, shapes=shapes)

    def load_image(self, image_id):
        """Generate an image from the specs of the given image ID.

        Returns a [height, width, 3] uint8 RGB array. The same spec always
        gives the same pixels.
        """
        info = self.image_info[image_id]
        bg_color = np.asarray(info["bg_color"], dtype=np.uint8).reshape([1, 1, 3])
        image = np.empty([info["height"], info["width"], 3], dtype=np.uint8)
        image[:] = bg_color
        for shape, color, dims in info["shapes"]:
            image = self.draw_shape(image, shape, dims, color)
        return image

    def image_reference(self, image_id):
        """Return the shapes data of the image (its list of shapes)."""
        info = self.image_info[image_id]
        if info["source"] == "shapes":
            return info["shapes"]
        return super().image_reference(image_id)

    def load_mask(self, image_id):
        """Generate instance masks for shapes of the given image ID.

        Returns:
            masks: [height, width, N] bool, one mask per visible shape.
            class_ids: [N] int32 class ids (1 square, 2 circle, 3 triangle).

        Occlusion: a shape drawn later hides the pixels of earlier ones, so
        each mask loses the pixels covered by the union of later shapes.

        Differs from the original: a shape left with no visible pixel is
        dropped from both outputs (the original returned an all-zero mask for
        it, which gives a (0, 0, 0, 0) box). The ids are looked up by shape
        name in class_info, so prepare() need not have been called.
        """
        info = self.image_info[image_id]
        shapes = info["shapes"]
        height, width = info["height"], info["width"]
        count = len(shapes)
        mask = np.zeros([height, width, count], dtype=bool)
        for i, (shape, _, dims) in enumerate(shapes):
            channel = np.zeros([height, width], dtype=np.uint8)
            mask[:, :, i] = self.draw_shape(channel, shape, dims, 1).astype(bool)
        # Handle occlusions: walk from the top-most shape down, removing the
        # pixels already claimed by shapes above.
        visible = np.ones([height, width], dtype=bool)
        for i in range(count - 1, -1, -1):
            mask[:, :, i] &= visible
            visible &= ~mask[:, :, i]
        # Drop fully hidden shapes.
        keep = np.flatnonzero(mask.any(axis=(0, 1)))
        mask = mask[:, :, keep]
        # Map class names to class IDs.
        class_ids = np.array([self._class_id(shapes[i][0]) for i in keep],
                             dtype=np.int32)
        return mask, class_ids

    def _class_id(self, shape):
        """Internal class id of a shape name (its index in class_info)."""
        for class_id, class_info in enumerate(self.class_info):
            if class_info["source"] == "shapes" and class_info["name"] == shape:
                return class_id
        raise ValueError("Unknown shape {!r}; known: {}".format(
            shape, ", ".join(SHAPE_NAMES)))

    def draw_shape(self, image, shape, dims, color):
        """Draws a filled shape from the given specs into ``image`` (in place)
        and returns it. dims is (x, y, s): centre and half-size."""
        # Get the center x, y and the size s
        x, y, s = (int(v) for v in dims)
        if np.ndim(color) == 0:
            color = int(color)
        else:
            color = tuple(int(c) for c in color)
        if shape == "square":
            cv2.rectangle(image, (x - s, y - s), (x + s, y + s), color, -1)
        elif shape == "circle":
            cv2.circle(image, (x, y), s, color, -1)
        elif shape == "triangle":
            points = np.array([[(x, y - s),
                                (x - s / math.sin(math.radians(60)), y + s),
                                (x + s / math.sin(math.radians(60)), y + s),
                                ]], dtype=np.int32)
            image = cv2.fillPoly(image, points, color)
        else:
            raise ValueError("Unknown shape {!r}; known: {}".format(
                shape, ", ".join(SHAPE_NAMES)))
        return image

    def random_shape(self, height, width, rng=None):
        """Generates specifications of a random shape that lies within
        the given height and width boundaries.

        rng: a ``numpy.random.Generator``, or None to use the global
            ``random`` module (the original's behaviour).

        Returns a tuple of three values:
        * The shape name (square, circle, ...)
        * Shape color: a tuple of 3 values, RGB.
        * Shape dimensions: A tuple of values that define the shape size
                            and location. Differs per shape type.
        """
        buffer = self.BUFFER
        if height - buffer - 1 < buffer or width - buffer - 1 < buffer \
                or height // 4 < buffer:
            raise ValueError(
                "Shapes images must be at least {} pixels high and {} wide, got "
                "{}x{}".format(4 * buffer, 2 * buffer + 1, height, width))
        # Shape
        shape = SHAPE_NAMES[_randint(rng, 0, len(SHAPE_NAMES) - 1)] \
            if rng is not None else random.choice(list(SHAPE_NAMES))
        # Color
        color = tuple(_randint(rng, 0, 255) for _ in range(3))
        # Center x, y
        y = _randint(rng, buffer, height - buffer - 1)
        x = _randint(rng, buffer, width - buffer - 1)
        # Size
        s = _randint(rng, buffer, height // 4)
        return shape, color, (x, y, s)

    def random_image(self, height, width, rng=None):
        """Creates random specifications of an image with multiple shapes.

        rng: a ``numpy.random.Generator``, or None to use the global
            ``random`` module (the original's behaviour).

        Returns the background color of the image (tuple of 3 ints) and a
        list of shape specifications that can be used to draw the image.
        Shapes whose boxes overlap too much are removed by non-max
        suppression (the later one is kept); the order of the rest is kept.
        """
        # Pick random background color
        bg_color = tuple(_randint(rng, 0, 255) for _ in range(3))
        # Generate a few random shapes and record their
        # bounding boxes
        shapes = []
        boxes = []
        N = _randint(rng, 1, 4)
        for _ in range(N):
            shape, color, dims = self.random_shape(height, width, rng=rng)
            shapes.append((shape, color, dims))
            x, y, s = dims
            boxes.append([y - s, x - s, y + s, x + s])
        # Apply non-max suppression with 0.3 threshold to avoid
        # shapes covering each other
        keep_ixs = set(utils.non_max_suppression(
            np.array(boxes), np.arange(N), self.NMS_THRESHOLD).tolist())
        shapes = [s for i, s in enumerate(shapes) if i in keep_ixs]
        return bg_color, shapes


def _randint(rng, low, high):
    """Random int in [low, high] (both inclusive) as a Python int, from
    ``rng`` (a numpy Generator) or, when None, from the global ``random``."""
    if rng is None:
        return random.randint(low, high)
    return int(rng.integers(low, high + 1))


############################################################
#  Training, evaluation and the command line
############################################################

class InferenceConfig(ShapesConfig):
    """ShapesConfig for detection: one image per batch."""
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1


def make_datasets(train_images=500, val_images=50, size=128, train_seed=1, val_seed=2):
    """Training and validation ShapesDatasets from different seeds (so the
    validation images are not training images)."""
    dataset_train = ShapesDataset()
    dataset_train.load_shapes(train_images, size, size, seed=train_seed)
    dataset_train.prepare()
    dataset_val = ShapesDataset()
    dataset_val.load_shapes(val_images, size, size, seed=val_seed)
    dataset_val.prepare()
    return dataset_train, dataset_val


# Fractions of the time budget after which the learning rate drops tenfold
# (step decay, as in detection training schedules, but in wall time).
LEARNING_RATE_DECAY_AT = (0.8,)


def train(model_dir, minutes=15.0, epochs=100, weights=None, config=None,
          train_images=500, val_images=50, verbose=1, callbacks=None,
          decay_at=LEARNING_RATE_DECAY_AT, start=None):
    """Train Mask R-CNN on shapes until ``epochs`` or ``minutes`` of wall
    time, set-up included (whichever comes first; the epoch in progress is
    finished early and checkpointed). With a time budget the learning rate drops tenfold after
    each fraction of it in ``decay_at``. ``weights``: None (random
    initialisation), "last" or a checkpoint path. ``callbacks``: extra Keras
    callbacks. ``start``: when the budget's clock started (a time.time()
    value; default: now). The model is ``config.MODEL``'s
    (``modellib.create_model``). Returns (model, history, seconds spent)."""
    import time
    from mrcnn import model as modellib

    start = time.time() if start is None else start
    config = config or ShapesConfig()
    dataset_train, dataset_val = make_datasets(train_images, val_images)
    model = modellib.create_model("training", config, model_dir)
    if weights == "last":
        weights = model.find_last()
    if weights:
        model.load_weights(weights, by_name=True)
    # The budget covers everything from here: building, tracing, training,
    # validation and checkpoints.
    budget = cli.TrainingBudget(minutes, start).callbacks(decay_at=decay_at)
    history = model.train(dataset_train, dataset_val, learning_rate=config.LEARNING_RATE,
                          epochs=epochs, layers="all",
                          custom_callbacks=budget + list(callbacks or []), verbose=verbose)
    return model, history, time.time() - start


def evaluate(model, dataset, limit=None):
    """mAP@0.5 and mAP@[0.5:0.95] (COCO-style range) of an inference model
    over ``dataset`` (the first ``limit`` images) with utils.compute_ap.
    Returns a dict with both figures and the number of images."""
    from mrcnn.callbacks import mean_average_precision
    image_ids = list(dataset.image_ids)[:limit] if limit else list(dataset.image_ids)
    scores = mean_average_precision(model, dataset, image_ids, iou_threshold=0.5,
                                    iou_range=True)
    return {"mAP@0.5": scores["mAP"], "mAP@[.5:.95]": scores["mAP@[.5:.95]"],
            "images": scores["images"]}


def save_predictions_png(model, dataset, path, count=4):
    """A PNG with ground truth (left) next to predictions (right) for the
    first ``count`` images of ``dataset``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mrcnn import visualize
    from mrcnn.data import load_image_gt
    fig, axes = plt.subplots(count, 2, figsize=(8, 4 * count))
    axes = np.atleast_2d(axes)
    for row, image_id in enumerate(list(dataset.image_ids)[:count]):
        image, _, class_ids, boxes, masks = load_image_gt(dataset, model.config, image_id)
        r = model.detect([image])[0]
        visualize.display_instances(image, boxes, masks, class_ids, dataset.class_names,
                                    ax=axes[row, 0], title="ground truth")
        visualize.display_instances(image, r["rois"], r["masks"], r["class_ids"],
                                    dataset.class_names, r["scores"], ax=axes[row, 1],
                                    title="predictions")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def inference_model(model_dir, weights="last", config=None):
    """An inference model (``config.MODEL``'s, default InferenceConfig) with
    ``weights`` ("last" or a path; None: random weights) loaded. Returns
    (model, weights path)."""
    from mrcnn import model as modellib
    model = modellib.create_model("inference", config or InferenceConfig(), model_dir)
    path = model.find_last() if weights == "last" else weights
    if path:
        model.load_weights(path, by_name=True)
    return model, path


def main(argv=None):
    import argparse
    import json
    import os
    import time

    start = time.time()
    parser = argparse.ArgumentParser(
        description="Train, evaluate and run Mask R-CNN on the synthetic shapes dataset.")
    parser.add_argument("command", choices=["train", "evaluate", "detect"])
    parser.add_argument("--logs", default=os.path.join(os.getcwd(), "logs"),
                        help="Logs and checkpoints directory (default: ./logs)")
    parser.add_argument("--weights", default=None,
                        help="Checkpoint path or 'last'. train: start from it (default: "
                             "random initialisation); evaluate/detect: default 'last'")
    parser.add_argument("--epochs", type=int, default=100,
                        help="train: last epoch (default 100; the time budget usually "
                             "stops training first)")
    parser.add_argument("--val-images", type=int, default=50,
                        help="validation images for the mAP (default 50)")
    parser.add_argument("--map-every", type=int, default=0, metavar="N",
                        help="train: report val_mAP (mAP@0.5 on --map-images validation "
                             "images) every N epochs in the progress bar and TensorBoard "
                             "(default 0: only at the end)")
    parser.add_argument("--map-images", type=int, default=10,
                        help="train: validation images for --map-every (default 10)")
    parser.add_argument("--image", help="detect: image file to run on")
    parser.add_argument("--output", help="detect/train: PNG to write")
    cli.add_config_arguments(parser, minutes=15.0)
    args = parser.parse_args(argv)
    if args.command == "detect" and not args.image:
        parser.error("detect needs --image PATH")

    inference_keep = cli.command_keys(InferenceConfig, ShapesConfig)

    def configure(base, weights, keep, verbose=1):
        """(config, weights path): the config.json beside a checkpoint
        (``weights``: None, "last" or a path), --config and the flags."""
        config, _ = cli.config_from_args(parser, args, base, verbose=0)
        path = None
        if weights and weights.lower() != "none":
            if weights.lower() in ("coco", "imagenet"):
                parser.error("--weights takes a checkpoint path or 'last', got "
                             "{!r}".format(weights))
            from mrcnn.weights.pretrained import resolve_weights
            try:
                path, _ = resolve_weights(weights, config, args.logs)
            except (FileNotFoundError, ValueError) as e:
                parser.error(str(e))
        config, sources = cli.config_from_args(parser, args, base, weights, path, keep=keep,
                                               verbose=verbose)
        if verbose:
            print("Configuration: ", cli.describe_sources(sources))
        return config, path

    if args.command == "train":
        config, weights = configure(ShapesConfig(), args.weights, cli.MACHINE_KEYS)
        # With TF_CONFIG (several workers), before the mAP callback's model
        # uses TensorFlow.
        from mrcnn import training
        training.start_multi_worker(config)
        callbacks = []
        if args.map_every > 0:
            from mrcnn import model as modellib
            from mrcnn.callbacks import MeanAveragePrecisionCallback
            map_config, _ = configure(InferenceConfig(), args.weights, inference_keep,
                                      verbose=0)
            _, map_set = make_datasets(train_images=0, val_images=args.val_images)
            callbacks.append(MeanAveragePrecisionCallback(
                modellib.create_model("inference", map_config, args.logs), map_set,
                every_n_epochs=args.map_every, limit=args.map_images))
        model, history, seconds = train(args.logs, minutes=args.minutes, epochs=args.epochs,
                                        weights=weights, config=config,
                                        val_images=args.val_images, callbacks=callbacks,
                                        start=start)
        if not training.is_chief(model.strategy):
            print(json.dumps({"worker": "done; the chief evaluates and writes the results",
                              "training_minutes": round(seconds / 60.0, 2)}, indent=2))
            return
        # The new checkpoint's config.json is the one just trained with.
        last = model.find_last()
        infer, path = inference_model(args.logs, last,
                                      configure(InferenceConfig(), last, inference_keep)[0])
        _, dataset_val = make_datasets(train_images=0, val_images=args.val_images)
        scores = evaluate(infer, dataset_val)
        png = args.output or os.path.join(model.log_dir, "predictions.png")
        save_predictions_png(infer, dataset_val, png)
        print(json.dumps(dict(scores, checkpoint=path, predictions=png,
                              training_minutes=round(seconds / 60.0, 2)), indent=2))
    elif args.command == "evaluate":
        config, weights = configure(InferenceConfig(), args.weights or "last", inference_keep)
        infer, path = inference_model(args.logs, weights, config)
        _, dataset_val = make_datasets(train_images=0, val_images=args.val_images)
        print(json.dumps(dict(evaluate(infer, dataset_val), checkpoint=path), indent=2))
    else:
        from mrcnn import visualize
        from mrcnn.dataset import read_image_rgb
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        config, weights = configure(InferenceConfig(), args.weights or "last", inference_keep)
        infer, path = inference_model(args.logs, weights, config)
        image = read_image_rgb(args.image)
        r = infer.detect([image])[0]
        fig, ax = plt.subplots(1, figsize=(8, 8))
        names = ["BG"] + list(SHAPE_NAMES)
        visualize.display_instances(image, r["rois"], r["masks"], r["class_ids"], names,
                                    r["scores"], ax=ax)
        output = args.output or os.path.splitext(args.image)[0] + "_detections.png"
        fig.savefig(output)
        plt.close(fig)
        print(json.dumps({"detections": len(r["class_ids"]), "output": output,
                          "checkpoint": path}, indent=2))


if __name__ == "__main__":
    from mrcnn.quiet import quiet_tensorflow
    quiet_tensorflow()  # before TensorFlow loads; TF_CPP_MIN_LOG_LEVEL set by the user wins
    main()
