"""Tests for mrcnn.weights: the legacy Keras 2 HDF5 layout (save, load by
order and by name, mismatches, broken files) and ImageNet initialisation.
Legacy files are also written here directly with h5py, independently of
save_weights."""
import hashlib
import os

import h5py
import keras
import numpy as np
import pytest
from keras import layers as KL

from mrcnn import backbone, weights
from mrcnn.utils import WeightsDownloadError

RPN_NAMES = ["rpn_conv_shared/kernel:0", "rpn_conv_shared/bias:0", "rpn_class_raw/kernel:0",
             "rpn_class_raw/bias:0", "rpn_bbox_pred/kernel:0", "rpn_bbox_pred/bias:0"]


def small_model(num_classes=4, seed=0):
    """conv1 -> bn_conv1 -> rpn_model (nested) plus class-specific heads; every
    weight (BN moving statistics included) set to seeded random values."""
    image = keras.Input((8, 8, 3), name="input_image")
    x = KL.Conv2D(16, 3, padding="same", name="conv1")(image)
    x = backbone.BatchNorm(name="bn_conv1")(x, training=False)
    x = KL.Activation("relu")(x)
    rpn_outputs = backbone.build_rpn_model(1, 3, 16)(x)
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


def to_np(variable):
    return np.asarray(variable.numpy())


def values(layer):
    return [to_np(w) for w in layer.weights]


def assert_layers_equal(a, b, names):
    for name in names:
        for x, y in zip(values(a.get_layer(name)), values(b.get_layer(name))):
            np.testing.assert_array_equal(x, y, err_msg=name)


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

    monkeypatch.setattr(weights, "_write_layer_group", failing)
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
    native = tmp_path / "model.weights.h5"
    model.save_weights(native)  # Keras 3's own format
    with pytest.raises(weights.WeightsFileError, match="Keras 3 native weights file"):
        weights.load_weights(model, native)


@pytest.mark.parametrize("app_name, ours", [
    ("conv1_conv", "conv1"), ("conv1_bn", "bn_conv1"),
    ("conv2_block1_0_conv", "res2a_branch1"), ("conv2_block1_0_bn", "bn2a_branch1"),
    ("conv3_block2_1_conv", "res3b_branch2a"), ("conv4_block6_2_bn", "bn4f_branch2b"),
    ("conv4_block23_3_conv", "res4w_branch2c"), ("conv5_block3_3_bn", "bn5c_branch2c"),
    ("conv1_pad", None), ("pool1_pool", None), ("conv2_block1_add", None),
    ("conv2_block1_1_relu", None), ("conv3_block2_out", None), ("input_1", None),
    ("conv4_block27_1_conv", None), ("post_bn", None)])
def test_imagenet_layer_name(app_name, ours):
    assert weights.imagenet_layer_name(app_name) == ours


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    """Keras Applications ResNet50 (random init) written in the legacy layout."""
    app = keras.applications.ResNet50(weights=None, include_top=False,
                                      input_shape=(64, 64, 3))
    path = tmp_path_factory.mktemp("imagenet") / "resnet50_notop.h5"
    write_legacy(path, model_groups(app))
    return app, path


@pytest.fixture(scope="module")
def our_resnet50():
    image = keras.Input((64, 64, 3), name="input_image")
    C1, C2, C3, C4, C5 = backbone.resnet_graph(image, "resnet50", stage5=True)
    P = backbone.fpn_graph(C2, C3, C4, C5, 8)
    return keras.Model(image, P)


def test_load_imagenet_weights(imagenet_file, our_resnet50):
    app, path = imagenet_file
    model = our_resnet50
    fpn_before = values(model.get_layer("fpn_p2"))
    report = weights.load_imagenet_weights(model, path, "resnet50")
    np.testing.assert_array_equal(to_np(model.get_layer("res3b_branch2a").weights[0]),
                                  to_np(app.get_layer("conv3_block2_1_conv").weights[0]))
    np.testing.assert_array_equal(to_np(model.get_layer("bn_conv1").weights[0]),
                                  to_np(app.get_layer("conv1_bn").weights[0]))
    np.testing.assert_array_equal(to_np(model.get_layer("bn4a_branch1").weights[3]),
                                  to_np(app.get_layer("conv4_block1_0_bn").weights[3]))
    backbone_layers = [l.name for l in model.layers
                       if l.weights and (l.name.startswith(("res", "bn")) or l.name == "conv1")]
    assert len(backbone_layers) == 106  # 53 convolutions, 53 batch norms
    assert sorted(report.loaded) == sorted(backbone_layers) and report.missing == []
    for x, y in zip(fpn_before, values(model.get_layer("fpn_p2"))):
        np.testing.assert_array_equal(x, y)


def test_reference_style_imagenet_load_by_name(imagenet_file, our_resnet50):
    """The reference did load_weights(get_imagenet_weights(), by_name=True)."""
    app, path = imagenet_file
    layer = our_resnet50.get_layer("res5c_branch2c")
    layer.weights[0].assign(np.zeros(tuple(layer.weights[0].shape), "float32"))
    report = weights.load_weights(our_resnet50, path, by_name=True, exclude=["conv1"])
    assert len(report.loaded) == 105 and report.skipped == ["conv1"]
    np.testing.assert_array_equal(to_np(layer.weights[0]),
                                  to_np(app.get_layer("conv5_block3_3_conv").weights[0]))


def test_imagenet_architecture_mismatch_and_foreign_file(tmp_path, our_resnet50):
    kernel = [("k/kernel:0", np.zeros((1, 1, 1, 1), "float32"))]
    resnet101 = tmp_path / "resnet101_notop.h5"
    write_legacy(resnet101, [("conv4_block{}_1_conv".format(b), kernel) for b in range(1, 24)])
    with pytest.raises(ValueError, match="resnet101 ImageNet weights .*conv4_block23.* model "
                                         "is resnet50 .*res4f"):
        weights.load_imagenet_weights(our_resnet50, resnet101, "resnet50")
    with pytest.raises(ValueError, match="architecture='resnet101' but the model is resnet50"):
        weights.load_imagenet_weights(our_resnet50, resnet101, "resnet101")
    foreign = tmp_path / "vgg.h5"
    write_legacy(foreign, [("block1_conv1", kernel), ("fc1", kernel)])
    with pytest.raises(ValueError, match="No layer in .*vgg.h5 matches"):
        weights.load_imagenet_weights(our_resnet50, foreign, "resnet50")


def test_get_imagenet_weights(tmp_path):
    source = tmp_path / "mirror.h5"
    write_legacy(source, [("conv1_conv", [("conv1_conv/kernel:0", np.ones(3, "float32"))])])
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    path = weights.get_imagenet_weights("resnet101", cache_dir=str(cache),
                                        url=source.as_uri(), file_hash=md5)
    assert path == str(cache / "models" / "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5")
    assert open(path, "rb").read() == source.read_bytes()

    url = "http://127.0.0.1:9/x.h5"
    with pytest.raises(WeightsDownloadError, match="(?s)127.0.0.1:9/x.h5.*place it at .*"
                                                   "resnet50_weights_tf_dim_ordering"):
        weights.get_imagenet_weights("resnet50", cache_dir=str(tmp_path / "c2"), url=url)
    with pytest.raises(ValueError, match="resnet152.*resnet101, resnet50"):
        weights.get_imagenet_weights("resnet152")


def test_long_name_lists_are_chunked_like_keras2(tmp_path):
    """Attributes over the 64 KiB HDF5 header limit are split into names0, names1, ..."""
    names = ["res4{}_branch2a_with_a_long_name_{:05d}".format("x", i) for i in range(3000)]
    with h5py.File(tmp_path / "a.h5", "w") as f:
        weights._write_names_attr(f, "layer_names", names)
        assert "layer_names" not in f.attrs and "layer_names1" in f.attrs
        assert weights._read_names_attr(f, "layer_names") == names
        weights._write_names_attr(f, "short", ["conv1"])
        assert weights._read_names_attr(f, "short") == ["conv1"]
        assert weights._read_names_attr(f, "absent") is None
