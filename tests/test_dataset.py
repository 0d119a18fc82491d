"""Tests for mrcnn.utils.Dataset: registration, prepare(), source maps,
multi-source datasets and load_image conversions and errors."""
import numpy as np
import pytest
from PIL import Image

from mrcnn import utils
from mrcnn.dataset import ImageLoadError


def two_source_dataset():
    dataset = utils.Dataset()
    dataset.add_class("coco", 1, "person")
    dataset.add_class("coco", 18, "dog, doggy")
    dataset.add_class("coco", 18, "dog again")          # duplicate: ignored
    dataset.add_class("balloon", 1, "balloon")
    dataset.add_image("coco", image_id=397133, path="a.jpg", width=640, height=480)
    dataset.add_image("balloon", image_id="b17", path="b.jpg", polygons=[])
    dataset.prepare()
    return dataset


def test_prepare_builds_ids_names_and_maps():
    dataset = two_source_dataset()
    assert dataset.num_classes == 4
    np.testing.assert_array_equal(dataset.class_ids, [0, 1, 2, 3])
    assert dataset.class_names == ["BG", "person", "dog", "balloon"]
    assert dataset.num_images == 2
    np.testing.assert_array_equal(dataset.image_ids, [0, 1])
    assert dataset.class_from_source_map == {".0": 0, "coco.1": 1, "coco.18": 2, "balloon.1": 3}
    assert dataset.image_from_source_map == {"coco.397133": 0, "balloon.b17": 1}
    assert dataset.sources == ["", "balloon", "coco"]
    assert dataset.source_class_ids == {"": [0], "balloon": [0, 3], "coco": [0, 1, 2]}
    assert dataset.image_info[0]["width"] == 640
    assert dataset.image_info[1]["polygons"] == []
    assert dataset.source_image_link(1) == "b.jpg"
    assert dataset.image_reference(0) == ""


def test_class_id_mapping_both_ways():
    dataset = two_source_dataset()
    assert dataset.map_source_class_id("coco.18") == 2
    assert dataset.map_source_class_id("balloon.1") == 3
    assert dataset.get_source_class_id(2, "coco") == 18
    with pytest.raises(KeyError, match="Unknown source class 'coco.99'"):
        dataset.map_source_class_id("coco.99")
    with pytest.raises(ValueError, match="belongs to source 'coco', not 'balloon'"):
        dataset.get_source_class_id(1, "balloon")


def test_add_class_rejects_dotted_source_and_unprepared_use():
    dataset = utils.Dataset()
    with pytest.raises(ValueError, match="cannot contain a dot"):
        dataset.add_class("my.source", 1, "x")
    with pytest.raises(RuntimeError, match="prepare"):
        dataset.map_source_class_id("x.1")


def test_prepare_again_after_adding():
    dataset = two_source_dataset()
    dataset.add_image("coco", image_id=5, path="c.jpg")
    dataset.prepare()
    assert dataset.num_images == 3 and dataset.image_from_source_map["coco.5"] == 2


def test_base_load_mask_warns_and_returns_empty():
    dataset = two_source_dataset()
    with pytest.warns(UserWarning, match="default load_mask"):
        mask, class_ids = dataset.load_mask(0)
    assert mask.shape == (0, 0, 0) and class_ids.shape == (0,) and class_ids.dtype == np.int32


def dataset_with_file(path):
    dataset = utils.Dataset()
    dataset.add_class("files", 1, "thing")
    dataset.add_image("files", image_id="x", path=str(path))
    dataset.prepare()
    return dataset


@pytest.mark.parametrize("mode", ["RGB", "L", "LA", "RGBA", "P", "CMYK", "I;16", "1"])
def test_load_image_converts_to_uint8_rgb(tmp_path, mode):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (9, 11, 3)).astype(np.uint8)
    base = Image.fromarray(rgb)
    if mode == "I;16":
        values = (rng.integers(0, 256, (9, 11)) * 257).astype(np.uint16)
        img = Image.fromarray(values)
        expected = np.repeat((values // 257).astype(np.uint8)[..., None], 3, axis=2)
    elif mode == "RGBA":
        img = base.convert("RGBA")
        img.putalpha(10)
        expected = rgb
    else:
        img = base.convert(mode)
        expected = np.asarray(img.convert("RGB"))
    suffix = ".jpg" if mode == "CMYK" else ".png"
    if mode == "CMYK":
        img.save(tmp_path / ("im" + suffix), quality=100)
        expected = np.asarray(Image.open(tmp_path / ("im" + suffix)).convert("RGB"))
    else:
        img.save(tmp_path / ("im" + suffix))
    image = dataset_with_file(tmp_path / ("im" + suffix)).load_image(0)
    assert image.shape == (9, 11, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, expected)


def test_load_image_palette_keeps_colours(tmp_path):
    img = Image.new("P", (4, 2))
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.putdata([0, 1, 0, 1, 1, 0, 1, 0])
    img.save(tmp_path / "p.png")
    image = dataset_with_file(tmp_path / "p.png").load_image(0)
    np.testing.assert_array_equal(image[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(image[0, 1], [0, 0, 255])


def test_load_image_single_pixel(tmp_path):
    Image.fromarray(np.array([[200]], np.uint8)).save(tmp_path / "one.png")
    image = dataset_with_file(tmp_path / "one.png").load_image(0)
    np.testing.assert_array_equal(image, [[[200, 200, 200]]])


def test_load_image_missing_file_names_it(tmp_path):
    dataset = dataset_with_file(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match=r"image 0 \(files\) at .*nope.png: file not found"):
        dataset.load_image(0)


def test_load_image_corrupt_and_truncated_files(tmp_path):
    (tmp_path / "text.png").write_text("this is not an image")
    with pytest.raises(ImageLoadError, match="text.png: not a readable image"):
        dataset_with_file(tmp_path / "text.png").load_image(0)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 90).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="cut.png"):
        dataset_with_file(tmp_path / "cut.png").load_image(0)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty.png"):
        dataset_with_file(tmp_path / "empty.png").load_image(0)
