"""mrcnn: Mask R-CNN instance segmentation on Keras 3 / TensorFlow 2.

The public modules keep the names of the original Keras Mask R-CNN:
``mrcnn.config`` (Config), ``mrcnn.utils`` (NumPy helpers and Dataset),
``mrcnn.visualize`` (matplotlib drawing) and ``mrcnn.model``.
"""

__version__ = "0.1.0"
