"""
Mask R-CNN
Common utility functions and classes.

This module is the front door the original Keras Mask R-CNN users know
(``from mrcnn import utils``); the code lives in one module per concern:

* ``mrcnn.boxes``       IoU, NMS, box deltas, norm/denorm boxes
* ``mrcnn.imaging``     resize_image, resize_mask, mini-masks, unmold_mask
* ``mrcnn.anchors``     anchor generation
* ``mrcnn.evaluation``  mask IoU, matching, AP, recall
* ``mrcnn.dataset``     the Dataset base class

Conventions (every function): boxes are ``[N, (y1, x1, y2, x2)]`` in pixels
with ``y2, x2`` exclusive; masks are ``[height, width, N]`` bool; box deltas
are ``[N, (dy, dx, log(dh), log(dw))]``.

Everything is vectorised NumPy; results equal the original's for the same
inputs. Where the original had a bug, the fix is stated in the function's
docstring (look for "Differs from the original").
"""

import os

from mrcnn.anchors import generate_anchors, generate_pyramid_anchors  # noqa: F401
from mrcnn.boxes import (apply_box_deltas, box_refinement,  # noqa: F401
                         compute_iou, compute_overlaps, denorm_boxes, extract_bboxes,
                         non_max_suppression, norm_boxes)
from mrcnn.dataset import Dataset, ImageLoadError  # noqa: F401
from mrcnn.evaluation import (compute_ap, compute_ap_range,  # noqa: F401
                              compute_matches, compute_overlaps_masks,
                              compute_recall, trim_zeros)
from mrcnn.imaging import (expand_mask, minimize_mask, resize,  # noqa: F401
                           resize_image, resize_mask, unmold_mask)

# URL from which to download the latest COCO trained weights
COCO_MODEL_URL = "https://github.com/matterport/Mask_RCNN/releases/download/v2.0/mask_rcnn_coco.h5"


############################################################
#  Weights download
############################################################

############################################################

def download_trained_weights(coco_model_path, verbose=1, url=COCO_MODEL_URL):
    """Download COCO trained weights from Releases.

    coco_model_path: local path of COCO trained weights
    url: where to download from (default: the released mask_rcnn_coco.h5).

    The file is fetched with keras.utils.get_file into a temporary name next
    to coco_model_path and moved into place only when complete, so a failed
    download never leaves a partial file or replaces a good one.

    Raises: WeightsDownloadError, saying what to download from where and where
    to put it, when the download fails (for example without internet access).
    """
    from keras.utils import get_file

    target = os.path.abspath(os.path.expanduser(coco_model_path))
    folder = os.path.dirname(target)
    os.makedirs(folder, exist_ok=True)
    partial_name = os.path.basename(target) + ".part"
    partial = os.path.join(folder, partial_name)
    if verbose > 0:
        print("Downloading pretrained model to " + target + " ...")
    try:
        if os.path.exists(partial):
            os.remove(partial)
        get_file(fname=partial_name, origin=url, cache_dir=folder, cache_subdir="")
    except Exception as e:  # get_file raises plain Exception on URL errors
        if os.path.exists(partial):
            os.remove(partial)
        raise WeightsDownloadError(
            "Could not download the trained weights from {url} ({error}).\n"
            "Download that file on a machine with internet access and copy it to "
            "{target}".format(url=url, error=e, target=target)) from e
    os.replace(partial, target)
    if verbose > 0:
        print("... done downloading pretrained model!")
    return target


class WeightsDownloadError(RuntimeError):
    """Raised when pretrained weights cannot be downloaded."""


def __getattr__(name):
    """``utils.box_refinement_graph`` (the reference's name), from
    ``mrcnn.box_ops``, imported on first use so that importing utils does
    not load TensorFlow."""
    if name == "box_refinement_graph":
        from mrcnn.box_ops import box_refinement_graph
        return box_refinement_graph
    raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))
