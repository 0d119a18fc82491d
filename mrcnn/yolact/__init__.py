"""
YOLACT (Bolya et al., "YOLACT: Real-time Instance Segmentation"), the
``Config.MODEL = "yolact"`` mode, after dbolya/yolact.

* ``box_utils``: priors, matching, box coding, mask cropping and Fast NMS
  in NumPy (the target builder);
* ``box_ops``: their TensorFlow twins for the inference graph;
* ``losses``: box, OHEM class, lincomb mask and semantic segmentation losses;
* ``targets``: one image's targets for the data pipeline (matching, masks at
  prototype size, semantic class maps);
* ``heads``: the protonet, the prediction head shared across levels and the
  semantic segmentation head;
* ``detection``: inference in the graph (``YolactDetection``): confidence
  filter, Fast NMS, masks assembled from the prototypes and cropped;
* ``model``: the ``Yolact`` mode class: the network on the shared backbone
  and feature pyramid (P3-P7), the training targets per image, detect()'s
  post-processing.

Frames: boxes are ``(y1, x1, y2, x2)`` relative to the molded image (pixel
coordinate / side, so 0..1), y first like the rest of the package; the
reference is x first (``(x1, y1, x2, y2)``). Priors are ``(cy, cx, h, w)``
in the same frame.
"""
