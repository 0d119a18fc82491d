"""
Mask R-CNN
Where a model's starting weights come from: the Keras Applications ImageNet
weights of the ResNet backbone (download, layer-name mapping, loading) and
the keywords a command line gives (``resolve_weights``: coco, last,
imagenet, none or a weights file).

Files are read with the legacy Keras 2 HDF5 reader in ``mrcnn.weights``.
"""

import logging
import os
import re

import keras

from mrcnn import utils
from mrcnn.checkpoints import find_last_checkpoint
from mrcnn.nested import iter_layers
from mrcnn.utils import WeightsDownloadError
from mrcnn.weights.hdf5 import (CLASS_SPECIFIC_LAYERS, LoadReport, apply_assignments,
                                layer_groups, name_set, open_weights_file, plan_assignments,
                                weights_root)

logger = logging.getLogger(__name__)


############################################################
#  ImageNet initialisation
############################################################

_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
IMAGENET_WEIGHTS = {
    "resnet50": (_KERAS_APPS + "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 "4d473c1dd8becc155b73f8504c6f6626"),
    "resnet101": (_KERAS_APPS + "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5",
                  "88cf7a10940856eca736dc7b7e228a21"),
}
# Architecture by the number of stage-4 blocks.
_STAGE4_BLOCKS = {6: "resnet50", 23: "resnet101", 36: "resnet152"}
_APP_BLOCK_LAYER = re.compile(r"^conv([2-5])_block(\d+)_([0-3])_(conv|bn)$")


def _check_known(architecture):
    if architecture not in IMAGENET_WEIGHTS:
        raise ValueError("No ImageNet weights for architecture {!r}; choose one of: {}".format(
            architecture, ", ".join(sorted(IMAGENET_WEIGHTS))))


def get_imagenet_weights(architecture="resnet50", cache_dir=None, url=None, file_hash=None):
    """Local path of the Keras Applications ImageNet weights (no top) for
    ``architecture`` ("resnet50" or "resnet101"), downloading them once into
    ``{cache_dir or ~/.keras}/models/`` with ``keras.utils.get_file``.

    url: download from here instead (a mirror, or a file:// URL).
    file_hash: md5 or sha256 to verify; by default the published md5 when
        ``url`` is not given and no check when it is.

    Differs from the original: it fetched the ResNet50 file for ResNet101
    too; each architecture now gets its own weights.
    Raises ValueError for an unknown architecture and
    ``mrcnn.utils.WeightsDownloadError`` when the download fails.
    """
    _check_known(architecture)
    known_url, known_hash = IMAGENET_WEIGHTS[architecture]
    if file_hash is None and url is None:
        file_hash = known_hash
    url = url or known_url
    fname = os.path.basename(known_url)
    if cache_dir is not None:
        # get_file silently falls back to /tmp/.keras when cache_dir does not exist.
        cache_dir = os.path.expanduser(os.fspath(cache_dir))
        os.makedirs(cache_dir, exist_ok=True)
    try:
        return keras.utils.get_file(fname, url, cache_subdir="models", file_hash=file_hash,
                                    cache_dir=cache_dir)
    except Exception as e:  # get_file raises bare Exception on URL errors
        home = cache_dir or os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
        target = os.path.join(os.path.expanduser(home), "models", fname)
        raise WeightsDownloadError(
            "Could not download the {} ImageNet weights from {} ({}).\nDownload that file on "
            "a machine with internet access and place it at {}".format(
                architecture, url, e, target)) from e


def imagenet_layer_name(keras_app_name):
    """Keras Applications ResNet layer name -> this package's reference name,
    or None for layers without a counterpart (padding, pooling, add, relu).

    ``conv1_conv`` -> ``conv1``, ``conv1_bn`` -> ``bn_conv1``,
    ``conv{s}_block{b}_{i}_conv`` -> ``res{s}{letter}_branch{X}`` and ``_bn`` ->
    ``bn{s}{letter}_branch{X}``, with letter ``a`` for block 1 and X ``1``
    (shortcut) for i=0, ``2a``/``2b``/``2c`` for i=1/2/3.
    """
    if keras_app_name == "conv1_conv":
        return "conv1"
    if keras_app_name == "conv1_bn":
        return "bn_conv1"
    match = _APP_BLOCK_LAYER.match(keras_app_name)
    if not match or not 1 <= int(match.group(2)) <= 26:
        return None
    stage, block, index, kind = match.groups()
    letter = chr(ord("a") + int(block) - 1)
    branch = "1" if index == "0" else "2" + "abc"[int(index) - 1]
    return "{}{}{}_branch{}".format("res" if kind == "conv" else "bn", stage, letter, branch)


def _stage4_architecture(count):
    return _STAGE4_BLOCKS.get(count, "a ResNet with {} stage-4 blocks".format(count))


def _check_architecture(file_names, model_names, architecture, filepath):
    """Raise ValueError when the file, the model and ``architecture`` disagree
    on the ResNet depth (the number of stage-4 blocks)."""
    file_blocks = {int(m.group(1)) for m in map(re.compile(r"^conv4_block(\d+)_").match,
                                                file_names) if m}
    model_blocks = {m.group(1) for m in map(re.compile(r"^res4([a-z])_branch2a$").match,
                                            model_names) if m}
    file_arch = _stage4_architecture(max(file_blocks)) if file_blocks else None
    model_arch = _stage4_architecture(len(model_blocks)) if model_blocks else None
    architecture = architecture or model_arch
    if model_arch and model_arch != architecture:
        raise ValueError("architecture={!r} but the model is {} (stage 4 runs to res4{})."
                         .format(architecture, model_arch, max(model_blocks)))
    if file_arch and model_arch and file_arch != model_arch:
        raise ValueError(
            "{} holds {} ImageNet weights (stage 4 runs to conv4_block{}) but the model is {} "
            "(stage 4 runs to res4{}); use get_imagenet_weights({!r}).".format(
                filepath, file_arch, max(file_blocks), model_arch, max(model_blocks),
                model_arch))
    if architecture and file_arch and file_arch != architecture:
        raise ValueError("architecture={!r} but {} holds {} ImageNet weights.".format(
            architecture, filepath, file_arch))


def load_imagenet_weights(keras_model, filepath, architecture=None, exclude=None,
                          skip_mismatch=False):
    """Initialise the ResNet backbone of ``keras_model`` from a Keras
    Applications ImageNet weights file (see ``get_imagenet_weights``).

    Reads the file's layer groups, renames them with ``imagenet_layer_name``
    and assigns each to the model layer of that name (top level or inside a
    nested model). FPN, RPN and head layers stay as they are. ``exclude``
    names model layers to leave alone (e.g. ``conv1`` for images without 3
    channels). ``architecture`` ("resnet50"/"resnet101") is checked against
    the model and the file; None takes the model's. ``skip_mismatch`` as in
    ``mrcnn.weights.load_weights``. Note the Keras Applications BN epsilon
    is 1.001e-5, ours 1e-3.

    Returns: LoadReport (``missing`` lists backbone layers the file lacked).
    Raises ValueError when file, model and ``architecture`` are different
    ResNets or no layer of the file fits the model, WeightsMismatchError for
    shape mismatches (nothing is assigned then).
    """
    if architecture is not None:
        _check_known(architecture)
    filepath = os.fspath(filepath)
    exclude = name_set(exclude)
    layers_by_name = {}
    for layer in iter_layers(keras_model):
        layers_by_name.setdefault(layer.name, layer)
    report = LoadReport(filepath)
    with open_weights_file(filepath) as f:
        root = weights_root(f, filepath)
        file_groups = layer_groups(root, filepath)
        _check_architecture([name for name, _ in file_groups], layers_by_name, architecture,
                            filepath)
        pairs = []
        for group, weight_names in file_groups:
            layer = layers_by_name.get(imagenet_layer_name(group) or "")
            if layer is not None and layer.weights:
                if layer.name in exclude:
                    report.skipped.append(layer.name)
                else:
                    pairs.append((layer, group, weight_names))
        plan, mismatches = plan_assignments(root, pairs, filepath)
    if not plan and not mismatches and not report.skipped:
        raise ValueError("No layer in {} matches a layer of the model: it is not a Keras "
                         "Applications ResNet weights file for this backbone.".format(filepath))
    hint = ("The file does not fit this backbone (a different architecture, or "
            "IMAGE_CHANNEL_COUNT != 3 for conv1: pass exclude={!r}).".format(
                [name for name, _ in mismatches]))
    apply_assignments(plan, mismatches, skip_mismatch, filepath, report, hint)
    backbone = re.compile(r"^(conv1|bn_conv1|(res|bn)[2-5][a-z]_branch(1|2[abc]))$")
    done = set(report.loaded) | set(report.skipped)
    report.missing = [name for name, layer in layers_by_name.items()
                      if backbone.match(name) and layer.weights and name not in done]
    logger.info("Loaded ImageNet weights into %d layers from %s", len(report.loaded), filepath)
    return report


############################################################
#  Starting weights by keyword
############################################################

# What ``resolve_weights`` accepts besides a path.
WEIGHTS_KEYWORDS = ("coco", "last", "imagenet", "none")

# NUM_CLASSES of the released COCO weights (80 classes + background).
COCO_NUM_CLASSES = 81

# ``exclude`` list for loading the COCO weights into a model with another
# class count: the layers whose shapes depend on NUM_CLASSES.
COCO_CLASS_SPECIFIC_LAYERS = list(CLASS_SPECIFIC_LAYERS)


def check_weights_spec(spec):
    """Raise FileNotFoundError unless ``spec`` is one of WEIGHTS_KEYWORDS
    (any case) or an existing file. Downloads and looks up nothing, so a
    command line can check its argument before loading anything."""
    spec = os.fspath(spec)
    if spec.lower() not in WEIGHTS_KEYWORDS and not os.path.isfile(spec):
        raise FileNotFoundError("Weights file {} not found; give coco, last, imagenet, none "
                                "or the path of a .h5 weights file".format(spec))


def resolve_weights(spec, config, model_dir, coco_path=None):
    """The weights a ``--weights``/``--model`` argument names, as
    ``(path or None, exclude list or None)`` for
    ``model.load_weights(path, by_name=True, exclude=exclude)``.

    spec: "coco" (any case): the released COCO weights at ``coco_path``
        (default ``./mask_rcnn_coco.h5``), downloaded there with
        ``utils.download_trained_weights`` when missing; unless
        ``config.NUM_CLASSES`` is COCO's 81, exclude is
        the mode's CLASS_SPECIFIC_LAYERS (Mask R-CNN's: COCO_CLASS_SPECIFIC_LAYERS;
        other modes have no released COCO weights: ValueError). "last": the
        newest complete checkpoint of ``config.NAME`` under ``model_dir``
        written by the mode ``config.MODEL`` (its CHECKPOINT_PREFIX). "imagenet": the Keras
        Applications ImageNet weights of ``config.BACKBONE`` (downloaded
        once, see get_imagenet_weights). "none": ``(None, None)``, random
        initialisation. Anything else: the path of a weights file.

    Raises FileNotFoundError for a missing file or no checkpoint to continue
    from (naming what is missing and what to give instead),
    ``utils.WeightsDownloadError`` when a download fails (saying what to
    fetch from where and where to put it), ValueError for a backbone
    without ImageNet weights.
    """
    check_weights_spec(spec)
    spec = os.fspath(spec)
    key = spec.lower()
    if key == "none":
        return None, None
    mode = _mode_class(config)
    if key == "coco":
        if not getattr(mode, "HAS_COCO_WEIGHTS", True):
            raise ValueError("There are no released COCO weights for MODEL={!r} (only for "
                             "mask_rcnn); give imagenet, last, none or a weights file".format(
                                 getattr(config, "MODEL", None)))
        path = os.path.abspath(coco_path or os.path.join(os.getcwd(), "mask_rcnn_coco.h5"))
        if not os.path.exists(path):
            utils.download_trained_weights(path)
        specific = getattr(mode, "CLASS_SPECIFIC_LAYERS", COCO_CLASS_SPECIFIC_LAYERS)
        exclude = None if config.NUM_CLASSES == COCO_NUM_CLASSES else list(specific)
        return path, exclude
    if key == "last":
        try:
            prefix = getattr(mode, "CHECKPOINT_PREFIX", "mask_rcnn")
            return find_last_checkpoint(model_dir, config.NAME, prefix), None
        except FileNotFoundError as e:
            hint = _other_mode_checkpoint(model_dir, config.NAME, prefix)
            raise FileNotFoundError(
                "{}: no checkpoint of {!r} to continue from (looked for {}_*.h5 files of "
                "MODEL={!r}); {}".format(
                    e.strerror or e, config.NAME, prefix, getattr(config, "MODEL", "mask_rcnn"),
                    hint or "train first or give coco, imagenet, none or a weights file")) from e
    if key == "imagenet":
        return get_imagenet_weights(config.BACKBONE), None
    return spec, None


def _other_mode_checkpoint(model_dir, config_name, prefix):
    """"the newest checkpoint there is MODEL=...'s (path): ..." when
    ``model_dir`` holds checkpoints of ``config_name`` written by another
    registered mode (the usual slip: evaluating a YOLACT run without
    ``--arch yolact``); None otherwise."""
    from mrcnn import modes
    found = []
    for name in modes.available_modes():
        try:
            other = getattr(modes.mode_class(name), "CHECKPOINT_PREFIX", None)
        except (ImportError, modes.UnknownModeError):
            continue
        if not other or other == prefix:
            continue
        try:
            found.append((find_last_checkpoint(model_dir, config_name, other), name))
        except FileNotFoundError:
            continue
    if not found:
        return None
    path, name = max(found)
    return ("the newest checkpoint there is of MODEL={!r} ({}): set MODEL = {!r} (--arch {} on "
            "the samples) to use it".format(name, path, name, name))


def _mode_class(config):
    """The ModelBase subclass of config.MODEL, or None when it has none
    (checked elsewhere: Config.validate)."""
    from mrcnn import modes
    try:
        return modes.mode_class(getattr(config, "MODEL", "mask_rcnn"))
    except (modes.UnknownModeError, ImportError, TypeError):
        return None


def load_starting_weights(model, path, exclude=None, verbose=1):
    """Load what resolve_weights returned into ``model`` (anything with
    ``load_weights(path, by_name=True, exclude=...)``, e.g. a MaskRCNN);
    a None path loads nothing (random initialisation). Returns path."""
    if path is None:
        if verbose:
            print("Starting from random weights")
        return None
    if verbose:
        print("Loading weights ", path)
    model.load_weights(path, by_name=True, exclude=exclude)
    return path
