from setuptools import find_packages, setup

setup(
    name="tfrobust",
    version="0.1.0",
    description="Adversarial training and robustness evaluation for Keras 3 / TensorFlow",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["tfrobust", "tfrobust.*"]),
    package_data={"tfrobust.data": ["bundled/*.npz"]},
    # The `tfrobust` command's parser: a top-level module, so that `tfrobust --help` does not
    # import the tfrobust package (whose __init__ imports TensorFlow).
    py_modules=["tfrobust_cli"],
    install_requires=[
        "tensorflow>=2.20",
        "keras>=3.0,<4",
        "tensorflow-datasets",
        "numpy",
        "matplotlib",
        # TF 2.21 no longer installs it, and Keras' TensorBoard callback needs it.
        "tensorboard",
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-xdist", "importlib_resources"],
        "serving": ["tensorflow-serving-api"],
    },
    entry_points={"console_scripts": ["tfrobust=tfrobust_cli:main"]},
)
