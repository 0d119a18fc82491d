"""
Mask R-CNN
The Dataset base class (also available as ``mrcnn.utils.Dataset``).

Subclass it, add classes and images in a ``load_<name>()`` method and
override ``load_mask()``::

    class ShapesDataset(utils.Dataset):
        def load_shapes(self, count):
            self.add_class("shapes", 1, "square")
            for i in range(count):
                self.add_image("shapes", image_id=i, path=None, ...)

        def load_mask(self, image_id):
            ...
            return masks, class_ids   # [H, W, N] bool, [N] int32

    dataset = ShapesDataset()
    dataset.load_shapes(100)
    dataset.prepare()

Several sources can share one Dataset ("coco" and "oid" classes, say);
``"source.id"`` strings map source ids to the contiguous internal ids.
"""

import os
import warnings

import numpy as np


class ImageLoadError(IOError):
    """An image file is missing, unreadable or not an image."""


class Dataset(object):
    """The base class for dataset classes.
    To use it, create a new class that adds functions specific to the dataset
    you want to use. For example:

    class CatsAndDogsDataset(Dataset):
        def load_cats_and_dogs(self):
            ...
        def load_mask(self, image_id):
            ...
        def image_reference(self, image_id):
            ...

    See COCODataset and ShapesDataset as examples.

    Attributes after prepare(): image_info, class_info, class_names,
    class_ids, num_classes, num_images, image_ids, sources, source_class_ids,
    class_from_source_map and image_from_source_map (both keyed "source.id").
    """

    def __init__(self, class_map=None):
        self._image_ids = []
        self.image_info = []
        # Background is always the first class
        self.class_info = [{"source": "", "id": 0, "name": "BG"}]
        self.source_class_ids = {}

    def add_class(self, source, class_id, class_name):
        """Register class ``class_id`` of ``source``. Re-adding the same
        (source, class_id) pair is ignored, as in the original."""
        if "." in source:
            raise ValueError("Source name cannot contain a dot: {!r}".format(source))
        # Does the class exist already?
        for info in self.class_info:
            if info['source'] == source and info["id"] == class_id:
                # source.class_id combination already available, skip
                return
        # Add the class
        self.class_info.append({
            "source": source,
            "id": class_id,
            "name": class_name,
        })

    def add_image(self, source, image_id, path, **kwargs):
        """Register an image. Extra keyword arguments are stored in its
        image_info dict (for example width, height, annotations)."""
        image_info = {
            "id": image_id,
            "source": source,
            "path": path,
        }
        image_info.update(kwargs)
        self.image_info.append(image_info)

    def image_reference(self, image_id):
        """Return a link to the image in its source Website or details about
        the image that help looking it up or debugging it.

        Override for your dataset, but pass to this function
        if you encounter images not in your dataset.
        """
        return ""

    def prepare(self, class_map=None):
        """Prepares the Dataset class for use: builds the contiguous class and
        image ids and the "source.id" maps. Call it after adding classes and
        images, and again after adding more.

        class_map is accepted for compatibility and not used (as in the
        original).
        """

        def clean_name(name):
            """Returns a shorter version of object names for cleaner display."""
            return ",".join(name.split(",")[:1])

        # Build (or rebuild) everything else from the info dicts.
        self.num_classes = len(self.class_info)
        self.class_ids = np.arange(self.num_classes)
        self.class_names = [clean_name(c["name"]) for c in self.class_info]
        self.num_images = len(self.image_info)
        self._image_ids = np.arange(self.num_images)

        # Mapping from source class and image IDs to internal IDs
        self.class_from_source_map = {"{}.{}".format(info['source'], info['id']): id
                                      for info, id in zip(self.class_info, self.class_ids)}
        self.image_from_source_map = {"{}.{}".format(info['source'], info['id']): id
                                      for info, id in zip(self.image_info, self.image_ids)}

        # Map sources to class_ids they support. Sorted so that the order does
        # not depend on hash seeds (the original used set order).
        self.sources = sorted(set(i['source'] for i in self.class_info))
        self.source_class_ids = {}
        # Loop over datasets
        for source in self.sources:
            # Find classes that belong to this dataset; BG is in all of them.
            self.source_class_ids[source] = [
                i for i, info in enumerate(self.class_info)
                if i == 0 or source == info['source']]

    def map_source_class_id(self, source_class_id):
        """Takes a source class ID and returns the int class ID assigned to it.

        For example:
        dataset.map_source_class_id("coco.12") -> 23
        """
        self._require_prepared()
        try:
            return self.class_from_source_map[source_class_id]
        except KeyError:
            raise KeyError("Unknown source class {!r}; known: {}".format(
                source_class_id, ", ".join(sorted(self.class_from_source_map)))) from None

    def get_source_class_id(self, class_id, source):
        """Map an internal class ID to the corresponding class ID in the source dataset."""
        info = self.class_info[class_id]
        if info['source'] != source:
            raise ValueError("Class {} ({!r}) belongs to source {!r}, not {!r}".format(
                class_id, info["name"], info["source"], source))
        return info['id']

    @property
    def image_ids(self):
        return self._image_ids

    def source_image_link(self, image_id):
        """Returns the path or URL to the image.
        Override this to return a URL to the image if it's available online for easy
        debugging.
        """
        return self.image_info[image_id]["path"]

    def load_image(self, image_id):
        """Load the specified image and return a [H,W,3] uint8 RGB Numpy array.

        Grayscale, grayscale+alpha, RGBA, palette, CMYK and 16-bit files are
        converted to 8-bit RGB (see read_image_rgb). Raises ImageLoadError
        naming the image id and file when the file is missing, empty,
        truncated or not an image; the training pipeline logs and skips such
        images.
        """
        info = self.image_info[image_id]
        return read_image_rgb(info['path'], what="image {} ({})".format(
            image_id, info.get("source", "")))

    def load_mask(self, image_id):
        """Load instance masks for the given image.

        Different datasets use different ways to store masks. Override this
        method to load instance masks and return them in the form of an
        array of binary masks of shape [height, width, instances].

        Returns:
            masks: A bool array of shape [height, width, instance count] with
                a binary mask per instance.
            class_ids: a 1D array of class IDs of the instance masks.

        The base class warns that it was not overridden and returns an empty
        mask and no class ids.
        """
        warnings.warn("You are using the default load_mask(), maybe you need to "
                      "define your own one.", stacklevel=2)
        mask = np.empty([0, 0, 0])
        class_ids = np.empty([0], np.int32)
        return mask, class_ids

    def _require_prepared(self):
        if not hasattr(self, "class_from_source_map"):
            raise RuntimeError("Call dataset.prepare() after adding classes and "
                               "images, before using the dataset")


def read_image_rgb(path, what=None):
    """Read an image file as a [H, W, 3] uint8 RGB array.

    path: file path. what: optional description used in error messages.

    Conversions: 'L'/'LA'/'P'/'RGBA'/'CMYK'/... -> RGB through Pillow (alpha
    dropped, palette colours looked up); 16-bit grayscale and 32-bit integer
    images are scaled from their type's range to 0..255; float images in
    [0, 1] are scaled by 255; 16-bit colour PNGs are reduced to 8 bits by
    Pillow when it opens them (it keeps the high byte). A single-pixel image
    is a valid [1, 1, 3] image.

    Raises ImageLoadError ("Cannot load <what> at <path>: ...") when the path
    is missing or not a file, and when the file is empty, truncated, corrupt
    or not an image (Pillow's reason is included).
    """
    from PIL import Image, UnidentifiedImageError

    label = "{} at {}".format(what, path) if what else str(path)
    if path is None or not os.path.exists(path):
        raise ImageLoadError("Cannot load {}: file not found; check the path given to "
                             "add_image()".format(label))
    if not os.path.isfile(path):
        raise ImageLoadError("Cannot load {}: not a file (a directory?)".format(label))
    try:
        with Image.open(path) as img:
            img.load()
            array = _pil_to_rgb(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageLoadError("Cannot load {}: not a readable image ({}); the file is empty, "
                             "truncated, corrupt or not an image: replace it or remove it "
                             "from the dataset".format(label, e)) from e
    return array


def _pil_to_rgb(img):
    """Pillow image -> [H, W, 3] uint8."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(img)
        if array.dtype.itemsize == 2 or img.mode.startswith("I;16"):
            array = np.round(array.astype(np.float64) * (255.0 / 65535.0))
        else:
            # 32-bit integer pixels: PNG 16-bit images also open as mode "I"
            # in some Pillow versions, so scale by the 16-bit range when the
            # values fit in it.
            top = 65535.0 if array.max(initial=0) <= 65535 else float(np.iinfo(np.int32).max)
            array = np.round(np.clip(array, 0, None).astype(np.float64) * (255.0 / top))
        array = array.astype(np.uint8)
    elif img.mode == "F":
        array = np.asarray(img, dtype=np.float64)
        if array.max(initial=0) <= 1.0:
            array = array * 255.0
        array = np.clip(np.round(array), 0, 255).astype(np.uint8)
    else:
        if img.mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA")
        array = np.asarray(img.convert("RGB"))
        return np.ascontiguousarray(array, dtype=np.uint8)
    return np.ascontiguousarray(np.repeat(array[..., None], 3, axis=2))
