"""
Weight files: reading any weights file into a model, writing checkpoints, and
where starting weights come from.

* ``hdf5``: the legacy Keras 2 HDF5 layout (checkpoints, the released
  ``mask_rcnn_coco.h5``), ``save_weights``, the checks and errors of a load;
* ``native``: Keras 3's ``.weights.h5`` layout;
* ``loader``: ``load_weights`` for both layouts (and Keras Applications
  ResNet files), all-or-nothing;
* ``pretrained``: ImageNet weights and the ``coco / last / imagenet / none``
  keywords (``resolve_weights``).

Every name is importable from ``mrcnn.weights`` itself.
"""

from mrcnn.utils import WeightsDownloadError  # noqa: F401
from mrcnn.weights.hdf5 import (CLASS_SPECIFIC_LAYERS, MODE_ATTRIBUTE,  # noqa: F401
                                BackboneMismatchError, LoadReport, WeightsFileError,
                                WeightsMismatchError, WeightsModeError, apply_assignments,
                                layer_groups, name_set, open_weights_file, plan_assignments,
                                is_native, save_weights, weights_root)
from mrcnn.weights.loader import load_weights  # noqa: F401
from mrcnn.weights.native import native_layer_groups  # noqa: F401
from mrcnn.weights.pretrained import (COCO_CLASS_SPECIFIC_LAYERS, COCO_NUM_CLASSES,  # noqa: F401
                                      IMAGENET_WEIGHTS, WEIGHTS_KEYWORDS, check_weights_spec,
                                      get_imagenet_weights, imagenet_layer_name,
                                      load_imagenet_weights, load_starting_weights,
                                      resolve_weights)
