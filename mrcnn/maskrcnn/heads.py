"""
Mask R-CNN's heads, under the names the reference's modules used: the box
classifier/regressor on pooled ROIs (``fpn_classifier_graph``, shared with
CenterNet's two-stage variant: ``mrcnn.box_head``), and the glue layers the
graph uses (``NormBoxes``, ``SliceRois``). The mask head is shared:
``mrcnn.roi_heads``.
"""

# The box head and the glue layers are shared with the other modes' ROI heads.
from mrcnn.box_head import FullWindowConv2D, fpn_classifier_graph  # noqa: F401
from mrcnn.roi_heads import NormBoxes, PyramidROIAlign, RoiDistributed, SliceRois  # noqa: F401
