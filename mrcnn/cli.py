"""
Mask R-CNN
What the sample command lines share: the configuration flags, the
configuration saved with a checkpoint, and wall-time budgets.

Every sample (``samples/coco.py``, ``balloon``, ``nucleus``, ``shapes``)
calls ``add_config_arguments(parser)`` and builds its configuration with
``build_config``, so a user can change the model without writing Python::

    python samples/shapes/shapes.py train --backbone resnet50 --image-size 256 --minutes 30
    python samples/coco.py evaluate --annotations val.json --model last

Flags (``add_config_arguments``):

    --config FILE.json    a ``Config.to_json`` file (any subset of its keys)
    --arch NAME           Config.MODEL, the model mode (default: mask_rcnn)
    --backbone NAME       Config.BACKBONE: resnet18, resnet34, resnet50, resnet101
    --image-size N        IMAGE_MIN_DIM = IMAGE_MAX_DIM = N (as the reference's
                          shapes and nucleus configs size their images)
    --images-per-gpu N    IMAGES_PER_GPU
    --set KEY=VALUE       any configuration value (repeatable; VALUE is JSON
                          where it parses as JSON: true, 0.9, [8, 16], else
                          a string), e.g. --set CENTERNET_TWO_STAGE=true
    --learning-rate LR    LEARNING_RATE
    --minutes M           train: wall-time budget (``TrainingBudget``)

Precedence, lowest first (each source overrides the ones before it):

1. the sample's configuration class for the command (e.g. ``CocoConfig``
   to train, ``InferenceConfig`` to evaluate);
2. the ``config.json`` that training wrote beside the checkpoint the
   command loads (a weights path, or what ``last`` resolves to; not the
   ``coco`` / ``imagenet`` downloads): the trained model's architecture and
   data settings (BACKBONE, IMAGE_* sizes and mode, NUM_CLASSES, anchors,
   head sizes, MEAN_PIXEL, MODEL, MIXED_PRECISION, NAME, ...) all come from
   it, except the command's own keys (``keep``): GPU_COUNT (the machine's)
   always and, for inference commands, what the sample's inference
   configuration sets for itself (``command_keys``: coco's evaluation keeps
   GPU_COUNT = 1, IMAGES_PER_GPU = 1 and DETECTION_MIN_CONFIDENCE = 0;
   nucleus detection also its IMAGE_RESIZE_MODE "pad64" and
   RPN_NMS_THRESHOLD). Resumed training (``last`` or a path) takes
   everything but GPU_COUNT from it, so it continues with the architecture
   it was trained with;
3. ``--config FILE.json``: every value in the file;
4. the individual flags (``--arch``, ``--backbone``, ``--image-size``,
   ``--images-per-gpu``, ``--learning-rate``), then ``--set`` in the order
   given, and then the sample's own
   (coco's ``--steps-per-epoch``, the class count of the dataset being
   trained or evaluated): ``extra`` in ``build_config``.

Without any of these the configuration is exactly the sample's class.
The combined configuration is checked with ``Config.validate()``; each
problem is reported against the flag or file that set the value (an
argparse-style error for a flag, the file's path and what to do for a
file; files are only read, never changed).
"""

import argparse
import collections
import json
import os
import re
import time

from mrcnn.config import BACKBONES, DERIVED_ATTRIBUTES, Config, ConfigError

# The keys the machine decides: never taken from a checkpoint's config.json.
MACHINE_KEYS = ("GPU_COUNT",)

# Weights keywords whose file is not a checkpoint of ours (no config.json).
_DOWNLOADED_WEIGHTS = ("coco", "imagenet", "none")

# Individual flags: argparse dest -> (flag, config keys it sets).
_FLAG_KEYS = collections.OrderedDict([
    ("arch", ("--arch", ("MODEL",))),
    ("backbone", ("--backbone", ("BACKBONE",))),
    ("image_size", ("--image-size", ("IMAGE_MIN_DIM", "IMAGE_MAX_DIM"))),
    ("images_per_gpu", ("--images-per-gpu", ("IMAGES_PER_GPU",))),
    ("learning_rate", ("--learning-rate", ("LEARNING_RATE",))),
])

# One layer of the configuration: a label ("--config small.json") and the
# values it set ({"BACKBONE": "resnet50", ...}).
Source = collections.namedtuple("Source", ["label", "values"])


class ConfigSourceError(ConfigError):
    """A configuration file (``--config`` or the ``config.json`` beside a
    checkpoint) cannot be read or holds invalid values. ``path``: the file."""

    def __init__(self, message, path=None):
        super().__init__(message)
        self.path = path


class FlagError(ConfigError):
    """A configuration flag has a value the model does not accept.
    ``flags``: the flags at fault, e.g. ``["--image-size"]``."""

    def __init__(self, message, flags=()):
        super().__init__(message)
        self.flags = list(flags)


############################################################
#  Flags
############################################################

def _positive(kind, convert):
    def parse(text):
        try:
            value = convert(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError("invalid {} value: {!r}".format(kind, text))
        if not value > 0:
            raise argparse.ArgumentTypeError("must be a positive {}, got {}".format(kind, text))
        return value
    parse.__name__ = kind
    return parse


positive_int = _positive("integer", int)
positive_float = _positive("number", float)


def config_assignment(text):
    """``--set KEY=VALUE`` -> (KEY, value): KEY a Config attribute (upper
    case), VALUE parsed as JSON when it is JSON (true, 3, 0.9, [1, 2],
    null) and kept as a string otherwise. argparse reports the errors."""
    import difflib
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(
            "expected KEY=VALUE (e.g. CENTERNET_TWO_STAGE=true), got {!r}".format(text))
    if not (key.isupper() and hasattr(Config, key)) or key in DERIVED_ATTRIBUTES:
        close = difflib.get_close_matches(key.upper(), [k for k in dir(Config) if k.isupper()
                                                        and k not in DERIVED_ATTRIBUTES], 3)
        raise argparse.ArgumentTypeError("{!r} is not a configuration value{}".format(
            key, "; did you mean {}?".format(" or ".join(close)) if close else
            " (see mrcnn/config.py)"))
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    return key, parsed


def add_config_arguments(parser, minutes=None, minutes_help=None):
    """Add ``--config``, ``--arch``, ``--backbone``, ``--image-size``,
    ``--images-per-gpu``, ``--learning-rate``, ``--set`` and ``--minutes`` to
    ``parser`` (an ``argparse.ArgumentParser``), in their own help group.

    Every flag defaults to None, meaning "leave the configuration's value";
    ``minutes`` is the default of ``--minutes`` (None: no budget). Values
    are checked as they are parsed where the rule is simple (positive
    numbers, a known backbone) and by ``build_config`` through
    ``Config.validate()`` otherwise (image sizes, model modes). Returns the
    argument group.
    """
    group = parser.add_argument_group(
        "configuration",
        "Change the sample's configuration. Precedence, lowest first: the sample's "
        "config class < the config.json saved beside the checkpoint that --model/--weights "
        "loads (a path or 'last') < --config FILE.json < these flags. See mrcnn/cli.py.")
    group.add_argument("--config", metavar="FILE.json",
                       help="a Config.to_json file; its values apply over the sample's "
                            "configuration")
    group.add_argument("--arch", metavar="NAME",
                       help="model mode, Config.MODEL (default: mask_rcnn)")
    group.add_argument("--backbone", choices=BACKBONES,
                       help="backbone network, Config.BACKBONE")
    group.add_argument("--image-size", type=positive_int, metavar="N",
                       help="IMAGE_MIN_DIM and IMAGE_MAX_DIM (a multiple of 64)")
    group.add_argument("--images-per-gpu", type=positive_int, metavar="N",
                       help="IMAGES_PER_GPU (the batch size per device)")
    group.add_argument("--learning-rate", type=positive_float, metavar="LR",
                       help="LEARNING_RATE")
    group.add_argument("--set", type=config_assignment, action="append", metavar="KEY=VALUE",
                       dest="set_values",
                       help="set any configuration value, e.g. --set CENTERNET_TWO_STAGE=true "
                            "(repeatable; VALUE is read as JSON where it is JSON)")
    group.add_argument("--minutes", type=positive_float, default=minutes, metavar="M",
                       help=minutes_help or "train: wall-clock budget in minutes, set-up "
                                            "included (default: {})".format(
                                                "none" if minutes is None else minutes))
    return group


def flag_values(args):
    """``[(flag text, {config key: value})]`` of the configuration flags
    given in ``args`` (an argparse Namespace), in a fixed order."""
    given = []
    for dest, (flag, keys) in _FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is not None:
            given.append(("{} {}".format(flag, value), {key: value for key in keys}))
    for key, value in getattr(args, "set_values", None) or []:
        given.append(("--set {}={}".format(key, json.dumps(value)), {key: value}))
    return given


############################################################
#  Configuration files
############################################################

def command_keys(command_class, model_class=None):
    """The keys a command keeps when a checkpoint's config.json is applied:
    MACHINE_KEYS plus the upper-case names that ``command_class`` sets in
    its own body or in a class between it and ``model_class`` (e.g.
    ``command_keys(InferenceConfig, CocoConfig)`` -> GPU_COUNT,
    IMAGES_PER_GPU, DETECTION_MIN_CONFIDENCE)."""
    names = list(MACHINE_KEYS)
    for cls in command_class.__mro__:
        if cls is model_class or cls is Config or cls is object:
            break
        names.extend(n for n in vars(cls) if n.isupper() and not n.startswith("_"))
    return tuple(dict.fromkeys(names))


def checkpoint_config_path(weights_spec, weights_path):
    """The config.json beside ``weights_path`` when the weights are one of
    our checkpoints (``weights_spec`` is "last" or a path, not coco,
    imagenet or none) and the file exists; else None."""
    if not weights_path or str(weights_spec).lower() in _DOWNLOADED_WEIGHTS:
        return None
    path = os.path.join(os.path.dirname(os.path.abspath(weights_path)), "config.json")
    return path if os.path.isfile(path) else None


def read_config_file(path, what):
    """The dict of a Config.to_json file; ConfigSourceError naming the file
    and ``what`` it is when it cannot be read."""
    try:
        with open(path) as f:
            values = json.load(f)
    except FileNotFoundError:
        raise ConfigSourceError("{} not found: {}".format(what, path), path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigSourceError("cannot read {} {}: {}".format(what, path, e), path) from e
    except json.JSONDecodeError as e:
        raise ConfigSourceError("{} {} is not valid JSON ({})".format(what, path, e),
                                path) from e
    if not isinstance(values, dict):
        raise ConfigSourceError("{} {} must hold a JSON object of configuration values "
                                "(as Config.to_json writes), not a {}".format(
                                    what, path, type(values).__name__), path)
    return values


def _apply(config, values, label, origin, path=None):
    """Set ``values`` (plain JSON values or Python values) on ``config``,
    converted as Config.from_dict converts them; record their ``origin``.
    Returns the Source."""
    values = {k: v for k, v in values.items() if k not in DERIVED_ATTRIBUTES}
    try:
        converted = type(config).from_dict(values)
    except (ConfigError, TypeError) as e:
        raise ConfigSourceError("{}: {}".format(label, e), path) from e
    for key in values:
        setattr(config, key, getattr(converted, key))
        origin[key] = label
    return Source(label, {key: getattr(config, key) for key in values})


_RECORDED_HINT = ("Nothing was changed: the checkpoint and this file are left as they are. "
                  "Fix or remove {path}, or give the training configuration with "
                  "--config FILE.json (and the flags).")


def build_config(base, args=None, checkpoint_config=None, keep=MACHINE_KEYS, extra=(),
                 verbose=1):
    """The configuration a sample command runs with, and where its values
    came from.

    base: the sample's Config instance for the command (not modified; a
        copy is returned).
    args: parsed arguments of a parser with ``add_config_arguments`` (or
        None): ``--config`` and the individual flags.
    checkpoint_config: the config.json saved beside the weights the command
        loads (``checkpoint_config_path``), or None.
    keep: keys that config.json never sets (``command_keys``; default
        MACHINE_KEYS).
    extra: ``[(label, {key: value})]`` applied last, e.g. the sample's own
        flags or ``("the dataset", {"NUM_CLASSES": 3})``; None values are
        left out.
    verbose: print "Using the configuration saved with the checkpoint: PATH"
        when ``checkpoint_config`` is applied.

    Precedence, lowest first: base < checkpoint_config (less ``keep``) <
    ``--config`` < the individual flags < extra (see the module docstring).

    Returns ``(config, sources)``: the validated config and a list of
    ``Source(label, values)``, base first. Raises ConfigSourceError for a
    file that cannot be read or whose values are invalid (naming the file
    and what to do) and FlagError when a flag's value is invalid;
    ``config_from_args`` turns both into command-line errors.
    """
    import copy
    config = copy.copy(base)
    origin = {}        # config key -> label of the source that set it last
    kinds = {}         # label -> ("checkpoint" | "file" | "flag" | "extra", path or flag)
    sources = [Source(type(base).__name__, {})]
    if checkpoint_config:
        label = "the configuration saved with the checkpoint, {}".format(checkpoint_config)
        try:
            recorded = read_config_file(checkpoint_config, "the configuration saved with "
                                                           "the checkpoint")
            values = {k: v for k, v in recorded.items() if k not in keep}
            sources.append(_apply(config, values, label, origin, checkpoint_config))
        except ConfigSourceError as e:
            raise ConfigSourceError("{}\n{}".format(e, _RECORDED_HINT.format(
                path=checkpoint_config)), checkpoint_config) from e
        kinds[label] = ("checkpoint", checkpoint_config)
    config_file = getattr(args, "config", None)
    if config_file:
        label = "--config {}".format(config_file)
        values = read_config_file(config_file, "--config file")
        sources.append(_apply(config, values, label, origin, config_file))
        kinds[label] = ("file", config_file)
    for label, values in (flag_values(args) if args is not None else []):
        sources.append(_apply(config, values, label, origin))
        kinds[label] = ("flag", label.split(" ", 1)[0])
    for label, values in extra:
        values = {k: v for k, v in values.items() if v is not None}
        if values:
            sources.append(_apply(config, values, label, origin))
            kinds[label] = ("extra", label)
    _validate(config, origin, kinds)
    if checkpoint_config and verbose:
        print("Using the configuration saved with the checkpoint: {}".format(checkpoint_config))
    return config, sources


def _validate(config, origin, kinds):
    """Config.validate(), each problem attributed to the source that set
    the value it names (the first upper-case word of the problem)."""
    try:
        config.validate()
        return
    except ConfigError as e:
        problems = str(e).split("\n  - ")[1:] or [str(e)]
    lines, flags, files = [], [], []
    for problem in problems:
        key = re.match(r"[A-Z][A-Z0-9_]*", problem)
        label = origin.get(key.group(0)) if key else None
        kind, name = kinds.get(label, (None, None))
        if kind == "flag":
            flags.append(name)
            lines.append("argument {}: {}".format(label, problem))
        elif label:
            if kind in ("checkpoint", "file"):
                files.append((kind, name))
            lines.append("{}: {}".format(label, problem))
        else:
            lines.append(problem)
    message = "invalid configuration:\n  - " + "\n  - ".join(lines)
    if flags:
        raise FlagError(message, flags)
    if files:
        for kind, path in files:
            if kind == "checkpoint":
                message += "\n" + _RECORDED_HINT.format(path=path)
                break
        raise ConfigSourceError(message, files[0][1])
    raise ConfigError(message)


def describe_sources(sources):
    """One line: the sources of a configuration, lowest precedence first,
    e.g. "ShapesConfig < --config small.json (5 values) < --backbone resnet50"."""
    parts = []
    for label, values in sources:
        if label.startswith("--") and not label.startswith("--config") or not values:
            parts.append(label)
        elif len(values) <= 3 and not label.startswith(("--config", "the configuration")):
            parts.append("{} ({})".format(label, ", ".join(
                "{}={}".format(k, v) for k, v in values.items())))
        else:
            parts.append("{} ({} value{})".format(label, len(values),
                                                  "" if len(values) == 1 else "s"))
    return " < ".join(parts)


def config_from_args(parser, args, base, weights_spec=None, weights_path=None,
                     keep=MACHINE_KEYS, extra=(), verbose=1):
    """``build_config`` for a command line: the config.json beside
    ``weights_path`` applies when ``weights_spec`` is "last" or a path, and
    errors end the program with status 2: an argparse usage error for a
    flag, "<prog>: error: <message>" naming the file and what to do for a
    configuration file. Returns ``(config, sources)``."""
    try:
        return build_config(base, args, checkpoint_config_path(weights_spec, weights_path),
                            keep=keep, extra=extra, verbose=verbose)
    except FlagError as e:
        parser.error(str(e))
    except ConfigError as e:
        parser.exit(2, "{}: error: {}\n".format(parser.prog, e))


############################################################
#  Wall-time budget
############################################################

class TrainingBudget(object):
    """A wall-time budget for training in one or more ``train()`` stages.

    minutes: the budget (None or 0: none); the clock starts at ``start``
        (a ``time.time()`` value; default: now), so set-up counts.
    ``callbacks(share)`` gives the Keras callbacks that end a stage by
    ``share`` (a fraction) of the budget: ``[mrcnn.training.TimeBudget]``,
    or ``[]`` without a budget. ``over(share)`` tells whether that time has
    passed already (skip the stage). The epoch in progress when the time is
    up is cut short and still validated and checkpointed.
    """

    def __init__(self, minutes=None, start=None):
        if minutes is not None and (isinstance(minutes, bool) or not minutes >= 0):
            raise ValueError("minutes must be a positive number or None, got {!r}".format(
                minutes))
        self.minutes = minutes or None
        self.start = time.time() if start is None else float(start)

    def seconds(self, share=1.0):
        return None if self.minutes is None else self.minutes * 60.0 * share

    def over(self, share=1.0):
        return self.minutes is not None and time.time() - self.start >= self.seconds(share)

    def callbacks(self, share=1.0, decay_at=()):
        if self.minutes is None:
            return []
        from mrcnn.training import TimeBudget
        return [TimeBudget(self.seconds(share), decay_at=decay_at, start=self.start)]
