"""
Mask R-CNN
The main Mask R-CNN model implementation.

Copyright (c) 2017 Matterport, Inc. (original design), rebuilt for Keras 3.
Licensed under the MIT License (see LICENSE for details)

This module is the front door the original's users import as ``modellib``:
``MaskRCNN`` (and ``Yolact``, loaded on first use) plus the graph-building functions, data functions and layer
classes the reference's ``model.py`` defined, re-exported from the modules
that hold them today (``mrcnn.maskrcnn`` for Mask R-CNN's own parts, the
shared ``backbone``, ``roi_heads``, ``box_ops``, ``image_meta``, ``data``
and ``training``), and ``create_model`` for any model mode
(``Config.MODEL``).
"""

from mrcnn.backbone import (BatchNorm, compute_backbone_shapes, conv_block,  # noqa: F401
                            fpn_graph, identity_block, resnet_graph)
from mrcnn.box_ops import (apply_box_deltas_graph, clip_boxes_graph,  # noqa: F401
                           denorm_boxes_graph, norm_boxes_graph, overlaps_graph,
                           trim_zeros_graph)
from mrcnn.data import (load_image_gt, mold_image, select_instances,  # noqa: F401
                        unmold_image)
from mrcnn.image_meta import (compose_image_meta, parse_image_meta,  # noqa: F401
                              parse_image_meta_graph)
from mrcnn.maskrcnn.detection import DetectionLayer, DetectionTargetLayer  # noqa: F401
from mrcnn.maskrcnn.heads import NormBoxes, SliceRois, fpn_classifier_graph  # noqa: F401
from mrcnn.maskrcnn.losses import (mrcnn_bbox_loss_graph,  # noqa: F401
                                   mrcnn_class_loss_graph, rpn_bbox_loss_graph,
                                   rpn_class_loss_graph, smooth_l1_loss)
from mrcnn.maskrcnn.model import (LOSS_NAMES, PROPOSAL_STAGES, MaskRCNN,  # noqa: F401
                                  ProposalStage)
from mrcnn.maskrcnn.rpn import ProposalLayer, build_rpn_model, rpn_graph  # noqa: F401
from mrcnn.maskrcnn.targets import (build_detection_targets, build_rpn_targets,  # noqa: F401
                                    data_generator, generate_random_rois)
from mrcnn.modelbase import ModelBase, log  # noqa: F401
from mrcnn.modes import create_model, register_mode  # noqa: F401
from mrcnn.modes import register_mode as register_model  # noqa: F401  (the old name)
from mrcnn.roi_heads import (PyramidROIAlign, RoiDistributed,  # noqa: F401
                             build_fpn_mask_graph, mrcnn_mask_loss_graph)
from mrcnn.training import DetectionModel, LossLayer  # noqa: F401

# The reference's public names, re-exported from the modules that hold them.
__all__ = [
    "MaskRCNN", "ModelBase", "create_model", "register_model", "register_mode", "log",
    "BatchNorm", "ProposalLayer", "PyramidROIAlign", "DetectionTargetLayer", "DetectionLayer",
    "RoiDistributed", "NormBoxes", "SliceRois", "LossLayer", "DetectionModel",
    "resnet_graph", "identity_block", "conv_block", "fpn_graph", "rpn_graph",
    "build_rpn_model", "fpn_classifier_graph", "build_fpn_mask_graph",
    "compute_backbone_shapes", "load_image_gt", "build_rpn_targets",
    "build_detection_targets", "generate_random_rois", "data_generator", "select_instances",
    "compose_image_meta", "parse_image_meta", "parse_image_meta_graph", "mold_image",
    "unmold_image", "norm_boxes_graph", "denorm_boxes_graph", "apply_box_deltas_graph",
    "clip_boxes_graph", "overlaps_graph", "trim_zeros_graph", "smooth_l1_loss",
    "rpn_class_loss_graph", "rpn_bbox_loss_graph", "mrcnn_class_loss_graph",
    "mrcnn_bbox_loss_graph", "mrcnn_mask_loss_graph",
]


def __getattr__(name):
    """The other modes' classes (``modellib.Yolact``), imported when first
    asked for, so that Mask R-CNN users load none of them."""
    if name == "Yolact":
        from mrcnn.yolact.model import Yolact
        return Yolact
    raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))
