"""The deployment files (docs/deploy) are well-formed and point at what saved_models/ ships.

They are not run here (no Docker engine or Kubernetes cluster): this checks their structure.
"""

import os
import re

import pytest

yaml = pytest.importorskip("yaml")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(REPO, "docs", "deploy")
SAVED = os.path.join(REPO, "saved_models")


def _shipped():
    return sorted(d for d in os.listdir(SAVED) if os.path.isdir(os.path.join(SAVED, d))
                  and any(v.isdigit() for v in os.listdir(os.path.join(SAVED, d))))


def test_models_config_lists_every_shipped_model():
    text = open(os.path.join(SAVED, "models.config")).read()
    names = re.findall(r'name: "([^"]+)"', text)
    assert names == _shipped()
    assert re.findall(r'base_path: "([^"]+)"', text) == [f"/models/{n}" for n in names]


def test_compose_file_serves_saved_models_with_a_pinned_tf_serving():
    compose = yaml.safe_load(open(os.path.join(DEPLOY, "compose.yaml")))
    (service,) = compose["services"].values()
    image, tag = service["image"].split(":")
    assert image == "tensorflow/serving" and re.fullmatch(r"\d+\.\d+\.\d+", tag)
    assert "--model_config_file=/models/models.config" in service["command"]
    (volume,) = service["volumes"]
    source, target = volume.split(":")[:2]
    assert os.path.normpath(os.path.join(DEPLOY, source)) == SAVED and target == "/models"
    assert "8501:8501" in service["ports"]


def test_inference_service_names_a_shipped_model():
    isvc = yaml.safe_load(open(os.path.join(DEPLOY, "inferenceservice.yaml")))
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1" and isvc["kind"] == "InferenceService"
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "tensorflow"
    assert model["storageUri"].rsplit("/", 1)[-1] in _shipped()
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", isvc["metadata"]["name"])  # a DNS-1035 label
    compose = yaml.safe_load(open(os.path.join(DEPLOY, "compose.yaml")))
    assert model["runtimeVersion"] == next(iter(compose["services"].values()))["image"].split(":")[1]
