"""
Mask R-CNN
Train on the toy balloon dataset (or any VGG Image Annotator project) and
apply the colour splash effect to images and videos.

A port of matterport's ``samples/balloon/balloon.py``. The dataset folder
holds ``train/`` and ``val/``, each with its images and a VGG Image Annotator
(VIA) JSON file::

    balloon/
        train/  via_region_data.json  *.jpg
        val/    via_region_data.json  *.jpg

Usage: import the module (tests load it with importlib), or run it::

    # Fine-tune the released COCO weights (network heads, 30 epochs)
    python samples/balloon/balloon.py train --dataset=/path/to/balloon --weights=coco

    # Resume the last run / start from ImageNet / start from random weights
    python samples/balloon/balloon.py train --dataset=/path/to/balloon --weights=last
    python samples/balloon/balloon.py train --dataset=/path/to/balloon --weights=imagenet
    python samples/balloon/balloon.py train --dataset=/path/to/balloon --weights=none

    # Colour splash on an image or a video with the last trained weights
    python samples/balloon/balloon.py splash --weights=last --image=/path/to/image.jpg
    python samples/balloon/balloon.py splash --weights=last --video=/path/to/video.mp4

    # From scratch on a laptop: ResNet-18 at 256 px for 30 minutes
    python samples/balloon/balloon.py train --dataset=/path/to/balloon --weights=none \\
        --backbone resnet18 --image-size 256 --images-per-gpu 4 --minutes 30

Configuration flags (``mrcnn.cli``): ``--config FILE.json`` (a
``Config.to_json`` file), ``--arch`` (Config.MODEL), ``--backbone``,
``--image-size`` (IMAGE_MIN_DIM = IMAGE_MAX_DIM), ``--images-per-gpu``,
``--learning-rate`` and ``--minutes`` (train: wall-time budget). When the
weights are a checkpoint (``last`` or a path) with the ``config.json`` that
training writes beside it, the model is built from that configuration
(class count, backbone, image size, ...), so ``splash`` and a resumed
``train`` need no flags; splash keeps its own GPU_COUNT and
IMAGES_PER_GPU = 1. Precedence, lowest first: BalloonConfig (train) or
BalloonInferenceConfig (splash) < config.json beside the checkpoint <
``--config`` < the flags < (train) the dataset's class count.

Annotation files
----------------
VIA 1.x and 2.x files (``via_region_data.json``, VIA 2.x exports and saved
projects) are read by ``mrcnn.data.via``, whose docstring gives the formats, the
shapes (polygon, rect, circle, ellipse) and their pixel conventions, the
region classes and what happens to bad input. ``via_region_data.json`` is
used when present, otherwise the only ``*.json`` file of the subset folder
(or the file named by ``annotation_file``).

As in the original, images without regions are skipped and a file without
class attributes (the balloon dataset) has the single class "balloon".
Differences: rect, circle and ellipse regions work (the original read
polygons only); parts of shapes outside the image are clipped (the original
crashed on polygon points outside the image) and a region that lies
completely outside its image gives no mask and is dropped by
``load_mask()``; region attributes can name several classes.

Other differences from the original: images are read through
``Dataset.load_image`` (RGBA and grayscale files work); ``train()`` takes its
settings as arguments instead of reading module globals and checks
``NUM_CLASSES`` against the dataset; ``color_splash`` rounds the gray value
(the original truncated, up to one level darker); splash output goes next to
the input (or to ``output``) instead of the working directory; the CLI
reports bad arguments with a usage message instead of an assertion; splash
uses the class count (and everything else) of the configuration saved with the
checkpoint.
"""

import datetime
import os

import numpy as np

from mrcnn import cli, utils
from mrcnn.data import via
from mrcnn.config import Config
from mrcnn.progress import progress_bar

# The checkout's root: samples/balloon/balloon.py -> ../..
ROOT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Where "--weights coco" looks for (and downloads) the released COCO weights.
COCO_WEIGHTS_PATH = os.path.join(ROOT_DIR, "mask_rcnn_coco.h5")

# Logs and checkpoints, unless --logs says otherwise.
DEFAULT_LOGS_DIR = os.path.join(os.getcwd(), "logs")

# The class of every region when the file names no classes.
DEFAULT_CLASS_NAME = "balloon"


############################################################
#  Configurations
############################################################

class BalloonConfig(Config):
    """Configuration for training on the toy balloon dataset.
    Derives from the base Config class and overrides some values.
    """
    # Give the configuration a recognizable name
    NAME = "balloon"

    # A GPU with 12GB memory fits two 1024x1024 images.
    # Adjust down if you use a smaller GPU.
    IMAGES_PER_GPU = 2

    # Number of classes (including background). A dataset with named
    # classes needs 1 + its number of classes (the CLI sets it).
    NUM_CLASSES = 1 + 1  # Background + balloon

    # Number of training steps per epoch
    STEPS_PER_EPOCH = 100

    # Skip detections with < 90% confidence
    DETECTION_MIN_CONFIDENCE = 0.9


class BalloonInferenceConfig(BalloonConfig):
    """BalloonConfig for detection: one image at a time."""
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1


############################################################
#  Dataset
############################################################

class BalloonDataset(utils.Dataset):
    """Images and VIA region annotations of one subset (train or val).

    ``image_info[i]`` holds ``path``, ``width``, ``height``, ``polygons`` (the
    shape_attributes dicts of the image's usable regions, the original's
    name) and ``region_class_ids`` (the class id of each region in this
    dataset's "balloon" source, 1-based). ``class_attribute`` is the region
    attribute that named the classes (None when there were none).
    """

    class_attribute = None

    def load_balloon(self, dataset_dir, subset, class_attribute="auto", class_names=None,
                     annotation_file=None):
        """Load a subset of the Balloon dataset (or of any VIA project).

        dataset_dir: Root directory of the dataset.
        subset: Subset to load: train or val (a sub-folder of dataset_dir).
        class_attribute, class_names: as in mrcnn.data.via.load_via_annotations;
            a file without class names has the one class "balloon". Load
            the val subset with the train subset's class_names so the ids
            agree.
        annotation_file: the VIA JSON file name inside the subset folder
            (default: see mrcnn.data.via.find_annotation_file).

        Raises FileNotFoundError (missing folder, JSON or image file) and
        ValueError (not VIA annotations, malformed regions, class names that
        are missing or not in class_names, no annotated image).
        """
        if subset not in ("train", "val"):
            raise ValueError("subset must be 'train' or 'val', got {!r}".format(subset))
        subset_dir = os.path.join(dataset_dir, subset)
        if not os.path.isdir(subset_dir):
            raise FileNotFoundError(
                "Dataset folder {} not found: the dataset needs train/ and val/ folders, each "
                "with images and a VIA JSON file".format(subset_dir))
        from PIL import Image
        json_path = via.find_annotation_file(subset_dir, annotation_file)
        annotations = via.load_via_annotations(json_path, class_attribute, class_names,
                                               default_class=DEFAULT_CLASS_NAME)
        self.class_attribute = annotations.class_attribute
        for class_id, name in enumerate(annotations.class_names, start=1):
            self.add_class("balloon", class_id, name)

        for filename, shapes, class_ids in annotations.images:
            image_path = os.path.join(subset_dir, filename)
            if not os.path.isfile(image_path):
                raise FileNotFoundError("Image {} listed in {} not found".format(
                    image_path, json_path))
            # load_mask() needs the image size; VIA does not record it.
            with Image.open(image_path) as image:
                width, height = image.size
            self.add_image(
                "balloon",
                image_id=filename,  # use file name as a unique image id
                path=image_path,
                width=width, height=height,
                polygons=shapes,
                region_class_ids=class_ids)

    def load_mask(self, image_id):
        """Generate instance masks for an image.

        Returns:
        masks: A bool array of shape [height, width, instance count] with
            one mask per region (regions entirely outside the image dropped).
        class_ids: [instance count] int32 class ids (dataset-internal ids).
        """
        info = self.image_info[image_id]
        if info["source"] != "balloon":
            return super().load_mask(image_id)
        masks = via.shapes_to_masks(info["polygons"], info["height"], info["width"])
        class_ids = np.array([self._internal_class_id(c) for c in info["region_class_ids"]],
                             dtype=np.int32)
        keep = masks.any(axis=(0, 1))
        return masks[:, :, keep], class_ids[keep]

    def _internal_class_id(self, source_class_id):
        """Index in class_info of a "balloon" class id (no prepare() needed)."""
        for index, info in enumerate(self.class_info):
            if info["source"] == "balloon" and info["id"] == source_class_id:
                return index
        raise KeyError("No balloon class with id {}".format(source_class_id))

    def image_reference(self, image_id):
        """Return the path of the image."""
        info = self.image_info[image_id]
        if info["source"] == "balloon":
            return info["path"]
        return super().image_reference(image_id)


############################################################
#  Training
############################################################

def default_augmentation():
    """A light albumentations pipeline for balloons: horizontal flips and
    brightness/contrast changes (masks move with the image)."""
    import albumentations as A
    return A.Compose([A.HorizontalFlip(p=0.5),
                      A.RandomBrightnessContrast(p=0.3)])


def load_datasets(dataset_dir, class_attribute="auto", class_names=None):
    """Prepared (train, val) BalloonDatasets; val uses train's class names
    and class attribute so both have the same class ids."""
    dataset_train = BalloonDataset()
    dataset_train.load_balloon(dataset_dir, "train", class_attribute=class_attribute,
                               class_names=class_names)
    dataset_train.prepare()
    dataset_val = BalloonDataset()
    dataset_val.load_balloon(dataset_dir, "val", class_attribute=dataset_train.class_attribute,
                             class_names=dataset_train.class_names[1:])
    dataset_val.prepare()
    return dataset_train, dataset_val


def train(model, dataset_dir, epochs=30, learning_rate=None, augmentation=None,
          layers="heads", custom_callbacks=None, class_attribute="auto", minutes=None,
          start=None):
    """Train the model on ``dataset_dir``/train, validating on .../val.

    The original's schedule: starting from COCO weights, a small dataset
    needs only the network heads for 30 epochs. ``epochs`` is the last epoch
    (training resumes from the model's epoch); ``learning_rate`` defaults to
    config.LEARNING_RATE; ``augmentation`` is an albumentations transform or
    None (see default_augmentation()). ``minutes``: optional wall-time
    budget counted from ``start`` (a time.time() value; default: now); the
    epoch in progress when time is up is cut short and still checkpointed
    (``mrcnn.cli.TrainingBudget``). Raises ValueError when the model's
    NUM_CLASSES does not match the dataset's classes. Returns the History.
    """
    budget = cli.TrainingBudget(minutes, start)
    dataset_train, dataset_val = load_datasets(dataset_dir, class_attribute=class_attribute)
    config = model.config
    if config.NUM_CLASSES != dataset_train.num_classes:
        raise ValueError(
            "The dataset has {} classes ({}) plus background but config.NUM_CLASSES is {}; "
            "set NUM_CLASSES = {}".format(
                dataset_train.num_classes - 1, ", ".join(dataset_train.class_names[1:]),
                config.NUM_CLASSES, dataset_train.num_classes))
    print("Training network {}".format(layers))
    return model.train(dataset_train, dataset_val,
                       learning_rate=learning_rate or config.LEARNING_RATE,
                       epochs=epochs, layers=layers, augmentation=augmentation,
                       custom_callbacks=list(custom_callbacks or []) + budget.callbacks())


############################################################
#  Colour splash
############################################################

# ITU-R BT.709 luma weights as skimage.color.rgb2gray, in 1/10000: integer
# arithmetic makes the rounding exact.
GRAY_WEIGHTS = np.array([2125, 7154, 721], dtype=np.int64)


def color_splash(image, mask):
    """Apply color splash effect: keep colour inside the masks, gray outside.

    image: RGB image [height, width, 3], uint8.
    mask: instance masks [height, width, instance count] (or [height, width]);
        all instances count as one.

    Returns a [height, width, 3] uint8 image: the input's pixels where any
    mask is set, elsewhere the gray value 0.2125 R + 0.7154 G + 0.0721 B
    rounded half up, in all three channels.
    """
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("color_splash needs an RGB image [height, width, 3], got shape "
                         "{}".format(image.shape))
    if mask.ndim == 2:
        mask = mask[:, :, None]
    if mask.ndim != 3 or mask.shape[:2] != image.shape[:2]:
        raise ValueError("color_splash: mask shape {} does not match image shape {}".format(
            mask.shape, image.shape))
    gray = (image.astype(np.int64) @ GRAY_WEIGHTS + 5000) // 10000
    gray = np.clip(gray, 0, 255).astype(np.uint8)[:, :, None].repeat(3, axis=2)
    # All instances as one: a pixel keeps its colour if any mask covers it.
    covered = mask.any(axis=-1, keepdims=True) if mask.shape[-1] else \
        np.zeros(mask.shape[:2] + (1,), dtype=bool)
    return np.where(covered, image.astype(np.uint8), gray)


def _splash_path(input_path, extension):
    """``<input folder>/<input name>_splash_<timestamp><extension>``."""
    stem = os.path.splitext(os.path.basename(input_path))[0]
    return os.path.join(os.path.dirname(os.path.abspath(input_path)),
                        "{}_splash_{:%Y%m%dT%H%M%S}{}".format(stem, datetime.datetime.now(),
                                                              extension))


def detect_and_color_splash(model, image_path=None, video_path=None, output=None, verbose=1):
    """Run ``model.detect()`` on an image or on every frame of a video and
    write the colour splash.

    model: anything with ``detect(images, verbose=0)`` returning dicts with
        "masks" [H, W, N] (an inference MaskRCNN).
    image_path: an image file; the output is a PNG (or the format of
        ``output``'s extension).
    video_path: a video file OpenCV can read; the output is an MJPG-coded
        AVI at the input's frame rate (25 fps when unknown).
    output: output path; default ``<input>_splash_<timestamp>.png|.avi`` next
        to the input.

    Returns the output path. Raises ValueError unless exactly one of
    image_path / video_path is given, FileNotFoundError when it does not
    exist and IOError when the video cannot be read or written.
    """
    if bool(image_path) == bool(video_path):
        raise ValueError("Give exactly one of image_path and video_path")
    source = image_path or video_path
    if not os.path.isfile(source):
        raise FileNotFoundError("{} not found".format(source))

    if image_path:
        from PIL import Image
        from mrcnn.dataset import read_image_rgb
        if verbose:
            print("Running on {}".format(image_path))
        image = read_image_rgb(image_path)
        r = model.detect([image], verbose=0)[0]
        splash = color_splash(image, r["masks"])
        output = output or _splash_path(image_path, ".png")
        Image.fromarray(splash).save(output)
    else:
        output = output or _splash_path(video_path, ".avi")
        count = _splash_video(model, video_path, output, verbose)
        if verbose:
            print("{} frames".format(count))
    if verbose:
        print("Saved to", output)
    return output


def _splash_video(model, video_path, output, verbose):
    """Splash every frame of ``video_path`` into ``output``; returns the frame count."""
    import cv2
    capture = cv2.VideoCapture(video_path)
    if not capture.isOpened():
        raise IOError("OpenCV cannot open the video {}".format(video_path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    # The container's frame count, when it has one (the bar then shows a
    # time estimate; otherwise the count and rate).
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    bar = progress_bar(frames if frames > 0 else None, "frame", verbose)
    writer = None
    count = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if writer is None:
                # The frame size of the first frame, which can differ from
                # what the container header claims.
                height, width = frame.shape[:2]
                writer = cv2.VideoWriter(output, cv2.VideoWriter_fourcc(*"MJPG"), fps,
                                         (width, height))
                if not writer.isOpened():
                    raise IOError("OpenCV cannot write the video {} (MJPG codec; use an .avi "
                                  "name)".format(output))
            # OpenCV frames are BGR; the model sees RGB.
            image = np.ascontiguousarray(frame[:, :, ::-1])
            r = model.detect([image], verbose=0)[0]
            writer.write(np.ascontiguousarray(color_splash(image, r["masks"])[:, :, ::-1]))
            count += 1
            bar.update(count)
        bar.update(count, finalize=True)
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if count == 0:
        raise IOError("No frame could be read from the video {}".format(video_path))
    return count


############################################################
#  Command line
############################################################

def main(argv=None):
    import argparse
    import time

    start = time.time()
    parser = argparse.ArgumentParser(
        description="Train Mask R-CNN to detect balloons (or the classes of a VIA project) "
                    "and apply the colour splash effect.")
    parser.add_argument("command", choices=["train", "splash"])
    parser.add_argument("--dataset", metavar="/path/to/balloon/dataset/",
                        help="train: directory with train/ and val/ subsets")
    parser.add_argument("--weights", metavar="coco|last|imagenet|none|/path/to/weights.h5",
                        help="train: required; splash: default 'last'")
    parser.add_argument("--logs", default=DEFAULT_LOGS_DIR, metavar="/path/to/logs/",
                        help="Logs and checkpoints directory (default: ./logs)")
    parser.add_argument("--image", help="splash: image to apply the colour splash to")
    parser.add_argument("--video", help="splash: video to apply the colour splash to")
    parser.add_argument("--output", help="splash: output file (default: next to the input)")
    parser.add_argument("--epochs", type=int, default=30, help="train: last epoch (default 30)")
    parser.add_argument("--augment", action="store_true",
                        help="train: flips and brightness/contrast augmentation")
    cli.add_config_arguments(parser)
    args = parser.parse_args(argv)

    # Check the arguments before building anything.
    if args.command == "train":
        if not args.dataset:
            parser.error("train needs --dataset /path/to/balloon/dataset")
        if not os.path.isdir(args.dataset):
            parser.error("--dataset {} is not a directory".format(args.dataset))
        if not args.weights:
            parser.error("train needs --weights coco|last|imagenet|none|/path/to/weights.h5")
        try:
            dataset_train, _ = load_datasets(args.dataset)
        except (OSError, ValueError) as e:
            parser.error(str(e))
        base, keep = BalloonConfig(), cli.MACHINE_KEYS
        # The dataset's classes win over every configuration source.
        extra = [("the dataset's classes", {"NUM_CLASSES": dataset_train.num_classes})]
    else:
        if bool(args.image) == bool(args.video):
            parser.error("splash needs --image PATH or --video PATH (one of them)")
        if not os.path.isfile(args.image or args.video):
            parser.error("{} not found".format(args.image or args.video))
        base = BalloonInferenceConfig()
        keep = cli.command_keys(BalloonInferenceConfig, BalloonConfig)
        extra = []
    config, sources = cli.config_from_args(parser, args, base, extra=extra)
    from mrcnn.utils import WeightsDownloadError
    from mrcnn.weights.pretrained import load_starting_weights, resolve_weights
    weights = args.weights or "last"
    try:
        weights_path, exclude = resolve_weights(weights, config, args.logs,
                                                coco_path=COCO_WEIGHTS_PATH)
    except (FileNotFoundError, WeightsDownloadError, ValueError) as e:
        parser.error(str(e))
    # A checkpoint of ours: build the model it was trained as (splash takes
    # its class count from there too).
    config, sources = cli.config_from_args(parser, args, base, weights, weights_path,
                                           keep=keep, extra=extra)

    print("Weights: ", weights_path)
    print("Dataset: ", args.dataset)
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
        train(model, args.dataset, epochs=args.epochs,
              augmentation=default_augmentation() if args.augment else None,
              minutes=args.minutes, start=start)
    else:
        detect_and_color_splash(model, image_path=args.image, video_path=args.video,
                                output=args.output)


if __name__ == "__main__":
    from mrcnn.quiet import quiet_tensorflow
    quiet_tensorflow()  # before TensorFlow loads; TF_CPP_MIN_LOG_LEVEL set by the user wins
    main()
