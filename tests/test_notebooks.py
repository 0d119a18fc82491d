"""The notebooks of notebooks/: each runs headless from top to bottom in quick
mode (MRCNN_QUICK=1) without an error, and the values it computes are checked
(each notebook ends with a cell that prints a one-line JSON summary). The
committed notebooks carry no outputs.

The kernel is this interpreter (a kernelspec written for the test), started in
a temporary working directory with MRCNN_ROOT pointing at this checkout and
MRCNN_LOGS at a temporary logs directory shared by the notebooks of this
module, in the order of NOTEBOOKS: train_shapes writes the checkpoint that
inspect_weights, demo and inspect_model (MRCNN_WEIGHTS=last) then load, which
spares them the training they would otherwise do (graph tracing makes even two
steps cost tens of seconds). Run alone, inspect_weights shows initial weights
and demo and inspect_model train a few steps.

The notebooks draw with the inline backend (`%matplotlib inline`, Agg-based,
no display needed); MPLBACKEND=Agg keeps anything drawn before it headless
too. MRCNN_COCO_WEIGHTS points at a missing file so that a mask_rcnn_coco.h5
in the checkout does not turn the demo into a ResNet-101 run.
"""
import glob
import json
import os
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(ROOT, "notebooks")
# Execution order matters (see the module docstring).
NOTEBOOKS = ["inspect_data", "train_shapes", "inspect_weights", "demo", "inspect_model",
             "inspect_yolact", "inspect_centernet"]
KERNEL_NAME = "mrcnn-notebook-tests"
# Environment variables the notebooks read; the tests set their own values.
NOTEBOOK_VARIABLES = ["MRCNN_QUICK", "MRCNN_ROOT", "MRCNN_LOGS", "MRCNN_WEIGHTS",
                      "MRCNN_DATASET", "MRCNN_NUCLEUS_DIR", "MRCNN_INIT_WITH",
                      "MRCNN_COCO_WEIGHTS"]


def notebook_path(name):
    return os.path.join(NOTEBOOK_DIR, name + ".ipynb")


def read_notebook(name):
    with open(notebook_path(name), encoding="utf-8") as f:
        return nbformat.read(f, as_version=4)


# ---------------------------------------------------------------------------
# The committed files
# ---------------------------------------------------------------------------

def test_every_notebook_is_tested():
    found = sorted(f[:-len(".ipynb")] for f in os.listdir(NOTEBOOK_DIR)
                   if f.endswith(".ipynb"))
    assert found == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_no_outputs(name):
    nb = read_notebook(name)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code_cells
    for cell in code_cells:
        assert cell.outputs == [], "{}: a cell has outputs".format(name)
        assert cell.execution_count is None, "{}: a cell has an execution count".format(name)
    # Quick mode is a parameter of every notebook, read from the environment.
    parameters = [cell for cell in code_cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1 and "MRCNN_QUICK" in parameters[0].source
    # The package is imported as installed, never from a path added by hand.
    assert not any("sys.path" in cell.source for cell in code_cells)


# ---------------------------------------------------------------------------
# Execution
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A kernelspec that runs ipykernel with this interpreter, on JUPYTER_PATH."""
    jupyter_dir = tmp_path_factory.mktemp("jupyter")
    spec_dir = jupyter_dir / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "mrcnn notebook tests", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    previous = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        [str(jupyter_dir)] + ([previous] if previous else []))
    yield KERNEL_NAME
    if previous is None:
        del os.environ["JUPYTER_PATH"]
    else:
        os.environ["JUPYTER_PATH"] = previous


@pytest.fixture(scope="module")
def logs_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("logs"))


def execute(name, kernel_name, workdir, logs_dir, extra_env=()):
    """Run the notebook in quick mode; returns it with its outputs."""
    nb = read_notebook(name)
    env = {k: v for k, v in os.environ.items() if k not in NOTEBOOK_VARIABLES}
    env.update({
        "MRCNN_QUICK": "1",
        "MRCNN_ROOT": ROOT,
        "MRCNN_LOGS": logs_dir,
        "MRCNN_COCO_WEIGHTS": os.path.join(str(workdir), "no_coco_weights.h5"),
        "MPLBACKEND": "Agg",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    })
    env.update(extra_env)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name=kernel_name,
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute(env=env)
    return nb


def summary_of(nb):
    """The JSON object the last code cell prints."""
    cell = [cell for cell in nb.cells if cell.cell_type == "code"][-1]
    text = "".join(o.get("text", "") for o in cell.outputs
                   if o.output_type == "stream" and o.name == "stdout")
    return json.loads(text.strip().splitlines()[-1])


def figures_of(nb):
    return sum(1 for cell in nb.cells if cell.cell_type == "code"
               for o in cell.outputs if "image/png" in o.get("data", {}))


def check_inspect_data(s):
    # 128 px shapes images; anchors at strides 4..64, three ratios.
    assert s["dataset"] == "shapes" and s["images"] == 40 and s["num_classes"] == 4
    assert s["image_shape"] == [128, 128, 3]
    assert s["anchors_per_level"] == [3072, 768, 192, 48, 12]
    assert s["anchors"] == 4092
    assert s["mini_mask_shape"] == [56, 56] and s["mini_mask_iou_min"] > 0.9
    assert s["positive_anchors"] >= 1
    assert s["rpn_match_shape"] == [2, 4092, 1]
    assert s["rois_shape"] == [2, 32, 4]
    assert s["mask_targets_shape"] == [2, 32, 28, 28, 4]
    assert 1 <= s["positive_rois"] <= int(32 * 0.33)


def check_train_shapes(s):
    assert s["init_with"] == "random"
    # One epoch of heads, then all layers up to epoch 2: two checkpoints.
    assert s["epochs"] == 2 and s["checkpoint"].endswith("mask_rcnn_shapes_0002.h5")
    assert s["losses_finite"]
    assert s["images"] == 4 and 0.0 <= s["mAP"] <= 1.0 and 0.0 <= s["mAP_range"] <= s["mAP"]
    assert 0 <= s["detections"] <= 20


def check_inspect_weights(s):
    # Loads train_shapes' checkpoint when it ran first; initial weights otherwise.
    assert s["weights"] is None or s["weights"].endswith(".h5")
    assert s["all_finite"] and s["overflow"] == 0
    assert s["weight_tensors"] > 100 and s["parameters"] > 1000000
    assert s["histogram_layers"] == 6 and 6 <= s["histograms"] <= 12


def check_demo(s):
    assert s["model"] == "shapes" and s["weights"].endswith(".h5")
    assert s["images"] == 2 and s["roi_dtype"] == "int32"
    for shape, count in zip(s["mask_shapes"], s["detections"]):
        assert shape == [128, 128, count] and count <= 20


def check_inspect_model(s):
    assert s["weights"].endswith(".h5")
    assert 0.0 <= s["mAP"] <= 1.0 and s["ap_images"] == 4
    assert s["anchors"] == 4092
    assert s["rpn_class_shape"] == [1, 4092, 2]
    assert s["proposals_shape"] == [1, 250, 4]  # POST_NMS_ROIS_INFERENCE
    assert 1 <= s["post_nms_kept"] <= 250
    # The mask head runs on the slots that hold detections (at least one).
    assert s["mask_shape"] == [1, max(s["det_count"], 1), 28, 28, 4]  # MASK_SHAPE, classes
    assert 0 <= s["det_count"] <= 20 and 0 <= s["detections"] <= 20
    assert s["activations"] == {"input_image": [1, 128, 128, 3], "res2b_out": [1, 32, 32, 64],
                                "res4b_out": [1, 8, 8, 256], "rpn_bbox": [1, 4092, 4],
                                "roi": [1, 250, 4]}


def check_inspect_yolact(s):
    # Trained here (two steps): a YOLACT checkpoint of its own.
    assert os.path.basename(s["weights"]).startswith("yolact_shapes_")
    # 128 px: P3-P7 of 16, 8, 4, 2, 1 cells, 3 priors each; 32 prototypes at 32 x 32.
    assert s["priors"] == 3 * (256 + 64 + 16 + 4 + 1) == 1023
    assert s["prototypes_shape"] == [1, 32, 32, 32]
    assert s["coefficients_shape"] == [1, 1023, 32]
    assert s["class_scores_shape"] == [1, 1023, 4]
    assert 0 <= s["detections"] <= 20
    assert s["top_detection_is_best_prior"] in (True, None)
    assert s["mask_pixels_after_crop"] <= s["mask_pixels_before_crop"]
    # Every object is forced onto at least one prior.
    assert s["objects"] >= 1 and s["objects_with_a_positive"] == s["objects"]
    assert s["positives"] >= s["objects"]


def check_inspect_centernet(s):
    assert os.path.basename(s["weights"]).startswith("centernet_shapes_")
    # 128 px: P3-P7 of 16, 8, 4, 2, 1 cells; heatmaps of the 3 classes.
    assert s["level_shapes"] == [[16, 16], [8, 8], [4, 4], [2, 2], [1, 1]]
    assert s["heatmap_shapes"] == [[1, n, n, 3] for n in (16, 8, 4, 2, 1)]
    # Every object peaks at exactly 1 on every level (objects of a class may share a cell).
    assert all(1 <= peaks <= s["objects"] for peaks in s["target_peaks"])
    # The sample's ranges put every shape on P3 or P4, where its centre cell is inside it.
    assert s["objects_with_box_positives"] == s["objects"] >= 1
    assert s["box_positives"] >= s["objects"]
    assert s["mask_shape"] == [128, 128, s["detections"]] and s["detections"] <= 20


CHECKS = {"inspect_data": (check_inspect_data, 10), "train_shapes": (check_train_shapes, 6),
          "inspect_weights": (check_inspect_weights, 1), "demo": (check_demo, 2),
          "inspect_model": (check_inspect_model, 15), "inspect_yolact": (check_inspect_yolact, 5),
          "inspect_centernet": (check_inspect_centernet, 3)}


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_quick_mode(name, kernel, logs_dir, tmp_path):
    extra_env = {}
    if name == "inspect_model" and glob.glob(os.path.join(logs_dir, "shapes*", "*.h5")):
        extra_env["MRCNN_WEIGHTS"] = "last"  # train_shapes' checkpoint
    nb = execute(name, kernel, tmp_path, logs_dir, extra_env)
    check, min_figures = CHECKS[name]
    check(summary_of(nb))
    assert figures_of(nb) >= min_figures
