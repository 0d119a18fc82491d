"""What the benchmarks ran on, for the ``machine`` section of their JSON.

CPU model and the instruction-set extensions that decide convolution speed
(AVX-512, AVX512-BF16, AMX) are read from /proc/cpuinfo where it exists:
the same code runs 2-3x faster in bfloat16 on a CPU with AMX than without,
so a figure means little without them.
"""

import importlib.metadata
import os
import platform

_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def machine_info():
    """{"platform", "cpus", "python", "cpu_model", "cpu_features", "tensorflow"}."""
    info = {"platform": platform.platform(), "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "cpu_model": platform.processor() or platform.machine(), "cpu_features": []}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            info["cpu_model"] = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
            info["cpu_features"] = [f for f in _FEATURES if f in flags]
            break
    try:
        info["tensorflow"] = importlib.metadata.version("tensorflow")
    except importlib.metadata.PackageNotFoundError:
        info["tensorflow"] = None
    return info
