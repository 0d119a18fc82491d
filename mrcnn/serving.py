"""
``detect()``'s NumPy pre- and post-processing as TensorFlow graph
operations, for models that run without this package's Python code (an
exported SavedModel): resizing, padding and molding a batch of uint8
images, their image metas, and un-molding ROI detections (boxes to
original-image pixels, each 28 x 28 mask resized into its box).

Each function is the twin of a NumPy one and computes the same values in
the same precision (float64 where NumPy promotes to it), so an exported
model's detections equal ``detect()``'s; the tests compare them:

========================  ===============================================
``resize_image_graph``    ``imaging.resize_image`` ("square" mode) and
                          ``transform.mold``
``linear_taps_graph``     ``imaging._linear_taps``
``resize_linear_graph``   ``imaging._resize_linear``
``unmold_boxes_graph``    ``transform.unmold_boxes``
``paste_masks_graph``     ``transform.paste_masks``
``unmold_roi_graph``      ``transform.unmold_roi_detections`` (fixed
                          slots: detections first, then zeros)
========================  ===============================================

Frames: images ``[N, H, W, 3]`` uint8, all of one size (a batch tensor);
molded images ``[N, S, S, C]`` float32; boxes normalised to the molded
image inside the graph, ``(y1, x1, y2, x2)`` int32 pixels of the original
image outside it (y2, x2 exclusive).
"""

import numpy as np
import tensorflow as tf

from mrcnn import portable


def linear_taps_graph(in_size, out_size):
    """(i0, w0, i1, w1), each [out_size]: the source indices (int32, clipped)
    and float64 weights of 1-D linear interpolation with half-pixel centres
    and zero outside the input (``imaging._linear_taps``)."""
    in_size = tf.cast(in_size, tf.int32)
    out_size = tf.cast(out_size, tf.int32)
    ratio = tf.cast(in_size, tf.float64) / tf.cast(out_size, tf.float64)
    src = (tf.cast(tf.range(out_size), tf.float64) + 0.5) * ratio - 0.5
    i0 = tf.cast(tf.floor(src), tf.int32)
    w1 = src - tf.cast(i0, tf.float64)
    w0 = 1.0 - w1
    i1 = i0 + 1
    w0 = tf.where((i0 < 0) | (i0 >= in_size), tf.zeros_like(w0), w0)
    w1 = tf.where((i1 < 0) | (i1 >= in_size), tf.zeros_like(w1), w1)
    return (tf.clip_by_value(i0, 0, in_size - 1), w0,
            tf.clip_by_value(i1, 0, in_size - 1), w1)


def resize_linear_graph(image, out_h, out_w):
    """Bilinear resize of axes 0 and 1 of a float32 tensor ``[h, w, ...]``
    to ``[out_h, out_w, ...]`` as ``imaging._resize_linear``: rows first,
    then columns, float32 products of float64 weights cast to float32."""
    i0, w0, i1, w1 = linear_taps_graph(tf.shape(image)[0], out_h)
    extra = [1] * (len(image.shape) - 1)
    w0 = tf.reshape(tf.cast(w0, tf.float32), [-1] + extra)
    w1 = tf.reshape(tf.cast(w1, tf.float32), [-1] + extra)
    rows = tf.gather(image, i0) * w0 + tf.gather(image, i1) * w1
    j0, v0, j1, v1 = linear_taps_graph(tf.shape(image)[1], out_w)
    extra = [1] * (len(image.shape) - 2)
    v0 = tf.reshape(tf.cast(v0, tf.float32), [1, -1] + extra)
    v1 = tf.reshape(tf.cast(v1, tf.float32), [1, -1] + extra)
    return tf.gather(rows, j0, axis=1) * v0 + tf.gather(rows, j1, axis=1) * v1


def _round_half_even(x):
    """Python's round() and NumPy's rint/around: halves to even."""
    return tf.round(x)


def resize_scale_graph(height, width, min_dim, max_dim, min_scale):
    """The scale and new size of ``imaging.resize_image`` in "square" mode
    for an image of ``height`` x ``width``: (scale float64, new_h, new_w
    int32)."""
    h = tf.cast(height, tf.float64)
    w = tf.cast(width, tf.float64)
    scale = tf.constant(1.0, tf.float64)
    if min_dim:
        scale = tf.maximum(scale, float(min_dim) / tf.minimum(h, w))
    if min_scale:
        scale = tf.maximum(scale, float(min_scale))
    image_max = tf.maximum(h, w)
    scale = tf.where(_round_half_even(image_max * scale) > float(max_dim),
                     float(max_dim) / image_max, scale)
    new_h = tf.maximum(1, tf.cast(_round_half_even(h * scale), tf.int32))
    new_w = tf.maximum(1, tf.cast(_round_half_even(w * scale), tf.int32))
    return scale, new_h, new_w


def resize_image_graph(images, config):
    """Mold a batch of uint8 images ``[N, H, W, C]`` as ``detect()`` does in
    "square" mode: resize (bilinear, rounded back to uint8), pad to
    IMAGE_MAX_DIM squared, subtract MEAN_PIXEL.

    Returns (molded [N, S, S, C] float32, image_metas [N, IMAGE_META_SIZE]
    float32, window [4] int32 (y1, x1, y2, x2) in the molded image, scale
    float64 scalar).
    """
    if config.IMAGE_RESIZE_MODE != "square":
        raise ValueError("in-graph molding supports IMAGE_RESIZE_MODE 'square' (one molded "
                         "size for every image), got {!r}".format(config.IMAGE_RESIZE_MODE))
    max_dim = int(config.IMAGE_MAX_DIM)
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    scale, new_h, new_w = resize_scale_graph(height, width, config.IMAGE_MIN_DIM, max_dim,
                                             config.IMAGE_MIN_SCALE)

    def resized():
        # [N, H, W, C] -> [H, W, N, C] so the shared 2-D resize works on
        # every image at once, then back.
        work = tf.transpose(tf.cast(images, tf.float32), [1, 2, 0, 3])
        out = resize_linear_graph(work, new_h, new_w)
        out = tf.clip_by_value(_round_half_even(out), 0.0, 255.0)
        return tf.transpose(tf.cast(tf.cast(out, tf.uint8), tf.float32), [2, 0, 1, 3])

    same = tf.logical_and(tf.equal(new_h, height), tf.equal(new_w, width))
    image = tf.cond(same, lambda: tf.cast(images, tf.float32), resized)
    top = (max_dim - new_h) // 2
    left = (max_dim - new_w) // 2
    image = tf.pad(image, [[0, 0], [top, max_dim - new_h - top],
                           [left, max_dim - new_w - left], [0, 0]])
    channels = int(config.IMAGE_CHANNEL_COUNT)
    image = tf.ensure_shape(image, [None, max_dim, max_dim, channels])
    molded = image - tf.constant(np.asarray(config.MEAN_PIXEL, np.float32))
    window = tf.stack([top, left, new_h + top, new_w + left])
    count = tf.shape(images)[0]
    meta = tf.concat([
        tf.zeros([1], tf.float64),
        tf.cast(tf.stack([height, width, channels]), tf.float64),
        tf.constant([max_dim, max_dim, channels], tf.float64),
        tf.cast(window, tf.float64), scale[None],
        tf.zeros([int(config.NUM_CLASSES)], tf.float64)], axis=0)
    metas = tf.tile(tf.cast(meta, tf.float32)[None], [count, 1])
    return molded, metas, window, scale


def _wide_float():
    """The dtype in which NumPy's post-processing computes (float64), or
    float32 inside ``portable.builtin_ops()``: TFLite has no float64
    arithmetic."""
    return tf.float32 if portable.active() else tf.float64


def unmold_boxes_graph(boxes, window, molded_hw, original_hw):
    """``transform.unmold_boxes`` for boxes ``[..., N, 4]`` normalised to the
    molded image: int32 pixels of the original image, clipped into it.
    window [4] int pixels; molded_hw, original_hw [2] ints."""
    wide = _wide_float()
    boxes = tf.cast(boxes, tf.float32)
    molded_hw = tf.cast(molded_hw, wide)
    scale = tf.stack([molded_hw[0] - 1, molded_hw[1] - 1] * 2)
    window = tf.cast((tf.cast(window, wide) - tf.constant([0, 0, 1, 1], wide))
                     / scale, tf.float32)
    start = tf.concat([window[:2], window[:2]], axis=0)
    extent = tf.concat([window[2:] - window[:2]] * 2, axis=0)
    thin = extent <= 0
    relative = (boxes - start) / tf.where(thin, tf.ones_like(extent), extent)
    relative = tf.where(thin, tf.constant([0, 0, 1, 1], tf.float32), relative)
    original_hw = tf.cast(original_hw, wide)
    out_scale = tf.stack([original_hw[0] - 1, original_hw[1] - 1] * 2)
    pixels = tf.round(tf.cast(relative, wide) * out_scale
                      + tf.constant([0, 0, 1, 1], wide))
    limit = tf.stack([original_hw[0], original_hw[1]] * 2)
    return tf.cast(tf.clip_by_value(pixels, 0.0, limit), tf.int32)


def _paste_axis(size, start, end, mask_size):
    """One box along one axis of the output image: (first, last) output
    pixels of the box inside the image (equal when it has none there) and
    the taps of those pixels into the mask (i0, w0, i1, w1), as
    ``imaging.paste_mask`` resizes the mask to the whole box and keeps
    the part inside the image."""
    extent = tf.maximum(end - start, 1)
    first = tf.clip_by_value(start, 0, size)
    last = tf.clip_by_value(end, first, size)
    empty = end <= start
    first = tf.where(empty, 0, first)
    last = tf.where(empty, 0, last)
    i0, w0, i1, w1 = linear_taps_graph(mask_size, extent)
    local = tf.range(first, last) - start
    return (first, last, tf.gather(i0, local), tf.gather(w0, local), tf.gather(i1, local),
            tf.gather(w1, local))


def _box_taps(size, start, end, mask_size):
    """Every output pixel along one axis for each of K boxes, vectorised
    (no loop over the boxes, for TFLite): taps into the mask (i0, w0, i1,
    w1, each [K, size], float32 weights) and whether the pixel is in the
    box ([K, size] bool). The taps of ``_paste_axis`` in float32."""
    pixels = tf.range(size)[None, :]
    start, end = start[:, None], end[:, None]
    local = pixels - start
    inside = (local >= 0) & (pixels < end)
    ratio = tf.cast(mask_size, tf.float32) / tf.cast(tf.maximum(end - start, 1), tf.float32)
    src = (tf.cast(local, tf.float32) + 0.5) * ratio - 0.5
    i0f = tf.floor(src)
    w1 = src - i0f
    w0 = 1.0 - w1
    i0 = tf.cast(i0f, tf.int32)
    i1 = i0 + 1
    w0 = tf.where((i0 < 0) | (i0 >= mask_size), tf.zeros_like(w0), w0)
    w1 = tf.where((i1 < 0) | (i1 >= mask_size), tf.zeros_like(w1), w1)
    return (tf.clip_by_value(i0, 0, mask_size - 1), w0,
            tf.clip_by_value(i1, 0, mask_size - 1), w1, inside)


def paste_masks_vectorized_graph(masks, boxes, original_hw, threshold=0.5):
    """``paste_masks_graph`` without a loop over the masks (TFLite, where
    graph loops are not built in): each mask is resized to the whole image
    by two matrix products with its interpolation matrices (two non-zero
    taps per row, so the same sums as the gathers of ``imaging``), [K, H, W]
    at once; weights in float32 rather than float64, so a pixel whose value
    is within float32 rounding of ``threshold`` can differ."""
    height, width = original_hw[0], original_hw[1]
    masks = tf.cast(masks, tf.float32)
    boxes = tf.cast(boxes, tf.int32)
    mask_h, mask_w = tf.shape(masks)[1], tf.shape(masks)[2]

    def interpolation(size, start, end, mask_size):
        # [K, size, mask_size]: row p holds pixel p's two taps into the mask
        # (zero outside the box).
        i0, w0, i1, w1, inside = _box_taps(size, start, end, mask_size)
        weights = (tf.one_hot(i0, mask_size) * w0[..., None]
                   + tf.one_hot(i1, mask_size) * w1[..., None])
        return weights * tf.cast(inside, tf.float32)[..., None], inside

    rows, in_rows = interpolation(height, boxes[:, 0], boxes[:, 2], mask_h)   # [K, H, m]
    cols, in_cols = interpolation(width, boxes[:, 1], boxes[:, 3], mask_w)    # [K, W, m]
    part = tf.matmul(tf.matmul(rows, masks), cols, transpose_b=True)           # [K, H, W]
    inside = in_rows[:, :, None] & in_cols[:, None, :]
    return tf.cast((part >= threshold) & inside, tf.uint8)


def paste_masks_graph(masks, boxes, original_hw, threshold=0.5):
    """``transform.paste_masks``: masks [K, m, m] float (each covering its
    box), boxes [K, 4] int32 pixels of the original image -> [K, H, W]
    uint8 (0/1): each mask resized to its box as ``imaging.resize``
    (rows, then columns), thresholded, and the part inside the image
    placed there; boxes without area give empty masks. Only the box's
    pixels are computed (inside ``portable.builtin_ops()``, all of them:
    ``paste_masks_vectorized_graph``)."""
    if portable.active():
        return paste_masks_vectorized_graph(masks, boxes, original_hw, threshold)
    height, width = original_hw[0], original_hw[1]
    mask_h, mask_w = tf.shape(masks)[1], tf.shape(masks)[2]

    def one(args):
        mask, box = args
        top, bottom, i0, w0, i1, w1 = _paste_axis(height, box[0], box[2], mask_h)
        left, right, j0, v0, j1, v1 = _paste_axis(width, box[1], box[3], mask_w)
        rows = (tf.gather(mask, i0) * tf.cast(w0, tf.float32)[:, None]
                + tf.gather(mask, i1) * tf.cast(w1, tf.float32)[:, None])
        part = (tf.gather(rows, j0, axis=1) * tf.cast(v0, tf.float32)[None]
                + tf.gather(rows, j1, axis=1) * tf.cast(v1, tf.float32)[None])
        part = tf.cast(part >= threshold, tf.uint8)
        # A box with no pixels in the image along one axis has none at all.
        part = tf.cond((bottom > top) & (right > left), lambda: part,
                       lambda: tf.zeros([0, 0], tf.uint8))
        rows_pad = tf.where((bottom > top) & (right > left), tf.stack([top, height - bottom]),
                            tf.stack([0, height]))
        cols_pad = tf.where((bottom > top) & (right > left), tf.stack([left, width - right]),
                            tf.stack([0, width]))
        return tf.pad(part, tf.stack([rows_pad, cols_pad]))

    def pasted():
        return tf.map_fn(one, (tf.cast(masks, tf.float32), tf.cast(boxes, tf.int32)),
                         fn_output_signature=tf.TensorSpec([None, None], tf.uint8))

    # map_fn cannot stack an empty list of unknown shape: no boxes, no masks.
    return tf.cond(tf.shape(masks)[0] > 0, pasted,
                   lambda: tf.zeros(tf.stack([0, height, width]), tf.uint8))


def _slots(detections, boxes, class_ids, kept, masks):
    """The exported outputs of one image: the ``kept`` detections (indices
    into detections [D, 6], boxes [D, 4], class_ids [D]; masks [k, H, W]
    already of the kept ones) first, then zero rows up to D."""
    num = tf.shape(kept)[0]
    pad = tf.shape(detections)[0] - num

    def padded(x):
        if portable.active() and x.dtype == tf.uint8:  # TFLite pads int32, not uint8
            return tf.cast(padded(tf.cast(x, tf.int32)), tf.uint8)
        return tf.pad(x, [[0, pad]] + [[0, 0]] * (len(x.shape) - 1))

    return {"boxes": padded(tf.gather(boxes, kept)),
            "class_ids": padded(tf.gather(class_ids, kept)),
            "scores": padded(tf.gather(tf.cast(detections[:, 5], tf.float32), kept)),
            "masks": padded(masks), "num_detections": num}


def unmold_roi_graph(detections, roi_masks, window, molded_hw, original_hw):
    """One image's ROI detections -> the exported model's outputs, as
    ``transform.unmold_roi_detections`` with fixed slots.

    detections: [D, (y1, x1, y2, x2, class_id, score)] normalised, zero
        padded (the first class_id 0 ends them); roi_masks [D, m, m,
        NUM_CLASSES].
    Returns a dict: boxes [D, 4] int32, class_ids [D] int32, scores [D]
    float32, masks [D, H, W] uint8 (the kept detections first, in order,
    then zero rows) and num_detections (int32 scalar): detections whose
    box has no area in the original image are dropped, as detect() does.
    """
    class_ids = tf.cast(detections[:, 4], tf.int32)
    # Detections end at the first class id 0.
    ended = tf.cumsum(tf.cast(class_ids == 0, tf.int32)) > 0
    boxes = unmold_boxes_graph(detections[:, :4], window, molded_hw, original_hw)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept = tf.where(~ended & (area > 0))[:, 0]
    # Each kept detection's mask of its own class: [k, m, m].
    masks = tf.gather(tf.transpose(tf.cast(roi_masks, tf.float32), [0, 3, 1, 2]), kept)
    masks = tf.gather(masks, tf.gather(class_ids, kept), batch_dims=1)
    pasted = paste_masks_graph(masks, tf.gather(boxes, kept), original_hw)
    return _slots(detections, boxes, class_ids, kept, pasted)


def unmold_full_masks_graph(detections, masks, window, molded_hw, original_hw):
    """One image's detections with masks over the whole molded image
    (YOLACT) -> the exported model's outputs, as ``Yolact.unmold_detections``.

    detections: [D, (y1, x1, y2, x2, class_id, score)], boxes relative to
        the molded image's height and width, rows with class 0 unused;
        masks [mh, mw, D] probabilities over the molded image.
    The masks are upsampled bilinearly to the molded size (OpenCV's
    INTER_LINEAR, as ``tf.image.resize``), cut to the window, resized to
    the original size and thresholded at 0.5. Returns the dict of
    ``unmold_roi_graph``.
    """
    class_ids = tf.cast(detections[:, 4], tf.int32)
    wide = _wide_float()
    hw = tf.cast(molded_hw, wide)
    pixels = tf.cast(detections[:, :4], wide) * tf.stack([hw[0], hw[1]] * 2)
    relative = tf.cast((pixels - tf.constant([0, 0, 1, 1], wide))
                       / tf.stack([hw[0] - 1, hw[1] - 1] * 2), tf.float32)
    boxes = unmold_boxes_graph(relative, window, molded_hw, original_hw)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept = tf.where((class_ids > 0) & (area > 0))[:, 0]
    num = tf.shape(kept)[0]
    chosen = tf.gather(tf.cast(masks, tf.float32), kept, axis=2)            # [mh, mw, k]

    def paste():
        up = tf.image.resize(chosen[None], molded_hw, method="bilinear")[0]
        y1, x1 = window[0], window[1]
        y2, x2 = tf.maximum(window[2], y1 + 1), tf.maximum(window[3], x1 + 1)
        up = up[y1:y2, x1:x2]
        same = tf.reduce_all(tf.equal(tf.shape(up)[:2], original_hw))
        up = tf.cond(same, lambda: up,
                     lambda: tf.image.resize(up[None], original_hw, method="bilinear")[0])
        return tf.transpose(tf.cast(up > 0.5, tf.uint8), [2, 0, 1])           # [k, H, W]

    # Resizing cannot take an image without channels: no detections, no masks.
    pasted = tf.cond(num > 0, paste,
                     lambda: tf.zeros(tf.concat([[0], original_hw], axis=0), tf.uint8))
    return _slots(detections, boxes, class_ids, kept, pasted)
