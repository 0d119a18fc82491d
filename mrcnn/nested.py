"""
Walking a Keras model whose layers include nested models (Mask R-CNN's
``rpn_model``): the one traversal that weight files, layer selection,
weight copying and the inspection helpers share.
"""


def _is_container(layer):
    """A layer that holds other layers as a model does (keras.Model, or any
    layer with a ``layers`` list), not a wrapper such as RoiDistributed."""
    return isinstance(getattr(layer, "layers", None), list) and bool(layer.layers)


def iter_layers(model):
    """Every layer of ``model``, depth first in ``model.layers`` order; a
    nested model is yielded before its own layers."""
    for layer in model.layers:
        yield layer
        if _is_container(layer):
            yield from iter_layers(layer)


def layers_with_weights(model):
    """``[layer]`` of every non-container layer with weights, nested models
    flattened, in model order."""
    return [layer for layer in iter_layers(model)
            if not _is_container(layer) and layer.weights]


def find_layer(model, name):
    """The layer called ``name``: a top-level one first, else the first one
    found in nested models; None when there is none."""
    for layer in model.layers:
        if layer.name == name:
            return layer
    return next((layer for layer in iter_layers(model) if layer.name == name), None)
