"""
Mask R-CNN
Train on the nuclei segmentation dataset of the Kaggle 2018 Data Science Bowl
(https://www.kaggle.com/c/data-science-bowl-2018/) and write a submission.

A port of matterport's ``samples/nucleus/nucleus.py``. The dataset folder has
the competition's layout::

    dataset_dir/
        stage1_train/<image_id>/images/<image_id>.png
        stage1_train/<image_id>/masks/<mask_id>.png     one binary PNG per nucleus
        stage1_test/<image_id>/images/<image_id>.png    (no masks)

Subsets: "train" (stage1_train without the validation ids), "val" (the 25
VAL_IMAGE_IDS picked by the original), or a folder name such as
"stage1_train", "stage1_test" or "stage2_test".

Usage: import the module (tests load it with importlib), or run it::

    # Train from ImageNet weights (heads for half the epochs, then all layers)
    python samples/nucleus/nucleus.py train --dataset=/path/to/dataset --subset=train --weights=imagenet

    # Train from random weights for at most 30 minutes
    python samples/nucleus/nucleus.py train --dataset=/path/to/dataset --weights=none --minutes=30

    # Resume the last run
    python samples/nucleus/nucleus.py train --dataset=/path/to/dataset --subset=train --weights=last

    # Write a submission (submission.csv and one PNG per image) for a subset
    python samples/nucleus/nucleus.py detect --dataset=/path/to/dataset --subset=stage1_test --weights=last

    # A smaller model: ResNet-18 on 256 px crops, 4 per batch, 30 minutes
    python samples/nucleus/nucleus.py train --dataset=/path/to/dataset --weights=none \\
        --backbone resnet18 --image-size 256 --images-per-gpu 4 --minutes 30

Configuration flags (``mrcnn.cli``): ``--config FILE.json`` (a
``Config.to_json`` file), ``--arch`` (Config.MODEL), ``--backbone``,
``--image-size`` (IMAGE_MIN_DIM = IMAGE_MAX_DIM: the crop size in training),
``--images-per-gpu``, ``--learning-rate`` and ``--minutes`` (train: wall-time
budget). When the weights are a checkpoint (``last`` or a path) with the
``config.json`` that training writes beside it, the model is built from
that configuration, so ``detect`` and a resumed ``train`` need no flags;
detection keeps what NucleusInferenceConfig sets for itself (GPU_COUNT,
IMAGES_PER_GPU = 1, IMAGE_RESIZE_MODE "pad64", RPN_NMS_THRESHOLD 0.7).
Precedence, lowest first: NucleusConfig (train) or NucleusInferenceConfig
(detect) < config.json beside the checkpoint < ``--config`` < the flags.

Differences from the original:

* albumentations replaces imgaug in the training augmentation (see
  ``default_augmentation()``).
* ``load_nucleus()`` checks that the stage folder exists and names it when
  it does not; image ids are sorted (the original's set order changed from
  run to run); validation ids missing from the folder are skipped with a
  warning; folders without ``images/<id>.png`` are skipped with a warning.
* ``load_mask()`` reads masks in file-name order, drops empty mask files,
  checks each mask's size against the image and returns an empty
  ``[H, W, 0]`` mask for images without masks (the original crashed).
  RGBA images lose their alpha channel in ``Dataset.load_image()``.
* ``mask_to_rle()`` gives a pixel claimed by several masks to the mask with
  the highest score, as intended; the original's arithmetic gave it to the
  lowest-scoring one when detections come sorted by score. An image whose
  masks are all empty gets one ``<id>,`` line (the original wrote an empty
  line). Lines are ``<id>,<rle>`` without the space the original added.
* ``rle_decode()`` raises ValueError for malformed runs instead of asserting.
* ``train()`` takes its settings as arguments (the original read module
  globals), accepts a time budget and an epoch count; ``detect()`` writes
  ``submission.csv`` (the original: ``submit.csv``) into a timestamped
  folder under ``results_dir``.
"""

import datetime
import json
import os
import time
import warnings

import numpy as np

from mrcnn import cli, utils
from mrcnn.config import Config
from mrcnn.progress import progress_bar

# The checkout's root: samples/nucleus/nucleus.py -> ../..
ROOT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Where "--weights coco" looks for (and downloads) the released COCO weights.
COCO_WEIGHTS_PATH = os.path.join(ROOT_DIR, "mask_rcnn_coco.h5")

# Logs and checkpoints, unless --logs says otherwise.
DEFAULT_LOGS_DIR = os.path.join(os.getcwd(), "logs")

# Submission folders go here, unless --results says otherwise.
RESULTS_DIR = os.path.join(os.getcwd(), "results", "nucleus")

# Subsets load_nucleus() accepts.
SUBSETS = ("train", "val", "stage1_train", "stage1_test", "stage2_test")

# The dataset doesn't have a standard train/val split, so the original
# picked a variety of images to serve as a validation set.
VAL_IMAGE_IDS = [
    "0c2550a23b8a0f29a7575de8c61690d3c31bc897dd5ba66caec201d201a278c2",
    "92f31f591929a30e4309ab75185c96ff4314ce0a7ead2ed2c2171897ad1da0c7",
    "1e488c42eb1a54a3e8412b1f12cde530f950f238d71078f2ede6a85a02168e1f",
    "c901794d1a421d52e5734500c0a2a8ca84651fb93b19cec2f411855e70cae339",
    "8e507d58f4c27cd2a82bee79fe27b069befd62a46fdaed20970a95a2ba819c7b",
    "60cb718759bff13f81c4055a7679e81326f78b6a193a2d856546097c949b20ff",
    "da5f98f2b8a64eee735a398de48ed42cd31bf17a6063db46a9e0783ac13cd844",
    "9ebcfaf2322932d464f15b5662cae4d669b2d785b8299556d73fffcae8365d32",
    "1b44d22643830cd4f23c9deadb0bd499fb392fb2cd9526d81547d93077d983df",
    "97126a9791f0c1176e4563ad679a301dac27c59011f579e808bbd6e9f4cd1034",
    "e81c758e1ca177b0942ecad62cf8d321ffc315376135bcbed3df932a6e5b40c0",
    "f29fd9c52e04403cd2c7d43b6fe2479292e53b2f61969d25256d2d2aca7c6a81",
    "0ea221716cf13710214dcd331a61cea48308c3940df1d28cfc7fd817c83714e1",
    "3ab9cab6212fabd723a2c5a1949c2ded19980398b56e6080978e796f45cbbc90",
    "ebc18868864ad075548cc1784f4f9a237bb98335f9645ee727dac8332a3e3716",
    "bb61fc17daf8bdd4e16fdcf50137a8d7762bec486ede9249d92e511fcb693676",
    "e1bcb583985325d0ef5f3ef52957d0371c96d4af767b13e48102bca9d5351a9b",
    "947c0d94c8213ac7aaa41c4efc95d854246550298259cf1bb489654d0e969050",
    "cbca32daaae36a872a11da4eaff65d1068ff3f154eedc9d3fc0c214a4e5d32bd",
    "f4c4db3df4ff0de90f44b027fc2e28c16bf7e5c75ea75b0a9762bbb7ac86e7a3",
    "4193474b2f1c72f735b13633b219d9cabdd43c21d9c2bb4dfc4809f104ba4c06",
    "f73e37957c74f554be132986f38b6f1d75339f636dfe2b681a0cf3f88d2733af",
    "a4c44fc5f5bf213e2be6091ccaed49d8bf039d78f6fbd9c4d7b7428cfcb2eda4",
    "cab4875269f44a701c5e58190a1d2f6fcb577ea79d842522dcab20ccb39b7ad2",
    "8ecdb93582b2d5270457b36651b62776256ade3aaa2d7432ae65c14f07432d49",
]


############################################################
#  Configurations
############################################################

class NucleusConfig(Config):
    """Configuration for training on the nucleus segmentation dataset."""
    # Give the configuration a recognizable name
    NAME = "nucleus"

    # Adjust depending on your GPU memory
    IMAGES_PER_GPU = 6

    # Number of classes (including background)
    NUM_CLASSES = 1 + 1  # Background + nucleus

    # Number of training and validation steps per epoch (657 images in
    # stage1_train of the original release)
    STEPS_PER_EPOCH = (657 - len(VAL_IMAGE_IDS)) // IMAGES_PER_GPU
    VALIDATION_STEPS = max(1, len(VAL_IMAGE_IDS) // IMAGES_PER_GPU)

    # Don't exclude based on confidence. Since we have two classes
    # then 0.5 is the minimum anyway as it picks between nucleus and BG
    DETECTION_MIN_CONFIDENCE = 0

    # Backbone network architecture
    BACKBONE = "resnet50"

    # Input image resizing: random 512x512 crops of the image scaled up 2x
    IMAGE_RESIZE_MODE = "crop"
    IMAGE_MIN_DIM = 512
    IMAGE_MAX_DIM = 512
    IMAGE_MIN_SCALE = 2.0

    # Length of square anchor side in pixels
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)

    # ROIs kept after non-maximum suppression (training and inference)
    POST_NMS_ROIS_TRAINING = 1000
    POST_NMS_ROIS_INFERENCE = 2000

    # Non-max suppression threshold to filter RPN proposals.
    # You can increase this during training to generate more proposals.
    RPN_NMS_THRESHOLD = 0.9

    # How many anchors per image to use for RPN training
    RPN_TRAIN_ANCHORS_PER_IMAGE = 64

    # Image mean (RGB)
    MEAN_PIXEL = np.array([43.53, 39.56, 48.22])

    # If enabled, resizes instance masks to a smaller size to reduce
    # memory load. Recommended when using high-resolution images.
    USE_MINI_MASK = True
    MINI_MASK_SHAPE = (56, 56)  # (height, width) of the mini-mask

    # Number of ROIs per image to feed to classifier/mask heads
    # The Mask RCNN paper uses 512 but often the RPN doesn't generate
    # enough positive proposals to fill this and keep a positive:negative
    # ratio of 1:3. You can increase the number of proposals by adjusting
    # the RPN NMS threshold.
    TRAIN_ROIS_PER_IMAGE = 128

    # Maximum number of ground truth instances to use in one image
    MAX_GT_INSTANCES = 200

    # Max number of final detections per image
    DETECTION_MAX_INSTANCES = 400


class NucleusInferenceConfig(NucleusConfig):
    """NucleusConfig for detection: whole images, one at a time."""
    # Set batch size to 1 to run one image at a time
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1
    # Don't crop at inference: pad to a multiple of 64 (after the 2x scale)
    IMAGE_RESIZE_MODE = "pad64"
    # Non-max suppression threshold to filter RPN proposals.
    RPN_NMS_THRESHOLD = 0.7


############################################################
#  Dataset
############################################################

class NucleusDataset(utils.Dataset):
    """Images and per-nucleus mask PNGs in the 2018 Data Science Bowl layout.

    ``image_info[i]["id"]`` is the competition's image id (the folder name)
    and ``path`` the image file ``<stage>/<id>/images/<id>.png``.
    """

    def load_nucleus(self, dataset_dir, subset):
        """Load a subset of the nuclei dataset.

        dataset_dir: Root directory of the dataset
        subset: Subset to load. Either the name of the sub-directory,
                such as stage1_train, stage1_test, ...etc. or, one of:
                * train: stage1_train excluding validation images
                * val: validation images from VAL_IMAGE_IDS

        Raises ValueError for an unknown subset or when no image is found,
        FileNotFoundError when the stage folder is missing.
        """
        if subset not in SUBSETS:
            raise ValueError("subset must be one of {}, got {!r}".format(
                ", ".join(SUBSETS), subset))
        # Add classes. We have one class.
        # Naming the dataset nucleus, and the class nucleus
        self.add_class("nucleus", 1, "nucleus")

        stage = "stage1_train" if subset in ("train", "val") else subset
        stage_dir = os.path.join(dataset_dir, stage)
        if not os.path.isdir(stage_dir):
            raise FileNotFoundError(
                "{} not found: expected the Data Science Bowl layout "
                "{}/<image_id>/images/<image_id>.png".format(stage_dir, stage))
        present = []
        for name in sorted(os.listdir(stage_dir)):
            folder = os.path.join(stage_dir, name)
            if name.startswith(".") or not os.path.isdir(folder):
                continue
            if os.path.isfile(os.path.join(folder, "images", name + ".png")):
                present.append(name)
            else:
                warnings.warn("Skipping {}: no images/{}.png in it".format(folder, name),
                              stacklevel=2)

        if subset == "val":
            image_ids = [i for i in VAL_IMAGE_IDS if i in present]
            if len(image_ids) < len(VAL_IMAGE_IDS):
                warnings.warn("{} of the {} validation images are not in {}".format(
                    len(VAL_IMAGE_IDS) - len(image_ids), len(VAL_IMAGE_IDS), stage_dir),
                    stacklevel=2)
        elif subset == "train":
            val_ids = set(VAL_IMAGE_IDS)
            image_ids = [i for i in present if i not in val_ids]
        else:
            image_ids = present
        if not image_ids:
            raise ValueError("No {} images in {}".format(subset, stage_dir))

        for image_id in image_ids:
            self.add_image(
                "nucleus",
                image_id=image_id,
                path=os.path.join(stage_dir, image_id, "images", image_id + ".png"))

    def load_mask(self, image_id):
        """Read the instance masks of an image from its ``masks/*.png``.

        Returns:
        masks: A bool array of shape [height, width, instance count] with
            one mask per non-empty mask file, in file-name order; [H, W, 0]
            when the image has no masks (test subsets).
        class_ids: [instance count] int32, all 1 (nucleus).

        Raises ValueError naming the file when a mask's size differs from
        the image's.
        """
        info = self.image_info[image_id]
        if info["source"] != "nucleus":
            return super().load_mask(image_id)
        from PIL import Image
        with Image.open(info["path"]) as img:
            width, height = img.size
        # Get mask directory from image path
        mask_dir = os.path.join(os.path.dirname(os.path.dirname(info["path"])), "masks")
        files = sorted(f for f in os.listdir(mask_dir) if f.lower().endswith(".png")) \
            if os.path.isdir(mask_dir) else []
        masks = []
        for name in files:
            path = os.path.join(mask_dir, name)
            mask = read_mask_png(path)
            if mask.shape != (height, width):
                raise ValueError("Mask {} is {}x{} but its image {} is {}x{}".format(
                    path, mask.shape[0], mask.shape[1], info["path"], height, width))
            if mask.any():
                masks.append(mask)
        if not masks:
            return np.zeros([height, width, 0], dtype=bool), np.zeros([0], dtype=np.int32)
        return np.stack(masks, axis=-1), np.ones([len(masks)], dtype=np.int32)

    def image_reference(self, image_id):
        """Return the image id (the folder name)."""
        info = self.image_info[image_id]
        if info["source"] == "nucleus":
            return info["id"]
        return super().image_reference(image_id)


def read_mask_png(path):
    """A mask PNG as [H, W] bool: nonzero pixels are inside. Colour masks
    count a pixel as inside when any of R, G, B is nonzero; an alpha or
    second gray channel is ignored."""
    from PIL import Image
    with Image.open(path) as img:
        array = np.asarray(img)
    if array.ndim == 3:
        array = array[..., 0] if array.shape[2] <= 2 else array[..., :3].max(axis=-1)
    return array > 0


############################################################
#  Training
############################################################

def default_augmentation():
    """The original's augmentation with albumentations: none, one or two
    (equally likely) of horizontal flip (p=0.5), vertical flip (p=0.5), a
    rotation by a multiple of 90 degrees, brightness x0.8..1.5 and a
    Gaussian blur with sigma 0..5. Rotations keep the size only for square
    images, which the training crops are (IMAGE_RESIZE_MODE "crop")."""
    import albumentations as A

    def pool():
        return [A.HorizontalFlip(p=0.5),
                A.VerticalFlip(p=0.5),
                # imgaug picked 90, 180 or 270; this picks 0, 90, 180 or 270.
                A.RandomRotate90(p=1.0),
                A.MultiplicativeNoise(multiplier=(0.8, 1.5), per_channel=False,
                                      elementwise=False, p=1.0),
                A.GaussianBlur(blur_limit=0, sigma_limit=(0.0, 5.0), p=1.0)]

    # imgaug's SomeOf((0, 2), ...): a uniformly drawn count of 0, 1 or 2.
    return A.OneOf([A.NoOp(p=1.0),
                    A.SomeOf(pool(), n=1, p=1.0),
                    A.SomeOf(pool(), n=2, p=1.0)], p=1.0)


def load_datasets(dataset_dir, subset="train"):
    """Prepared (training, validation) NucleusDatasets: ``subset`` and "val"."""
    dataset_train = NucleusDataset()
    dataset_train.load_nucleus(dataset_dir, subset)
    dataset_train.prepare()
    dataset_val = NucleusDataset()
    dataset_val.load_nucleus(dataset_dir, "val")
    dataset_val.prepare()
    return dataset_train, dataset_val


def train(model, dataset_dir, subset="train", epochs=40, heads_epochs=None, minutes=None,
          augmentation="default", custom_callbacks=None, start=None):
    """Train the model: the network heads first (their weights are new),
    then all layers, as the original (20 + 20 epochs).

    epochs: the last epoch (default 40); heads_epochs: the last epoch of the
        heads stage (default epochs // 2; 0 skips it, as the command line does
        for ``--weights none``). Epochs count from the model's
        current epoch, so a resumed run continues.
    minutes: optional wall-clock budget for both stages together, counted
        from ``start`` (a time.time() value; default: now); the heads stage
        may use half of it. The epoch in progress is cut short when the
        time is up and still validated and checkpointed
        (``mrcnn.cli.TrainingBudget``).
    augmentation: "default" (default_augmentation()), None, or an
        albumentations transform.

    Returns the list of Keras History objects of the stages that ran.
    """
    dataset_train, dataset_val = load_datasets(dataset_dir, subset)
    if isinstance(augmentation, str) and augmentation == "default":
        augmentation = default_augmentation()
    heads_epochs = epochs // 2 if heads_epochs is None else min(heads_epochs, epochs)
    budget = cli.TrainingBudget(minutes, start)
    stages = [("heads", heads_epochs, 0.5), ("all", epochs, 1.0)]
    histories = []
    for layers, last_epoch, budget_share in stages:
        if last_epoch <= model.epoch or budget.over(budget_share):
            continue
        callbacks = list(custom_callbacks or []) + budget.callbacks(budget_share)
        print("Train network {} up to epoch {}".format(layers, last_epoch))
        histories.append(model.train(dataset_train, dataset_val,
                                     learning_rate=model.config.LEARNING_RATE,
                                     epochs=last_epoch, augmentation=augmentation,
                                     layers=layers, custom_callbacks=callbacks))
    return histories


############################################################
#  RLE Encoding
############################################################

def rle_encode(mask):
    """Encode a [height, width] mask in the competition's run-length format.

    Pixels are numbered from 1 down the columns (column-major: pixel
    (row r, column c) is number c * height + r + 1). Returns
    "start length start length ..." for the runs of nonzero pixels, or ""
    for an empty mask.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError("Mask must be of shape [height, width], got {}".format(mask.shape))
    pixels = mask.T.reshape(-1).astype(bool)
    # +1 where a run starts, -1 just after it ends.
    changes = np.diff(np.concatenate([[0], pixels.astype(np.int8), [0]]))
    starts = np.flatnonzero(changes == 1)
    ends = np.flatnonzero(changes == -1)
    runs = np.stack([starts + 1, ends - starts], axis=1)
    return " ".join(str(v) for v in runs.reshape(-1))


def rle_decode(rle, shape):
    """Decode a run-length string (see rle_encode) into a [height, width]
    bool mask of ``shape``. Raises ValueError for an odd count of numbers,
    starts below 1, lengths below 1 or runs past the last pixel."""
    height, width = int(shape[0]), int(shape[1])
    try:
        values = np.array([int(v) for v in rle.split()], dtype=np.int64)
    except ValueError as e:
        raise ValueError("RLE must be integers separated by spaces ({})".format(e)) from None
    if values.size % 2:
        raise ValueError("RLE needs start/length pairs, got {} numbers".format(values.size))
    starts, lengths = values[0::2] - 1, values[1::2]
    if np.any(starts < 0) or np.any(lengths < 1):
        raise ValueError("RLE starts and lengths must be >= 1: {!r}".format(rle))
    if np.any(starts + lengths > height * width):
        raise ValueError("RLE run past the last pixel of a {}x{} mask: {!r}".format(
            height, width, rle))
    pixels = np.zeros([height * width], dtype=bool)
    for start, length in zip(starts, lengths):
        pixels[start:start + length] = True
    return pixels.reshape([width, height]).T


def mask_to_rle(image_id, mask, scores):
    """Encode the instance masks of one image as submission lines.

    mask: [height, width, count] instance masks; scores: [count].
    A pixel covered by several masks belongs to the mask with the highest
    score (ties: the earlier mask), so the encoded masks do not overlap.

    Returns "image_id,rle" lines joined by newlines, highest score first,
    leaving out masks with no pixel left; "image_id," when none is left.
    """
    mask = np.asarray(mask)
    scores = np.asarray(scores).reshape(-1)
    if mask.ndim != 3:
        raise ValueError("Mask must be [height, width, count], got {}".format(mask.shape))
    if scores.shape[0] != mask.shape[-1]:
        raise ValueError("{} scores for {} masks".format(scores.shape[0], mask.shape[-1]))
    claimed = np.zeros(mask.shape[:2], dtype=bool)
    lines = []
    for index in np.argsort(-scores, kind="stable"):
        own = mask[:, :, index].astype(bool) & ~claimed
        claimed |= own
        if own.any():
            lines.append("{},{}".format(image_id, rle_encode(own)))
    return "\n".join(lines) if lines else "{},".format(image_id)


############################################################
#  Detection
############################################################

def detect(model, dataset_dir, subset, results_dir=None, save_images=True):
    """Run detection on the images of a subset and write a submission.

    Writes ``<results_dir>/submit_<YYYYmmddTHHMMSS>/submission.csv``
    (header "ImageId,EncodedPixels", then mask_to_rle() lines) and, when
    ``save_images``, a PNG per image with the predicted mask outlines.
    ``model`` needs ``detect(images, verbose=0)`` returning dicts with
    "rois", "masks", "class_ids" and "scores" (an inference MaskRCNN).
    Returns the submission folder.
    """
    print("Running on {}".format(dataset_dir))
    submit_dir = os.path.join(results_dir or RESULTS_DIR,
                              "submit_{:%Y%m%dT%H%M%S}".format(datetime.datetime.now()))
    os.makedirs(submit_dir, exist_ok=True)

    dataset = NucleusDataset()
    dataset.load_nucleus(dataset_dir, subset)
    dataset.prepare()
    submission = []
    bar = progress_bar(len(dataset.image_ids), "image")
    for image_id in dataset.image_ids:
        image = dataset.load_image(image_id)
        r = model.detect([image], verbose=0)[0]
        bar.add(1)
        source_id = dataset.image_info[image_id]["id"]
        submission.append(mask_to_rle(source_id, r["masks"], r["scores"]))
        if save_images:
            _save_prediction_png(image, r, dataset.class_names,
                                 os.path.join(submit_dir, source_id + ".png"))

    file_path = os.path.join(submit_dir, "submission.csv")
    with open(file_path, "w") as f:
        f.write("ImageId,EncodedPixels\n" + "\n".join(submission) + "\n")
    print("Saved to ", submit_dir)
    return submit_dir


def _save_prediction_png(image, r, class_names, path):
    """The image with the outlines of the predicted masks."""
    from matplotlib.figure import Figure
    from mrcnn import visualize
    fig = Figure(figsize=(8, 8))
    ax = fig.add_subplot()
    visualize.display_instances(image, r["rois"], r["masks"], r["class_ids"], class_names,
                                r["scores"], ax=ax, show_bbox=False, show_mask=False,
                                title="Predictions")
    fig.savefig(path)


############################################################
#  Command Line
############################################################

def main(argv=None):
    import argparse

    start = time.time()
    parser = argparse.ArgumentParser(
        description="Mask R-CNN for nuclei counting and segmentation")
    parser.add_argument("command", choices=["train", "detect"])
    parser.add_argument("--dataset", metavar="/path/to/dataset/",
                        help="Root directory of the dataset (holds stage1_train/ ...)")
    parser.add_argument("--weights", metavar="coco|last|imagenet|none|/path/to/weights.h5",
                        help="train: required; detect: default 'last'")
    parser.add_argument("--logs", default=DEFAULT_LOGS_DIR, metavar="/path/to/logs/",
                        help="Logs and checkpoints directory (default: ./logs)")
    parser.add_argument("--subset", metavar="Dataset sub-directory",
                        help="train: subset to train on (default 'train'); detect: required, "
                             "subset to run prediction on ({})".format(", ".join(SUBSETS)))
    parser.add_argument("--epochs", type=int, default=40,
                        help="train: last epoch (default 40; heads only up to half of it)")
    parser.add_argument("--results", default=RESULTS_DIR,
                        help="detect: folder for the submission folders "
                             "(default: ./results/nucleus)")
    cli.add_config_arguments(parser)
    args = parser.parse_args(argv)

    # Check the arguments before building anything.
    if not args.dataset:
        parser.error("{} needs --dataset /path/to/dataset".format(args.command))
    if args.command == "detect" and not args.subset:
        parser.error("detect needs --subset ({})".format(", ".join(SUBSETS)))
    if args.command == "train" and not args.weights:
        parser.error("train needs --weights coco|last|imagenet|none|/path/to/weights.h5")
    subset = args.subset or "train"
    if subset not in SUBSETS:
        parser.error("--subset must be one of {}, got {!r}".format(", ".join(SUBSETS), subset))
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    stage = "stage1_train" if subset in ("train", "val") else subset
    if not os.path.isdir(os.path.join(args.dataset, stage)):
        parser.error("{} not found: --dataset must be the folder that holds {}/".format(
            os.path.join(args.dataset, stage), stage))

    if args.command == "train":
        base, keep = NucleusConfig(), cli.MACHINE_KEYS
    else:
        base = NucleusInferenceConfig()
        keep = cli.command_keys(NucleusInferenceConfig, NucleusConfig)
    config, sources = cli.config_from_args(parser, args, base)
    from mrcnn.utils import WeightsDownloadError
    from mrcnn.weights.pretrained import load_starting_weights, resolve_weights
    weights = args.weights or "last"
    try:
        weights_path, exclude = resolve_weights(weights, config, args.logs,
                                                coco_path=COCO_WEIGHTS_PATH)
    except (FileNotFoundError, WeightsDownloadError, ValueError) as e:
        parser.error(str(e))
    # A checkpoint of ours: build the model it was trained as.
    config, sources = cli.config_from_args(parser, args, base, weights, weights_path,
                                           keep=keep)

    print("Weights: ", weights_path)
    print("Dataset: ", args.dataset)
    print("Subset: ", subset)
    print("Logs: ", args.logs)
    print("Configuration: ", cli.describe_sources(sources))
    config.display()

    from mrcnn import model as modellib
    mode = "training" if args.command == "train" else "inference"
    model = modellib.create_model(mode, config, args.logs)
    try:
        load_starting_weights(model, weights_path, exclude)
    except (FileNotFoundError, ValueError) as e:
        parser.exit(2, "{}: error: {}\n".format(parser.prog, e))

    if args.command == "train":
        # From random weights there is no point training the heads on a
        # random backbone: train all layers from the start.
        heads_epochs = 0 if weights_path is None else None
        train(model, args.dataset, subset, epochs=args.epochs, heads_epochs=heads_epochs,
              minutes=args.minutes, start=start)
        print(json.dumps({"last_epoch": model.epoch, "log_dir": model.log_dir}, indent=2))
    else:
        detect(model, args.dataset, subset, results_dir=args.results)


if __name__ == "__main__":
    from mrcnn.quiet import quiet_tensorflow
    quiet_tensorflow()  # before TensorFlow loads; TF_CPP_MIN_LOG_LEVEL set by the user wins
    main()
