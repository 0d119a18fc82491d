"""
Mask R-CNN
Weight files: the legacy Keras 2 HDF5 layout and ImageNet initialisation.

The released ``mask_rcnn_coco.h5`` is a Keras 2 ``model.save_weights("x.h5")``
file. Its layout, which ``save_weights`` writes and ``load_weights`` reads:

* root attributes ``layer_names`` (bytes, every top-level layer in model
  order, weightless ones included), ``backend`` and ``keras_version``;
  a full-model Keras 2 file keeps all of this under a ``model_weights`` group;
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

from mrcnn.utils import WeightsDownloadError  # noqa: F401  (raised here, re-exported)

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

    def __init__(self, filepath, mismatches, hint=None):
        self.filepath = filepath
        self.mismatches = mismatches
        self.layer_names = [name for name, _ in mismatches]
        lines = ["Weights in {} do not fit {} layer(s) of the model:".format(
            filepath, len(mismatches))]
        for name, problems in mismatches:
            lines.append("  {}: {}".format(name, "; ".join(problems)))
        if hint is None:
            hint = ("This usually means a different NUM_CLASSES. Load everything else with\n"
                    "  load_weights({!r}, by_name=True, exclude={!r})\n"
                    "or pass skip_mismatch=True to skip these layers with a warning."
                    ).format(filepath, self.layer_names)
        lines.append(hint)
        super().__init__("\n".join(lines))


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

    def walk(model):
        for inner in model.layers:
            if isinstance(inner, keras.Model):
                walk(inner)
            else:
                for var in inner.weights:
                    owner.setdefault(id(var), inner.name)

    if isinstance(layer, keras.Model):
        walk(layer)
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


def save_weights(keras_model, filepath):
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


def _open_weights_file(filepath):
    """Open ``filepath`` read-only; FileNotFoundError or WeightsFileError."""
    if not os.path.exists(filepath):
        raise FileNotFoundError(errno.ENOENT, "Weights file not found: {}".format(filepath),
                                filepath)
    try:
        return h5py.File(filepath, "r")
    except OSError as e:
        raise _unreadable(filepath, e) from e


def _weights_root(f, filepath):
    """The group holding ``layer_names``: the file root of a weights file or
    ``model_weights`` of a Keras 2 full-model file."""
    if _read_names_attr(f, "layer_names") is not None:
        return f
    if "model_weights" in f and _read_names_attr(f["model_weights"], "layer_names") is not None:
        return f["model_weights"]
    if "layers" in f or "vars" in f:
        raise WeightsFileError(
            "{} is a Keras 3 native weights file, not the legacy Keras 2 layout; load it "
            "with keras_model.load_weights({!r}).".format(filepath, filepath))
    raise WeightsFileError("{} is an HDF5 file but holds no Keras weights (no 'layer_names' "
                           "attribute at its root or under 'model_weights').".format(filepath))


def _file_layers(root, filepath):
    """``[(layer_name, [weight_name, ...])]`` in the file's layer order."""
    try:
        return [(name, _read_names_attr(root[name], "weight_names") or [])
                for name in _read_names_attr(root, "layer_names")]
    except (KeyError, OSError, RuntimeError) as e:
        raise _unreadable(filepath, e) from e


def _read_group(root, layer_name, weight_names, filepath):
    """The arrays of one layer group, in ``weight_names`` order."""
    try:
        group = root[layer_name]
        return [np.asarray(group[name][()]) for name in weight_names]
    except (KeyError, OSError, RuntimeError) as e:
        raise _unreadable(filepath, "layer {!r}: {}".format(layer_name, e)) from e


def _match_layer(layer, file_names, values):
    """Pair a layer's variables with the file's arrays for it.

    Pairs by name when the file's weight names (without ``:0``) are exactly the
    layer's (nested models: ``rpn_conv_shared/kernel``), otherwise by order.
    Returns ``(assignments, problems)``: ``[(variable, array)]`` and a list of
    messages, empty when every shape fits.
    """
    named = _named_weights(layer)
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


def _plan(root, pairs, filepath):
    """Read and check ``[(layer, group, weight_names)]``; returns
    ``(plan, mismatches)``: ``[(layer_name, assignments)]`` for layers that
    fit and ``[(layer_name, problems)]`` for those that do not."""
    plan, mismatches = [], []
    for layer, group, weight_names in pairs:
        values = _read_group(root, group, weight_names, filepath)
        assignments, problems = _match_layer(layer, weight_names, values)
        if problems:
            mismatches.append((layer.name, problems))
        else:
            plan.append((layer.name, assignments))
    return plan, mismatches


def _name_set(names):
    return set([names] if isinstance(names, str) else (names or ()))


def _apply(plan, mismatches, skip_mismatch, filepath, report, hint=None):
    """Raise for mismatches (nothing assigned) or skip them, then assign."""
    if mismatches and not skip_mismatch:
        raise WeightsMismatchError(filepath, mismatches, hint)
    for name, problems in mismatches:
        logger.warning("Skipping layer %s: %s", name, "; ".join(problems))
        report.mismatched.append(name)
    for name, assignments in plan:
        for var, value in assignments:
            var.assign(value.astype(var.dtype, copy=False))
        report.loaded.append(name)


def load_weights(keras_model, filepath, by_name=False, exclude=None, skip_mismatch=False):
    """Load a legacy Keras 2 HDF5 weights file into ``keras_model``.

    Reads files written by ``save_weights``, by Keras 2 ``save_weights`` (the
    released ``mask_rcnn_coco.h5``) or Keras 2 full-model ``.h5`` files.

    by_name: False pairs the model's top-level layers that have weights with
        the file's layer groups that have weights, in order (counts must
        match). True loads each layer from the group of the same name; layers
        the file lacks stay as they are (``report.missing``, logged at info).
    exclude: top-level layer names to leave untouched (e.g. the class-specific
        heads when NUM_CLASSES differs).
    skip_mismatch: skip layers whose shapes differ, with a warning, instead of
        raising WeightsMismatchError.

    Inside a layer group, weights are assigned in ``weight_names`` order to
    ``layer.weights`` (by inner-layer name for nested models when the names
    match). Every layer is checked before anything is assigned, so an error
    leaves the model unchanged.

    A Keras Applications ResNet file (``conv1_conv``, ``conv2_block1_1_conv``,
    ...) loaded by_name goes through ``load_imagenet_weights``, so the
    reference's ``load_weights(get_imagenet_weights(), by_name=True)`` works.

    Returns: LoadReport. Raises FileNotFoundError, WeightsFileError (not a
    readable weights file), WeightsMismatchError (shapes differ) or ValueError
    (by_name=False with different layer counts).
    """
    filepath = os.fspath(filepath)
    exclude = _name_set(exclude)
    model_layers = [layer for layer in keras_model.layers if layer.weights]
    if not model_layers:
        raise ValueError("The model has no weights yet; build it before loading weights.")
    report = LoadReport(filepath)
    with _open_weights_file(filepath) as f:
        root = _weights_root(f, filepath)
        file_groups = [(name, w) for name, w in _file_layers(root, filepath) if w]
        weight_names = dict(file_groups)
        # The reference loaded ImageNet weights with load_weights(by_name=True);
        # today's Keras Applications files use other layer names, so map them.
        keras_apps = (by_name and "conv1_conv" in weight_names
                      and not any(layer.name == "conv1_conv" for layer in model_layers))
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
        plan, mismatches = _plan(root, [(layer, group, weight_names[group])
                                        for layer, group in pairs], filepath)
    if keras_apps:
        logger.info("%s holds Keras Applications ResNet weights; mapping its layer names",
                    filepath)
        return load_imagenet_weights(keras_model, filepath, exclude=exclude,
                                     skip_mismatch=skip_mismatch)
    _apply(plan, mismatches, skip_mismatch, filepath, report)
    if report.missing:
        logger.info("%d layers with weights not in %s, left as they were: %s",
                    len(report.missing), filepath, ", ".join(report.missing))
    return report


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
    ``load_weights``. Note the Keras Applications BN epsilon is 1.001e-5,
    ours 1e-3.

    Returns: LoadReport (``missing`` lists backbone layers the file lacked).
    Raises ValueError when file, model and ``architecture`` are different
    ResNets or no layer of the file fits the model, WeightsMismatchError for
    shape mismatches (nothing is assigned then).
    """
    if architecture is not None:
        _check_known(architecture)
    filepath = os.fspath(filepath)
    exclude = _name_set(exclude)
    layers_by_name = {}

    def collect(model):
        for layer in model.layers:
            layers_by_name.setdefault(layer.name, layer)
            if isinstance(layer, keras.Model):
                collect(layer)

    collect(keras_model)
    report = LoadReport(filepath)
    with _open_weights_file(filepath) as f:
        root = _weights_root(f, filepath)
        file_groups = [(name, w) for name, w in _file_layers(root, filepath) if w]
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
        plan, mismatches = _plan(root, pairs, filepath)
    if not plan and not mismatches and not report.skipped:
        raise ValueError("No layer in {} matches a layer of the model: it is not a Keras "
                         "Applications ResNet weights file for this backbone.".format(filepath))
    hint = ("The file does not fit this backbone (a different architecture, or "
            "IMAGE_CHANNEL_COUNT != 3 for conv1: pass exclude={!r}).".format(
                [name for name, _ in mismatches]))
    _apply(plan, mismatches, skip_mismatch, filepath, report, hint)
    backbone = re.compile(r"^(conv1|bn_conv1|(res|bn)[2-5][a-z]_branch(1|2[abc]))$")
    done = set(report.loaded) | set(report.skipped)
    report.missing = [name for name, layer in layers_by_name.items()
                      if backbone.match(name) and layer.weights and name not in done]
    logger.info("Loaded ImageNet weights into %d layers from %s", len(report.loaded), filepath)
    return report
