"""
Ground truth in NumPy (no TensorFlow), for every model mode: checking
images and datasets, loading an image with its boxes and masks
(``load_image_gt``), molding, instance subsampling and the data-error policy
(``ErrorCounter``). Mask R-CNN's targets and the reference's
``data_generator`` are ``mrcnn.maskrcnn.targets``; ``mrcnn.model``
re-exports the names the original had in ``model.py``.

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
import random
import threading

import numpy as np

from mrcnn import utils
from mrcnn.image_meta import compose_image_meta, parse_image_meta  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

# Raise after this many images in a row failed to load in data_generator().
MAX_CONSECUTIVE_ERRORS = 5


############################################################
#  Image meta data and molding
############################################################


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


def _generator(rng):
    """rng (np.random.Generator / RandomState) or the global np.random."""
    return np.random if rng is None else rng


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


class ErrorCounter:
    """The data-error policy of every training input path (the tf.data
    pipeline and the reference's ``data_generator``): count failures in a
    row (``failure()`` says when MAX_CONSECUTIVE_ERRORS is reached) and the
    images skipped since the last usable one (``usable()`` says when a full
    pass has none), safely across parallel loader threads."""

    def __init__(self, limit, image_count):
        self.limit = limit
        self.image_count = image_count
        self.count = 0
        self.unusable = set()
        self.lock = threading.Lock()

    def success(self):
        with self.lock:
            self.count = 0

    def failure(self):
        """Count one failure; True when the limit is reached."""
        with self.lock:
            self.count += 1
            return self.count >= self.limit

    def usable(self, image_id, is_usable):
        """Record whether an image gave a sample; True when every image of
        the dataset has been skipped since the last usable one."""
        with self.lock:
            if is_usable:
                self.unusable.clear()
                return False
            self.unusable.add(image_id)
            return len(self.unusable) >= self.image_count


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


