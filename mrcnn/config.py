"""
Mask R-CNN
Base configuration class.

Users subclass ``Config`` and override class attributes, exactly as with the
original Keras Mask R-CNN::

    class ShapesConfig(Config):
        NAME = "shapes"
        IMAGES_PER_GPU = 8
        NUM_CLASSES = 1 + 3

Differences from the original:

* ``BATCH_SIZE``, ``IMAGE_SHAPE`` and ``IMAGE_META_SIZE`` are computed on every
  read, so they follow edits made after construction (the original computed
  them once in ``__init__`` and silently went stale).
* ``MODEL`` selects the model mode (``mrcnn.modes``; ``"mask_rcnn"`` by
  default), and ``validate()`` applies that mode's own rules.
* The defaults written here are Mask R-CNN's. Another mode has its own
  defaults for some of them (YOLACT: 550 px, confidence 0.05, NMS 0.5, its
  loss weights, ...: ``ModelBase.CONFIG_DEFAULTS``); they apply to every
  value the configuration leaves at the base default, i.e. that neither a
  subclass nor the instance sets. ``to_dict()`` and ``display()`` show the
  values in effect.
* ``validate()`` checks the whole configuration and reports every problem in
  one error message; the model classes call it before building.
* ``to_dict()`` / ``from_dict()`` / ``to_json()`` / ``from_json()`` record the
  configuration next to checkpoints and restore it.
"""

import importlib
import json
import numbers

import numpy as np

from mrcnn import modes


BACKBONES = ("resnet50", "resnet101", "resnet18", "resnet34")
RESIZE_MODES = ("none", "square", "pad64", "crop")

# Mask R-CNN's loss names (LOSS_WEIGHTS' default keys); every mode declares
# its own (ModelBase.LOSS_NAMES).
LOSS_NAMES = ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss",
              "mrcnn_bbox_loss", "mrcnn_mask_loss")

# Attributes computed from others; never stored, never restored.
DERIVED_ATTRIBUTES = ("BATCH_SIZE", "IMAGE_SHAPE", "IMAGE_META_SIZE")


class ConfigError(ValueError):
    """Raised by ``Config.validate()``; the message lists every problem found."""


class Config(object):
    """Base configuration class. For custom configurations, create a
    sub-class that inherits from this one and override properties
    that need to be changed.
    """
    # Name the configurations. For example, 'COCO', 'Experiment 3', ...etc.
    # Useful if your code needs to do things differently depending on which
    # experiment is running.
    NAME = None  # Override in sub-classes

    # Model mode: which detection/segmentation head is built on the shared
    # backbone: "mask_rcnn" or "yolact" (mrcnn.modes lists the registered
    # ones). A mode brings its own defaults for some of the values below
    # (see the module docstring).
    MODEL = "mask_rcnn"

    # NUMBER OF GPUs to use. When using only a CPU, this needs to be set to 1.
    GPU_COUNT = 1

    # Number of images to train with on each GPU. A 12GB GPU can typically
    # handle 2 images of 1024x1024px.
    IMAGES_PER_GPU = 2

    # Number of training steps per epoch. This doesn't need to match the size
    # of the training set. TensorBoard updates and validation happen at the end
    # of each epoch.
    STEPS_PER_EPOCH = 1000

    # Number of validation steps to run at the end of every training epoch.
    VALIDATION_STEPS = 50

    # Backbone network architecture. Supported values are: resnet50,
    # resnet101 (and, new, resnet18 / resnet34: cheap basic-block ResNets for
    # small datasets and CPUs, without released weights). You can also
    # provide a callable with the signature of model.resnet_graph; then also
    # supply COMPUTE_BACKBONE_SHAPE.
    BACKBONE = "resnet101"

    # Only useful if you supply a callable to BACKBONE. Should compute the
    # shape of each layer of the FPN Pyramid. See model.compute_backbone_shapes
    COMPUTE_BACKBONE_SHAPE = None

    # The strides of each layer of the FPN Pyramid (P2..P6).
    BACKBONE_STRIDES = [4, 8, 16, 32, 64]

    # Size of the fully-connected layers in the classification graph
    FPN_CLASSIF_FC_LAYERS_SIZE = 1024

    # Size of the top-down layers used to build the feature pyramid
    TOP_DOWN_PYRAMID_SIZE = 256

    # Number of classification classes (including background)
    NUM_CLASSES = 1  # Override in sub-classes

    # Length of square anchor side in pixels, one per pyramid level
    RPN_ANCHOR_SCALES = (32, 64, 128, 256, 512)

    # Ratios of anchors at each cell (width/height)
    # A value of 1 represents a square anchor, and 0.5 is a wide anchor
    RPN_ANCHOR_RATIOS = [0.5, 1, 2]

    # Anchor stride: 1 creates anchors at every feature map cell, 2 at every
    # other cell, and so on.
    RPN_ANCHOR_STRIDE = 1

    # Non-max suppression threshold to filter RPN proposals.
    RPN_NMS_THRESHOLD = 0.7

    # How many anchors per image to use for RPN training
    RPN_TRAIN_ANCHORS_PER_IMAGE = 256

    # ROIs kept after tf.nn.top_k and before non-maximum suppression
    PRE_NMS_LIMIT = 6000

    # ROIs kept after non-maximum suppression (training and inference)
    POST_NMS_ROIS_TRAINING = 2000
    POST_NMS_ROIS_INFERENCE = 1000

    # If enabled, resizes instance masks to a smaller size to reduce
    # memory load. Recommended when using high-resolution images.
    USE_MINI_MASK = True
    MINI_MASK_SHAPE = (56, 56)  # (height, width) of the mini-mask

    # Input image resizing (see utils.resize_image):
    # none:   No resizing or padding. Return the image unchanged.
    # square: Resize and pad with zeros to get a square image
    #         of size [max_dim, max_dim].
    # pad64:  Pads width and height with zeros to make them multiples of 64.
    # crop:   Picks random crops of IMAGE_MIN_DIM x IMAGE_MIN_DIM (training).
    IMAGE_RESIZE_MODE = "square"
    IMAGE_MIN_DIM = 800
    IMAGE_MAX_DIM = 1024
    # Minimum scaling ratio. Checked after MIN_IMAGE_DIM and can force further
    # up scaling. In 'square' mode, it can be overruled by IMAGE_MAX_DIM.
    IMAGE_MIN_SCALE = 0
    # Number of color channels per image. RGB = 3, grayscale = 1, RGB-D = 4
    IMAGE_CHANNEL_COUNT = 3

    # Image mean (RGB)
    MEAN_PIXEL = np.array([123.7, 116.8, 103.9])

    # Number of ROIs per image to feed to classifier/mask heads
    TRAIN_ROIS_PER_IMAGE = 200

    # Percent of positive ROIs used to train classifier/mask heads
    ROI_POSITIVE_RATIO = 0.33

    # Pooled ROIs
    POOL_SIZE = 7
    MASK_POOL_SIZE = 14

    # Shape of output mask. The mask head upsamples MASK_POOL_SIZE by 2.
    MASK_SHAPE = [28, 28]

    # Maximum number of ground truth instances to use in one image. Training
    # images with more keep a random subset of this many (data.select_instances,
    # in their original order); the RPN targets are still built from all of them.
    MAX_GT_INSTANCES = 100

    # Bounding box refinement standard deviation for RPN and final detections.
    RPN_BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])
    BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])

    # Max number of final detections
    DETECTION_MAX_INSTANCES = 100

    # Minimum probability value to accept a detected instance
    DETECTION_MIN_CONFIDENCE = 0.7

    # Non-maximum suppression threshold for detection
    DETECTION_NMS_THRESHOLD = 0.3

    # Learning rate and momentum
    LEARNING_RATE = 0.001
    LEARNING_MOMENTUM = 0.9

    # Weight decay regularization
    WEIGHT_DECAY = 0.0001

    # Loss weights for more precise optimization.
    LOSS_WEIGHTS = {
        "rpn_class_loss": 1.,
        "rpn_bbox_loss": 1.,
        "mrcnn_class_loss": 1.,
        "mrcnn_bbox_loss": 1.,
        "mrcnn_mask_loss": 1.
    }

    # Use RPN ROIs or externally generated ROIs for training
    USE_RPN_ROIS = True

    # Train or freeze batch normalization layers
    #     None: Train BN layers. This is the normal mode
    #     False: Freeze BN layers. Good when using a small batch size
    #     True: (don't use). Set layer in training mode even when predicting
    TRAIN_BN = False  # Defaulting to False since batch size is often small

    # Gradient norm clipping
    GRADIENT_CLIP_NORM = 5.0

    # ---- Additions (not in the original; defaults keep its behaviour) ----

    # Width of the mask head's four 3x3 convolutions and its deconvolution.
    # The released weights use 256; smaller heads train faster from scratch.
    MASK_HEAD_CHANNELS = 256

    # Width of the RPN's shared 3x3 convolution (512 in the released weights).
    RPN_CONV_CHANNELS = 512

    # Linear learning-rate warm-up over this many optimizer steps at the
    # start of each train() call (0: constant learning rate, as the original).
    # Helps training from random initialisation.
    LEARNING_RATE_WARMUP_STEPS = 0

    # Mixed precision (variables stay float32 either way):
    #   False                 float32 throughout.
    #   True or "float16"     float16 activations and a dynamic loss scale.
    #                         Worth it on GPUs with tensor cores; slow on CPUs.
    #   "bfloat16"            bfloat16 activations, no loss scale needed.
    #   (Keras's names "mixed_float16", "mixed_bfloat16", "float32" also work.)
    #                         Worth it on recent GPUs and on CPUs with AMX or
    #                         AVX512-BF16, where convolutions run 2-3x faster.
    # Box arithmetic, NMS, ROI sampling, softmax outputs and losses stay
    # float32 in every mode.
    MIXED_PRECISION = False

    # ---- YOLACT (MODEL = "yolact"; dbolya/yolact's yolact_base_config) ----
    # With MODEL = "yolact" the shared values default to the reference's
    # too: IMAGE_MIN_DIM = IMAGE_MAX_DIM = 550, DETECTION_MIN_CONFIDENCE
    # 0.05, DETECTION_NMS_THRESHOLD 0.5 (Fast NMS), WEIGHT_DECAY 5e-4,
    # LOSS_WEIGHTS box 1.5, class 1, mask 6.125, semantic 1.

    # Number of prototype masks (k).
    YOLACT_NUM_PROTOTYPES = 32
    # Width of the protonet's and the prediction head's convolutions.
    YOLACT_HEAD_CHANNELS = 256
    # Anchor sizes in pixels of a 550 px image, one per level P3-P7; the
    # priors scale with the input size. YOLACT++ uses 3 scales per level:
    # YOLACT_SCALES_PER_LEVEL = 3 gives s * 2 ** (j / 3), j = 0, 1, 2.
    YOLACT_ANCHOR_SCALES = (24, 48, 96, 192, 384)
    YOLACT_SCALES_PER_LEVEL = 1
    # Aspect ratios (width / height) at every location and scale.
    YOLACT_ANCHOR_RATIOS = (1, 0.5, 2)
    # The reference's quirk, on in all its released configs (so released
    # weights line up): anchors are square whatever the ratio, which then
    # only changes the size. False gives true aspect ratios.
    YOLACT_SQUARE_ANCHORS = True
    # Prior matching: IoU >= positive is a positive, < negative a negative,
    # in between neutral; priors overlapping a crowd region above the crowd
    # threshold are neutral too.
    YOLACT_POSITIVE_IOU = 0.5
    YOLACT_NEGATIVE_IOU = 0.4
    YOLACT_CROWD_IOU = 0.7
    # Online hard example mining: negatives per positive in the class loss.
    YOLACT_NEGPOS_RATIO = 3
    # At most this many positive priors per image in the mask loss.
    YOLACT_MASKS_TO_TRAIN = 100
    # Candidates per class before Fast NMS at inference.
    YOLACT_TOP_K = 200
    # (The semantic segmentation head on P3 trains with the others; its
    # weight is LOSS_WEIGHTS["yolact_semantic_loss"], 0 turns it off.)

    # ---- CenterNet (MODEL = "centernet"; mmdetection's CenterNetUpdateHead) ----
    # With MODEL = "centernet" the shared values default to the reference's
    # too: DETECTION_MIN_CONFIDENCE 0.05, DETECTION_NMS_THRESHOLD 0.6
    # (class-aware), LEARNING_RATE 0.01, LOSS_WEIGHTS heatmap 1, box 2,
    # mask 1. Masks come from Mask R-CNN's ROI mask head (MASK_* values,
    # TRAIN_ROIS_PER_IMAGE and ROI_POSITIVE_RATIO for its sampling).

    # Half-diagonal (pixels of the molded image) of the boxes each level
    # P3-P7 regresses, both ends inclusive.
    CENTERNET_REGRESS_RANGES = ((0, 80), (64, 160), (128, 320), (256, 640), (512, 1e9))
    # Gaussian heatmaps: r^2 = max(2 * delta^2 * area, MIN_RADIUS^2) with
    # delta = (1 - MIN_OVERLAP) / (1 + MIN_OVERLAP).
    CENTERNET_MIN_RADIUS = 4
    CENTERNET_MIN_OVERLAP = 0.8
    # Extra classification positives: the candidates (3x3 around each box's
    # centre on every level) whose 1 - GIoU is below min(TOPK-th smallest,
    # THRESH).
    CENTERNET_MORE_POS_THRESH = 0.2
    CENTERNET_MORE_POS_TOPK = 9
    # Gaussian focal loss: p^ALPHA, (1 - heatmap)^GAMMA, positive and
    # negative weights, probabilities clamped to [CLAMP, 1 - CLAMP].
    CENTERNET_FOCAL_ALPHA = 2.0
    CENTERNET_FOCAL_GAMMA = 4.0
    CENTERNET_POS_WEIGHT = 0.25
    CENTERNET_NEG_WEIGHT = 0.75
    CENTERNET_SIGMOID_CLAMP = 1e-4
    # Inference: candidates per level before the class-aware NMS.
    CENTERNET_PRE_NMS_TOP_K = 1000
    # The towers: convolutions per tower, their width, GroupNorm groups.
    CENTERNET_TOWER_CONVS = 4
    CENTERNET_HEAD_CHANNELS = 256
    CENTERNET_GROUPS = 32
    # CenterNet2's two-stage variant: a class-agnostic CenterNet heatmap
    # proposes boxes (score above PROPOSAL_MIN_CONFIDENCE, NMS at
    # PROPOSAL_NMS_THRESHOLD, the best POST_NMS_ROIS_TRAINING /
    # POST_NMS_ROIS_INFERENCE kept, ground-truth boxes added in training)
    # for Mask R-CNN's box and mask heads instead of an RPN; a detection
    # scores sqrt(proposal score x class probability).
    CENTERNET_TWO_STAGE = False
    CENTERNET_PROPOSAL_MIN_CONFIDENCE = 1e-4
    CENTERNET_PROPOSAL_NMS_THRESHOLD = 0.9

    def __init__(self):
        """Kept for compatibility: subclasses call ``super().__init__()``.

        Derived values are properties and need no set-up here.
        """

    # ------------------------------------------------------------------
    # Derived values: recomputed on every read so later edits are honoured.
    # ------------------------------------------------------------------
    @property
    def BATCH_SIZE(self):
        """Effective batch size: IMAGES_PER_GPU * GPU_COUNT."""
        return self.IMAGES_PER_GPU * self.GPU_COUNT

    @property
    def IMAGE_SHAPE(self):
        """[height, width, channels] of the molded network input."""
        if self.IMAGE_RESIZE_MODE == "crop":
            side = self.IMAGE_MIN_DIM
        else:
            side = self.IMAGE_MAX_DIM
        return np.array([side, side, self.IMAGE_CHANNEL_COUNT])

    @property
    def IMAGE_META_SIZE(self):
        """Length of image_meta: see model.compose_image_meta()."""
        return 1 + 3 + 3 + 4 + 1 + self.NUM_CLASSES

    # ------------------------------------------------------------------
    # Display and serialisation
    # ------------------------------------------------------------------
    def dtype_policy_name(self):
        """The Keras dtype policy MIXED_PRECISION asks for: "float32",
        "mixed_float16" or "mixed_bfloat16"."""
        policy = _mixed_precision_policy(self.MIXED_PRECISION)
        if policy is None:
            raise ConfigError(_MIXED_PRECISION_ERROR.format(self.MIXED_PRECISION))
        return policy

    def _attribute_names(self):
        """Names of all configuration values: upper-case, non-private."""
        return [a for a in dir(self)
                if a.isupper() and not a.startswith("_")]

    def display(self):
        """Display Configuration values."""
        print("\nConfigurations:")
        for a in dir(self):
            if not a.startswith("__") and not callable(getattr(self, a)):
                print("{:30} {}".format(a, getattr(self, a)))
        print("\n")

    def to_dict(self):
        """All configuration values (derived ones included) as a plain dict
        of JSON-serialisable values.

        NumPy arrays become lists, tuples become lists, and a callable (for
        example a custom BACKBONE) becomes its import path "module:qualname".
        """
        return {name: _to_plain(getattr(self, name), name)
                for name in self._attribute_names()}

    def to_json(self, path=None, indent=2):
        """Serialise to JSON. Writes ``path`` if given; returns the text."""
        text = json.dumps(self.to_dict(), indent=indent, sort_keys=True)
        if path is not None:
            with open(path, "w") as f:
                f.write(text)
        return text

    @classmethod
    def from_dict(cls, values):
        """Build a config of this class with ``values`` set on the instance.

        Values whose default in the class is a NumPy array or a tuple are
        converted back to that type; import paths of callables recorded by
        ``to_dict()`` for BACKBONE / COMPUTE_BACKBONE_SHAPE are imported.
        Derived values (BATCH_SIZE, IMAGE_SHAPE, IMAGE_META_SIZE) are skipped:
        they follow from the others.
        """
        if not isinstance(values, dict):
            raise TypeError("Config.from_dict() expects a dict, got {}".format(
                type(values).__name__))
        config = cls()
        for name, value in values.items():
            if name in DERIVED_ATTRIBUTES:
                continue
            if not name.isupper():
                raise ConfigError(
                    "Config.from_dict(): key {!r} is not a configuration value "
                    "(configuration names are upper case)".format(name))
            default = getattr(cls, name, None)
            setattr(config, name, _from_plain(value, default, name))
        return config

    @classmethod
    def from_json(cls, path_or_text):
        """Inverse of ``to_json()``: accepts a file path or the JSON text."""
        text = path_or_text
        if not path_or_text.lstrip().startswith("{"):
            with open(path_or_text) as f:
                text = f.read()
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError("Config.from_json(): not valid JSON ({})".format(e)) from e
        return cls.from_dict(values)

    # ------------------------------------------------------------------
    # Validation
    # ------------------------------------------------------------------
    def validate(self):
        """Check the configuration; raise ConfigError listing every problem.

        The rules every mode shares are here; the mode ``MODEL`` names adds
        its own (``ModelBase.validate_config``: Mask R-CNN's RPN, ROI and
        mask head settings and image sides divisible by 64, another mode's
        native input size, ``LOSS_WEIGHTS`` against the mode's losses).
        Returns self so it can be chained: ``config = MyConfig().validate()``.
        """
        problems = []
        add = problems.append
        mode_class = None
        try:
            mode_class = modes.mode_class(self.MODEL)
        except (modes.UnknownModeError, ImportError) as e:
            add(str(e))
        except TypeError:
            add("MODEL must be the name of a model mode, got {!r}".format(self.MODEL))

        for name in ("GPU_COUNT", "IMAGES_PER_GPU", "STEPS_PER_EPOCH",
                     "VALIDATION_STEPS", "MAX_GT_INSTANCES",
                     "DETECTION_MAX_INSTANCES", "TOP_DOWN_PYRAMID_SIZE",
                     "IMAGE_CHANNEL_COUNT"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                add("{} must be a positive integer, got {!r}".format(name, value))

        if not _is_int(self.NUM_CLASSES) or self.NUM_CLASSES < 2:
            add("NUM_CLASSES must be at least 2 (background + one class), got {!r}; "
                "set it to 1 + the number of object classes".format(self.NUM_CLASSES))

        if callable(self.BACKBONE):
            if not callable(self.COMPUTE_BACKBONE_SHAPE):
                add("BACKBONE is a callable, so COMPUTE_BACKBONE_SHAPE must be a "
                    "callable too (see model.compute_backbone_shapes)")
        elif self.BACKBONE not in BACKBONES:
            add("BACKBONE={!r} is unknown; use one of {} or a callable".format(
                self.BACKBONE, ", ".join(BACKBONES)))

        if self.IMAGE_RESIZE_MODE not in RESIZE_MODES:
            add("IMAGE_RESIZE_MODE={!r} is unknown; use one of {}".format(
                self.IMAGE_RESIZE_MODE, ", ".join(RESIZE_MODES)))

        for name in ("DETECTION_NMS_THRESHOLD", "DETECTION_MIN_CONFIDENCE"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or not 0 <= value <= 1:
                add("{} must be between 0 and 1, got {!r}".format(name, value))

        if len(np.ravel(self.MEAN_PIXEL)) != self.IMAGE_CHANNEL_COUNT:
            add("MEAN_PIXEL has {} values but IMAGE_CHANNEL_COUNT is {}".format(
                len(np.ravel(self.MEAN_PIXEL)), self.IMAGE_CHANNEL_COUNT))
        mini = tuple(self.MINI_MASK_SHAPE)
        if len(mini) != 2 or not all(_is_int(v) and v > 0 for v in mini):
            add("MINI_MASK_SHAPE must be (height, width) of positive integers, "
                "got {!r}".format(self.MINI_MASK_SHAPE))

        if self.TRAIN_BN not in (None, True, False):
            add("TRAIN_BN must be None (train BN), False (freeze) or True, got {!r}"
                .format(self.TRAIN_BN))
        for name in ("LEARNING_RATE", "LEARNING_MOMENTUM", "WEIGHT_DECAY"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or value < 0:
                add("{} must be a non-negative number, got {!r}".format(name, value))
        if self.GRADIENT_CLIP_NORM is not None and (
                not isinstance(self.GRADIENT_CLIP_NORM, numbers.Real)
                or self.GRADIENT_CLIP_NORM <= 0):
            add("GRADIENT_CLIP_NORM must be a positive number or None, got {!r}"
                .format(self.GRADIENT_CLIP_NORM))
        if not _is_int(self.LEARNING_RATE_WARMUP_STEPS) or self.LEARNING_RATE_WARMUP_STEPS < 0:
            add("LEARNING_RATE_WARMUP_STEPS must be a non-negative integer, got {!r}".format(
                self.LEARNING_RATE_WARMUP_STEPS))
        if _mixed_precision_policy(self.MIXED_PRECISION) is None:
            add(_MIXED_PRECISION_ERROR.format(self.MIXED_PRECISION))

        validate_mode = getattr(mode_class, "validate_config", None)
        if validate_mode is not None:
            validate_mode(self, add)

        if problems:
            raise ConfigError("Invalid configuration {}:\n  - {}".format(
                type(self).__name__, "\n  - ".join(problems)))
        return self


class _ModeDefault(object):
    """A Config default that the model mode can replace.

    Every configuration value of ``Config`` (MODEL and NAME excepted) is
    one of these. Read on a config whose class or instance does not set the
    value, it gives the default of the mode ``MODEL`` names
    (``modes.config_defaults``), else the base (Mask R-CNN) value. A value a
    subclass or the instance sets shadows it, as any class attribute.
    Read on the class (``Config.DETECTION_MIN_CONFIDENCE``) it is the base
    value.
    """

    def __init__(self, name, value):
        self.name = name
        self.value = value

    def __get__(self, instance, owner=None):
        if instance is None:
            return self.value
        return modes.config_defaults(instance.MODEL).get(self.name, self.value)


for _name, _value in list(vars(Config).items()):
    if _name.isupper() and _name not in ("MODEL", "NAME") and not isinstance(_value, property):
        setattr(Config, _name, _ModeDefault(_name, _value))
del _name, _value


_MIXED_PRECISION_ERROR = ('MIXED_PRECISION must be False, True, "float16" or "bfloat16", '
                          'got {!r}')


def _mixed_precision_policy(value):
    """Keras policy name for a MIXED_PRECISION value, None when invalid."""
    if value is False or value is np.False_:
        return "float32"
    if value is True or value is np.True_:
        return "mixed_float16"
    if isinstance(value, str):
        # Keras's own policy names are accepted too.
        return {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16",
                "mixed_float16": "mixed_float16", "mixed_bfloat16": "mixed_bfloat16",
                "float32": "float32"}.get(value)
    return None


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _nearest_multiple(value, base):
    try:
        return max(base, int(round(float(value) / base)) * base)
    except (TypeError, ValueError):
        return base


def _to_plain(value, name):
    """Convert a config value to something json.dumps accepts."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_to_plain(v, name) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_plain(v, name) for k, v in value.items()}
    if callable(value):
        module = getattr(value, "__module__", None)
        qualname = getattr(value, "__qualname__", None)
        if not module or not qualname or "<" in qualname:
            raise ConfigError(
                "{} is a callable that cannot be recorded by name ({!r}); define it "
                "at module level so it can be imported".format(name, value))
        return "{}:{}".format(module, qualname)
    return value


def _from_plain(value, default, name):
    """Convert a JSON value back to the type of the class default."""
    if isinstance(default, np.ndarray):
        return np.array(value, dtype=default.dtype)
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    if name in ("BACKBONE", "COMPUTE_BACKBONE_SHAPE") and isinstance(value, str) \
            and ":" in value:
        module_name, qualname = value.split(":", 1)
        try:
            obj = importlib.import_module(module_name)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as e:
            raise ConfigError("{}: cannot import {!r} recorded in the config ({})"
                              .format(name, value, e)) from e
        return obj
    return value


def __getattr__(name):
    """``AVAILABLE_MODELS`` (the registered modes, which can change at run
    time: see mrcnn.modes) and ``RESERVED_MODELS`` (the planned ones), as
    this module exported them before the registry."""
    if name == "AVAILABLE_MODELS":
        return tuple(modes.available_modes())
    if name == "RESERVED_MODELS":
        return tuple(m for m in modes.PLANNED_MODES if m not in modes.MODEL_REGISTRY)
    raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))
