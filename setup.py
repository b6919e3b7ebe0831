"""The package's file layout; its metadata is in pyproject.toml.

The layout is here rather than in pyproject.toml because it is computed: the
packages found under tfrobust/, plus the repository's top-level recipes/
folder installed as `tfrobust.recipes`, so that `tfrobust train NAME` and
`tfrobust main` find the recipes after a plain (non-editable) install, and the
top-level saved_models/ folder as `tfrobust.saved_models`, so that the model zoo
(`tfrobust.zoo`) finds the shipped models.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["tfrobust", "tfrobust.*"]) + ["tfrobust.recipes", "tfrobust.saved_models"],
    package_dir={"tfrobust.recipes": "recipes", "tfrobust.saved_models": "saved_models"},
    package_data={
        "tfrobust": ["zoo_index.json"],
        "tfrobust.data": ["bundled/*.npz"],
        "tfrobust.recipes": ["README.md"],
        # The shipped models, so that `tfrobust.zoo.load(NAME)` works from a wheel; only whole
        # versions (numbered directories), never an export's temporary directory.
        "tfrobust.saved_models": ["models.config", "*/[0-9]*/saved_model.pb", "*/[0-9]*/fingerprint.pb",
                                  "*/[0-9]*/metadata.json", "*/[0-9]*/variables/*", "*/[0-9]*/assets/*"],
    },
    # The `tfrobust` command's parser: a top-level module, so that `tfrobust --help` does not
    # import the tfrobust package (whose __init__ imports TensorFlow).
    py_modules=["tfrobust_cli"],
)
