"""The package's layout holds to its architecture: module-level imports
form no cycle, only Mask R-CNN's own package and the front door import
Mask R-CNN's internals, and no module grows past ~700 lines."""
import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mrcnn")
MAX_LINES = 700
# Modules allowed to import mrcnn.maskrcnn: its own, and the reference's
# front door (mrcnn.model re-exports the names the original's model.py had).
MASKRCNN_IMPORTERS = ("mrcnn.maskrcnn", "mrcnn.model")


def _modules():
    """{dotted name: path} of every module of the package."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            parts = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _module_level_imports(path, modules):
    """Modules of the package that ``path`` imports at module level
    (imports inside functions run later and cannot make an import cycle).
    Importing ``a.b.c`` imports the packages ``a.b`` and ``a`` first."""
    tree = ast.parse(open(path).read())
    targets = set()
    for node in tree.body:
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + ["{}.{}".format(node.module, a.name) for a in node.names]
        for name in names:
            while name:
                if name in modules:
                    targets.add(name)
                name = name.rpartition(".")[0]
    return targets


@pytest.fixture(scope="module")
def graph():
    modules = _modules()
    return {name: _module_level_imports(path, modules) - {name}
            for name, path in modules.items()}


def test_no_import_cycle(graph):
    # A package importing its own submodules is how packages work; a
    # submodule importing its package first is Python's doing. Cycles are
    # looked for among modules that are not in such a parent/child pair.
    def related(a, b):
        return a.startswith(b + ".") or b.startswith(a + ".")

    state, stack = {}, []

    def visit(name):
        state[name] = "open"
        stack.append(name)
        for target in sorted(graph[name]):
            if related(name, target):
                continue
            if state.get(target) == "open":
                cycle = stack[stack.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_only_mask_rcnn_imports_its_internals(graph):
    offenders = sorted(
        "{} imports {}".format(name, target)
        for name, targets in graph.items() for target in targets
        if target.startswith("mrcnn.maskrcnn")
        and not any(name == allowed or name.startswith(allowed + ".")
                    for allowed in MASKRCNN_IMPORTERS))
    assert not offenders, offenders


def test_no_module_is_too_long():
    long_files = {name: sum(1 for _ in open(path))
                  for name, path in _modules().items()}
    too_long = {name: n for name, n in long_files.items() if n > MAX_LINES}
    assert not too_long, too_long


def test_the_graph_sees_real_imports(graph):
    # The checks above would pass on an empty graph: make sure they read it.
    assert "mrcnn.maskrcnn.model" in graph["mrcnn.model"]
    assert "mrcnn.modes" in graph["mrcnn.config"]
    assert "mrcnn.weights.hdf5" in graph["mrcnn.weights.loader"]


# Names the front doors exported before the package was laid out by concern
# (old imports must keep working).
FRONT_DOOR_NAMES = {
    "mrcnn.model": [
        'BatchNorm', 'DetectionLayer', 'DetectionModel', 'DetectionTargetLayer',
        'LOSS_NAMES', 'LossLayer', 'MaskRCNN', 'ModelBase', 'NormBoxes',
        'PROPOSAL_STAGES', 'ProposalLayer', 'ProposalStage', 'PyramidROIAlign',
        'RoiDistributed', 'SliceRois', 'apply_box_deltas_graph',
        'build_detection_targets', 'build_fpn_mask_graph', 'build_rpn_model',
        'build_rpn_targets', 'clip_boxes_graph', 'compose_image_meta',
        'compute_backbone_shapes', 'conv_block', 'create_model', 'data_generator',
        'denorm_boxes_graph', 'fpn_classifier_graph', 'fpn_graph', 'generate_random_rois',
        'identity_block', 'load_image_gt', 'log', 'mold_image', 'mrcnn_bbox_loss_graph',
        'mrcnn_class_loss_graph', 'mrcnn_mask_loss_graph', 'norm_boxes_graph',
        'overlaps_graph', 'parse_image_meta', 'parse_image_meta_graph', 'register_model',
        'resnet_graph', 'rpn_bbox_loss_graph', 'rpn_class_loss_graph', 'rpn_graph',
        'select_instances', 'smooth_l1_loss', 'trim_zeros_graph', 'unmold_image'],
    "mrcnn.config": ["AVAILABLE_MODELS", "BACKBONES", "Config", "ConfigError",
                     "DERIVED_ATTRIBUTES", "LOSS_NAMES", "RESERVED_MODELS", "RESIZE_MODES"],
}


@pytest.mark.parametrize("module_name", sorted(FRONT_DOOR_NAMES))
def test_front_doors_keep_their_names(module_name):
    import importlib
    module = importlib.import_module(module_name)
    missing = [name for name in FRONT_DOOR_NAMES[module_name] if not hasattr(module, name)]
    assert not missing, missing
