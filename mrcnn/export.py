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

Usage::

    model = modellib.create_model("inference", config, model_dir)
    model.load_weights(path, by_name=True)
    export_saved_model(model, "exported/")       # or model.export("exported/")

    python -m mrcnn.export --weights logs/run/mask_rcnn_run_0040.h5 --out exported/
    # (--config C.json; default: the config.json saved beside the weights)
"""

import argparse
import os
import sys

import numpy as np

OUTPUT_NAMES = ("boxes", "class_ids", "scores", "masks", "num_detections")
FORMATS = ("saved_model",)


def serving_function(model):
    """``f(images uint8 [N, H, W, 3]) -> {output name: tensor}`` running
    ``model`` (an inference-mode ModelBase) end to end in TensorFlow."""
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

    def serve(images):
        images = tf.convert_to_tensor(images, tf.uint8)
        count = tf.shape(images)[0]
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
        outputs = keras_model(inputs, training=False)
        outputs = [tf.cast(o, tf.float32) for o in tf.nest.flatten(outputs)]

        def one(index):
            per_image = [o[index] for o in outputs]
            result = model.serving_postprocess(per_image, window, molded_hw, original_hw)
            return [result[name] for name in OUTPUT_NAMES]

        signature = [tf.TensorSpec([None, 4], tf.int32), tf.TensorSpec([None], tf.int32),
                     tf.TensorSpec([None], tf.float32),
                     tf.TensorSpec([None, None, None], tf.uint8), tf.TensorSpec([], tf.int32)]
        results = tf.map_fn(one, tf.range(count), fn_output_signature=signature)
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


def export(model, path, format="saved_model"):
    """``model.export(path, format)``: see export_saved_model."""
    if format not in FORMATS:
        raise ValueError("export format must be one of {}, got {!r}".format(
            ", ".join(FORMATS), format))
    return export_saved_model(model, path)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m mrcnn.export",
        description="Export a trained model as a SavedModel that takes uint8 images of any "
                    "size and returns detections and masks at that size (serving needs only "
                    "TensorFlow).")
    parser.add_argument("--weights", required=True, metavar="PATH",
                        help="checkpoint (.h5 or .weights.h5) to export")
    parser.add_argument("--config", metavar="C.json",
                        help="the model's Config.to_json file (default: the config.json "
                             "saved beside the weights)")
    parser.add_argument("--format", default="saved_model", choices=FORMATS)
    parser.add_argument("--out", required=True, metavar="DIR", help="the SavedModel folder")
    return parser


def main(argv=None):
    """The command line; returns the exported path."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not os.path.isfile(args.weights):
        parser.error("--weights: file not found: {}".format(args.weights))
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
        path = export(model, args.out, args.format)
    except (ValueError, FileExistsError) as e:
        parser.exit(2, "{}: error: {}\n".format(parser.prog, e))
    print("Exported {} to {}".format(args.weights, path))
    return path


if __name__ == "__main__":
    from mrcnn.quiet import quiet_tensorflow
    quiet_tensorflow()
    main(sys.argv[1:])
