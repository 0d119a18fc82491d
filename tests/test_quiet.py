"""A quiet start: the entry points hide TensorFlow's start-up and C++ log
lines unless the user set TF_CPP_MIN_LOG_LEVEL."""
import os
import re
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What TensorFlow printed before the first epoch of the quick start.
NOISE = re.compile(r"PredictCost|cuInit|cuda_platform|cudart_stub|Could not find cuda drivers|"
                   r"oneDNN|cpu_feature_guard|absl::InitializeLog|AutoGraph could not")


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "MRCNN_QUIET_TENSORFLOW")}
    env.update(extra)
    return env


def _run(code, env):
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)


def test_quiet_tensorflow_hides_import_lines_and_the_user_setting_wins():
    code = ("from mrcnn.quiet import quiet_tensorflow\n"
            "print(quiet_tensorflow())\n"
            "import tensorflow as tf\n"
            "tf.config.list_physical_devices()\n")
    quiet = _run(code, _clean_env())
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.strip() == "True"
    assert not NOISE.search(quiet.stderr), quiet.stderr
    # The user asked for TensorFlow's logs: left alone.
    loud = _run(code, _clean_env(TF_CPP_MIN_LOG_LEVEL="0"))
    assert loud.returncode == 0, loud.stderr
    assert loud.stdout.strip() == "False"


def test_import_failure_shows_everything_captured():
    code = ("import sys, os\n"
            "from mrcnn import quiet\n"
            "os.write(2, b'I0000 00:00 noise.cc:1] informative\\n')\n"
            "try:\n"
            "    quiet._import_filtered('module_that_does_not_exist_xyz')\n"
            "except ImportError:\n"
            "    print('raised')\n")
    result = _run(code, _clean_env())
    assert result.stdout.strip() == "raised"


@pytest.mark.slow
def test_quick_start_prints_no_tensorflow_noise(tmp_path):
    """The README's quick start, word for word, up to the first training
    step (more than its first 50 lines: the layer list is long, and
    grappler's PredictCost lines came after it) holds none of TensorFlow's
    start-up lines."""
    process = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "samples", "shapes", "shapes.py"), "train"],
        cwd=str(tmp_path), env=_clean_env(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)
    output = b""
    deadline = time.time() + 240
    try:
        os.set_blocking(process.stdout.fileno(), False)
        while time.time() < deadline and process.poll() is None:
            chunk = process.stdout.read()
            if chunk:
                output += chunk
            # The first step's progress line comes after the graph is built,
            # traced and optimised: every start-up message is out by then.
            if re.search(rb"1/\d+.*loss", output):
                break
            time.sleep(0.5)
    finally:
        process.kill()
        process.wait()
    text = output.decode("utf8", errors="replace")
    assert re.search(r"1/\d+.*loss", text), text[-2000:]
    lines = re.split(r"[\r\n]+", text)
    assert len(lines) > 50
    noisy = [line for line in lines if NOISE.search(line)]
    assert not noisy, noisy
