"""
Mask R-CNN
VGG Image Annotator (VIA) annotation files: reading VIA 1.x and 2.x JSON,
region classes, and rasterising region shapes to instance masks.

Used by ``samples/balloon/balloon.py``; any VIA project loads the same way::

    from mrcnn.data import via
    annotations = via.load_via_annotations(via.find_annotation_file("data/train"))
    for filename, shapes, class_ids in annotations.images:
        masks = via.shapes_to_masks(shapes, height, width)    # [H, W, N] bool

Formats. Both VIA formats are read:

* VIA 1.x ``via_region_data.json``: ``{key: {"filename", "regions": {"0":
  {"shape_attributes", "region_attributes"}, ...}}}`` (regions as a dict);
* VIA 2.x, either the exported annotations (the same layout with regions as
  a list) or a saved project (the same entries under ``_via_img_metadata``).

Shapes and coordinates. Coordinates are image pixels, x to the right and
y down. ``polygon`` (``all_points_x``, ``all_points_y``) is filled with
``skimage.draw.polygon``: pixel (row r, column c) is the point (x=c, y=r)
and pixels on the outline are included. ``rect`` (``x``, ``y``, ``width``,
``height``) covers exactly ``width`` x ``height`` pixels from column x, row
y (rounded). ``circle`` (``cx``, ``cy``, ``r``) and ``ellipse`` (``cx``,
``cy``, ``rx``, ``ry`` and, in VIA 2, ``theta``, radians, clockwise on
screen) cover the pixels whose centre is strictly inside, the test VIA
itself uses. Parts outside the image are clipped, so a shape entirely
outside its image gives an empty mask.

Other shape types (``point``, ``polyline``, ...) enclose no area: such a
region is skipped with a ``UserWarning`` that names the file and the region.
A region of a known type with missing or malformed coordinates is an error
(ValueError naming the file and the region). Images without regions are
skipped.

Classes. A region attribute names the region's class: ``class_attribute``
(default ``"auto"``: the first of ``class``, ``name``, ``label`` that has a
value in some region of the file; None: no classes). Values are strings, or
for VIA checkbox attributes a dict with exactly one ticked option. Once a
file uses class names every region needs one (else ValueError). Class ids
(1, 2, ...) follow ``class_names`` when given, otherwise the sorted names
found; a file without class names has the single class ``default_class``.
"""

import collections
import json
import os
import warnings

import numpy as np

# The annotation file name VIA 1.x uses (and the original expects).
VIA_FILE_NAME = "via_region_data.json"

# Region attributes that name the class, looked up in this order by
# class_attribute="auto".
CLASS_ATTRIBUTES = ("class", "name", "label")

# Shape types that enclose an area and become masks.
AREA_SHAPES = {
    "polygon": ("all_points_x", "all_points_y"),
    "rect": ("x", "y", "width", "height"),
    "circle": ("cx", "cy", "r"),
    "ellipse": ("cx", "cy", "rx", "ry"),
}

# What load_via_annotations returns: ``images`` is a list of (filename,
# shape_attributes dicts, 1-based class ids) of the images with usable
# regions, in file order; ``class_names`` the names of class ids 1, 2, ...;
# ``class_attribute`` the region attribute that named them (None: none).
ViaAnnotations = collections.namedtuple("ViaAnnotations",
                                        ["images", "class_names", "class_attribute"])


def find_annotation_file(subset_dir, annotation_file=None):
    """Path of the VIA JSON file of a folder: ``annotation_file``
    (relative to the folder) when given, else ``via_region_data.json``, else
    the folder's only ``*.json`` file. Raises FileNotFoundError otherwise
    (none, or several to choose from)."""
    if annotation_file:
        path = os.path.join(subset_dir, annotation_file)
        if not os.path.isfile(path):
            raise FileNotFoundError("Annotation file {} not found".format(path))
        return path
    path = os.path.join(subset_dir, VIA_FILE_NAME)
    if os.path.isfile(path):
        return path
    candidates = sorted(f for f in os.listdir(subset_dir) if f.lower().endswith(".json"))
    if len(candidates) == 1:
        return os.path.join(subset_dir, candidates[0])
    if not candidates:
        raise FileNotFoundError(
            "No VIA annotation file in {}: expected {} (VIA 1.x) or one exported/saved VIA "
            "2.x JSON file".format(subset_dir, VIA_FILE_NAME))
    raise FileNotFoundError(
        "Several JSON files in {} ({}) and no {}; pass annotation_file= to pick one".format(
            subset_dir, ", ".join(candidates), VIA_FILE_NAME))


def read_via_json(json_path):
    """Read a VIA 1.x or 2.x annotation file.

    Returns a list of ``(filename, regions)`` in file order, where regions is
    a list of ``(index, shape_attributes, region_attributes)``; index is the
    region's key (VIA 1.x) or position (VIA 2.x), for messages.
    Raises ValueError when the file is not VIA 1.x/2.x annotations.
    """
    try:
        with open(json_path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError("{} is not valid JSON ({})".format(json_path, e)) from e
    if isinstance(data, dict) and "_via_img_metadata" in data:
        data = data["_via_img_metadata"]  # a VIA 2.x project file
    if not isinstance(data, dict):
        raise ValueError("{} is not a VIA 1.x/2.x annotation file: expected a JSON object of "
                         "images".format(json_path))
    entries = []
    for key, entry in data.items():
        if not isinstance(entry, dict) or "filename" not in entry:
            raise ValueError(
                "{}: entry {!r} has no 'filename'; expected VIA 1.x/2.x annotations (VIA "
                "1.x via_region_data.json, VIA 2.x exported JSON or project file)".format(
                    json_path, key))
        regions = entry.get("regions") or []
        if isinstance(regions, dict):  # VIA 1.x: {"0": region, "1": region, ...}
            regions = list(regions.items())
        else:  # VIA 2.x: a list
            regions = list(enumerate(regions))
        entries.append((entry["filename"], [
            (index, region.get("shape_attributes") or {}, region.get("region_attributes") or {})
            for index, region in regions]))
    return entries


def pick_class_attribute(entries, class_attribute="auto"):
    """The region attribute that names classes: None (no classes), the given
    name, or for "auto" the first of CLASS_ATTRIBUTES with a non-empty value
    in some region of ``entries`` (None when there is none)."""
    if class_attribute != "auto":
        return class_attribute
    for name in CLASS_ATTRIBUTES:
        for _, regions in entries:
            for _, _, attributes in regions:
                if _attribute_value(attributes.get(name)):
                    return name
    return None


def _attribute_value(value):
    """The class name in a region attribute value, or None: a non-empty
    string, or the single ticked option of a VIA checkbox dict."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, dict):
        ticked = [k for k, v in value.items() if v]
        return ticked[0] if len(ticked) == 1 else None
    return None


def _check_shape(shape, where):
    """Raise ValueError when a known shape lacks coordinates or has bad ones."""
    name = shape.get("name")
    missing = [k for k in AREA_SHAPES[name] if k not in shape]
    if missing:
        raise ValueError("{}: {} without {}".format(where, name, ", ".join(missing)))
    if name == "polygon":
        xs, ys = shape["all_points_x"], shape["all_points_y"]
        if not isinstance(xs, list) or not isinstance(ys, list) or len(xs) != len(ys):
            raise ValueError("{}: polygon all_points_x and all_points_y must be lists of the "
                             "same length".format(where))
        values = xs + ys
    else:
        values = [shape[k] for k in AREA_SHAPES[name]] + [shape.get("theta", 0)]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
               for v in values):
        raise ValueError("{}: {} coordinates must be finite numbers".format(where, name))


def load_via_annotations(json_path, class_attribute="auto", class_names=None,
                         default_class="object"):
    """Read a VIA 1.x/2.x file and check its regions (see the module
    docstring); returns a ViaAnnotations.

    class_attribute: region attribute naming each region's class; "auto"
        (default) tries CLASS_ATTRIBUTES in order; None: one class.
    class_names: class names in class-id order (ids 1, 2, ...); default:
        the sorted names found, or ``[default_class]`` when the file names
        no classes. Pass the training set's names when reading its
        validation set so that the ids agree.

    Regions of shapes without an area are skipped with a UserWarning.
    Raises ValueError for a file that is not VIA annotations, a malformed
    region, a region without a class name when others have one, class
    names not in ``class_names``, and a file without any usable region.
    """
    entries = read_via_json(json_path)
    attribute = pick_class_attribute(entries, class_attribute)
    images = []  # (filename, shapes, class names or None)
    for filename, regions in entries:
        shapes, names = [], []
        for index, shape, attributes in regions:
            where = "region {} of {!r} in {}".format(index, filename, json_path)
            if shape.get("name") not in AREA_SHAPES:
                warnings.warn("Skipping {}: shape {!r} encloses no area (used: {})".format(
                    where, shape.get("name"), ", ".join(AREA_SHAPES)), stacklevel=2)
                continue
            _check_shape(shape, where)
            name = None
            if attribute is not None:
                name = _attribute_value(attributes.get(attribute))
                if name is None:
                    raise ValueError(
                        "{} has no class name in its {!r} attribute (got {!r}); other "
                        "regions name their class, so every region needs one (or load with "
                        "class_attribute=None for a single class)".format(
                            where, attribute, attributes.get(attribute)))
            shapes.append(shape)
            names.append(name)
        # VIA keeps images without regions in the file: skip them.
        if shapes:
            images.append((filename, shapes, names))
    if not images:
        raise ValueError("No image with polygon, rect, circle or ellipse regions in "
                         "{}".format(json_path))

    found = sorted({n for _, _, names in images for n in names if n is not None})
    class_names = list(class_names if class_names is not None else found or [default_class])
    unknown = sorted(set(found) - set(class_names))
    if unknown:
        raise ValueError("{} names classes {} that are not in class_names {}".format(
            json_path, unknown, class_names))
    return ViaAnnotations(
        images=[(filename, shapes, [1 if n is None else class_names.index(n) + 1
                                    for n in names])
                for filename, shapes, names in images],
        class_names=class_names, class_attribute=attribute)


def shape_to_mask(shape, height, width):
    """Rasterise one VIA shape_attributes dict (polygon, rect, circle or
    ellipse) to a [height, width] bool mask; parts outside the image are
    clipped. See the module docstring for the pixel conventions."""
    name = shape.get("name")
    mask = np.zeros([height, width], dtype=bool)
    if name == "polygon":
        import skimage.draw
        rr, cc = skimage.draw.polygon(np.asarray(shape["all_points_y"], dtype=np.float64),
                                      np.asarray(shape["all_points_x"], dtype=np.float64),
                                      shape=(height, width))
        mask[rr, cc] = True
    elif name == "rect":
        x0, x1 = sorted((shape["x"], shape["x"] + shape["width"]))
        y0, y1 = sorted((shape["y"], shape["y"] + shape["height"]))
        c0, c1 = (int(np.clip(np.floor(v + 0.5), 0, width)) for v in (x0, x1))
        r0, r1 = (int(np.clip(np.floor(v + 0.5), 0, height)) for v in (y0, y1))
        mask[r0:r1, c0:c1] = True
    elif name in ("circle", "ellipse"):
        if name == "circle":
            rx = ry = float(shape["r"])
            theta = 0.0
        else:
            rx, ry = float(shape["rx"]), float(shape["ry"])
            theta = float(shape.get("theta", 0.0))
        cx, cy = float(shape["cx"]), float(shape["cy"])
        if rx <= 0 or ry <= 0:
            return mask
        # Only the pixels of the bounding square of the larger radius.
        reach = max(rx, ry)
        r0, r1 = max(0, int(np.floor(cy - reach))), min(height, int(np.ceil(cy + reach)) + 1)
        c0, c1 = max(0, int(np.floor(cx - reach))), min(width, int(np.ceil(cx + reach)) + 1)
        if r0 >= r1 or c0 >= c1:
            return mask
        rows, cols = np.mgrid[r0:r1, c0:c1]
        dx, dy = cols - cx, rows - cy
        # Coordinates along the ellipse's own axes: x axis rotated by theta
        # (clockwise on screen, since y points down).
        along = dx * np.cos(theta) + dy * np.sin(theta)
        across = -dx * np.sin(theta) + dy * np.cos(theta)
        mask[r0:r1, c0:c1] = (along / rx) ** 2 + (across / ry) ** 2 < 1.0
    else:
        raise ValueError("Cannot rasterise VIA shape {!r}; supported: {}".format(
            name, ", ".join(AREA_SHAPES)))
    return mask


def shapes_to_masks(shapes, height, width):
    """Rasterise a list of VIA shape_attributes dicts (load_via_annotations'
    shapes of one image) to [height, width, len(shapes)] bool masks, one per
    shape in order; a shape entirely outside the image gives an empty
    mask."""
    masks = np.zeros([height, width, len(shapes)], dtype=bool)
    for i, shape in enumerate(shapes):
        masks[:, :, i] = shape_to_mask(shape, height, width)
    return masks
