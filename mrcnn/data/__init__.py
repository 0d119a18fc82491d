"""
Training data for every model mode: ground truth loading and checking in
NumPy (``groundtruth``), the ``tf.data`` pipeline (``pipeline``), and the
COCO (``cocoformat``) and VIA (``via``) annotation formats.

Frames: boxes are ``[N, (y1, x1, y2, x2)]`` in pixels of the *molded* image
(after ``utils.resize_image``), ``y2, x2`` exclusive; masks ``[height,
width, N]`` bool in that frame, or mini-masks. Class 0 is background;
negative ids are crowds. A mode's targets (anchors, proposals, heatmaps)
are built from these by the mode (Mask R-CNN's: ``mrcnn.maskrcnn.targets``).
"""

from mrcnn.data.groundtruth import (MAX_CONSECUTIVE_ERRORS, check_dataset,  # noqa: F401
                                    check_image, load_image_gt, mold_image, select_instances,
                                    unmold_image)
from mrcnn.data.pipeline import DataLoadError, make_dataset  # noqa: F401
from mrcnn.image_meta import compose_image_meta, parse_image_meta  # noqa: F401
