"""
Export an inference model as a TensorFlow SavedModel that runs
``detect()``'s whole pipeline in its graph, so serving it needs only
TensorFlow (TF Serving, ``tf.saved_model.load``), not this package.

The ``serve`` signature (also ``serving_default``) takes ``images``:
uint8 ``[N, H, W, 3]``, any size (one size per call, as a batch tensor),
and returns

* ``boxes`` ``[N, K, 4]`` int32 ``(y1, x1, y2, x2)`` pixels of the
  original image (y2, x2 exclusive),
* ``class_ids`` ``[N, K]`` int32, ``scores`` ``[N, K]`` float32,
* ``masks`` ``[N, K, H, W]`` uint8 (0/1) at the original size,
* ``num_detections`` ``[N]`` int32: the first ``num_detections`` slots of
  each image hold its detections, in ``detect()``'s order; the rest are 0.

K = DETECTION_MAX_INSTANCES. Resizing, padding and molding
(``serving.resize_image_graph``), the network, detection and un-molding
(the mode's ``serving_postprocess``) all run in the graph and give
``detect()``'s values (``tests/test_export.py``). Inputs the network takes
besides the image and its meta (Mask R-CNN's anchors) depend only on the
molded size, which IMAGE_RESIZE_MODE "square" fixes: they are stored as
constants.

TFLite (``format="tflite"``, ``export_tflite``): one file for one image
of a size fixed at export (``input_size``, default IMAGE_MAX_DIM square):
``images`` uint8 ``[1, H, W, 3]`` in, the same five outputs with N = 1 and
masks ``[1, K, H, W]``. It uses TFLite's built-in operations only (no Flex
delegate; ``mrcnn.portable`` gives the graph's other operations in built-in
form while it is traced), float32 throughout, the weights as constants.
Its detections match ``detect()``'s on images of that size: the same
classes, boxes within 1 pixel, scores within 1e-4, masks equal but for
pixels whose value is within float rounding of the 0.5 threshold (at
most 10% of each mask's pixels in ``tests/test_export.py``, whose random
weights give masks that hover around the threshold).

Usage::

    model = modellib.create_model("inference", config, model_dir)
    model.load_weights(path, by_name=True)
    export_saved_model(model, "exported/")       # or model.export("exported/")
    model.export("model.tflite", format="tflite", input_size=(480, 640))

    python -m mrcnn.export --weights logs/run/mask_rcnn_run_0040.h5 --out exported/
    # (--config C.json; default: the config.json saved beside the weights)
    python -m mrcnn.export --weights W.h5 --format tflite --input-size 480x640 --out model.tflite
"""

import argparse
import os
import sys

import numpy as np

from mrcnn import portable

OUTPUT_NAMES = ("boxes", "class_ids", "scores", "masks", "num_detections")
FORMATS = ("saved_model", "tflite")


def serving_function(model, frozen=False):
    """``f(images uint8 [N, H, W, 3]) -> {output name: tensor}`` running
    ``model`` (an inference-mode ModelBase) end to end in TensorFlow.
    ``frozen``: the weights enter the graph as constants (their values
    now) rather than as variables (TFLite)."""
    import tensorflow as tf

    from mrcnn import serving
    from mrcnn.image_meta import compose_image_meta

    config = model.config
    if model.mode != "inference":
        raise ValueError("export needs a model built in inference mode, got {!r}".format(
            model.mode))
    if config.IMAGE_RESIZE_MODE != "square":
        raise ValueError("export needs IMAGE_RESIZE_MODE 'square' (one molded size, so the "
                         "network's other inputs are constants), got {!r}; set it in the "
                         "config and export again".format(config.IMAGE_RESIZE_MODE))
    side = int(config.IMAGE_MAX_DIM)
    channels = int(config.IMAGE_CHANNEL_COUNT)
    if channels != 3:
        raise ValueError("export takes RGB images: IMAGE_CHANNEL_COUNT must be 3, got "
                         "{}".format(channels))
    # The network's inputs for one molded image; those other than the image
    # and its meta depend on the molded size only and become constants.
    molded = np.zeros((1, side, side, channels), np.float32)
    meta = compose_image_meta(0, (side, side, channels), (side, side, channels),
                              (0, 0, side, side), 1.0,
                              np.zeros([config.NUM_CLASSES], np.int32))[None]
    arrays = model.inference_inputs(molded, meta)
    names = [t.name.split(":")[0] for t in model.keras_model.inputs]
    constants = {name: tf.constant(np.asarray(a)) for name, a in zip(names, arrays)
                 if name not in ("input_image", "input_image_meta")}
    keras_model = model.keras_model
    molded_hw = tf.constant([side, side])
    if frozen:
        trainable = [tf.constant(v.numpy()) for v in keras_model.trainable_variables]
        non_trainable = [tf.constant(v.numpy()) for v in keras_model.non_trainable_variables]

    def serve(images):
        images = tf.convert_to_tensor(images, tf.uint8)
        count = images.shape[0] if images.shape[0] is not None else tf.shape(images)[0]
        original_hw = tf.shape(images)[1:3]
        molded_images, metas, window, _ = serving.resize_image_graph(images, config)
        inputs = []
        for name in names:
            if name == "input_image":
                inputs.append(molded_images)
            elif name == "input_image_meta":
                inputs.append(metas)
            else:
                value = constants[name]
                inputs.append(tf.tile(value, [count] + [1] * (len(value.shape) - 1)))
        if frozen:
            outputs, _ = keras_model.stateless_call(trainable, non_trainable, inputs,
                                                    training=False)
        else:
            outputs = keras_model(inputs, training=False)
        outputs = [tf.cast(o, tf.float32) for o in tf.nest.flatten(outputs)]

        def one(index):
            per_image = [o[index] for o in outputs]
            result = model.serving_postprocess(per_image, window, molded_hw, original_hw)
            return [result[name] for name in OUTPUT_NAMES]

        signature = [tf.TensorSpec([None, 4], tf.int32), tf.TensorSpec([None], tf.int32),
                     tf.TensorSpec([None], tf.float32),
                     tf.TensorSpec([None, None, None], tf.uint8), tf.TensorSpec([], tf.int32)]
        results = portable.map_fn(one, tf.range(count), fn_output_signature=signature)
        return dict(zip(OUTPUT_NAMES, results))

    return serve


def export_saved_model(model, path):
    """Write ``model`` (inference mode) to the folder ``path`` as a
    SavedModel with the ``serve`` / ``serving_default`` signature of the
    module docstring. An existing SavedModel there is replaced only once
    the new one is complete. Returns ``path``."""
    import shutil
    import tempfile

    import keras
    import tensorflow as tf

    serve = serving_function(model)
    archive = keras.export.ExportArchive()
    archive.track(model.keras_model)
    archive.add_endpoint(
        name="serve", fn=serve,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    if os.path.exists(path) and not os.path.isfile(os.path.join(path, "saved_model.pb")):
        if os.path.isfile(path) or os.listdir(path):
            raise FileExistsError("{} exists and is not a SavedModel; choose another --out (an "
                                  "export never overwrites other files)".format(path))
    staging = tempfile.mkdtemp(prefix=".export_", dir=parent)
    try:
        archive.write_out(staging, verbose=False)
        if os.path.exists(path):
            shutil.rmtree(path)
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging, ignore_errors=True)
    return path


def _input_size(model, input_size):
    """(height, width) of a TFLite export's input, checked."""
    if input_size is None:
        side = int(model.config.IMAGE_MAX_DIM)
        return side, side
    try:
        height, width = (int(v) for v in input_size)
    except (TypeError, ValueError):
        raise ValueError("input_size must be (height, width), got {!r}".format(input_size)) \
            from None
    if height < 1 or width < 1:
        raise ValueError("input_size must be positive, got {!r}".format(input_size))
    return height, width


def _float32_model(model):
    """``model``, or for a mixed-precision one (MIXED_PRECISION "bfloat16"
    or "float16", whose graph casts to types TFLite's built-in kernels do
    not take) a float32 model of the same configuration with its weights
    (which are float32 in both)."""
    import copy

    if model.config.dtype_policy_name() == "float32":
        return model
    config = copy.copy(model.config)
    config.MIXED_PRECISION = False
    twin = type(model)("inference", config, model.model_dir)
    twin.keras_model.set_weights(model.keras_model.get_weights())
    return twin


def export_tflite(model, path, input_size=None):
    """Write ``model`` (inference mode) to the file ``path`` as a TFLite
    model for one uint8 image of ``input_size`` (height, width; default
    IMAGE_MAX_DIM square) with the outputs of the module docstring, built
    from TFLite's built-in operations only, in float32 (a mixed-precision
    model is exported as its float32 twin). An existing file there is
    replaced only once the new one is complete; a folder is refused.
    Returns ``path``."""
    import tempfile

    import tensorflow as tf

    height, width = _input_size(model, input_size)
    model = _float32_model(model)
    serve = serving_function(model, frozen=True)
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise FileExistsError("{} is a folder; a TFLite export is one file: give --out a file "
                              "name such as model.tflite".format(path))
    function = tf.function(serve, input_signature=[
        tf.TensorSpec([1, height, width, 3], tf.uint8, name="images")])
    with portable.builtin_ops():
        concrete = function.get_concrete_function()
    # The weights are constants: the module only carries the signature.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], tf.Module())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        flatbuffer = converter.convert()
    except Exception as error:  # the converter raises its own ConverterError
        raise RuntimeError("TFLite conversion of the {} model failed: its graph has operations "
                           "that TFLite's built-in kernels lack. The TensorFlow converter "
                           "said: {}".format(model.mode_name or type(model).__name__,
                                             str(error)[-2000:])) from error
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=".export_", suffix=".tflite", dir=parent)
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(flatbuffer)
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.remove(staging)
    return path


def export(model, path, format="saved_model", input_size=None):
    """``model.export(path, format, input_size)``: ``export_saved_model``
    (``input_size`` must be None: the SavedModel takes any size) or
    ``export_tflite``."""
    if format not in FORMATS:
        raise ValueError("export format must be one of {}, got {!r}".format(
            ", ".join(FORMATS), format))
    if format == "tflite":
        return export_tflite(model, path, input_size)
    if input_size is not None:
        raise ValueError("input_size is for the TFLite format; a SavedModel takes images of "
                         "any size")
    return export_saved_model(model, path)


def _parse_size(text):
    """'480x640' or '512' -> (height, width)."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError("expected HEIGHTxWIDTH (e.g. 480x640) or one side "
                                         "(512), got {!r}".format(text))
    return tuple(values)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m mrcnn.export",
        description="Export a trained model as a SavedModel that takes uint8 images of any "
                    "size, or as a TFLite model for one image size, returning detections and "
                    "masks at that size (serving needs only TensorFlow or a TFLite runtime).")
    parser.add_argument("--weights", required=True, metavar="PATH",
                        help="checkpoint (.h5 or .weights.h5) to export")
    parser.add_argument("--config", metavar="C.json",
                        help="the model's Config.to_json file (default: the config.json "
                             "saved beside the weights)")
    parser.add_argument("--format", default="saved_model", choices=FORMATS,
                        help="saved_model (a folder; images of any size) or tflite (one file; "
                             "one image of --input-size)")
    parser.add_argument("--input-size", type=_parse_size, metavar="HxW",
                        help="tflite only: the image size the model takes (default: "
                             "IMAGE_MAX_DIM square)")
    parser.add_argument("--out", required=True, metavar="PATH",
                        help="the SavedModel folder, or the .tflite file")
    return parser


def main(argv=None):
    """The command line; returns the exported path."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not os.path.isfile(args.weights):
        parser.error("--weights: file not found: {}".format(args.weights))
    if args.input_size is not None and args.format != "tflite":
        parser.error("--input-size is for --format tflite; a SavedModel takes images of any "
                     "size")
    config_path = args.config or os.path.join(os.path.dirname(os.path.abspath(args.weights)),
                                              "config.json")
    if not os.path.isfile(config_path):
        parser.error("no configuration: {} not found; pass --config C.json (the "
                     "Config.to_json file of the trained model)".format(config_path))
    from mrcnn import model as modellib
    from mrcnn.config import Config, ConfigError
    try:
        config = Config.from_json(config_path)
        config.GPU_COUNT, config.IMAGES_PER_GPU = 1, 1
        config.validate()
    except (ConfigError, OSError, ValueError) as e:
        parser.exit(2, "{}: error: {}: {}\n".format(parser.prog, config_path, e))
    model = modellib.create_model("inference", config, os.path.dirname(args.out) or ".")
    try:
        # Weights of another mode or configuration fail here, naming the
        # layers or modes, before anything is written.
        report = model.load_weights(args.weights, by_name=True)
    except (ValueError, OSError) as e:
        parser.exit(2, "{}: error: {} does not fit the configuration {}: {}\n".format(
            parser.prog, args.weights, config_path, e))
    if report.missing:
        # An exported model must not carry untrained layers.
        parser.exit(2, "{}: error: {} does not fit the configuration {}: it has no weights "
                       "for {} layer(s) of that model ({}); pass the --config the weights "
                       "were trained with\n".format(
                           parser.prog, args.weights, config_path, len(report.missing),
                           ", ".join(report.missing[:5])
                           + (", ..." if len(report.missing) > 5 else "")))
    try:
        path = export(model, args.out, args.format, input_size=args.input_size)
    except (ValueError, FileExistsError, RuntimeError) as e:
        parser.exit(2, "{}: error: {}\n".format(parser.prog, e))
    print("Exported {} to {}".format(args.weights, path))
    return path


if __name__ == "__main__":
    from mrcnn.quiet import quiet_tensorflow
    quiet_tensorflow()
    main(sys.argv[1:])
