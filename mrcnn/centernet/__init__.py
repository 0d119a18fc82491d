"""
CenterNet ("CenterNet-update" of CenterNet2, mmdetection's
``CenterNetUpdateHead``), the ``Config.MODEL = "centernet"`` mode:
anchor-free detection on P3-P7 with Gaussian heatmaps, GIoU box
regression and extra positives chosen by the network's own predictions,
and instance masks from Mask R-CNN's ROI mask head.

* ``targets``: points, box positives and targets, heatmaps, the 3x3
  candidates of the extra positives, in NumPy (the target builder);
* ``losses``: the Gaussian focal loss with the extra positives and the GIoU
  loss, batched in TensorFlow;
* ``heads``: the class and box towers shared by every level;
* ``detection``: inference in the graph (``CenterNetDetection``): per-level
  top-k, decoding, class-aware NMS;
* ``model``: the ``CenterNet`` mode class (network, targets per image,
  masks through the shared ``roi_sampling`` and ``roi_heads``).

Frames: points ``(y, x)`` and boxes ``(y1, x1, y2, x2)`` in molded-image
pixels, y first like the rest of the package (the reference is x first);
box distances ``(top, left, bottom, right)`` in units of the level's
stride.
"""
