"""
YOLACT: the ``Yolact`` model mode (``Config.MODEL = "yolact"``), after
dbolya/yolact with ``yolact_base_config``.

The graph: the shared backbone and feature pyramid (``mrcnn.backbone``,
levels P3-P7 with YOLACT's bilinear top-down resizing and ReLU), the
protonet on P3, the prediction head shared by every level, in training the
semantic segmentation head and the four losses (``losses``), at inference
``detection.YolactDetection``. The targets are NumPy (``targets``), built
per image by the shared tf.data pipeline from ``load_image_gt``.

Frames: the graph works in boxes relative to the molded image (pixels /
side, ``(y1, x1, y2, x2)``); ``postprocess`` maps them to original-image
pixels with ``mrcnn.transform`` and upsamples the masks (prototype
resolution, a quarter of the molded side) to the original image.

Differences from the reference, all of which leave a 550 x 550 input as it
is: the priors of a non-square molded image are square in pixels (the
reference, which always squashes images to 550 x 550, made them square in
relative units); the input is normalised by MEAN_PIXEL only, as the shared
backbone's ImageNet weights expect (the reference also divides by the
standard deviation).
"""

import numbers

import cv2
import numpy as np
from keras import layers as KL

from mrcnn import transform
from mrcnn.backbone import build_feature_pyramid
from mrcnn.boxes import norm_boxes
from mrcnn.config import _is_int
from mrcnn.data import load_image_gt, mold_image
from mrcnn.modelbase import ModelBase
from mrcnn.training import DetectionModel, LossLayer
from mrcnn.yolact import losses
from mrcnn.yolact.box_utils import make_priors
from mrcnn.yolact.detection import YolactDetection
from mrcnn.yolact.heads import (prediction_graph, protonet_graph,
                                semantic_segmentation_graph)
from mrcnn.yolact.targets import build_targets

LOSS_NAMES = ("yolact_box_loss", "yolact_class_loss", "yolact_mask_loss",
              "yolact_semantic_loss")

# Strides of P3-P7.
LEVEL_STRIDES = (8, 16, 32, 64, 128)

# The image side the anchor scales are given for (yolact_base max_size).
REFERENCE_SIZE = 550


def level_shapes(image_shape):
    """[(height, width)] of P3-P7 for a molded image [H, W, ...]: each
    stride-2 stage gives ceil(side / 2), so level s is ceil(side / s)."""
    height, width = int(image_shape[0]), int(image_shape[1])
    return [(-(-height // s), -(-width // s)) for s in LEVEL_STRIDES]


def prototype_shape(image_shape):
    """(height, width) of the prototypes: twice P3's."""
    height, width = level_shapes(image_shape)[0]
    return 2 * height, 2 * width


def anchor_scales(config):
    """Per level, the anchor sizes in pixels of a 550 px image:
    YOLACT_ANCHOR_SCALES, each times 2 ** (j / n) for j < n =
    YOLACT_SCALES_PER_LEVEL (YOLACT++'s three scales)."""
    n = int(config.YOLACT_SCALES_PER_LEVEL)
    return [[float(s) * 2 ** (j / n) for j in range(n)] for s in config.YOLACT_ANCHOR_SCALES]


def priors_for_shape(config, image_shape):
    """[P, (cy, cx, h, w)] priors of a molded image shape, relative to it.
    Square images get the reference's priors; a non-square one gets
    anchors of the same pixel sizes (relative to its longer side)."""
    height, width = int(image_shape[0]), int(image_shape[1])
    priors = make_priors(level_shapes(image_shape), anchor_scales(config),
                         list(config.YOLACT_ANCHOR_RATIOS), max_size=REFERENCE_SIZE,
                         square_anchors=bool(config.YOLACT_SQUARE_ANCHORS))
    side = max(height, width)
    priors[:, 2] *= side / height
    priors[:, 3] *= side / width
    return priors


def validate_yolact_config(config, add):
    """YOLACT's configuration rules (``Yolact.validate_config``)."""
    for name in ("YOLACT_NUM_PROTOTYPES", "YOLACT_HEAD_CHANNELS", "YOLACT_SCALES_PER_LEVEL",
                 "YOLACT_NEGPOS_RATIO", "YOLACT_MASKS_TO_TRAIN", "YOLACT_TOP_K"):
        value = getattr(config, name)
        if not _is_int(value) or value < 1:
            add("{} must be a positive integer, got {!r}".format(name, value))
    scales = config.YOLACT_ANCHOR_SCALES
    if not isinstance(scales, (list, tuple, np.ndarray)) or len(scales) != 5 or not all(
            isinstance(s, numbers.Real) and s > 0 for s in scales):
        add("YOLACT_ANCHOR_SCALES must be 5 positive sizes in pixels of a 550 px image, one "
            "per level P3-P7, got {!r}".format(scales))
    ratios = config.YOLACT_ANCHOR_RATIOS
    if not isinstance(ratios, (list, tuple, np.ndarray)) or not len(ratios) or not all(
            isinstance(r, numbers.Real) and np.isfinite(r) and r > 0 for r in ratios):
        add("YOLACT_ANCHOR_RATIOS must be a non-empty list of positive numbers (width / "
            "height), got {!r}".format(ratios))
    for name in ("YOLACT_POSITIVE_IOU", "YOLACT_NEGATIVE_IOU", "YOLACT_CROWD_IOU"):
        value = getattr(config, name)
        if not isinstance(value, numbers.Real) or not 0 <= value <= 1:
            add("{} must be between 0 and 1, got {!r}".format(name, value))
    positive, negative = config.YOLACT_POSITIVE_IOU, config.YOLACT_NEGATIVE_IOU
    if isinstance(positive, numbers.Real) and isinstance(negative, numbers.Real) \
            and negative > positive:
        add("YOLACT_NEGATIVE_IOU ({}) must not exceed YOLACT_POSITIVE_IOU ({})".format(
            negative, positive))
    if config.YOLACT_SQUARE_ANCHORS not in (True, False):
        add("YOLACT_SQUARE_ANCHORS must be True or False, got {!r}".format(
            config.YOLACT_SQUARE_ANCHORS))
    # Any side works (the pyramid resizes bilinearly to each lateral's
    # size); P3 needs at least 2 x 2 cells to be worth anything.
    for name in ("IMAGE_MAX_DIM", "IMAGE_MIN_DIM"):
        value = getattr(config, name)
        if name == "IMAGE_MIN_DIM" and config.IMAGE_RESIZE_MODE not in ("square", "crop"):
            continue
        if name == "IMAGE_MIN_DIM" and config.IMAGE_RESIZE_MODE == "square" and not value:
            continue
        if not _is_int(value) or value < 16:
            add("{}={!r}: YOLACT needs at least 16 px (550 is the reference's size)".format(
                name, value))


class Yolact(ModelBase):
    """YOLACT: one-stage instance segmentation with prototype masks.

    Training outputs the four losses of LOSS_NAMES; inference outputs
    ``[detections [B, D, (y1, x1, y2, x2, class_id, score)] relative,
    masks [B, mh, mw, D] (cropped sigmoid), prototypes [B, mh, mw, k],
    coefficients [B, P, k], class scores [B, P, C] (softmax), box deltas
    [B, P, 4]]`` (D = DETECTION_MAX_INSTANCES, P priors).
    """

    LOSS_NAMES = LOSS_NAMES
    DEFAULT_LOSS_WEIGHTS = {"yolact_box_loss": 1.5, "yolact_class_loss": 1.0,
                            "yolact_mask_loss": 6.125, "yolact_semantic_loss": 1.0}
    CHECKPOINT_PREFIX = "yolact"
    HEADS_REGEX = r"(yolact\_.*)|(fpn\_.*)"
    CLASS_SPECIFIC_LAYERS = ("yolact_conf", "yolact_semantic")
    SIZE_DIVISOR = 1
    HAS_COCO_WEIGHTS = False
    CONFIG_DEFAULTS = {
        "IMAGE_MIN_DIM": REFERENCE_SIZE,
        "IMAGE_MAX_DIM": REFERENCE_SIZE,
        "DETECTION_MIN_CONFIDENCE": 0.05,
        "DETECTION_NMS_THRESHOLD": 0.5,
        "WEIGHT_DECAY": 5e-4,
        "BACKBONE_STRIDES": list(LEVEL_STRIDES),
    }

    @classmethod
    def validate_config(cls, config, add):
        """YOLACT's own rules: positive counts, anchor scales (one per
        P3-P7 level) and ratios, IoU thresholds, any image side of 16 px or
        more (550, the reference's, is not a multiple of 64)."""
        super().validate_config(config, add)
        validate_yolact_config(config, add)

    @property
    def num_anchors(self):
        """Priors per feature-map location: scales x ratios."""
        return int(self.config.YOLACT_SCALES_PER_LEVEL) * len(self.config.YOLACT_ANCHOR_RATIOS)

    # ------------------------------------------------------------------
    # The network
    # ------------------------------------------------------------------
    def build(self, mode, config):
        """Inputs: input_image [B, H, W, C] molded (any H, W); in
        inference input_priors [B, P, (cy, cx, h, w)] relative (the priors
        of the molded size, ``priors_for``); in training the targets of
        training_signature()."""
        training = mode == "training"
        train_bn = config.TRAIN_BN if training else False
        input_image = KL.Input(shape=[None, None, config.IMAGE_CHANNEL_COUNT],
                               name="input_image")
        pyramid = build_feature_pyramid(input_image, config, train_bn=train_bn,
                                        levels=("P3", "P4", "P5", "P6", "P7"),
                                        upsampling="bilinear", relu=True)
        channels = config.YOLACT_HEAD_CHANNELS
        proto = protonet_graph(pyramid[0], config.YOLACT_NUM_PROTOTYPES, channels)
        proto = KL.Identity(name="yolact_prototypes", dtype="float32")(proto)
        loc, class_logits, coef = prediction_graph(pyramid, self.num_anchors,
                                                   config.NUM_CLASSES,
                                                   config.YOLACT_NUM_PROTOTYPES, channels)
        if training:
            return self._training_model(input_image, pyramid[0], proto, loc, class_logits,
                                        coef, config)
        input_priors = KL.Input(shape=[None, 4], name="input_priors")
        detections, masks = YolactDetection(
            min_confidence=config.DETECTION_MIN_CONFIDENCE,
            nms_threshold=config.DETECTION_NMS_THRESHOLD, top_k=config.YOLACT_TOP_K,
            max_instances=config.DETECTION_MAX_INSTANCES, name="yolact_detection")(
            [loc, class_logits, coef, input_priors, proto])
        class_scores = KL.Softmax(name="yolact_class", dtype="float32")(class_logits)
        return DetectionModel([input_image, input_priors],
                              [detections, masks, proto, coef, class_scores, loc],
                              name="yolact")

    def _training_model(self, input_image, p3, proto, loc, class_logits, coef, config):
        inputs = [input_image] + [
            KL.Input(shape=shape, name=name, dtype=np.dtype(dtype).name)
            for name, shape, dtype in self._target_signature(shapes=False)]
        _, loc_t, conf_t, idx_t, gt_boxes, gt_masks, segm_t = inputs
        segm = semantic_segmentation_graph(p3, config.NUM_CLASSES)
        loss_outputs = [
            LossLayer(losses.box_loss, name="yolact_box_loss")([conf_t, loc_t, loc]),
            LossLayer(losses.ohem_class_loss, name="yolact_class_loss",
                      arguments={"negpos_ratio": int(config.YOLACT_NEGPOS_RATIO)})(
                [conf_t, class_logits]),
            LossLayer(losses.lincomb_mask_loss, name="yolact_mask_loss",
                      arguments={"masks_to_train": int(config.YOLACT_MASKS_TO_TRAIN)})(
                [conf_t, idx_t, coef, proto, gt_boxes, gt_masks]),
            LossLayer(losses.semantic_segmentation_loss, name="yolact_semantic_loss")(
                [segm_t, segm]),
        ]
        return DetectionModel(inputs, [loc, class_logits, coef, proto, segm] + loss_outputs,
                              name="yolact", loss_names=LOSS_NAMES,
                              loss_weights=self.loss_weights(config),
                              weight_decay=config.WEIGHT_DECAY)

    # ------------------------------------------------------------------
    # Targets for the tf.data pipeline
    # ------------------------------------------------------------------
    def _target_signature(self, shapes=True):
        """(name, shape, dtype) of the targets; with ``shapes=False`` the
        prior and map sizes are left open (the Keras inputs)."""
        config = self.config
        image_shape = config.IMAGE_SHAPE
        gt = int(config.MAX_GT_INSTANCES)
        if shapes:
            num_priors = len(self.priors_for(image_shape))
            proto_hw = prototype_shape(image_shape)
            segm_hw = level_shapes(image_shape)[0]
        else:
            num_priors, proto_hw, segm_hw = None, (None, None), (None, None)
        return [("input_yolact_loc", (num_priors, 4), np.float32),
                ("input_yolact_conf", (num_priors,), np.int32),
                ("input_yolact_index", (num_priors,), np.int32),
                ("input_gt_boxes", (gt, 4), np.float32),
                ("input_gt_masks", tuple(proto_hw) + (gt,), np.uint8),
                ("input_yolact_segmentation", tuple(segm_hw) + (config.NUM_CLASSES - 1,),
                 np.uint8)]

    def training_signature(self):
        """(input name, shape, dtype) of one training sample: the molded
        image, the matched prior targets (deltas, classes with -1 neutral,
        ground-truth slot), the ground-truth boxes (relative) and masks at
        prototype size, and the semantic class maps at P3 size."""
        h, w, c = [int(v) for v in self.config.IMAGE_SHAPE]
        return [("input_image", (h, w, c), np.float32)] + self._target_signature()

    def training_sample(self, dataset, image_id, augmentation):
        """One image's arrays in training_signature() order, or None when it
        has no instances."""
        config = self.config
        image, _, class_ids, boxes, masks = load_image_gt(
            dataset, config, image_id, augmentation=augmentation, use_mini_mask=False)
        if not np.any(class_ids > 0):
            return None
        targets = build_targets(
            image.shape, class_ids, boxes, masks, self.priors_for(image.shape),
            prototype_shape(image.shape), level_shapes(image.shape)[0], config.NUM_CLASSES,
            config.MAX_GT_INSTANCES, pos_thresh=config.YOLACT_POSITIVE_IOU,
            neg_thresh=config.YOLACT_NEGATIVE_IOU,
            crowd_iou_threshold=config.YOLACT_CROWD_IOU)
        return [mold_image(image, config), targets["loc_t"], targets["conf_t"],
                targets["idx_t"], targets["gt_boxes"], targets["gt_masks"], targets["segm_t"]]

    def priors_for(self, image_shape):
        """[P, (cy, cx, h, w)] priors of a molded image shape (cached); see
        priors_for_shape."""
        key = tuple(int(v) for v in image_shape[:2])
        cache = self.__dict__.setdefault("_prior_cache", {})
        if key not in cache:
            cache[key] = priors_for_shape(self.config, key)
        return cache[key]

    # ------------------------------------------------------------------
    # Inference
    # ------------------------------------------------------------------
    def inference_inputs(self, molded_images, image_metas):
        molded_images = np.asarray(molded_images, np.float32)
        priors = self.priors_for(molded_images.shape[1:])
        priors = np.broadcast_to(priors, (len(molded_images),) + priors.shape)
        return [molded_images, priors]

    def serving_postprocess(self, outputs, window, molded_hw, original_hw):
        """postprocess in TensorFlow (export): ``serving.unmold_full_masks_graph``."""
        from mrcnn import serving
        return serving.unmold_full_masks_graph(outputs[0], outputs[1], window, molded_hw,
                                               original_hw)

    def postprocess(self, outputs, index, original_shape, molded_shape, window):
        detections, masks = outputs[0][index], outputs[1][index]
        return self.unmold_detections(detections, masks, original_shape, molded_shape,
                                      window)

    def unmold_detections(self, detections, masks, original_image_shape, image_shape,
                          window):
        """One image's detections in original-image pixels.

        detections: [D, (y1, x1, y2, x2, class_id, score)] relative to the
            molded image, rows with class 0 unused.
        masks: [mh, mw, D] cropped mask probabilities over the molded image.
        Returns (boxes [N, 4] int32, class_ids [N] int32, scores [N]
        float32, masks [H, W, N] bool): masks upsampled bilinearly to the
        molded image, cut to the window, resized to the original image and
        thresholded at 0.5, as the reference's postprocess.
        """
        valid = np.flatnonzero(detections[:, 4] > 0)
        height, width = int(image_shape[0]), int(image_shape[1])
        rel = detections[valid, :4].astype(np.float64)
        pixels = rel * np.array([height, width, height, width])
        boxes = transform.unmold_boxes(norm_boxes(pixels, (height, width)), window,
                                       image_shape, original_image_shape)
        class_ids = detections[valid, 4].astype(np.int32)
        scores = detections[valid, 5].astype(np.float32)
        keep = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0
        valid, boxes, class_ids, scores = valid[keep], boxes[keep], class_ids[keep], scores[keep]
        full = self._unmold_masks(masks[..., valid], (height, width), window,
                                  original_image_shape)
        return boxes, class_ids, scores, full

    @staticmethod
    def _unmold_masks(masks, molded_hw, window, original_shape):
        """[mh, mw, N] -> [H, W, N] bool (see unmold_detections)."""
        out_h, out_w = int(original_shape[0]), int(original_shape[1])
        count = masks.shape[-1]
        if count == 0:
            return np.zeros((out_h, out_w, 0), bool)
        y1, x1, y2, x2 = (int(v) for v in window)
        # A very thin image can be molded into a window less than a pixel
        # thick: its one row or column then stands for the whole image.
        y2, x2 = max(y2, y1 + 1), max(x2, x1 + 1)
        full = np.zeros((out_h, out_w, count), bool)
        for start in range(0, count, 512):  # OpenCV's channel limit
            chunk = masks[..., start:start + 512].astype(np.float32)
            up = cv2.resize(chunk, (molded_hw[1], molded_hw[0]), interpolation=cv2.INTER_LINEAR)
            up = up.reshape(molded_hw[0], molded_hw[1], -1)[y1:y2, x1:x2]
            if up.shape[:2] != (out_h, out_w):
                up = cv2.resize(up, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
            full[..., start:start + 512] = up.reshape(out_h, out_w, -1) > 0.5
        return full
