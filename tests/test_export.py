"""mrcnn.export: a SavedModel that does detect()'s whole pipeline in its
graph. It loads in a process that cannot import mrcnn, and its detections
equal detect()'s on images that need upscaling, downscaling and padding;
the command line and its errors."""
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from mrcnn import model as modellib
import boxes_mode  # noqa: F401  (registers boxes_only, a mode without export)
from tiny_models import TinyInferenceConfig

LOADER = textwrap.dedent("""
    import sys
    sys.modules["mrcnn"] = None          # the package must not be needed
    import numpy as np
    import tensorflow as tf
    loaded = tf.saved_model.load(sys.argv[1])
    serve = loaded.signatures["serving_default"]
    data = np.load(sys.argv[2])
    out = {}
    for key in sorted(data.files):
        result = serve(images=tf.constant(data[key]))
        for name, value in result.items():
            out[key + "/" + name] = value.numpy()
    np.savez(sys.argv[3], **out)
""")


TFLITE_LOADER = textwrap.dedent("""
    import sys
    sys.modules["mrcnn"] = None          # the package must not be needed
    import numpy as np
    import tensorflow as tf
    interpreter = tf.lite.Interpreter(model_path=sys.argv[1])
    runner = interpreter.get_signature_runner("serving_default")
    data = np.load(sys.argv[2])
    out = {}
    for key in sorted(data.files):
        for i, image in enumerate(data[key]):
            for name, value in runner(images=image[None]).items():
                out["{}/{}/{}".format(key, i, name)] = value
    np.savez(sys.argv[3], **out)
""")


class TinyCenterNet(TinyInferenceConfig):
    MODEL = "centernet"
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    CENTERNET_HEAD_CHANNELS = 8
    CENTERNET_GROUPS = 4
    CENTERNET_TOWER_CONVS = 1


class TinyYolact(TinyInferenceConfig):
    MODEL = "yolact"
    YOLACT_NUM_PROTOTYPES = 4
    YOLACT_HEAD_CHANNELS = 8


def _model(arch, tmp_path):
    config = {"mask_rcnn": TinyInferenceConfig, "centernet": TinyCenterNet,
              "yolact": TinyYolact}[arch]()
    keras.utils.set_random_seed(5)
    model = modellib.create_model("inference", config, str(tmp_path))
    if arch == "centernet":
        # Random distances give sub-pixel boxes, which are not detections:
        # start them at about a stride on each side.
        layer = model.keras_model.get_layer("centernet_box")
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel * 0.1, np.ones_like(bias)])
    if arch == "mask_rcnn":
        # Random heads call most proposals background: favour class 2 so
        # there are detections to compare.
        layer = model.keras_model.get_layer("mrcnn_class_logits")
        kernel, _ = layer.get_weights()
        layer.set_weights([kernel * 0.1, np.array([0.0, 0.5, 3.0, 0.5], np.float32)])
    return model


def _images():
    rng = np.random.default_rng(7)
    return {"square": rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8),
            "wide": rng.integers(0, 256, (1, 50, 90, 3), dtype=np.uint8),     # downscaled
            "small": rng.integers(0, 256, (2, 20, 30, 3), dtype=np.uint8)}    # upscaled, padded


def _run_without_mrcnn(path, images, tmp_path, loader=LOADER):
    data, out = str(tmp_path / "images.npz"), str(tmp_path / "out.npz")
    np.savez(data, **images)
    script = tmp_path / "load.py"
    script.write_text(loader)
    proc = subprocess.run([sys.executable, str(script), path, data, out], capture_output=True,
                          text=True, cwd=str(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(np.load(out))


@pytest.mark.parametrize("arch", ["mask_rcnn", "centernet", "yolact"])
def test_exported_model_equals_detect_without_the_package(arch, tmp_path):
    model = _model(arch, tmp_path)
    path = model.export(str(tmp_path / "exported"))
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    images = _images()
    out = _run_without_mrcnn(path, images, tmp_path)
    k = model.config.DETECTION_MAX_INSTANCES
    compared = 0
    for key, batch in images.items():
        n, h, w = batch.shape[:3]
        assert out[key + "/boxes"].shape == (n, k, 4)
        assert out[key + "/masks"].shape == (n, k, h, w)
        assert out[key + "/masks"].dtype == np.uint8
        for i, expected in enumerate(model.detect(list(batch))):
            count = int(out[key + "/num_detections"][i])
            assert count == len(expected["class_ids"]), key
            np.testing.assert_array_equal(out[key + "/class_ids"][i, :count],
                                          expected["class_ids"])
            assert np.abs(out[key + "/boxes"][i, :count] - expected["rois"]).max(initial=0) <= 1
            np.testing.assert_allclose(out[key + "/scores"][i, :count], expected["scores"],
                                       atol=1e-4)
            masks = out[key + "/masks"][i, :count].astype(bool)
            truth = np.moveaxis(expected["masks"], -1, 0)
            for got, want in zip(masks, truth):
                union = np.logical_or(got, want).sum()
                assert union == 0 or np.logical_and(got, want).sum() / union >= 0.99
            assert not out[key + "/masks"][i, count:].any()
            compared += count
    assert compared > 0, "no detections were compared"


TFLITE_SIZE = (50, 90)                   # fixed at export: downscaled and padded


def _tflite_images():
    return np.random.default_rng(3).integers(0, 256, (3,) + TFLITE_SIZE + (3,), dtype=np.uint8)


def _assert_same_detections(got, expected):
    """One image's exported outputs (batch axis removed) against detect()'s
    result: the same classes in order, boxes within 1 pixel, scores within
    1e-4, each mask different in at most 10% of its pixels (of the union
    of both), zeros past the detections. Random weights give masks whose
    28 x 28 probabilities alternate around 0.5, so resizing them to a
    stretched box puts many pixels within rounding of the threshold: float32
    (TFLite) and float64 (detect()) interpolation decide those differently.
    Returns the number of detections compared."""
    count = int(got["num_detections"])
    assert count == len(expected["class_ids"])
    np.testing.assert_array_equal(got["class_ids"][:count], expected["class_ids"])
    assert np.abs(got["boxes"][:count] - expected["rois"]).max(initial=0) <= 1
    np.testing.assert_allclose(got["scores"][:count], expected["scores"], atol=1e-4)
    got_masks = got["masks"][:count].astype(bool)
    want_masks = np.moveaxis(expected["masks"], -1, 0)
    differ = np.logical_xor(got_masks, want_masks).sum(axis=(1, 2))
    union = np.logical_or(got_masks, want_masks).sum(axis=(1, 2))
    assert (differ <= 0.1 * union).all(), (differ, union)
    assert not got["masks"][count:].any() and not got["scores"][count:].any()
    return count


@pytest.mark.parametrize("arch", ["mask_rcnn", "centernet", "yolact"])
def test_tflite_model_matches_detect_with_builtin_ops_only(arch, tmp_path):
    """Converted with TFLite built-ins only (the converter refuses anything
    else) and run by the TFLite interpreter (its XNNPACK kernels) in a
    process without mrcnn: detect()'s detections, within the stated
    tolerance."""
    model = _model(arch, tmp_path)
    path = model.export(str(tmp_path / "model.tflite"), format="tflite",
                        input_size=TFLITE_SIZE)
    assert os.path.isfile(path)
    images = {"wide": _tflite_images()}
    out = _run_without_mrcnn(path, images, tmp_path, TFLITE_LOADER)
    k = model.config.DETECTION_MAX_INSTANCES
    compared = 0
    for i, expected in enumerate(model.detect(list(images["wide"]))):
        got = {name: out["wide/{}/{}".format(i, name)][0] for name in
               ("boxes", "class_ids", "scores", "masks", "num_detections")}
        assert got["boxes"].shape == (k, 4) and got["masks"].shape == (k,) + TFLITE_SIZE
        assert got["masks"].dtype == np.uint8 and got["class_ids"].dtype == np.int32
        compared += _assert_same_detections(got, expected)
    assert compared > 0, "no detections were compared"


def test_tflite_export_of_a_bfloat16_model_without_detections(tmp_path):
    """MIXED_PRECISION="bfloat16" (the fast setting on CPUs with bfloat16
    arithmetic) casts to types TFLite's built-ins lack: the export uses the
    float32 model of the same configuration and weights."""
    import tensorflow as tf
    config = TinyInferenceConfig()
    config.MIXED_PRECISION = "bfloat16"
    keras.utils.set_random_seed(5)
    model = modellib.create_model("inference", config, str(tmp_path))
    # Every ROI background: an image without detections, which the TFLite
    # model must return as such (empty tensors inside).
    layer = model.keras_model.get_layer("mrcnn_class_logits")
    kernel, _ = layer.get_weights()
    layer.set_weights([kernel * 0, np.array([10.0, -10.0, -10.0, -10.0], np.float32)])
    path = model.export(str(tmp_path / "bf16.tflite"), format="tflite")
    runner = tf.lite.Interpreter(model_path=path).get_signature_runner()
    image = np.random.default_rng(4).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    got = {k: v[0] for k, v in runner(images=image).items()}
    assert len(model.detect(list(image))[0]["class_ids"]) == 0
    assert int(got["num_detections"]) == 0 and got["masks"].shape[1:] == (64, 64)
    assert not got["masks"].any() and not got["boxes"].any()
    assert keras.config.dtype_policy().name == "float32"      # nothing leaked
    # What was converted: the same configuration in float32, with the
    # bfloat16 model's weights.
    from mrcnn import export
    twin = export._float32_model(model)
    assert twin is not model and twin.config.MIXED_PRECISION is False
    assert model.config.MIXED_PRECISION == "bfloat16"
    assert {v.dtype for v in twin.keras_model.weights} == {"float32"}
    assert twin.keras_model.layers[-1].compute_dtype == "float32"
    assert len(twin.keras_model.weights) == len(model.keras_model.weights)
    for a, b in zip(twin.keras_model.weights, model.keras_model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert export._float32_model(twin) is twin


def test_tflite_export_errors_keep_what_was_there(tmp_path, capsys):
    from mrcnn import export
    model = _model("mask_rcnn", tmp_path)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="is a folder; a TFLite export is one file"):
        model.export(str(folder), format="tflite")
    assert (folder / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="input_size must be positive"):
        model.export(str(tmp_path / "m.tflite"), format="tflite", input_size=(0, 64))
    with pytest.raises(ValueError, match="input_size is for the TFLite format"):
        model.export(str(tmp_path / "saved"), input_size=(64, 64))
    with pytest.raises(SystemExit):
        export.build_parser().parse_args(["--weights", "w.h5", "--out", "m.tflite",
                                          "--format", "tflite", "--input-size", "64x"])
    assert "expected HEIGHTxWIDTH" in capsys.readouterr().err
    assert export._parse_size("480x640") == (480, 640) and export._parse_size("96") == (96, 96)
    assert not os.path.exists(tmp_path / "m.tflite") and not os.path.exists(tmp_path / "saved")


def test_export_command_line(tmp_path, capsys, monkeypatch):
    from mrcnn import export
    model = _model("centernet", tmp_path)
    weights = str(tmp_path / "run" / "centernet_tiny_0001.h5")
    os.makedirs(os.path.dirname(weights))
    model.keras_model.save_weights(weights.replace(".h5", ".weights.h5"))
    os.replace(weights.replace(".h5", ".weights.h5"), weights)
    model.config.to_json(str(tmp_path / "run" / "config.json"))
    out = str(tmp_path / "served")
    assert export.main(["--weights", weights, "--out", out]) == out
    assert "Exported" in capsys.readouterr().out
    assert os.path.isfile(os.path.join(out, "saved_model.pb"))
    # Again over the same folder: replaced, not refused.
    export.main(["--weights", weights, "--out", out])
    # TFLite: the weights and configuration reach export_tflite (converting
    # is test_tflite_model_matches_detect_with_builtin_ops_only's part).
    calls = []

    def fake_tflite(model, path, input_size=None):
        calls.append((model.config.MODEL, model.keras_model.get_layer("centernet_box")
                      .get_weights()[1].tolist(), path, input_size))
        return path

    monkeypatch.setattr(export, "export_tflite", fake_tflite)
    lite = str(tmp_path / "model.tflite")
    export.main(["--weights", weights, "--format", "tflite", "--out", lite])
    export.main(["--weights", weights, "--format", "tflite", "--input-size", "48x80",
                 "--out", lite])
    trained_bias = model.keras_model.get_layer("centernet_box").get_weights()[1].tolist()
    assert calls == [("centernet", trained_bias, lite, None),
                     ("centernet", trained_bias, lite, (48, 80))]
    with pytest.raises(SystemExit):
        export.main(["--weights", weights, "--input-size", "64x64", "--out", out])
    assert "--input-size is for --format tflite" in capsys.readouterr().err
    # Errors name what is wrong and change nothing.
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit):
        export.main(["--weights", weights, "--out", str(precious)])
    assert "is not a SavedModel" in capsys.readouterr().err
    assert (precious / "notes.txt").read_text() == "keep me"
    with pytest.raises(SystemExit):
        export.main(["--weights", str(tmp_path / "missing.h5"), "--out", out])
    assert "--weights: file not found" in capsys.readouterr().err
    # Weights of another configuration: named, nothing written. A plain
    # Keras weights file lacks the model's layers...
    other = tmp_path / "other.json"
    TinyInferenceConfig().to_json(str(other))
    with pytest.raises(SystemExit):
        export.main(["--weights", weights, "--config", str(other),
                     "--out", str(tmp_path / "never")])
    err = capsys.readouterr().err
    assert "does not fit the configuration" in err and "has no weights for" in err, err
    assert "pass the --config the weights were trained with" in err
    # ...and a checkpoint of ours names its mode.
    checkpoint = str(tmp_path / "run" / "centernet_tiny_0002.h5")
    model.save_weights(checkpoint)
    with pytest.raises(SystemExit):
        export.main(["--weights", checkpoint, "--config", str(other),
                     "--out", str(tmp_path / "never")])
    err = capsys.readouterr().err
    assert "does not fit the configuration" in err and "'centernet'" in err, err
    assert "Traceback" not in err and not os.path.exists(tmp_path / "never")
    alone = tmp_path / "alone.h5"
    alone.write_bytes(b"")
    with pytest.raises(SystemExit):
        export.main(["--weights", str(alone), "--out", out])
    assert "pass --config C.json" in capsys.readouterr().err


class BoxesTiny(TinyInferenceConfig):
    MODEL = "boxes_only"
    IMAGE_MIN_DIM = IMAGE_MAX_DIM = 96


def test_unsupported_models_are_refused_with_the_reason(tmp_path):
    config = TinyInferenceConfig()
    config.IMAGE_RESIZE_MODE = "pad64"
    model = modellib.create_model("inference", config, str(tmp_path))
    with pytest.raises(ValueError, match="export needs IMAGE_RESIZE_MODE 'square'"):
        model.export(str(tmp_path / "x"))
    with pytest.raises(ValueError, match="export format must be one of saved_model"):
        _model("mask_rcnn", tmp_path).export(str(tmp_path / "x"), format="onnx")
    with pytest.raises(NotImplementedError, match="BoxesOnly cannot be exported yet"):
        modellib.create_model("inference", BoxesTiny(), str(tmp_path)).export(
            str(tmp_path / "y"))
    assert not os.path.exists(tmp_path / "y") and not os.path.exists(tmp_path / "x")
