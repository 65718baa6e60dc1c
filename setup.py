"""Package discovery, plus the one package whose files live outside lia_upscale/: the shipped weights.

Everything else is declared in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["lia_upscale", "lia_upscale.*"]), "lia_upscale.weights"],
    package_dir={"lia_upscale.weights": "weights"},
)
