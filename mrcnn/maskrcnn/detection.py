"""
Mask R-CNN's second-stage graph layers under the reference's module:
``DetectionLayer`` (refines, filters and suppresses the final detections;
shared with CenterNet's two-stage variant, ``mrcnn.box_head``) and
``DetectionTargetLayer`` (samples proposals and builds the heads' targets
in the graph while training; shared, ``mrcnn.roi_sampling``). The
proposal layer is ``rpn``; ROIAlign is ``mrcnn.roi_heads``; box maths is
``mrcnn.box_ops``.
"""

# The final detections are the shared box head's.
from mrcnn.box_head import DetectionLayer, refine_detections_graph  # noqa: F401
# Proposal sampling is shared with the other modes' ROI heads.
from mrcnn.roi_sampling import (ConfiguredLayer, DetectionTargetLayer,  # noqa: F401
                                _as_float_list, detection_targets_graph)
