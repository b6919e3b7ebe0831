"""The package's file layout; its metadata is in pyproject.toml.

The layout is here rather than in pyproject.toml because it is computed: the
packages found under tfrobust/, plus the repository's top-level recipes/
folder installed as `tfrobust.recipes`, so that `tfrobust train NAME` and
`tfrobust main` find the recipes after a plain (non-editable) install.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["tfrobust", "tfrobust.*"]) + ["tfrobust.recipes"],
    package_dir={"tfrobust.recipes": "recipes"},
    package_data={"tfrobust.data": ["bundled/*.npz"], "tfrobust.recipes": ["README.md"]},
    # The `tfrobust` command's parser: a top-level module, so that `tfrobust --help` does not
    # import the tfrobust package (whose __init__ imports TensorFlow).
    py_modules=["tfrobust_cli"],
)
