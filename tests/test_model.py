"""End-to-end tests of mrcnn.model.MaskRCNN on tiny configurations:
layer names, training, checkpoints and resume, detection, saving, weight
loading, layer presets and run_graph."""
import json
import os
import re

import keras
import numpy as np
import pytest

from mrcnn import model as modellib
from mrcnn import utils, weights
from tiny_models import (TinyConfig, TinyInferenceConfig, shapes_dataset)

CLASS_SPECIFIC = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"]


@pytest.fixture(scope="module")
def datasets():
    return shapes_dataset(8, seed=1), shapes_dataset(4, seed=2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, datasets):
    """A tiny model trained for 2 epochs of 2 steps; shared by several tests."""
    model_dir = str(tmp_path_factory.mktemp("logs"))
    model = modellib.MaskRCNN("training", TinyConfig(), model_dir)
    history = model.train(datasets[0], datasets[1], 0.01, epochs=2, layers="all", verbose=0)
    return model, history, model_dir


@pytest.fixture(scope="module")
def inference(trained):
    model, _, model_dir = trained
    infer = modellib.MaskRCNN("inference", TinyInferenceConfig(), model_dir)
    infer.load_weights(infer.find_last(), by_name=True)
    return infer


# ---------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------

DESIGN_NAMES = (
    ["conv1", "bn_conv1", "res2a_branch2a", "bn2a_branch2a", "res2a_branch1", "bn2a_branch1",
     "res4f_branch2c", "res5c_branch2c", "bn5c_branch2c",
     "fpn_c5p5", "fpn_c4p4", "fpn_c3p3", "fpn_c2p2", "fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5",
     "rpn_model", "rpn_conv_shared", "rpn_class_raw", "rpn_bbox_pred",
     "mrcnn_class_conv1", "mrcnn_class_bn1", "mrcnn_class_conv2", "mrcnn_class_bn2",
     "mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask_deconv", "mrcnn_mask",
     "ROI", "roi_align_classifier", "roi_align_mask", "rpn_class",
     "rpn_bbox", "mrcnn_class", "mrcnn_bbox", "input_image", "input_image_meta",
     "input_anchors"]
    + ["mrcnn_mask_conv{}".format(i) for i in range(1, 5)]
    + ["mrcnn_mask_bn{}".format(i) for i in range(1, 5)])
# rpn_class_logits feeds only the loss, so (as in the original) the inference
# graph does not contain it.
TRAINING_ONLY = ["rpn_class_logits", "proposal_targets", "output_rois", "rpn_class_loss", "rpn_bbox_loss",
                 "mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss", "input_rpn_match",
                 "input_rpn_bbox", "input_gt_class_ids", "input_gt_boxes", "input_gt_masks"]


class Resnet50Config(TinyConfig):
    BACKBONE = "resnet50"
    COMPUTE_BACKBONE_SHAPE = None
    TRAIN_BN = False


@pytest.fixture(scope="module")
def resnet_training_model(tmp_path_factory):
    return modellib.MaskRCNN("training", Resnet50Config(), str(tmp_path_factory.mktemp("r")))


def test_every_design_name_resolves(resnet_training_model, tmp_path):
    training = resnet_training_model.keras_model
    for name in DESIGN_NAMES + TRAINING_ONLY:
        assert training.get_layer(name).name == name
    infer = modellib.MaskRCNN("inference", Resnet50Config(), str(tmp_path)).keras_model
    for name in DESIGN_NAMES + ["mrcnn_detection"]:
        assert infer.get_layer(name).name == name
    assert [t.name for t in infer.inputs] == ["input_image", "input_image_meta", "input_anchors"]
    with pytest.raises(ValueError, match="No such layer"):
        infer.get_layer("proposal_targets")


# ---------------------------------------------------------------------------
# Layer presets
# ---------------------------------------------------------------------------

def _weighted_layers(model):
    names = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            names += _weighted_layers(layer)
        elif layer.weights:
            names.append(layer.name)
    return names


@pytest.mark.parametrize("preset, expected", [
    ("heads", r"(mrcnn_|rpn_|fpn_).*"),
    ("5+", r"(res5|bn5|mrcnn_|rpn_|fpn_).*"),
    ("4+", r"(res[45]|bn[45]|mrcnn_|rpn_|fpn_).*"),
    ("3+", r"(res[345]|bn[345]|mrcnn_|rpn_|fpn_).*"),
    ("all", r".*"),
    (r"res4.*", r"res4.*"),
])
def test_layer_presets_select_exactly(resnet_training_model, preset, expected):
    model = resnet_training_model
    regex = model.layer_presets().get(preset, preset)
    trained = set(model.set_trainable(regex, verbose=0))
    all_layers = _weighted_layers(model.keras_model)
    # TRAIN_BN=False: batch norm layers (bn*, mrcnn_*_bn*) stay frozen.
    is_bn = re.compile(r"(bn.*)|(mrcnn_.*_bn\d)")
    want = {n for n in all_layers if re.fullmatch(expected, n) and not is_bn.fullmatch(n)}
    assert trained == want
    trainable = {v.path for v in model.keras_model.trainable_variables}
    for name in all_layers:
        layer = model.keras_model.get_layer(name)
        assert layer.trainable == (name in want), name
        assert all((v.path in trainable) == (name in want) for v in layer.trainable_weights
                   if layer.trainable)
    # The rpn layers inside the nested model follow the regex too.
    assert ("rpn_conv_shared" in trained) == bool(re.fullmatch(expected, "rpn_conv_shared"))


def test_layer_preset_regex_is_full_match(resnet_training_model):
    # "res4" alone matches no layer name completely.
    assert resnet_training_model.set_trainable("res4", verbose=0) == []


# ---------------------------------------------------------------------------
# Training, checkpoints, resume
# ---------------------------------------------------------------------------

def test_training_writes_checkpoints_and_config(trained):
    model, history, model_dir = trained
    assert set(history.history) >= {
        "loss", "rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss",
        "mrcnn_mask_loss", "val_loss", "val_mrcnn_mask_loss"}
    assert all(np.isfinite(v).all() for v in history.history.values())
    assert re.fullmatch(r"tiny\d{8}T\d{4}", os.path.basename(model.log_dir))
    files = sorted(os.listdir(model.log_dir))
    assert "mask_rcnn_tiny_0001.h5" in files and "mask_rcnn_tiny_0002.h5" in files
    saved = json.load(open(os.path.join(model.log_dir, "config.json")))
    assert saved["NAME"] == "tiny" and saved["NUM_CLASSES"] == 4
    assert model.epoch == 2
    assert model.find_last() == os.path.join(model.log_dir, "mask_rcnn_tiny_0002.h5")


def test_resume_continues_epoch_count(trained, datasets, tmp_path):
    model, _, model_dir = trained
    last = model.find_last()
    resumed = modellib.MaskRCNN("training", TinyConfig(), model_dir)
    resumed.load_weights(last, by_name=True)
    assert resumed.epoch == 2 and resumed.log_dir == model.log_dir
    for a, b in zip(resumed.keras_model.weights, model.keras_model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    history = resumed.train(datasets[0], datasets[1], 0.01, epochs=3, layers="heads", verbose=0)
    assert history.epoch == [2]
    assert resumed.epoch == 3
    # The learning-rate schedule resumed at step 2 epochs * 2 steps, not 0.
    assert int(resumed.keras_model.optimizer.iterations.numpy()) == 3 * TinyConfig.STEPS_PER_EPOCH
    assert resumed.find_last().endswith("mask_rcnn_tiny_0003.h5")


def test_find_last_skips_runs_without_checkpoints(trained, tmp_path):
    model, _, model_dir = trained
    # A newer run that crashed before its first checkpoint, holding a
    # temporary file of an interrupted save.
    empty = os.path.join(model_dir, "tiny29991231T2359")
    os.makedirs(empty, exist_ok=True)
    open(os.path.join(empty, ".mask_rcnn_tiny_0001.h5.tmp"), "w").close()
    assert os.path.dirname(model.find_last()) == model.log_dir
    with pytest.raises(FileNotFoundError, match="model directory"):
        modellib.MaskRCNN("inference", TinyInferenceConfig(), str(tmp_path)).find_last()


def test_loss_falls_on_a_repeated_batch(datasets, tmp_path):
    keras.utils.set_random_seed(3)
    model = modellib.MaskRCNN("training", TinyConfig(), str(tmp_path))
    batch = next(iter(model.training_dataset(datasets[0], seed=0)))
    model.set_trainable(".*", verbose=0)
    model.compile(0.02)
    losses = [float(model.keras_model.train_on_batch(batch, return_dict=True)["loss"])
              for _ in range(25)]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:3]), losses


def test_train_rejects_inference_model(inference, datasets):
    with pytest.raises(ValueError, match="mode='training'"):
        inference.train(datasets[0], datasets[1], 0.01, 1, "heads")


# ---------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------

def _check_result(result, image):
    h, w = image.shape[:2]
    n = len(result["class_ids"])
    assert result["rois"].dtype == np.int32 and result["rois"].shape == (n, 4)
    assert result["class_ids"].dtype == np.int32
    assert result["scores"].dtype == np.float32 and result["scores"].shape == (n,)
    assert result["masks"].dtype == bool and result["masks"].shape == (h, w, n)
    assert np.all((result["class_ids"] >= 1) & (result["class_ids"] < 4))
    assert np.all(result["rois"][:, :2] >= 0)
    assert np.all(result["rois"][:, 2] <= h) and np.all(result["rois"][:, 3] <= w)


def test_detect_any_number_of_images_of_any_size(inference):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, size, dtype=np.uint8)
              for size in [(128, 128, 3), (96, 160, 3), (200, 80, 3)]]
    for count in (1, 2, 3):
        results = inference.detect(images[:count])
        assert len(results) == count
        for result, image in zip(results, images):
            _check_result(result, image)
    # Batched results equal one-by-one results.
    alone = inference.detect([images[2]])[0]
    batched = inference.detect(images)[2]
    for key in ("rois", "class_ids", "masks"):
        np.testing.assert_array_equal(alone[key], batched[key])
    np.testing.assert_allclose(alone["scores"], batched["scores"], rtol=1e-5)


def test_detect_pad64_mixes_molded_shapes(trained, tmp_path):
    class Pad64(TinyInferenceConfig):
        IMAGE_RESIZE_MODE = "pad64"
        IMAGES_PER_GPU = 2
    infer = modellib.MaskRCNN("inference", Pad64(), trained[2])
    infer.load_weights(trained[0].find_last(), by_name=True)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, s, dtype=np.uint8)
              for s in [(64, 64, 3), (100, 70, 3), (64, 64, 3)]]
    results = infer.detect(images)
    for result, image in zip(results, images):
        _check_result(result, image)


def test_detect_rejects_bad_images(inference):
    with pytest.raises(ValueError, match=r"shape \[height, width, 3\]"):
        inference.detect([np.zeros((32, 32, 5), np.uint8)])
    with pytest.raises(ValueError, match=r"16-bit"):
        inference.detect([np.full((32, 32, 3), 4000, np.uint16)])
    with pytest.raises(ValueError, match="NaN or Inf"):
        inference.detect([np.full((32, 32, 3), np.nan, np.float32)])


def _assert_same_detections(a, b):
    for key in ("rois", "class_ids", "masks"):
        np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_allclose(a["scores"], b["scores"], rtol=1e-5)


def test_detect_converts_rgba_and_single_channel_images(inference, caplog):
    """RGBA and [H, W, 1] images are converted as Dataset.load_image converts
    files (alpha dropped, gray repeated), each kind logged once."""
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 255, (96, 80, 3), dtype=np.uint8)
    rgba = np.dstack([rgb, rng.integers(0, 255, (96, 80), dtype=np.uint8)])
    gray = rng.integers(0, 255, (96, 80, 1), dtype=np.uint8)
    with caplog.at_level("WARNING", logger="mrcnn.data"):
        caplog.clear()
        _assert_same_detections(inference.detect([rgba])[0], inference.detect([rgb])[0])
        inference.detect([rgba])
        alpha_logs = [r for r in caplog.records if "alpha" in r.getMessage()]
        assert len(alpha_logs) <= 1  # once per process (an earlier test may have logged it)
    expected = inference.detect([np.repeat(gray, 3, axis=2)])[0]
    _assert_same_detections(inference.detect([gray])[0], expected)
    _assert_same_detections(inference.detect([gray[:, :, 0]])[0], expected)
    result = inference.detect([np.dstack([gray, gray])])[0]  # gray + alpha
    _assert_same_detections(result, expected)
    assert result["masks"].shape[:2] == (96, 80)


@pytest.mark.parametrize("shape", [(2000, 16, 3), (16, 2000, 3), (1, 1, 3), (1, 5000, 3),
                                   (3, 1, 3), (1, 2, 3)])
def test_detect_degenerate_image_shapes(inference, shape):
    """Thin and tiny images return results at their own size (a window one
    pixel thick made the reference divide 0 by 0)."""
    image = np.random.default_rng(6).integers(0, 255, shape, dtype=np.uint8)
    result = inference.detect([image])[0]
    _check_result(result, image)
    assert np.all(result["rois"][:, 2] >= result["rois"][:, 0])
    assert np.all(result["rois"][:, 3] >= result["rois"][:, 1])


def test_unmold_detections_on_a_one_pixel_thick_window(inference):
    # 2000 x 16 molded into 64 x 64: the image is one column (x 31..32). A
    # detection there covers the whole width of the original (the
    # reference divided 0 by 0 and failed in denorm_boxes).
    image, window, _, _, _ = utils.resize_image(np.zeros((2000, 16, 3), np.uint8),
                                                min_dim=64, max_dim=64)
    detections = np.zeros((8, 6), np.float32)
    detections[0] = list(utils.norm_boxes(np.array([[16, 31, 32, 32]]), (64, 64))[0]) + [2, 0.9]
    masks = np.ones((8, 28, 28, 4), np.float32)
    rois, class_ids, scores, full = inference.unmold_detections(
        detections, masks, (2000, 16, 3), image.shape, window)
    np.testing.assert_array_equal(rois, [[508, 0, 985, 16]])
    assert class_ids.tolist() == [2] and full.shape == (2000, 16, 1)
    assert full[508:985, :, 0].all() and full.sum() == (985 - 508) * 16


def test_unmold_detections_maps_to_original_pixels(inference):
    # A 64 px molded image holding a 32x64 original scaled by 1 and padded
    # vertically by 16 px: window (16, 0, 48, 64).
    detections = np.zeros((8, 6), np.float32)
    box = utils.norm_boxes(np.array([[20, 8, 40, 40]]), (64, 64))[0]
    detections[0] = list(box) + [2, 0.9]
    masks = np.zeros((8, 28, 28, 4), np.float32)
    masks[0, :, :, 2] = 1.0
    rois, class_ids, scores, full = inference.unmold_detections(
        detections, masks, (32, 64, 3), (64, 64, 3), [16, 0, 48, 64])
    np.testing.assert_array_equal(rois, [[4, 8, 24, 40]])
    np.testing.assert_array_equal(class_ids, [2])
    assert full.shape == (32, 64, 1) and full[4:24, 8:40, 0].all() and full.sum() == 20 * 32


def test_unmold_detections_masks_match_per_instance_unmold_mask(inference):
    # Several overlapping instances, one reaching past the image edge, against
    # the straightforward stack of utils.unmold_mask results.
    rng = np.random.default_rng(3)
    pixel_boxes = np.array([[2, 3, 30, 40], [10, 10, 50, 60], [0, 0, 64, 64], [40, 50, 70, 80]])
    detections = np.zeros((6, 6), np.float32)
    detections[:4, :4] = utils.norm_boxes(pixel_boxes, (64, 64))
    detections[:4, 4] = [1, 3, 2, 1]
    detections[:4, 5] = [0.9, 0.8, 0.7, 0.6]
    masks = rng.random((6, 28, 28, 4)).astype(np.float32)
    rois, class_ids, _, full = inference.unmold_detections(
        detections, masks, (64, 64, 3), (64, 64, 3), [0, 0, 64, 64])
    assert full.shape == (64, 64, 4) and full.dtype == bool
    expected = np.stack([utils.unmold_mask(masks[i, :, :, class_ids[i]], rois[i], (64, 64))
                         for i in range(4)], axis=-1)
    np.testing.assert_array_equal(full, expected)
    assert 0 < full[..., 3].sum() < 24 * 14  # clipped at the image edge


def test_inference_model_saves_and_reloads_with_identical_detections(inference, tmp_path):
    path = str(tmp_path / "mask_rcnn.keras")
    inference.keras_model.save(path)
    reloaded = keras.saving.load_model(path)  # safe mode: no lambdas, no pickles
    image = np.random.default_rng(5).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    before = inference.detect([image])[0]
    inference.keras_model, original = reloaded, inference.keras_model
    inference._predict_fn = None
    try:
        after = inference.detect([image])[0]
    finally:
        inference.keras_model, inference._predict_fn = original, None
    for key in ("rois", "class_ids", "scores", "masks"):
        np.testing.assert_array_equal(before[key], after[key])


# ---------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------

def test_class_count_change_needs_exclude(trained, tmp_path):
    class FiveClasses(TinyInferenceConfig):
        NUM_CLASSES = 5
    # The epoch-2 checkpoint holds the weights of trained[0].keras_model.
    last = os.path.join(trained[0].log_dir, "mask_rcnn_tiny_0002.h5")
    model = modellib.MaskRCNN("inference", FiveClasses(), str(tmp_path))
    before = [v.numpy() for v in model.keras_model.weights]
    with pytest.raises(weights.WeightsMismatchError) as error:
        model.load_weights(last, by_name=True)
    for name in CLASS_SPECIFIC:
        assert name in str(error.value)
    assert "exclude" in str(error.value)
    for a, b in zip(before, model.keras_model.weights):
        np.testing.assert_array_equal(a, b.numpy())  # nothing half-loaded
    model.load_weights(last, by_name=True, exclude=CLASS_SPECIFIC + ["mrcnn_bbox"])
    source = trained[0].keras_model
    for name in ("tiny_c3", "rpn_conv_shared", "mrcnn_mask_conv2", "mrcnn_class_conv1"):
        for a, b in zip(model.keras_model.get_layer(name).weights,
                        source.get_layer(name).weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(
        model.keras_model.get_layer("mrcnn_mask").weights[0].numpy(),
        before[[v.path for v in model.keras_model.weights].index(
            model.keras_model.get_layer("mrcnn_mask").weights[0].path)])


# ---------------------------------------------------------------------------
# Inspection
# ---------------------------------------------------------------------------

def test_run_graph_notebook_idiom(inference):
    model = inference
    config = model.config
    image = np.random.default_rng(7).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    pillar = model.keras_model.get_layer("ROI").output
    outputs = model.run_graph([image], [
        ("rpn_class", model.keras_model.get_layer("rpn_class").output),
        ("pre_nms_anchors", model.ancestor(pillar, "ROI/pre_nms_anchors:0")),
        ("refined_anchors", model.ancestor(pillar, "ROI/refined_anchors:0")),
        ("refined_anchors_clipped", model.ancestor(pillar, "ROI/refined_anchors_clipped:0")),
        ("post_nms_anchor_ix", model.ancestor(pillar, "ROI/rpn_non_max_suppression:0")),
        ("proposals", model.keras_model.get_layer("ROI").output),
        ("mrcnn_class", model.keras_model.get_layer("mrcnn_class").output),
        ("mrcnn_bbox", model.keras_model.get_layer("mrcnn_bbox").output),
        ("mrcnn_mask", model.keras_model.get_layer("mrcnn_mask").output),
        ("detections", model.keras_model.get_layer("mrcnn_detection").output),
    ])
    anchors = len(model.get_anchors(config.IMAGE_SHAPE))
    n, c, dmi = config.POST_NMS_ROIS_INFERENCE, config.NUM_CLASSES, \
        config.DETECTION_MAX_INSTANCES
    assert outputs["rpn_class"].shape == (1, anchors, 2)
    assert outputs["proposals"].shape == (1, n, 4)
    assert outputs["mrcnn_class"].shape == (1, n, c)
    assert outputs["mrcnn_bbox"].shape == (1, n, c, 4)
    assert outputs["detections"].shape == (1, dmi, 6)
    # The mask head runs on the detected slots only (at least one).
    found = int((outputs["detections"][0, :, 4] > 0).sum())
    assert outputs["mrcnn_mask"].shape == (1, max(found, 1), 28, 28, c)
    k = min(config.PRE_NMS_LIMIT, anchors)
    assert outputs["pre_nms_anchors"].shape == (1, k, 4)
    # The kept indices pick the proposals out of the clipped boxes.
    keep = outputs["post_nms_anchor_ix"][0]
    keep = keep[keep >= 0]
    np.testing.assert_allclose(outputs["refined_anchors_clipped"][0][keep],
                               outputs["proposals"][0][:len(keep)], atol=1e-6)
    # Pre-NMS anchors are anchors of the model, in normalised coordinates.
    normalised = model.get_anchors(config.IMAGE_SHAPE)
    assert np.isin(outputs["pre_nms_anchors"][0][:, 0], normalised[:, 0]).all()
    assert model.ancestor(pillar, "no/such/tensor:0") is None


def test_masks_of_detections_equal_the_mask_head_on_every_slot(trained, inference):
    """The inference graph runs the mask head on the detected slots only;
    each detection's mask equals the mask head's layers applied, one by
    one, to all DETECTION_MAX_INSTANCES boxes (the reference's graph), and
    the slots without a detection are zero."""
    import tensorflow as tf

    image = shapes_dataset(1, seed=5).load_image(0)
    # A confidence threshold that keeps the two best of the full slots.
    scores = np.sort(inference.detect([image])[0]["scores"])[::-1]
    assert len(scores) == inference.config.DETECTION_MAX_INSTANCES

    class FewDetections(TinyInferenceConfig):
        DETECTION_MIN_CONFIDENCE = float(scores[1] + scores[2]) / 2

    _, _, model_dir = trained
    model = modellib.MaskRCNN("inference", FewDetections(), model_dir)
    model.load_weights(model.find_last(), by_name=True)
    keras_model = model.keras_model
    molded, metas, _ = model.mold_inputs([image])
    levels = ["fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5"]
    outputs = model.run_graph([image], [(name, keras_model.get_layer(name).output)
                                        for name in levels + ["mrcnn_detection"]])
    detections = outputs["mrcnn_detection"]
    found = int((detections[0, :, 4] > 0).sum())
    slots = model.config.DETECTION_MAX_INSTANCES
    assert found == 2, found
    x = keras_model.get_layer("roi_align_mask")(
        [tf.constant(detections[..., :4]), tf.constant(metas, tf.float32)]
        + [tf.constant(outputs[name]) for name in levels])
    for i in range(1, 5):
        x = keras_model.get_layer("mrcnn_mask_conv{}".format(i))(x)
        x = tf.nn.relu(keras_model.get_layer("mrcnn_mask_bn{}".format(i))(x, training=False))
    x = keras_model.get_layer("mrcnn_mask")(keras_model.get_layer("mrcnn_mask_deconv")(x))
    masks = keras_model.predict_on_batch(model.inference_inputs(molded, metas))[3]
    assert masks.shape == (1, slots, 28, 28, model.config.NUM_CLASSES)
    np.testing.assert_allclose(masks[0, :found], x.numpy()[0, :found], atol=1e-5)
    assert not masks[0, found:].any()


def test_trainable_layer_helpers(inference):
    layers = inference.get_trainable_layers()
    names = [layer.name for layer in layers]
    assert "mrcnn_mask_conv1" in names and "rpn_model" in names
    assert all(layer.weights for layer in layers)


# ---------------------------------------------------------------------------
# Multi-device training
# ---------------------------------------------------------------------------

DISTRIBUTED_SCRIPT = r"""
import json, sys
import tensorflow as tf
tf.config.threading.set_inter_op_parallelism_threads(16)
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, sys.argv[2])
from tiny_models import TinyConfig, shapes_dataset
from mrcnn import model as modellib

class TwoDevices(TinyConfig):
    GPU_COUNT = 2
    IMAGES_PER_GPU = 1

model = modellib.MaskRCNN("training", TwoDevices(), sys.argv[1])
data = shapes_dataset(4, seed=1)
history = model.train(data, data, 0.01, epochs=1, layers="all", verbose=0)
print(json.dumps({"replicas": model.strategy.num_replicas_in_sync,
                  "devices": list(model.strategy.extended.worker_devices),
                  "loss": history.history["loss"], "checkpoint": model.find_last()}))
"""


@pytest.mark.slow
def test_gpu_count_two_trains_with_a_mirrored_strategy(tmp_path):
    import subprocess
    import sys
    script = tmp_path / "distributed.py"
    script.write_text(DISTRIBUTED_SCRIPT)
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "logs"),
                             os.path.dirname(os.path.abspath(__file__))],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2 and len(report["devices"]) == 2
    assert all(np.isfinite(report["loss"]))
    assert report["checkpoint"].endswith("mask_rcnn_tiny_0001.h5")


def test_gpu_count_beyond_devices_is_a_clear_error(tmp_path):
    class Four(TinyConfig):
        GPU_COUNT = 4
        IMAGES_PER_GPU = 1
    with pytest.raises(ValueError, match="GPU_COUNT=4 but only 0 GPU"):
        modellib.MaskRCNN("training", Four(), str(tmp_path))


def test_config_precision_wins_over_the_global_policy(tmp_path):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = modellib.MaskRCNN("inference", TinyInferenceConfig(), str(tmp_path))
        assert keras.config.dtype_policy().name == "mixed_float16"  # restored
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.keras_model.get_layer("mrcnn_mask_conv1").dtype_policy.name == "float32"


def test_bfloat16_trains_without_loss_scaling_and_detects(datasets, tmp_path):
    class Bf16(TinyConfig):
        MIXED_PRECISION = "bfloat16"

    class Bf16Inference(TinyInferenceConfig):
        MIXED_PRECISION = "bfloat16"
    model = modellib.MaskRCNN("training", Bf16(), str(tmp_path))
    km = model.keras_model
    assert km.get_layer("mrcnn_mask_conv1").dtype_policy.name == "mixed_bfloat16"
    assert {v.dtype for v in km.get_layer("mrcnn_mask_conv1").weights} == {"float32"}
    for name in ("ROI", "proposal_targets", "roi_align_mask", "mrcnn_mask_loss"):
        assert km.get_layer(name).dtype_policy.name == "float32", name
    # Every output (scores, deltas, masks, ROIs, losses) is float32.
    assert {o.dtype for o in km.outputs} == {"float32"}
    model.set_trainable(".*", verbose=0)
    model.compile(0.01)
    assert not isinstance(km.optimizer, keras.optimizers.LossScaleOptimizer)
    batch = next(iter(model.training_dataset(datasets[0], seed=0)))
    logs = km.train_on_batch(batch, return_dict=True)
    assert np.isfinite(logs["loss"])
    # Same weights in float32 and bfloat16: RPN scores agree to bfloat16's
    # precision, and detect() returns the documented types.
    bf16 = modellib.MaskRCNN("inference", Bf16Inference(), str(tmp_path))
    fp32 = modellib.MaskRCNN("inference", TinyInferenceConfig(), str(tmp_path))
    bf16.keras_model.set_weights(fp32.keras_model.get_weights())
    image = datasets[1].load_image(datasets[1].image_ids[0])
    molded, metas, _ = fp32.mold_inputs([image])
    rpn_fp32 = fp32.predict_molded(molded, metas)[5]
    rpn_bf16 = bf16.predict_molded(molded, metas)[5]
    assert rpn_bf16.dtype == np.float32
    # bfloat16 keeps 8 significant bits: with native bfloat16 arithmetic
    # (AVX512-BF16, AMX) a few scores near 0.5 move by up to ~0.06.
    diff = np.abs(rpn_bf16 - rpn_fp32)
    assert np.quantile(diff, 0.99) <= 0.03 and diff.max() <= 0.1, (np.quantile(diff, 0.99),
                                                                   diff.max())
    result = bf16.detect([image])[0]
    _check_result(result, image)


def test_mixed_precision_builds_float16_heads_and_keeps_boxes_float32(datasets, tmp_path):
    class Mixed(TinyConfig):
        MIXED_PRECISION = True
    before = keras.config.dtype_policy().name
    model = modellib.MaskRCNN("training", Mixed(), str(tmp_path))
    assert keras.config.dtype_policy().name == before  # global policy untouched
    km = model.keras_model
    assert km.get_layer("mrcnn_mask_conv1").dtype_policy.name == "mixed_float16"
    for name in ("ROI", "proposal_targets", "roi_align_mask", "mrcnn_mask_loss"):
        assert km.get_layer(name).dtype_policy.name == "float32", name
    batch = next(iter(model.training_dataset(datasets[0], seed=0)))
    model.set_trainable(".*", verbose=0)
    model.compile(0.01)
    assert isinstance(km.optimizer, keras.optimizers.LossScaleOptimizer)
    logs = km.train_on_batch(batch, return_dict=True)
    assert np.isfinite(logs["loss"])
