"""
Image meta data: one float vector per image recording where it came from and
how it was molded, in NumPy and its TensorFlow twin side by side.

``image_meta`` = ``[image_id, original_shape(3), image_shape(3), window(4),
scale, active_class_ids(NUM_CLASSES)]``, length ``12 + NUM_CLASSES``
(``Config.IMAGE_META_SIZE``); window is ``(y1, x1, y2, x2)`` in pixels of
the molded image.
"""

import numpy as np


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


def parse_image_meta_graph(meta):
    """Parses a tensor that contains image attributes to its components.
    See compose_image_meta() for more details.

    meta: [batch, meta length] where meta length depends on NUM_CLASSES

    Returns a dict of the parsed tensors.
    """
    image_id = meta[:, 0]
    original_image_shape = meta[:, 1:4]
    image_shape = meta[:, 4:7]
    window = meta[:, 7:11]  # (y1, x1, y2, x2) window of image in in pixels
    scale = meta[:, 11]
    active_class_ids = meta[:, 12:]
    return {
        "image_id": image_id,
        "original_image_shape": original_image_shape,
        "image_shape": image_shape,
        "window": window,
        "scale": scale,
        "active_class_ids": active_class_ids,
    }
