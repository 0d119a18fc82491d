"""
Mask R-CNN: the ``MaskRCNN`` model mode.

Copyright (c) 2017 Matterport, Inc. (original design), rebuilt for Keras 3.
Licensed under the MIT License (see LICENSE for details)

The graph reads top to bottom as in the paper: shared backbone and feature
pyramid (``mrcnn.backbone``), region proposal network (``rpn``), proposal
sampling for training (``detection.DetectionTargetLayer``), the box
classifier (``heads``), the ROI mask head (``mrcnn.roi_heads``), the
losses (``losses``) and, at inference, ``detection.DetectionLayer``. The
NumPy targets the data pipeline computes are ``targets``. Users import it
through the front door ``mrcnn.model`` (as ``modellib``).
"""

import numbers

import keras
import numpy as np
import tensorflow as tf
from keras import layers as KL

from mrcnn import transform, utils
from mrcnn.backbone import build_feature_pyramid, compute_backbone_shapes
from mrcnn.config import RESIZE_MODES, _is_int, _nearest_multiple
from mrcnn.maskrcnn import losses
from mrcnn.maskrcnn.detection import DetectionLayer, DetectionTargetLayer
from mrcnn.maskrcnn.heads import NormBoxes, fpn_classifier_graph
from mrcnn.maskrcnn.rpn import ProposalLayer, build_rpn_model
from mrcnn.maskrcnn.targets import _training_sample
from mrcnn.modelbase import ModelBase, log
from mrcnn.roi_heads import build_detection_mask_graph, build_fpn_mask_graph, positive_mask_rois
from mrcnn.training import DetectionModel, LossLayer

LOSS_NAMES = ["rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss",
              "mrcnn_bbox_loss", "mrcnn_mask_loss"]

# Intermediate results of the ProposalLayer that run_graph() can return.
PROPOSAL_STAGES = ("pre_nms_anchors", "refined_anchors", "refined_anchors_clipped",
                   "rpn_non_max_suppression")


def validate_maskrcnn_config(config, add):
    """Mask R-CNN's configuration rules (``MaskRCNN.validate_config``);
    ``add(message)`` reports each problem."""
    for name in ("TRAIN_ROIS_PER_IMAGE", "RPN_TRAIN_ANCHORS_PER_IMAGE", "PRE_NMS_LIMIT",
                 "POST_NMS_ROIS_TRAINING", "POST_NMS_ROIS_INFERENCE", "POOL_SIZE",
                 "MASK_POOL_SIZE", "RPN_ANCHOR_STRIDE", "FPN_CLASSIF_FC_LAYERS_SIZE",
                 "MASK_HEAD_CHANNELS", "RPN_CONV_CHANNELS"):
        value = getattr(config, name)
        if not _is_int(value) or value < 1:
            add("{} must be a positive integer, got {!r}".format(name, value))

    if config.IMAGE_RESIZE_MODE in RESIZE_MODES:
        _validate_image_size(config, add)

    ratios = np.asarray(config.RPN_ANCHOR_RATIOS, dtype=object).ravel()
    if ratios.size == 0 or not all(
            isinstance(r, numbers.Real) and np.isfinite(r) and r > 0 for r in ratios):
        add("RPN_ANCHOR_RATIOS must be a non-empty list of positive numbers "
            "(width/height), got {!r}".format(config.RPN_ANCHOR_RATIOS))
    if len(config.RPN_ANCHOR_SCALES) != len(config.BACKBONE_STRIDES):
        add("RPN_ANCHOR_SCALES has {} entries but BACKBONE_STRIDES has {}: "
            "give one anchor scale per pyramid level".format(
                len(config.RPN_ANCHOR_SCALES), len(config.BACKBONE_STRIDES)))
    if any(not isinstance(s, numbers.Real) or s <= 0 for s in config.RPN_ANCHOR_SCALES):
        add("RPN_ANCHOR_SCALES must be positive, got {!r}".format(config.RPN_ANCHOR_SCALES))

    value = config.RPN_NMS_THRESHOLD
    if not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        add("RPN_NMS_THRESHOLD must be between 0 and 1, got {!r}".format(value))
    if not isinstance(config.ROI_POSITIVE_RATIO, numbers.Real) or \
            not 0 < config.ROI_POSITIVE_RATIO <= 1:
        add("ROI_POSITIVE_RATIO must be in (0, 1], got {!r}".format(config.ROI_POSITIVE_RATIO))
    for name in ("RPN_BBOX_STD_DEV", "BBOX_STD_DEV"):
        value = np.ravel(getattr(config, name))
        if value.shape != (4,) or np.any(value <= 0):
            add("{} must be 4 positive numbers, got {!r}".format(name, getattr(config, name)))

    mask_shape = list(config.MASK_SHAPE)
    if _is_int(config.MASK_POOL_SIZE) and mask_shape != [2 * config.MASK_POOL_SIZE] * 2:
        add("MASK_SHAPE must be [2 * MASK_POOL_SIZE] * 2 = {} because the mask "
            "head upsamples its pooled features once; got {!r}".format(
                [2 * config.MASK_POOL_SIZE] * 2, config.MASK_SHAPE))


def _validate_image_size(config, add):
    """Image sides must survive 6 halvings (P2..P6 and back up)."""
    mode = config.IMAGE_RESIZE_MODE
    checks = []
    if mode == "square":
        checks.append("IMAGE_MAX_DIM")
    elif mode in ("crop", "pad64"):
        if mode == "crop" or config.IMAGE_MIN_DIM:
            checks.append("IMAGE_MIN_DIM")
    for name in checks:
        value = getattr(config, name)
        if not _is_int(value) or value <= 0 or value % 64:
            add("{}={!r} must be a positive multiple of 64 in {!r} mode, so the "
                "image can be halved 6 times for the feature pyramid; try {}"
                .format(name, value, mode, _nearest_multiple(value, 64)))


class ProposalStage(object):
    """Marker for a ProposalLayer stage in run_graph() outputs; what
    ``ancestor(roi_output, "ROI/<stage>:0")`` returns."""

    def __init__(self, stage):
        if stage not in PROPOSAL_STAGES:
            raise ValueError("Unknown proposal stage {!r}; known: {}".format(
                stage, ", ".join(PROPOSAL_STAGES)))
        self.stage = stage

    def __repr__(self):
        return "ProposalStage({!r})".format(self.stage)


class MaskRCNN(ModelBase):
    """Encapsulates the Mask RCNN model functionality.

    The actual Keras model is in the keras_model property: a
    ``training.DetectionModel`` (a functional keras.Model) whose layer and
    input names are those of the original.
    """

    LOSS_NAMES = tuple(LOSS_NAMES)
    DEFAULT_LOSS_WEIGHTS = {name: 1.0 for name in LOSS_NAMES}
    CHECKPOINT_PREFIX = "mask_rcnn"
    HEADS_REGEX = r"(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)"
    CLASS_SPECIFIC_LAYERS = ("mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask")
    # P6 is P5 subsampled by 2 and the FPN adds upsampled levels: sides must
    # survive six halvings.
    SIZE_DIVISOR = 64
    HAS_COCO_WEIGHTS = True

    @classmethod
    def validate_config(cls, config, add):
        """Mask R-CNN's own rules: RPN and ROI counts, anchors, the mask head
        geometry and image sides divisible by 64 (see config_rules)."""
        super().validate_config(config, add)
        validate_maskrcnn_config(config, add)

    def build(self, mode, config):
        """Build Mask R-CNN architecture.
            mode: Either "training" or "inference". The inputs and
                outputs of the model differ accordingly.

        Inputs (both modes): input_image [batch, H, W, C] (molded),
        input_image_meta [batch, IMAGE_META_SIZE], input_anchors
        [batch, anchors, 4] normalised. Training adds input_rpn_match,
        input_rpn_bbox, input_gt_class_ids, input_gt_boxes (pixels),
        input_gt_masks (and input_roi when USE_RPN_ROIS is False).
        Height and width are not fixed: any multiple of 64 works.
        """
        assert mode in ['training', 'inference']
        training = mode == "training"
        # Inference always uses the moving statistics; the original built
        # inference models with TRAIN_BN too, so TRAIN_BN=True meant batch
        # statistics at test time.
        train_bn = config.TRAIN_BN if training else False
        inputs = self._inputs(config, training)
        # The shared backbone and feature pyramid: P2-P6 for the RPN, P2-P5
        # for the ROI heads.
        rpn_feature_maps = build_feature_pyramid(inputs["input_image"], config,
                                                 train_bn=train_bn,
                                                 levels=("P2", "P3", "P4", "P5", "P6"))
        rpn_outputs = self._forward_rpn(rpn_feature_maps, inputs["input_anchors"], config,
                                        training)
        if training:
            return self._training_model(inputs, rpn_feature_maps[:4], rpn_outputs, config,
                                        train_bn)
        return self._inference_model(inputs, rpn_feature_maps[:4], rpn_outputs, config)

    def _inputs(self, config, training):
        """{input name: Keras input} in the reference's order (and the
        normalised ground-truth boxes, "gt_boxes", in training)."""
        inputs = {
            "input_image": KL.Input(shape=[None, None, config.IMAGE_CHANNEL_COUNT],
                                    name="input_image"),
            "input_image_meta": KL.Input(shape=[config.IMAGE_META_SIZE],
                                         name="input_image_meta"),
            "input_anchors": KL.Input(shape=[None, 4], name="input_anchors"),
        }
        if not training:
            return inputs
        mask_hw = list(config.MINI_MASK_SHAPE) if config.USE_MINI_MASK else [None, None]
        inputs.update({
            # RPN targets
            "input_rpn_match": KL.Input(shape=[None, 1], name="input_rpn_match",
                                        dtype="int32"),
            "input_rpn_bbox": KL.Input(shape=[None, 4], name="input_rpn_bbox",
                                       dtype="float32"),
            # Ground truth: class ids, boxes (pixels) and masks. uint8 rather
            # than the original's bool masks: tf.distribute cannot reduce
            # bool batches when Keras builds the model under a strategy.
            "input_gt_class_ids": KL.Input(shape=[None], name="input_gt_class_ids",
                                           dtype="int32"),
            "input_gt_boxes": KL.Input(shape=[None, 4], name="input_gt_boxes",
                                       dtype="float32"),
            "input_gt_masks": KL.Input(shape=mask_hw + [None], name="input_gt_masks",
                                       dtype="uint8"),
        })
        inputs["gt_boxes"] = NormBoxes(name="norm_gt_boxes")(
            [inputs["input_gt_boxes"], inputs["input_image"]])
        return inputs

    def _forward_rpn(self, feature_maps, anchors, config, training):
        """The RPN on every level and the proposals: (rpn_class_logits,
        rpn_class, rpn_bbox) over all anchors and rpn_rois [batch, N,
        (y1, x1, y2, x2)] normalised."""
        rpn = build_rpn_model(config.RPN_ANCHOR_STRIDE, len(config.RPN_ANCHOR_RATIOS),
                              config.TOP_DOWN_PYRAMID_SIZE,
                              conv_channels=config.RPN_CONV_CHANNELS)
        layer_outputs = [rpn([p]) for p in feature_maps]
        output_names = ["rpn_class_logits", "rpn_class", "rpn_bbox"]
        rpn_class_logits, rpn_class, rpn_bbox = [
            KL.Concatenate(axis=1, name=n, dtype="float32")([level[i] for level in layer_outputs])
            for i, n in enumerate(output_names)]
        proposal_count = config.POST_NMS_ROIS_TRAINING if training \
            else config.POST_NMS_ROIS_INFERENCE
        rpn_rois = ProposalLayer(proposal_count=proposal_count,
                                 nms_threshold=config.RPN_NMS_THRESHOLD,
                                 name="ROI", config=config)([rpn_class, rpn_bbox, anchors])
        return rpn_class_logits, rpn_class, rpn_bbox, rpn_rois

    def _forward_box(self, rois, feature_maps, image_meta, config, train_bn):
        """The box classifier on ``rois``: (logits, probabilities, deltas)."""
        return fpn_classifier_graph(rois, feature_maps, image_meta, config.POOL_SIZE,
                                    config.NUM_CLASSES, train_bn=train_bn,
                                    fc_layers_size=config.FPN_CLASSIF_FC_LAYERS_SIZE)

    def _forward_mask(self, rois, feature_maps, image_meta, config, train_bn):
        """The shared ROI mask head on ``rois``: [batch, N, h, w, classes]."""
        return build_fpn_mask_graph(rois, feature_maps, image_meta, config.MASK_POOL_SIZE,
                                    config.NUM_CLASSES, train_bn=train_bn,
                                    conv_channels=config.MASK_HEAD_CHANNELS)

    def _training_model(self, inputs, feature_maps, rpn_outputs, config, train_bn):
        rpn_class_logits, rpn_class, rpn_bbox, rpn_rois = rpn_outputs
        image, image_meta = inputs["input_image"], inputs["input_image_meta"]
        if not config.USE_RPN_ROIS:
            # Ignore predicted ROIs and use ROIs provided as an input.
            inputs["input_roi"] = KL.Input(shape=[config.POST_NMS_ROIS_TRAINING, 4],
                                           name="input_roi", dtype="int32")
            target_rois = NormBoxes(name="norm_input_rois")([inputs["input_roi"], image])
        else:
            target_rois = rpn_rois

        # Subsamples proposals and generates target outputs for training.
        rois, target_class_ids, target_bbox, target_mask = DetectionTargetLayer(
            config, name="proposal_targets")([
                target_rois, inputs["input_gt_class_ids"], inputs["gt_boxes"],
                inputs["input_gt_masks"]])
        mrcnn_class_logits, mrcnn_class, mrcnn_bbox = self._forward_box(
            rois, feature_maps, image_meta, config, train_bn)
        # The mask loss uses positive ROIs only, which DetectionTargetLayer
        # puts first: predicting masks for the other slots (as the original
        # did) is wasted work. The loss is unchanged.
        mask_rois = positive_mask_rois(rois, target_class_ids, config)
        mrcnn_mask = self._forward_mask(mask_rois, feature_maps, image_meta, config, train_bn)
        output_rois = KL.Identity(name="output_rois", dtype="float32")(rois)

        loss_outputs = [
            LossLayer(losses.rpn_class_loss, name="rpn_class_loss")(
                [inputs["input_rpn_match"], rpn_class_logits]),
            LossLayer(losses.rpn_bbox_loss, name="rpn_bbox_loss")(
                [inputs["input_rpn_bbox"], inputs["input_rpn_match"], rpn_bbox]),
            LossLayer(losses.mrcnn_class_loss, name="mrcnn_class_loss")(
                [target_class_ids, mrcnn_class_logits, image_meta]),
            LossLayer(losses.mrcnn_bbox_loss, name="mrcnn_bbox_loss")(
                [target_bbox, target_class_ids, mrcnn_bbox]),
            LossLayer(losses.mrcnn_mask_loss, name="mrcnn_mask_loss")(
                [target_mask, target_class_ids, mrcnn_mask]),
        ]
        outputs = [rpn_class_logits, rpn_class, rpn_bbox,
                   mrcnn_class_logits, mrcnn_class, mrcnn_bbox, mrcnn_mask,
                   rpn_rois, output_rois] + loss_outputs
        model_inputs = [tensor for name, tensor in inputs.items() if name != "gt_boxes"]
        return DetectionModel(model_inputs, outputs, name='mask_rcnn', loss_names=LOSS_NAMES,
                              loss_weights=self.loss_weights(config),
                              weight_decay=config.WEIGHT_DECAY)

    def _inference_model(self, inputs, feature_maps, rpn_outputs, config):
        _, rpn_class, rpn_bbox, rpn_rois = rpn_outputs
        image_meta = inputs["input_image_meta"]
        # Network Heads: proposal classifier and box regressor
        mrcnn_class_logits, mrcnn_class, mrcnn_bbox = self._forward_box(
            rpn_rois, feature_maps, image_meta, config, False)
        # Detections: [batch, num_detections, (y1, x1, y2, x2, class_id, score)]
        # in normalized coordinates
        detections = DetectionLayer(config, name="mrcnn_detection")(
            [rpn_rois, mrcnn_class, mrcnn_bbox, image_meta])
        # Create masks for detections
        mrcnn_mask = build_detection_mask_graph(
            detections, feature_maps, image_meta, config.MASK_POOL_SIZE, config.NUM_CLASSES,
            conv_channels=config.MASK_HEAD_CHANNELS)
        return DetectionModel(list(inputs.values()),
                              [detections, mrcnn_class, mrcnn_bbox, mrcnn_mask,
                               rpn_rois, rpn_class, rpn_bbox], name='mask_rcnn')

    # ------------------------------------------------------------------
    # Targets for the tf.data pipeline
    # ------------------------------------------------------------------
    def training_signature(self):
        """(input name, shape, dtype) of one training sample."""
        config = self.config
        h, w, c = [int(v) for v in config.IMAGE_SHAPE]
        num_anchors = len(self.get_anchors(config.IMAGE_SHAPE))
        mask_hw = tuple(config.MINI_MASK_SHAPE) if config.USE_MINI_MASK else (h, w)
        gt = config.MAX_GT_INSTANCES
        return [("input_image", (h, w, c), np.float32),
                ("input_image_meta", (config.IMAGE_META_SIZE,), np.float32),
                ("input_rpn_match", (num_anchors, 1), np.int32),
                ("input_rpn_bbox", (config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4), np.float32),
                ("input_gt_class_ids", (gt,), np.int32),
                ("input_gt_boxes", (gt, 4), np.float32),
                ("input_gt_masks", mask_hw + (gt,), np.uint8)]

    def training_sample(self, dataset, image_id, augmentation):
        """Arrays of one image in training_signature() order, or None when
        the image has no instances."""
        anchors = self.anchors_for(self.config.IMAGE_SHAPE)
        return _training_sample(dataset, self.config, image_id, anchors, 0, False,
                                augmentation=augmentation, augment=False)

    def training_constants(self, image_shape):
        return {"input_anchors": self.get_anchors(image_shape).astype(np.float32)}

    # ------------------------------------------------------------------
    # Inference
    # ------------------------------------------------------------------
    def inference_inputs(self, molded_images, image_metas):
        anchors = self.get_anchors(molded_images.shape[1:]).astype(np.float32)
        anchors = np.broadcast_to(anchors, (len(molded_images),) + anchors.shape)
        return [np.asarray(molded_images, np.float32), np.asarray(image_metas, np.float32),
                anchors]

    def serving_postprocess(self, outputs, window, molded_hw, original_hw):
        """postprocess in TensorFlow (export): the shared ROI un-molding,
        ``serving.unmold_roi_graph``."""
        from mrcnn import serving
        return serving.unmold_roi_graph(outputs[0], outputs[3], window, molded_hw, original_hw)

    def postprocess(self, outputs, index, original_shape, molded_shape, window):
        detections, _, _, mrcnn_mask = outputs[:4]
        return self.unmold_detections(detections[index], mrcnn_mask[index],
                                      original_shape, molded_shape, window)

    def unmold_detections(self, detections, mrcnn_mask, original_image_shape,
                          image_shape, window):
        """Reformats the detections of one image from the format of the neural
        network output to a format suitable for use in the rest of the
        application.

        detections: [N, (y1, x1, y2, x2, class_id, score)] in normalized coordinates
        mrcnn_mask: [N, height, width, num_classes]
        original_image_shape: [H, W, C] Original image shape before resizing
        image_shape: [H, W, C] Shape of the image after resizing and padding
        window: [y1, x1, y2, x2] Pixel coordinates of box in the image where the real
                image is excluding the padding.

        Returns:
        boxes: [N, (y1, x1, y2, x2)] Bounding boxes in pixels (int32)
        class_ids: [N] Integer class IDs for each bounding box
        scores: [N] Float probability scores of the class_id
        masks: [height, width, num_instances] bool instance masks
        """
        return transform.unmold_roi_detections(detections, mrcnn_mask, original_image_shape,
                                               image_shape, window)

    def anchors_for(self, image_shape):
        """Pixel anchors [N, (y1, x1, y2, x2)] for a molded image shape (cached)."""
        key = tuple(int(v) for v in image_shape[:2])
        cache = self.__dict__.setdefault("_anchor_cache", {})
        if key not in cache:
            backbone_shapes = compute_backbone_shapes(self.config, image_shape)
            cache[key] = utils.generate_pyramid_anchors(
                self.config.RPN_ANCHOR_SCALES, self.config.RPN_ANCHOR_RATIOS,
                backbone_shapes, self.config.BACKBONE_STRIDES,
                self.config.RPN_ANCHOR_STRIDE)
        return cache[key]

    def get_anchors(self, image_shape):
        """Returns anchor pyramid for the given image size, in normalized
        coordinates [N, (y1, x1, y2, x2)]. Also sets ``self.anchors`` to the
        same anchors in pixels (the notebooks draw them)."""
        self.anchors = self.anchors_for(image_shape)
        return utils.norm_boxes(self.anchors, tuple(int(v) for v in image_shape[:2]))

    # ------------------------------------------------------------------
    # Inspection
    # ------------------------------------------------------------------
    def ancestor(self, tensor, name, checked=None):
        """Finds the ancestor of a TF tensor in the computation graph.
        tensor: TensorFlow symbolic tensor.
        name: Name of ancestor tensor to find
        checked: For internal use. A list of tensors that were already
                 searched to avoid loops in traversing the graph.

        Kept as an adapter for the original notebooks: the graph is no longer
        a TF1 graph of named ops. ``"ROI/<stage>:0"`` for a stage in
        PROPOSAL_STAGES returns a ProposalStage marker that run_graph()
        understands; a layer name (optionally ``name:0``) returns that
        layer's output; anything else returns None, as the original did when
        it found nothing.
        """
        del tensor, checked
        name = name.split(":")[0]
        if name.startswith("ROI/") and name[4:] in PROPOSAL_STAGES:
            return ProposalStage(name[4:])
        try:
            return self.keras_model.get_layer(name.split("/")[0]).output
        except ValueError:
            return None

    def run_graph(self, images, outputs, image_metas=None):
        """Runs a sub-set of the computation graph that computes the given
        outputs.

        image_metas: If provided, the images are assumed to be already
            molded (i.e. resized, padded, and normalized)

        outputs: List of tuples (name, tensor) to compute. The tensors are
            symbolic tensors of the inference model (``layer.output``) or
            ProposalStage markers (see ancestor()); a string is taken as a
            layer name or ``"ROI/<stage>"``.

        Returns an ordered dict of results. Keys are the names received in the
        input and values are Numpy arrays.
        """
        from collections import OrderedDict
        if self.mode != "inference":
            raise ValueError("run_graph() needs a model built in inference mode")
        outputs = OrderedDict(outputs)
        for key, value in outputs.items():
            if isinstance(value, str):
                value = self.ancestor(None, value)
                outputs[key] = value
            if value is None:
                raise ValueError("run_graph(): output {!r} is None (not found)".format(key))
        stages = {k: v for k, v in outputs.items() if isinstance(v, ProposalStage)}
        tensors = [v for v in outputs.values() if not isinstance(v, ProposalStage)]
        roi_layer = self.keras_model.get_layer("ROI")
        if stages:
            tensors += list(roi_layer.input)
        sub_model = keras.Model(self.keras_model.inputs, tensors)

        if image_metas is None:
            molded_images, image_metas, _ = self.mold_inputs(images)
        else:
            molded_images = np.asarray(images)
        inputs = self.inference_inputs(np.asarray(molded_images), np.asarray(image_metas))
        values = sub_model(inputs, training=False)
        if not isinstance(values, (list, tuple)):
            values = [values]
        values = [np.asarray(v) for v in values]
        if stages:
            stage_values = roi_layer.stages(*[tf.constant(v) for v in values[-3:]])
            values = values[:-3]
        results = OrderedDict()
        position = 0
        for key, value in outputs.items():
            if isinstance(value, ProposalStage):
                results[key] = np.asarray(stage_values[value.stage])
            else:
                results[key] = values[position]
                position += 1
        for key, value in results.items():
            log(key, value)
        return results

