"""Load a sample script (samples/ holds scripts, not a package) as a module
for the learning benchmarks."""

import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_sample(relative_path, module_name):
    """Import ``ROOT/relative_path`` as ``module_name`` and return it."""
    path = os.path.join(ROOT, relative_path)
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
