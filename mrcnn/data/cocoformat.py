"""
Mask R-CNN
The COCO annotation and results formats: reading and checking annotation
files, instance masks of annotations, detections as COCO results, and the
official COCO evaluation (pycocotools).

Usable for any dataset in the COCO format; ``samples/coco.py`` builds its
``CocoDataset`` and evaluation on it::

    from mrcnn.data import cocoformat
    data = cocoformat.clean_coco_annotations(cocoformat.read_coco_json("train.json"))
    coco = cocoformat.coco_from_dict(data)      # pycocotools COCO of the checked data
    mask = cocoformat.ann_to_mask(data["annotations"][0], height, width)

Coordinates: polygons are ``[[x0, y0, x1, y1, ...], ...]`` in image pixels
(x to the right, y down); boxes in COCO files and results are
``[x, y, width, height]``; this package's boxes are ``[y1, x1, y2, x2]``
with ``y2, x2`` exclusive; RLE masks are column-major (pycocotools).

Datasets: functions that take a ``mrcnn.utils.Dataset`` need image_info
entries whose ``id`` is the COCO image id and classes of source
``class_source`` (default "coco") whose ids are the COCO category ids.

Bad input, handled deliberately (warnings go to the ``mrcnn.data.cocoformat``
logger, one message per kind of problem, naming the annotation ids):

* malformed JSON: ``CocoFormatError`` naming the file, line and column;
  missing ``images``/``categories``, images without ``id``, ``file_name``,
  ``width`` or ``height``, duplicate image ids, annotations without ``id``,
  ``image_id`` or ``category_id``: ``CocoFormatError``;
* a polygon with fewer than 3 points (fewer than 6 coordinates) or an odd
  number of coordinates is dropped with a warning (pycocotools reads a
  4-number polygon as a box and rejects shorter ones); an annotation left
  without any polygon is dropped like an empty one;
* an annotation with no or an empty segmentation is dropped with a warning
  (its box would make a rectangular mask and teach the mask head rectangles);
* an annotation whose category id is not in ``categories``, or whose image
  id is not in ``images``, is dropped with a warning naming the ids;
* a non-crowd RLE whose ``size`` differs from its image's is dropped with a
  warning;
* missing ``area``, ``bbox`` and ``iscrowd`` are computed from the mask
  (``iscrowd``: 0).

Differences from the original's ``samples/coco/coco.py``: ``evaluate_coco``
runs ``detect()`` on batches of ``BATCH_SIZE`` images, returns the
``COCOeval`` object (a dict of them for several types), evaluates only the
categories the dataset loaded, and evaluates masks with mask areas (the
original's results carried boxes, so pycocotools sized masks by their
boxes); ``build_coco_results`` returns JSON-serialisable values (RLE
``counts`` as str, plain ints and floats).
"""

import contextlib
import copy
import io
import json
import logging
import time

import numpy as np
from pycocotools import mask as maskUtils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

logger = logging.getLogger(__name__)

# Names of the 12 numbers of COCOeval.stats, in order.
STATS_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
               "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


class CocoFormatError(ValueError):
    """An annotation file is not valid JSON or not in the COCO format."""



############################################################
#  Reading and checking annotation files
############################################################

def ids_text(ids, limit=10):
    """'1, 2, 3' or '1, 2, ... (25 in all)'."""
    ids = list(ids)
    text = ", ".join(str(i) for i in ids[:limit])
    return text + (", ... ({} in all)".format(len(ids)) if len(ids) > limit else "")


def sorted_ids(values):
    """Sorted ids; mixed types (ints and strings) sort as text."""
    values = list(values)
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def read_coco_json(path):
    """Parse a COCO annotation file; returns the dict.

    Raises FileNotFoundError, or CocoFormatError naming the file and the
    position of a JSON syntax error, or saying what is missing.
    """
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise CocoFormatError("{} is not valid JSON: {} at line {} column {} (char {})".format(
            path, e.msg, e.lineno, e.colno, e.pos)) from e
    except UnicodeDecodeError as e:
        raise CocoFormatError("{} is not UTF-8 text: {}".format(path, e)) from e
    if not isinstance(data, dict):
        raise CocoFormatError("{}: expected a JSON object with 'images', 'annotations' and "
                              "'categories', got a {}".format(path, type(data).__name__))
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise CocoFormatError("{}: no '{}' list; a COCO annotation file has 'images', "
                                  "'annotations' and 'categories'".format(path, key))
    return data


def _polygon_ok(polygon):
    """A polygon part is a flat list of an even number >= 6 of coordinates."""
    return (isinstance(polygon, (list, tuple)) and len(polygon) >= 6 and len(polygon) % 2 == 0
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in polygon))


def _clean_segmentation(segm):
    """(segmentation without bad polygon parts, number of parts dropped);
    the segmentation is None when nothing usable is left."""
    if isinstance(segm, (list, tuple)):
        kept = [p for p in segm if _polygon_ok(p)]
        return (kept or None), len(segm) - len(kept)
    if isinstance(segm, dict) and "counts" in segm and "size" in segm:
        return segm, 0
    return None, 0


def clean_coco_annotations(data, source="annotations"):
    """Check and repair a parsed COCO dict (read_coco_json()) in place (see
    the module docstring for the rules); returns it. ``source`` names it in
    messages.

    Annotations that cannot be used are removed and reported in one warning
    per kind of problem; polygon parts with fewer than 3 points are removed
    from their annotation; missing ``iscrowd``, ``bbox`` and ``area`` are
    filled in. Raises CocoFormatError for broken image or category records.
    """
    images = {}
    for index, image in enumerate(data["images"]):
        missing = [k for k in ("id", "file_name", "width", "height")
                   if not isinstance(image, dict) or k not in image]
        if missing:
            raise CocoFormatError("{}: images[{}] has no {}".format(
                source, index, ", ".join(repr(k) for k in missing)))
        if image["id"] in images:
            raise CocoFormatError("{}: image id {} appears more than once".format(
                source, image["id"]))
        images[image["id"]] = image
    categories = set()
    for index, category in enumerate(data["categories"]):
        if not isinstance(category, dict) or "id" not in category or "name" not in category:
            raise CocoFormatError("{}: categories[{}] needs an 'id' and a 'name'".format(
                source, index))
        categories.add(category["id"])

    problems = {"unknown_category": [], "unknown_image": [], "degenerate": [],
                "empty": [], "rle_size": []}
    unknown_categories = {}
    kept = []
    for index, ann in enumerate(data.get("annotations") or []):
        missing = [k for k in ("id", "image_id", "category_id")
                   if not isinstance(ann, dict) or k not in ann]
        if missing:
            raise CocoFormatError("{}: annotations[{}] has no {}".format(
                source, index, ", ".join(repr(k) for k in missing)))
        ann_id = ann["id"]
        if ann["category_id"] not in categories:
            problems["unknown_category"].append(ann_id)
            unknown_categories.setdefault(ann["category_id"], 0)
            unknown_categories[ann["category_id"]] += 1
            continue
        image = images.get(ann["image_id"])
        if image is None:
            problems["unknown_image"].append(ann_id)
            continue
        segm, dropped = _clean_segmentation(ann.get("segmentation"))
        if dropped:
            problems["degenerate"].append(ann_id)
        if segm is None:
            problems["empty"].append(ann_id)
            continue
        ann["segmentation"] = segm
        ann["iscrowd"] = int(ann.get("iscrowd") or 0)
        if isinstance(segm, dict) and not ann["iscrowd"] \
                and list(segm["size"]) != [image["height"], image["width"]]:
            problems["rle_size"].append(ann_id)
            continue
        if "area" not in ann or "bbox" not in ann:
            rle = ann_to_rle(ann, image["height"], image["width"])
            ann.setdefault("area", float(maskUtils.area(rle)))
            ann.setdefault("bbox", [float(v) for v in maskUtils.toBbox(rle)])
        kept.append(ann)
    data["annotations"] = kept

    messages = {
        "unknown_category": "{} annotations with category ids not in 'categories' were "
                            "skipped ({}): annotation ids {}".format(
                                len(problems["unknown_category"]),
                                ", ".join("category {}: {}".format(c, n) for c, n in
                                          sorted_ids(unknown_categories.items())),
                                ids_text(problems["unknown_category"])),
        "unknown_image": "{} annotations of image ids not in 'images' were skipped: "
                         "annotation ids {}".format(len(problems["unknown_image"]),
                                                    ids_text(problems["unknown_image"])),
        "degenerate": "polygons with fewer than 3 points (or an odd number of coordinates) "
                      "were dropped from annotations {}".format(
                          ids_text(problems["degenerate"])),
        "empty": "{} annotations without a usable segmentation were skipped: annotation "
                 "ids {}".format(len(problems["empty"]), ids_text(problems["empty"])),
        "rle_size": "{} RLE annotations whose size differs from their image's were skipped: "
                    "annotation ids {}".format(len(problems["rle_size"]),
                                               ids_text(problems["rle_size"])),
    }
    for kind, ids in problems.items():
        if ids:
            logger.warning("%s: %s", source, messages[kind])
    return data


def coco_from_dict(data):
    """A pycocotools COCO object indexing ``data`` (a parsed, checked
    annotation dict), without reading a file."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


############################################################
#  Masks
############################################################

def ann_to_rle(ann, height, width):
    """Convert an annotation's segmentation (polygons, uncompressed RLE or
    compressed RLE) to one compressed RLE dict.

    ann: a COCO annotation dict; height, width: its image's size in pixels.
    Polygons are ``[[x0, y0, x1, y1, ...], ...]`` in pixel coordinates (x to
    the right, y down); parts are merged into one mask. Polygon parts with
    fewer than 3 points are dropped with a warning; nothing left raises
    ValueError naming the annotation. An RLE keeps its own ``size`` (crowd
    regions in COCO 2014 can be smaller than their image).
    """
    segm, dropped = _clean_segmentation(ann.get("segmentation"))
    if dropped:
        logger.warning("annotation %s: dropped %d polygons with fewer than 3 points",
                       ann.get("id"), dropped)
    if segm is None:
        raise ValueError("annotation {} has no usable segmentation: {!r}".format(
            ann.get("id"), ann.get("segmentation")))
    if isinstance(segm, list):
        # A single object can consist of several polygons: merge them.
        return maskUtils.merge(maskUtils.frPyObjects(segm, height, width))
    if isinstance(segm["counts"], list):
        # Uncompressed RLE (column-major run lengths, starting with zeros)
        return maskUtils.frPyObjects(segm, height, width)
    return segm


def ann_to_mask(ann, height, width):
    """Binary mask of an annotation: [height, width] uint8, 1 inside (an
    RLE of another size keeps its own size). Raises ValueError as
    ann_to_rle."""
    return maskUtils.decode(ann_to_rle(ann, height, width))


############################################################
#  Results and evaluation
############################################################

def build_coco_results(dataset, image_ids, rois, class_ids, scores, masks,
                       class_source="coco"):
    """Arrange detections in the COCO results format
    (http://cocodataset.org/#format-results).

    image_ids: the COCO image id of the detections (one id, or a list with
        one id), or a list of ids with rois, class_ids, scores and masks
        lists holding one entry per image.
    rois: [N, (y1, x1, y2, x2)] boxes in image pixels, y2/x2 exclusive.
    class_ids: [N] class ids of ``dataset`` (of its classes of source
        ``class_source``, whose ids are the COCO category ids); scores: [N].
    masks: [height, width, N] bool or uint8 masks, or None (boxes only).

    Returns a list of dicts with ``image_id``, ``category_id`` (the COCO
    category id), ``bbox`` ``[x, y, width, height]``, ``score`` and
    ``segmentation`` (compressed RLE with str ``counts``); plain Python
    types, so ``json.dumps`` works.
    """
    # If no results, return an empty list
    if rois is None:
        return []
    if np.ndim(image_ids) == 0:
        image_ids = [image_ids]
    image_ids = list(image_ids)
    if len(image_ids) == 1 and not isinstance(rois, (list, tuple)):
        rois, class_ids, scores, masks = [rois], [class_ids], [scores], [masks]
    if not len(image_ids) == len(rois) == len(class_ids) == len(scores):
        raise ValueError("build_coco_results: {} image ids need as many rois, class_ids and "
                         "scores arrays (one per image), got {}, {}, {}".format(
                             len(image_ids), len(rois), len(class_ids), len(scores)))
    masks = masks if masks is not None else [None] * len(image_ids)

    results = []
    for image_id, image_rois, image_classes, image_scores, image_masks in zip(
            image_ids, rois, class_ids, scores, masks):
        image_rois = np.asarray(image_rois, dtype=np.float64).reshape(-1, 4)
        for i in range(image_rois.shape[0]):
            y1, x1, y2, x2 = (float(v) for v in np.around(image_rois[i], 1))
            result = {
                "image_id": image_id.item() if isinstance(image_id, np.generic) else image_id,
                "category_id": int(dataset.get_source_class_id(int(image_classes[i]),
                                                            class_source)),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": float(image_scores[i]),
            }
            if image_masks is not None:
                rle = maskUtils.encode(np.asfortranarray(
                    np.asarray(image_masks)[:, :, i].astype(np.uint8)))
                result["segmentation"] = {"size": [int(v) for v in rle["size"]],
                                          "counts": rle["counts"].decode("ascii")}
            results.append(result)
    return results


def detect_coco_results(model, dataset, image_ids, verbose=1, class_source="coco"):
    """Run ``model.detect`` on the images ``image_ids`` of ``dataset`` in
    batches of ``model.config.BATCH_SIZE``, with a progress bar (count and
    time estimate) when ``verbose``; returns build_coco_results() dicts for
    all of them. Raises ValueError when detect() returns another
    number of results than images."""
    from mrcnn.progress import progress_bar
    batch = max(1, int(model.config.BATCH_SIZE))
    t_prediction = 0.0
    t_start = time.time()
    results = []
    bar = progress_bar(len(image_ids), "image", verbose)
    for start in range(0, len(image_ids), batch):
        chunk = list(image_ids[start:start + batch])
        images = [dataset.load_image(image_id) for image_id in chunk]
        t = time.time()
        detections = model.detect(images, verbose=0)
        t_prediction += time.time() - t
        if len(detections) != len(chunk):
            raise ValueError("detect() returned {} results for {} images".format(
                len(detections), len(chunk)))
        for image_id, r in zip(chunk, detections):
            results.extend(build_coco_results(
                dataset, [dataset.image_info[image_id]["id"]], r["rois"], r["class_ids"],
                r["scores"], r["masks"], class_source))
        bar.add(len(chunk))
    if verbose and image_ids:
        print("Prediction time: {:.2f} s. Average {:.3f} s/image".format(
            t_prediction, t_prediction / len(image_ids)))
        print("Total time: {:.2f} s".format(time.time() - t_start))
    return results


def _eval_types(eval_type):
    types = ["bbox", "segm"] if eval_type == "both" else (
        [eval_type] if isinstance(eval_type, str) else list(eval_type))
    for t in types:
        if t not in ("bbox", "segm"):
            raise ValueError("eval_type must be 'bbox', 'segm', 'both' or a list of them, "
                             "got {!r}".format(eval_type))
    return types


def _coco_eval(coco, results, eval_type, coco_image_ids, category_ids, verbose):
    """COCOeval of ``results`` against ``coco`` for one eval type."""
    detections = copy.deepcopy(results)  # loadRes adds fields to the dicts
    for d in detections:
        if eval_type == "segm":
            if "segmentation" not in d:
                raise ValueError("segm evaluation needs masks in the results")
            # Without a box pycocotools sizes a mask by its own area.
            d.pop("bbox", None)
        else:
            d.pop("segmentation", None)
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        if detections:
            coco_results = coco.loadRes(detections)
        else:  # loadRes cannot take an empty list
            coco_results = coco_from_dict({"images": list(coco.dataset["images"]),
                                           "categories": list(coco.dataset["categories"]),
                                           "annotations": []})
        evaluation = COCOeval(coco, coco_results, eval_type)
        evaluation.params.imgIds = list(coco_image_ids)
        if category_ids:
            evaluation.params.catIds = sorted(category_ids)
        evaluation.evaluate()
        evaluation.accumulate()
        if verbose:
            print("COCO {} evaluation on {} images:".format(eval_type, len(coco_image_ids)))
        evaluation.summarize()
    return evaluation


def evaluate_coco(model, dataset, coco, eval_type="bbox", limit=0, image_ids=None,
                  results=None, verbose=1, class_source="coco"):
    """Runs official COCO evaluation.

    model: anything with ``config.BATCH_SIZE`` and ``detect(images,
        verbose=0)`` returning the detect() dicts (rois, class_ids, scores,
        masks in original-image pixels).
    dataset: A Dataset object with validation data (classes and images of
        source ``class_source``, see the module docstring).
    coco: the pycocotools COCO ground truth (coco_from_dict() of the checked
        annotations; the sample's load_coco(return_coco=True)).
    eval_type: "bbox" or "segm" for bounding box or segmentation
        evaluation, or "both" (or a list of them).
    limit: if not 0, it's the number of images to use for evaluation.
    image_ids: dataset image ids to evaluate (default: all).
    results: build_coco_results() dicts computed before; model is not run.
    verbose: 0 silences pycocotools' output and the timings.

    Returns the COCOeval object (``.stats`` holds the 12 numbers named in
    STATS_NAMES) or, for several eval types, a dict of them by type.
    Only categories the dataset loaded are evaluated. Raises ValueError for
    an unknown eval_type and for "segm" with results without masks.
    """
    types = _eval_types(eval_type)
    image_ids = list(dataset.image_ids if image_ids is None else image_ids)
    if limit:
        image_ids = image_ids[:limit]
    coco_image_ids = [dataset.image_info[i]["id"] for i in image_ids]
    if results is None:
        results = detect_coco_results(model, dataset, image_ids, verbose, class_source)
    category_ids = [info["id"] for info in dataset.class_info
                    if info["source"] == class_source]
    evaluations = {t: _coco_eval(coco, results, t, coco_image_ids, category_ids, verbose)
                   for t in types}
    if isinstance(eval_type, str) and eval_type != "both":
        return evaluations[eval_type]
    return evaluations


def coco_stats(evaluation):
    """{"AP": ..., "AP50": ..., ...} from an evaluated COCOeval."""
    return {name: float(value) for name, value in zip(STATS_NAMES, evaluation.stats)}

