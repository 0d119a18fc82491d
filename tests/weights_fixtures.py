"""Legacy Keras 2 weight files for test_weights.py and test_pretrained.py,
written directly with h5py, independently of mrcnn.weights.save_weights."""
import h5py
import keras
import numpy as np


def to_np(variable):
    return np.asarray(variable.numpy())


def values(layer):
    return [to_np(w) for w in layer.weights]


def write_legacy(path, groups, under_model_weights=False):
    """Write a Keras 2 style weights file with h5py: ``groups`` is a list of
    ``(layer_name, [(weight_name, array), ...])``."""
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if under_model_weights else f
        root.attrs["layer_names"] = np.array([n.encode() for n, _ in groups])
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.2.4"
        for name, named_arrays in groups:
            g = root.create_group(name)
            g.attrs["weight_names"] = np.array([w.encode() for w, _ in named_arrays])
            for wname, array in named_arrays:
                g.create_dataset(wname, data=array)


def model_groups(model, rename=None):
    """Legacy groups for every layer of ``model`` with Keras 2 weight names;
    ``rename`` maps a layer name to the weight-name prefix to write instead."""
    rename = rename or {}
    groups = []
    for layer in model.layers:
        arrays = []
        if isinstance(layer, keras.Model):
            for inner in layer.layers:
                arrays += [("{}/{}:0".format(inner.name, w.name), to_np(w))
                           for w in inner.weights]
        else:
            prefix = rename.get(layer.name, layer.name)
            arrays = [("{}/{}:0".format(prefix, w.name), to_np(w)) for w in layer.weights]
        groups.append((layer.name, arrays))
    return groups
