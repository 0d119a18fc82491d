"""
Mask R-CNN
Training data in NumPy (no TensorFlow): ground truth loading, image meta
data and the compatibility Python generator; the RPN and detection targets
are in ``mrcnn.targets`` (re-exported here). ``mrcnn.model`` re-exports the
names the original had in ``model.py``.

Frames: boxes are ``[N, (y1, x1, y2, x2)]`` in pixels of the *molded* image
(after ``utils.resize_image``: scaled, padded or cropped), ``y2, x2``
exclusive. Masks are ``[height, width, N]`` bool in that frame, or mini-masks
``[MINI_MASK_SHAPE[0], MINI_MASK_SHAPE[1], N]`` cropped to each box. Deltas
are ``[N, (dy, dx, log(dh), log(dw))]`` / ``RPN_BBOX_STD_DEV`` (RPN) or
``BBOX_STD_DEV`` (heads). Class 0 is background; negative ids are crowds.
Augmentation is albumentations or a callable; imgaug (unmaintained, broken on
NumPy >= 1.24) is not supported.
"""

import logging
import math
import random

import numpy as np

from mrcnn import utils
from mrcnn.targets import (_generator, build_detection_targets,  # noqa: F401  (re-exported)
                           build_rpn_targets, generate_random_rois)

logger = logging.getLogger(__name__)

# Raise after this many images in a row failed to load in data_generator().
MAX_CONSECUTIVE_ERRORS = 5


############################################################
#  Image meta data and molding
############################################################

def compose_image_meta(image_id, original_image_shape, image_shape,
                       window, scale, active_class_ids):
    """Takes attributes of an image and puts them in one 1D array.

    image_id: int ID of the image. original_image_shape, image_shape:
    [H, W, C] before / after resizing and padding. window: (y1, x1, y2, x2)
    of the real image (excluding padding) in molded-image pixels. scale: the
    resize factor. active_class_ids: [NUM_CLASSES] 1 for the classes of the
    image's dataset source.

    Returns: [12 + NUM_CLASSES] float32: [image_id, original_image_shape(3),
    image_shape(3), window(4), scale, active_class_ids(NUM_CLASSES)].

    Differs from the original: always float32 (the original's np.array() gave
    int64 or float64 depending on the inputs); integers up to 2**24 are exact.
    """
    parts = [np.ravel(image_id), np.ravel(original_image_shape),
             np.ravel(image_shape), np.ravel(window), np.ravel(scale),
             np.ravel(active_class_ids)]
    sizes = [p.size for p in parts[:5]]
    if sizes != [1, 3, 3, 4, 1]:
        raise ValueError("compose_image_meta: expected 1 id, 3 + 3 shape values, 4 "
                         "window values and 1 scale, got sizes {}".format(sizes))
    return np.concatenate([p.astype(np.float64) for p in parts]).astype(np.float32)


def parse_image_meta(meta):
    """Parses an array that contains image attributes to its components.
    See compose_image_meta() for more details.

    meta: [batch, 12 + NUM_CLASSES] (or one row, giving values without the
    batch axis). Returns a dict, with the original's dtypes: image_id [batch],
    original_image_shape [batch, 3], image_shape [batch, 3], window
    [batch, (y1, x1, y2, x2)] and active_class_ids [batch, NUM_CLASSES] int32;
    scale [batch] float32.
    """
    meta = np.asarray(meta)
    return {
        "image_id": meta[..., 0].astype(np.int32),
        "original_image_shape": meta[..., 1:4].astype(np.int32),
        "image_shape": meta[..., 4:7].astype(np.int32),
        "window": meta[..., 7:11].astype(np.int32),
        "scale": meta[..., 11].astype(np.float32),
        "active_class_ids": meta[..., 12:].astype(np.int32),
    }


def check_image(image, channel_count=3):
    """Validate one input image and return it as a NumPy array.

    image: [height, width, channel_count] array of numbers (any integer or
        float dtype, or bool).

    Converted the way ``Dataset.load_image`` converts files, each kind of
    conversion logged once per process: for a 3-channel model an RGBA image
    ``[H, W, 4]`` loses its alpha channel (not composited, as Pillow's
    ``convert("RGB")``), and a grayscale image (``[H, W]``, ``[H, W, 1]``,
    or gray + alpha ``[H, W, 2]``) is repeated to 3 channels; for a
    1-channel model a 2-D image gets a channel axis.

    Raises ValueError, saying what is wrong and how to fix it, for another
    number of dimensions or channels, an empty image, a non-numeric dtype,
    and NaN or Inf values in a float image, and integer images with values
    above 255 (16-bit data: MEAN_PIXEL is on the 0..255 scale, so convert
    them first). Float images are taken to be on the 0..255 scale and are
    not checked.
    """
    image = np.asarray(image)
    if image.ndim == 2 and channel_count in (1, 3):
        image = image[:, :, np.newaxis]
        if channel_count == 3:
            _log_conversion_once("grayscale", "2-D (grayscale) images are repeated to 3 "
                                              "channels")
    if image.ndim == 3 and channel_count == 3 and image.shape[2] != 3:
        channels = image.shape[2]
        if channels == 4:
            _log_conversion_once("rgba", "RGBA images: the alpha channel is dropped")
            image = image[:, :, :3]
        elif channels == 2:
            _log_conversion_once("gray_alpha", "gray + alpha images: the alpha channel is "
                                               "dropped and the gray one repeated to 3 "
                                               "channels")
            image = image[:, :, :1]
        elif channels == 1:
            _log_conversion_once("grayscale", "[height, width, 1] (grayscale) images are "
                                              "repeated to 3 channels")
    if image.ndim == 3 and channel_count == 3 and image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    if image.ndim != 3 or image.shape[2] != channel_count:
        raise ValueError(
            "Expected an image of shape [height, width, {}] (grayscale and RGBA are converted "
            "for 3-channel models), got {}; convert it or set IMAGE_CHANNEL_COUNT".format(
                channel_count, image.shape))
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError("Expected a non-empty image, got shape {}".format(image.shape))
    if not np.issubdtype(image.dtype, np.number) and image.dtype != bool:
        raise ValueError("Expected a numeric image, got dtype {}".format(image.dtype))
    if image.dtype.kind in "fc" and not np.all(np.isfinite(image)):
        raise ValueError("The image contains NaN or Inf values")
    if image.dtype.kind in "iu" and image.dtype.itemsize > 1 and image.size \
            and int(image.max()) > 255:
        raise ValueError(
            "The {} image has values up to {}, beyond 0..255 (a 16-bit image?); the model "
            "expects 8-bit values: convert it, e.g. (image // 257).astype(np.uint8) for "
            "0..65535".format(image.dtype, int(image.max())))
    return image


_LOGGED_CONVERSIONS = set()


def _log_conversion_once(kind, message):
    if kind not in _LOGGED_CONVERSIONS:
        _LOGGED_CONVERSIONS.add(kind)
        logger.warning("Converting input images: %s (as Dataset.load_image does); this is "
                       "logged once.", message)


def mold_image(images, config):
    """Expects an RGB image (or array of images) and subtracts the mean pixel
    (config.MEAN_PIXEL) and converts it to float32. Expects image colors in
    RGB order.

    Differs from the original: the result is float32 (the original's
    subtraction of a float64 MEAN_PIXEL produced float64); float images with
    NaN or Inf values raise ValueError instead of giving NaN inputs.
    """
    images = np.asarray(images)
    if images.dtype.kind in "fc" and not np.all(np.isfinite(images)):
        raise ValueError("mold_image: the image contains NaN or Inf values; replace them "
                         "(e.g. np.nan_to_num) before molding")
    mean = np.asarray(config.MEAN_PIXEL, dtype=np.float32)
    return images.astype(np.float32) - mean


def unmold_image(normalized_images, config):
    """Takes a image normalized with mold_image() and returns the original
    as uint8.

    Differs from the original: values are rounded and clipped to 0..255
    (the original truncated, so a round trip could lose 1 through float
    error, and out-of-range values wrapped around).
    """
    images = np.asarray(normalized_images, dtype=np.float32) + \
        np.asarray(config.MEAN_PIXEL, dtype=np.float32)
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def compute_backbone_shapes(config, image_shape):
    """Computes the width and height of each stage of the backbone network.

    Returns: [N, (height, width)] int array, one row per BACKBONE_STRIDES
    entry (ceil(side / stride)), or config.COMPUTE_BACKBONE_SHAPE(image_shape)
    when config.BACKBONE is a callable.
    """
    if callable(config.BACKBONE):
        return config.COMPUTE_BACKBONE_SHAPE(image_shape)
    if config.BACKBONE not in ("resnet50", "resnet101", "resnet18", "resnet34"):
        raise ValueError("BACKBONE={!r} is not supported; use resnet50, resnet101, "
                         "resnet18, resnet34 or "
                         "a callable with COMPUTE_BACKBONE_SHAPE".format(config.BACKBONE))
    return np.array([[int(math.ceil(image_shape[0] / stride)),
                      int(math.ceil(image_shape[1] / stride))]
                     for stride in config.BACKBONE_STRIDES])


def select_instances(class_ids, bbox, mask, max_instances, rng=None):
    """Randomly keep at most max_instances instances.

    class_ids: [N]; bbox: [N, 4]; mask: [height, width, N] (full or mini).
    rng: optional numpy Generator (default the global np.random).
    Returns (class_ids, bbox, mask) with min(N, max_instances) instances.
    The pipelines call it before padding to MAX_GT_INSTANCES.

    Differs from the original (inline in data_generator): the kept instances
    stay in their original order instead of np.random.choice's random order.
    """
    count = len(class_ids)
    if count <= max_instances:
        return class_ids, bbox, mask
    keep = np.sort(_generator(rng).choice(count, max_instances, replace=False))
    return class_ids[keep], bbox[keep], mask[..., keep]


############################################################
#  Ground truth loading
############################################################

def check_dataset(dataset, config, name="dataset", reference=None):
    """Check a Dataset against the configuration before training starts.

    dataset: a utils.Dataset. name: how the error messages call it
    ("train_dataset"). reference: optional dataset whose classes this one
    must have (the training set, when checking the validation set).

    Raises ValueError, naming the value to change, when the dataset is not
    prepared or has no images, when it has more classes than NUM_CLASSES
    (the image meta data would not fit the model: the reference failed deep
    inside the input pipeline), or when its classes differ from
    ``reference``'s. A dataset with fewer classes than NUM_CLASSES trains
    (its meta data is padded) and is logged as a warning, since the extra
    classes can never be learned.
    """
    if not hasattr(dataset, "class_from_source_map") or not hasattr(dataset, "num_classes"):
        raise ValueError("{} is not prepared: call {}.prepare() after adding its classes and "
                         "images".format(name, name))
    if dataset.num_images == 0:
        raise ValueError("{} has no images; add them with add_image() before "
                         "prepare()".format(name))
    names = ", ".join(dataset.class_names[:8]) + (", ..." if dataset.num_classes > 8 else "")
    if dataset.num_classes > config.NUM_CLASSES:
        raise ValueError(
            "{} has {} classes (background included: {}) but {}.NUM_CLASSES is {}; set "
            "NUM_CLASSES = {} in the configuration (and exclude the class-specific heads when "
            "starting from weights trained on another class count)".format(
                name, dataset.num_classes, names, type(config).__name__, config.NUM_CLASSES,
                dataset.num_classes))
    if dataset.num_classes < config.NUM_CLASSES:
        logger.warning("%s has %d classes (background included: %s) but NUM_CLASSES is %d; "
                       "the model's other classes will never be trained. Set NUM_CLASSES = %d "
                       "unless that is intended.", name, dataset.num_classes, names,
                       config.NUM_CLASSES, dataset.num_classes)
    if reference is not None:
        mine = [(c["source"], c["id"]) for c in dataset.class_info]
        theirs = [(c["source"], c["id"]) for c in reference.class_info]
        if mine != theirs:
            raise ValueError(
                "{} has other classes than the training dataset ({} against {}): class ids "
                "would not mean the same thing in both; add the same classes, in the same "
                "order, to both datasets".format(name, dataset.class_names,
                                                 reference.class_names))


def _describe_image(dataset, image_id):
    """"image 3 (source 'x', path 'a.jpg'[, reference ...])" for messages; a
    broken image_info or image_reference() must not hide the real error."""
    try:
        info = dataset.image_info[image_id]
        text = "image {} (source {!r}, path {!r}".format(
            image_id, info.get("source"), info.get("path"))
    except Exception:
        return "image {}".format(image_id)
    try:
        reference = dataset.image_reference(image_id)
    except Exception:
        reference = None
    if reference and reference != info.get("path"):
        text += ", reference {!r}".format(reference)
    return text + ")"


def _is_from(obj, package):
    return any(cls.__module__.split(".")[0] == package for cls in type(obj).__mro__)


def _apply_augmentation(augmentation, image, mask):
    """Run an albumentations transform or a callable f(image, mask) on the
    image and its [H, W, N] bool masks; returns (image, mask)."""
    if _is_from(augmentation, "imgaug"):
        raise TypeError("imgaug augmenters are not supported (imgaug is unmaintained "
                        "and breaks on NumPy >= 1.24); use the albumentations "
                        "equivalent, e.g. albumentations.HorizontalFlip(p=0.5) for "
                        "imgaug.augmenters.Fliplr(0.5)")
    if _is_from(augmentation, "albumentations"):
        # masks= (a list of 2-D masks) moves every instance with the image and,
        # unlike a stacked mask=, has no OpenCV channel limit (128 here).
        out = augmentation(image=image, masks=[mask[:, :, i].astype(np.uint8)
                                               for i in range(mask.shape[-1])])
        image = out["image"]
        if mask.shape[-1]:
            mask = np.stack([np.asarray(m) for m in out["masks"]], axis=-1)
        else:
            mask = np.zeros(tuple(np.shape(image)[:2]) + (0,), dtype=bool)
    elif callable(augmentation):
        image, mask = augmentation(image, mask)
    else:
        raise TypeError("augmentation must be an albumentations transform or a "
                        "callable f(image, mask) -> (image, mask), got {!r}"
                        .format(augmentation))
    return np.asarray(image), np.asarray(mask).astype(bool)


def load_image_gt(dataset, config, image_id, augmentation=None,
                  use_mini_mask=False, augment=False):
    """Load and return ground truth data for an image (image, mask, bounding boxes).

    augmentation: Optional albumentations transform (single or Compose), e.g.
        albumentations.HorizontalFlip(p=0.5); the masks move with the image.
        Or any callable f(image, mask) -> (image, mask), mask [H, W, N] bool.
        The output image must keep its shape and the mask the image's height
        and width, else ValueError.
    use_mini_mask: If True, masks are cropped to their boxes and resized to
        MINI_MASK_SHAPE (utils.minimize_mask); else they are image-sized.
    augment: (deprecated, use augmentation) random horizontal flip.

    Returns:
    image: [height, width, 3] molded-size image, dtype of load_image (uint8)
    image_meta: [12 + NUM_CLASSES] float32, see compose_image_meta()
    class_ids: [instance_count] int32 class IDs (negative = crowd)
    bbox: [instance_count, (y1, x1, y2, x2)] int32, in image pixels
    mask: [height, width, instance_count] bool, or MINI_MASK_SHAPE masks.

    Instances whose mask is empty are dropped: all-zero masks from
    load_mask() (logged at DEBUG level with the image and the instance
    indices) and masks emptied by resizing, cropping or augmentation. An image
    left without instances gives empty arrays; the training pipelines skip it.
    Images with more than MAX_GT_INSTANCES instances are returned whole, as
    in the original: callers subsample with select_instances().

    Differs from the original: albumentations or a callable instead of imgaug;
    load_image() output is checked with check_image() (a 2-D image becomes
    RGB; other channel counts, non-numeric dtypes and NaN/Inf raise
    ValueError naming the image and its path); load_mask() output is validated
    (ValueError naming the image, its path and both shapes when the mask's
    height/width differ from the image's, and when len(class_ids) != number
    of masks); an empty mask with no class ids (the base Dataset.load_mask())
    means no instances; masks come back bool and class_ids int32; `augment`
    moved after use_mini_mask (pass it by name).
    """
    try:
        image = check_image(dataset.load_image(image_id), config.IMAGE_CHANNEL_COUNT)
    except ValueError as error:
        raise ValueError("load_image_gt: load_image() of {}: {}".format(
            _describe_image(dataset, image_id), error)) from None
    mask, class_ids = dataset.load_mask(image_id)
    mask, class_ids = np.asarray(mask), np.asarray(class_ids).reshape(-1)
    if mask.size == 0 and class_ids.size == 0:
        mask = np.zeros(tuple(image.shape[:2]) + (0,), dtype=bool)
    if mask.ndim != 3 or mask.shape[:2] != image.shape[:2]:
        raise ValueError(
            "load_image_gt: the mask of {} has shape {} but the image has shape {}; "
            "load_mask() must return masks of shape [height, width, instances] "
            "with the image's height and width".format(
                _describe_image(dataset, image_id), mask.shape, image.shape))
    if class_ids.shape[0] != mask.shape[-1]:
        raise ValueError(
            "load_image_gt: load_mask() of {} returned {} class ids for {} masks"
            .format(_describe_image(dataset, image_id), class_ids.shape[0],
                    mask.shape[-1]))
    mask, class_ids = mask.astype(bool, copy=False), class_ids.astype(np.int32)
    class_count = max(dataset.num_classes, config.NUM_CLASSES)
    if class_ids.size and int(np.abs(class_ids).max()) >= class_count:
        raise ValueError(
            "load_image_gt: load_mask() of {} returned class id {}, but class ids go up to "
            "{} (NUM_CLASSES={}, the dataset has {} classes); add the class with "
            "add_class() and set NUM_CLASSES to match".format(
                _describe_image(dataset, image_id), int(np.abs(class_ids).max()),
                class_count - 1, config.NUM_CLASSES, dataset.num_classes))
    if logger.isEnabledFor(logging.DEBUG):
        empty = np.flatnonzero(~mask.any(axis=(0, 1)))
        if empty.size:
            logger.debug("load_image_gt: dropping instance(s) %s of %s: load_mask() gave "
                         "all-zero masks", empty.tolist(), _describe_image(dataset, image_id))

    original_shape = image.shape
    image, window, scale, padding, crop = utils.resize_image(
        image, min_dim=config.IMAGE_MIN_DIM, min_scale=config.IMAGE_MIN_SCALE,
        max_dim=config.IMAGE_MAX_DIM, mode=config.IMAGE_RESIZE_MODE)
    mask = utils.resize_mask(mask, scale, padding, crop)

    if augment:
        logger.warning("'augment' is deprecated. Use 'augmentation' instead.")
        if random.randint(0, 1):
            image, mask = np.fliplr(image), np.fliplr(mask)

    if augmentation is not None:
        shape_before = image.shape
        image, mask = _apply_augmentation(augmentation, image, mask)
        if image.shape != shape_before or mask.ndim != 3 \
                or mask.shape[:2] != image.shape[:2]:
            raise ValueError(
                "load_image_gt: augmentation of {} changed the image from {} to {} "
                "(mask {}); augmentations must keep the image size and move the "
                "masks with the image".format(_describe_image(dataset, image_id),
                                              shape_before, image.shape, mask.shape))

    # Instances cropped out (crop mode, augmentation) or too thin to survive
    # the downscale have empty masks: drop them.
    present = mask.any(axis=(0, 1))
    mask, class_ids = mask[:, :, present], class_ids[present]
    bbox = utils.extract_bboxes(mask)

    # Classes of the image's source; others are inactive for this image.
    # A dataset with fewer classes than NUM_CLASSES (check_dataset warns) is
    # padded, so the meta data has the length the model expects.
    active_class_ids = np.zeros([class_count], dtype=np.int32)
    source_class_ids = dataset.source_class_ids[dataset.image_info[image_id]["source"]]
    active_class_ids[source_class_ids] = 1

    if use_mini_mask:
        mask = utils.minimize_mask(bbox, mask, config.MINI_MASK_SHAPE)

    image_meta = compose_image_meta(image_id, original_shape, image.shape,
                                    window, scale, active_class_ids)
    return image, image_meta, class_ids, bbox, mask


############################################################
#  Python generator (kept for compatibility)
############################################################

def data_generator(dataset, config, shuffle=True, augment=False, augmentation=None,
                   random_rois=0, batch_size=1, detection_targets=False,
                   no_augmentation_sources=None):
    """A generator (endless, Keras style) of training batches.

    shuffle: shuffle (np.random) at the start of every epoch.
    augment: (deprecated) random horizontal flips. augmentation:
        albumentations transform or callable, see load_image_gt().
    random_rois: if > 0, also yield that many random proposals per image
        (training the heads without the RPN). detection_targets: with
        random_rois, also yield build_detection_targets() targets.
    no_augmentation_sources: sources whose images are never augmented.

    Yields (inputs, outputs). inputs:
    - images: [batch, H, W, C] float32, molded (mean subtracted)
    - image_meta: [batch, 12 + NUM_CLASSES] float32, see compose_image_meta()
    - rpn_match: [batch, num_anchors, 1] int32 (1 / -1 / 0)
    - rpn_bbox: [batch, RPN_TRAIN_ANCHORS_PER_IMAGE, 4] float32 deltas
    - gt_class_ids: [batch, MAX_GT_INSTANCES] int32, zero padded
    - gt_boxes: [batch, MAX_GT_INSTANCES, (y1, x1, y2, x2)] int32, zero padded
    - gt_masks: [batch, height, width, MAX_GT_INSTANCES] bool; MINI_MASK_SHAPE
      sized when USE_MINI_MASK
    - with random_rois: rpn_rois [batch, random_rois, 4] int32; with
      detection_targets too: rois [batch, TRAIN_ROIS_PER_IMAGE, 4]
    outputs: [] or, with detection_targets, class ids [batch, rois, 1], box
    deltas and masks from build_detection_targets().

    Images without instances (no class id > 0) are skipped. Instances beyond
    MAX_GT_INSTANCES are subsampled (select_instances) after the RPN targets
    are built from all of them.

    Differs from the original: a failing image is logged (logging.warning,
    with its id and path) and skipped, and the error re-raised when
    MAX_CONSECUTIVE_ERRORS (5) images fail in a row (the original counted
    errors over the whole run and raised at the 6th); a full pass without a
    usable image raises ValueError instead of looping forever; rpn_bbox and
    image_meta are float32.
    """
    image_ids = np.copy(dataset.image_ids)
    if len(image_ids) == 0:
        raise ValueError("data_generator: the dataset has no images (did you call "
                         "dataset.prepare()?)")
    no_augmentation_sources = no_augmentation_sources or []
    backbone_shapes = compute_backbone_shapes(config, config.IMAGE_SHAPE)
    anchors = utils.generate_pyramid_anchors(
        config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, backbone_shapes,
        config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE)
    image_index = -1
    b = 0  # batch item index
    consecutive_errors = 0
    unusable = 0  # images without instances or failed since the last batched one

    while True:
        image_index = (image_index + 1) % len(image_ids)
        if shuffle and image_index == 0:
            np.random.shuffle(image_ids)
        image_id = image_ids[image_index]
        try:
            source = dataset.image_info[image_id]["source"]
            sample = _training_sample(
                dataset, config, image_id, anchors, random_rois, detection_targets,
                augmentation=None if source in no_augmentation_sources else augmentation,
                augment=augment)
            if sample is not None:
                if b == 0:
                    # Fresh arrays per batch: a yielded batch is never written again.
                    batch = [np.zeros((batch_size,) + a.shape, dtype=a.dtype)
                             for a in sample]
                for array, value in zip(batch, sample):
                    array[b] = value
        except Exception as error:
            consecutive_errors += 1
            unusable += 1
            logger.warning("data_generator: skipping %s after an error: %s",
                           _describe_image(dataset, image_id), error, exc_info=True)
            if consecutive_errors >= MAX_CONSECUTIVE_ERRORS:
                logger.error("data_generator: %d images in a row failed, the last %s; "
                             "giving up", consecutive_errors,
                             _describe_image(dataset, image_id))
                raise
            continue
        consecutive_errors = 0
        if sample is None:  # no instances of the classes we train on
            unusable += 1
            if unusable >= len(image_ids):
                raise ValueError("data_generator: no usable image in a full pass over "
                                 "the dataset: each had no instances (no class id > 0) "
                                 "or failed to load")
            continue
        unusable = 0

        b += 1
        if b >= batch_size:
            inputs, outputs = batch[:7], []
            if random_rois:
                inputs.append(batch[7])
                if detection_targets:
                    inputs.append(batch[8])
                    outputs = batch[9:12]
            yield inputs, outputs
            b = 0


def _training_sample(dataset, config, image_id, anchors, random_rois,
                     detection_targets, augmentation, augment):
    """One image's arrays in data_generator's batch order (without the batch
    axis), or None when the image has no instances (no class id > 0)."""
    image, image_meta, gt_class_ids, gt_boxes, gt_masks = load_image_gt(
        dataset, config, image_id, augmentation=augmentation,
        use_mini_mask=config.USE_MINI_MASK, augment=augment)
    if not np.any(gt_class_ids > 0):
        return None
    rpn_match, rpn_bbox = build_rpn_targets(image.shape, anchors, gt_class_ids,
                                            gt_boxes, config)
    extra = []
    if random_rois:
        rpn_rois = generate_random_rois(image.shape, random_rois, gt_class_ids, gt_boxes)
        extra.append(rpn_rois)
        if detection_targets:
            rois, class_ids, deltas, masks = build_detection_targets(
                rpn_rois, gt_class_ids, gt_boxes, gt_masks, config)
            # Keras wants targets with the outputs' rank: class ids [rois, 1].
            extra += [rois, class_ids[:, np.newaxis], deltas, masks]
    # RPN targets use every instance; the padded GT arrays hold at most
    # MAX_GT_INSTANCES of them.
    max_gt = config.MAX_GT_INSTANCES
    gt_class_ids, gt_boxes, gt_masks = select_instances(
        gt_class_ids, gt_boxes, gt_masks, max_gt)
    pad = max_gt - gt_class_ids.shape[0]
    return [mold_image(image, config), image_meta, rpn_match[:, np.newaxis], rpn_bbox,
            np.pad(gt_class_ids.astype(np.int32), (0, pad)),
            np.pad(gt_boxes.astype(np.int32), ((0, pad), (0, 0))),
            np.pad(gt_masks.astype(bool), ((0, 0), (0, 0), (0, pad)))] + extra
