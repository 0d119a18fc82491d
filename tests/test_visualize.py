"""Tests for mrcnn.visualize: pixel values, rendered PNGs and returned artists."""
import random
import sys
import types
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib import patches  # noqa: E402

from mrcnn import visualize  # noqa: E402

CLASS_NAMES = ["BG", "square", "circle"]
GREEN = (0.0, 1.0, 0.0)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def square_instance(size=64, mask_slice=slice(24, 40), box=(16, 16, 48, 48)):
    """A black image with one square mask and a (larger) box around it."""
    image = np.zeros((size, size, 3), dtype=np.uint8)
    masks = np.zeros((size, size, 1), dtype=bool)
    masks[mask_slice, mask_slice, 0] = True
    return image, np.array([box]), masks, np.array([1])


def render(tmp_path, draw):
    """Draw on a 256x256-pixel figure whose axes fill it, save it as PNG.

    draw(ax) draws and returns the axes. Returns (axes, RGB pixels in [0, 1],
    function mapping data (x, y) to pixel (row, col)).
    """
    fig = plt.figure(figsize=(4, 4), dpi=64)
    ax = draw(fig.add_axes([0, 0, 1, 1]))
    path = tmp_path / "render.png"
    fig.savefig(path, dpi=64)
    pixels = mpimg.imread(path)[:, :, :3]
    height = pixels.shape[0]

    def to_pixel(x, y):
        px, py = ax.transData.transform((x, y))
        return int(round(height - py)), int(round(px))
    return ax, pixels, to_pixel


def texts(ax):
    return [t.get_text() for t in ax.texts]


# random_colors ---------------------------------------------------------------

def test_random_colors_distinct_and_in_range():
    colors = visualize.random_colors(7, seed=1)
    assert len(colors) == 7
    assert len(set(colors)) == 7
    assert all(len(c) == 3 and all(0.0 <= v <= 1.0 for v in c) for c in colors)


def test_random_colors_seed_reproducible_and_private():
    state = random.getstate()
    first = visualize.random_colors(12, seed=3)
    assert random.getstate() == state
    assert visualize.random_colors(12, seed=3) == first
    other = visualize.random_colors(12, seed=4)
    assert other != first
    assert sorted(other) == sorted(first)


def test_random_colors_brightness():
    assert max(max(c) for c in visualize.random_colors(5, bright=True, seed=0)) == 1.0
    dim = visualize.random_colors(5, bright=False, seed=0)
    assert max(max(c) for c in dim) == pytest.approx(0.7)


# apply_mask / draw_box ---------------------------------------------------------

@pytest.mark.parametrize("mask_dtype", [bool, np.uint8])
def test_apply_mask_blends_in_place(mask_dtype):
    image = np.full((4, 4, 3), 100.0)
    mask = np.zeros((4, 4), dtype=mask_dtype)
    mask[:2, :2] = 1
    out = visualize.apply_mask(image, mask, (1, 0, 0), alpha=0.5)
    assert out is image
    np.testing.assert_allclose(image[:2, :2, 0], 177.5)
    np.testing.assert_allclose(image[:2, :2, 1:], 50.0)
    untouched = ~mask.astype(bool)
    np.testing.assert_allclose(image[untouched], 100.0)


def test_draw_box_sets_edge_pixels_only():
    image = np.zeros((20, 20, 3), dtype=np.uint8)
    color = (255, 0, 0)
    out = visualize.draw_box(image, (5, 4, 12, 15), color)
    assert out is image
    expected = np.zeros((20, 20), dtype=bool)
    expected[5:7, 4:15] = True    # top
    expected[12:14, 4:17] = True  # bottom, corner closed
    expected[5:12, 4:6] = True    # left
    expected[5:12, 15:17] = True  # right
    drawn = np.all(image == color, axis=-1)
    np.testing.assert_array_equal(drawn, expected)
    assert not image[~expected].any()
    assert not image[7:12, 6:15].any()  # interior


# display_instances -----------------------------------------------------------

def test_display_instances_renders_mask_box_and_caption(tmp_path):
    image, boxes, masks, class_ids = square_instance()
    ax, pixels, to_pixel = render(tmp_path, lambda ax: visualize.display_instances(
        image, boxes, masks, class_ids, CLASS_NAMES, scores=np.array([0.9]),
        ax=ax, colors=[GREEN]))

    assert texts(ax) == ["square 0.900"]
    # Mask centre: black blended with green at alpha 0.5.
    np.testing.assert_allclose(pixels[to_pixel(32, 32)], [0, 127 / 255, 0], atol=0.01)
    # Inside the image, far from the instance: still black.
    assert pixels[to_pixel(5, 58)].max() < 0.02
    # Between box and mask: black.
    rows = [to_pixel(20, y)[0] for y in range(28, 45)]
    assert pixels[rows, to_pixel(20, 30)[1]].max() < 0.02
    # Left box edge x=16: dashed green line in the box color, alpha 0.7 over black
    # (the ~1.8 px wide line covers ~90% of the two pixels it straddles).
    col = to_pixel(16, 30)[1]
    edge = pixels[rows[0]:rows[-1] + 1, col - 2:col + 3]
    green_rows = edge[:, :, 1].max(axis=1)
    assert (green_rows > 0.5).mean() > 0.4
    assert green_rows.max() == pytest.approx(0.65, abs=0.06)
    assert edge[:, :, [0, 2]].max() < 0.05


def test_display_instances_caption_variants():
    image, boxes, masks, class_ids = square_instance()
    ax = visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES,
                                     scores=np.array([0.0]), ax=plt.gca())
    assert texts(ax) == ["square 0.000"]
    ax = visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES,
                                     ax=plt.figure().gca())
    assert texts(ax) == ["square"]
    ax = visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES,
                                     captions=["custom"], ax=plt.figure().gca())
    assert texts(ax) == ["custom"]


def test_display_instances_skips_zero_box_and_hides_box():
    image, boxes, masks, class_ids = square_instance()
    boxes = np.concatenate([boxes, np.zeros((1, 4), dtype=int)])
    masks = np.concatenate([masks, masks], axis=-1)
    ax = visualize.display_instances(image, boxes, masks, np.array([1, 2]), CLASS_NAMES,
                                     ax=plt.gca(), show_bbox=False)
    assert texts(ax) == ["square"]
    assert not any(isinstance(p, patches.Rectangle) for p in ax.patches)
    assert sum(isinstance(p, patches.Polygon) for p in ax.patches) == 1


def test_display_instances_creates_figure_without_warning():
    image, boxes, masks, class_ids = square_instance()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ax = visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES,
                                         figsize=(3, 2))
    assert tuple(ax.figure.get_size_inches()) == (3, 2)
    assert len(ax.images) == 1


def test_display_instances_no_instances(capsys):
    image = np.full((10, 12, 3), 7, dtype=np.uint8)
    ax = visualize.display_instances(image, np.zeros((0, 4)), np.zeros((10, 12, 0)),
                                     np.zeros(0, dtype=int), CLASS_NAMES, ax=plt.gca())
    assert "*** No instances to display ***" in capsys.readouterr().out
    assert len(ax.images) == 1
    np.testing.assert_array_equal(ax.images[0].get_array(), image)


def test_display_instances_count_mismatch():
    image, boxes, masks, _ = square_instance()
    with pytest.raises(ValueError, match=r"boxes=1, masks=1, class_ids=2"):
        visualize.display_instances(image, boxes, masks, np.array([1, 2]), CLASS_NAMES,
                                    ax=plt.gca())


# display_differences / draw_rois (need mrcnn.utils) ---------------------------

def test_display_differences_gt_green_and_score_iou_captions():
    image, boxes, masks, class_ids = square_instance()
    far_mask = np.zeros_like(masks)
    far_mask[2:8, 2:8, 0] = True
    # Predictions given in ascending score order: the matching one second.
    pred_boxes = np.array([[2, 2, 8, 8], boxes[0]])
    pred_masks = np.concatenate([far_mask, masks], axis=-1)
    ax = visualize.display_differences(
        image, boxes, class_ids, masks,
        pred_boxes, np.array([1, 1]), np.array([0.6, 0.95]), pred_masks,
        CLASS_NAMES, ax=plt.gca())
    assert texts(ax) == ["", "0.95 / 1.00", "0.60 / 0.00"]
    assert "GT=green, pred=red" in ax.get_title()
    rectangles = [p for p in ax.patches if isinstance(p, patches.Rectangle)]
    assert len(rectangles) == 3
    np.testing.assert_allclose(rectangles[0].get_edgecolor()[:3], GREEN)
    np.testing.assert_allclose(rectangles[1].get_edgecolor()[:3], (1, 0, 0))


def test_draw_rois(capsys):
    np.random.seed(0)  # draw_rois picks colors (and subsets) with numpy's global RNG
    image = np.zeros((40, 40, 3), dtype=np.uint8)
    rois = np.array([[2, 2, 20, 20], [10, 10, 30, 30], [5, 20, 15, 35]])
    refined = rois + 1
    small_masks = np.ones((3, 7, 7), dtype=np.float32)
    ax = visualize.draw_rois(image, rois, refined, small_masks, np.array([1, 0, 2]),
                             CLASS_NAMES)
    assert ax.get_title() == "3 ROIs"
    assert len(ax.patches) == 5  # 3 ROIs + 2 refined
    assert len(ax.lines) == 2
    assert sorted(texts(ax)) == ["circle", "square"]
    shown = ax.images[0].get_array()
    assert shown[10, 10].any() and not shown[25, 25].any()  # only positives masked
    out = capsys.readouterr().out
    assert "Positive ROIs:  2" in out and "Negative ROIs:  1" in out
    assert "Positive Ratio: 0.67" in out

    ax = visualize.draw_rois(image, rois, refined, small_masks, np.array([1, 0, 2]),
                             CLASS_NAMES, limit=2)
    assert ax.get_title() == "Showing 2 random ROIs out of 3"


# Other plots ------------------------------------------------------------------

def test_draw_boxes(tmp_path):
    image, boxes, masks, _ = square_instance()
    boxes = np.array([[16, 16, 48, 48], [4, 4, 12, 12]])
    masks = np.concatenate([masks, np.zeros_like(masks)], axis=-1)
    ax, pixels, to_pixel = render(tmp_path, lambda ax: visualize.draw_boxes(
        image, boxes=boxes, refined_boxes=boxes + 2, masks=masks,
        captions=["a", "b"], visibilities=[2, 0], title="boxes", ax=ax))
    assert ax.get_title() == "boxes"
    assert texts(ax) == ["a", "b"]
    rectangles = [p for p in ax.patches if isinstance(p, patches.Rectangle)]
    assert len(rectangles) == 3  # the hidden box has no refined box
    assert len(ax.lines) == 1
    assert pixels[to_pixel(32, 32)].max() > 0.3  # mask blended in
    with pytest.raises(ValueError):
        visualize.draw_boxes(image, ax=plt.gca())


def test_display_images_returns_figure(tmp_path):
    images = [np.full((8, 8, 3), v, dtype=np.uint8) for v in (0, 100, 200, 250, 30)]
    fig = visualize.display_images(images, titles=list("abcde"), cols=3)
    assert len(fig.axes) == 5
    assert [ax.get_title() for ax in fig.axes] == list("abcde")
    assert fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (2, 3)
    fig.savefig(tmp_path / "grid.png")


def test_display_top_masks_ranks_classes_by_area():
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    mask = np.zeros((10, 10, 3), dtype=bool)
    mask[:2, :2, 0] = True      # class 1, area 4
    mask[:5, :5, 1] = True      # class 2, area 25
    mask[5:, 5:, 2] = True      # class 2, area 25
    fig = visualize.display_top_masks(image, mask, np.array([1, 2, 2]), CLASS_NAMES, limit=3)
    assert [ax.get_title() for ax in fig.axes] == ["H x W=10x10", "circle", "square", "-"]
    circle = fig.axes[1].images[0].get_array()
    assert circle[0, 0] == 1 and circle[9, 9] == 2  # each instance its own value


def test_plot_precision_recall(tmp_path):
    ax = visualize.plot_precision_recall(0.75, [1.0, 0.8, 0.5], [0.1, 0.5, 0.9])
    assert ax.get_title() == "Precision-Recall Curve. AP@50 = 0.750"
    assert len(ax.lines) == 1
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [0.1, 0.5, 0.9])
    ax.figure.savefig(tmp_path / "pr.png")


def test_plot_overlaps(tmp_path):
    overlaps = np.array([[0.9, 0.1], [0.0, 0.7]])
    ax = visualize.plot_overlaps(np.array([1, 2, 0]), np.array([1, 1, 0]),
                                 np.array([0.95, 0.8, 0.0]), overlaps, CLASS_NAMES)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["square (0.95)", "square (0.80)"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["square", "circle"]
    assert texts(ax) == ["0.900\nmatch", "0.100\n", "0.000\n", "0.700\nwrong"]
    assert ax.get_xlabel() == "Ground Truth"
    ax.figure.savefig(tmp_path / "overlaps.png")


# display_table / display_weight_stats --------------------------------------------

def test_display_table_text_outside_ipython(capsys):
    html = visualize.display_table([["A", "B"], [1, "<b>x</b>"]])
    assert html.startswith("<table><tr><td>A")
    assert "<td><b>x</b>" in html and html.count("<tr>") == 2
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["A  B", "1  x"]


def test_display_table_html_inside_kernel(monkeypatch, capsys):
    shown = []
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: types.SimpleNamespace(kernel=object())
    display_mod = types.ModuleType("IPython.display")
    display_mod.HTML = lambda html: ("HTML", html)
    display_mod.display = shown.append
    ipython.display = display_mod
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", display_mod)
    html = visualize.display_table([["A"]])
    assert shown == [("HTML", html)]
    assert capsys.readouterr().out == ""


def dense_model():
    import keras
    model = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(2, name="fc")],
                             name="tiny")
    return keras, model


def check_rows(table, values):
    assert table[0] == ["WEIGHT NAME", "SHAPE", "MIN", "MAX", "STD"]
    assert len(table) == 1 + len(values)
    for row, w in zip(table[1:], values):
        assert row[1] == str(w.shape)
        np.testing.assert_allclose([float(v) for v in row[2:]],
                                   [w.min(), w.max(), w.std()], atol=1e-4)


def test_display_weight_stats_keras_model_and_wrapper(capsys):
    _, model = dense_model()
    table = visualize.display_weight_stats(model)
    kernel, bias = model.layers[0].get_weights()
    check_rows(table, [kernel, bias])
    assert table[1][0] == "tiny/fc/kernel"
    assert table[2][0] == "tiny/fc/bias"  # zero bias is not "dead?"
    assert "tiny/fc/kernel" in capsys.readouterr().out

    wrapper = types.SimpleNamespace(get_trainable_layers=lambda: model.layers)
    assert visualize.display_weight_stats(wrapper) == table


def test_display_weight_stats_alerts_and_nested_models():
    keras, model = dense_model()
    layer = model.layers[0]
    layer.set_weights([np.full((3, 2), 0.5, dtype=np.float32), np.zeros(2, np.float32)])
    table = visualize.display_weight_stats(model)
    assert table[1][0] == "tiny/fc/kernel<span style='color:red'>*** dead?</span>"
    assert table[2][0] == "tiny/fc/bias"

    layer.set_weights([np.array([[2000, 0], [1, 1], [0, 0]], np.float32), np.ones(2, np.float32)])
    assert "*** Overflow?" in visualize.display_weight_stats(model)[1][0]
    assert "dead?" not in visualize.display_weight_stats(model)[1][0]

    outer = keras.Sequential([keras.Input(shape=(3,)), model, keras.layers.Dense(1, name="out")],
                             name="outer")
    names = [row[0].split("<")[0] for row in visualize.display_weight_stats(outer)[1:]]
    assert names == ["tiny/fc/kernel", "tiny/fc/bias", "outer/out/kernel", "outer/out/bias"]
