"""
Evaluation during training: mean average precision of a model on a
validation subset, and a Keras callback that reports it every N epochs in
the progress bar, the History and TensorBoard (as ``val_mAP``).

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
    backbone, classes and head sizes); its batch size may differ.
    """

    def __init__(self, inference_model, dataset, every_n_epochs=1, limit=None,
                 image_ids=None, iou_threshold=0.5, log_name="val_mAP", verbose=1):
        super().__init__()
        if getattr(inference_model, "mode", "inference") != "inference":
            raise ValueError("MeanAveragePrecisionCallback needs an inference-mode model, "
                             "got one in {!r} mode".format(inference_model.mode))
        if int(every_n_epochs) < 1:
            raise ValueError("every_n_epochs must be >= 1, got {}".format(every_n_epochs))
        self.inference_model = inference_model
        self.dataset = dataset
        self.every_n_epochs = int(every_n_epochs)
        ids = list(dataset.image_ids if image_ids is None else image_ids)
        self.image_ids = ids[:limit] if limit else ids
        if not self.image_ids:
            raise ValueError("MeanAveragePrecisionCallback has no images to evaluate: "
                             "the dataset (or image_ids) is empty")
        self.iou_threshold = float(iou_threshold)
        self.log_name = log_name
        self.verbose = verbose
        self.history = []

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
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
