"""
The model modes: ``Config.MODEL`` names one, ``create_model`` builds it.

A mode is a ``mrcnn.modelbase.ModelBase`` subclass (see its docstring for
what a mode provides). The registry maps a name to the class or to its
import path ``"package.module:Class"``, imported on first use, so that
naming a mode costs nothing until it is built and a mode's package is only
loaded by those who use it::

    from mrcnn import modes
    modes.register_mode("my_head", "my_package.model:MyHead")
    config.MODEL = "my_head"
    model = modes.create_model("training", config, "logs")

This module imports neither TensorFlow nor any mode; ``mode_class`` does,
for the mode asked for.
"""

import importlib
import sys

# name -> ModelBase subclass, or "module:Class" imported when first needed.
MODEL_REGISTRY = {
    "mask_rcnn": "mrcnn.maskrcnn.model:MaskRCNN",
    "yolact": "mrcnn.yolact.model:Yolact",
    "centernet": "mrcnn.centernet.model:CenterNet",
}

# The mode whose defaults the base Config holds.
DEFAULT_MODE = "mask_rcnn"

# Heads this package plans to offer; until one is registered a config that
# names it gets "not available in this version" rather than "unknown".
PLANNED_MODES = ("mask2former",)


class UnknownModeError(ValueError):
    """``Config.MODEL`` names no registered mode."""


def register_mode(name, target):
    """Make ``target`` (a ModelBase subclass or ``"module:Class"``) the
    implementation of ``Config.MODEL == name``. Returns ``target``, so it
    can decorate a class. Re-registering a name replaces it."""
    if not isinstance(name, str) or not name:
        raise ValueError("A mode name must be a non-empty string, got {!r}".format(name))
    if isinstance(target, str):
        if target.count(":") != 1 or not all(target.split(":")):
            raise ValueError("register_mode({!r}, {!r}): give the class or its import path "
                             "as 'package.module:Class'".format(name, target))
    elif not isinstance(target, type):
        raise TypeError("register_mode({!r}, ...): expected a ModelBase subclass or "
                        "'package.module:Class', got {!r}".format(name, target))
    MODEL_REGISTRY[name] = target
    return target


def available_modes():
    """Names of the registered modes, sorted."""
    return sorted(MODEL_REGISTRY)


def unknown_mode_message(name):
    """What ``Config.validate()`` and ``mode_class`` say about an
    unregistered name."""
    if name in PLANNED_MODES:
        return ("MODEL={!r} is reserved for a model mode that is not available in this "
                "version; use one of: {}".format(name, ", ".join(available_modes())))
    return "MODEL={!r} is unknown; available: {}".format(name, ", ".join(available_modes()))


def mode_class(name):
    """The ModelBase subclass registered as ``name`` (imported on first
    use). UnknownModeError names the available modes; an import path that
    does not import raises ImportError naming the mode and the path."""
    if name not in MODEL_REGISTRY:
        raise UnknownModeError(unknown_mode_message(name))
    target = MODEL_REGISTRY[name]
    if isinstance(target, str):
        module_name, class_name = target.split(":")
        try:
            module = importlib.import_module(module_name)
            target = getattr(module, class_name)
        except (ImportError, AttributeError) as e:
            raise ImportError("Model mode {!r} is registered as {!r}, which cannot be "
                              "imported: {}".format(name, MODEL_REGISTRY[name], e)) from e
        MODEL_REGISTRY[name] = target
    return target


def config_defaults(name):
    """``{Config attribute: default}`` of mode ``name``: the values that
    replace the base Config's defaults when ``Config.MODEL == name``
    (``ModelBase.config_defaults()``). Empty for Mask R-CNN, whose defaults
    the base Config holds (so reading a config imports no mode), and for a
    name that is not a usable mode (``Config.validate()`` reports it)."""
    if name == DEFAULT_MODE:
        return {}
    try:
        target = mode_class(name)
    except (UnknownModeError, ImportError, TypeError):
        return {}
    defaults = getattr(target, "config_defaults", None)
    return defaults() if defaults is not None else {}


def mode_of(model_class):
    """The registered name of a ModelBase subclass, or of the nearest
    registered class it derives from (a user's ``MaskRCNN`` subclass is
    "mask_rcnn"); None for an unregistered class. Modes registered by import
    path count once their module is loaded (a class being asked about has
    been)."""
    best = None
    for name in MODEL_REGISTRY:
        target = MODEL_REGISTRY[name]
        if isinstance(target, str):
            if target.split(":")[0] not in sys.modules:
                continue
            try:
                target = mode_class(name)
            except ImportError:
                continue
        if isinstance(target, type) and issubclass(model_class, target):
            # The most derived registered class wins.
            if best is None or issubclass(target, best[1]):
                best = (name, target)
    return best[0] if best else None


def create_model(mode, config, model_dir):
    """Build the model ``config.MODEL`` names, in ``mode`` "training" or
    "inference", writing logs and checkpoints under ``model_dir``."""
    return mode_class(config.MODEL)(mode=mode, config=config, model_dir=model_dir)
