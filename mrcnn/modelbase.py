"""
What every model mode shares, and what each one must provide.

``ModelBase`` holds log directories and checkpoints, weight loading, layer
selection, the ``train()`` loop, input molding (``mrcnn.transform``) and
the ``detect()`` contract. A model mode is a subclass that declares:

========================  ===================================================
``LOSS_NAMES``            names of the scalar loss outputs its training
                          graphs can have (``LossLayer`` names; a config
                          may train a subset); at least one
``DEFAULT_LOSS_WEIGHTS``  ``{loss name: weight}``; ``Config.LOSS_WEIGHTS``
                          entries for these names override them
``CHECKPOINT_PREFIX``     checkpoint file prefix (``mask_rcnn`` ->
                          ``mask_rcnn_<name>_0001.h5``); ``find_last()`` and
                          ``--weights last`` look for this prefix only
``HEADS_REGEX``           the layers ``train(layers="heads")`` trains
``CLASS_SPECIFIC_LAYERS`` layers whose shapes follow NUM_CLASSES: excluded
                          when fine-tuning on another class count
``SIZE_DIVISOR``          molded image sides must be multiples of it
``HAS_COCO_WEIGHTS``      True when ``--weights coco`` has a released file
``CONFIG_DEFAULTS``       ``{Config attribute: value}``: the mode's own
                          defaults, used where a config leaves the base
                          (Mask R-CNN) default untouched; LOSS_WEIGHTS
                          defaults to DEFAULT_LOSS_WEIGHTS
========================  ===================================================

and implements the hooks (the base versions raise NotImplementedError
naming the hook):

* ``validate_config(config, add)`` (classmethod): the mode's own rules;
  ``Config.validate()`` calls it, ``add(message)`` reports a problem. Call
  ``super()``: the base checks ``LOSS_WEIGHTS`` against ``LOSS_NAMES``;
* ``build(mode, config)`` -> a ``training.DetectionModel``; in training mode
  its outputs include the ``LOSS_NAMES`` losses;
* ``training_signature()`` and ``training_sample(dataset, image_id,
  augmentation)``: the target builder the tf.data pipeline calls, NumPy
  arrays per image; ``training_constants(image_shape)``: inputs shared by
  every image (e.g. anchors; default none). Targets that depend on the
  network's own predictions (proposal sampling, Hungarian matching) are
  computed in the graph instead, by layers between the inputs and the
  ``LossLayer``: both places need nothing special;
* ``inference_inputs(molded_images, image_metas)`` -> the inference
  model's inputs; ``postprocess(outputs, index, original_shape,
  molded_shape, window)`` -> ``(rois, class_ids, scores, masks)`` of one
  image in original-image pixels (``mrcnn.transform`` maps boxes back and
  pastes masks).

The class attributes are checked when a mode class is created (a class
that implements ``build``), so a mistake fails at import with the
attribute's name. Modes are registered by name in ``mrcnn.modes`` and
selected by ``Config.MODEL`` through ``create_model``.
"""

import datetime
import logging
import numbers
import os

import numpy as np
import tensorflow as tf

from mrcnn import modes, transform, weights
from mrcnn import training as trainlib
from mrcnn.data import check_dataset, check_image
from mrcnn.modes import MODEL_REGISTRY, create_model  # noqa: F401  (re-exported)
from mrcnn.modes import register_mode as register_model  # noqa: F401  (the old name)
from mrcnn.data.pipeline import make_dataset
from mrcnn.modecheck import check_mode_class as _check_mode_class
from mrcnn.weights import pretrained

logger = logging.getLogger(__name__)

# ModelBase.config_defaults() per mode class.
_CONFIG_DEFAULTS = {}

# The hooks a mode implements (see the module docstring).
MODE_HOOKS = ("build", "training_signature", "training_sample", "inference_inputs",
              "postprocess")


def log(text, array=None):
    """Prints a text message. And, optionally, if a Numpy array is provided it
    prints it's shape, min, and max values.
    """
    if array is not None:
        text = text.ljust(25)
        array = np.asarray(array)
        text += ("shape: {:20}  ".format(str(array.shape)))
        if array.size:
            text += ("min: {:10.5f}  max: {:10.5f}".format(array.min(), array.max()))
        else:
            text += ("min: {:10}  max: {:10}".format("", ""))
        text += "  {}".format(array.dtype)
    print(text)


class ModelBase(object):
    """The part of every model mode that is not its network (see the module
    docstring for what a mode declares and implements).

    The actual Keras model is in the keras_model property.
    """

    LOSS_NAMES = ()
    DEFAULT_LOSS_WEIGHTS = None
    CHECKPOINT_PREFIX = None
    HEADS_REGEX = None
    CLASS_SPECIFIC_LAYERS = ()
    SIZE_DIVISOR = 1
    HAS_COCO_WEIGHTS = False
    CONFIG_DEFAULTS = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # A class that builds a network is a mode: hold it to the contract
        # now rather than at the first training step.
        if cls.build is not ModelBase.build:
            _check_mode_class(cls)

    # ------------------------------------------------------------------
    # The mode contract
    # ------------------------------------------------------------------
    @classmethod
    def validate_config(cls, config, add):
        """The mode's own configuration rules; ``add(message)`` reports a
        problem. The base checks ``LOSS_WEIGHTS``: its keys must be loss
        names of this mode and its values non-negative numbers (a config
        that does not set it has the mode's defaults: config_defaults)."""
        given = config.LOSS_WEIGHTS
        if not isinstance(given, dict):
            add("LOSS_WEIGHTS must be a dict of loss name -> weight, got {!r}".format(given))
            return
        if any(not isinstance(w, numbers.Real) or w < 0 for w in given.values()):
            add("LOSS_WEIGHTS values must be non-negative numbers")
        unknown = set(given) - set(cls.LOSS_NAMES)
        if unknown:
            add("LOSS_WEIGHTS has unknown keys {}; known: {}".format(
                sorted(unknown), ", ".join(cls.LOSS_NAMES)))

    @classmethod
    def config_defaults(cls):
        """``{Config attribute: default}`` of this mode: CONFIG_DEFAULTS,
        and LOSS_WEIGHTS = the mode's DEFAULT_LOSS_WEIGHTS for every loss
        (``Config`` reads them through ``modes.config_defaults``). One
        dict per class, so a default read twice is the same object, as a
        base Config class attribute is."""
        defaults = _CONFIG_DEFAULTS.get(cls)
        if defaults is None:
            defaults = dict(cls.CONFIG_DEFAULTS)
            weights_ = {name: 1.0 for name in cls.LOSS_NAMES}
            weights_.update(cls.DEFAULT_LOSS_WEIGHTS or {})
            defaults.setdefault("LOSS_WEIGHTS", weights_)
            _CONFIG_DEFAULTS[cls] = defaults
        return defaults

    @classmethod
    def loss_weights(cls, config):
        """``{loss name: weight}`` for every LOSS_NAMES entry: the mode's
        defaults, overridden by ``config.LOSS_WEIGHTS`` where it names them."""
        result = {name: 1.0 for name in cls.LOSS_NAMES}
        result.update(cls.DEFAULT_LOSS_WEIGHTS or {})
        result.update({name: float(w) for name, w in (config.LOSS_WEIGHTS or {}).items()
                       if name in result})
        return result

    def build(self, mode, config):
        """The Keras model (a ``training.DetectionModel``) of this mode."""
        raise NotImplementedError(_hook_message(self, "build(mode, config)"))

    def training_signature(self):
        """``[(input name, shape, dtype)]`` of one training sample."""
        raise NotImplementedError(_hook_message(self, "training_signature()"))

    def training_sample(self, dataset, image_id, augmentation):
        """NumPy arrays of one image in training_signature() order, or None
        to skip the image (e.g. no instances)."""
        raise NotImplementedError(_hook_message(
            self, "training_sample(dataset, image_id, augmentation)"))

    def training_constants(self, image_shape):
        """``{input name: array}`` given to every training batch (no batch
        axis); none by default."""
        return {}

    def inference_inputs(self, molded_images, image_metas):
        """The inference model's inputs for a batch of molded images."""
        raise NotImplementedError(_hook_message(
            self, "inference_inputs(molded_images, image_metas)"))

    def postprocess(self, outputs, index, original_shape, molded_shape, window):
        """``(rois, class_ids, scores, masks)`` of image ``index`` of a batch
        from the inference model's NumPy outputs."""
        raise NotImplementedError(_hook_message(
            self, "postprocess(outputs, index, original_shape, molded_shape, window)"))

    def serving_postprocess(self, outputs, window, molded_hw, original_hw):
        """postprocess in TensorFlow, for ``export()``: one image's
        inference outputs (batch axis removed, float32), window [4] int32
        in the molded image, molded_hw and original_hw [2] int32 -> a dict
        of ``mrcnn.export.OUTPUT_NAMES`` (boxes [K, 4] int32, class_ids [K]
        int32, scores [K] float32, masks [K, H, W] uint8, num_detections
        int32; detections first, then zero slots). Optional: a mode without
        it cannot be exported."""
        raise NotImplementedError(
            "{} cannot be exported yet: it does not implement serving_postprocess(outputs, "
            "window, molded_hw, original_hw) (see mrcnn.modelbase and mrcnn.serving)".format(
                type(self).__name__))

    @property
    def mode_name(self):
        """The registered name of this model's mode ("mask_rcnn", ...), or
        None for an unregistered class."""
        return modes.mode_of(type(self))

    def __init__(self, mode, config, model_dir):
        """
        mode: Either "training" or "inference"
        config: A Sub-class of the Config class
        model_dir: Directory to save training logs and trained weights
        """
        if mode not in ("training", "inference"):
            raise ValueError("mode must be 'training' or 'inference', got {!r}".format(mode))
        name = self.mode_name
        if name is not None and config.MODEL != name:
            raise ValueError(
                "{} is the {!r} model mode but config.MODEL is {!r}; build the mode the "
                "config names with modellib.create_model(mode, config, model_dir), or set "
                "MODEL = {!r}".format(type(self).__name__, name, config.MODEL, name))
        config.validate()
        self.mode = mode
        self.config = config
        self.model_dir = model_dir
        self.epoch = 0
        self._predict_fn = None
        self.set_log_dir()
        self.strategy = trainlib.distribution_strategy(config, mode)
        import keras
        previous_policy = keras.config.dtype_policy()
        # MIXED_PRECISION decides, whatever the global policy is (the
        # optimizer's loss scaling follows the config too); the global policy
        # is restored below.
        keras.config.set_dtype_policy(config.dtype_policy_name())
        try:
            with self.strategy.scope():
                self.keras_model = self.build(mode=mode, config=config)
        finally:
            keras.config.set_dtype_policy(previous_policy)

    # ------------------------------------------------------------------
    # Log directories and checkpoints
    # ------------------------------------------------------------------
    def set_log_dir(self, model_path=None):
        """Sets the model log directory and epoch counter.

        model_path: If None, or a format different from what this code uses
            then set a new log directory and start epochs from 0. Otherwise,
            extract the log directory and the epoch counter from the file
            name.
        """
        self.epoch = 0
        now = datetime.datetime.now()
        if model_path:
            parsed = trainlib.parse_checkpoint_path(model_path, self.CHECKPOINT_PREFIX)
            if parsed:
                now, self.epoch = parsed
        self.log_dir = os.path.join(self.model_dir, trainlib.log_dir_name(self.config.NAME, now))
        self.checkpoint_path = os.path.join(
            self.log_dir, "{}_{}_{{epoch:04d}}.h5".format(self.CHECKPOINT_PREFIX,
                                                          self.config.NAME.lower()))

    def find_last(self):
        """Finds the last checkpoint file of the last trained model in the
        model directory.
        Returns:
            The path of the last checkpoint file
        """
        return trainlib.find_last_checkpoint(self.model_dir, self.config.NAME,
                                             self.CHECKPOINT_PREFIX)

    def save_weights(self, filepath):
        """Write the weights (legacy Keras HDF5 layout, atomically), recording
        the model mode, so another mode's model refuses to load them."""
        weights.save_weights(self.keras_model, filepath, mode=self.mode_name)

    def load_weights(self, filepath, by_name=False, exclude=None, skip_mismatch=False):
        """Load weights from this package's checkpoints, a Keras 2 HDF5
        weights file such as the released mask_rcnn_coco.h5, or a Keras 3
        ``keras_model.save_weights("x.weights.h5")`` file.

        exclude: list of layer names to exclude (e.g. the class-specific
            heads when fine-tuning on another class count).
        skip_mismatch: load what fits and warn about layers whose shapes
            differ (default: raise WeightsMismatchError naming them, having
            changed nothing).
        A checkpoint path that follows the naming convention also sets the
        log directory and epoch counter, so training resumes where it
        stopped. A checkpoint of another model mode raises
        ``weights.WeightsModeError`` naming both modes.
        """
        if exclude:
            by_name = True
        report = weights.load_weights(self.keras_model, filepath, by_name=by_name,
                                      exclude=exclude, skip_mismatch=skip_mismatch,
                                      mode=self.mode_name,
                                      class_specific=self.CLASS_SPECIFIC_LAYERS)
        self.set_log_dir(filepath)
        return report

    def get_imagenet_weights(self):
        """Downloads the ImageNet weights of the configured backbone
        (ResNet50 or ResNet101) from Keras Applications; returns the path.
        Load it with ``load_weights(path, by_name=True)``."""
        return pretrained.get_imagenet_weights(self.config.BACKBONE)

    # ------------------------------------------------------------------
    # Layers
    # ------------------------------------------------------------------
    def set_trainable(self, layer_regex, keras_model=None, indent=0, verbose=1):
        """Sets model layers as trainable if their names match
        the given regular expression (full match, nested models included).
        Returns the names of the layers now trainable."""
        if verbose > 0 and keras_model is None:
            log("Selecting layers to train")
        return trainlib.set_trainable(keras_model or self.keras_model, layer_regex,
                                      train_bn=self.config.TRAIN_BN is not False,
                                      verbose=verbose, indent=indent)

    def find_trainable_layer(self, layer):
        """If a layer is encapsulated by another layer, this function
        digs through the encapsulation and returns the layer that holds
        the weights.
        """
        if not layer.weights and hasattr(layer, "layer"):
            return self.find_trainable_layer(layer.layer)
        return layer

    def get_trainable_layers(self):
        """Returns a list of layers that have weights."""
        found = []
        for layer in self.keras_model.layers:
            layer = self.find_trainable_layer(layer)
            if layer.weights:
                found.append(layer)
        return found

    def layer_presets(self):
        return trainlib.backbone_presets(self.HEADS_REGEX)

    # ------------------------------------------------------------------
    # Training
    # ------------------------------------------------------------------
    def compile(self, learning_rate, momentum=None):
        """Compile the training model with SGD (see training.build_optimizer).
        ``momentum`` overrides LEARNING_MOMENTUM when given."""
        config = self.config
        if momentum is not None and momentum != config.LEARNING_MOMENTUM:
            config = _Overlay(config, LEARNING_MOMENTUM=momentum)
        with self.strategy.scope():
            # No XLA: proposal sampling, NMS and the detection targets have
            # data-dependent shapes, which XLA cannot compile.
            self.keras_model.compile(optimizer=trainlib.build_optimizer(config, learning_rate),
                                     jit_compile=False)

    def training_dataset(self, dataset, augmentation=None, no_augmentation_sources=None,
                         shuffle=True, seed=None, batch_size=None, shard=None):
        """The tf.data pipeline of training batches (BATCH_SIZE images, or
        ``batch_size``) for ``dataset``, or for a ``shard`` of it (see
        ``make_dataset``)."""
        return make_dataset(
            dataset, lambda image_id, aug: self.training_sample(dataset, image_id, aug),
            self.training_signature(), batch_size or self.config.BATCH_SIZE, shuffle=shuffle,
            augmentation=augmentation, no_augmentation_sources=no_augmentation_sources,
            constants=self.training_constants(self.config.IMAGE_SHAPE), seed=seed,
            shard=shard)

    def train(self, train_dataset, val_dataset, learning_rate, epochs, layers,
              augmentation=None, custom_callbacks=None, no_augmentation_sources=None,
              verbose=1):
        """Train the model.
        train_dataset, val_dataset: Training and validation Dataset objects
            (prepared, with NUM_CLASSES classes; checked before anything
            else happens). val_dataset may be None: no validation.
        learning_rate: The learning rate to train with
        epochs: Number of training epochs. Note that previous training epochs
                are considered to be done already, so this actually determines
                the epochs to train in total rather than in this particular
                call.
        layers: Allows selecting which layers to train. It can be:
            - A regular expression to match layer names to train
            - One of these predefined values:
              heads: The RPN, classifier and mask heads of the network
              all: All the layers
              3+: Train Resnet stage 3 and up
              4+: Train Resnet stage 4 and up
              5+: Train Resnet stage 5 and up
        augmentation: Optional. An albumentations transform (or a callable
            f(image, mask) -> (image, mask)); masks move with the image.
        custom_callbacks: Optional. Keras callbacks for fit(); they run before
            the built-in TensorBoard, NaN-stop and checkpoint callbacks, so
            values they add to the epoch logs are recorded.
        no_augmentation_sources: Optional. List of sources to exclude for
            augmentation. A source is string that identifies a dataset and is
            defined in the Dataset class.
        verbose: Keras fit() verbosity (1: progress bar with every loss).

        With TF_CONFIG naming several workers this runs on all of them
        (training.fit_multi_worker; README "Training on several machines").
        Returns the Keras History of this call.
        """
        if self.mode != "training":
            raise ValueError("train() needs a model built with mode='training'; this one "
                             "is in {!r} mode".format(self.mode))
        # Dataset/config mismatches fail here, naming the value to change,
        # rather than deep inside the input pipeline.
        check_dataset(train_dataset, self.config, "train_dataset")
        if val_dataset is not None:
            check_dataset(val_dataset, self.config, "val_dataset", reference=train_dataset)
        layers = self.layer_presets().get(layers, layers)
        multi_worker = trainlib.is_multi_worker(self.strategy)
        chief = trainlib.is_chief(self.strategy)
        if multi_worker:  # each worker builds its shard's pipeline
            def train_data(batch, shard):
                return self.training_dataset(train_dataset, augmentation,
                                             no_augmentation_sources, batch_size=batch,
                                             shard=shard)

            def val_shard(batch, shard):
                return self.training_dataset(val_dataset, batch_size=batch, shard=shard)
            val_data = None if val_dataset is None else val_shard
        else:
            train_data = self.training_dataset(train_dataset, augmentation,
                                               no_augmentation_sources)
            val_data = None if val_dataset is None else self.training_dataset(val_dataset)

        if chief:  # other workers of a multi-worker job write nothing
            os.makedirs(self.log_dir, exist_ok=True)
            trainlib.remove_partial_checkpoints(self.log_dir, self.CHECKPOINT_PREFIX,
                                                self.config.NAME)
            self.config.to_json(os.path.join(self.log_dir, "config.json"))
        callbacks = trainlib.training_callbacks(custom_callbacks, self.log_dir,
                                                self.checkpoint_path, self.save_weights, chief)
        if multi_worker:  # every worker starts from the chief's weights and epoch
            self.epoch = trainlib.sync_from_chief(self.strategy, self.keras_model, self.epoch)
        log("\nStarting at epoch {}. LR={}\n".format(self.epoch, learning_rate))
        log("Checkpoint Path: {}".format(self.checkpoint_path))
        self.set_trainable(layers)
        self.compile(learning_rate, self.config.LEARNING_MOMENTUM)
        # Resuming at epoch E continues the learning-rate schedule (warm-up)
        # where a run that never stopped would be.
        self.keras_model.optimizer.iterations.assign(self.epoch * self.config.STEPS_PER_EPOCH)

        validation_steps = self.config.VALIDATION_STEPS if val_data is not None else None
        if multi_worker:
            history = trainlib.fit_multi_worker(
                self.keras_model, self.strategy, train_data, self.config.IMAGES_PER_GPU,
                epochs, self.epoch, self.config.STEPS_PER_EPOCH, callbacks, val_data,
                validation_steps, verbose)
        else:
            history = self.keras_model.fit(
                train_data, initial_epoch=self.epoch, epochs=epochs,
                steps_per_epoch=self.config.STEPS_PER_EPOCH, callbacks=callbacks,
                validation_data=val_data, validation_steps=validation_steps,
                shuffle=False,  # the pipeline shuffles
                verbose=verbose)
        completed = history.epoch[-1] + 1 if history.epoch else self.epoch
        self.epoch = max(self.epoch, completed)
        return history

    # ------------------------------------------------------------------
    # Inference
    # ------------------------------------------------------------------
    def _mold_image(self, image):
        """One image -> (molded image, image_meta, window); see
        transform.mold. ValueError when the molded sides are not multiples
        of the mode's SIZE_DIVISOR (IMAGE_RESIZE_MODE "none" passes images
        through unchanged)."""
        molded, image_meta, window = transform.mold(self._check_image(image), self.config)
        divisor = self.SIZE_DIVISOR
        if molded.shape[0] % divisor or molded.shape[1] % divisor:
            raise ValueError(
                "The molded image is {}x{} but {} needs sides that are multiples of {} "
                "(IMAGE_RESIZE_MODE={!r} passes images through unchanged); resize the image, "
                "or use IMAGE_RESIZE_MODE 'square' or 'pad64'".format(
                    molded.shape[0], molded.shape[1], type(self).__name__, divisor,
                    self.config.IMAGE_RESIZE_MODE))
        return molded, image_meta, window

    def _check_image(self, image):
        """Validate one detect() input image (see data.check_image)."""
        return check_image(image, self.config.IMAGE_CHANNEL_COUNT)

    def mold_inputs(self, images):
        """Takes a list of images and modifies them to the format expected
        as an input to the neural network.
        images: List of image matrices [height,width,depth]. Images can have
            different sizes.

        Returns 3 Numpy matrices:
        molded_images: [N, h, w, 3]. Images resized and normalized.
        image_metas: [N, length of meta data]. Details about each image.
        windows: [N, (y1, x1, y2, x2)]. The portion of the image that has the
            original image (padding excluded).
        Raises ValueError when the molded images differ in size (possible with
        IMAGE_RESIZE_MODE "none" or "pad64"; detect() handles that case).
        """
        molded = [self._mold_image(image) for image in images]
        shapes = {m[0].shape for m in molded}
        if len(shapes) > 1:
            raise ValueError("mold_inputs: the molded images differ in shape ({}); mold "
                             "them in separate calls".format(sorted(shapes)))
        return (np.stack([m[0] for m in molded]), np.stack([m[1] for m in molded]),
                np.stack([m[2] for m in molded]))

    def predict_molded(self, molded_images, image_metas):
        """Run the inference graph on a batch; returns the model outputs as
        NumPy arrays. One tf.function serves every batch size and image size,
        so repeated calls never retrace."""
        if self.mode != "inference":
            raise ValueError("Create model in inference mode.")
        if self._predict_fn is None:
            model = self.keras_model
            specs = [tf.TensorSpec([None] + list(t.shape[1:]), t.dtype) for t in model.inputs]

            # Plain Keras calls need no AutoGraph conversion (AutoGraph also
            # cannot read a lambda's source, and warned about it).
            @tf.autograph.experimental.do_not_convert
            def predict(*inputs):
                return model(list(inputs), training=False)

            self._predict_fn = tf.function(predict, input_signature=specs)
        inputs = self.inference_inputs(molded_images, image_metas)
        return [o.numpy() for o in self._predict_fn(*inputs)]

    def export(self, path, format="saved_model", input_size=None):
        """Write this inference model as a SavedModel (a folder) whose
        signature takes uint8 images of any size, or as a TFLite file
        (``format="tflite"``) for one image of ``input_size`` (height,
        width); either does molding, the network, detection and un-molding
        in its graph (see ``mrcnn.export``). Returns path."""
        from mrcnn import export
        return export.export(self, path, format, input_size=input_size)

    def detect(self, images, verbose=0):
        """Runs the detection pipeline.

        images: List of images, potentially of different sizes; any number.

        Returns a list of dicts, one dict per image. The dict contains:
        rois: [N, (y1, x1, y2, x2)] int32 detection bounding boxes
        class_ids: [N] int32 class IDs
        scores: [N] float32 probability scores for the class IDs
        masks: [H, W, N] bool instance binary masks
        """
        if self.mode != "inference":
            raise ValueError("Create model in inference mode.")
        if verbose:
            log("Processing {} images".format(len(images)))
            for image in images:
                log("image", image)
        molded = [self._mold_image(image) for image in images]
        results = [None] * len(images)
        batch = max(1, self.config.BATCH_SIZE)
        # Group by molded shape, then run groups in chunks of BATCH_SIZE.
        groups = {}
        for i, (molded_image, _, _) in enumerate(molded):
            groups.setdefault(molded_image.shape, []).append(i)
        for indices in groups.values():
            for start in range(0, len(indices), batch):
                chunk = indices[start:start + batch]
                molded_images = np.stack([molded[i][0] for i in chunk])
                image_metas = np.stack([molded[i][1] for i in chunk])
                if verbose:
                    log("molded_images", molded_images)
                    log("image_metas", image_metas)
                outputs = self.predict_molded(molded_images, image_metas)
                for k, i in enumerate(chunk):
                    rois, class_ids, scores, masks = self.postprocess(
                        outputs, k, np.asarray(images[i]).shape, molded[i][0].shape,
                        molded[i][2])
                    results[i] = {"rois": rois, "class_ids": class_ids,
                                  "scores": scores, "masks": masks}
        return results

    def detect_molded(self, molded_images, image_metas, verbose=0):
        """Runs the detection pipeline, but expect inputs that are
        molded already. Used mostly for debugging and inspecting
        the model.

        molded_images: List of images loaded using load_image_gt()
        image_metas: image meta data, also returned by load_image_gt()

        Returns a list of dicts as detect(), in molded-image coordinates.
        """
        if self.mode != "inference":
            raise ValueError("Create model in inference mode.")
        molded_images = np.asarray(molded_images)
        image_metas = np.asarray(image_metas)
        if verbose:
            log("Processing {} images".format(len(molded_images)))
            for image in molded_images:
                log("image", image)
        outputs = self.predict_molded(molded_images, image_metas)
        results = []
        for i, image in enumerate(molded_images):
            window = [0, 0, image.shape[0], image.shape[1]]
            rois, class_ids, scores, masks = self.postprocess(
                outputs, i, image.shape, image.shape, window)
            results.append({"rois": rois, "class_ids": class_ids,
                            "scores": scores, "masks": masks})
        return results


    # ------------------------------------------------------------------
    # Inspection
    # ------------------------------------------------------------------
    def run_graph(self, images, outputs, image_metas=None):
        """Compute named outputs of the inference graph for ``images``.

        outputs: list of (name, tensor or layer name) pairs, e.g. YOLACT's
            ``[("prototypes", "yolact_prototypes"), ("coefficients",
            "yolact_coefficients")]`` or CenterNet's ``[("heatmap",
            "centernet_heatmap_p3")]``; a layer with several outputs gives a
            list.
        image_metas: when given, ``images`` are already molded.
        Returns an OrderedDict name -> NumPy array. (Mask R-CNN's version
        also understands the proposal stages of the reference notebooks.)
        """
        from collections import OrderedDict
        import keras
        if self.mode != "inference":
            raise ValueError("run_graph() needs a model built in inference mode")
        tensors = []
        for key, value in outputs:
            if isinstance(value, str):
                try:
                    value = self.keras_model.get_layer(value.split(":")[0]).output
                except ValueError as e:
                    raise ValueError("run_graph(): output {!r}: no layer named {!r} in the "
                                     "{} inference model".format(
                                         key, value, type(self).__name__)) from e
            if value is None:
                raise ValueError("run_graph(): output {!r} is None (not found)".format(key))
            tensors.append(value)
        flat = []
        for value in tensors:
            flat.extend(value if isinstance(value, (list, tuple)) else [value])
        sub_model = keras.Model(self.keras_model.inputs, flat)
        if image_metas is None:
            molded_images, image_metas, _ = self.mold_inputs(images)
        else:
            molded_images = np.asarray(images)
        values = sub_model(self.inference_inputs(molded_images, image_metas), training=False)
        if not isinstance(values, (list, tuple)):
            values = [values]
        values = [np.asarray(v) for v in values]
        results = OrderedDict()
        position = 0
        for (key, _), value in zip(outputs, tensors):
            size = len(value) if isinstance(value, (list, tuple)) else 1
            results[key] = values[position] if size == 1 else values[position:position + size]
            position += size
        for key, value in results.items():
            if isinstance(value, np.ndarray):
                log(key, value)
        return results

class _Overlay(object):
    """A config view with some attributes replaced."""

    def __init__(self, config, **values):
        self._config = config
        self.__dict__.update(values)

    def __getattr__(self, name):
        return getattr(self._config, name)


def _hook_message(model, hook):
    return "{} does not implement {}, which every model mode provides (see " \
           "mrcnn.modelbase)".format(type(model).__name__, hook)

