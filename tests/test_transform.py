"""mrcnn.transform: molded-image detections back to the original image."""
import numpy as np

from mrcnn import transform, utils


def test_unmold_boxes_hand_worked():
    # A 32 x 64 original scaled by 1 into a 64 px square, padded by 16 rows
    # above: window (16, 0, 48, 64). A molded box at rows 20..40 is at rows
    # 4..24 of the original.
    boxes = utils.norm_boxes(np.array([[20, 8, 40, 40]]), (64, 64))
    out = transform.unmold_boxes(boxes, (16, 0, 48, 64), (64, 64, 3), (32, 64, 3))
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, [[4, 8, 24, 40]])


def test_unmold_boxes_scaled_window():
    # 100 x 50 original scaled by 0.64 into 64 x 64: 64 x 32 at columns 16..48.
    image, window, scale, _, _ = utils.resize_image(np.zeros((100, 50, 3), np.uint8),
                                                    min_dim=64, max_dim=64)
    assert window == (0, 16, 64, 48) and np.isclose(scale, 0.64)
    boxes = utils.norm_boxes(np.array([[0, 16, 64, 48], [32, 32, 48, 40]]), (64, 64))
    out = transform.unmold_boxes(boxes, window, image.shape, (100, 50, 3))
    # The whole window is the whole image. In normalised coordinates (pixel
    # / 63, y2 and x2 minus 1) relative to the window: y (32/63) / 1 ->
    # 0.508 * 99 = 50.3, (47/63) -> 0.746 * 99 + 1 = 74.9; x (32 - 16) / 31
    # -> 0.516 * 49 = 25.3, (39 - 16) / 31 -> 0.742 * 49 + 1 = 37.4.
    np.testing.assert_array_equal(out, [[0, 0, 100, 50], [50, 25, 75, 37]])


def test_unmold_boxes_one_pixel_thick_window():
    # 2000 x 16 into 64 x 64: scale 0.032, the image is one column (x 31..32).
    image, window, _, _, _ = utils.resize_image(np.zeros((2000, 16, 3), np.uint8),
                                                min_dim=64, max_dim=64)
    assert window[3] - window[1] == 1
    boxes = utils.norm_boxes(np.array([[16, 31, 32, 32]]), (64, 64))
    out = transform.unmold_boxes(boxes, window, image.shape, (2000, 16, 3))
    # Rows as usual: 16/63 * 1999 = 507.7 and 31/63 * 1999 + 1 = 984.6; the
    # one-pixel column stands for all 16 columns of the original.
    np.testing.assert_array_equal(out, [[508, 0, 985, 16]])
    assert np.all(np.isfinite(out))


def test_resize_image_keeps_a_pixel_of_very_thin_images():
    image, window, _, _, _ = utils.resize_image(np.full((1, 5000, 3), 9, np.uint8),
                                                min_dim=64, max_dim=64)
    assert image.shape == (64, 64, 3)
    assert window[2] - window[0] == 1 and window[3] - window[1] == 64
    assert np.all(image[window[0], :] == 9)
