"""
CenterNet: the ``CenterNet`` model mode (``Config.MODEL = "centernet"``),
after mmdetection's ``CenterNetUpdateHead`` (CenterNet2's
"CenterNet-update"), with instance masks from the shared ROI mask head.

The graph: the shared backbone and feature pyramid (``mrcnn.backbone``,
P3-P7), the class and box towers shared by every level (``heads``),
``detection.CenterNetDetection`` (per-level top-k, decoding, class-aware
NMS), and Mask R-CNN's ROI mask head (``mrcnn.roi_heads``) on ROIAlign of
P3-P5. In training the mask head learns on CenterNet's own detections plus
the ground-truth boxes, sampled against the ground truth by the shared
``roi_sampling.DetectionTargetLayer`` as Mask R-CNN samples its proposals;
at inference it runs on the final detections. The NumPy targets are
``targets``, the losses ``losses``.

``CENTERNET_TWO_STAGE`` (CenterNet2's design) makes the heatmap
class-agnostic (one objectness channel) and its detections proposals:
the best POST_NMS_ROIS_TRAINING / POST_NMS_ROIS_INFERENCE after NMS at
CENTERNET_PROPOSAL_NMS_THRESHOLD, ground-truth boxes appended in training
(detectron2's PROPOSAL_APPEND_GT), go to the shared box head
(``mrcnn.box_head``: Mask R-CNN's classifier, regressor, DetectionLayer
and losses) on P3-P5 in place of an RPN, and the mask head runs on its
detections. A detection's score is sqrt(class probability x proposal
score) (CenterNet2's MULT_PROPOSAL_SCORE).

Frames: targets and the head work in molded-image pixels and stride units
(see ``targets``); detections are normalised boxes as Mask R-CNN's, so the
mask head and ``transform.unmold_roi_detections`` take them as they are.

Differences from the reference: images without instances get a zero
heatmap (the reference's fill is a bug, see ``targets.heatmaps``); P7 is a
convolution of P6 without the reference's ReLU in between (the shared
pyramid's RetinaNet-style P6/P7).
"""

import numbers

import numpy as np
from keras import layers as KL

from mrcnn import transform
from mrcnn.backbone import build_feature_pyramid
from mrcnn.box_head import DetectionLayer, fpn_classifier_graph, mrcnn_bbox_loss, mrcnn_class_loss
from mrcnn.centernet import losses
from mrcnn.centernet.detection import CenterNetDetection, ProposalScores
from mrcnn.centernet.heads import centernet_head_graph
from mrcnn.centernet.targets import build_targets, candidate_targets, level_shapes
from mrcnn.config import RESIZE_MODES, _is_int, _nearest_multiple
from mrcnn.data import load_image_gt, mold_image, select_instances
from mrcnn.modelbase import ModelBase
from mrcnn.roi_heads import (NormBoxes, SliceRois, build_detection_mask_graph, build_fpn_mask_graph,
                              positive_mask_rois)
from mrcnn.roi_sampling import DetectionTargetLayer
from mrcnn.training import DetectionModel, LossLayer

LOSS_NAMES = ("centernet_heatmap_loss", "centernet_box_loss", "mrcnn_mask_loss")
# CENTERNET_TWO_STAGE adds the box head's two losses.
TWO_STAGE_LOSS_NAMES = ("centernet_heatmap_loss", "centernet_box_loss", "mrcnn_class_loss",
                        "mrcnn_bbox_loss", "mrcnn_mask_loss")

# Strides of P3-P7.
LEVEL_STRIDES = (8, 16, 32, 64, 128)

TARGET_INPUTS = ("input_centernet_heatmap", "input_centernet_box",
                 "input_centernet_candidate_index", "input_centernet_candidate_target",
                 "input_centernet_candidate_valid", "input_centernet_candidate_forced")


def validate_centernet_config(config, add):
    """CenterNet's configuration rules (``CenterNet.validate_config``)."""
    for name in ("CENTERNET_MORE_POS_TOPK", "CENTERNET_PRE_NMS_TOP_K", "CENTERNET_TOWER_CONVS",
                 "CENTERNET_HEAD_CHANNELS", "CENTERNET_GROUPS", "TRAIN_ROIS_PER_IMAGE",
                 "MASK_POOL_SIZE", "MASK_HEAD_CHANNELS"):
        value = getattr(config, name)
        if not _is_int(value) or value < 1:
            add("{} must be a positive integer, got {!r}".format(name, value))
    if _is_int(config.CENTERNET_HEAD_CHANNELS) and _is_int(config.CENTERNET_GROUPS) \
            and config.CENTERNET_GROUPS > 0 \
            and config.CENTERNET_HEAD_CHANNELS % config.CENTERNET_GROUPS:
        add("CENTERNET_HEAD_CHANNELS ({}) must be a multiple of CENTERNET_GROUPS ({}), the "
            "GroupNorm groups".format(config.CENTERNET_HEAD_CHANNELS, config.CENTERNET_GROUPS))
    ranges = config.CENTERNET_REGRESS_RANGES
    try:
        ranges = np.asarray(ranges, dtype=np.float64)
        ok = ranges.shape == (5, 2) and np.all(ranges[:, 0] <= ranges[:, 1]) \
            and np.all(ranges >= 0)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        add("CENTERNET_REGRESS_RANGES must be 5 (low, high) pairs of box half-diagonals in "
            "pixels, one per level P3-P7, got {!r}".format(config.CENTERNET_REGRESS_RANGES))
    for name, low, high in (("CENTERNET_MIN_OVERLAP", 0, 1), ("CENTERNET_MORE_POS_THRESH", 0, 2),
                            ("CENTERNET_POS_WEIGHT", 0, None), ("CENTERNET_NEG_WEIGHT", 0, None),
                            ("CENTERNET_FOCAL_ALPHA", 0, None), ("CENTERNET_FOCAL_GAMMA", 0, None),
                            ("CENTERNET_MIN_RADIUS", 0, None),
                            ("CENTERNET_SIGMOID_CLAMP", 0, 0.5)):
        value = getattr(config, name)
        if not isinstance(value, numbers.Real) or value < low or (high is not None
                                                                  and value >= high):
            add("{} must be a number in [{}, {}), got {!r}".format(
                name, low, "inf" if high is None else high, value))
    if not isinstance(config.ROI_POSITIVE_RATIO, numbers.Real) or \
            not 0 < config.ROI_POSITIVE_RATIO <= 1:
        add("ROI_POSITIVE_RATIO must be in (0, 1], got {!r}".format(config.ROI_POSITIVE_RATIO))
    if not isinstance(config.CENTERNET_TWO_STAGE, (bool, np.bool_)):
        add("CENTERNET_TWO_STAGE must be True or False, got {!r}".format(
            config.CENTERNET_TWO_STAGE))
    elif config.CENTERNET_TWO_STAGE:
        for name in ("POST_NMS_ROIS_TRAINING", "POST_NMS_ROIS_INFERENCE", "POOL_SIZE",
                     "FPN_CLASSIF_FC_LAYERS_SIZE"):
            value = getattr(config, name)
            if not _is_int(value) or value < 1:
                add("{} must be a positive integer for CENTERNET_TWO_STAGE (the proposals "
                    "and the box head), got {!r}".format(name, value))
        for name, low, high in (("CENTERNET_PROPOSAL_MIN_CONFIDENCE", 0, 1),
                                ("CENTERNET_PROPOSAL_NMS_THRESHOLD", 0, 1)):
            value = getattr(config, name)
            if not isinstance(value, numbers.Real) or not low <= value <= high:
                add("{} must be a number in [{}, {}], got {!r}".format(name, low, high, value))
    mask_shape = list(config.MASK_SHAPE)
    if _is_int(config.MASK_POOL_SIZE) and mask_shape != [2 * config.MASK_POOL_SIZE] * 2:
        add("MASK_SHAPE must be [2 * MASK_POOL_SIZE] * 2 = {} because the mask head "
            "upsamples its pooled features once; got {!r}".format(
                [2 * config.MASK_POOL_SIZE] * 2, config.MASK_SHAPE))
    # P3-P5 of the feature pyramid add 2x nearest-upsampled levels: sides
    # must halve exactly down to stride 32 (P6, P7 are padded convolutions).
    if config.IMAGE_RESIZE_MODE in RESIZE_MODES:
        mode = config.IMAGE_RESIZE_MODE
        names = {"square": ["IMAGE_MAX_DIM"], "crop": ["IMAGE_MIN_DIM"]}.get(mode, [])
        for name in names:
            value = getattr(config, name)
            if not _is_int(value) or value <= 0 or value % 32:
                add("{}={!r} must be a positive multiple of 32 in {!r} mode for CenterNet "
                    "(its feature pyramid halves the image 5 times); try {}".format(
                        name, value, mode, _nearest_multiple(value, 32)))


class CenterNet(ModelBase):
    """CenterNet with instance masks (see the module docstring).

    Training outputs the losses of LOSS_NAMES (TWO_STAGE_LOSS_NAMES with
    CENTERNET_TWO_STAGE); inference outputs ``[detections [B, D, (y1, x1,
    y2, x2, class_id, score)] normalised, masks [B, D, h, w, NUM_CLASSES],
    class logits [B, M, C], distances [B, M, 4] (stride units), heatmaps of
    P3 ... P7 [B, h, w, C]]`` (D = DETECTION_MAX_INSTANCES, M points of
    P3-P7, C = NUM_CLASSES - 1, or 1 objectness channel in the two-stage
    variant, which also outputs its proposals [B, P, 6]; ``run_graph``
    fetches ``centernet_heatmap_p3`` ..., ``centernet_proposals`` by name).
    """

    LOSS_NAMES = TWO_STAGE_LOSS_NAMES
    DEFAULT_LOSS_WEIGHTS = {"centernet_heatmap_loss": 1.0, "centernet_box_loss": 2.0,
                            "mrcnn_class_loss": 1.0, "mrcnn_bbox_loss": 1.0,
                            "mrcnn_mask_loss": 1.0}
    CHECKPOINT_PREFIX = "centernet"
    HEADS_REGEX = r"(centernet\_.*)|(mrcnn\_.*)|(fpn\_.*)"
    CLASS_SPECIFIC_LAYERS = ("centernet_class_logits", "mrcnn_class_logits", "mrcnn_bbox_fc",
                             "mrcnn_bbox", "mrcnn_mask")
    SIZE_DIVISOR = 32
    HAS_COCO_WEIGHTS = False
    CONFIG_DEFAULTS = {
        "DETECTION_MIN_CONFIDENCE": 0.05,
        "DETECTION_NMS_THRESHOLD": 0.6,
        "LEARNING_RATE": 0.01,
        "BACKBONE_STRIDES": list(LEVEL_STRIDES),
        # CenterNet2's proposals per image (two-stage variant).
        "POST_NMS_ROIS_INFERENCE": 256,
    }

    @classmethod
    def validate_config(cls, config, add):
        """CenterNet's own rules: regress ranges (one per P3-P7 level),
        focal and target settings, the towers' GroupNorm, the mask head's
        geometry, image sides that are multiples of 32, and the two-stage
        variant's proposals."""
        super().validate_config(config, add)
        validate_centernet_config(config, add)

    @staticmethod
    def two_stage(config):
        """Whether ``config`` asks for the two-stage variant."""
        return bool(config.CENTERNET_TWO_STAGE)

    # ------------------------------------------------------------------
    # The network
    # ------------------------------------------------------------------
    def build(self, mode, config):
        """Inputs: input_image [B, H, W, C] molded (sides multiples of 32),
        input_image_meta; in training the targets of
        training_signature()."""
        training = mode == "training"
        two_stage = self.two_stage(config)
        train_bn = config.TRAIN_BN if training else False
        input_image = KL.Input(shape=[None, None, config.IMAGE_CHANNEL_COUNT],
                               name="input_image")
        input_image_meta = KL.Input(shape=[config.IMAGE_META_SIZE], name="input_image_meta")
        pyramid = build_feature_pyramid(input_image, config, train_bn=train_bn,
                                        levels=("P3", "P4", "P5", "P6", "P7"))
        logits, distances, level_logits, level_distances = centernet_head_graph(
            pyramid, 2 if two_stage else config.NUM_CLASSES, config.CENTERNET_HEAD_CHANNELS,
            config.CENTERNET_TOWER_CONVS, config.CENTERNET_GROUPS)
        if two_stage:
            count = config.POST_NMS_ROIS_TRAINING if training else config.POST_NMS_ROIS_INFERENCE
            detections = CenterNetDetection(
                strides=LEVEL_STRIDES, min_confidence=config.CENTERNET_PROPOSAL_MIN_CONFIDENCE,
                pre_nms_top_k=config.CENTERNET_PRE_NMS_TOP_K,
                nms_threshold=config.CENTERNET_PROPOSAL_NMS_THRESHOLD,
                max_instances=count, name="centernet_proposals")(
                level_logits + level_distances + [input_image_meta])
        else:
            detections = CenterNetDetection(
                strides=LEVEL_STRIDES, min_confidence=config.DETECTION_MIN_CONFIDENCE,
                pre_nms_top_k=config.CENTERNET_PRE_NMS_TOP_K,
                nms_threshold=config.DETECTION_NMS_THRESHOLD,
                max_instances=config.DETECTION_MAX_INSTANCES, name="centernet_detection")(
                level_logits + level_distances + [input_image_meta])
        roi_maps = pyramid[:3]  # ROIAlign on P3-P5
        if training:
            return self._training_model(input_image, input_image_meta, roi_maps, logits,
                                        distances, detections, config, train_bn)
        outputs = []
        if two_stage:
            proposals = detections
            proposal_boxes = SliceRois(columns=4, name="proposal_boxes")(proposals)
            _, class_probs, deltas = fpn_classifier_graph(
                proposal_boxes, roi_maps, input_image_meta, config.POOL_SIZE,
                config.NUM_CLASSES, train_bn=False,
                fc_layers_size=config.FPN_CLASSIF_FC_LAYERS_SIZE, levels=(3, 4, 5))
            scores = ProposalScores(name="centernet_detection_scores")([class_probs, proposals])
            detections = DetectionLayer(config, name="centernet_detection")(
                [proposal_boxes, scores, deltas, input_image_meta])
            outputs = [proposals]
        masks = build_detection_mask_graph(detections, roi_maps, input_image_meta,
                                           config.MASK_POOL_SIZE, config.NUM_CLASSES,
                                           conv_channels=config.MASK_HEAD_CHANNELS,
                                           levels=(3, 4, 5))
        # Per-level class heatmaps, for run_graph (the points' sigmoid scores).
        heatmaps = [KL.Activation("sigmoid", name="centernet_heatmap_p{}".format(3 + i),
                                  dtype="float32")(x) for i, x in enumerate(level_logits)]
        return DetectionModel([input_image, input_image_meta],
                              [detections, masks, logits, distances] + heatmaps + outputs,
                              name="centernet")

    def _training_model(self, input_image, image_meta, roi_maps, logits, distances,
                        detections, config, train_bn):
        two_stage = self.two_stage(config)
        inputs = [input_image, image_meta] + [
            KL.Input(shape=shape, name=name, dtype=np.dtype(dtype).name)
            for name, shape, dtype in self._target_signature(shapes=False)]
        (heatmap, box_target, cand_index, cand_target, cand_valid, cand_forced, gt_class_ids,
         gt_boxes, gt_masks) = inputs[2:]
        gt_boxes_norm = NormBoxes(name="norm_gt_boxes")([gt_boxes, input_image])
        # The ROI heads learn on CenterNet's own boxes (detections, or the
        # two-stage variant's proposals) and the ground-truth boxes,
        # sampled against the ground truth as Mask R-CNN samples proposals.
        proposals = KL.Concatenate(axis=1, name="roi_proposals", dtype="float32")(
            [SliceRois(columns=4, name="proposal_boxes")(detections), gt_boxes_norm])
        rois, target_class_ids, target_bbox, target_mask = DetectionTargetLayer(
            config, name="proposal_targets")([proposals, gt_class_ids, gt_boxes_norm, gt_masks])
        mask_rois = positive_mask_rois(rois, target_class_ids, config)
        masks = build_fpn_mask_graph(mask_rois, roi_maps, image_meta, config.MASK_POOL_SIZE,
                                     config.NUM_CLASSES, train_bn=train_bn,
                                     conv_channels=config.MASK_HEAD_CHANNELS, levels=(3, 4, 5))
        focal = {"alpha": float(config.CENTERNET_FOCAL_ALPHA),
                 "gamma": float(config.CENTERNET_FOCAL_GAMMA),
                 "pos_weight": float(config.CENTERNET_POS_WEIGHT),
                 "neg_weight": float(config.CENTERNET_NEG_WEIGHT),
                 "sigmoid_clamp": float(config.CENTERNET_SIGMOID_CLAMP),
                 "topk": int(config.CENTERNET_MORE_POS_TOPK),
                 "threshold": float(config.CENTERNET_MORE_POS_THRESH)}
        if two_stage:
            focal["class_agnostic"] = True
        loss_outputs = [
            LossLayer(losses.heatmap_focal_loss, name="centernet_heatmap_loss",
                      arguments=focal)(
                [heatmap, logits, distances, gt_class_ids, cand_index, cand_target, cand_valid,
                 cand_forced]),
            LossLayer(losses.box_giou_loss, name="centernet_box_loss")([box_target, distances]),
        ]
        outputs = [logits, distances, detections, masks]
        if two_stage:
            class_logits, _, deltas = fpn_classifier_graph(
                rois, roi_maps, image_meta, config.POOL_SIZE, config.NUM_CLASSES,
                train_bn=train_bn, fc_layers_size=config.FPN_CLASSIF_FC_LAYERS_SIZE,
                levels=(3, 4, 5))
            loss_outputs += [
                LossLayer(mrcnn_class_loss, name="mrcnn_class_loss")(
                    [target_class_ids, class_logits, image_meta]),
                LossLayer(mrcnn_bbox_loss, name="mrcnn_bbox_loss")(
                    [target_bbox, target_class_ids, deltas]),
            ]
            outputs += [class_logits, deltas]
        loss_outputs.append(LossLayer(name="mrcnn_mask_loss")([target_mask, target_class_ids,
                                                                masks]))
        names = TWO_STAGE_LOSS_NAMES if two_stage else LOSS_NAMES
        weights_ = {name: w for name, w in self.loss_weights(config).items() if name in names}
        return DetectionModel(inputs, outputs + loss_outputs, name="centernet",
                              loss_names=names, loss_weights=weights_,
                              weight_decay=config.WEIGHT_DECAY)

    # ------------------------------------------------------------------
    # Targets for the tf.data pipeline
    # ------------------------------------------------------------------
    def _target_signature(self, shapes=True):
        config = self.config
        image_shape = config.IMAGE_SHAPE
        gt = int(config.MAX_GT_INSTANCES)
        k = 9 * len(LEVEL_STRIDES)
        points = sum(h * w for h, w in level_shapes(image_shape, LEVEL_STRIDES)) \
            if shapes else None
        mask_hw = tuple(config.MINI_MASK_SHAPE) if config.USE_MINI_MASK else \
            ((int(image_shape[0]), int(image_shape[1])) if shapes else (None, None))
        channels = 1 if self.two_stage(config) else config.NUM_CLASSES - 1
        return [("input_centernet_heatmap", (points, channels), np.float32),
                ("input_centernet_box", (points, 4), np.float32),
                ("input_centernet_candidate_index", (gt, k), np.int32),
                ("input_centernet_candidate_target", (gt, k, 4), np.float32),
                ("input_centernet_candidate_valid", (gt, k), np.uint8),
                ("input_centernet_candidate_forced", (gt, k), np.uint8),
                ("input_gt_class_ids", (gt,), np.int32),
                ("input_gt_boxes", (gt, 4), np.float32),
                ("input_gt_masks", mask_hw + (gt,), np.uint8)]

    def training_signature(self):
        """(input name, shape, dtype) of one training sample: the molded
        image and its meta, the heatmaps and box targets of every point,
        the extra-positive candidates of each ground-truth slot, and the
        ground truth (class ids, pixel boxes, masks) the mask head samples
        against."""
        config = self.config
        h, w, c = [int(v) for v in config.IMAGE_SHAPE]
        return [("input_image", (h, w, c), np.float32),
                ("input_image_meta", (config.IMAGE_META_SIZE,), np.float32)] + \
            self._target_signature()

    def training_sample(self, dataset, image_id, augmentation):
        """One image's arrays in training_signature() order, or None when it
        has no instances. The heatmaps and box targets use every instance;
        the ground-truth slots (and their candidates) hold at most
        MAX_GT_INSTANCES of them (``data.select_instances``)."""
        config = self.config
        image, image_meta, class_ids, boxes, masks = load_image_gt(
            dataset, config, image_id, augmentation=augmentation,
            use_mini_mask=config.USE_MINI_MASK)
        if not np.any(class_ids > 0):
            return None
        ranges = np.asarray(config.CENTERNET_REGRESS_RANGES, np.float64)
        heat_ids, heat_classes = class_ids, config.NUM_CLASSES
        if self.two_stage(config):
            # One objectness heatmap: every instance is class 1 (crowds stay
            # negative and out of the targets).
            heat_ids, heat_classes = np.where(class_ids > 0, 1, class_ids), 2
        dense = build_targets(image.shape, heat_ids, boxes, heat_classes, LEVEL_STRIDES, ranges,
                              config.CENTERNET_MIN_RADIUS, config.CENTERNET_MIN_OVERLAP)
        gt = int(config.MAX_GT_INSTANCES)
        class_ids, boxes, masks = select_instances(class_ids, boxes, masks, gt)
        candidates = candidate_targets(image.shape, class_ids, boxes, LEVEL_STRIDES, ranges, gt)
        pad = gt - len(class_ids)
        return [mold_image(image, config), image_meta.astype(np.float32), dense["heatmap"],
                dense["box_target"], candidates["candidate_index"],
                candidates["candidate_target"], candidates["candidate_valid"],
                candidates["candidate_forced"],
                np.pad(class_ids.astype(np.int32), (0, pad)),
                np.pad(boxes.astype(np.float32), ((0, pad), (0, 0))),
                np.pad(masks.astype(np.uint8), ((0, 0), (0, 0), (0, pad)))]

    # ------------------------------------------------------------------
    # Inference
    # ------------------------------------------------------------------
    def inference_inputs(self, molded_images, image_metas):
        return [np.asarray(molded_images, np.float32), np.asarray(image_metas, np.float32)]

    def serving_postprocess(self, outputs, window, molded_hw, original_hw):
        """postprocess in TensorFlow (export): the shared ROI un-molding,
        ``serving.unmold_roi_graph``."""
        from mrcnn import serving
        return serving.unmold_roi_graph(outputs[0], outputs[1], window, molded_hw, original_hw)

    def postprocess(self, outputs, index, original_shape, molded_shape, window):
        detections, masks = outputs[0][index], outputs[1][index]
        return transform.unmold_roi_detections(detections, masks, original_shape,
                                               molded_shape, window)
