"""Tests for mrcnn.via: VIA 1.x and 2.x annotation files, shape
rasterisation against independently computed masks, region classes,
unknown shapes and malformed regions. No image files are needed: the
module reads JSON and rasterises at a given size."""
import json
import os

import numpy as np
import pytest

from mrcnn.data import via
from via_fixtures import (CIRCLE, ELLIPSE, H, INNER_RECT, OVERHANG, RECT, TRIANGLE, W,
                          ellipse_raster, pixel_centres, polygon, polygon_raster, region,
                          write_via1, write_via2_project)


def parse(folder, entries, writer=write_via1, **kwargs):
    """Write ``entries`` with ``writer`` into ``folder`` and read them back."""
    writer(str(folder), entries)
    return via.load_via_annotations(via.find_annotation_file(str(folder)), **kwargs)


def masks_of(annotations, index=0):
    """[H, W, N] masks of the index-th image's shapes."""
    return via.shapes_to_masks(annotations.images[index][1], H, W)


# ---------------------------------------------------------------------------
# VIA 1.x
# ---------------------------------------------------------------------------

def test_via1_polygons_clipping_and_images_without_regions(tmp_path):
    annotations = parse(tmp_path, [
        ("a.jpg", [region(polygon(*TRIANGLE)), region(polygon(*OVERHANG))]),
        ("unannotated.jpg", []),
        ("b.jpg", [region(polygon([2.5, 20.5, 20.5, 2.5], [30.5, 30.5, 47.5, 47.5]))])])
    # No class attribute: one class, named default_class.
    assert annotations.class_attribute is None
    assert annotations.class_names == ["object"]
    # VIA keeps images without regions; they are skipped.
    assert [filename for filename, _, _ in annotations.images] == ["a.jpg", "b.jpg"]
    assert annotations.images[0][2] == [1, 1]

    masks = masks_of(annotations)
    assert masks.dtype == bool and masks.shape == (H, W, 2)
    np.testing.assert_array_equal(masks[:, :, 0], polygon_raster(*TRIANGLE))
    overhang = polygon_raster(*OVERHANG)
    assert overhang[0].any() and overhang[:, -1].any()  # really clipped at two borders
    np.testing.assert_array_equal(masks[:, :, 1], overhang)
    assert via.shapes_to_masks([], H, W).shape == (H, W, 0)


def test_via1_region_classes_from_name_attribute(tmp_path):
    annotations = parse(tmp_path, [("a.png", [region(polygon(*TRIANGLE), name="duck"),
                                              region(polygon(*OVERHANG), name="balloon")])])
    assert annotations.class_attribute == "name"
    assert annotations.class_names == ["balloon", "duck"]  # sorted names
    assert annotations.images[0][2] == [2, 1]


# ---------------------------------------------------------------------------
# VIA 2.x: every area shape, classes, checkbox values
# ---------------------------------------------------------------------------

def test_via2_project_shapes_and_classes(tmp_path):
    annotations = parse(tmp_path, [("a.png", [
        region(RECT, **{"class": "cat"}),
        region(CIRCLE, **{"class": "dog"}),
        region(ELLIPSE, **{"class": {"dog": True, "cat": False}}),
        region(polygon(*TRIANGLE), **{"class": "cat"}),
        region(INNER_RECT, **{"class": "dog"})])], writer=write_via2_project)
    assert annotations.class_attribute == "class"
    assert annotations.class_names == ["cat", "dog"]
    assert annotations.images[0][2] == [1, 2, 2, 1, 2]
    masks = masks_of(annotations)

    rect = np.zeros([H, W], bool)
    rect[40:48, 50:64] = True  # 30x20 from (x=50, y=40), clipped at 48x64
    np.testing.assert_array_equal(masks[:, :, 0], rect)

    rows, cols = pixel_centres()
    np.testing.assert_array_equal(masks[:, :, 1], np.hypot(rows - 24, cols - 20) < 7.3)

    np.testing.assert_array_equal(masks[:, :, 2], ellipse_raster(32, 24, 12.4, 3.2, np.pi / 4))
    # theta turns the long axis clockwise on screen: down-right, not up-right.
    assert masks[24 + 6, 32 + 6, 2] and not masks[24 - 6, 32 + 6, 2]

    np.testing.assert_array_equal(masks[:, :, 3], polygon_raster(*TRIANGLE))

    inner = np.zeros([H, W], bool)
    inner[30:34, 3:8] = True  # exactly width x height pixels
    np.testing.assert_array_equal(masks[:, :, 4], inner)


def test_via2_exported_annotations_with_region_lists(tmp_path):
    """The VIA 2.x annotation export: VIA 1.x's layout with regions as a list."""
    def write(folder, entries):
        data = {f + "1": {"filename": f, "size": 1, "regions": r, "file_attributes": {}}
                for f, r in entries}
        with open(os.path.join(folder, "via_region_data.json"), "w") as f:
            json.dump(data, f)
    annotations = parse(tmp_path, [("a.png", [region(CIRCLE), region(polygon(*TRIANGLE))])],
                        writer=write)
    masks = masks_of(annotations)
    assert masks.shape == (H, W, 2)
    np.testing.assert_array_equal(masks[:, :, 1], polygon_raster(*TRIANGLE))


def test_given_class_names_fix_the_ids(tmp_path):
    entries = [("b.png", [region(CIRCLE, label="dog")])]
    annotations = parse(tmp_path, entries, class_names=["cat", "dog"])
    assert annotations.class_names == ["cat", "dog"] and annotations.images[0][2] == [2]
    # A class that the given names do not have is an error.
    with pytest.raises(ValueError, match="emu"):
        parse(tmp_path, [("b.png", [region(CIRCLE, label="emu")])], class_names=["cat", "dog"])


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------

def test_unknown_shapes_are_skipped_with_a_warning(tmp_path):
    entries = [("a.png", [region(polygon(*TRIANGLE)),
                          region({"name": "polyline", "all_points_x": [1, 9],
                                  "all_points_y": [1, 9]}),
                          region(CIRCLE)]),
               ("b.png", [region({"name": "point", "cx": 3, "cy": 4})])]
    with pytest.warns(UserWarning) as record:
        annotations = parse(tmp_path, entries)
    messages = [str(w.message) for w in record]
    assert any("region 1 of 'a.png'" in m and "polyline" in m for m in messages)
    assert any("region 0 of 'b.png'" in m and "point" in m for m in messages)
    # b.png has no area region left and is skipped; a.png keeps two regions.
    assert [filename for filename, _, _ in annotations.images] == ["a.png"]
    masks = masks_of(annotations)
    np.testing.assert_array_equal(masks[:, :, 0], polygon_raster(*TRIANGLE))
    assert masks.shape[-1] == 2
    # Nothing with an area at all is an error.
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="No image with"):
        parse(tmp_path, entries[1:])


def test_region_without_class_when_others_have_one(tmp_path):
    entries = [("a.png", [region(polygon(*TRIANGLE), name="cat"), region(CIRCLE, name="")])]
    with pytest.raises(ValueError, match=r"region 1 of 'a.png'.*'name'"):
        parse(tmp_path, entries)
    # Turning class names off gives one class.
    annotations = parse(tmp_path, entries, class_attribute=None, default_class="balloon")
    assert annotations.class_names == ["balloon"]


def test_malformed_regions_and_files(tmp_path):
    with pytest.raises(ValueError, match="region 0 of 'a.png'.*same length"):
        parse(tmp_path, [("a.png", [region({"name": "polygon", "all_points_x": [1, 2, 3],
                                            "all_points_y": [1, 2]})])])
    with pytest.raises(ValueError, match="circle without cy, r"):
        parse(tmp_path, [("a.png", [region({"name": "circle", "cx": 3})])])
    with pytest.raises(ValueError, match="finite numbers"):
        parse(tmp_path, [("a.png", [region(dict(CIRCLE, r="7"))])])
    # Not VIA annotations.
    path = os.path.join(str(tmp_path), "via_region_data.json")
    with open(path, "w") as f:
        json.dump({"images": [1, 2]}, f)
    with pytest.raises(ValueError, match="filename"):
        via.load_via_annotations(path)
    with open(path, "w") as f:
        f.write("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        via.read_via_json(path)


def test_shape_entirely_outside_the_image_gives_an_empty_mask():
    outside = {"name": "circle", "cx": 500, "cy": 500, "r": 3}
    assert not via.shape_to_mask(outside, H, W).any()
    masks = via.shapes_to_masks([outside, CIRCLE], H, W)
    assert masks.shape == (H, W, 2) and masks.any(axis=(0, 1)).tolist() == [False, True]
    with pytest.raises(ValueError, match="Cannot rasterise VIA shape 'point'"):
        via.shape_to_mask({"name": "point", "cx": 1, "cy": 1}, H, W)


def test_find_annotation_file(tmp_path):
    folder = str(tmp_path)
    with pytest.raises(FileNotFoundError, match="No VIA annotation file"):
        via.find_annotation_file(folder)
    write_via2_project(folder, [], name="project.json")
    assert via.find_annotation_file(folder) == os.path.join(folder, "project.json")
    write_via2_project(folder, [], name="other.json")
    with pytest.raises(FileNotFoundError, match="Several JSON files"):
        via.find_annotation_file(folder)
    assert via.find_annotation_file(folder, "other.json") == os.path.join(folder, "other.json")
    with pytest.raises(FileNotFoundError, match="missing.json not found"):
        via.find_annotation_file(folder, "missing.json")
    write_via1(folder, [])
    assert via.find_annotation_file(folder) == os.path.join(folder, via.VIA_FILE_NAME)
