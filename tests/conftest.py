"""Shared pytest set-up and helpers.

* the ``slow`` marker: tests that run a real script or train for more than a
  few steps (deselect with ``-m "not slow"``);
* ``load_sample(name)``: a sample script (``samples/`` is not a package) as
  a fresh module, the one loader every test uses.
"""
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SAMPLES = {
    "shapes": os.path.join("samples", "shapes", "shapes.py"),
    "coco": os.path.join("samples", "coco.py"),
    "balloon": os.path.join("samples", "balloon", "balloon.py"),
    "nucleus": os.path.join("samples", "nucleus", "nucleus.py"),
}


def load_sample(name, module_name=None):
    """``samples/<...>/<name>.py`` executed as a new module named
    ``module_name`` (default ``<name>_sample``)."""
    path = os.path.join(ROOT, SAMPLES[name])
    spec = importlib.util.spec_from_file_location(module_name or name + "_sample", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: runs a real script or trains for more than a few steps "
                   "(deselect with -m 'not slow')")
