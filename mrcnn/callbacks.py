"""
Evaluation during training: mean average precision of a model on a
validation subset, and a Keras callback that reports it every N epochs in
the progress bar, the History and TensorBoard (as ``val_mAP``);
``CocoEvaluationCallback``, pycocotools' AP, AP50 and AP75 for boxes and
masks (``val_bbox_AP`` ...), also in a CSV beside the checkpoints, with
TensorBoard pictures of predictions beside their ground truth.

Works for every model mode: it only uses ``detect()`` of an inference model
built from the same configuration, into which the callback copies the
training model's weights by layer name before each evaluation.
"""

import logging
import time

import keras
import numpy as np

from mrcnn.data import load_image_gt
from mrcnn.evaluation import compute_ap, compute_ap_range
from mrcnn.nested import layers_with_weights


def _named_layers_with_weights(model):
    """{name: layer} for every layer with weights, nested models included."""
    return {layer.name: layer for layer in layers_with_weights(model)}

logger = logging.getLogger(__name__)



def copy_weights(source, target):
    """Copy weights layer by layer, matched by name, from the Keras model
    ``source`` into the Keras model ``target`` (e.g. a training model into
    the inference model of the same configuration).

    Every target layer with weights must exist in ``source`` with the same
    weight shapes; otherwise ValueError names the layers, and nothing has
    been copied. Returns the number of layers copied.
    """
    source_layers = _named_layers_with_weights(source)
    target_layers = _named_layers_with_weights(target)
    missing = sorted(name for name in target_layers if name not in source_layers)
    mismatched = []
    plan = []
    for name, layer in target_layers.items():
        if name not in source_layers:
            continue
        values = source_layers[name].get_weights()
        shapes = [tuple(w.shape) for w in layer.weights]
        if [tuple(v.shape) for v in values] != shapes:
            mismatched.append(name)
        plan.append((layer, values))
    if missing or mismatched:
        raise ValueError(
            "Cannot copy weights between models of different configurations: layers "
            "missing in the source: {}; layers with other weight shapes: {}. Build the "
            "inference model from the training model's config.".format(
                missing or "none", sorted(mismatched) or "none"))
    for layer, values in plan:
        layer.set_weights(values)
    return len(plan)


def mean_average_precision(model, dataset, image_ids=None, iou_threshold=0.5,
                           iou_range=False):
    """Mean of ``utils.compute_ap`` over images of ``dataset``.

    model: an inference-mode model (anything with ``config`` and
        ``detect(images)``).
    dataset: a prepared Dataset; ground truth comes from ``load_image_gt``
        (so the image is resized like the model's input, and the detections
        are compared in that frame).
    image_ids: the images to use (default: all of ``dataset.image_ids``).
    iou_threshold: the IoU at which a detection counts as a match.
    iou_range: also compute the COCO-style mAP over IoU 0.5:0.95.

    Images are detected ``model.config.BATCH_SIZE`` at a time. Returns a
    dict: ``mAP`` (at iou_threshold), ``mAP@[.5:.95]`` when iou_range, and
    ``images``. An image without ground truth instances scores 0 (see
    compute_ap).
    """
    ids = list(dataset.image_ids if image_ids is None else image_ids)
    if not ids:
        raise ValueError("mean_average_precision() needs at least one image; the dataset "
                         "(or image_ids) is empty")
    batch = max(1, int(model.config.BATCH_SIZE))
    aps, ap_ranges = [], []
    for start in range(0, len(ids), batch):
        chunk = ids[start:start + batch]
        truths = [load_image_gt(dataset, model.config, image_id) for image_id in chunk]
        results = model.detect([t[0] for t in truths])
        for (_, _, gt_class_ids, gt_boxes, gt_masks), r in zip(truths, results):
            ap, _, _, _ = compute_ap(gt_boxes, gt_class_ids, gt_masks, r["rois"],
                                     r["class_ids"], r["scores"], r["masks"],
                                     iou_threshold=iou_threshold)
            aps.append(ap)
            if iou_range:
                ap_ranges.append(compute_ap_range(
                    gt_boxes, gt_class_ids, gt_masks, r["rois"], r["class_ids"],
                    r["scores"], r["masks"], verbose=0))
    scores = {"mAP": float(np.mean(aps)), "images": len(ids)}
    if iou_range:
        scores["mAP@[.5:.95]"] = float(np.mean(ap_ranges))
    return scores


def _evaluation_images(callback, inference_model, dataset, every_n_epochs, limit, image_ids):
    """The image ids an evaluation callback uses, after checking its
    arguments (errors name the callback class)."""
    name = type(callback).__name__
    if getattr(inference_model, "mode", "inference") != "inference":
        raise ValueError("{} needs an inference-mode model, got one in {!r} mode".format(
            name, inference_model.mode))
    if int(every_n_epochs) < 1:
        raise ValueError("every_n_epochs must be >= 1, got {}".format(every_n_epochs))
    ids = list(dataset.image_ids if image_ids is None else image_ids)
    ids = ids[:limit] if limit else ids
    if not ids:
        raise ValueError("{} has no images to evaluate: the dataset (or image_ids) is "
                         "empty".format(name))
    return ids


def _chief(model):
    """False on the workers of a multi-worker job other than the chief: the
    chief alone evaluates (the weights are the same on every worker) and
    writes the results."""
    from mrcnn.training.strategy import is_chief
    return is_chief(model.distribute_strategy)


class MeanAveragePrecisionCallback(keras.callbacks.Callback):
    """Every ``every_n_epochs`` epochs, copy the training weights into
    ``inference_model`` and compute mAP@``iou_threshold`` on ``dataset``
    (the first ``limit`` images, or ``image_ids``).

    The figure is added to the epoch logs as ``val_mAP`` (or ``log_name``),
    so it shows in the Keras progress bar and the History, and TensorBoard
    records it as ``epoch_mAP`` under ``validation`` (``train()`` runs custom
    callbacks before its TensorBoard callback). Epochs without an
    evaluation carry no value. ``self.history`` keeps ``(epoch, mAP)``
    pairs with 1-based epochs, as checkpoints are numbered.

    Usage::

        inference = modellib.MaskRCNN("inference", InferenceConfig(), model_dir)
        map_cb = MeanAveragePrecisionCallback(inference, dataset_val, every_n_epochs=5,
                                              limit=50)
        model.train(dataset_train, dataset_val, config.LEARNING_RATE, epochs=40,
                    layers="heads", custom_callbacks=[map_cb])

    The inference model must be built from the same configuration (same
    backbone, classes and head sizes); its batch size may differ. In a
    multi-worker job the chief alone evaluates.
    """

    def __init__(self, inference_model, dataset, every_n_epochs=1, limit=None,
                 image_ids=None, iou_threshold=0.5, log_name="val_mAP", verbose=1):
        super().__init__()
        self.image_ids = _evaluation_images(self, inference_model, dataset, every_n_epochs,
                                            limit, image_ids)
        self.inference_model = inference_model
        self.dataset = dataset
        self.every_n_epochs = int(every_n_epochs)
        self.iou_threshold = float(iou_threshold)
        self.log_name = log_name
        self.verbose = verbose
        self.history = []

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs or not _chief(self.model):
            return
        start = time.time()
        copy_weights(self.model, self.inference_model.keras_model)
        scores = mean_average_precision(self.inference_model, self.dataset, self.image_ids,
                                        iou_threshold=self.iou_threshold)
        self.history.append((epoch + 1, scores["mAP"]))
        if logs is not None:
            logs[self.log_name] = scores["mAP"]
        message = "Epoch {}: {} = {:.4f} on {} images ({:.1f} s)".format(
            epoch + 1, self.log_name, scores["mAP"], scores["images"], time.time() - start)
        logger.info(message)
        if self.verbose:
            print(message)


class CocoEvaluationCallback(keras.callbacks.Callback):
    """COCO metrics on a validation set while training: every
    ``every_n_epochs`` epochs, copy the training weights into
    ``inference_model`` and run pycocotools' evaluation
    (``data.evaluate_coco``) of ``dataset`` against ``coco``.

    inference_model: an inference-mode model built from the training
        model's configuration (its batch size may differ; set
        DETECTION_MIN_CONFIDENCE low, as COCO evaluation expects).
    dataset: the prepared validation Dataset; coco: its pycocotools COCO
        ground truth (``CocoDataset.load_coco(..., return_coco=True)``).
    eval_type: "bbox", "segm" or "both".
    limit / image_ids: evaluate the first ``limit`` images (of ``image_ids``).
    class_source: the dataset source whose classes are COCO categories.
    csv_path: the CSV that gets one row per evaluation; default
        ``coco_metrics.csv`` beside the checkpoints (``train()`` tells the
        callback its log directory), none when the callback is used
        outside ``train()`` without one.
    images: how many validation images TensorBoard shows each evaluation,
        ground truth (left) beside the predictions (right), as
        ``predictions/<i>`` in the ``validation`` run; 0 for none.

    Logged values: ``val_bbox_AP``, ``val_bbox_AP50``, ``val_bbox_AP75`` and
    the ``val_segm_*`` three (per eval_type) in the epoch logs, so they show
    in the progress bar and the History, and TensorBoard records them as
    ``epoch_bbox_AP`` ... under ``validation``. ``self.history`` keeps
    ``(epoch, {name: value})`` pairs with 1-based epochs, as checkpoints are
    numbered. In a multi-worker job the chief alone evaluates and writes.

    Usage::

        inference = modellib.create_model("inference", inference_config, model_dir)
        coco_cb = CocoEvaluationCallback(inference, dataset_val, coco, every_n_epochs=5,
                                         limit=500)
        model.train(dataset_train, dataset_val, config.LEARNING_RATE, epochs=40,
                    layers="heads", custom_callbacks=[coco_cb])
    """

    METRICS = ("AP", "AP50", "AP75")
    CSV_NAME = "coco_metrics.csv"

    def __init__(self, inference_model, dataset, coco, every_n_epochs=1, eval_type="both",
                 limit=None, image_ids=None, class_source="coco", csv_path=None, images=3,
                 verbose=1):
        super().__init__()
        from mrcnn.data.cocoformat import _eval_types
        self.image_ids = _evaluation_images(self, inference_model, dataset, every_n_epochs,
                                            limit, image_ids)
        if coco is None or not hasattr(coco, "loadRes"):
            raise TypeError("CocoEvaluationCallback needs the pycocotools COCO ground truth of "
                            "the dataset (load_coco(..., return_coco=True)), got {!r}".format(
                                coco))
        self.types = _eval_types(eval_type)
        self.inference_model = inference_model
        self.dataset = dataset
        self.coco = coco
        self.every_n_epochs = int(every_n_epochs)
        self.class_source = class_source
        self.csv_path = csv_path
        self.log_dir = None
        self.images = max(0, int(images))
        self.verbose = verbose
        self.history = []

    def set_log_dir(self, log_dir):
        """The training run's directory (``train()`` calls this): the CSV
        goes there unless csv_path was given, and the TensorBoard images
        into its ``validation`` run."""
        self.log_dir = log_dir

    def names(self):
        """The logged names, e.g. ``val_bbox_AP``, in order."""
        return ["val_{}_{}".format(t, m) for t in self.types for m in self.METRICS]

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs or not _chief(self.model):
            return
        from mrcnn.data.cocoformat import coco_stats, evaluate_coco
        start = time.time()
        copy_weights(self.model, self.inference_model.keras_model)
        evaluations = evaluate_coco(self.inference_model, self.dataset, self.coco,
                                    eval_type=self.types, image_ids=self.image_ids, verbose=0,
                                    class_source=self.class_source)
        values = {}
        for t in self.types:
            stats = coco_stats(evaluations[t])
            for m in self.METRICS:
                values["val_{}_{}".format(t, m)] = stats[m]
        seconds = time.time() - start
        if logs is not None:
            logs.update(values)
        self.history.append((epoch + 1, values))
        self._write_csv(epoch + 1, values, seconds)
        if self.images and self.log_dir:
            self._write_images(epoch)
        message = "Epoch {}: COCO {} on {} images ({:.1f} s)".format(
            epoch + 1, ", ".join("{} = {:.4f}".format(k[4:], v) for k, v in values.items()),
            len(self.image_ids), seconds)
        logger.info(message)
        if self.verbose:
            print(message)

    def _write_csv(self, epoch, values, seconds):
        import csv
        import os
        path = self.csv_path or (self.log_dir and os.path.join(self.log_dir, self.CSV_NAME))
        if not path:
            return
        new = not os.path.exists(path) or os.path.getsize(path) == 0
        with open(path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["epoch"] + [k[4:] for k in values] + ["images", "seconds"])
            writer.writerow([epoch] + ["{:.6f}".format(v) for v in values.values()]
                            + [len(self.image_ids), "{:.1f}".format(seconds)])

    def _write_images(self, epoch):
        import os
        import tensorflow as tf
        ids = self.image_ids[:self.images]
        writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "validation"))
        with writer.as_default():
            for i, image_id in enumerate(ids):
                image = self.dataset.load_image(image_id)
                result = self.inference_model.detect([image], verbose=0)[0]
                tf.summary.image("predictions/{}".format(i),
                                 comparison_image(self.dataset, image_id, image, result)[None],
                                 step=epoch)
        writer.close()


def render_instances(image, boxes, masks, class_ids, num_classes):
    """A copy of ``image`` [H, W, 3] uint8 with each instance's mask
    blended in and its box outlined, coloured by class (the same colour for
    a class in every picture). boxes [N, 4] pixels, masks [H, W, N]."""
    from mrcnn import visualize
    out = np.array(image[..., :3], dtype=np.uint8, copy=True)
    colors = visualize.random_colors(max(int(num_classes), 2), seed=0)
    for i, class_id in enumerate(np.asarray(class_ids, np.int64)):
        color = colors[int(class_id) % len(colors)]
        visualize.apply_mask(out, masks[..., i], color, alpha=0.4)
        visualize.draw_box(out, boxes[i], [int(255 * c) for c in color[:3]])
    return out


def comparison_image(dataset, image_id, image, result):
    """[H, 2W + 4, 3] uint8: the image's ground truth (left) beside a
    ``detect()`` result (right), separated by a white band."""
    from mrcnn.boxes import extract_bboxes
    masks, class_ids = dataset.load_mask(image_id)
    keep = np.asarray(class_ids) > 0  # crowds (negative ids) are not drawn
    masks, class_ids = masks[..., keep], np.asarray(class_ids)[keep]
    truth = render_instances(image, extract_bboxes(masks), masks, class_ids,
                             dataset.num_classes)
    predicted = render_instances(image, result["rois"], result["masks"], result["class_ids"],
                                 dataset.num_classes)
    band = np.full((image.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([truth, band, predicted], axis=1)
