"""Tests for mrcnn.pretrained: ImageNet initialisation (Keras Applications
layer names, loading, architecture checks, the download) and
resolve_weights (the starting weights a command line names)."""
import hashlib
import os

import keras
import numpy as np
import pytest

from mrcnn import backbone, weights
from mrcnn.weights import pretrained
from mrcnn.utils import WeightsDownloadError
from weights_fixtures import model_groups, to_np, values, write_legacy


@pytest.mark.parametrize("app_name, ours", [
    ("conv1_conv", "conv1"), ("conv1_bn", "bn_conv1"),
    ("conv2_block1_0_conv", "res2a_branch1"), ("conv2_block1_0_bn", "bn2a_branch1"),
    ("conv3_block2_1_conv", "res3b_branch2a"), ("conv4_block6_2_bn", "bn4f_branch2b"),
    ("conv4_block23_3_conv", "res4w_branch2c"), ("conv5_block3_3_bn", "bn5c_branch2c"),
    ("conv1_pad", None), ("pool1_pool", None), ("conv2_block1_add", None),
    ("conv2_block1_1_relu", None), ("conv3_block2_out", None), ("input_1", None),
    ("conv4_block27_1_conv", None), ("post_bn", None)])
def test_imagenet_layer_name(app_name, ours):
    assert pretrained.imagenet_layer_name(app_name) == ours


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
    report = pretrained.load_imagenet_weights(model, path, "resnet50")
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


@pytest.mark.parametrize("arch, settings, head_layer", [
    ("yolact", dict(YOLACT_HEAD_CHANNELS=8, YOLACT_NUM_PROTOTYPES=4), "yolact_conf"),
    ("centernet", dict(CENTERNET_HEAD_CHANNELS=8, CENTERNET_GROUPS=4, CENTERNET_TOWER_CONVS=1),
     "centernet_class_logits"),
])
def test_the_other_modes_start_from_imagenet_weights_like_mask_rcnn(imagenet_file, tmp_path,
                                                                   arch, settings, head_layer):
    """The shared backbone: model.load_weights(get_imagenet_weights(),
    by_name=True) fills a YOLACT or CenterNet model's ResNet50 and leaves
    its heads."""
    from mrcnn import model as modellib
    from mrcnn.config import Config

    config = type("R50", (Config,), dict(NAME="r50", MODEL=arch, NUM_CLASSES=3,
                                         BACKBONE="resnet50", IMAGE_MAX_DIM=64,
                                         IMAGE_MIN_DIM=64, TOP_DOWN_PYRAMID_SIZE=8,
                                         MASK_HEAD_CHANNELS=8, **settings))()
    app, path = imagenet_file
    model = modellib.create_model("training", config, str(tmp_path))
    heads_before = values(model.keras_model.get_layer(head_layer))
    report = model.load_weights(str(path), by_name=True)
    assert len(report.loaded) == 106  # 53 convolutions, 53 batch norms
    np.testing.assert_array_equal(
        to_np(model.keras_model.get_layer("res4c_branch2b").weights[0]),
        to_np(app.get_layer("conv4_block3_2_conv").weights[0]))
    for x, y in zip(heads_before, values(model.keras_model.get_layer(head_layer))):
        np.testing.assert_array_equal(x, y)


def test_imagenet_architecture_mismatch_and_foreign_file(tmp_path, our_resnet50):
    kernel = [("k/kernel:0", np.zeros((1, 1, 1, 1), "float32"))]
    resnet101 = tmp_path / "resnet101_notop.h5"
    write_legacy(resnet101, [("conv4_block{}_1_conv".format(b), kernel) for b in range(1, 24)])
    with pytest.raises(ValueError, match="resnet101 ImageNet weights .*conv4_block23.* model "
                                         "is resnet50 .*res4f"):
        pretrained.load_imagenet_weights(our_resnet50, resnet101, "resnet50")
    with pytest.raises(ValueError, match="architecture='resnet101' but the model is resnet50"):
        pretrained.load_imagenet_weights(our_resnet50, resnet101, "resnet101")
    foreign = tmp_path / "vgg.h5"
    write_legacy(foreign, [("block1_conv1", kernel), ("fc1", kernel)])
    with pytest.raises(ValueError, match="No layer in .*vgg.h5 matches"):
        pretrained.load_imagenet_weights(our_resnet50, foreign, "resnet50")


def test_get_imagenet_weights(tmp_path):
    source = tmp_path / "mirror.h5"
    write_legacy(source, [("conv1_conv", [("conv1_conv/kernel:0", np.ones(3, "float32"))])])
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    path = pretrained.get_imagenet_weights("resnet101", cache_dir=str(cache),
                                           url=source.as_uri(), file_hash=md5)
    assert path == str(cache / "models" / "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5")
    assert open(path, "rb").read() == source.read_bytes()

    url = "http://127.0.0.1:9/x.h5"
    with pytest.raises(WeightsDownloadError, match="(?s)127.0.0.1:9/x.h5.*place it at .*"
                                                   "resnet50_weights_tf_dim_ordering"):
        pretrained.get_imagenet_weights("resnet50", cache_dir=str(tmp_path / "c2"), url=url)
    with pytest.raises(ValueError, match="resnet152.*resnet101, resnet50"):
        pretrained.get_imagenet_weights("resnet152")


# ---------------------------------------------------------------------------
# resolve_weights: what --weights / --model names
# ---------------------------------------------------------------------------

class SpecConfig:
    NAME = "shapes"
    NUM_CLASSES = 4
    BACKBONE = "resnet50"


def test_resolve_weights_none_and_path(tmp_path):
    config = SpecConfig()
    assert pretrained.resolve_weights("none", config, str(tmp_path)) == (None, None)
    assert pretrained.resolve_weights("None", config, str(tmp_path)) == (None, None)
    path = tmp_path / "w.h5"
    path.write_bytes(b"")
    assert pretrained.resolve_weights(str(path), config, str(tmp_path)) == (str(path), None)
    assert pretrained.resolve_weights(path, config, str(tmp_path)) == (str(path), None)


def test_resolve_weights_missing_file_says_what_to_give(tmp_path):
    missing = str(tmp_path / "missing.h5")
    for call in (lambda: pretrained.resolve_weights(missing, SpecConfig(), str(tmp_path)),
                 lambda: pretrained.check_weights_spec(missing)):
        with pytest.raises(FileNotFoundError) as e:
            call()
        assert "Weights file {} not found".format(missing) in str(e.value)
        assert "coco, last, imagenet, none" in str(e.value)
    for keyword in ("coco", "LAST", "imagenet", "none"):
        pretrained.check_weights_spec(keyword)      # keywords need no file


def test_resolve_weights_last(tmp_path):
    config = SpecConfig()
    with pytest.raises(FileNotFoundError) as e:
        pretrained.resolve_weights("last", config, str(tmp_path / "logs"))
    message = str(e.value)
    assert "Could not find model directory" in message and "logs" in message
    assert "no checkpoint of 'shapes'" in message and "train first" in message
    run = tmp_path / "logs" / "shapes20240101T0000"
    run.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="Could not find weight files"):
        pretrained.resolve_weights("last", config, str(tmp_path / "logs"))
    for epoch in (1, 2):
        (run / "mask_rcnn_shapes_{:04d}.h5".format(epoch)).write_bytes(b"")
    assert pretrained.resolve_weights("last", config, str(tmp_path / "logs")) == (
        str(run / "mask_rcnn_shapes_0002.h5"), None)


def test_resolve_weights_last_names_another_modes_checkpoint(tmp_path):
    """Evaluating a YOLACT run without saying so: the error names the
    checkpoint found and what to set."""
    run = tmp_path / "logs" / "shapes20240101T0000"
    run.mkdir(parents=True)
    (run / "yolact_shapes_0003.h5").write_bytes(b"")
    with pytest.raises(FileNotFoundError) as e:
        pretrained.resolve_weights("last", SpecConfig(), str(tmp_path / "logs"))
    message = str(e.value)
    assert "looked for mask_rcnn_*.h5" in message
    assert "the newest checkpoint there is of MODEL='yolact' ({})".format(
        run / "yolact_shapes_0003.h5") in message
    assert "--arch yolact" in message


def test_resolve_weights_imagenet(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(pretrained, "get_imagenet_weights",
                        lambda architecture: calls.append(architecture) or "in.h5")
    assert pretrained.resolve_weights("ImageNet", SpecConfig(), str(tmp_path)) == ("in.h5", None)
    assert calls == ["resnet50"]


def test_resolve_weights_coco(tmp_path, monkeypatch):
    config = SpecConfig()
    present = tmp_path / "mask_rcnn_coco.h5"
    present.write_bytes(b"")
    path, exclude = pretrained.resolve_weights("coco", config, str(tmp_path),
                                               coco_path=str(present))
    assert path == str(present)
    assert exclude == pretrained.COCO_CLASS_SPECIFIC_LAYERS == [
        "mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]
    exclude.append("changed")                     # a copy: the constant stays as it is
    assert "changed" not in pretrained.COCO_CLASS_SPECIFIC_LAYERS
    # COCO's own class count loads every layer.
    config.NUM_CLASSES = 81
    assert pretrained.resolve_weights("COCO", config, str(tmp_path),
                                      coco_path=str(present)) == (str(present), None)
    # Default place: ./mask_rcnn_coco.h5.
    monkeypatch.chdir(tmp_path)
    assert pretrained.resolve_weights("coco", config, "logs") == (str(present), None)


def test_resolve_weights_coco_download_and_offline(tmp_path, monkeypatch):
    target = tmp_path / "weights" / "mask_rcnn_coco.h5"

    def fetch(fname, origin, cache_dir, cache_subdir):
        with open(os.path.join(cache_dir, fname), "wb") as f:
            f.write(b"weights")

    monkeypatch.setattr(keras.utils, "get_file", fetch)
    assert pretrained.resolve_weights("coco", SpecConfig(), str(tmp_path),
                                      coco_path=str(target))[0] == str(target)
    assert target.read_bytes() == b"weights"

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    missing = tmp_path / "offline" / "mask_rcnn_coco.h5"
    with pytest.raises(WeightsDownloadError) as e:
        pretrained.resolve_weights("coco", SpecConfig(), str(tmp_path), coco_path=str(missing))
    message = str(e.value)
    assert "github.com/matterport" in message and "no network" in message
    assert "machine with internet access" in message and str(missing) in message
    assert not missing.exists() and not os.listdir(missing.parent)


def test_moved_names_still_importable_from_weights():
    from mrcnn.weights import get_imagenet_weights, resolve_weights
    assert get_imagenet_weights is pretrained.get_imagenet_weights
    assert resolve_weights is pretrained.resolve_weights
    for name in ("IMAGENET_WEIGHTS", "imagenet_layer_name", "load_imagenet_weights",
                 "WEIGHTS_KEYWORDS", "COCO_NUM_CLASSES", "COCO_CLASS_SPECIFIC_LAYERS",
                 "check_weights_spec", "load_starting_weights"):
        assert getattr(weights, name) is getattr(pretrained, name)
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        weights.no_such_name
