"""CocoEvaluationCallback (mrcnn.callbacks): the COCO figures it logs while
training equal evaluate_coco on the checkpoint of the same epoch; they reach
the History, the CSV beside the checkpoints and TensorBoard (with the
ground truth / prediction pictures); bad arguments are named."""
import csv
import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from pycocotools import mask as mask_utils

from mrcnn import model as modellib
from mrcnn.callbacks import CocoEvaluationCallback, comparison_image
from mrcnn.data.cocoformat import coco_from_dict, coco_stats, evaluate_coco
from tiny_models import TinyConfig, TinyInferenceConfig, shapes_dataset

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def shapes_coco(dataset):
    """The pycocotools ground truth of a shapes dataset: one annotation per
    instance (RLE of its mask), categories = the shapes' class ids."""
    images, annotations = [], []
    for image_id in dataset.image_ids:
        info = dataset.image_info[image_id]
        masks, class_ids = dataset.load_mask(image_id)
        images.append({"id": info["id"], "width": masks.shape[1], "height": masks.shape[0]})
        for i, class_id in enumerate(class_ids):
            rle = mask_utils.encode(np.asfortranarray(masks[..., i].astype(np.uint8)))
            x, y, w, h = mask_utils.toBbox(rle).tolist()
            rle["counts"] = rle["counts"].decode("ascii")
            annotations.append({"id": len(annotations) + 1, "image_id": info["id"],
                                "category_id": int(class_id), "segmentation": rle,
                                "area": float(mask_utils.area(rle)), "bbox": [x, y, w, h],
                                "iscrowd": 0})
    categories = [{"id": c["id"], "name": c["name"]} for c in dataset.class_info
                  if c["source"] == "shapes"]
    return coco_from_dict({"images": images, "annotations": annotations,
                           "categories": categories})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("coco_callback"))
    config = TinyConfig()
    config.STEPS_PER_EPOCH = 2
    train_set, val_set = shapes_dataset(4, seed=31), shapes_dataset(3, seed=32)
    coco = shapes_coco(val_set)
    inference = modellib.create_model("inference", TinyInferenceConfig(), model_dir)
    callback = CocoEvaluationCallback(inference, val_set, coco, every_n_epochs=2,
                                      class_source="shapes", images=2, verbose=0)
    model = modellib.create_model("training", config, model_dir)
    history = model.train(train_set, val_set, 0.01, epochs=4, layers="all", verbose=0,
                          custom_callbacks=[callback])
    return model, history, callback, val_set, coco


def test_logged_figures_equal_evaluate_coco_on_the_checkpoint(trained, tmp_path):
    model, history, callback, val_set, coco = trained
    names = ["val_bbox_AP", "val_bbox_AP50", "val_bbox_AP75",
             "val_segm_AP", "val_segm_AP50", "val_segm_AP75"]
    assert callback.names() == names
    assert [epoch for epoch, _ in callback.history] == [2, 4]
    for epoch, values in callback.history:
        assert list(values) == names
        infer = modellib.create_model("inference", TinyInferenceConfig(), str(tmp_path))
        infer.load_weights(os.path.join(model.log_dir, "mask_rcnn_tiny_{:04d}.h5".format(epoch)),
                           by_name=True)
        evaluations = evaluate_coco(infer, val_set, coco, eval_type="both", verbose=0,
                                    class_source="shapes")
        for eval_type in ("bbox", "segm"):
            stats = coco_stats(evaluations[eval_type])
            for metric in ("AP", "AP50", "AP75"):
                assert values["val_{}_{}".format(eval_type, metric)] == pytest.approx(
                    stats[metric], abs=1e-9), (epoch, eval_type, metric)
    # The History has them on the evaluated epochs (2 and 4 of 4).
    for name in names:
        assert len(history.history[name]) == 2
        assert history.history[name] == [values[name] for _, values in callback.history]


def test_csv_beside_the_checkpoints_and_tensorboard(trained):
    model, _, callback, _, _ = trained
    with open(os.path.join(model.log_dir, "coco_metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [2, 4]
    for row, (_, values) in zip(rows, callback.history):
        assert int(row["images"]) == 3
        for name, value in values.items():
            assert float(row[name[4:]]) == pytest.approx(value, abs=1e-6)
    # TensorBoard: the figures as epoch scalars and two pictures per
    # evaluation in the validation run.
    scalars, pictures = set(), []
    for path in glob.glob(os.path.join(model.log_dir, "validation", "events.out.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag.startswith("predictions/"):
                    pictures.append((event.step, value.tag))
                else:
                    scalars.add(value.tag)
    assert {"epoch_bbox_AP", "epoch_segm_AP50"} <= scalars
    assert sorted(pictures) == [(1, "predictions/0"), (1, "predictions/1"),
                                (3, "predictions/0"), (3, "predictions/1")]


def test_comparison_image_puts_the_truth_beside_the_predictions():
    dataset = shapes_dataset(1, seed=5)
    image = dataset.load_image(0)
    masks, class_ids = dataset.load_mask(0)
    nothing = {"rois": np.zeros((0, 4), np.int32), "class_ids": np.zeros((0,), np.int32),
               "masks": np.zeros(image.shape[:2] + (0,), bool)}
    picture = comparison_image(dataset, 0, image, nothing)
    width = image.shape[1]
    assert picture.shape == (image.shape[0], 2 * width + 4, 3) and picture.dtype == np.uint8
    np.testing.assert_array_equal(picture[:, width + 4:], image)   # no predictions drawn
    assert np.all(picture[:, width:width + 4] == 255)
    # Every ground-truth pixel is tinted on the left.
    inside = masks.any(axis=-1)
    assert np.any(picture[:, :width][inside] != image[inside], axis=-1).all()


def test_bad_arguments_are_named(tmp_path):
    dataset = shapes_dataset(2, seed=5)
    coco = shapes_coco(dataset)
    inference = modellib.create_model("inference", TinyInferenceConfig(), str(tmp_path))
    with pytest.raises(ValueError, match="eval_type must be 'bbox', 'segm', 'both'"):
        CocoEvaluationCallback(inference, dataset, coco, eval_type="masks")
    with pytest.raises(ValueError, match="every_n_epochs must be >= 1, got 0"):
        CocoEvaluationCallback(inference, dataset, coco, every_n_epochs=0)
    with pytest.raises(TypeError, match="needs the pycocotools COCO ground truth"):
        CocoEvaluationCallback(inference, dataset, "val.json")
    with pytest.raises(ValueError, match="has no images to evaluate"):
        CocoEvaluationCallback(inference, dataset, coco, image_ids=[])
    training = modellib.create_model("training", TinyConfig(), str(tmp_path))
    with pytest.raises(ValueError, match="needs an inference-mode model"):
        CocoEvaluationCallback(training, dataset, coco)
