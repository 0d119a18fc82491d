"""VGG Image Annotator test data shared by test_via.py and test_balloon.py:
independent rasterisers (pixel (r, c) is the point x=c, y=r), regions and
VIA 1.x / 2.x file writers."""
import json
import os

import numpy as np
from matplotlib.path import Path

H, W = 48, 64  # test image size: height, width


def pixel_centres(height=H, width=W):
    rows, cols = np.mgrid[0:height, 0:width]
    return rows, cols


def polygon_raster(xs, ys, height=H, width=W):
    """Pixels whose centre is inside the polygon (vertices chosen so that no
    pixel centre lies on an edge)."""
    rows, cols = pixel_centres(height, width)
    points = np.stack([cols.ravel(), rows.ravel()], axis=1)
    return Path(np.stack([xs, ys], axis=1)).contains_points(points).reshape(height, width)


def ellipse_raster(cx, cy, rx, ry, theta, height=H, width=W):
    """Quadratic form (p - c)^T A (p - c) < 1 with A = R diag(1/rx^2, 1/ry^2) R^T,
    R's columns the ellipse axes (cos t, sin t) and (-sin t, cos t) in x/y-down
    coordinates."""
    rows, cols = pixel_centres(height, width)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    form = rotation @ np.diag([1.0 / rx ** 2, 1.0 / ry ** 2]) @ rotation.T
    d = np.stack([cols - cx, rows - cy], axis=-1).astype(np.float64)
    return np.einsum("...i,ij,...j->...", d, form, d) < 1.0


def region(shape, **attributes):
    return {"shape_attributes": shape, "region_attributes": attributes}


def polygon(xs, ys):
    return {"name": "polygon", "all_points_x": list(xs), "all_points_y": list(ys)}


TRIANGLE = ([10.5, 40.5, 10.5], [5.5, 5.5, 25.5])
# Sticks out of the image on the left, the top and the right.
OVERHANG = ([-10.5, 80.5, 30.5], [-6.5, 20.5, 40.5])


def write_via1(subset_dir, entries):
    """VIA 1.x via_region_data.json: {key: {filename, size, regions: {"0": ...}}}."""
    data = {}
    for filename, regions in entries:
        data[filename + "1234"] = {
            "fileref": "", "size": 1234, "filename": filename, "base64_img_data": "",
            "file_attributes": {},
            "regions": {str(i): r for i, r in enumerate(regions)}}
    with open(os.path.join(subset_dir, "via_region_data.json"), "w") as f:
        json.dump(data, f)


def write_via2_project(subset_dir, entries, name="via_project_balloon.json"):
    """VIA 2.x project file: the entries (regions as lists) under _via_img_metadata."""
    metadata = {filename + "1234": {"filename": filename, "size": 1234, "regions": regions,
                                    "file_attributes": {}}
                for filename, regions in entries}
    project = {"_via_settings": {"ui": {}, "core": {}, "project": {"name": "balloon"}},
               "_via_img_metadata": metadata,
               "_via_attributes": {"region": {}, "file": {}}}
    with open(os.path.join(subset_dir, name), "w") as f:
        json.dump(project, f)


RECT = {"name": "rect", "x": 50, "y": 40, "width": 30, "height": 20}   # overhangs
INNER_RECT = {"name": "rect", "x": 3, "y": 30, "width": 5, "height": 4}
CIRCLE = {"name": "circle", "cx": 20, "cy": 24, "r": 7.3}
ELLIPSE = {"name": "ellipse", "cx": 32, "cy": 24, "rx": 12.4, "ry": 3.2, "theta": np.pi / 4}
