"""
Keras 3's native weights layout: ``keras_model.save_weights("x.weights.h5")``.

No names in group paths, no layer order. Top-level layers are groups
``layers/<class name in snake case>[_<n>]`` (``layers/conv2d_3``: the fourth
Conv2D of ``model.layers``), each with the layer's own variables as datasets
``vars/0``, ``vars/1``, ... and, in recent Keras, the layer name as attribute
``name`` of ``vars``. Sublayers nest under the attribute that holds them
(``layers/roi_distributed_4/layer/vars/0``); a nested model nests its layers
the same way (``layers/functional/layers/conv2d_1/vars/0``).
``native_layer_groups`` reads each top-level group as that layer's weights,
keyed by dataset path, for the same checks and assignment as the legacy
layout (``mrcnn.weights.hdf5``), and ``_native_weights`` names the model's
variables by those same paths, as Keras 3 pairs them; files without
``name`` attributes take the name of the model layer at the same path.
"""

import posixpath
import re

import h5py
import keras

from mrcnn.weights.hdf5 import _unreadable


def _natural_key(text):
    """``conv2d_10`` after ``conv2d_9``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _snake_case(name):
    """Keras 3's group name for a class (``keras.src.utils.naming.to_snake_case``)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _children(obj):
    """``(attribute, child)`` in the order Keras 3 saving visits them (the
    walk that defines the layout; only models' ``layers`` without it)."""
    try:
        from keras.src.saving import saving_lib
        return saving_lib._walk_saveable(obj)
    except (ImportError, AttributeError):
        return [("layers", obj.layers)] if isinstance(obj, keras.Model) else []


def _is_saveable(item):
    try:
        from keras.src.saving.keras_saveable import KerasSaveable
    except ImportError:
        KerasSaveable = keras.layers.Layer
    return isinstance(item, KerasSaveable)


def _container_paths(items, path):
    """Keras 3's group paths for a list of saveables (snake-case class name,
    ``_1``, ``_2``, ... on repeats; nested lists are ``container``)."""
    used, paths = {}, []
    for item in items:
        if isinstance(item, (list, tuple, dict)):
            base = "container"
        elif _is_saveable(item):
            base = _snake_case(item.__class__.__name__)
        else:
            continue
        used[base] = used.get(base, -1) + 1
        name = base if not used[base] else "{}_{}".format(base, used[base])
        paths.append((posixpath.join(path, name), item))
    return paths


def _native_keys(obj, path, out, seen):
    """Append ``(dataset path, variable)`` for ``obj`` and its sublayers as
    Keras 3 writes them: own variables at ``path/vars/<i>``, children below.
    ``seen`` maps id to object: visited objects stay alive, so ids stay unique."""
    if id(obj) in seen:
        return
    seen[id(obj)] = obj
    if isinstance(obj, (list, tuple, dict)):
        items = list(obj.values()) if isinstance(obj, dict) else obj
        for child_path, item in _container_paths(items, path):
            _native_keys(item, child_path, out, seen)
        return
    if not isinstance(obj, keras.layers.Layer):
        return  # optimizers, metrics, seed generators: nothing in layer.weights
    own = {}
    obj.save_own_variables(own)
    out.extend((posixpath.join(path, "vars", key), value) for key, value in own.items())
    for attr, child in _children(obj):
        if isinstance(child, (keras.layers.Layer, list, tuple, dict)):
            _native_keys(child, posixpath.join(path, attr), out, seen)


def _native_weights(layer):
    """``[(dataset path relative to the layer's group, variable)]`` in
    ``layer.weights`` order (``layer/vars/0`` for a wrapped Dense)."""
    found = []
    _native_keys(layer, "", found, {})
    path_of = {id(value): key for key, value in found}
    return [(path_of.get(id(var), var.path), var) for var in layer.weights]


def _native_datasets(group):
    """Dataset paths under ``group``: ``vars/<i>`` in index order, then the
    subgroups' in natural order."""
    keys = []
    for name in sorted(group, key=_natural_key):
        item = group[name]
        if name == "vars" and isinstance(item, h5py.Group):
            keys[:0] = ["vars/" + k for k in sorted(item, key=_natural_key)
                        if isinstance(item[k], h5py.Dataset)]
        elif isinstance(item, h5py.Group):
            keys += [name + "/" + k for k in _native_datasets(item)]
    return keys


def native_layer_groups(f, keras_model, filepath):
    """``(root, [(layer_name, [dataset path, ...])])`` for a Keras 3 native
    file's top-level layers that have weights; ``root[layer_name]`` is the
    layer's group. The file keeps no order: groups at the path of one of the
    model's layers come in model order, then the others in natural order."""
    model_paths = dict(_container_paths(keras_model.layers, ""))
    entries = {}
    try:
        layers = f["layers"] if "layers" in f else {}
        for path in sorted(layers, key=_natural_key):
            group = layers[path]
            keys = _native_datasets(group) if isinstance(group, h5py.Group) else []
            if not keys:
                continue
            name = group["vars"].attrs.get("name") if "vars" in group else None
            if name is None:
                name = model_paths[path].name if path in model_paths else "layers/" + path
            entries[path] = (name.decode("utf8") if isinstance(name, bytes) else str(name),
                             group, keys)
    except (KeyError, OSError, RuntimeError) as e:
        raise _unreadable(filepath, e) from e
    order = [p for p in model_paths if p in entries]
    order += [p for p in entries if p not in model_paths]
    root = {entries[p][0]: entries[p][1] for p in order}
    return root, [(entries[p][0], entries[p][2]) for p in order]
