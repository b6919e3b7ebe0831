"""Tests for tfrobust.report and `tfrobust report`: the self-contained HTML robustness report."""

import base64
import html.parser
import json
import os
import shutil

import keras
import pytest

import tfrobust_cli
from tfrobust import cli, data, experiment, models, report, zoo
from tfrobust.attacks import registry
from tfrobust.evaluation import robustness

MNIST = "mnist_linf_pgd_cnn"
FAST = dict(n=16, steps=1, factors=(0.5, 1.0), k=3)


class _Page(html.parser.HTMLParser):
    """The tags, image sources and links of a page."""

    def __init__(self):
        super().__init__()
        self.tags, self.images, self.links = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(attrs)
        for key in ("href", "src"):
            if key in attrs and tag != "img":
                self.links.append(attrs[key])


def _parse(path):
    page = _Page()
    with open(path) as f:
        page.feed(f.read())
    return page


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    page = report.build([MNIST], str(out), command="test", **FAST)
    with open(out / report.NUMBERS) as f:
        return out, page, json.load(f)


def test_the_page_is_self_contained(single):
    out, page, numbers = single
    parsed = _parse(page)
    assert "script" not in parsed.tags and parsed.links == []
    # One sweep plot, one per-class plot and one grid of adversarial examples for one model.
    assert len(parsed.images) == 3
    for img in parsed.images:
        assert img["src"].startswith("data:image/png;base64,") and img["alt"]
        assert base64.b64decode(img["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_sweep_is_the_evaluation_of_the_same_attacks(single):
    _, _, numbers = single
    sweep = numbers["models"][0]["sweep"]
    test = data.load("mnist", "test")
    classifier, _ = experiment.load_classifier(zoo.path(MNIST))
    attack = registry.build("pgd", 0.3, "linf", steps=1)
    direct = robustness.evaluate(classifier, test.images[:16], test.labels[:16], [attack], checks="off", verbose=0)
    row = next(r for r in sweep["results"] if r["attack"] == "pgd" and abs(r["eps"] - 0.3) < 1e-9)
    assert row["accuracy"] == direct.accuracy("pgd") and sweep["clean_accuracy"] == direct.clean_accuracy
    assert {r["eps"] for r in sweep["results"]} == {0.15, 0.3}


def test_per_class_numbers_add_up(single):
    _, _, numbers = single
    m = numbers["models"][0]
    rows = [r for r in m["per_class"] if r["n"]]
    assert sum(r["n"] for r in rows) == 16
    clean = sum(r["clean"] * r["n"] for r in rows) / 16
    assert clean == pytest.approx(m["sweep"]["clean_accuracy"])
    pgd = next(r for r in m["sweep"]["results"] if r["attack"] == "pgd" and abs(r["eps"] - 0.3) < 1e-9)
    assert sum(r["robust"] * r["n"] for r in rows) / 16 == pytest.approx(pgd["accuracy"])
    assert m["per_class_attack"] == "pgd"


def test_the_recorded_evaluation_and_provenance_are_shown(single):
    out, page, numbers = single
    text = open(page).read()
    with open(os.path.join(zoo.path(MNIST), "metadata.json")) as f:
        md = json.load(f)
    assert f"{100 * md['metrics']['robust_accuracy']['autoattack']:.1f} [" in text
    assert "<code>tfrobust main</code>" in text and "Gradient-masking" in text
    examples = numbers["models"][0]["examples"]
    assert examples["labels"] == data.load("mnist", "test").labels[:3].tolist()
    assert set(examples) >= {"clean", "fgsm", "pgd"}


def test_recorded_paths_are_relative_to_the_working_directory_when_under_it(tmp_path, monkeypatch):
    inside = tmp_path / "saved_models" / "m" / "1"
    inside.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert report.shown_path(str(inside)) == os.path.join("saved_models", "m", "1")
    monkeypatch.chdir(inside)
    assert report.shown_path(str(tmp_path / "x.json")) == str(tmp_path / "x.json")


def test_a_comparison_overlays_the_models_and_resumes(tmp_path, capsys):
    # A second MNIST model: an untrained one of the same architecture, given with its recipe.
    keras.utils.set_random_seed(0)
    untrained = models.build("wong_cnn", (28, 28, 1), 10, mean=0.1307, std=0.3081)
    untrained.save(tmp_path / "untrained.keras")
    recipe = "tfrobust_mnist_linf_pgd_cnn"
    out = tmp_path / "cmp"
    args = ["report", MNIST, str(tmp_path / "untrained.keras"), "--output", str(out), "--n", "16", "--steps", "1",
            "--factors", "0.5,1", "--examples", "2", "--recipe", recipe]
    assert cli.main(args) == 0
    first = json.loads((out / report.NUMBERS).read_text())
    assert [m["label"] for m in first["models"]] == [MNIST, "untrained.keras"]
    text = (out / report.PAGE).read_text()
    assert "<h2>Comparison</h2>" in text and len(_parse(out / report.PAGE).images) == 4
    assert first["models"][1]["recorded"] is None  # so the sweep ran the quick masking checks
    assert first["models"][1]["sweep"]["checks"] == "quick"
    # Run again: the finished batches are read back, not recomputed, and give the same numbers.
    assert cli.main(args) == 0
    again = json.loads((out / report.NUMBERS).read_text())
    assert [m["sweep"] for m in again["models"]] == [m["sweep"] for m in first["models"]]


def test_another_model_under_the_same_label_gets_its_own_state(tmp_path, capsys):
    # Two model files with one label (a new version of a zoo model reported into the same directory).
    for seed in (0, 1):
        keras.utils.set_random_seed(seed)
        (tmp_path / str(seed)).mkdir()
        models.build("wong_cnn", (28, 28, 1), 10).save(tmp_path / str(seed) / "m.keras")
    out = tmp_path / "rep"
    common = ["--output", str(out), "--n", "8", "--steps", "1", "--factors", "1", "--examples", "1",
              "--recipe", "tfrobust_mnist_linf_pgd_cnn"]
    assert cli.main(["report", str(tmp_path / "0" / "m.keras"), *common]) == 0
    assert cli.main(["report", str(tmp_path / "1" / "m.keras"), *common]) == 0, capsys.readouterr().err
    assert len(list((out / report.STATE_DIR).iterdir())) == 2


def test_models_of_two_datasets_are_one_line(tmp_path, capsys):
    code = cli.main(["report", MNIST, "cifar10_linf_pgd3_mixed_resnet20", "--output", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "different datasets" in err


@pytest.mark.parametrize("args, match", [
    (["--factors", "0.5,2"], "must include 1.0"),
    (["--attacks", ","], "at least one attack"),
])
def test_bad_arguments_are_one_line(tmp_path, capsys, args, match):
    code = cli.main(["report", MNIST, "--output", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and match in err


def test_an_unknown_model_is_one_line(tmp_path, capsys):
    assert cli.main(["report", "no_such_model", "--output", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no_such_model" in err and MNIST in err


def test_the_parsers_default_factors_are_the_reports():
    assert tfrobust_cli.REPORT_FACTORS == report.SWEEP_FACTORS


@pytest.mark.slow
def test_the_page_renders_in_chromium_with_every_image_and_no_console_error(single, tmp_path):
    # Debian's chromium and the playwright package: `apt-get install chromium`, `pip install playwright`.
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on this machine (Debian: apt-get install chromium)")
    _, page_path, _ = single
    errors = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
        page.goto("file://" + os.path.abspath(page_path))
        page.wait_for_load_state("load")
        images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert errors == []
    assert len(images) == 3 and all(done and width > 0 for done, width, _ in images), images
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
