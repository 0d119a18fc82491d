"""Installation script for mrcnn.

Runtime dependencies are read from requirements.txt so that `pip install .`
declares exactly what the package imports.
"""
import os
import re

from setuptools import find_packages, setup

HERE = os.path.abspath(os.path.dirname(__file__))


def read_requirements():
    with open(os.path.join(HERE, "requirements.txt")) as f:
        lines = (line.split("#", 1)[0].strip() for line in f)
        return [line for line in lines if line]


def read_version():
    with open(os.path.join(HERE, "mrcnn", "__init__.py")) as f:
        match = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M)
    if not match:
        raise RuntimeError("mrcnn/__init__.py does not define __version__")
    return match.group(1)


setup(
    name="mrcnn",
    version=read_version(),
    description="Mask R-CNN (and friends) for instance segmentation on Keras 3 / TensorFlow 2",
    long_description=open(os.path.join(HERE, "README.md")).read(),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["mrcnn", "mrcnn.*"]),
    python_requires=">=3.9",
    install_requires=read_requirements(),
    extras_require={
        "dev": ["pytest>=7.0", "pytest-timeout>=2.1",
                # tests/test_notebooks.py executes notebooks/
                "nbformat>=5.7", "nbclient>=0.7", "ipykernel>=6.0"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: MIT License",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
