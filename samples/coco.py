"""
Mask R-CNN
Configurations, data loading and evaluation for MS COCO and for any dataset
in the COCO annotation format.

A port of matterport's ``samples/coco/coco.py``: same names (``CocoConfig``,
``CocoDataset.load_coco``, ``auto_download``, ``annToRLE``, ``annToMask``,
``build_coco_results``, ``evaluate_coco``) and the same command line. The
format itself (reading and checking annotation files, masks, results, the
pycocotools evaluation) is ``mrcnn.data.cocoformat``; ``build_coco_results``,
``evaluate_coco``, ``coco_stats``, ``STATS_NAMES`` and ``CocoFormatError``
are importable from here too.

Command line (run from anywhere; ``mrcnn`` is imported as an installed
package)::

    # Train from the released COCO weights (downloaded to ./mask_rcnn_coco.h5)
    python samples/coco.py train --dataset /path/to/coco --model coco

    # Train from ImageNet weights, downloading the 2014 images and annotations
    python samples/coco.py train --dataset /path/to/coco --model imagenet --download

    # Continue the last run, or start from a checkpoint, or from random weights
    python samples/coco.py train --dataset /path/to/coco --model last
    python samples/coco.py train --dataset /path/to/coco --model /path/to/weights.h5
    python samples/coco.py train --dataset /path/to/coco --model none

    # Box and mask AP of the last run on 500 minival images (--limit 0: all)
    python samples/coco.py evaluate --dataset /path/to/coco --model last

    # The same figures on 500 validation images every 5 epochs while training
    python samples/coco.py train --dataset /path/to/coco --model coco --eval-every 5

    # Any COCO-format dataset: one annotations JSON plus an image folder
    python samples/coco.py train --annotations train.json --images train/ \\
        --val-annotations val.json --val-images val/ --model coco
    python samples/coco.py evaluate --annotations val.json --images val/ --model last

    # A smaller model for a laptop: ResNet-50 at 256 px, 30 minutes of training
    python samples/coco.py train --annotations train.json --val-annotations val.json \\
        --model none --backbone resnet50 --image-size 256 --images-per-gpu 4 --minutes 30

Configuration flags (``mrcnn.cli``): ``--config FILE.json`` (a
``Config.to_json`` file), ``--arch`` (Config.MODEL), ``--backbone``,
``--image-size`` (IMAGE_MIN_DIM = IMAGE_MAX_DIM), ``--images-per-gpu``,
``--learning-rate`` and ``--minutes`` (a wall-time budget for the whole
schedule, shared by the stages in proportion to their epochs). When the
weights are a checkpoint (``--model last`` or a path) with the
``config.json`` that training writes beside it, the model is built from that
configuration ("Using the configuration saved with the checkpoint: ..."),
so a model trained with other settings evaluates and resumes without
repeating them; evaluation keeps its own GPU_COUNT, IMAGES_PER_GPU = 1 and
DETECTION_MIN_CONFIDENCE = 0. Precedence, lowest first: CocoConfig (train) or
InferenceConfig (evaluate) < config.json beside the checkpoint < ``--config``
< the flags < the dataset's class count.

Training follows the original's schedule: the heads to epoch 40 at
LEARNING_RATE, ResNet stage 4 and up to epoch 120, everything to epoch 160 at
LEARNING_RATE / 10, with random horizontal flips. ``--epochs-heads``,
``--epochs-4plus``, ``--epochs-all``, ``--steps-per-epoch`` and
``--validation-steps`` shorten it. With a custom dataset NUM_CLASSES is
1 + the number of categories in its JSON, and ``--model coco`` leaves the
class-specific heads out when that differs from COCO's 81.

COCO layout (``--dataset DIR``): ``DIR/annotations/instances_<subset><year>.json``
and ``DIR/<subset><year>/*.jpg``. 2014 training uses ``train`` plus
``valminusminival`` and validates on ``minival`` (images of both in
``val2014``); 2017 uses ``train`` and ``val``.

Custom datasets: ``CocoDataset().load_coco(None, None,
annotation_file="train.json", image_dir="images/")``. Category ids may be any
integers (they are mapped to contiguous class ids by ``prepare()``; results
are written back with the JSON's ids); ``file_name`` is relative to
``image_dir`` (default: the folder of the JSON file).

Bad input: annotation files are checked and repaired as the
``mrcnn.data.cocoformat`` docstring lists (``CocoFormatError`` for broken files;
unusable annotations dropped with one warning per kind of problem on the
``mrcnn.data.cocoformat`` logger, naming the annotation ids). Dropped annotations
are left out of the ``COCO`` object that ``load_coco(return_coco=True)``
returns too, so training and evaluation see the same ground truth. Image
files missing on disk are reported by ``load_coco`` in one warning on the
``samples.coco`` logger (a missing image folder raises FileNotFoundError)
and stay in the dataset; loading one raises ``mrcnn.utils.ImageLoadError``
naming the file.

Differences from the original:

* imgaug's ``Fliplr(0.5)`` is ``albumentations.HorizontalFlip(p=0.5)``;
* ``evaluate_coco`` and ``build_coco_results``: see ``mrcnn.data.cocoformat``
  (batched ``detect()``, the ``COCOeval`` objects returned, only the loaded
  categories evaluated, masks scored by mask area, JSON-serialisable
  results); the command line evaluates boxes and masks;
* a ``--model`` file that does not exist is reported before any data is
  loaded; ``mrcnn.weights.resolve_weights`` resolves the keywords;
* ``load_mask`` returns an empty ``[height, width, 0]`` mask for an image
  without instances, without the base class's warning; ``image_reference``
  answers for other sources too (the original returned None);
* ``auto_download`` writes each file under a temporary name and moves it
  into place when complete (a failed download left an empty image folder
  that was never filled), and reports offline failures with what to fetch
  from where;
* ``--download`` is a flag (the original's ``type=bool`` made any value,
  "False" included, true); ``--model none`` trains from random weights.
"""

import json
import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile

import numpy as np

from mrcnn import cli, utils
from mrcnn.data.cocoformat import (STATS_NAMES, CocoFormatError,  # noqa: F401  (re-exported)
                              ann_to_mask, ann_to_rle, build_coco_results,
                              clean_coco_annotations, coco_from_dict, coco_stats,
                              evaluate_coco, ids_text, read_coco_json, sorted_ids)
from mrcnn.config import Config

logger = logging.getLogger("samples.coco")

# Path to the released COCO weights (downloaded there by --model coco).
COCO_MODEL_PATH = os.path.join(os.getcwd(), "mask_rcnn_coco.h5")
DEFAULT_DATASET_YEAR = "2014"

# Where auto_download() fetches from; {subset} and {year} are filled in.
COCO_IMAGES_URL = "http://images.cocodataset.org/zips/{subset}{year}.zip"
COCO_ANNOTATIONS_URL = "http://images.cocodataset.org/annotations/annotations_trainval{year}.zip"
COCO_MINIVAL_URLS = {
    "minival": "https://dl.dropboxusercontent.com/s/o43o90bna78omob/"
               "instances_minival2014.json.zip?dl=0",
    "valminusminival": "https://dl.dropboxusercontent.com/s/s3tw5zcg7395368/"
                       "instances_valminusminival2014.json.zip?dl=0",
}


class CocoDownloadError(RuntimeError):
    """A COCO file could not be downloaded or unpacked."""


############################################################
#  Configurations
############################################################

class CocoConfig(Config):
    """Configuration for training on MS COCO.
    Derives from the base Config class and overrides values specific
    to the COCO dataset.
    """
    # Give the configuration a recognizable name
    NAME = "coco"

    # Two 1024 px images fit on a 12 GB GPU; lower it for smaller GPUs.
    IMAGES_PER_GPU = 2

    # Set GPU_COUNT = 8 to train on 8 GPUs (a tf.distribute strategy).

    # Number of classes (including background)
    NUM_CLASSES = 1 + 80  # COCO has 80 classes


class InferenceConfig(CocoConfig):
    """CocoConfig for evaluation: one image per batch and every detection
    kept (COCO AP integrates over all scores)."""
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1
    DETECTION_MIN_CONFIDENCE = 0


############################################################
#  Dataset
############################################################

class CocoDataset(utils.Dataset):
    """MS COCO, or any dataset in the COCO annotation format (source
    "coco"). ``image_info`` entries hold the COCO image id (``id``),
    ``path``, ``width``, ``height`` and the image's ``annotations``."""

    def load_coco(self, dataset_dir, subset, year=DEFAULT_DATASET_YEAR, class_ids=None,
                  class_map=None, return_coco=False, auto_download=False,
                  annotation_file=None, image_dir=None, check_files=True):
        """Load a subset of the COCO dataset, or a COCO-format dataset.

        dataset_dir: The root directory of the COCO dataset.
        subset: What to load (train, val, minival, valminusminival)
        year: What dataset year to load (2014, 2017) as a string, not an integer
        class_ids: If provided, only loads images that have the given classes
            (COCO category ids) and only their annotations of those classes.
        class_map: Not implemented (as in the original); ignored.
        return_coco: If True, returns the pycocotools COCO object (of the
            checked annotations).
        auto_download: Automatically download and unzip MS-COCO images and
            annotations (see auto_download()).
        annotation_file: a COCO-format JSON file; when given, dataset_dir,
            subset and year are not used and images are read from
            image_dir (default: the folder of annotation_file).
        check_files: report image files missing on disk (one warning) and
            raise FileNotFoundError when the image folder is missing.

        As in the original, only images with at least one annotation of the
        selected classes are added. Raises FileNotFoundError for a missing
        annotation file, CocoFormatError for a malformed one, ValueError for
        class_ids not in the file.
        """
        if annotation_file is not None:
            if auto_download:
                raise ValueError("auto_download fetches MS COCO; it cannot be combined "
                                 "with annotation_file")
            annotation_file = os.fspath(annotation_file)
            if image_dir is None:
                image_dir = os.path.dirname(os.path.abspath(annotation_file))
            image_dir = os.fspath(image_dir)
            reference_url = None
        else:
            year = str(year)
            if auto_download:
                self.auto_download(dataset_dir, subset, year)
            annotation_file = os.path.join(dataset_dir, "annotations",
                                           "instances_{}{}.json".format(subset, year))
            image_subset = "val" if subset in ("minival", "valminusminival") else subset
            image_dir = os.path.join(dataset_dir, "{}{}".format(image_subset, year))
            reference_url = "http://cocodataset.org/#explore?id={}"
        if not os.path.isfile(annotation_file):
            hint = "" if reference_url is None else (
                "; expected the layout {0}/annotations/instances_<subset><year>.json and "
                "{0}/<subset><year>/; auto_download=True (--download) fetches them".format(
                    dataset_dir))
            raise FileNotFoundError("COCO annotation file not found: {}{}".format(
                annotation_file, hint))

        data = clean_coco_annotations(read_coco_json(annotation_file), annotation_file)
        coco = coco_from_dict(data)

        # Load all classes or a subset?
        if not class_ids:
            class_ids = sorted(coco.getCatIds())
        else:
            unknown = [c for c in class_ids if c not in coco.cats]
            if unknown:
                raise ValueError("{}: class_ids {} are not categories of this file; it has "
                                 "{}".format(annotation_file, ids_text(unknown),
                                             ids_text(sorted(coco.cats))))

        # Images with at least one annotation of these classes.
        image_ids = sorted_ids({i for c in class_ids for i in coco.getImgIds(catIds=[c])})

        for i in class_ids:
            self.add_class("coco", i, coco.loadCats(i)[0]["name"])
        for i in image_ids:
            self.add_image(
                "coco", image_id=i,
                path=os.path.join(image_dir, coco.imgs[i]["file_name"]),
                width=coco.imgs[i]["width"],
                height=coco.imgs[i]["height"],
                annotations=coco.loadAnns(coco.getAnnIds(
                    imgIds=[i], catIds=class_ids, iscrowd=None)),
                reference_url=reference_url and reference_url.format(i))
        if check_files and image_ids:
            self._check_image_files(image_ids, coco, image_dir, annotation_file)
        if return_coco:
            return coco

    def _check_image_files(self, image_ids, coco, image_dir, annotation_file):
        if not os.path.isdir(image_dir):
            raise FileNotFoundError("Image folder not found: {} (the images of {})".format(
                image_dir, annotation_file))
        missing = [coco.imgs[i]["file_name"] for i in image_ids
                   if not os.path.isfile(os.path.join(image_dir, coco.imgs[i]["file_name"]))]
        if missing:
            logger.warning("%s: %d of %d image files are missing in %s: %s; loading them "
                           "will fail", annotation_file, len(missing), len(image_ids),
                           image_dir, ids_text(missing))

    def auto_download(self, dataDir, dataType, dataYear):
        """Download the COCO dataset/annotations if requested.
        dataDir: The root directory of the COCO dataset.
        dataType: What to load (train, val, minival, valminusminival)
        dataYear: What dataset year to load (2014, 2017) as a string, not an integer
        Note:
            For 2014, use "train", "val", "minival", or "valminusminival"
            For 2017, only "train" and "val" annotations are available

        Images go to ``dataDir/<type><year>/`` (minival and valminusminival
        use ``val2014``), annotations to ``dataDir/annotations/``; parts
        already there are not fetched again. Zip files are kept next to
        them. Each download is written under a temporary name and renamed
        when complete. Returns (annotation file, image folder).

        Raises CocoDownloadError (saying which file to fetch from which URL
        and where to put it) when a download fails, e.g. offline.
        """
        year = str(dataYear)
        if dataType in COCO_MINIVAL_URLS and year != "2014":
            raise ValueError("{} exists for 2014 only; for {} use 'train' or 'val'".format(
                dataType, year))
        image_subset = "val" if dataType in COCO_MINIVAL_URLS else dataType
        image_dir = os.path.join(dataDir, "{}{}".format(image_subset, year))
        image_zip = os.path.join(dataDir, "{}{}.zip".format(image_subset, year))
        os.makedirs(dataDir, exist_ok=True)
        if not os.path.isdir(image_dir):
            if not os.path.isfile(image_zip):
                _download(COCO_IMAGES_URL.format(subset=image_subset, year=year), image_zip,
                          unpack_to=dataDir)
            _extract_zip(image_zip, dataDir, expect=image_dir)
        print("Will use images in " + image_dir)

        annotation_dir = os.path.join(dataDir, "annotations")
        annotation_file = os.path.join(annotation_dir,
                                       "instances_{}{}.json".format(dataType, year))
        if dataType in COCO_MINIVAL_URLS:
            annotation_zip = os.path.join(dataDir, "instances_{}2014.json.zip".format(dataType))
            annotation_url = COCO_MINIVAL_URLS[dataType]
            unzip_dir = annotation_dir
        else:
            annotation_zip = os.path.join(dataDir, "annotations_trainval{}.zip".format(year))
            annotation_url = COCO_ANNOTATIONS_URL.format(year=year)
            unzip_dir = dataDir
        if not os.path.isfile(annotation_file):
            if not os.path.isfile(annotation_zip):
                _download(annotation_url, annotation_zip, unpack_to=unzip_dir)
            os.makedirs(unzip_dir, exist_ok=True)
            _extract_zip(annotation_zip, unzip_dir, expect=annotation_file)
        print("Will use annotations in " + annotation_file)
        return annotation_file, image_dir

    def load_mask(self, image_id):
        """Load instance masks for the given image.

        Returns:
        masks: A bool array of shape [height, width, instance count] with
            one mask per instance, in image pixels.
        class_ids: [instance count] int32 class ids; a crowd region
            (``iscrowd``) has the negative of its class id.

        Instances whose mask has no pixel (objects smaller than a pixel are
        rounded away) are skipped. A crowd RLE of another size than the
        image covers the whole image (as in the original). Images of other
        sources go to the parent class. Needs prepare().
        """
        image_info = self.image_info[image_id]
        if image_info["source"] != "coco":
            return super(CocoDataset, self).load_mask(image_id)
        height, width = image_info["height"], image_info["width"]
        instance_masks = []
        class_ids = []
        for annotation in image_info["annotations"]:
            class_id = self.map_source_class_id("coco.{}".format(annotation["category_id"]))
            m = ann_to_mask(annotation, height, width)
            # Some objects are so small that they're less than 1 pixel area
            # and end up rounded out. Skip those objects.
            if m.max(initial=0) < 1:
                continue
            if annotation.get("iscrowd"):
                # Use negative class ID for crowds
                class_id *= -1
                if m.shape != (height, width):
                    m = np.ones([height, width], dtype=bool)
            instance_masks.append(m.astype(bool))
            class_ids.append(class_id)
        if not class_ids:
            return np.zeros([height, width, 0], dtype=bool), np.zeros([0], dtype=np.int32)
        return np.stack(instance_masks, axis=2), np.array(class_ids, dtype=np.int32)

    def image_reference(self, image_id):
        """Return a link to the image in the COCO Website (images of
        cocodataset.org) or its file path (other COCO-format datasets)."""
        info = self.image_info[image_id]
        if info["source"] == "coco":
            return info.get("reference_url") or info["path"]
        return super(CocoDataset, self).image_reference(image_id)

    # Methods of the original; mrcnn.data.cocoformat does the work.
    def annToRLE(self, ann, height, width):
        """Compressed RLE of an annotation (cocoformat.ann_to_rle)."""
        return ann_to_rle(ann, height, width)

    def annToMask(self, ann, height, width):
        """[height, width] uint8 mask of an annotation (cocoformat.ann_to_mask)."""
        return ann_to_mask(ann, height, width)


############################################################
#  Downloads
############################################################

def _download(url, target, unpack_to):
    """Fetch ``url`` to ``target`` through ``target + '.part'``."""
    partial = target + ".part"
    print("Downloading {} to {} ...".format(url, target))
    try:
        with urllib.request.urlopen(url) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
    except (OSError, ValueError) as e:  # URLError is an OSError
        if os.path.exists(partial):
            os.remove(partial)
        raise CocoDownloadError(
            "Could not download {url} ({error}).\nDownload that file on a machine with "
            "internet access and put it at {target}; it is unzipped from there into "
            "{unpack}".format(url=url, error=e, target=target, unpack=unpack_to)) from e
    os.replace(partial, target)
    print("... done downloading.")


def _merge_tree(source, destination):
    """Move the contents of folder ``source`` into ``destination``; a folder
    that does not exist yet there moves in one rename."""
    for name in os.listdir(source):
        src, dst = os.path.join(source, name), os.path.join(destination, name)
        if os.path.isdir(src) and os.path.isdir(dst):
            _merge_tree(src, dst)
        else:
            os.replace(src, dst)


def _extract_zip(zip_path, destination, expect):
    """Unzip into a temporary folder inside ``destination``, then move the
    contents into place; ``expect`` must exist afterwards."""
    print("Unzipping " + zip_path)
    os.makedirs(destination, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".unzip-", dir=destination)
    try:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(scratch)
        _merge_tree(scratch, destination)
    except zipfile.BadZipFile as e:
        raise CocoDownloadError("{} is not a valid zip file ({}); delete it and run "
                                "again".format(zip_path, e)) from e
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not os.path.exists(expect):
        raise CocoDownloadError("{} did not contain {}".format(
            zip_path, os.path.relpath(expect, destination)))
    print("... done unzipping")


############################################################
#  Training and the command line
############################################################

def build_parser():
    import argparse
    parser = argparse.ArgumentParser(
        description="Train and evaluate Mask R-CNN on MS COCO or a COCO-format dataset.")
    parser.add_argument("command", choices=["train", "evaluate"])
    parser.add_argument("--dataset", metavar="/path/to/coco/",
                        help="Directory of the MS-COCO dataset")
    parser.add_argument("--year", default=DEFAULT_DATASET_YEAR, choices=["2014", "2017"],
                        help="Year of the MS-COCO dataset (default 2014)")
    parser.add_argument("--model", required=True, metavar="coco|last|imagenet|none|PATH",
                        help="Weights to start from: 'coco' (released COCO weights, downloaded "
                             "when missing), 'last' (last checkpoint in --logs), 'imagenet', "
                             "'none' (random initialisation) or a .h5 path")
    parser.add_argument("--logs", default=os.path.join(os.getcwd(), "logs"),
                        help="Logs and checkpoints directory (default: ./logs)")
    parser.add_argument("--limit", type=int, default=500,
                        help="evaluate, and train with --eval-every: validation images to use "
                             "(default 500; 0: all)")
    parser.add_argument("--download", action="store_true",
                        help="Download and unzip the MS-COCO files that are missing")
    parser.add_argument("--eval-type", default="both", choices=["bbox", "segm", "both"],
                        help="evaluate, and train with --eval-every: boxes, masks or both "
                             "(default)")
    parser.add_argument("--eval-every", type=cli.positive_int, metavar="N",
                        help="train: COCO AP, AP50, AP75 on the validation set every N epochs "
                             "(progress bar, History, TensorBoard with pictures, "
                             "coco_metrics.csv beside the checkpoints)")
    parser.add_argument("--epochs-heads", type=int, default=40,
                        help="train: last epoch of stage 1, the heads (default 40)")
    parser.add_argument("--epochs-4plus", type=int, default=120,
                        help="train: last epoch of stage 2, ResNet stage 4 and up (default 120)")
    parser.add_argument("--epochs-all", type=int, default=160,
                        help="train: last epoch of stage 3, all layers at LR/10 (default 160)")
    parser.add_argument("--steps-per-epoch", type=int,
                        help="train: STEPS_PER_EPOCH (default: the config's)")
    parser.add_argument("--validation-steps", type=int,
                        help="train: VALIDATION_STEPS (default: the config's)")
    parser.add_argument("--annotations", metavar="FILE",
                        help="A COCO-format annotations JSON (training set for train, the "
                             "evaluated set for evaluate) instead of --dataset")
    parser.add_argument("--images", metavar="DIR",
                        help="Image folder of --annotations (default: the JSON's folder)")
    parser.add_argument("--val-annotations", metavar="FILE",
                        help="Validation annotations JSON for a custom dataset (train needs "
                             "it; evaluate uses it instead of --annotations when given)")
    parser.add_argument("--val-images", metavar="DIR",
                        help="Image folder of --val-annotations (default: the JSON's folder)")
    cli.add_config_arguments(parser, minutes_help="train: wall-clock budget in minutes for "
                                                  "the whole schedule (default: none)")
    return parser


def _check_args(parser, args):
    """Argument errors found before any data is loaded."""
    if args.annotations or args.val_annotations:
        if args.download:
            parser.error("--download fetches MS COCO; it does not apply to --annotations")
        if args.command == "train" and not (args.annotations and args.val_annotations):
            parser.error("training on a custom dataset needs --annotations and "
                         "--val-annotations (with --images and --val-images)")
        for path in (args.annotations, args.val_annotations):
            if path and not os.path.isfile(path):
                parser.error("annotations file not found: {}".format(path))
        for path in (args.images, args.val_images):
            if path and not os.path.isdir(path):
                parser.error("image folder not found: {}".format(path))
    elif not args.dataset:
        parser.error("give --dataset (MS COCO) or --annotations (a COCO-format dataset)")
    elif not os.path.isdir(args.dataset) and not args.download:
        parser.error("COCO dataset directory not found: {}; create it with the annotations/ "
                     "and image folders, or add --download to fetch them".format(args.dataset))
    # Last: mrcnn.weights loads TensorFlow.
    from mrcnn.weights.pretrained import check_weights_spec
    try:
        check_weights_spec(args.model)
    except FileNotFoundError as e:
        parser.error("--model: {}".format(e))


def load_datasets(args):
    """(training dataset or None, evaluation/validation dataset, its COCO)
    for the parsed arguments, prepared."""
    def custom(annotations, images):
        dataset = CocoDataset()
        coco = dataset.load_coco(None, None, annotation_file=annotations, image_dir=images,
                                 return_coco=True)
        dataset.prepare()
        return dataset, coco

    if args.annotations or args.val_annotations:
        if args.command == "evaluate":
            val = (args.val_annotations, args.val_images) if args.val_annotations \
                else (args.annotations, args.images)
            return (None,) + custom(*val)
        dataset_train, _ = custom(args.annotations, args.images)
        dataset_val, coco = custom(args.val_annotations, args.val_images)
        train_classes = [(c["source"], c["id"]) for c in dataset_train.class_info]
        if train_classes != [(c["source"], c["id"]) for c in dataset_val.class_info]:
            raise SystemExit("{} and {} have different categories; they must list the same "
                             "ones".format(args.annotations, args.val_annotations))
        return dataset_train, dataset_val, coco

    val_type = "val" if args.year == "2017" else "minival"
    dataset_val = CocoDataset()
    coco = dataset_val.load_coco(args.dataset, val_type, year=args.year, return_coco=True,
                                 auto_download=args.download)
    dataset_val.prepare()
    if args.command == "evaluate":
        return None, dataset_val, coco
    # Training uses the training set plus, for 2014, the 35K validation
    # images outside minival, as in the Mask R-CNN paper.
    dataset_train = CocoDataset()
    dataset_train.load_coco(args.dataset, "train", year=args.year, auto_download=args.download)
    if args.year == "2014":
        dataset_train.load_coco(args.dataset, "valminusminival", year=args.year,
                                auto_download=args.download)
    dataset_train.prepare()
    return dataset_train, dataset_val, coco


def train_schedule(model, dataset_train, dataset_val, config, epochs_heads=40,
                   epochs_4plus=120, epochs_all=160, custom_callbacks=None, verbose=1,
                   minutes=None, start=None):
    """The original's three stages with random horizontal flips: heads to
    ``epochs_heads`` at LEARNING_RATE, ResNet stage 4+ to ``epochs_4plus``,
    all layers to ``epochs_all`` at LEARNING_RATE / 10 (epochs are totals,
    so a stage whose target is already reached does nothing).

    minutes: optional wall-time budget for the whole schedule, counted from
        ``start`` (a time.time() value; default: now). Each stage may run
        until its share of the budget, in proportion to the epochs left
        (``mrcnn.cli.TrainingBudget``); a stage whose time is already over is
        skipped, and the epoch in progress when time is up is cut short and
        still checkpointed.
    """
    import albumentations
    augmentation = albumentations.HorizontalFlip(p=0.5)
    budget = cli.TrainingBudget(minutes, start)
    first_epoch = model.epoch
    stages = [("Training network heads", config.LEARNING_RATE, epochs_heads, "heads"),
              ("Fine tune Resnet stage 4 and up", config.LEARNING_RATE, epochs_4plus, "4+"),
              ("Fine tune all layers", config.LEARNING_RATE / 10, epochs_all, "all")]
    last_epoch = max(epochs for _, _, epochs, _ in stages)
    for title, learning_rate, epochs, layers in stages:
        if epochs <= model.epoch:
            continue
        share = (epochs - first_epoch) / float(max(1, last_epoch - first_epoch))
        if budget.over(share):
            continue
        print(title)
        model.train(dataset_train, dataset_val, learning_rate=learning_rate, epochs=epochs,
                    layers=layers, augmentation=augmentation,
                    custom_callbacks=list(custom_callbacks or []) + budget.callbacks(share),
                    verbose=verbose)


def coco_callbacks(args, config, dataset_val, coco):
    """[CocoEvaluationCallback] for ``train --eval-every N`` (an inference
    model of the training configuration, one image at a time, every
    detection scored as COCO evaluation wants), or []."""
    if not getattr(args, "eval_every", None):
        return []
    import copy
    from mrcnn import model as modellib
    from mrcnn.callbacks import CocoEvaluationCallback
    eval_config = copy.copy(config)
    eval_config.GPU_COUNT, eval_config.IMAGES_PER_GPU = 1, 1
    eval_config.DETECTION_MIN_CONFIDENCE = 0
    inference = modellib.create_model("inference", eval_config, args.logs)
    return [CocoEvaluationCallback(inference, dataset_val, coco, every_n_epochs=args.eval_every,
                                   eval_type=args.eval_type, limit=args.limit)]


def main(argv=None, config=None):
    """Command line entry point (see the module docstring).

    argv: arguments without the program name (default: sys.argv[1:]).
    config: a Config instance to use instead of CocoConfig (train) or
        InferenceConfig (evaluate); NUM_CLASSES is set from the dataset.
        The configuration sources and flags apply over it (see
        ``mrcnn.cli``: base < config.json beside a ``last``/path checkpoint <
        ``--config`` < flags < the dataset's class count).
    Returns a dict of what was printed as JSON at the end.
    """
    import time
    start = time.time()
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    print("Command: ", args.command)
    print("Model: ", args.model)
    print("Dataset: ", args.dataset or args.annotations)
    print("Year: ", args.year)
    print("Logs: ", args.logs)
    print("Auto Download: ", args.download)

    try:
        dataset_train, dataset_val, coco = load_datasets(args)
    except (FileNotFoundError, CocoFormatError, CocoDownloadError, ValueError) as e:
        raise SystemExit("coco.py: error: {}".format(e)) from e

    # Configurations: the command's class (or ``config``), the config.json
    # of a checkpoint, --config and the flags (mrcnn.cli), then the dataset.
    if config is None:
        config = CocoConfig() if args.command == "train" else InferenceConfig()
    keep = cli.MACHINE_KEYS if args.command == "train" else \
        cli.command_keys(InferenceConfig, CocoConfig)
    extra = [("the dataset's classes", {"NUM_CLASSES": dataset_val.num_classes}),
             ("--steps-per-epoch", {"STEPS_PER_EPOCH": args.steps_per_epoch or None}),
             ("--validation-steps", {"VALIDATION_STEPS": args.validation_steps or None})]
    base = config
    config, sources = cli.config_from_args(parser, args, base, extra=extra)

    # The model is built only once the data and weights are known to be good.
    from mrcnn import model as modellib
    from mrcnn.utils import WeightsDownloadError
    from mrcnn.weights.pretrained import load_starting_weights, resolve_weights
    try:
        # COCO weights leave the class-specific heads out unless NUM_CLASSES is 81.
        model_path, exclude = resolve_weights(args.model, config, args.logs,
                                              coco_path=COCO_MODEL_PATH)
    except (WeightsDownloadError, FileNotFoundError, ValueError) as e:
        raise SystemExit("coco.py: error: {}".format(e)) from e
    # A checkpoint of ours: build the model it was trained as.
    config, sources = cli.config_from_args(parser, args, base, args.model, model_path,
                                           keep=keep, extra=extra)
    print("Configuration: ", cli.describe_sources(sources))
    config.display()

    mode = "training" if args.command == "train" else "inference"
    model = modellib.create_model(mode, config, args.logs)
    try:
        load_starting_weights(model, model_path, exclude)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit("coco.py: error: {}".format(e)) from e

    if args.command == "train":
        train_schedule(model, dataset_train, dataset_val, config, args.epochs_heads,
                       args.epochs_4plus, args.epochs_all, minutes=args.minutes, start=start,
                       custom_callbacks=coco_callbacks(args, config, dataset_val, coco))
        summary = {"epochs": model.epoch, "log_dir": model.log_dir,
                   "weights": model_path or "none"}
    else:
        print("Running COCO evaluation on {} images.".format(
            args.limit or len(dataset_val.image_ids)))
        try:
            evaluations = evaluate_coco(model, dataset_val, coco, eval_type=args.eval_type,
                                        limit=args.limit)
        except utils.ImageLoadError as e:
            raise SystemExit("coco.py: error: {}".format(e)) from e
        if not isinstance(evaluations, dict):
            evaluations = {args.eval_type: evaluations}
        summary = {t: coco_stats(e) for t, e in evaluations.items()}
        summary.update(images=len(evaluations[next(iter(evaluations))].params.imgIds),
                       weights=model_path or "none")
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    from mrcnn.quiet import quiet_tensorflow
    quiet_tensorflow()  # before TensorFlow loads; TF_CPP_MIN_LOG_LEVEL set by the user wins
    main()
