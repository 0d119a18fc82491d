"""
Mask R-CNN
Display and visualization functions, with the original's names and arguments.

Conventions: images are [H, W, 3] RGB with values in 0..255; boxes are
[N, (y1, x1, y2, x2)] image pixels, y2/x2 exclusive; instance masks are
[H, W, N] bool or 0/1; colors are RGB(A) float tuples in [0, 1].

Differences from the original: works headless and without IPython (no
backend is forced; plt.show() is called only under interactive backends);
drawing functions return the Axes (Figure for multi-panel plots) or array
they drew on; random_colors() takes seed=; bad inputs raise ValueError.
"""

import colorsys
import itertools
import random
import re
import sys

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import colors as mcolors
from matplotlib import lines, patches
from skimage.measure import find_contours

from mrcnn.nested import layers_with_weights

# Backends that cannot open a window (plt.show() would only warn).
_NON_INTERACTIVE_BACKENDS = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


def _show_if_interactive():
    """Call plt.show() unless the current backend cannot display figures."""
    if matplotlib.get_backend().lower() not in _NON_INTERACTIVE_BACKENDS:
        plt.show()


def _mask_outlines(mask, color):
    """Polygon patches tracing the outline of a [H, W] mask.

    One pixel of padding closes the contours of objects touching the border;
    vertices are shifted back and flipped from (y, x) to (x, y).
    """
    padded = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), dtype=np.uint8)
    padded[1:-1, 1:-1] = mask
    return [patches.Polygon(np.fliplr(verts) - 1, facecolor="none", edgecolor=color)
            for verts in find_contours(padded, 0.5)]


def _set_image_frame(ax, height, width, margin, title=""):
    """Show an image area of the given size plus a margin, without axis lines."""
    ax.set_ylim(height + margin, -margin)
    ax.set_xlim(-margin, width + margin)
    ax.axis("off")
    ax.set_title(title)


def _in_ipython_kernel():
    """True when running inside a Jupyter/IPython kernel (notebook, qtconsole)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def display_images(images, titles=None, cols=4, cmap=None, norm=None,
                   interpolation=None):
    """Display a grid of images, optionally with titles; returns the Figure.

    images: list or array of [H, W] or [H, W, 3] images, cast to uint8.
    titles: optional list of titles, one per image.
    cols: number of images per row.
    cmap, norm, interpolation: passed to imshow (e.g. cmap="Blues").
    """
    titles = titles if titles is not None else [""] * len(images)
    rows = max(1, -(-len(images) // cols))
    fig = plt.figure(figsize=(14, 14 * rows / cols))
    for i, (image, title) in enumerate(zip(images, titles), start=1):
        ax = fig.add_subplot(rows, cols, i)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        ax.imshow(np.asarray(image).astype(np.uint8), cmap=cmap, norm=norm,
                  interpolation=interpolation)
    _show_if_interactive()
    return fig


def random_colors(N, bright=True, seed=None):
    """Generate N visually distinct colors in random order.

    Evenly spaced HSV hues (i/N) with value 1.0 (bright) or 0.7, converted to
    RGB float tuples in [0, 1] and shuffled. With a seed, a private generator
    gives a reproducible order and the global `random` state is untouched;
    without one, the global `random` module shuffles, as in the original.
    """
    brightness = 1.0 if bright else 0.7
    colors = [colorsys.hsv_to_rgb(i / N, 1, brightness) for i in range(N)]
    rng = random if seed is None else random.Random(seed)
    rng.shuffle(colors)
    return colors


def apply_mask(image, mask, color, alpha=0.5):
    """Blend a color into the image where the mask is set; returns the image.

    image: [H, W, C>=3] array, modified in place in its first 3 channels
        (integer images truncate the blended values).
    mask: [H, W] bool or 0/1.
    color: RGB(A) floats in [0, 1]; an alpha component is ignored.
    Masked pixels become pixel * (1 - alpha) + alpha * color * 255.
    """
    mask = np.asarray(mask).astype(bool)
    rgb = np.asarray(color[:3], dtype=np.float64) * 255
    image[mask, :3] = image[mask, :3] * (1 - alpha) + alpha * rgb
    return image


def display_instances(image, boxes, masks, class_ids, class_names,
                      scores=None, title="",
                      figsize=(16, 16), ax=None,
                      show_mask=True, show_bbox=True,
                      colors=None, captions=None):
    """Draw instances (boxes, masks, captions) over an image; returns the Axes.

    image: [H, W, 3] image with values in 0..255.
    boxes: [N, (y1, x1, y2, x2)] image pixels, y2/x2 exclusive. Instances with
        an all-zero box are skipped (usually lost in cropping).
    masks: [H, W, N] bool or 0/1. class_ids: [N] indices into class_names.
    scores: optional [N] confidences; captions read "{label} {score:.3f}".
    ax: Axes to draw on; if None a figure of `figsize` is created and shown
        (under interactive backends).
    show_mask, show_bbox: fill the masks / draw the dashed boxes. Mask
        outlines are always drawn.
    colors: optional N colors, random distinct colors by default.
    captions: optional N strings replacing the label/score captions.
    """
    boxes, masks, class_ids = np.asarray(boxes), np.asarray(masks), np.asarray(class_ids)
    n = boxes.shape[0]
    if not n:
        print("\n*** No instances to display *** \n")
    else:
        counts = {"boxes": n, "masks": masks.shape[-1], "class_ids": class_ids.shape[0],
                  "scores": n if scores is None else len(scores),
                  "captions": n if captions is None else len(captions)}
        if len(set(counts.values())) > 1:
            raise ValueError("display_instances: number of instances differs: " + ", ".join(
                "{}={}".format(k, v) for k, v in counts.items()))

    auto_show = ax is None
    if auto_show:
        _, ax = plt.subplots(1, figsize=figsize)
    if colors is None or len(colors) == 0:
        colors = random_colors(n)

    _set_image_frame(ax, image.shape[0], image.shape[1], margin=10, title=title)

    masked_image = image.astype(np.uint32)
    for i in range(n):
        if not np.any(boxes[i]):
            continue
        color = colors[i]
        y1, x1, y2, x2 = boxes[i]
        if show_bbox:
            ax.add_patch(patches.Rectangle(
                (x1, y1), x2 - x1, y2 - y1, linewidth=2, alpha=0.7,
                linestyle="dashed", edgecolor=color, facecolor="none"))

        if captions is not None:
            caption = captions[i]
        else:
            label = class_names[class_ids[i]]
            caption = label if scores is None else "{} {:.3f}".format(label, scores[i])
        ax.text(x1, y1 + 8, caption, color="w", size=11, backgroundcolor="none")

        mask = masks[:, :, i]
        if show_mask:
            apply_mask(masked_image, mask, color)
        for outline in _mask_outlines(mask, color):
            ax.add_patch(outline)
    ax.imshow(masked_image.astype(np.uint8))
    if auto_show:
        _show_if_interactive()
    return ax


def display_differences(image,
                        gt_box, gt_class_id, gt_mask,
                        pred_box, pred_class_id, pred_score, pred_mask,
                        class_names, title="", ax=None,
                        show_mask=True, show_box=True,
                        iou_threshold=0.5, score_threshold=0.5):
    """Display ground truth (green) and predictions (red); returns the Axes.

    gt_box: [G, (y1, x1, y2, x2)], gt_class_id: [G], gt_mask: [H, W, G].
    pred_box: [P, (y1, x1, y2, x2)], pred_class_id, pred_score: [P],
        pred_mask: [H, W, P].
    Predictions are matched with utils.compute_matches and captioned
    "score / IoU" (IoU with the matched GT, else the best overlap).
    """
    from mrcnn import utils

    gt_match, pred_match, overlaps = utils.compute_matches(
        gt_box, gt_class_id, gt_mask,
        pred_box, pred_class_id, pred_score, pred_mask,
        iou_threshold=iou_threshold, score_threshold=score_threshold)
    # compute_matches trims zero-padded rows (at the end) and sorts the rest
    # by score; order ours the same way so that its row k is our prediction k.
    n_kept = len(pred_match)
    order = np.concatenate([np.argsort(np.asarray(pred_score)[:n_kept])[::-1],
                            np.arange(n_kept, len(pred_box))]).astype(int)
    pred_box, pred_class_id = np.asarray(pred_box)[order], np.asarray(pred_class_id)[order]
    pred_score, pred_mask = np.asarray(pred_score)[order], np.asarray(pred_mask)[..., order]

    n_gt, n_pred = len(gt_box), len(pred_box)
    colors = [(0, 1, 0, .8)] * n_gt + [(1, 0, 0, 1)] * n_pred
    captions = [""] * (n_gt + n_pred)  # zero padding past n_kept is not drawn
    for k in range(n_kept):
        iou = (overlaps[k, int(pred_match[k])] if pred_match[k] > -1
               else overlaps[k].max(initial=0.0))
        captions[n_gt + k] = "{:.2f} / {:.2f}".format(pred_score[k], iou)

    title = title or "Ground Truth and Detections\n GT=green, pred=red, captions: score/IoU"
    return display_instances(
        image,
        np.concatenate([gt_box, pred_box]),
        np.concatenate([gt_mask, pred_mask], axis=-1),
        np.concatenate([gt_class_id, pred_class_id]),
        class_names,
        np.concatenate([np.zeros([n_gt]), pred_score]),
        ax=ax, show_bbox=show_box, show_mask=show_mask,
        colors=colors, captions=captions, title=title)


def draw_rois(image, rois, refined_rois, mask, class_ids, class_names, limit=10):
    """Draw ROIs (dashed), refined ROIs (solid) and masks; returns the Axes.

    rois, refined_rois: [N, (y1, x1, y2, x2)] image pixels, before and after
        box refinement.
    mask: [N, mask_h, mask_w] small per-ROI masks, fitted with unmold_mask.
    class_ids: [N]; 0 is background (gray box, no refinement or mask).
    limit: at most this many ROIs, picked with numpy's global RNG.
    Prints the positive/negative ROI counts.
    """
    from mrcnn import utils

    class_ids = np.asarray(class_ids)
    masked_image = image.copy()
    ids = np.arange(rois.shape[0], dtype=np.int32)
    if ids.shape[0] > limit:
        ids = np.random.choice(ids, limit, replace=False)
        title = "Showing {} random ROIs out of {}".format(len(ids), rois.shape[0])
    else:
        title = "{} ROIs".format(len(ids))

    _, ax = plt.subplots(1, figsize=(12, 12))
    ax.set_title(title)
    ax.set_ylim(image.shape[0] + 20, -20)
    ax.set_xlim(-50, image.shape[1] + 20)
    ax.axis("off")

    for roi_id in ids:
        color = np.random.rand(3)
        class_id = class_ids[roi_id]
        y1, x1, y2, x2 = rois[roi_id]
        ax.add_patch(patches.Rectangle(
            (x1, y1), x2 - x1, y2 - y1, linewidth=2,
            edgecolor=color if class_id else "gray",
            facecolor="none", linestyle="dashed"))
        if not class_id:
            continue
        ry1, rx1, ry2, rx2 = refined_rois[roi_id]
        ax.add_patch(patches.Rectangle(
            (rx1, ry1), rx2 - rx1, ry2 - ry1, linewidth=2,
            edgecolor=color, facecolor="none"))
        # Connect the top-left corners of the ROI and its refinement.
        ax.add_line(lines.Line2D([x1, rx1], [y1, ry1], color=color))
        ax.text(rx1, ry1 + 8, "{}".format(class_names[class_id]),
                color="w", size=11, backgroundcolor="none")
        full_mask = utils.unmold_mask(mask[roi_id], rois[roi_id][:4].astype(np.int32),
                                      image.shape)
        apply_mask(masked_image, full_mask, color)
    ax.imshow(masked_image)

    positives = int(np.sum(class_ids > 0))
    print("Positive ROIs: ", positives)
    print("Negative ROIs: ", int(np.sum(class_ids == 0)))
    if class_ids.shape[0]:
        print("Positive Ratio: {:.2f}".format(positives / class_ids.shape[0]))
    return ax


def draw_box(image, box, color):
    """Draw a 2-pixel box outline into an image array, in place; returns it.

    image: [H, W, C] array. color: C values, e.g. RGB ints for uint8 images.
    box: (y1, x1, y2, x2) pixels, y2/x2 exclusive. Rows y1, y1+1 and y2, y2+1
        and columns x1, x1+1 and x2, x2+1 are set; the image clips the rest.
    """
    y1, x1, y2, x2 = (max(int(v), 0) for v in box)
    image[y1:y1 + 2, x1:x2] = color
    image[y2:y2 + 2, x1:x2 + 2] = color
    image[y1:y2, x1:x1 + 2] = color
    image[y1:y2, x2:x2 + 2] = color
    return image


def display_top_masks(image, mask, class_ids, class_names, limit=4):
    """Display the image and the masks of its `limit` largest classes.

    mask: [H, W, N] instance masks; class_ids: [N].
    Classes are ranked by total mask area; a panel shows all instances of a
    class, each with its own value; missing panels are titled "-".
    Returns the Figure.
    """
    class_ids = np.asarray(class_ids)
    to_display = [image]
    titles = ["H x W={}x{}".format(image.shape[0], image.shape[1])]
    unique_class_ids = np.unique(class_ids)
    mask_area = [np.sum(mask[:, :, class_ids == i]) for i in unique_class_ids]
    top_ids = [class_id for class_id, area in
               sorted(zip(unique_class_ids, mask_area), key=lambda r: r[1], reverse=True)
               if area > 0]
    for i in range(limit):
        class_id = top_ids[i] if i < len(top_ids) else -1
        class_masks = mask[:, :, class_ids == class_id]
        # Label each instance of the class with its own value 1..k.
        to_display.append(np.sum(class_masks * np.arange(1, class_masks.shape[-1] + 1), -1))
        titles.append(class_names[class_id] if class_id != -1 else "-")
    return display_images(to_display, titles=titles, cols=limit + 1, cmap="Blues_r")


def plot_precision_recall(AP, precisions, recalls):
    """Draw the precision-recall curve; returns the Axes.

    AP: average precision at IoU >= 0.5, shown in the title.
    precisions, recalls: lists of values.
    """
    _, ax = plt.subplots(1)
    ax.set_title("Precision-Recall Curve. AP@50 = {:.3f}".format(AP))
    ax.set_ylim(0, 1.1)
    ax.set_xlim(0, 1.1)
    ax.plot(recalls, precisions)
    return ax


def plot_overlaps(gt_class_ids, pred_class_ids, pred_scores,
                  overlaps, class_names, threshold=0.5):
    """Draw a grid showing how ground truth objects are classified.

    gt_class_ids: [G], pred_class_ids: [P] (zeros, i.e. padding, are dropped).
    pred_scores: [P] scores of the predicted classes.
    overlaps: [P, G] IoU of predictions and ground truth.
    threshold: IoU above which a cell reads "match" (same class) or "wrong".
    Returns the Axes.
    """
    gt_class_ids, pred_class_ids = np.asarray(gt_class_ids), np.asarray(pred_class_ids)
    gt_class_ids = gt_class_ids[gt_class_ids != 0]
    pred_class_ids = pred_class_ids[pred_class_ids != 0]

    fig, ax = plt.subplots(figsize=(12, 10))
    ax.imshow(overlaps, interpolation="nearest", cmap=plt.cm.Blues)
    ax.set_yticks(np.arange(len(pred_class_ids)),
                  ["{} ({:.2f})".format(class_names[int(class_id)], pred_scores[i])
                   for i, class_id in enumerate(pred_class_ids)])
    ax.set_xticks(np.arange(len(gt_class_ids)),
                  [class_names[int(class_id)] for class_id in gt_class_ids], rotation=90)

    text_thresh = overlaps.max() / 2. if overlaps.size else 0.
    for i, j in itertools.product(range(overlaps.shape[0]), range(overlaps.shape[1])):
        verdict = ""
        if overlaps[i, j] > threshold:
            verdict = "match" if gt_class_ids[j] == pred_class_ids[i] else "wrong"
        color = ("white" if overlaps[i, j] > text_thresh
                 else "black" if overlaps[i, j] > 0
                 else "grey")
        ax.text(j, i, "{:.3f}\n{}".format(overlaps[i, j], verdict),
                horizontalalignment="center", verticalalignment="center",
                fontsize=9, color=color)

    ax.set_xlabel("Ground Truth")
    ax.set_ylabel("Predictions")
    fig.tight_layout()
    return ax


def draw_boxes(image, boxes=None, refined_boxes=None,
               masks=None, captions=None, visibilities=None,
               title="", ax=None):
    """Draw boxes, refined boxes, captions and masks; returns the Axes.

    boxes: [N, (y1, x1, y2, x2)] image pixels; all-zero boxes are skipped.
    refined_boxes: like boxes, drawn solid and joined to the box's corner.
    masks: [H, W, N]. captions: N strings, placed on the refined box if any.
    visibilities: N values: 0 = faint gray (refined box hidden),
        1 = colored dotted (default), 2 = colored solid.
    ax: Axes to draw on; a figure is created if None.
    """
    if boxes is None and refined_boxes is None:
        raise ValueError("draw_boxes: give boxes, refined_boxes or both")
    n = boxes.shape[0] if boxes is not None else refined_boxes.shape[0]
    if ax is None:
        _, ax = plt.subplots(1, figsize=(12, 12))
    colors = random_colors(n)
    margin = image.shape[0] // 10
    _set_image_frame(ax, image.shape[0], image.shape[1], margin, title)

    styles = {0: ("dotted", 0.5), 1: ("dotted", 1), 2: ("solid", 1)}
    masked_image = image.astype(np.uint32)
    for i in range(n):
        visibility = visibilities[i] if visibilities is not None else 1
        if visibility not in styles:
            raise ValueError("draw_boxes: visibility must be 0, 1 or 2, got {!r}"
                             .format(visibility))
        style, alpha = styles[visibility]
        color = "gray" if visibility == 0 else colors[i]

        if boxes is not None:
            if not np.any(boxes[i]):
                continue
            y1, x1, y2, x2 = boxes[i]
            ax.add_patch(patches.Rectangle(
                (x1, y1), x2 - x1, y2 - y1, linewidth=2, alpha=alpha,
                linestyle=style, edgecolor=color, facecolor="none"))

        if refined_boxes is not None and visibility > 0:
            ry1, rx1, ry2, rx2 = refined_boxes[i].astype(np.int32)
            ax.add_patch(patches.Rectangle(
                (rx1, ry1), rx2 - rx1, ry2 - ry1, linewidth=2,
                edgecolor=color, facecolor="none"))
            if boxes is not None:
                ax.add_line(lines.Line2D([x1, rx1], [y1, ry1], color=color))

        if captions is not None:
            if refined_boxes is not None:
                # Caption the refined box (even when hidden), as the original.
                y1, x1 = refined_boxes[i][:2].astype(np.int32)
            ax.text(x1, y1, captions[i], size=11, verticalalignment="top",
                    color="w", backgroundcolor="none",
                    bbox={"facecolor": color, "alpha": 0.5, "pad": 2,
                          "edgecolor": "none"})

        if masks is not None:
            mask = masks[:, :, i]
            apply_mask(masked_image, mask, mcolors.to_rgb(color))
            for outline in _mask_outlines(mask, color):
                ax.add_patch(outline)
    ax.imshow(masked_image.astype(np.uint8))
    return ax


def display_table(table):
    """Display rows of values as a table; returns the HTML string.

    table: iterable of rows of values (str() of each; HTML in them is kept).
    Inside a Jupyter/IPython kernel the HTML is displayed; elsewhere a
    plain-text table, HTML tags removed, is printed.
    """
    rows = [[str(col) for col in row] for row in table]
    html = "<table>" + "".join(
        "<tr>" + "".join("<td>{:40}</td>".format(col) for col in row) + "</tr>"
        for row in rows) + "</table>"

    if _in_ipython_kernel():
        from IPython.display import HTML, display
        display(HTML(html))
    else:
        text_rows = [[re.sub(r"<[^>]*>", " ", col).strip() for col in row] for row in rows]
        widths = [max(len(row[c]) for row in text_rows if c < len(row))
                  for c in range(max((len(row) for row in text_rows), default=0))]
        for row in text_rows:
            print("  ".join(col.ljust(w) for col, w in zip(row, widths)).rstrip())
    return html



def display_weight_stats(model):
    """Display and return the shape, min, max and std of every weight.

    model: an object with get_trainable_layers() (the MaskRCNN wrapper) or a
        Keras model (layers with weights, nested models flattened).
    All-equal weights are flagged "*** dead?" except biases (usually zero at
    initialisation); values beyond +/-1000 are flagged "*** Overflow?".
    Returns the table: a list of rows, header first.
    """
    if hasattr(model, "get_trainable_layers"):
        layers = model.get_trainable_layers()
    else:
        layers = layers_with_weights(model)

    table = [["WEIGHT NAME", "SHAPE", "MIN", "MAX", "STD"]]
    for layer in layers:
        for variable, w in zip(layer.weights, layer.get_weights()):
            if not w.size:
                continue
            name = getattr(variable, "path", None) or variable.name
            is_bias = name.split("/")[-1].split(":")[0] == "bias"
            alert = ""
            if w.min() == w.max() and not is_bias:
                alert += "<span style='color:red'>*** dead?</span>"
            if np.abs(w.min()) > 1000 or np.abs(w.max()) > 1000:
                alert += "<span style='color:red'>*** Overflow?</span>"
            table.append([name + alert, str(w.shape), "{:+9.4f}".format(w.min()),
                          "{:+10.4f}".format(w.max()), "{:+9.4f}".format(w.std())])
    display_table(table)
    return table
