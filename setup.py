"""Packaging for keras-lesions.

The click application lives in the top-level ``cli/`` folder (the design card's
layout) but is installed under the unique import name ``keras_lesions_cli`` so
that no bare ``cli`` module lands in site-packages.
"""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
about = {}
exec((HERE / "keras_lesions" / "_version.py").read_text(), about)

setup(
    name="keras-lesions",
    version=about["__version__"],
    description=(
        "Liver-lesion CT classification with classic, GAN and disentangled-mixture "
        "augmentation (TensorFlow 2 / Keras 3), with a built-in CT phantom dataset."
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["keras_lesions", "keras_lesions.*"])
    + ["keras_lesions_cli", "keras_lesions.configs"],
    # The top-level cli/ and configs/ folders (the design card's layout) are
    # installed under unique names: no bare `cli` module in site-packages, and
    # the experiment configs travel with the package so `--config NAME.yaml`
    # works outside a checkout.
    package_dir={"keras_lesions_cli": "cli", "keras_lesions.configs": "configs"},
    package_data={"keras_lesions.configs": ["*.yaml", "README.md"],
                  "keras_lesions.reader_study": ["templates/*.html"]},
    install_requires=[
        "tensorflow>=2.21",
        "keras>=3.10",
        "numpy>=1.26",
        "scipy>=1.11",
        "opencv-python-headless>=4.8",
        "scikit-learn>=1.4",
        "scikit-image>=0.22",
        "click>=8.1",
        "h5py>=3.10",
        "pydicom>=3.0",
        "nibabel>=5.2",
        "matplotlib>=3.8",
        "pillow>=10.0",  # image headers read without decoding (matplotlib needs it too)
        "PyYAML>=6.0",
        "tqdm>=4.66",
        # the verdicts' exact McNemar and Wilson intervals (evaluate/stats.py)
        "statsmodels>=0.14",
        # TF 2.21 no longer pulls TensorBoard in; the training callbacks log to it.
        "tensorboard>=2.19",
        # `kl reader-study serve`: the reader study's local web application
        "flask>=3.1",  # 3.1: TRUSTED_HOSTS
    ],
    extras_require={
        "gpu": ["tensorflow[and-cuda]>=2.21"],
        # `kl experiment --ray`: runs as Ray tasks on a local or remote cluster.
        "ray": ["ray>=2.40"],
        # The test suite tests the Ray executor on a local Ray of 2 CPUs.
        # Selenium drives Debian's chromium + chromium-driver (never a downloaded
        # browser) in the reader study's browser test.
        "test": ["pytest>=8", "pydicom-data>=1.0", "tox>=4", "ray>=2.40", "selenium>=4.20"],
    },
    entry_points={"console_scripts": ["kl=keras_lesions_cli.main:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Medical Science Apps.",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
