"""
``load_weights``: any weights file this package can read into any model,
checked before anything is assigned. The legacy HDF5 layout (checkpoints,
the released ``mask_rcnn_coco.h5``) and Keras 3's native layout are read
into the same form (``mrcnn.weights.hdf5``, ``mrcnn.weights.native``); a
Keras Applications ResNet file goes to ``mrcnn.weights.pretrained``.
"""

import logging
import os
import re

from mrcnn.weights.hdf5 import (BackboneMismatchError, LoadReport, WeightsModeError,
                                MODE_ATTRIBUTE, _named_weights, _pair_by_order,
                                apply_assignments, layer_groups, name_set,
                                is_native, open_weights_file, plan_assignments, weights_root)
from mrcnn.weights.native import _native_weights, native_layer_groups
from mrcnn.weights.pretrained import load_imagenet_weights

logger = logging.getLogger(__name__)


_STAGE4_BLOCK = re.compile(r"^res4([a-z])_branch2a$")


_BOTTLENECK_LAYER = re.compile(r"^res[2-5][a-z]_branch2c$")


def _resnet_backbone(layer_names):
    """"resnet50", "resnet101", "resnet18", "resnet34" (or a description of
    another ResNet) from reference layer names; None without ResNet stage-4
    layers (a custom backbone, or a file without a backbone)."""
    from mrcnn.backbone import BASIC_BLOCK_RESNETS, RESNET_BLOCKS

    blocks = sum(1 for name in layer_names if _STAGE4_BLOCK.match(name))
    if not blocks:
        return None
    bottleneck = any(_BOTTLENECK_LAYER.match(name) for name in layer_names)
    for architecture, counts in RESNET_BLOCKS.items():
        if counts[2] == blocks and (architecture not in BASIC_BLOCK_RESNETS) == bottleneck:
            return architecture
    return "ResNet with {} stage-4 {} blocks".format(
        blocks, "bottleneck" if bottleneck else "basic")


def load_weights(keras_model, filepath, by_name=False, exclude=None, skip_mismatch=False,
                 mode=None, class_specific=None):
    """Load an HDF5 weights file, in either layout, into ``keras_model``.

    Reads files written by ``save_weights``, by Keras 2 ``save_weights`` (the
    released ``mask_rcnn_coco.h5``), Keras 2 full-model ``.h5`` files and Keras 3
    ``save_weights("x.weights.h5")`` files (the native layout, see the module
    docstring; its layer order is Keras 3's: the n-th layer of each class).

    by_name: False pairs the model's top-level layers that have weights with
        the file's layer groups that have weights, in order (counts must
        match). True loads each layer from the group of the same name; layers
        the file lacks stay as they are (``report.missing``, logged at info).
    exclude: top-level layer names to leave untouched (e.g. the class-specific
        heads when NUM_CLASSES differs).
    skip_mismatch: skip layers whose shapes differ, with a warning, instead of
        raising WeightsMismatchError (and load despite a BackboneMismatchError,
        with a warning).

    Inside a layer group, weights are assigned in ``weight_names`` order to
    ``layer.weights`` (by inner-layer name for nested models when the names
    match; by dataset path in a Keras 3 file). Every layer is checked before
    anything is assigned, so an error leaves the model unchanged.

    A Keras Applications ResNet file (``conv1_conv``, ``conv2_block1_1_conv``,
    ...) loaded by_name goes through ``mrcnn.weights.pretrained.load_imagenet_weights``, so the
    reference's ``load_weights(get_imagenet_weights(), by_name=True)`` works.

    Returns: LoadReport. Raises FileNotFoundError, WeightsFileError (not a
    readable weights file: not HDF5, truncated, neither layout, a
    layer group without its datasets or with non-numeric data),
    BackboneMismatchError (the file and the model have different ResNet
    backbones, e.g. resnet50 weights for a resnet101 model, which by name
    would otherwise load partly and silently), WeightsMismatchError (shapes
    differ, e.g. another NUM_CLASSES) or ValueError (by_name=False with
    different layer counts). Every message names the file and what to do.
    All of these are raised before anything is assigned: a failed load
    leaves every weight of the model as it was.

    mode: the model's mode name; a checkpoint written by another mode
        (``save_weights(..., mode=...)`` records it) raises WeightsModeError
        naming both. class_specific: the model's class-specific layers, for
        the "different NUM_CLASSES" hint (default Mask R-CNN's).
    """
    filepath = os.fspath(filepath)
    exclude = name_set(exclude)
    model_layers = [layer for layer in keras_model.layers if layer.weights]
    if not model_layers:
        raise ValueError("The model has no weights yet; build it before loading weights.")
    report = LoadReport(filepath)
    with open_weights_file(filepath) as f:
        native = is_native(f)
        file_mode = None if native else f.attrs.get(MODE_ATTRIBUTE)
        if isinstance(file_mode, bytes):
            file_mode = file_mode.decode("utf8")
        if mode and file_mode and file_mode != mode:
            raise WeightsModeError(filepath, file_mode, mode)
        if native:
            root, file_groups = native_layer_groups(f, keras_model, filepath)
        else:
            root = weights_root(f, filepath)
            file_groups = layer_groups(root, filepath)
        weight_names = dict(file_groups)
        # The reference loaded ImageNet weights with load_weights(by_name=True);
        # today's Keras Applications files use other layer names, so map them.
        keras_apps = (by_name and not native and "conv1_conv" in weight_names
                      and not any(layer.name == "conv1_conv" for layer in model_layers))
        if not keras_apps:
            _check_backbone(file_groups, model_layers, skip_mismatch, filepath)
        if keras_apps:
            pairs = []
        elif by_name:
            pairs = []
            for layer in model_layers:
                if layer.name in exclude:
                    report.skipped.append(layer.name)
                elif layer.name in weight_names:
                    pairs.append((layer, layer.name))
                else:
                    report.missing.append(layer.name)
        else:
            pairs = _pair_by_order(model_layers, file_groups, exclude, filepath, report)
        plan, mismatches = plan_assignments(
            root, [(layer, group, weight_names[group]) for layer, group in pairs], filepath,
            _native_weights if native else _named_weights)
    if keras_apps:
        logger.info("%s holds Keras Applications ResNet weights; mapping its layer names",
                    filepath)
        return load_imagenet_weights(keras_model, filepath, exclude=exclude,
                                     skip_mismatch=skip_mismatch)
    apply_assignments(plan, mismatches, skip_mismatch, filepath, report,
                      class_specific=class_specific)
    if report.missing:
        logger.info("%d layers with weights not in %s, left as they were: %s",
                    len(report.missing), filepath, ", ".join(report.missing))
    return report


def _check_backbone(file_groups, model_layers, skip_mismatch, filepath):
    """BackboneMismatchError (a warning with skip_mismatch) when the file's
    and the model's ResNet backbones differ."""
    file_backbone = _resnet_backbone([name for name, _ in file_groups])
    model_backbone = _resnet_backbone([layer.name for layer in model_layers])
    if file_backbone and model_backbone and file_backbone != model_backbone:
        error = BackboneMismatchError(filepath, file_backbone, model_backbone)
        if not skip_mismatch:
            raise error
        logger.warning("%s", error)
