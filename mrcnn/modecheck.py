"""
The class-attribute half of the mode contract (see ``mrcnn.modelbase``):
a class that builds a network is checked when it is defined, so a
malformed mode fails at import, naming the attribute, rather than at the
first training step.
"""

import numbers
import re


def check_mode_class(cls):
    """TypeError naming the first class attribute of a mode that is missing
    or malformed."""
    problems = []
    names = cls.LOSS_NAMES
    if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names \
            or not all(isinstance(n, str) and n for n in names) \
            or len(set(names)) != len(names):
        problems.append("LOSS_NAMES must be a non-empty list of distinct loss layer names, "
                        "got {!r}".format(names))
    weights_ = cls.DEFAULT_LOSS_WEIGHTS
    if not isinstance(weights_, dict) or not all(
            isinstance(w, numbers.Real) and w >= 0 for w in weights_.values()):
        problems.append("DEFAULT_LOSS_WEIGHTS must be a dict of non-negative numbers, got "
                        "{!r}".format(weights_))
    elif isinstance(names, (list, tuple)) and set(weights_) - set(names):
        problems.append("DEFAULT_LOSS_WEIGHTS has keys {} that are not in LOSS_NAMES".format(
            sorted(set(weights_) - set(names))))
    prefix = cls.CHECKPOINT_PREFIX
    if not isinstance(prefix, str) or not re.fullmatch(r"[a-z0-9_]+", prefix):
        problems.append("CHECKPOINT_PREFIX must be lower-case letters, digits and "
                        "underscores (it starts checkpoint file names), got {!r}".format(prefix))
    try:
        re.compile(cls.HEADS_REGEX)
    except (TypeError, re.error) as e:
        problems.append("HEADS_REGEX must be a regular expression (the layers "
                        "train(layers='heads') trains), got {!r}: {}".format(cls.HEADS_REGEX, e))
    specific = cls.CLASS_SPECIFIC_LAYERS
    if isinstance(specific, str) or not isinstance(specific, (list, tuple)) \
            or not all(isinstance(n, str) for n in specific):
        problems.append("CLASS_SPECIFIC_LAYERS must be a list of layer names, got {!r}".format(
            specific))
    if not isinstance(cls.SIZE_DIVISOR, int) or cls.SIZE_DIVISOR < 1:
        problems.append("SIZE_DIVISOR must be a positive integer, got {!r}".format(
            cls.SIZE_DIVISOR))
    defaults = cls.CONFIG_DEFAULTS
    if not isinstance(defaults, dict):
        problems.append("CONFIG_DEFAULTS must be a dict of Config attribute -> default, got "
                        "{!r}".format(defaults))
    else:
        from mrcnn.config import Config
        unknown = sorted(k for k in defaults if not (isinstance(k, str) and k.isupper()
                                                     and hasattr(Config, k)))
        if unknown or "MODEL" in defaults or "NAME" in defaults:
            problems.append("CONFIG_DEFAULTS keys must be Config attributes other than MODEL "
                            "and NAME; got {}".format(unknown or ["MODEL/NAME"]))
    if problems:
        raise TypeError("Model mode {}: {}".format(cls.__qualname__, "; ".join(problems)))
