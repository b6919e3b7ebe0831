"""Tests for tfrobust.zoo: the shipped models by name, their index and leaderboard."""

import json
import os
import shutil
import tarfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust import cli, data, zoo
from tfrobust import run as run_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAVED = os.path.join(REPO, "saved_models")
MNIST = "mnist_linf_pgd_cnn"
MNIST_VERSION = "mnist_pgd_linf/4"


def test_the_index_is_up_to_date_with_saved_models():
    # Fails when a version is added, removed or changed without `tfrobust zoo index`.
    assert zoo.build_index(SAVED, previous=zoo.read_index()) == zoo.read_index()


def test_each_recipe_appears_once_at_its_newest_version():
    index = zoo.read_index()
    names = [e["name"] for e in index["models"]]
    assert len(names) == len(set(names)) and MNIST in names
    for e in index["models"]:
        if e.get("url"):
            continue
        model, version = e["saved_model"].split("/")
        with open(os.path.join(SAVED, e["saved_model"], "metadata.json")) as f:
            recipe = json.load(f)["recipe"]
        for other in os.listdir(os.path.join(SAVED, model)):
            meta = os.path.join(SAVED, model, other, "metadata.json")
            if other.isdigit() and int(other) > int(version) and os.path.exists(meta):
                with open(meta) as f:
                    assert json.load(f)["recipe"] != recipe, (e, other)


def test_zoo_names_drop_the_source_prefix():
    assert zoo.zoo_name({"recipe": "wong2020_cifar10_linf_fgsm_rs_preactresnet18", "dataset": "cifar10"}) == \
        "cifar10_linf_fgsm_rs_preactresnet18"
    assert zoo.zoo_name({"recipe": "tfrobust_mnist_linf_pgd_cnn", "dataset": "mnist"}) == MNIST
    # No source prefix to drop: the recipe's name as it is.
    assert zoo.zoo_name({"recipe": "mnist_plain", "dataset": "mnist"}) == "mnist_plain"


def test_load_by_name_gives_a_keras_model_with_the_saved_models_logits():
    model, md = zoo.load(MNIST, with_metadata=True)
    assert isinstance(model, keras.Model) and md["name"] == "mnist_pgd_linf"
    images = data.load("mnist", "test").images[:64].astype("float32") / 255.0
    served = tf.saved_model.load(os.path.join(SAVED, MNIST_VERSION)).signatures["serving_default"]
    np.testing.assert_allclose(model(images, training=False).numpy(), served(images=images)["logits"].numpy(),
                               atol=1e-4)
    # The SavedModel's own names lead to the same entry.
    assert zoo.entry("mnist_pgd_linf")["name"] == zoo.entry(MNIST_VERSION)["name"] == MNIST


def test_a_bare_savedmodel_name_is_its_newest_version_in_the_zoo():
    index = {"models": [{"name": "a", "saved_model": "m/3", "sha256": ""},
                        {"name": "b", "saved_model": "m/10", "sha256": ""}]}
    assert zoo.entry("m", index)["name"] == "b"
    assert zoo.entry("m/3", index)["name"] == "a"


def test_an_unknown_name_lists_the_names_there_are():
    with pytest.raises(zoo.ZooError, match=MNIST):
        zoo.load("cifar10_no_such_model")


def _copy_mnist(base):
    shutil.copytree(os.path.join(SAVED, MNIST_VERSION), os.path.join(base, MNIST_VERSION))
    return os.path.join(base, MNIST_VERSION)


def test_a_changed_file_fails_the_checksum(tmp_path):
    version_dir = _copy_mnist(tmp_path)
    assert zoo.path(MNIST, models_dir=str(tmp_path)) == version_dir
    with open(os.path.join(version_dir, "metadata.json"), "a") as f:
        f.write(" ")
    with pytest.raises(zoo.ZooError, match="do not match the zoo index"):
        zoo.load(MNIST, models_dir=str(tmp_path))


def test_missing_shipped_files_name_the_environment_variable(tmp_path):
    with pytest.raises(zoo.ZooError, match=zoo.MODELS_ENV):
        zoo.path(MNIST, models_dir=str(tmp_path))


def _remote_index(tmp_path, url, archive_sha256):
    shipped = zoo.entry(MNIST)
    index = {"models": [{"name": "mnist_remote", "saved_model": "remote/1", "sha256": shipped["sha256"],
                         "url": url, "archive_sha256": archive_sha256}]}
    path = tmp_path / "index.json"
    path.write_text(json.dumps(index))
    return str(path)


@pytest.fixture
def remote(tmp_path, monkeypatch):
    archive = tmp_path / "served" / "mnist.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(os.path.join(SAVED, MNIST_VERSION), arcname="3")
    monkeypatch.setenv(zoo.MODELS_ENV, str(tmp_path / "no_models_here"))
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    return archive


def test_a_model_named_by_url_is_downloaded_once_checked_and_loaded(tmp_path, monkeypatch, remote):
    monkeypatch.setattr(zoo, "INDEX_FILE", _remote_index(tmp_path, remote.as_uri(), run_lib.sha256(remote)))
    model = zoo.load("mnist_remote")
    assert model.output_shape == (None, 10)
    cached = tmp_path / "cache" / "saved_models" / "remote" / "1"
    assert (cached / "saved_model.pb").exists()
    remote.unlink()  # the second load uses the cache
    assert zoo.path("mnist_remote") == str(cached)
    assert "| `mnist_remote` | mnist |" in zoo.leaderboard()


def test_an_archive_with_the_wrong_checksum_keeps_nothing(tmp_path, monkeypatch, remote):
    monkeypatch.setattr(zoo, "INDEX_FILE", _remote_index(tmp_path, remote.as_uri(), "0" * 64))
    with pytest.raises(zoo.ZooError, match="does not match the index's SHA-256"):
        zoo.load("mnist_remote")
    assert not (tmp_path / "cache" / "saved_models" / "remote" / "1").exists()
    assert os.listdir(tmp_path / "cache" / "saved_models" / "remote") == []


def test_no_network_is_one_clear_line(tmp_path, monkeypatch, remote, capsys):
    # Port 9 (discard) on loopback refuses at once, as a machine without a network does.
    monkeypatch.setattr(zoo, "INDEX_FILE", _remote_index(tmp_path, "http://127.0.0.1:9/mnist.tar.gz", None))
    with pytest.raises(zoo.ZooError, match="could not be downloaded from http://127.0.0.1:9/mnist.tar.gz"):
        zoo.load("mnist_remote")
    assert cli.main(["zoo", "list"]) == 0
    assert "| mnist_remote | remote/1 | no: http://127.0.0.1:9/mnist.tar.gz |" in capsys.readouterr().out


def test_readme_leaderboard_is_the_generated_one(capsys):
    assert cli.main(["zoo", "leaderboard", "--readme", os.path.join(REPO, "README.md"), "--check"]) == 0, \
        capsys.readouterr().out


def test_leaderboard_rows_are_read_from_metadata():
    with open(os.path.join(SAVED, MNIST_VERSION, "metadata.json")) as f:
        metrics = json.load(f)["metrics"]
    row = next(r for r in zoo.leaderboard().splitlines() if r.startswith(f"| `{MNIST}` |"))
    assert f"| {100 * metrics['clean_accuracy']:.1f} [" in row
    assert f"| {100 * metrics['robust_accuracy']['autoattack']:.1f} [" in row
    assert f"| {metrics['n']} |" in row


def test_update_readme_replaces_only_between_the_markers():
    text = f"a\n{zoo.LEADERBOARD_START}\nold\n{zoo.LEADERBOARD_END}\nb\n"
    assert zoo.update_readme(text, "new") == f"a\n{zoo.LEADERBOARD_START}\nnew\n{zoo.LEADERBOARD_END}\nb\n"
    with pytest.raises(zoo.ZooError, match="markers"):
        zoo.update_readme("no markers", "new")


def test_index_check_fails_when_out_of_date(tmp_path, monkeypatch, capsys):
    _copy_mnist(tmp_path)
    monkeypatch.setenv(zoo.MODELS_ENV, str(tmp_path))
    stale = tmp_path / "index.json"
    stale.write_text(json.dumps({"models": []}))
    monkeypatch.setattr(zoo, "INDEX_FILE", str(stale))
    assert cli.main(["zoo", "index", "--check"]) == 1
    assert "not up to date" in capsys.readouterr().out
    assert cli.main(["zoo", "index"]) == 0
    assert [e["name"] for e in zoo.read_index()["models"]] == [MNIST]
    assert cli.main(["zoo", "index", "--check"]) == 0


def test_eval_takes_a_zoo_name_as_its_model(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the name is not a path here
    out = str(tmp_path / "eval.json")
    assert cli.main(["eval", MNIST, "--attacks", "none", "--n", "20", "--json", out]) == 0
    with open(out) as f:
        report = json.load(f)
    assert report["n"] == 20 and report["results"] == []
    assert os.path.samefile(zoo.resolve(MNIST)[0], os.path.join(zoo.saved_models_dir(), MNIST_VERSION))
    assert zoo.resolve(out) == (out, None)
    capsys.readouterr()
    assert cli.main(["eval", "no_such_model", "--attacks", "none"]) != 0
    err = capsys.readouterr().err.strip()
    assert "No model named 'no_such_model' in the zoo" in err and MNIST in err and "\n" not in err
    with pytest.raises(FileNotFoundError, match="No run directory, .keras file, exported version or zoo model"):
        zoo.resolve(os.path.join("runs", "gone"))
