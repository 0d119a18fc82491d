"""
From the user's images to the network's input and back, for every model mode.

Frames:
* original image: ``[H, W, C]`` as the user passed it to ``detect()``;
* molded image: resized and padded by ``utils.resize_image`` to
  ``[h, w, C]``; ``window = (y1, x1, y2, x2)`` is where the original image
  lies in it (pixels, ``y2, x2`` exclusive), ``scale`` the resize factor;
* normalised boxes: molded-image boxes through ``utils.norm_boxes`` (what
  the graph layers work in).
"""

import numpy as np

from mrcnn import boxes as box_utils


def unmold_boxes(boxes, window, molded_shape, original_shape):
    """Normalised boxes in the molded image -> int32 pixel boxes in the
    original image.

    boxes: [N, (y1, x1, y2, x2)] normalised to the molded image.
    window: (y1, x1, y2, x2) pixels of the original image in the molded one.
    molded_shape, original_shape: [h, w, ...] and [H, W, ...].

    Returns [N, (y1, x1, y2, x2)] int32 pixels of the original image, inside
    it (0 <= y1 <= y2 <= H, likewise for x).

    The same mapping as the reference's ``unmold_detections`` (boxes made
    relative to the normalised window, then ``denorm_boxes`` at the original
    size), except where the window is a single pixel thick, which the
    reference turned into NaN (0 / 0): a very thin image such as 2000 x 16
    molded into 64 x 64 keeps one column. There the whole thickness of the
    original image is the only answer the molded image can give, so boxes
    span it.
    """
    # float32 arithmetic as in the reference, so boxes round the same way.
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    window = box_utils.norm_boxes(np.asarray(window), tuple(int(v) for v in molded_shape[:2]))
    start = np.concatenate([window[:2], window[:2]])
    extent = np.concatenate([window[2:] - window[:2]] * 2)
    thin = extent <= 0
    relative = (boxes - start) / np.where(thin, np.float32(1), extent)
    # One-pixel-thick window: [0, 1] along that axis (the whole image).
    relative = np.where(thin, np.array([0, 0, 1, 1], np.float32), relative)
    height, width = (int(v) for v in original_shape[:2])
    pixels = box_utils.denorm_boxes(relative, (height, width))
    return np.clip(pixels, 0, [height, width, height, width]).astype(np.int32)
