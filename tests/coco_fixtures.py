"""COCO-format test data shared by test_cocoformat.py and test_coco.py.

Expected masks are set by hand (pixel slices) and RLE counts are computed
here with a plain loop, independently of pycocotools."""
import json

import numpy as np
from PIL import Image
from pycocotools import mask as maskUtils

SIZE = 64
DOG, CAT = 3, 7          # COCO category ids in the files (not contiguous)
DOG_CLASS, CAT_CLASS = 1, 2   # their class ids after prepare() (sorted by id)


def rect(y1, x1, y2, x2, size=SIZE):
    """Mask with pixels [y1, y2) x [x1, x2) set."""
    m = np.zeros([size, size], dtype=bool)
    m[y1:y2, x1:x2] = True
    return m


def rect_polygon(y1, x1, y2, x2):
    """The polygon whose pixels are rect(y1, x1, y2, x2)."""
    return [x1, y1, x2, y1, x2, y2, x1, y2]


def uncompressed_rle(mask):
    """COCO uncompressed RLE: run lengths over the column-major pixels,
    starting with a run of zeros."""
    counts, current, run = [], 0, 0
    for value in mask.ravel(order="F"):
        if value != current:
            counts.append(run)
            current, run = value, 0
        run += 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


def write_png(path, value=0, size=SIZE):
    Image.fromarray(np.full([size, size, 3], value, dtype=np.uint8)).save(path)


# Hand-made masks of the fixture.
L_SHAPE = rect(10, 10, 20, 30) | rect(10, 10, 40, 20)
DOG_RLE_MASK = rect(40, 40, 50, 55)
CAT_BLOB = rect(50, 5, 60, 12)
CAT_BLOB[0, 63] = True
CROWD_MASK = rect(0, 30, 8, 60)
DOG_POLY_MASK = rect(5, 45, 15, 60)
B_CAT_MASK = rect(5, 5, 25, 25)


def fixture_json():
    """The custom dataset: 4 images (one missing on disk, one without
    annotations) and annotations covering every format and problem."""
    compressed = maskUtils.encode(np.asfortranarray(CAT_BLOB.astype(np.uint8)))
    compressed = {"size": [SIZE, SIZE], "counts": compressed["counts"].decode("ascii")}

    def ann(id, image_id, category_id, segmentation, **extra):
        return dict(id=id, image_id=image_id, category_id=category_id,
                    segmentation=segmentation, **extra)

    return {
        "images": [{"id": 101, "file_name": "a.png", "width": SIZE, "height": SIZE},
                   {"id": 202, "file_name": "b.png", "width": SIZE, "height": SIZE},
                   {"id": 303, "file_name": "missing.png", "width": SIZE, "height": SIZE},
                   {"id": 404, "file_name": "empty.png", "width": SIZE, "height": SIZE}],
        "categories": [{"id": CAT, "name": "cat"}, {"id": DOG, "name": "dog"}],
        "annotations": [
            ann(1, 101, CAT, [[10, 10, 30, 10, 30, 20, 20, 20, 20, 40, 10, 40]], iscrowd=0),
            ann(2, 101, DOG, uncompressed_rle(DOG_RLE_MASK)),
            ann(3, 101, CAT, compressed),
            ann(4, 101, DOG, uncompressed_rle(CROWD_MASK), iscrowd=1),
            ann(5, 101, CAT, [[1, 1, 5, 5]]),                       # 2 points only
            ann(6, 101, DOG, [rect_polygon(5, 45, 15, 60), [0, 0, 2, 2]]),
            ann(7, 101, 99, [rect_polygon(0, 0, 5, 5)]),            # unknown category
            ann(8, 101, CAT, []),                                   # empty
            ann(9, 101, CAT, [[33.1, 33.1, 33.3, 33.1, 33.3, 33.3]]),  # < 1 pixel
            ann(10, 202, CAT, [rect_polygon(5, 5, 25, 25)]),
            ann(11, 202, DOG, uncompressed_rle(np.ones([32, 32], bool)), iscrowd=1),
            ann(12, 303, CAT, [rect_polygon(1, 1, 9, 9)]),
            ann(13, 999, CAT, [rect_polygon(1, 1, 9, 9)]),          # unknown image
        ],
    }


# Ground truth of the evaluation set: image 1 has a cat and a dog, image 2 a
# cat; (y1, x1, y2, x2).
EVAL_GT = {1: [(CAT, (10, 10, 30, 30)), (DOG, (40, 40, 56, 60))],
           2: [(CAT, (5, 20, 29, 44))]}


def write_eval_set(folder):
    """Write EVAL_GT as ``folder/eval.json`` with its images (each image
    filled with its id, which tells images apart); returns the JSON path."""
    images, anns = [], []
    for image_id, objects in EVAL_GT.items():
        name = "img{}.png".format(image_id)
        write_png(folder / name, value=image_id)
        images.append({"id": image_id, "file_name": name, "width": SIZE, "height": SIZE})
        for category, box in objects:
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": category,
                         "segmentation": [rect_polygon(*box)], "iscrowd": 0})
    path = folder / "eval.json"
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": CAT, "name": "cat"},
                                               {"id": DOG, "name": "dog"}]}))
    return str(path)
