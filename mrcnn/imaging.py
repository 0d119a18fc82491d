"""
Mask R-CNN
Image and mask resizing: resize_image, resize_mask, mini-masks and
unmolding of predicted masks. Public names are re-exported by mrcnn.utils.

Bilinear resizing reproduces scikit-image's resize(order=1, mode="constant")
sampling, which the original used, with a vectorised separable
implementation that is an order of magnitude faster.
"""

import random

import numpy as np
import skimage.transform
import skimage.util


def _linear_taps(in_size, out_size):
    """Source indices and weights of 1-D linear interpolation with
    half-pixel centres and a constant 0 outside the input: the sampling
    scikit-image's resize(order=1, mode="constant") performs.

    Returns (i0, w0, i1, w1), each [out_size]; indices are clipped into
    range and the weight of an out-of-range tap is 0.
    """
    src = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
    i0 = np.floor(src).astype(np.intp)
    w1 = src - i0
    w0 = 1.0 - w1
    i1 = i0 + 1
    w0[(i0 < 0) | (i0 >= in_size)] = 0
    w1[(i1 < 0) | (i1 >= in_size)] = 0
    return np.clip(i0, 0, in_size - 1), w0, np.clip(i1, 0, in_size - 1), w1


def _resize_linear(image, output_shape):
    """Bilinear resize of the first two axes of a float array, equal (up to
    float rounding) to skimage.transform.resize(order=1, mode="constant",
    cval=0, anti_aliasing=False), at a fraction of its cost."""
    out_h, out_w = int(output_shape[0]), int(output_shape[1])
    dtype = np.float32 if image.dtype == np.float32 else np.float64
    image = image.astype(dtype, copy=False)
    i0, w0, i1, w1 = _linear_taps(image.shape[0], out_h)
    extra = (1,) * (image.ndim - 1)
    rows = (image[i0] * w0.astype(dtype).reshape((-1,) + extra)
            + image[i1] * w1.astype(dtype).reshape((-1,) + extra))
    j0, v0, j1, v1 = _linear_taps(image.shape[1], out_w)
    extra = (1,) * (image.ndim - 2)
    return (rows[:, j0] * v0.astype(dtype).reshape((1, -1) + extra)
            + rows[:, j1] * v1.astype(dtype).reshape((1, -1) + extra))


def resize(image, output_shape, order=1, mode='constant', cval=0, clip=True,
           preserve_range=False, anti_aliasing=False, anti_aliasing_sigma=None):
    """A wrapper for Scikit-Image resize() with the arguments the original
    used, kept so that callers get identical results.

    The common case (order=1, mode="constant", cval=0, no anti-aliasing) runs
    a vectorised separable implementation with the same sampling, 20-50x
    faster than scikit-image; anything else is passed to scikit-image.
    Boolean images are treated as 0/1 floats (scikit-image >= 0.19 refuses
    bilinear interpolation of bool arrays).
    """
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.float32)
    output_shape = tuple(int(s) for s in output_shape)
    fast = (order == 1 and mode == "constant" and cval == 0 and not anti_aliasing
            and image.ndim in (2, 3) and len(output_shape) >= 2
            and output_shape[2:] == image.shape[2:len(output_shape)])
    if not fast:
        return skimage.transform.resize(
            image, output_shape, order=order, mode=mode, cval=cval, clip=clip,
            preserve_range=preserve_range, anti_aliasing=anti_aliasing,
            anti_aliasing_sigma=anti_aliasing_sigma)
    if not preserve_range and image.dtype.kind in "ui":
        image = skimage.util.img_as_float(image)
    if image.shape[:2] == output_shape[:2]:
        return image.astype(np.float64 if image.dtype != np.float32 else np.float32)
    return _resize_linear(image, output_shape[:2])


def resize_image(image, min_dim=None, max_dim=None, min_scale=None, mode="square"):
    """Resizes an image keeping the aspect ratio unchanged.

    min_dim: if provided, resizes the image such that it's smaller
        dimension == min_dim
    max_dim: if provided, ensures that the image longest side doesn't
        exceed this value.
    min_scale: if provided, ensure that the image is scaled up by at least
        this percent even if min_dim doesn't require it.
    mode: Resizing mode.
        none: No resizing. Return the image unchanged.
        square: Resize and pad with zeros to get a square image
            of size [max_dim, max_dim].
        pad64: Pads width and height with zeros to make them multiples of 64.
               If min_dim or min_scale are provided, it scales the image up
               before padding. max_dim is ignored in this mode.
        crop: Picks random crops from the image. First, scales the image based
              on min_dim and min_scale, then picks a random crop of
              size min_dim x min_dim. Can be used in training only.
              max_dim is not used in this mode.

    Returns:
    image: the resized image, same dtype as the input
    window: (y1, x1, y2, x2). If max_dim is provided, padding might
        be inserted in the returned image. If so, this window is the
        coordinates of the image part of the full image (excluding
        the padding). The x2, y2 pixels are not included.
    scale: The scale factor used to resize the image
    padding: Padding added to the image [(top, bottom), (left, right), (0, 0)]
    crop: (y, x, height, width) of the crop in crop mode, else None

    Differs from the original: integer images are rounded to the nearest
    value after interpolation (the original truncated, so a flat 7 could
    come out as 6); in crop mode an image that is still smaller
    than min_dim after scaling (rounding) is scaled up until it covers the
    crop instead of failing in random.randint; crop mode without min_dim,
    pad64 with a min_dim that is not a multiple of 64 and unknown modes raise
    ValueError with a message; 2-D (grayscale) images are accepted; a side
    that would round to 0 pixels (a 1 x 5000 image in a 1024 square) keeps
    one pixel.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError("resize_image expects an image of shape [height, width] or "
                         "[height, width, channels] with non-zero sides, got {}".format(
                             image.shape))
    if mode not in ("none", "square", "pad64", "crop"):
        raise ValueError("Mode {} not supported; use none, square, pad64 or crop"
                         .format(mode))
    # Keep track of image dtype and return results in the same dtype
    image_dtype = image.dtype
    # Default window (y1, x1, y2, x2) and default scale == 1.
    h, w = image.shape[:2]
    window = (0, 0, h, w)
    scale = 1
    padding = [(0, 0), (0, 0), (0, 0)]
    crop = None

    if mode == "none":
        return image, window, scale, padding, crop
    if mode == "square" and not max_dim:
        raise ValueError("resize_image: square mode needs max_dim")
    if mode == "crop" and not min_dim:
        raise ValueError("resize_image: crop mode needs min_dim (the crop size)")
    if mode == "pad64" and min_dim and min_dim % 64 != 0:
        raise ValueError("Minimum dimension must be a multiple of 64, got {}".format(
            min_dim))

    # Scale?
    if min_dim:
        # Scale up but not down
        scale = max(1, min_dim / min(h, w))
    if min_scale and scale < min_scale:
        scale = min_scale

    # Does it exceed max dim?
    if max_dim and mode == "square":
        image_max = max(h, w)
        if round(image_max * scale) > max_dim:
            scale = max_dim / image_max

    # A very thin image keeps at least one row and column (1 x 5000 would
    # otherwise round to an empty image).
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    if mode == "crop":
        # Never leave a side short of the crop (rounding, tiny images).
        new_h, new_w = max(new_h, min_dim), max(new_w, min_dim)

    # Resize image using bilinear interpolation (float32 is exact enough for
    # 8-bit pixels and twice as fast as float64)
    if (new_h, new_w) != (h, w):
        work = np.float32 if image.dtype.itemsize == 1 else np.float64
        image = _resize_linear(image.astype(work), (new_h, new_w))
        if image_dtype.kind in "ui":
            # Round, not truncate: the original's astype() turned 6.99999 into 6.
            image = np.rint(image)
        image = image.astype(image_dtype)

    pad_spec = lambda p: p[:image.ndim]  # noqa: E731  (2-D images have no channel pad)
    # Need padding or cropping?
    if mode == "square":
        # Get new height and width
        h, w = image.shape[:2]
        top_pad = (max_dim - h) // 2
        bottom_pad = max_dim - h - top_pad
        left_pad = (max_dim - w) // 2
        right_pad = max_dim - w - left_pad
        padding = [(top_pad, bottom_pad), (left_pad, right_pad), (0, 0)]
        image = np.pad(image, pad_spec(padding), mode='constant', constant_values=0)
        window = (top_pad, left_pad, h + top_pad, w + left_pad)
    elif mode == "pad64":
        h, w = image.shape[:2]
        # Both sides must be divisible by 64
        top_pad, bottom_pad = _pad_to_multiple(h, 64)
        left_pad, right_pad = _pad_to_multiple(w, 64)
        padding = [(top_pad, bottom_pad), (left_pad, right_pad), (0, 0)]
        image = np.pad(image, pad_spec(padding), mode='constant', constant_values=0)
        window = (top_pad, left_pad, h + top_pad, w + left_pad)
    elif mode == "crop":
        # Pick a random crop
        h, w = image.shape[:2]
        y = random.randint(0, (h - min_dim))
        x = random.randint(0, (w - min_dim))
        crop = (y, x, min_dim, min_dim)
        image = image[y:y + min_dim, x:x + min_dim]
        window = (0, 0, min_dim, min_dim)
    return image.astype(image_dtype), window, scale, padding, crop


def _pad_to_multiple(size, multiple):
    """(before, after) padding that brings size to a multiple, split evenly."""
    if size % multiple == 0:
        return 0, 0
    total = size - (size % multiple) + multiple - size
    return total // 2, total - total // 2


def _nearest_indices(in_size, out_size):
    """Source index of each output sample of an order-0 zoom that maps the
    first and last pixels onto each other (scipy.ndimage.zoom's grid)."""
    if out_size <= 1:
        return np.zeros(out_size, dtype=np.intp)
    coords = np.arange(out_size) * ((in_size - 1) / (out_size - 1))
    return np.clip(np.floor(coords + 0.5).astype(np.intp), 0, in_size - 1)


def resize_mask(mask, scale, padding, crop=None):
    """Resizes a mask using the given scale and padding.
    Typically, you get the scale and padding from resize_image() to
    ensure both, the image and the mask, are resized consistently.

    mask: [height, width, instances]
    scale: mask scaling factor
    padding: Padding to add to the mask in the form
            [(top, bottom), (left, right), (0, 0)]
    crop: (y, x, height, width) from resize_image() in crop mode.

    Returns: the mask, same dtype, [round(h*scale) (+pad), round(w*scale) (+pad), N].

    Nearest-neighbour sampling on scipy.ndimage.zoom's grid (the original
    called zoom(order=0)). Differs from the original: zoom's constant border
    mode sometimes set the last row or column to 0 through floating point
    error at the edge; here edge pixels are always kept.
    """
    mask = np.asarray(mask)
    h, w = mask.shape[:2]
    new_h, new_w = round(h * scale), round(w * scale)
    if (new_h, new_w) != (h, w):
        mask = mask[_nearest_indices(h, new_h)][:, _nearest_indices(w, new_w)]
    if crop is not None:
        y, x, h, w = crop
        mask = mask[y:y + h, x:x + w]
    else:
        mask = np.pad(mask, padding[:mask.ndim], mode='constant', constant_values=0)
    return mask


def _box_ints(func, i, box):
    """(y1, x1, y2, x2) ints of instance i's box; ValueError for NaN/Inf."""
    values = np.asarray(box[:4], dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("{}: instance {} has a box with NaN or Inf coordinates {}".format(
            func, i, values.tolist()))
    return tuple(int(v) for v in values)


def minimize_mask(bbox, mask, mini_shape):
    """Resize masks to a smaller version to reduce memory load.
    Mini-masks can be resized back to image scale using expand_masks()

    bbox: [N, (y1, x1, y2, x2)] boxes of the instances, inside the mask
        (0 <= y1 < y2 <= height, 0 <= x1 < x2 <= width), as extract_bboxes()
        gives them for non-empty masks.
    mask: [height, width, N]
    mini_shape: (height, width) of the mini masks

    Returns: [mini_height, mini_width, N] bool.

    Differs from the original: a box with zero area, an inverted box, a box
    reaching outside the mask (negative coordinates used to wrap around) and
    NaN/Inf coordinates raise ValueError naming the instance index and its
    box, instead of a bare "Invalid bounding box" or a wrong crop.
    """
    mini_shape = tuple(mini_shape)
    mask = np.asarray(mask)
    height, width = mask.shape[:2]
    mini_mask = np.zeros(mini_shape + (mask.shape[-1],), dtype=bool)
    for i in range(mask.shape[-1]):
        y1, x1, y2, x2 = _box_ints("minimize_mask", i, bbox[i])
        if y2 <= y1 or x2 <= x1:
            raise ValueError(
                "minimize_mask: instance {} has a bounding box with zero area {}; "
                "remove empty masks (extract_bboxes gives them (0, 0, 0, 0)) "
                "before minimizing".format(i, (y1, x1, y2, x2)))
        if y1 < 0 or x1 < 0 or y2 > height or x2 > width:
            raise ValueError(
                "minimize_mask: instance {} has a bounding box {} outside the mask of "
                "height {} and width {}; use extract_bboxes(mask) for the boxes".format(
                    i, (y1, x1, y2, x2), height, width))
        # Pick slice and cast to bool in case load_mask() returned wrong dtype
        m = mask[y1:y2, x1:x2, i].astype(bool)
        # Resize with bilinear interpolation
        m = resize(m, mini_shape)
        mini_mask[:, :, i] = np.around(m).astype(bool)
    return mini_mask


def expand_mask(bbox, mini_mask, image_shape):
    """Resizes mini masks back to image size. Reverses the change
    of minimize_mask().

    bbox: [N, (y1, x1, y2, x2)] boxes in image pixels, inside the image
    mini_mask: [mini_height, mini_width, N]
    image_shape: (height, width[, channels]) of the image

    Returns: [height, width, N] bool. An instance whose box has zero area
    (or is inverted) gets an empty mask. A box reaching outside the image or
    with NaN/Inf coordinates raises ValueError naming the instance (the
    original failed in a broadcast, or wrapped negative coordinates around).
    """
    mini_mask = np.asarray(mini_mask)
    height, width = (int(v) for v in image_shape[:2])
    mask = np.zeros((height, width, mini_mask.shape[-1]), dtype=bool)
    for i in range(mask.shape[-1]):
        m = mini_mask[:, :, i]
        y1, x1, y2, x2 = _box_ints("expand_mask", i, bbox[i])
        h = y2 - y1
        w = x2 - x1
        if h <= 0 or w <= 0:
            continue
        if y1 < 0 or x1 < 0 or y2 > height or x2 > width:
            raise ValueError(
                "expand_mask: instance {} has a bounding box {} outside the image of "
                "height {} and width {}".format(i, (y1, x1, y2, x2), height, width))
        # Resize with bilinear interpolation
        m = resize(m, (h, w))
        mask[y1:y2, x1:x2, i] = np.around(m).astype(bool)
    return mask


def unmold_mask(mask, bbox, image_shape):
    """Converts a mask generated by the neural network to a format similar
    to its original shape.
    mask: [height, width] of type float. A small, typically 28x28 mask.
    bbox: [y1, x1, y2, x2]. The box to fit the mask in.
    image_shape: (height, width[, channels]) of the output

    Returns a binary mask with the same size as the original image.
    The mask is resized to the whole box; a box reaching outside the image
    keeps the part inside it (the original failed in a broadcast), and a box
    with zero area or entirely outside gives an empty mask. ValueError for
    NaN/Inf box coordinates.
    """
    height, width = (int(v) for v in image_shape[:2])
    full_mask = np.zeros((height, width), dtype=bool)
    paste_mask(mask, _box_ints("unmold_mask", 0, bbox), full_mask)
    return full_mask


def paste_mask(mask, bbox, out, threshold=0.5):
    """Resizes a small float mask to its box and writes it, thresholded,
    into ``out`` in place: the work of unmold_mask() without allocating a
    full-image array per instance.

    mask: [height, width] float, typically 28x28.
    bbox: [y1, x1, y2, x2] in the pixel frame of ``out``.
    out: [H, W] bool array (a view is fine); pixels outside the box are
        left as they are. The part of the box outside ``out`` is cut off.
    """
    y1, x1, y2, x2 = _box_ints("paste_mask", 0, bbox)
    height, width = out.shape[:2]
    top, left = max(y1, 0), max(x1, 0)
    bottom, right = min(y2, height), min(x2, width)
    if y2 <= y1 or x2 <= x1 or bottom <= top or right <= left:
        return out
    mask = resize(mask, (y2 - y1, x2 - x1))
    # Put the part of the mask that lies in the image in the right location.
    out[top:bottom, left:right] = \
        mask[top - y1:bottom - y1, left - x1:right - x1] >= threshold
    return out
