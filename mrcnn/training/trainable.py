"""
Which layers train: the ``train(layers=...)`` presets (heads, 3+, 4+, 5+,
all) and ``set_trainable``, which walks nested models and freezes batch
normalisation when TRAIN_BN says so.
"""

import re

import keras


def backbone_presets(heads_regex):
    """The reference's ``layers=`` presets for a model whose head layers
    match ``heads_regex``."""
    return {
        "heads": heads_regex,
        "3+": r"(res3.*)|(bn3.*)|(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|" + heads_regex,
        "4+": r"(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|" + heads_regex,
        "5+": r"(res5.*)|(bn5.*)|" + heads_regex,
        "all": ".*",
    }


def _is_batch_norm(layer):
    inner = getattr(layer, "layer", None)
    return isinstance(layer, keras.layers.BatchNormalization) or \
        isinstance(inner, keras.layers.BatchNormalization)


def set_trainable(model, layer_regex, train_bn=True, verbose=0, indent=0):
    """Mark as trainable exactly the layers whose names full-match
    ``layer_regex``; all others frozen. Nested models are searched (their
    own name does not matter, their layers' names do). With
    ``train_bn=False`` batch-normalisation layers stay frozen whatever the
    regex says (gamma and beta included; the original still trained
    those). Wrapper layers (RoiDistributed) are matched by their own name.

    Returns the names of the layers with weights that are now trainable.
    """
    pattern = re.compile(layer_regex)
    trained = []
    model.trainable = True
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            if verbose > 0:
                print("{}In model: {}".format(" " * indent, layer.name))
            trained += set_trainable(layer, layer_regex, train_bn, verbose, indent + 4)
            continue
        if not layer.weights:
            continue
        trainable = bool(pattern.fullmatch(layer.name))
        if train_bn is False and _is_batch_norm(layer):
            trainable = False
        layer.trainable = trainable
        if trainable:
            trained.append(layer.name)
            if verbose > 0:
                print("{}{:20}   ({})".format(" " * indent, layer.name,
                                              layer.__class__.__name__))
    return trained
