"""Tests for mrcnn.weights: the legacy Keras 2 HDF5 layout (save, load by
order and by name, mismatches, broken files). Legacy files are also written
here directly with h5py, independently of save_weights."""
import os

import h5py
import keras
import numpy as np
import pytest
from keras import layers as KL

from mrcnn import backbone, weights
from mrcnn.maskrcnn import rpn
from mrcnn.weights import hdf5, native
from weights_fixtures import model_groups, to_np, values, write_legacy

RPN_NAMES = ["rpn_conv_shared/kernel:0", "rpn_conv_shared/bias:0", "rpn_class_raw/kernel:0",
             "rpn_class_raw/bias:0", "rpn_bbox_pred/kernel:0", "rpn_bbox_pred/bias:0"]


def small_model(num_classes=4, seed=0):
    """conv1 -> bn_conv1 -> rpn_model (nested) plus class-specific heads; every
    weight (BN moving statistics included) set to seeded random values."""
    image = keras.Input((8, 8, 3), name="input_image")
    x = KL.Conv2D(16, 3, padding="same", name="conv1")(image)
    x = backbone.BatchNorm(name="bn_conv1")(x, training=False)
    x = KL.Activation("relu")(x)
    rpn_outputs = rpn.build_rpn_model(1, 3, 16)(x)
    # Heads in the reference were TimeDistributed wrappers: weights live in an
    # inner layer with an auto-generated name.
    x = KL.Reshape((1, 8, 8, 16))(x)
    x = KL.TimeDistributed(KL.Conv2D(8, 3), name="mrcnn_class_conv1")(x)
    x = KL.TimeDistributed(KL.BatchNormalization(), name="mrcnn_class_bn1")(x)
    pooled = KL.GlobalAveragePooling2D()(KL.Reshape((6, 6, 8))(x))
    logits = KL.Dense(num_classes, name="mrcnn_class_logits")(pooled)
    bbox = KL.Dense(num_classes * 4, name="mrcnn_bbox_fc")(pooled)
    model = keras.Model(image, rpn_outputs + [logits, bbox])
    rng = np.random.default_rng(seed)
    for var in model.weights:
        var.assign(rng.uniform(0.5, 1.5, tuple(var.shape)).astype("float32"))
    return model


def assert_layers_equal(a, b, names):
    for name in names:
        for x, y in zip(values(a.get_layer(name)), values(b.get_layer(name))):
            np.testing.assert_array_equal(x, y, err_msg=name)


# Weighted layers in model.layers (topological) order.
WEIGHTED = ["conv1", "bn_conv1", "mrcnn_class_conv1", "mrcnn_class_bn1", "rpn_model",
            "mrcnn_class_logits", "mrcnn_bbox_fc"]


def test_save_load_round_trip_and_layout(tmp_path):
    source, target = small_model(seed=1), small_model(seed=2)
    assert WEIGHTED == [layer.name for layer in source.layers if layer.weights]
    path = tmp_path / "w.h5"
    assert weights.save_weights(source, path) == str(path)
    with h5py.File(path, "r") as f:
        names = [n.decode() for n in f.attrs["layer_names"]]
        assert names == [layer.name for layer in source.layers]
        assert names[0] == "input_image"
        assert f.attrs["backend"] in (b"tensorflow", "tensorflow")
        assert list(f["input_image"].attrs["weight_names"]) == []
        assert [n.decode() for n in f["rpn_model"].attrs["weight_names"]] == RPN_NAMES
        assert [n.decode() for n in f["bn_conv1"].attrs["weight_names"]] == [
            "bn_conv1/gamma:0", "bn_conv1/beta:0", "bn_conv1/moving_mean:0",
            "bn_conv1/moving_variance:0"]
        # Wrapped layers are named after the wrapper, as Keras 2 TimeDistributed did.
        assert [n.decode() for n in f["mrcnn_class_conv1"].attrs["weight_names"]] == [
            "mrcnn_class_conv1/kernel:0", "mrcnn_class_conv1/bias:0"]
        assert [n.decode() for n in f["mrcnn_class_bn1"].attrs["weight_names"]][3] == \
            "mrcnn_class_bn1/moving_variance:0"
        np.testing.assert_array_equal(f["conv1"]["conv1"]["kernel:0"][()],
                                      to_np(source.get_layer("conv1").weights[0]))
        np.testing.assert_array_equal(f["rpn_model"]["rpn_class_raw"]["bias:0"][()],
                                      to_np(source.get_layer("rpn_model").weights[3]))
    assert sorted(os.listdir(tmp_path)) == ["w.h5"]  # no temporary file left

    report = weights.load_weights(target, path)
    assert report.loaded == WEIGHTED and report.missing == [] and report.skipped == []
    assert_layers_equal(source, target, WEIGHTED)


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "w.h5"
    weights.save_weights(small_model(seed=1), path)
    before = path.read_bytes()
    calls = []

    def failing(f, layer):
        calls.append(layer.name)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        f.create_group(layer.name)

    monkeypatch.setattr(hdf5, "_write_layer_group", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        weights.save_weights(small_model(seed=2), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["w.h5"]


def test_load_keras2_layout_by_name_with_exclude(tmp_path):
    source, target = small_model(seed=1), small_model(seed=2)
    groups = model_groups(source)
    groups = [(n, w) for n, w in groups if n != "mrcnn_bbox_fc"]  # file lacks one layer
    groups.append(("fpn_c5p5", [("fpn_c5p5/kernel:0", np.ones((1, 1, 2, 2), "float32"))]))
    rpn = dict(groups)["rpn_model"]
    assert [n for n, _ in rpn] == RPN_NAMES
    rpn.reverse()  # different order in the file: inner-layer names decide
    path = tmp_path / "mask_rcnn_legacy.h5"
    write_legacy(path, groups)
    excluded_before = values(target.get_layer("mrcnn_class_logits"))
    missing_before = values(target.get_layer("mrcnn_bbox_fc"))

    report = weights.load_weights(target, path, by_name=True, exclude=["mrcnn_class_logits"])
    assert report.loaded == WEIGHTED[:5]
    assert report.skipped == ["mrcnn_class_logits"] and report.missing == ["mrcnn_bbox_fc"]
    assert_layers_equal(source, target, report.loaded)
    for before, layer in ((excluded_before, "mrcnn_class_logits"),
                          (missing_before, "mrcnn_bbox_fc")):
        for x, y in zip(before, values(target.get_layer(layer))):
            np.testing.assert_array_equal(x, y)


def test_group_with_foreign_weight_names_loads_by_order(tmp_path):
    """Keras 2 TimeDistributed heads: names like mrcnn_class_conv1/conv2d_5/kernel:0
    or an inner auto-generated name; a full-model file (model_weights group)."""
    source, target = small_model(seed=1), small_model(seed=2)
    groups = model_groups(source, rename={"mrcnn_class_conv1": "mrcnn_class_conv1/conv2d_5",
                                          "mrcnn_class_bn1": "batch_normalization_3",
                                          "mrcnn_class_logits": "dense_7"})
    path = tmp_path / "full_model.h5"
    write_legacy(path, groups, under_model_weights=True)
    report = weights.load_weights(target, path)
    assert report.loaded == WEIGHTED
    assert_layers_equal(source, target, WEIGHTED)


def test_class_count_mismatch_names_all_layers_and_changes_nothing(tmp_path, caplog):
    path = tmp_path / "coco.h5"
    weights.save_weights(small_model(num_classes=4, seed=1), path)
    target = small_model(num_classes=3, seed=2)
    before = [to_np(w) for w in target.weights]
    with pytest.raises(weights.WeightsMismatchError) as info:
        weights.load_weights(target, path, by_name=True)
    message = str(info.value)
    assert "mrcnn_class_logits" in message and "mrcnn_bbox_fc" in message
    assert "(8, 4) in the file, (8, 3) in the model" in message
    assert "exclude=['mrcnn_class_logits', 'mrcnn_bbox_fc']" in message
    assert info.value.layer_names == ["mrcnn_class_logits", "mrcnn_bbox_fc"]
    assert isinstance(info.value, ValueError)
    for x, w in zip(before, target.weights):
        np.testing.assert_array_equal(x, to_np(w))

    with caplog.at_level("WARNING", logger="mrcnn.weights"):
        report = weights.load_weights(target, path, skip_mismatch=True)
    assert report.mismatched == ["mrcnn_class_logits", "mrcnn_bbox_fc"]
    assert report.loaded == WEIGHTED[:5] and "Skipping layer mrcnn_bbox_fc" in caplog.text
    report = weights.load_weights(target, path, by_name=True, exclude=report.mismatched)
    assert report.skipped == ["mrcnn_class_logits", "mrcnn_bbox_fc"]


def test_by_order_count_mismatch(tmp_path):
    source, target = small_model(seed=1), small_model(seed=2)
    groups = [g for g in model_groups(source) if g[0] not in ("mrcnn_class_logits",
                                                              "mrcnn_bbox_fc")]
    path = tmp_path / "w.h5"
    write_legacy(path, groups)
    with pytest.raises(ValueError, match="holds 5 layers with weights but the model has 7 "
                                         "layers with weights.*by_name=True"):
        weights.load_weights(target, path)
    # A file saved without the excluded layers pairs the rest in order.
    report = weights.load_weights(target, path, exclude=["mrcnn_class_logits", "mrcnn_bbox_fc"])
    assert report.loaded == WEIGHTED[:5]
    assert_layers_equal(source, target, WEIGHTED[:5])


def test_missing_and_broken_files(tmp_path):
    model = small_model()
    missing = tmp_path / "nowhere.h5"
    with pytest.raises(FileNotFoundError, match="nowhere.h5"):
        weights.load_weights(model, missing)
    text = tmp_path / "notes.h5"
    text.write_text("<html>404 Not Found</html>")
    with pytest.raises(weights.WeightsFileError, match="notes.h5 is not a readable HDF5 "
                                                      "weights file.*partial.*fetch it again"):
        weights.load_weights(model, text)
    full = tmp_path / "full.h5"
    weights.save_weights(model, full)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(full.read_bytes()[:full.stat().st_size // 2])
    with pytest.raises(weights.WeightsFileError, match="truncated.h5 is not a readable HDF5"):
        weights.load_weights(model, truncated)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f.create_group("something_else")
    with pytest.raises(weights.WeightsFileError, match="empty.h5 is an HDF5 file but holds "
                                                      "no Keras weights"):
        weights.load_weights(model, empty)


def test_long_name_lists_are_chunked_like_keras2(tmp_path):
    """Attributes over the 64 KiB HDF5 header limit are split into names0, names1, ..."""
    names = ["res4{}_branch2a_with_a_long_name_{:05d}".format("x", i) for i in range(3000)]
    with h5py.File(tmp_path / "a.h5", "w") as f:
        hdf5._write_names_attr(f, "layer_names", names)
        assert "layer_names" not in f.attrs and "layer_names1" in f.attrs
        assert hdf5._read_names_attr(f, "layer_names") == names
        hdf5._write_names_attr(f, "short", ["conv1"])
        assert hdf5._read_names_attr(f, "short") == ["conv1"]
        assert hdf5._read_names_attr(f, "absent") is None


def test_load_report_prints_counts_not_every_layer():
    report = weights.LoadReport("/x/mask_rcnn_coco.h5", loaded=["l%d" % i for i in range(300)],
                                skipped=["a", "b", "c", "d", "e"], missing=[], mismatched=["m"])
    assert repr(report) == ("LoadReport('mask_rcnn_coco.h5': loaded 300 layers, excluded "
                            "5 [a, b, c, d, ...], missing 0, mismatched 1 [m])")
    assert len(report.loaded) == 300


############################################################
#  Keras 3 native .weights.h5 files and DetectionModel.save_weights
############################################################

HEADS = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"]  # mrcnn_bbox: a Reshape


def tiny_maskrcnn(tmp_path, seed, num_classes=4):
    """The tiny inference Mask R-CNN with every weight seeded at random."""
    import mrcnn.model as modellib
    from tiny_models import TinyInferenceConfig

    class Config(TinyInferenceConfig):
        NUM_CLASSES = num_classes

    model = modellib.MaskRCNN("inference", Config(), str(tmp_path / "logs"))
    rng = np.random.default_rng(seed)
    for var in model.keras_model.weights:
        var.assign(rng.uniform(0.5, 1.5, tuple(var.shape)).astype("float32"))
    return model


def weighted_names(keras_model):
    return [layer.name for layer in keras_model.layers if layer.weights]


def snapshot(keras_model):
    return {name: values(keras_model.get_layer(name)) for name in weighted_names(keras_model)}


def assert_snapshot_equal(snap, keras_model, names=None):
    for name in snap if names is None else names:
        for x, y in zip(snap[name], values(keras_model.get_layer(name)), strict=True):
            np.testing.assert_array_equal(x, y, err_msg=name)


def test_native_file_round_trips_by_name_and_by_order(tmp_path):
    source = tiny_maskrcnn(tmp_path, seed=1)
    path = tmp_path / "tiny.weights.h5"
    source.keras_model.save_weights(path)  # Keras 3's own writer
    with h5py.File(path, "r") as f:
        assert "layer_names" not in f.attrs
        assert f["layers/functional/vars"].attrs["name"] == "rpn_model"
        assert "layers/functional/layers/conv2d_2/vars/1" in f  # rpn_bbox_pred/bias
    expected = snapshot(source.keras_model)
    names = weighted_names(source.keras_model)
    assert {"rpn_model", "mrcnn_class_logits", "mrcnn_mask", "tiny_bn5"} <= set(names)

    for by_name in (True, False):
        target = tiny_maskrcnn(tmp_path, seed=2)
        report = target.load_weights(path, by_name=by_name)
        assert report.loaded == names and report.missing == [] and report.mismatched == []
        assert_snapshot_equal(expected, target.keras_model)

    # exclude: those layers keep their fresh values, by name and by order.
    excluded = ["rpn_model", "mrcnn_class_conv1", "tiny_bn3"] + HEADS
    for by_name in (True, False):
        target = tiny_maskrcnn(tmp_path, seed=3)
        fresh = snapshot(target.keras_model)
        report = weights.load_weights(target.keras_model, path, by_name=by_name,
                                      exclude=excluded)
        assert sorted(report.skipped) == sorted(excluded)
        assert report.loaded == [n for n in names if n not in excluded]
        assert_snapshot_equal(expected, target.keras_model, report.loaded)
        assert_snapshot_equal(fresh, target.keras_model, excluded)
        assert not np.array_equal(fresh["mrcnn_mask"][0], expected["mrcnn_mask"][0])


def test_native_nested_model_pairs_weights_by_dataset_path(tmp_path):
    """Inside a nested model Keras 3 names groups by class (batch_normalization,
    dense, dense_1), not in model order; pairing follows those paths."""
    def build(seed):
        inner_in = keras.Input((4,))
        y = KL.Dense(4, name="first")(inner_in)
        y = KL.BatchNormalization(name="norm")(y)
        y = KL.Dense(4, name="second")(y)
        inner = keras.Model(inner_in, y, name="inner")
        image = keras.Input((4,))
        model = keras.Model(image, KL.Dense(2, name="out")(inner(image)))
        rng = np.random.default_rng(seed)
        for var in model.weights:
            var.assign(rng.uniform(0.5, 1.5, tuple(var.shape)).astype("float32"))
        return model

    source, target = build(1), build(2)
    path = tmp_path / "nested.weights.h5"
    source.save_weights(path)
    assert [key for key, _ in native._native_weights(source.get_layer("inner"))] == [
        "layers/dense/vars/0", "layers/dense/vars/1", "layers/batch_normalization/vars/0",
        "layers/batch_normalization/vars/1", "layers/batch_normalization/vars/2",
        "layers/batch_normalization/vars/3", "layers/dense_1/vars/0", "layers/dense_1/vars/1"]
    report = weights.load_weights(target, path, by_name=True)
    assert report.loaded == ["inner", "out"]
    for x, y in zip(source.weights, target.weights, strict=True):
        np.testing.assert_array_equal(to_np(x), to_np(y))


def test_native_file_with_other_class_count(tmp_path):
    path = tmp_path / "four_classes.weights.h5"
    source = tiny_maskrcnn(tmp_path, seed=1, num_classes=4)
    source.keras_model.save_weights(path)
    target = tiny_maskrcnn(tmp_path, seed=2, num_classes=3)
    before = [to_np(w) for w in target.keras_model.weights]
    with pytest.raises(weights.WeightsMismatchError) as info:
        target.load_weights(path, by_name=True)
    message = str(info.value)
    assert info.value.layer_names == HEADS
    assert "This usually means a different NUM_CLASSES" in message
    assert "exclude={!r}".format(HEADS) in message
    assert "layer/vars/0 has shape (32, 4) in the file, (32, 3) in the model" in message
    for x, w in zip(before, target.keras_model.weights, strict=True):
        np.testing.assert_array_equal(x, to_np(w))

    report = target.load_weights(path, by_name=True, exclude=info.value.layer_names)
    assert report.skipped == HEADS and report.mismatched == []
    expected = snapshot(source.keras_model)
    assert_snapshot_equal(expected, target.keras_model, report.loaded)
    assert "rpn_model" in report.loaded and len(report.loaded) == len(expected) - 3


def test_native_file_of_another_backbone_is_refused(tmp_path):
    def resnet(architecture):
        image = keras.Input((64, 64, 3))
        return keras.Model(image, backbone.resnet_graph(image, architecture)[-2])

    path = tmp_path / "resnet18.weights.h5"
    resnet("resnet18").save_weights(path)
    model = resnet("resnet34")
    before = [to_np(w) for w in model.weights]
    for by_name in (True, False):
        with pytest.raises(weights.BackboneMismatchError,
                           match="weights of a resnet18 backbone but the model's backbone "
                                 "is resnet34"):
            weights.load_weights(model, path, by_name=by_name)
    for x, w in zip(before, model.weights, strict=True):
        np.testing.assert_array_equal(x, to_np(w))


def test_keras_model_save_weights_h5_writes_the_legacy_layout(tmp_path):
    source = tiny_maskrcnn(tmp_path, seed=1)
    keras_model = source.keras_model
    path = tmp_path / "mask_rcnn_shapes.h5"
    keras_model.save_weights(str(path))  # the reference notebooks' line
    with h5py.File(path, "r") as f:
        assert [n.decode() for n in f.attrs["layer_names"]] == [
            layer.name for layer in keras_model.layers]
        assert "layers" not in f and "rpn_model" in f
    with pytest.raises(FileExistsError):
        keras_model.save_weights(path, overwrite=False)
    expected = snapshot(keras_model)

    target = tiny_maskrcnn(tmp_path, seed=2)
    report = target.load_weights(str(path), by_name=True)
    assert report.loaded == list(expected)
    assert_snapshot_equal(expected, target.keras_model)

    for kwargs in ({}, {"by_name": True}):
        target = tiny_maskrcnn(tmp_path, seed=3)
        report = target.keras_model.load_weights(path, **kwargs)  # not Keras 3's reader
        assert isinstance(report, weights.LoadReport) and report.loaded == list(expected)
        assert_snapshot_equal(expected, target.keras_model)

    # .weights.h5 stays Keras's own, both ways.
    native = tmp_path / "tiny.weights.h5"
    keras_model.save_weights(native)
    with h5py.File(native, "r") as f:
        assert "layer_names" not in f.attrs and "layers" in f
    target = tiny_maskrcnn(tmp_path, seed=4)
    assert target.keras_model.load_weights(native) is None
    assert_snapshot_equal(expected, target.keras_model)
