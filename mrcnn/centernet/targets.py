"""
CenterNet's training targets for one image, in NumPy, after mmdetection's
``CenterNetUpdateHead`` (CenterNet2's "CenterNet-update"):
``_get_targets_single`` (box positives, box targets, Gaussian heatmaps)
and the candidate side of ``add_cls_pos_inds`` (the 3x3 neighbourhoods
whose extra classification positives the loss picks with the network's own
predictions, ``extra_positives``).

Frames (y first, like the rest of the package; the reference is x first):

* points: ``[M, (y, x)]`` pixels of the molded image, the centres of the
  feature-map cells, ``((row + 0.5) * stride, (col + 0.5) * stride)``,
  ordered level -> row -> column (P3 first);
* boxes: ``[N, (y1, x1, y2, x2)]`` pixels (``y2, x2`` the far edges, as
  ``data.load_image_gt`` gives them);
* distances: ``[..., (top, left, bottom, right)]`` from a point to the
  box sides, in units of the point's stride (the reference's ``(l, t, r,
  b)`` reordered y first); a box is ``(y - top * s, x - left * s, y +
  bottom * s, x + right * s)``.
"""

import numpy as np

INF = 1e9

# The 3x3 neighbourhood in the reference's order (row-major, centre 4).
NEIGHBOURS = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], np.int64)


def level_shapes(image_shape, strides):
    """[(height, width)] of each level: ceil(side / stride) (every
    stride-2 stage gives ceil(side / 2))."""
    height, width = int(image_shape[0]), int(image_shape[1])
    return [(-(-height // s), -(-width // s)) for s in strides]


def level_points(shapes, strides):
    """Points of every level: (points [M, (y, x)] float32 pixels, their
    strides [M] float32, their level [M] int)."""
    points, point_strides, levels = [], [], []
    for level, ((height, width), stride) in enumerate(zip(shapes, strides)):
        ys = (np.arange(height) + 0.5) * stride
        xs = (np.arange(width) + 0.5) * stride
        grid = np.stack(np.meshgrid(ys, xs, indexing="ij"), axis=-1).reshape(-1, 2)
        points.append(grid)
        point_strides.append(np.full(len(grid), stride, np.float64))
        levels.append(np.full(len(grid), level, np.int64))
    return (np.concatenate(points).astype(np.float32),
            np.concatenate(point_strides).astype(np.float32), np.concatenate(levels))


def heatmap_radius2(boxes, min_overlap=0.8, min_radius=4):
    """[N] squared Gaussian radii: max(2 * delta^2 * area, min_radius^2),
    delta = (1 - min_overlap) / (1 + min_overlap)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    delta = (1.0 - min_overlap) / (1.0 + min_overlap)
    return np.maximum(delta * delta * 2.0 * area, float(min_radius) ** 2)


def _centres(boxes):
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)


def _half_diagonal(boxes):
    return np.sqrt((boxes[:, 2] - boxes[:, 0]) ** 2 + (boxes[:, 3] - boxes[:, 1]) ** 2) / 2


def _normalised_distances(points, point_strides, boxes, radius2):
    """[M, N] squared distance of each point to each box's centre divided by
    the box's r^2, 0 where the point is the centre's cell on its level."""
    centres = _centres(boxes)                                             # [N, 2]
    s = point_strides.astype(np.float64)[:, None, None]
    discrete = np.floor(centres[None] / s) * s + s / 2                    # [M, N, 2]
    peak = np.all(points[:, None, :] == discrete, axis=-1)
    dist = np.sum((points[:, None, :].astype(np.float64) - centres[None]) ** 2, axis=-1)
    dist[peak] = 0.0
    return dist / radius2[None], discrete


def box_targets(points, point_strides, point_ranges, boxes, radius2):
    """Box positives and their targets (``_get_targets_single``).

    A point is a positive of a box when it lies strictly inside the box,
    in the 3x3 neighbourhood of the cell holding the box's centre on the
    point's level (``|point - discretised centre| <= stride`` per axis), and
    the box's half diagonal is within the level's regress range (both ends
    inclusive, so a box can be a positive on two levels). A point claimed
    by several boxes takes the one with the smallest normalised distance
    (squared distance to its centre / its r^2, 0 at its centre cell; the
    first box on an exact tie).

    points [M, 2], point_strides [M], point_ranges [M, 2] (low, high),
    boxes [N, 4], radius2 [N].
    Returns (targets [M, 4] float32 distances (top, left, bottom, right) in
    stride units, -1 rows for non-positives; assigned box [M] int, -1 for
    none).
    """
    count = len(points)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return np.full((count, 4), -1, np.float32), np.full(count, -1, np.int64)
    p = points.astype(np.float64)
    distances = np.stack([p[:, None, 0] - boxes[None, :, 0], p[:, None, 1] - boxes[None, :, 1],
                          boxes[None, :, 2] - p[:, None, 0], boxes[None, :, 3] - p[:, None, 1]],
                         axis=-1)                                         # [M, N, 4]
    inside = distances.min(axis=-1) > 0
    normalised, discrete = _normalised_distances(points, point_strides, boxes, radius2)
    s = point_strides.astype(np.float64)[:, None]
    near = np.all(np.abs(p[:, None, :] - discrete) <= s[..., None], axis=-1)
    crit = _half_diagonal(boxes)[None]
    in_range = (crit >= point_ranges[:, :1]) & (crit <= point_ranges[:, 1:])
    normalised = np.where(inside & near & in_range, normalised, INF)
    assigned = np.argmin(normalised, axis=1)
    positive = normalised[np.arange(count), assigned] < INF
    targets = distances[np.arange(count), assigned] / s
    targets[~positive] = -1
    return targets.astype(np.float32), np.where(positive, assigned, -1)


def heatmaps(points, point_strides, boxes, class_ids, num_classes, radius2):
    """[M, num_classes - 1] float32 class heatmaps
    (``_create_heatmaps_from_dist``): per class, the maximum over its
    boxes of exp(-normalised distance) (exactly 1 at a box's centre cell on
    every level), values below 1e-4 set to 0. Column c is class id c + 1.
    An image without boxes gets zeros (the reference fills it with
    ``num_classes``, a label-style fill that gives its negatives a weight of
    (1 - 80)^4 in the focal loss: a bug, fixed here as CenterNet2 has it)."""
    out = np.zeros((len(points), num_classes - 1), np.float32)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return out
    normalised, _ = _normalised_distances(points, point_strides, boxes, radius2)
    class_ids = np.asarray(class_ids).reshape(-1)
    for class_id in np.unique(class_ids):
        values = np.exp(-normalised[:, class_ids == class_id].min(axis=1))
        values[values < 1e-4] = 0.0
        out[:, class_id - 1] = values
    return out


def centre_candidates(boxes, shapes, strides, ranges):
    """The 3x3 neighbourhoods of each box's centre cell on every level: the
    candidates of the extra classification positives
    (``_get_center3x3_region_index_targets``).

    Returns, with K = 9 * levels candidates per box, in level -> neighbour
    order (neighbours row-major, the centre cell 5th):
      ``index`` [N, K] int: the candidate's point index (0 when invalid);
      ``target`` [N, K, 4] float32: the box's distances from the candidate,
      stride units, clamped at 0;
      ``valid`` [N, K] bool: the candidate is on the feature map and inside
      the box (its sides included);
      ``forced`` [N, K] bool: the centre cell of a level whose regress range
      holds the box and whose cell centre lies inside the box (sides
      included); its ranking loss is 0, so it is always a positive.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    n, levels = len(boxes), len(strides)
    k = 9 * levels
    index = np.zeros((n, k), np.int64)
    target = np.zeros((n, k, 4), np.float32)
    valid = np.zeros((n, k), bool)
    forced = np.zeros((n, k), bool)
    if n == 0:
        return index, target, valid, forced
    centres = _centres(boxes)
    crit = _half_diagonal(boxes)
    start = 0
    for level, ((height, width), stride) in enumerate(zip(shapes, strides)):
        cells = np.floor(centres / stride).astype(np.int64)                  # [N, (row, col)]
        centre_points = cells * stride + stride // 2
        to_sides = np.stack([centre_points[:, 0] - boxes[:, 0], centre_points[:, 1] - boxes[:, 1],
                             boxes[:, 2] - centre_points[:, 0],
                             boxes[:, 3] - centre_points[:, 1]], axis=1) / stride   # [N, 4]
        low, high = ranges[level]
        assigned_level = (to_sides.min(axis=1) >= 0) & (crit >= low) & (crit <= high)
        rows = cells[:, :1] + NEIGHBOURS[None, :, 0]                         # [N, 9]
        cols = cells[:, 1:] + NEIGHBOURS[None, :, 1]
        shift = np.stack([-NEIGHBOURS[:, 0], -NEIGHBOURS[:, 1], NEIGHBOURS[:, 0],
                          NEIGHBOURS[:, 1]], axis=1)                          # [9, 4]
        level_target = to_sides[:, None, :] - shift[None]                     # [N, 9, 4]
        on_map = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        level_valid = on_map & (level_target.min(axis=-1) >= 0)
        columns = slice(9 * level, 9 * level + 9)
        index[:, columns] = np.where(level_valid, start + rows * width + cols, 0)
        target[:, columns] = np.maximum(level_target, 0)
        valid[:, columns] = level_valid
        forced[:, 9 * level + 4] = assigned_level
        start += height * width
    return index, target, valid, forced


def giou_loss(pred, target, eps=1e-6):
    """1 - GIoU of boxes given as distances (top, left, bottom, right) from
    the same point (translation does not change it): [..., 4] -> [...].
    As mmdetection's ``bbox_overlaps(mode="giou")`` with its eps."""
    pred = np.asarray(pred, np.float64)
    target = np.asarray(target, np.float64)
    area_p = (pred[..., 0] + pred[..., 2]) * (pred[..., 1] + pred[..., 3])
    area_t = (target[..., 0] + target[..., 2]) * (target[..., 1] + target[..., 3])
    overlap = np.maximum(np.minimum(pred[..., 0], target[..., 0])
                         + np.minimum(pred[..., 2], target[..., 2]), 0) * \
        np.maximum(np.minimum(pred[..., 1], target[..., 1])
                   + np.minimum(pred[..., 3], target[..., 3]), 0)
    union = np.maximum(area_p + area_t - overlap, eps)
    enclose = np.maximum((np.maximum(pred[..., 0], target[..., 0])
                          + np.maximum(pred[..., 2], target[..., 2]))
                         * (np.maximum(pred[..., 1], target[..., 1])
                            + np.maximum(pred[..., 3], target[..., 3])), eps)
    return 1.0 - (overlap / union - (enclose - union) / enclose)


def extra_positives(candidate_loss, valid, forced, topk=9, threshold=0.2):
    """Which candidates become classification positives
    (``add_cls_pos_inds``): per box, the candidates whose ranking loss
    (1 - GIoU of the predicted box at the candidate against the box) is
    strictly below min(its topk-th smallest loss, threshold); invalid
    candidates never, forced ones (loss 0) whenever the bound is above 0.

    candidate_loss, valid, forced: [N, K]. Returns [N, K] bool.
    """
    loss = np.where(valid, np.asarray(candidate_loss, np.float64), INF)
    loss = np.where(forced, 0.0, loss)
    if loss.shape[0] == 0:
        return np.zeros(loss.shape, bool)
    kth = np.sort(loss, axis=1)[:, min(topk, loss.shape[1]) - 1]
    bound = np.minimum(kth, threshold)
    return loss < bound[:, None]


def build_targets(image_shape, class_ids, boxes, num_classes, strides, ranges, min_radius=4,
                  min_overlap=0.8):
    """The per-point targets of one molded image, from all its instances.

    class_ids [N] (crowds, negative, and background are left out), boxes
    [N, (y1, x1, y2, x2)] pixels; strides and ranges per level.
    Returns a dict: ``heatmap`` [M, num_classes - 1] float32 and
    ``box_target`` [M, 4] float32 (stride units, -1 rows for
    non-positives).
    """
    class_ids = np.asarray(class_ids).reshape(-1).astype(np.int64)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    keep = class_ids > 0
    class_ids, boxes = class_ids[keep], boxes[keep]
    shapes = level_shapes(image_shape, strides)
    points, point_strides, levels = level_points(shapes, strides)
    point_ranges = np.asarray(ranges, np.float64)[levels]
    radius2 = heatmap_radius2(boxes, min_overlap, min_radius)
    box_target, _ = box_targets(points, point_strides, point_ranges, boxes, radius2)
    heatmap = heatmaps(points, point_strides, boxes, class_ids, num_classes, radius2)
    return {"heatmap": heatmap, "box_target": box_target}


def candidate_targets(image_shape, class_ids, boxes, strides, ranges, max_instances):
    """The extra-positive candidates of the ground-truth slots of one image:
    slot i holds instance i (the caller's selection, at most
    ``max_instances``, e.g. ``data.select_instances``), zero padded; slots of
    crowds (negative ids) and padding have no valid candidate.

    Returns a dict (G = max_instances, K = 9 x levels):
    ``candidate_index`` [G, K] int32, ``candidate_target`` [G, K, 4]
    float32, ``candidate_valid`` and ``candidate_forced`` [G, K] uint8 (see
    centre_candidates).
    """
    class_ids = np.asarray(class_ids).reshape(-1).astype(np.int64)[:max_instances]
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)[:max_instances]
    n, g, k = len(class_ids), max_instances, 9 * len(strides)
    index, target, valid, forced = centre_candidates(
        boxes, level_shapes(image_shape, strides), strides, ranges)
    real = (class_ids > 0)[:, None]

    def pad(values, dtype):
        out = np.zeros((g,) + values.shape[1:], dtype)
        out[:n] = values
        return out

    return {"candidate_index": pad(index.reshape(n, k), np.int32),
            "candidate_target": pad(target.reshape(n, k, 4), np.float32),
            "candidate_valid": pad((valid & real).reshape(n, k), np.uint8),
            "candidate_forced": pad((forced & real).reshape(n, k), np.uint8)}
