"""
Mask R-CNN, the reference model mode (``Config.MODEL = "mask_rcnn"``).

* ``model``: ``MaskRCNN`` (build, run_graph inspection) and its config rules;
* ``rpn``: the region proposal network and ``ProposalLayer``;
* ``detection``: proposal sampling for training (``DetectionTargetLayer``)
  and final detections (``DetectionLayer``);
* ``heads``: the box classifier head (shared: ``mrcnn.box_head``) and glue layers;
* ``targets``: RPN and detection targets in NumPy, the reference's
  ``data_generator``;
* ``losses``: the five losses.

The ROI mask head and ROIAlign are shared (``mrcnn.roi_heads``), as are the
backbone, the data pipeline and training.
"""
