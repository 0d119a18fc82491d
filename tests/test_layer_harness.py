"""Every custom layer of the package through the one layer harness
(tests/layer_harness.py), with non-default arguments; and a check that the
table below covers every custom layer class the package defines."""
import importlib
import inspect
import os
import pkgutil

import keras
import numpy as np
import pytest

import mrcnn
from layer_harness import run_layer_test
from mrcnn import backbone, roi_heads
from mrcnn.maskrcnn import detection, heads, losses, rpn
from mrcnn.training import LossLayer
from mrcnn.yolact.box_utils import make_priors
from mrcnn.yolact.detection import YolactDetection
from mrcnn.yolact.heads import BilinearUpsample
from mrcnn.centernet.detection import CenterNetDetection, ProposalScores
from mrcnn.centernet.heads import LevelScale


def _boxes(rng, batch, count):
    corners = rng.uniform(0, 0.6, (batch, count, 2))
    sizes = rng.uniform(0.1, 0.4, (batch, count, 2))
    return np.concatenate([corners, corners + sizes], axis=-1).astype(np.float32)


def _meta(batch, height, width, num_classes):
    meta = np.concatenate([[0], [height, width, 3], [height, width, 3], [0, 0, height, width],
                           [1.0], np.ones(num_classes)]).astype(np.float32)
    return np.tile(meta[None], (batch, 1))


def _cases():
    rng = np.random.default_rng(0)
    anchors = _boxes(rng, 2, 60)
    fg = rng.uniform(0, 1, (2, 60)).astype(np.float32)
    gt_masks = np.zeros((2, 14, 14, 3), np.uint8)
    gt_masks[:, 3:10, 3:10, :2] = 1
    gt_boxes = np.zeros((2, 3, 4), np.float32)
    gt_boxes[:, :2] = _boxes(rng, 2, 2)
    probs = rng.dirichlet(np.ones(4), (2, 10)).astype(np.float32)
    return {
        "BatchNorm": (backbone.BatchNorm, dict(momentum=0.9, epsilon=1e-2),
                      [rng.normal(size=(2, 4, 4, 3)).astype(np.float32)],
                      [(2, 4, 4, 3)], "bfloat16", False, None),
        "ProposalLayer": (rpn.ProposalLayer,
                          dict(proposal_count=8, nms_threshold=0.6, pre_nms_limit=50,
                               rpn_bbox_std_dev=[0.2, 0.2, 0.3, 0.3]),
                          [np.stack([1 - fg, fg], -1),
                           rng.normal(0, 0.5, (2, 60, 4)).astype(np.float32), anchors],
                          [(2, 8, 4)], "float32", False, None),
        "PyramidROIAlign": (roi_heads.PyramidROIAlign, dict(pool_shape=(5, 3)),
                            [_boxes(rng, 2, 3), _meta(2, 64, 64, 4)]
                            + [rng.normal(size=(2, 64 // s, 64 // s, 6)).astype(np.float32)
                               for s in (4, 8, 16, 32)],
                            [(2, 3, 5, 3, 6)], "float32", False, dict(pool_shape=(5, 3))),
        "DetectionTargetLayer": (
            detection.DetectionTargetLayer,
            dict(train_rois_per_image=6, roi_positive_ratio=0.5, bbox_std_dev=[0.2] * 4,
                 mask_shape=[8, 8], use_mini_mask=True),
            [_boxes(rng, 2, 20), np.array([[1, 2, 0], [3, 1, 0]], np.int32), gt_boxes,
             gt_masks],
            [(2, 6, 4), (2, 6), (2, 6, 4), (2, 6, 8, 8)], "float32", False, None),
        "DetectionLayer": (
            detection.DetectionLayer,
            dict(bbox_std_dev=[0.2] * 4, min_confidence=0.1, nms_threshold=0.5,
                 max_instances=5),
            [_boxes(rng, 2, 10), probs, rng.normal(0, 0.1, (2, 10, 4, 4)).astype(np.float32),
             _meta(2, 64, 64, 4)],
            [(2, 5, 6)], "float32", False, None),
        "RoiDistributed": (roi_heads.RoiDistributed,
                           lambda: dict(layer=keras.layers.Conv2D(4, 3, padding="same")),
                           [rng.normal(size=(2, 3, 6, 6, 5)).astype(np.float32)],
                           [(2, 3, 6, 6, 4)], "bfloat16", False, {}),
        "FullWindowConv2D": (heads.FullWindowConv2D,
                             dict(filters=6, kernel_size=(5, 5), use_bias=False),
                             [rng.normal(size=(4, 5, 5, 3)).astype(np.float32)],
                             [(4, 1, 1, 6)], "bfloat16", False,
                             dict(filters=6, kernel_size=(5, 5), use_bias=False)),
        "NormBoxes": (heads.NormBoxes, dict(name="norm_test"),
                      [np.array([[[0, 0, 32, 48], [8, 8, 16, 24]]] * 2, np.float32),
                       np.zeros((2, 32, 48, 3), np.float32)],
                      [(2, 2, 4)], "float32", False, {}),
        "SliceRois": (heads.SliceRois, dict(count=2, columns=4),
                      [rng.normal(size=(2, 5, 6)).astype(np.float32)],
                      [(2, 2, 4)], "float32", False, None),
        "PositiveRois": (roi_heads.PositiveRois, dict(max_count=3),
                         [rng.normal(size=(2, 5, 4)).astype(np.float32),
                          np.array([[1, 2, 0, 0, 0], [3, 0, 0, 0, 0]], np.int32)],
                         [(2, 2, 4)], "float32", False, None),
        "DetectedRois": (roi_heads.DetectedRois, dict(name="detected_test"),
                         [np.concatenate([_boxes(rng, 2, 5),
                                          np.array([[[2], [1], [0], [0], [0]],
                                                    [[3], [0], [0], [0], [0]]], np.float32),
                                          rng.uniform(0, 1, (2, 5, 1)).astype(np.float32)], -1)],
                         [(2, 2, 4)], "float32", False, {}),
        "PadDetectionMasks": (roi_heads.PadDetectionMasks, dict(name="pad_test"),
                              [rng.uniform(0, 1, (2, 2, 4, 4, 3)).astype(np.float32),
                               np.concatenate([_boxes(rng, 2, 5), np.array(
                                   [[[2], [1], [0], [0], [0]], [[3], [0], [0], [0], [0]]],
                                   np.float32), rng.uniform(0, 1, (2, 5, 1)).astype(np.float32)],
                                   -1)],
                              [(2, 5, 4, 4, 3)], "float32", False, {}),
        "YolactDetection": (
            YolactDetection, dict(min_confidence=0.2, nms_threshold=0.4, top_k=10,
                                  max_instances=4),
            [rng.normal(0, 0.3, (2, 12, 4)).astype(np.float32),
             rng.normal(0, 2, (2, 12, 3)).astype(np.float32),
             np.tanh(rng.normal(size=(2, 12, 5))).astype(np.float32),
             np.tile(make_priors([(2, 2)], [[16]], [1, 0.5, 2], max_size=32)[None], (2, 1, 1)),
             np.abs(rng.normal(size=(2, 8, 8, 5))).astype(np.float32)],
            [(2, 4, 6), (2, 8, 8, 4)], "float32", False, None),
        "ResizeLike": (backbone.ResizeLike, dict(name="resize_test"),
                       [rng.normal(size=(2, 9, 9, 4)).astype(np.float32),
                        np.zeros((2, 18, 17, 1), np.float32)],
                       [(2, 18, 17, 4)], "bfloat16", False, {}),
        "BilinearUpsample": (BilinearUpsample, dict(factor=2, name="upsample_test"),
                             [rng.normal(size=(2, 5, 7, 3)).astype(np.float32)],
                             [(2, 10, 14, 3)], "bfloat16", False, {}),
        "LevelScale": (LevelScale, dict(name="scale_test"),
                       [rng.normal(size=(2, 4, 5, 4)).astype(np.float32)],
                       [(2, 4, 5, 4)], "bfloat16", False, {}),
        "CenterNetDetection": (
            CenterNetDetection, dict(strides=(8, 16), min_confidence=0.2, pre_nms_top_k=10,
                                     nms_threshold=0.5, max_instances=5),
            [rng.normal(-1, 2, (2, 8, 8, 3)).astype(np.float32),
             rng.normal(-1, 2, (2, 4, 4, 3)).astype(np.float32),
             rng.uniform(0, 2, (2, 8, 8, 4)).astype(np.float32),
             rng.uniform(0, 2, (2, 4, 4, 4)).astype(np.float32), _meta(2, 64, 64, 4)],
            [(2, 5, 6)], "float32", False, dict(strides=[8, 16], max_instances=5)),
        "ProposalScores": (ProposalScores, dict(name="scores_test"),
                           [rng.dirichlet(np.ones(4), (2, 6)).astype(np.float32),
                            np.concatenate([rng.uniform(0, 1, (2, 6, 5)),
                                            rng.uniform(0, 1, (2, 6, 1))], -1).astype(np.float32)],
                           [(2, 6, 4)], "float32", True, {}),
        "LossLayer": (LossLayer, dict(fn=losses.rpn_class_loss, name="my_rpn_loss"),
                      [rng.choice([-1, 0, 1], (2, 60, 1)).astype(np.int32),
                       rng.normal(size=(2, 60, 2)).astype(np.float32)],
                      [()], "float32", True, {"fn": losses.rpn_class_loss}),
    }


CASES = _cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_harness(name):
    layer_cls, kwargs, inputs, shapes, mixed_dtype, list_input, keys = CASES[name]
    run_layer_test(layer_cls, kwargs, inputs, shapes, mixed_dtype, list_input=list_input,
                   config_keys=keys,
                   # Proposal sampling shuffles at random.
                   deterministic=name != "DetectionTargetLayer")


def test_the_harness_covers_every_custom_layer():
    defined = set()
    for info in pkgutil.walk_packages([os.path.dirname(mrcnn.__file__)], "mrcnn."):
        module = importlib.import_module(info.name)
        for name, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ == module.__name__ and issubclass(obj, keras.layers.Layer) \
                    and not issubclass(obj, keras.Model) and not inspect.isabstract(obj):
                defined.add(name)
    # ConfiguredLayer is a base class; its subclasses are in the table.
    assert defined - {"ConfiguredLayer"} <= set(CASES), defined - set(CASES)
    assert len(defined) >= 10


def test_loss_layer_round_trips_its_function():
    layer = LossLayer(losses.rpn_bbox_loss, name="rpn_bbox_loss")
    clone = LossLayer.from_config(layer.get_config())
    assert clone.fn is losses.rpn_bbox_loss
    # A layer built from its name alone (as saved models did) finds the
    # Mask R-CNN function and records no function.
    named = LossLayer(name="rpn_class_loss")
    assert named.fn is losses.rpn_class_loss and named.get_config()["fn"] is None
