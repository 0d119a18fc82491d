"""Tests for mrcnn.cocoformat: reading and checking COCO annotation files,
masks of annotations, detections in the COCO results format and the COCO
evaluation against hand-worked AP values, with a stand-in model.

The datasets here are plain ``utils.Dataset`` objects built from the
module's functions alone (no sample code)."""
import json
import re
import logging
import os

import numpy as np
import pytest
from pycocotools import mask as maskUtils

from coco_fixtures import (CAT, CAT_BLOB, CAT_CLASS, DOG, DOG_CLASS, DOG_POLY_MASK,
                           DOG_RLE_MASK, EVAL_GT, L_SHAPE, SIZE, fixture_json, rect,
                           rect_polygon, write_eval_set)
from mrcnn import utils
from mrcnn.data import cocoformat

# pycocotools' decode() trips a NumPy 2 deprecation warning on every call.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def write_json(folder, data):
    path = folder / "annotations.json"
    path.write_text(json.dumps(data))
    return str(path)


def dataset_from_json(path, class_ids=None, class_source="coco"):
    """(prepared Dataset, COCO ground truth) of a COCO-format file: the
    categories (all, or ``class_ids``) in id order as classes of
    ``class_source``, and the images with an annotation of them."""
    data = cocoformat.clean_coco_annotations(cocoformat.read_coco_json(path), path)
    names = {c["id"]: c["name"] for c in data["categories"]
             if class_ids is None or c["id"] in class_ids}
    annotated = {a["image_id"] for a in data["annotations"] if a["category_id"] in names}
    dataset = utils.Dataset()
    for category_id in sorted(names):
        dataset.add_class(class_source, category_id, names[category_id])
    for image in data["images"]:
        if image["id"] in annotated:
            dataset.add_image(class_source, image["id"],
                              os.path.join(os.path.dirname(path), image["file_name"]))
    dataset.prepare()
    return dataset, cocoformat.coco_from_dict(data)


# ---------------------------------------------------------------------------
# Reading and checking annotation files
# ---------------------------------------------------------------------------

def test_malformed_json_names_file_and_position(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"images": [1, 2,, 3]}')
    with pytest.raises(cocoformat.CocoFormatError) as e:
        cocoformat.read_coco_json(str(path))
    assert str(path) in str(e.value) and "line 1 column 18" in str(e.value)
    with pytest.raises(FileNotFoundError):
        cocoformat.read_coco_json(str(tmp_path / "nothere.json"))


@pytest.mark.parametrize("data, message", [
    ([], "expected a JSON object"),
    ({"images": []}, "no 'categories' list"),
    ({"images": [{"id": 1, "file_name": "a.png", "width": 4}], "categories": []},
     "images\\[0\\] has no 'height'"),
    ({"images": [{"id": 1, "file_name": "a", "width": 4, "height": 4}] * 2,
      "categories": []}, "image id 1 appears more than once"),
    ({"images": [], "categories": [], "annotations": [{"image_id": 1, "category_id": 1}]},
     "annotations\\[0\\] has no 'id'"),
])
def test_bad_structure(tmp_path, data, message):
    path = write_json(tmp_path, data)
    with pytest.raises(cocoformat.CocoFormatError, match=message):
        cocoformat.clean_coco_annotations(cocoformat.read_coco_json(path), path)


def test_clean_coco_annotations_drops_repairs_and_reports(caplog):
    with caplog.at_level(logging.WARNING, logger="mrcnn.data.cocoformat"):
        data = cocoformat.clean_coco_annotations(fixture_json(), "fixture.json")
    kept = {a["id"]: a for a in data["annotations"]}
    # 5 (2 points), 7 (unknown category), 8 (empty), 13 (unknown image) go.
    assert sorted(kept) == [1, 2, 3, 4, 6, 9, 10, 11, 12]
    assert kept[6]["segmentation"] == [rect_polygon(5, 45, 15, 60)]
    assert kept[2]["iscrowd"] == 0 and kept[4]["iscrowd"] == 1
    assert kept[1]["area"] == L_SHAPE.sum() and kept[2]["area"] == DOG_RLE_MASK.sum()
    assert kept[10]["bbox"] == [5.0, 5.0, 20.0, 20.0]
    messages = [r.getMessage() for r in caplog.records]
    assert all(m.startswith("fixture.json: ") for m in messages) and len(messages) == 4
    # A non-crowd RLE of another size than its image is dropped too.
    data = fixture_json()
    data["annotations"] = [dict(data["annotations"][1], segmentation={
        "size": [32, 32], "counts": [0, 1024]})]
    with caplog.at_level(logging.WARNING, logger="mrcnn.data.cocoformat"):
        assert cocoformat.clean_coco_annotations(data)["annotations"] == []
    assert "size differs from their image's" in caplog.records[-1].getMessage()


def test_ids_text_and_sorted_ids():
    assert cocoformat.ids_text([3, 1, 2]) == "3, 1, 2"
    assert cocoformat.ids_text(range(25)) == "0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ... (25 in all)"
    assert cocoformat.sorted_ids([3, 1, 2]) == [1, 2, 3]
    assert cocoformat.sorted_ids([10, "9", 1]) == [1, 10, "9"]


# ---------------------------------------------------------------------------
# ann_to_mask / ann_to_rle
# ---------------------------------------------------------------------------

def test_ann_to_mask_three_formats_and_bad_polygons():
    anns = {a["id"]: a for a in fixture_json()["annotations"]}
    for ann_id, expected in [(1, L_SHAPE), (2, DOG_RLE_MASK), (3, CAT_BLOB)]:
        m = cocoformat.ann_to_mask(anns[ann_id], SIZE, SIZE)
        assert m.shape == (SIZE, SIZE) and m.dtype == np.uint8
        np.testing.assert_array_equal(m.astype(bool), expected, err_msg=str(ann_id))
        rle = cocoformat.ann_to_rle(anns[ann_id], SIZE, SIZE)
        assert maskUtils.area(rle) == expected.sum()
    # A 2-point part would be read as a box by pycocotools: it is dropped.
    np.testing.assert_array_equal(cocoformat.ann_to_mask(anns[6], SIZE, SIZE).astype(bool),
                                  DOG_POLY_MASK)
    for segmentation in ([[1, 1, 5, 5]], [], [[1, 2, 3, 4, 5, 6, 7]], None):
        with pytest.raises(ValueError, match="annotation 77 has no usable segmentation"):
            cocoformat.ann_to_mask({"id": 77, "segmentation": segmentation}, SIZE, SIZE)
    # A crowd RLE keeps its own size.
    assert cocoformat.ann_to_mask(anns[11], SIZE, SIZE).shape == (32, 32)


# ---------------------------------------------------------------------------
# build_coco_results
# ---------------------------------------------------------------------------

def test_build_coco_results_round_trip(tmp_path):
    dataset, _ = dataset_from_json(write_json(tmp_path, fixture_json()))
    masks = np.stack([rect(3, 4, 13, 24), L_SHAPE], axis=-1)
    rois = np.array([[3, 4, 13, 24], [10, 10, 40, 30]], dtype=np.int32)
    results = cocoformat.build_coco_results(dataset, [101], rois,
                                            np.array([CAT_CLASS, DOG_CLASS], np.int32),
                                            np.array([0.9, 0.25], np.float32),
                                            masks.astype(np.uint8))
    results = json.loads(json.dumps(results))       # serialisable
    assert [r["image_id"] for r in results] == [101, 101]
    assert [r["category_id"] for r in results] == [CAT, DOG]
    assert results[0]["bbox"] == [4.0, 3.0, 20.0, 10.0]       # x, y, w, h
    assert results[1]["bbox"] == [10.0, 10.0, 20.0, 30.0]
    assert results[0]["score"] == pytest.approx(0.9) and isinstance(results[1]["score"], float)
    for i, r in enumerate(results):
        assert isinstance(r["segmentation"]["counts"], str)
        np.testing.assert_array_equal(maskUtils.decode(r["segmentation"]).astype(bool),
                                      masks[:, :, i])
    # Several images at once (lists), boxes only, and no detections.
    two = cocoformat.build_coco_results(dataset, [101, 202], [rois[:1], rois[1:]],
                                        [[CAT_CLASS], [DOG_CLASS]], [[0.5], [0.4]], None)
    assert [(r["image_id"], r["category_id"]) for r in two] == [(101, CAT), (202, DOG)]
    assert "segmentation" not in two[0]
    assert cocoformat.build_coco_results(dataset, [101], np.zeros([0, 4]), np.zeros([0]),
                                         np.zeros([0]), np.zeros([SIZE, SIZE, 0])) == []
    assert cocoformat.build_coco_results(dataset, [101], None, None, None, None) == []


# ---------------------------------------------------------------------------
# evaluate_coco with a stand-in model
# ---------------------------------------------------------------------------

@pytest.fixture
def eval_set(tmp_path):
    return dataset_from_json(write_eval_set(tmp_path))


class FakeConfig:
    BATCH_SIZE = 2


class FakeModel:
    """detect() returns fixed detections per image: {image value: [(category
    id, box, score)]}, with masks equal to the boxes."""

    def __init__(self, dataset, detections, batch_size=2):
        self.config = FakeConfig()
        self.config.BATCH_SIZE = batch_size
        self.dataset = dataset
        self.detections = detections
        self.calls = []

    def detect(self, images, verbose=0):
        self.calls.append(len(images))
        out = []
        for image in images:
            found = self.detections.get(int(image[0, 0, 0]), [])
            out.append({
                "rois": np.array([box for _, box, _ in found], np.int32).reshape(-1, 4),
                "class_ids": np.array([self.dataset.map_source_class_id("coco.{}".format(c))
                                       for c, _, _ in found], np.int32),
                "scores": np.array([s for _, _, s in found], np.float32),
                "masks": np.stack([rect(*box) for _, box, _ in found] or
                                  [np.zeros([SIZE, SIZE], bool)], axis=-1)[:, :, :len(found)],
            })
        return out


def test_evaluate_perfect_detections(eval_set):
    dataset, gt = eval_set
    perfect = {i: [(c, box, 0.9) for c, box in objects] for i, objects in EVAL_GT.items()}
    model = FakeModel(dataset, perfect)
    evaluations = cocoformat.evaluate_coco(model, dataset, gt, eval_type="both", verbose=0)
    assert model.calls == [2]                      # one batch of BATCH_SIZE images
    for eval_type in ("bbox", "segm"):
        stats = cocoformat.coco_stats(evaluations[eval_type])
        assert stats["AP"] == pytest.approx(1.0) and stats["AP50"] == pytest.approx(1.0)
        assert stats["AR100"] == pytest.approx(1.0)
        assert stats["APl"] == -1                  # no large objects


def test_evaluate_shows_a_progress_bar_only_when_verbose(eval_set, capsys):
    dataset, gt = eval_set
    model = FakeModel(dataset, {}, batch_size=1)
    cocoformat.evaluate_coco(model, dataset, gt, eval_type="bbox", verbose=0)
    assert capsys.readouterr().out == ""
    cocoformat.evaluate_coco(model, dataset, gt, eval_type="bbox", verbose=1)
    out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)  # Keras' colours
    # Keras' Progbar: the count of images and the time per image.
    assert re.search(r"2/2 .*/image", out), out
    assert "Prediction time" in out


def test_evaluate_missed_and_false_detections(eval_set):
    """cat: 2 objects, one found (score 0.9): precision 1 up to recall 0.5,
    i.e. 51 of COCO's 101 recall points -> AP 51/101. dog: a false positive
    (0.95) ranked above the true one (0.8): precision 0.5 at every recall
    -> AP 0.5. Every IoU threshold gives the same (exact boxes)."""
    dataset, gt = eval_set
    detections = {1: [(CAT, (10, 10, 30, 30), 0.9), (DOG, (40, 40, 56, 60), 0.8),
                      (DOG, (0, 0, 8, 8), 0.95)]}
    model = FakeModel(dataset, detections, batch_size=1)
    expected_ap = (51 / 101 + 0.5) / 2
    expected_ar = (0.5 + 1.0) / 2
    for eval_type in ("bbox", "segm"):
        evaluation = cocoformat.evaluate_coco(model, dataset, gt, eval_type=eval_type, verbose=0)
        assert evaluation.params.catIds == [DOG, CAT]
        stats = cocoformat.coco_stats(evaluation)
        assert stats["AP"] == pytest.approx(expected_ap)
        assert stats["AP75"] == pytest.approx(expected_ap)
        assert stats["AR100"] == pytest.approx(expected_ar)
    assert model.calls == [1, 1, 1, 1]             # batches of 1, two evaluations
    # limit: only image 1 (its cat found, dog as above).
    one = cocoformat.evaluate_coco(model, dataset, gt, "bbox", limit=1, verbose=0)
    assert one.params.imgIds == [1]
    assert one.stats[0] == pytest.approx((1.0 + 0.5) / 2)


def test_evaluate_only_the_loaded_categories(tmp_path):
    """A dataset of cats only is scored on cats: perfect cat detections give
    AP 1 although the file also has a dog (which would count 0 otherwise)."""
    dataset, gt = dataset_from_json(write_eval_set(tmp_path), class_ids=[CAT])
    cats = {i: [(c, box, 0.9) for c, box in objects if c == CAT]
            for i, objects in EVAL_GT.items()}
    evaluation = cocoformat.evaluate_coco(FakeModel(dataset, cats), dataset, gt, "bbox", verbose=0)
    assert evaluation.params.catIds == [CAT]
    assert evaluation.stats[0] == pytest.approx(1.0)


def test_evaluate_without_detections_and_precomputed_results(eval_set):
    dataset, gt = eval_set
    model = FakeModel(dataset, {})
    assert cocoformat.evaluate_coco(model, dataset, gt, "segm", verbose=0).stats[0] == 0
    results = cocoformat.build_coco_results(dataset, [2], np.array([[5, 20, 29, 44]]),
                                            [CAT_CLASS], [0.7], None)
    evaluation = cocoformat.evaluate_coco(None, dataset, gt, "bbox", image_ids=[1],
                                          results=results, verbose=0)
    assert evaluation.params.imgIds == [2]         # dataset image id 1 is COCO id 2
    assert evaluation.stats[0] == pytest.approx(1.0)   # dog has no gt there: cat only
    with pytest.raises(ValueError, match="eval_type"):
        cocoformat.evaluate_coco(None, dataset, gt, "keypoints", results=results, verbose=0)
    with pytest.raises(ValueError, match="needs masks"):
        cocoformat.evaluate_coco(None, dataset, gt, "segm", results=results, verbose=0)


def test_other_class_source(tmp_path):
    """Datasets whose COCO classes have another source name work with
    class_source; category ids come from that source's classes."""
    dataset, gt = dataset_from_json(write_eval_set(tmp_path), class_source="mine")
    results = cocoformat.build_coco_results(
        dataset, [1, 2], [np.array([[10, 10, 30, 30], [40, 40, 56, 60]]),
                          np.array([[5, 20, 29, 44]])],
        [[CAT_CLASS, DOG_CLASS], [CAT_CLASS]], [[0.9, 0.8], [0.7]], None, class_source="mine")
    assert [r["category_id"] for r in results] == [CAT, DOG, CAT]
    evaluation = cocoformat.evaluate_coco(None, dataset, gt, "bbox", results=results,
                                          verbose=0, class_source="mine")
    assert evaluation.params.catIds == [DOG, CAT]
    assert evaluation.stats[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="belongs to source 'mine', not 'coco'"):
        cocoformat.build_coco_results(dataset, [1], np.array([[0, 0, 4, 4]]), [CAT_CLASS],
                                      [0.5], None)
