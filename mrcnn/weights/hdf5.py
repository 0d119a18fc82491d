"""
The legacy Keras 2 HDF5 weights layout, which the checkpoints use and
``save_weights`` writes, and what every weights file is read into before it
is checked and assigned (``plan_assignments``, ``apply_assignments``: all
values checked before any is assigned) with the errors a load can raise.

The released ``mask_rcnn_coco.h5`` is a Keras 2 ``model.save_weights("x.h5")``
file. Its layout:

* root attributes ``layer_names`` (bytes, every top-level layer in model
  order, weightless ones included), ``backend`` and ``keras_version``;
  a full-model Keras 2 file keeps all of this under a ``model_weights`` group;
  our checkpoints add ``mrcnn_mode``, the model mode that wrote them;
* one group per top-level layer with attribute ``weight_names``
  (``b"conv1/kernel:0"``, ...) and one dataset per weight at the path given by
  its name under the layer group (``f["conv1"]["conv1"]["kernel:0"]``);
* a nested model used as a layer (``rpn_model``) is one group whose weights
  are named after the inner layers (``rpn_conv_shared/kernel:0``, ...).

Attribute arrays larger than HDF5's 64 KiB object header are split into
``layer_names0``, ``layer_names1``, ... exactly as Keras 2 did.

Everything here works on any ``keras.Model`` by layer names; nothing depends
on how the model was built.
"""

import dataclasses
import errno
import logging
import os
import re
import uuid

import h5py
import keras
import numpy as np

from mrcnn.nested import layers_with_weights

logger = logging.getLogger(__name__)

# HDF5 object headers hold at most 64 KiB; Keras 2 split longer attributes.
_HDF5_HEADER_LIMIT = 64512


class WeightsFileError(ValueError):
    """The file exists but is not a readable HDF5 weights file."""


class WeightsMismatchError(ValueError):
    """Weights in the file do not fit the model's layers.

    ``mismatches``: list of ``(layer_name, [problem, ...])``;
    ``layer_names``: the mismatched layer names, ready for ``exclude=``.
    """

    def __init__(self, filepath, mismatches, hint=None, class_specific=None):
        self.filepath = filepath
        self.mismatches = mismatches
        self.layer_names = [name for name, _ in mismatches]
        lines = ["Weights in {} do not fit {} layer(s) of the model:".format(
            filepath, len(mismatches))]
        for name, problems in mismatches:
            lines.append("  {}: {}".format(name, "; ".join(problems)))
        if hint is None:
            specific = CLASS_SPECIFIC_LAYERS if class_specific is None else class_specific
            if all(name in specific for name in self.layer_names):
                cause = "This usually means a different NUM_CLASSES."
            else:
                cause = ("The file was trained with another configuration (for example "
                         "IMAGE_CHANNEL_COUNT for conv1, or head sizes such as "
                         "TOP_DOWN_PYRAMID_SIZE or FPN_CLASSIF_FC_LAYERS_SIZE).")
            hint = ("{} Load everything else with\n"
                    "  load_weights({!r}, by_name=True, exclude={!r})\n"
                    "or pass skip_mismatch=True to skip these layers with a warning."
                    ).format(cause, filepath, self.layer_names)
        lines.append(hint)
        super().__init__("\n".join(lines))


class BackboneMismatchError(WeightsMismatchError):
    """The file holds another ResNet backbone than the model's (a different
    depth, or basic blocks against bottleneck blocks). Nothing is loaded.

    ``file_backbone`` and ``model_backbone``: their descriptions
    ("resnet50", "resnet101", ...).
    """

    def __init__(self, filepath, file_backbone, model_backbone):
        self.filepath = filepath
        self.file_backbone = file_backbone
        self.model_backbone = model_backbone
        self.mismatches = []
        self.layer_names = []
        ValueError.__init__(self, (
            "{} holds the weights of a {} backbone but the model's backbone is {}, so the "
            "backbone layers do not correspond. Set BACKBONE to match the file (or use a "
            "file trained with this backbone); pass skip_mismatch=True only to load every "
            "layer whose name and shapes happen to fit anyway.").format(
                filepath, file_backbone, model_backbone))


class WeightsModeError(ValueError):
    """The file is a checkpoint of another model mode (``file_mode``) than
    the model's (``model_mode``). Nothing is loaded."""

    def __init__(self, filepath, file_mode, model_mode):
        self.filepath, self.file_mode, self.model_mode = filepath, file_mode, model_mode
        super().__init__(
            "{} is a checkpoint of the {!r} model mode, but this model is {!r}: their layers "
            "do not correspond. Build the model with MODEL = {!r} (modellib.create_model) to "
            "use it, or load a {!r} checkpoint.".format(filepath, file_mode, model_mode,
                                                        file_mode, model_mode))


# Root attribute of the checkpoints: the model mode that wrote them.
MODE_ATTRIBUTE = "mrcnn_mode"

# Layers whose shapes depend on NUM_CLASSES in Mask R-CNN (a mode declares
# its own as ModelBase.CLASS_SPECIFIC_LAYERS).
CLASS_SPECIFIC_LAYERS = ("mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask")


@dataclasses.dataclass
class LoadReport:
    """What a load did. All entries are top-level model layer names.

    loaded: layers that received weights from the file.
    skipped: layers left alone because the caller excluded them.
    missing: layers with weights that the file has no weights for (unchanged).
    mismatched: layers skipped because shapes differ (skip_mismatch=True).
    """
    filepath: str
    loaded: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    missing: list = dataclasses.field(default_factory=list)
    mismatched: list = dataclasses.field(default_factory=list)

    def as_dict(self):
        return dataclasses.asdict(self)

    def __repr__(self):
        """One line with the counts (a notebook cell ending in
        load_weights() shows this, not hundreds of layer names); the lists
        stay available as attributes."""
        def names(items):
            shown = ", ".join(items[:4]) + (", ..." if len(items) > 4 else "")
            return "{} [{}]".format(len(items), shown) if items else "0"
        return "LoadReport({!r}: loaded {} layers, excluded {}, missing {}, mismatched {})".format(
            os.path.basename(str(self.filepath)), len(self.loaded), names(self.skipped),
            names(self.missing), names(self.mismatched))


############################################################
#  Names and HDF5 attributes
############################################################

def _named_weights(layer):
    """``[(name, variable)]`` in ``layer.weights`` order, names without ``:0``.

    A plain layer's weights are ``"{layer}/{var}"`` (``conv1/kernel``). A nested
    model's are named after the inner layer that owns them
    (``rpn_conv_shared/kernel``), as Keras 2 wrote them. Duplicates (a wrapper
    holding two sublayers with a ``kernel`` each) get a ``_1``, ``_2`` suffix so
    every name is a distinct HDF5 dataset.
    """
    owner = {}
    if isinstance(layer, keras.Model):
        for inner in layers_with_weights(layer):
            for var in inner.weights:
                owner.setdefault(id(var), inner.name)
    named, seen = [], set()
    for var in layer.weights:
        name = "{}/{}".format(owner.get(id(var), layer.name), var.name)
        base, k = name, 0
        while name in seen:
            k += 1
            name = "{}_{}".format(base, k)
        seen.add(name)
        named.append((name, var))
    return named


def _strip_index(weight_name):
    """``"conv1/kernel:0"`` -> ``"conv1/kernel"``."""
    return re.sub(r":\d+$", "", weight_name)


def _write_names_attr(group, key, names):
    """Write a list of str as a bytes array attribute, split into ``key0``,
    ``key1``, ... when it would overflow the HDF5 object header."""
    data = np.array([n.encode("utf8") for n in names], dtype=bytes)
    chunks = 1
    while data.nbytes / chunks > _HDF5_HEADER_LIMIT:
        chunks += 1
    if chunks == 1:
        group.attrs[key] = data
    else:
        for i, part in enumerate(np.array_split(data, chunks)):
            group.attrs["{}{}".format(key, i)] = part


def _read_names_attr(group, key):
    """Read a names attribute written by Keras 2 or ``_write_names_attr``
    (whole or chunked) as a list of str; None when absent."""
    if key in group.attrs:
        raw = [np.atleast_1d(group.attrs[key])]
    elif key + "0" in group.attrs:
        raw, i = [], 0
        while "{}{}".format(key, i) in group.attrs:
            raw.append(np.atleast_1d(group.attrs["{}{}".format(key, i)]))
            i += 1
    else:
        return None
    return [x.decode("utf8") if isinstance(x, bytes) else str(x)
            for part in raw for x in part]


############################################################
#  Saving
############################################################

def _write_layer_group(f, layer):
    """Write one top-level layer as a group of ``f``: attribute
    ``weight_names`` plus one dataset per weight."""
    group = f.create_group(layer.name)
    named = _named_weights(layer)
    _write_names_attr(group, "weight_names", [n + ":0" for n, _ in named])
    for name, var in named:
        group.create_dataset(name + ":0", data=np.asarray(var.numpy()))


def save_weights(keras_model, filepath, mode=None):
    """Write ``keras_model``'s weights to ``filepath`` in the legacy Keras 2
    HDF5 layout (see the module docstring), readable by ``load_weights`` here
    and by Keras 2 ``model.load_weights``.

    Writes: root attrs ``layer_names`` (all of ``keras_model.layers``),
    ``backend`` and ``keras_version``; one group per layer. The file is written
    to a temporary name in the same directory and moved onto ``filepath`` only
    when complete, so a failure leaves any previous file untouched.
    Returns the absolute path written.
    """
    target = os.path.abspath(os.fspath(filepath))
    folder, base = os.path.split(target)
    tmp = os.path.join(folder, ".{}.{}.tmp".format(base, uuid.uuid4().hex[:12]))
    try:
        with h5py.File(tmp, "w") as f:
            _write_names_attr(f, "layer_names", [layer.name for layer in keras_model.layers])
            f.attrs["backend"] = b"tensorflow"
            f.attrs["keras_version"] = str(keras.__version__).encode("utf8")
            if mode:
                f.attrs[MODE_ATTRIBUTE] = str(mode).encode("utf8")
            for layer in keras_model.layers:
                _write_layer_group(f, layer)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return target


############################################################
#  Reading
############################################################

def _unreadable(filepath, detail):
    return WeightsFileError(
        "{} is not a readable HDF5 weights file ({}). If it was downloaded, the "
        "download may be partial: delete it and fetch it again.".format(filepath, detail))


def open_weights_file(filepath):
    """Open ``filepath`` read-only; FileNotFoundError or WeightsFileError."""
    if not os.path.exists(filepath):
        raise FileNotFoundError(
            errno.ENOENT, "Weights file not found: {} (check the path; model.find_last() "
            "gives the newest checkpoint, utils.download_trained_weights() fetches "
            "mask_rcnn_coco.h5)".format(filepath), filepath)
    try:
        return h5py.File(filepath, "r")
    except OSError as e:
        raise _unreadable(filepath, e) from e


def is_native(f):
    """Whether the open HDF5 file is in Keras 3's native layout."""
    return ("layers" in f or "vars" in f) and _read_names_attr(f, "layer_names") is None


def weights_root(f, filepath):
    """The group holding ``layer_names``: the file root of a weights file or
    ``model_weights`` of a Keras 2 full-model file."""
    if _read_names_attr(f, "layer_names") is not None:
        return f
    if "model_weights" in f and _read_names_attr(f["model_weights"], "layer_names") is not None:
        return f["model_weights"]
    if is_native(f):
        raise WeightsFileError(
            "{} is a Keras 3 native weights file, not the legacy Keras 2 layout this "
            "reader needs; load it with mrcnn.weights.load_weights.".format(filepath))
    raise WeightsFileError("{} is an HDF5 file but holds no Keras weights (no 'layer_names' "
                           "attribute at its root or under 'model_weights').".format(filepath))


def layer_groups(root, filepath):
    """``[(layer_name, [weight_name, ...])]`` for the file's layers that
    have weights, in the file's layer order."""
    try:
        groups = [(name, _read_names_attr(root[name], "weight_names") or [])
                  for name in _read_names_attr(root, "layer_names")]
    except (KeyError, OSError, RuntimeError) as e:
        raise _unreadable(filepath, e) from e
    return [(name, weight_names) for name, weight_names in groups if weight_names]


def _read_group(root, layer_name, weight_names, filepath):
    """The arrays of one layer group, in ``weight_names`` order."""
    try:
        group = root[layer_name]
        arrays = [np.asarray(group[name][()]) for name in weight_names]
    except (KeyError, OSError, RuntimeError) as e:
        raise _unreadable(filepath, "layer {!r}: {}".format(layer_name, e)) from e
    for name, array in zip(weight_names, arrays):
        if array.dtype.kind not in "biuf":
            raise _unreadable(filepath, "layer {!r}: weight {!r} holds {} values, not "
                                        "numbers".format(layer_name, name, array.dtype))
    return arrays


def _match_layer(layer, file_names, values, named=None):
    """Pair a layer's variables with the file's arrays for it.

    Pairs by name when the file's weight names (without ``:0``) are exactly the
    layer's ``named`` (default ``_named_weights``; nested models:
    ``rpn_conv_shared/kernel``; Keras 3 files: ``layer/vars/0``), otherwise by
    order. Returns ``(assignments, problems)``: ``[(variable, array)]`` and a
    list of messages, empty when every shape fits.
    """
    named = _named_weights(layer) if named is None else named
    if len(values) != len(named):
        return [], ["the file has {} weights ({}), the model layer has {}".format(
            len(values), ", ".join(file_names), len(named))]
    file_keys = [_strip_index(n) for n in file_names]
    model_keys = [n for n, _ in named]
    if sorted(file_keys) == sorted(model_keys):
        index = {key: i for i, key in enumerate(file_keys)}
        order = [index[key] for key in model_keys]
    else:
        order = list(range(len(values)))
    assignments, problems = [], []
    for (_, var), i in zip(named, order):
        if tuple(var.shape) != values[i].shape:
            problems.append("{} has shape {} in the file, {} in the model".format(
                file_names[i], values[i].shape, tuple(var.shape)))
        else:
            assignments.append((var, values[i]))
    return assignments, problems


def _pair_by_order(model_layers, file_groups, exclude, filepath, report):
    """by_name=False: pair layers with weights and file groups with weights in
    order. Excluded layers take part in the pairing but are not assigned; when
    the counts only agree without them (a file saved without those layers), they
    are left out of the pairing, as the reference did."""
    if len(model_layers) != len(file_groups) and exclude:
        kept = [layer for layer in model_layers if layer.name not in exclude]
        if len(kept) == len(file_groups):
            report.skipped.extend(lay.name for lay in model_layers if lay.name in exclude)
            return list(zip(kept, (name for name, _ in file_groups)))
    if len(model_layers) != len(file_groups):
        raise ValueError(
            "{} holds {} layers with weights but the model has {} layers with weights, so "
            "they cannot be paired in order. Use by_name=True to load the layers whose "
            "names match.".format(filepath, len(file_groups), len(model_layers)))
    pairs = []
    for layer, (name, _) in zip(model_layers, file_groups):
        if layer.name in exclude:
            report.skipped.append(layer.name)
        else:
            pairs.append((layer, name))
    return pairs


def plan_assignments(root, pairs, filepath, named_weights=_named_weights):
    """Read and check ``[(layer, group, weight_names)]``; returns
    ``(plan, mismatches)``: ``[(layer_name, assignments)]`` for layers that
    fit and ``[(layer_name, problems)]`` for those that do not.
    ``named_weights(layer)``: the layer's ``[(name, variable)]`` in the file's
    naming (``_named_weights`` or, for Keras 3 files, ``_native_weights``)."""
    plan, mismatches = [], []
    for layer, group, weight_names in pairs:
        values = _read_group(root, group, weight_names, filepath)
        assignments, problems = _match_layer(layer, weight_names, values,
                                             named_weights(layer))
        if problems:
            mismatches.append((layer.name, problems))
        else:
            plan.append((layer.name, assignments))
    return plan, mismatches


def name_set(names):
    return set([names] if isinstance(names, str) else (names or ()))


def apply_assignments(plan, mismatches, skip_mismatch, filepath, report, hint=None,
                      class_specific=None):
    """Raise for mismatches (nothing assigned) or skip them, then assign.

    Every value is converted to its variable's dtype before the first
    assignment, so a failure leaves all variables as they were."""
    if mismatches and not skip_mismatch:
        raise WeightsMismatchError(filepath, mismatches, hint, class_specific)
    converted = []
    for name, assignments in plan:
        try:
            converted.append((name, [(var, value.astype(var.dtype, copy=False))
                                     for var, value in assignments]))
        except (TypeError, ValueError) as e:
            raise _unreadable(filepath, "layer {!r}: {}".format(name, e)) from e
    for name, problems in mismatches:
        logger.warning("Skipping layer %s: %s", name, "; ".join(problems))
        report.mismatched.append(name)
    for name, assignments in converted:
        for var, value in assignments:
            var.assign(value)
        report.loaded.append(name)
