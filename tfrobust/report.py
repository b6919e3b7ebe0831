"""A robustness report: one self-contained HTML page for one model or a comparison of several.

The page holds, per model: robust accuracy against the radius for each
attack of a sweep (95% Wilson bands, the trained radius marked, the recorded
evaluation's attacks as points at their radius), clean and adversarial images
of the first test examples with their predictions and the perturbation
magnified, per-class clean and robust accuracy, the gradient-masking checks'
verdicts and per-example worst case, and the provenance of every number. With
several models the plots are overlaid and a table compares them.

The recorded evaluation comes from the model's export (metadata.json), its
run's eval.json or a given evaluation JSON; the sweep, the per-class numbers
and the images are computed here, on the first `n` test images, resumably
(finished batches are kept under `OUTPUT/.state/`). Every image is an inline
PNG: the page needs no network and no script.
"""

import base64
import dataclasses
import html
import io
import hashlib
import json
import os
import re
from typing import List, Optional

import numpy as np

from tfrobust import jsonfile, zoo
from tfrobust.evaluation.results import format_eps, in_255ths

SWEEP_FACTORS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
DEFAULT_ATTACKS = ("fgsm", "pgd")
PAGE = "report.html"
NUMBERS = "report.json"
STATE_DIR = ".state"


@dataclasses.dataclass
class Model:
    """A model in a report: where it is, its classifier and recipe, and its recorded evaluation."""

    label: str
    path: str
    classifier: object
    recipe: object
    metadata: Optional[dict]
    recorded: Optional[dict]
    commands: List[str]


def _pct(x):
    return f"{100 * x:.1f}"


def _ci_cell(accuracy, ci):
    return f"{_pct(accuracy)} [{_pct(ci[0])}, {_pct(ci[1])}]"


def shown_path(path):
    """`path` relative to the working directory when it lies under it, else as given.

    What a report records, so that a committed report.json names the file
    (`saved_models/NAME/VERSION`) and not the machine it was made on.
    """
    rel = os.path.relpath(os.path.abspath(path))
    return path if rel == os.pardir or rel.startswith(os.pardir + os.sep) else rel


def recorded_evaluation(path, metadata, eval_json=None):
    """A model's recorded evaluation, in one shape whatever its source, or None.

    Sources, first found: `eval_json` (a `tfrobust eval --json` file), an
    export's metadata.json metrics, its run's `eval.json`.

    Returns:
        dict `{"source", "n", "clean_accuracy", "clean_ci95", "rows": [{"attack",
        "norm", "eps", "accuracy", "ci95"}], "warnings", "checks"}`.
    """
    from tfrobust.evaluation.robustness import wilson_interval

    def ci(acc, n):
        return list(wilson_interval(int(round(acc * n)), n))

    candidates = [eval_json] if eval_json else []
    if metadata is None and os.path.isdir(path):
        candidates.append(os.path.join(path, "eval.json"))
    for file in candidates:
        if file and os.path.isfile(file):
            with open(file) as f:
                d = json.load(f)
            if "results" not in d or "clean_accuracy" not in d:
                raise ValueError(f"{file} is not an evaluation JSON (`tfrobust eval --json`): no results.")
            rows = [{k: r[k] for k in ("attack", "norm", "eps", "accuracy", "ci95")} for r in d["results"]]
            return {"source": file, "n": d["n"], "clean_accuracy": d["clean_accuracy"],
                    "clean_ci95": d["clean_ci95"], "rows": rows, "warnings": d.get("warnings", []),
                    "checks": d.get("checks", "not recorded"), "command": d.get("command")}
    metrics = (metadata or {}).get("metrics")
    if not metrics:
        return None
    n, threat = metrics["n"], metadata.get("threat_model", {})
    rows = []
    for name, acc in metrics.get("robust_accuracy", {}).items():
        params = metrics.get("attacks", {}).get(name, {})
        rows.append({"attack": name, "norm": params.get("norm", threat.get("norm")),
                     "eps": params.get("eps", threat.get("eps")), "accuracy": acc, "ci95": ci(acc, n)})
    return {"source": os.path.join(path, "metadata.json"), "n": n, "clean_accuracy": metrics["clean_accuracy"],
            "clean_ci95": ci(metrics["clean_accuracy"], n), "rows": rows, "warnings": metrics.get("warnings", []),
            "checks": metrics.get("checks", "not recorded"), "command": metadata.get("command")}


def load_model(name, recipe=None, eval_json=None):
    """A `Model` from a zoo name, an exported version, a run directory or a .keras file."""
    from tfrobust import experiment
    from tfrobust.config import Recipe, load_recipe

    path, label = zoo.resolve(name)
    classifier, metadata = experiment.load_classifier(path)
    if recipe is not None:
        recipe = load_recipe(recipe)
    elif metadata and "recipe_config" in metadata:
        recipe = Recipe.from_dict(metadata["recipe_config"])
    else:
        run = path if os.path.isdir(path) else os.path.dirname(path)
        if not os.path.exists(os.path.join(run, "recipe.json")):
            raise ValueError(f"{name}: no recipe.json or metadata.json says what the model is; pass --recipe.")
        recipe = load_recipe(os.path.join(run, "recipe.json"))
    if label is None:
        label = zoo.zoo_name(metadata) if metadata else os.path.basename(os.path.normpath(path))
    commands = []
    if metadata:
        commands = list(dict.fromkeys(metadata.get("train_command") or []))
        if metadata.get("command"):
            commands.append(metadata["command"])
    else:
        from tfrobust.run import train_commands

        commands = train_commands(path if os.path.isdir(path) else os.path.dirname(path))
    return Model(label, path, classifier, recipe, metadata, recorded_evaluation(path, metadata, eval_json), commands)


def _sweep_attacks(recipe, names, factors, steps):
    from tfrobust.attacks import registry

    eps0, norm = recipe.attack.eps, recipe.attack.norm
    attacks = []
    for f in factors:
        for name in names:
            params = {} if registry.canonical(name) == "fgsm" else {"steps": steps}
            attacks.append(registry.build(name, eps0 * f, norm, **params))
    return attacks


def sweep(model, images, labels, names, factors, steps, state_dir, verbose="auto"):
    """Robust accuracy of `model` for each attack at each `factor` x its trained eps (a `Report`)."""
    from tfrobust.evaluation import robustness

    attacks = _sweep_attacks(model.recipe, names, factors, steps)
    # The checks run here only when no recorded evaluation says what they found.
    checks = "off" if model.recorded else "quick"
    return robustness.evaluate(model.classifier, images, labels, attacks, state_dir=state_dir, checks=checks,
                               verbose=verbose, source=f"first {len(labels)} test images")


def examples(model, images, labels, names, steps, k):
    """Adversarial versions of the first `k` images at the trained eps, with predictions.

    Returns:
        dict `{"clean": preds, attack name: (x_adv, preds)}`.
    """
    import tensorflow as tf

    from tfrobust import data as data_lib

    batch = next(iter(data_lib.eval_dataset(images[:k], labels[:k], batch_size=k)))
    x, y, seeds = batch[0]["image"], batch[1], batch[0]["seed"]
    out = {"clean": np.argmax(model.classifier(x, training=False), -1)}
    for attack in _sweep_attacks(model.recipe, names, (1.0,), steps):
        x_adv = attack(model.classifier, x, tf.cast(y, tf.int64), seeds)
        out[attack.name] = (np.asarray(x_adv), np.argmax(model.classifier(x_adv, training=False), -1))
    return out


def per_class(clean, robust, labels, num_classes):
    """Clean and robust accuracy per class: list of `{"class", "n", "clean", "robust"}`."""
    rows = []
    for c in range(num_classes):
        mask = labels == c
        rows.append({"class": c, "n": int(mask.sum()),
                     "clean": float(clean[mask].mean()) if mask.any() else None,
                     "robust": float(robust[mask].mean()) if mask.any() else None})
    return rows


# ---------------------------------------------------------------------------------------------- plots

def _png(fig):
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def plot_sweep(entries):
    """Accuracy against eps for each model and attack, with 95% bands; recorded attacks as points."""
    fig, ax = _figure(figsize=(7.5, 4.5))
    colors = ["C0", "C1", "C2", "C3", "C4", "C5"]
    styles = ["-", "--", ":", "-."]
    scale = 255 if all(in_255ths(e["model"].recipe.attack.eps) for e in entries) else 1
    for i, e in enumerate(entries):
        color = colors[i % len(colors)]
        for j, (name, points) in enumerate(e["curves"].items()):
            eps = np.array([0.0] + [p["eps"] for p in points]) * scale
            acc = np.array([e["clean"]] + [p["accuracy"] for p in points]) * 100
            lo = np.array([e["clean_ci95"][0]] + [p["ci95"][0] for p in points]) * 100
            hi = np.array([e["clean_ci95"][1]] + [p["ci95"][1] for p in points]) * 100
            label = f"{e['model'].label}: {name}" if len(entries) > 1 else name
            ax.plot(eps, acc, styles[j % len(styles)], color=color, marker="o", ms=3, label=label)
            ax.fill_between(eps, lo, hi, color=color, alpha=0.12)
        for r in (e["model"].recorded or {}).get("rows", []):
            if r["attack"] in ("worst_case",) or r["eps"] is None:
                continue
            ax.errorbar([r["eps"] * scale], [100 * r["accuracy"]],
                        yerr=[[100 * (r["accuracy"] - r["ci95"][0])], [100 * (r["ci95"][1] - r["accuracy"])]],
                        fmt="s", color=color, ms=5, capsize=3, alpha=0.8)
            ax.annotate(r["attack"], (r["eps"] * scale, 100 * r["accuracy"]), textcoords="offset points",
                        xytext=(5, -3), fontsize=7, color=color)
        ax.axvline(e["model"].recipe.attack.eps * scale, color=color, lw=0.8, ls=":", alpha=0.7)
    ax.set_xlabel("eps (x 1/255)" if scale == 255 else "eps")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Accuracy against the radius (dotted: the trained eps; squares: the recorded evaluation)",
                 fontsize=9)
    return _png(fig)


def plot_examples(model, images, labels, shots, class_names):
    """Clean images, adversarial images and magnified perturbations with their predicted classes."""
    names = [k for k in shots if k != "clean"]
    k = len(images)
    fig, axes = _figure(1 + 2 * len(names), k, figsize=(1.3 * k, 1.45 * (1 + 2 * len(names))), squeeze=False)
    eps = model.recipe.attack.eps
    gray = images.shape[-1] == 1

    def show(ax, img, title=None, ok=None):
        ax.imshow(np.clip(img[..., 0] if gray else img, 0, 1), cmap="gray" if gray else None, vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if title:
            ax.set_title(title, fontsize=7, color="black" if ok is None else ("green" if ok else "red"))

    x = images.astype("float32") / 255.0 if images.dtype == np.uint8 else images
    for i in range(k):
        show(axes[0, i], x[i], f"{class_names[shots['clean'][i]]}", shots["clean"][i] == labels[i])
    axes[0, 0].set_ylabel("clean", fontsize=8)
    for j, name in enumerate(names):
        x_adv, preds = shots[name]
        delta = x_adv - x
        bound = eps if model.recipe.attack.norm == "linf" else max(float(np.abs(delta).max()), 1e-12)
        for i in range(k):
            show(axes[1 + 2 * j, i], x_adv[i], f"{class_names[preds[i]]}", preds[i] == labels[i])
            show(axes[2 + 2 * j, i], delta[i] / (2 * bound) + 0.5)
        axes[1 + 2 * j, 0].set_ylabel(name, fontsize=8)
        axes[2 + 2 * j, 0].set_ylabel(f"{name}\nperturbation", fontsize=7)
    fig.suptitle(f"{model.label}: first {k} test images at eps {format_eps(eps)} (green: correct, red: wrong; "
                 "perturbations scaled to the full grey range)", fontsize=8)
    return _png(fig)


def plot_per_class(entries, class_names):
    """Grouped bars: clean and robust accuracy per class, for each model."""
    fig, ax = _figure(figsize=(8, 3.8))
    c = len(class_names)
    width = 0.8 / (2 * len(entries))
    for i, e in enumerate(entries):
        rows = e["per_class"]
        base = np.arange(c) + (2 * i) * width - 0.4 + width / 2
        prefix = f"{e['model'].label}: " if len(entries) > 1 else ""
        ax.bar(base, [100 * (r["clean"] or 0) for r in rows], width, label=prefix + "clean",
               color=f"C{i}", alpha=0.35)
        ax.bar(base + width, [100 * (r["robust"] or 0) for r in rows], width,
               label=prefix + f"{e['per_class_attack']} at eps {format_eps(e['model'].recipe.attack.eps)}",
               color=f"C{i}")
    ax.set_xticks(np.arange(c))
    ax.set_xticklabels(class_names, rotation=30, fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


# ----------------------------------------------------------------------------------------------- page

CSS = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.6em 0;font-size:0.9em}td,th{border:1px solid #ccc;padding:3px 8px}
th{background:#f3f3f3}td.num{text-align:right;font-family:monospace}img{max-width:100%}
code{background:#f6f6f6;padding:1px 3px;font-size:0.85em}.warn{color:#a00}.ok{color:#070}
section{border-top:2px solid #ddd;margin-top:2em}"""


def _table(header, rows, numeric=()):
    out = ["<table><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>"]
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="num"' if i in numeric else ""
            cells.append(f"<td{cls}>{cell if isinstance(cell, _Raw) else html.escape(str(cell))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out) + "</table>"


class _Raw(str):
    """Cell text that is already HTML."""


def _img(data, alt):
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _recorded_rows(model):
    rec = model.recorded
    if not rec:
        return "<p>No recorded evaluation (no metadata.json metrics, eval.json or --eval given).</p>"
    rows = [["clean", "-", "-", _ci_cell(rec["clean_accuracy"], rec["clean_ci95"])]]
    rows += [[r["attack"], r["norm"] or "-", format_eps(r["eps"]) if r["eps"] is not None else "-",
              _ci_cell(r["accuracy"], r["ci95"])] for r in rec["rows"]]
    source = html.escape(shown_path(rec["source"]))
    return (f"<p>From <code>{source}</code>, n = {rec['n']} test images; accuracy in %, 95% Wilson interval. "
            "<i>worst_case</i> is the per-example worst case over the attacks at that radius.</p>"
            + _table(["attack", "norm", "eps", "accuracy"], rows, numeric=(3,)))


def _checks(model, sweep_report):
    rec = model.recorded
    if rec:
        warnings, checks, where = rec["warnings"], rec["checks"], "the recorded evaluation"
    else:
        warnings, checks, where = sweep_report.warnings, sweep_report.checks, "this report's sweep (quick checks)"
    if checks in ("off",):
        return f"<p class='warn'>The gradient-masking checks did not run in {where}.</p>"
    head = (f"Gradient-masking checks in {where} ({html.escape(str(checks))}): " if checks != "not recorded"
            else f"Warnings of {where} (which gradient-masking checks ran was not recorded): ")
    if not warnings:
        return f"<p class='ok'>{head}no warnings.</p>"
    return (f"<p class='warn'>{head}{len(warnings)} warning(s):</p><ul>"
            + "".join(f"<li>{html.escape(w)}</li>" for w in warnings) + "</ul>")


def _provenance(model):
    items = "".join(f"<li><code>{html.escape(c)}</code></li>" for c in model.commands) or "<li>not recorded</li>"
    md = model.metadata or {}
    facts = [("path", shown_path(model.path)), ("recipe", model.recipe.name),
             ("exported", f"{md.get('name')}/{md.get('version')} on {md.get('created')}" if md else "-"),
             ("code", md.get("code") or md.get("tfrobust_version") or "-")]
    return ("<p>Commands that made the model, in order:</p><ol>" + items + "</ol>"
            + _table(["", ""], [[k, v] for k, v in facts]))


def _sweep_table(entry):
    rows = []
    for name, points in entry["curves"].items():
        for p in points:
            rows.append([name, format_eps(p["eps"], entry["model"].recipe.attack.eps),
                         _ci_cell(p["accuracy"], p["ci95"])])
    return _table(["attack", "eps", "accuracy"], rows, numeric=(2,))


def _per_class_table(entry, class_names):
    rows = [[class_names[r["class"]], r["n"], _pct(r["clean"]) if r["clean"] is not None else "-",
             _pct(r["robust"]) if r["robust"] is not None else "-"] for r in entry["per_class"]]
    return _table(["class", "n", "clean", f"{entry['per_class_attack']} (robust)"], rows, numeric=(1, 2, 3))


def _comparison(entries):
    attacks = list(dict.fromkeys(r["attack"] for e in entries for r in (e["model"].recorded or {}).get("rows", [])))
    rows = []
    for e in entries:
        rec = e["model"].recorded
        cells = [e["model"].label, f"{e['model'].recipe.attack.norm} {format_eps(e['model'].recipe.attack.eps)}"]
        if rec:
            found = {r["attack"]: r for r in rec["rows"]}
            cells += [_ci_cell(rec["clean_accuracy"], rec["clean_ci95"])]
            cells += [_ci_cell(found[a]["accuracy"], found[a]["ci95"]) if a in found else "-" for a in attacks]
            cells += [rec["n"]]
        else:
            cells += ["-"] * (len(attacks) + 2)
        at_eps = {name: next(p for p in points if abs(p["factor"] - 1.0) < 1e-9)
                  for name, points in e["curves"].items()}
        cells += [_ci_cell(p["accuracy"], p["ci95"]) for p in at_eps.values()]
        rows.append(cells)
    sweep_names = list(entries[0]["curves"])
    header = ["model", "threat", "clean (recorded)"] + [f"{a} (recorded)" for a in attacks] + ["n (recorded)"]
    header += [f"{s} (sweep, n={entries[0]['n']})" for s in sweep_names]
    return _table(header, rows, numeric=tuple(range(2, len(header))))


def render(entries, class_names, command, code):
    """The HTML page for report entries (see `build`)."""
    title = "Robustness report: " + ", ".join(e["model"].label for e in entries)
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    parts.append(f"<p>Made by <code>{html.escape(command)}</code> (tfrobust {html.escape(code)}). The sweep, the "
                 f"per-class accuracy and the images use the first {entries[0]['n']} test images; the recorded "
                 "evaluation is the model's own, with its own n.</p>")
    if len(entries) > 1:
        parts.append("<h2>Comparison</h2>" + _comparison(entries))
    parts.append("<h2>Accuracy against the radius</h2>" + _img(entries[0]["sweep_png"], "accuracy against eps"))
    parts.append("<h2>Per class</h2>" + _img(entries[0]["per_class_png"], "per-class accuracy"))
    for e in entries:
        m = e["model"]
        parts.append(f"<section><h2>{html.escape(m.label)}</h2>")
        parts.append("<h3>Recorded evaluation</h3>" + _recorded_rows(m))
        parts.append("<h3>Gradient-masking checks</h3>" + _checks(m, e["report"]))
        parts.append(f"<h3>Sweep (n = {e['n']})</h3>" + _sweep_table(e))
        parts.append("<h3>Adversarial examples</h3>" + _img(e["examples_png"], f"{m.label} adversarial examples"))
        parts.append("<h3>Per class</h3>" + _per_class_table(e, class_names))
        parts.append("<h3>Provenance</h3>" + _provenance(m) + "</section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _entry(m, images, labels, attacks, factors, steps, k, state_root, info, verbose):
    """One model's part of a report: its sweep, curves, per-class numbers and image grid."""
    from tfrobust.evaluation.results import WORST_CASE

    # One state directory per model file: a new version under the same name starts its own.
    key = re.sub(r"[^A-Za-z0-9_.-]", "_", m.label) + "-" + hashlib.sha1(
        os.path.abspath(m.path).encode()).hexdigest()[:8]
    report = sweep(m, images, labels, attacks, factors, steps, os.path.join(state_root, key), verbose)
    curves = {}
    results = [r for r in report.results if r.attack != WORST_CASE]
    for r in results:
        curves.setdefault(r.attack, []).append({"eps": r.eps, "factor": r.eps / m.recipe.attack.eps, **r.to_json()})
    last = [r for r in results if r.attack == results[-1].attack]
    at_eps = min(last, key=lambda r: abs(r.eps - m.recipe.attack.eps))
    shots = examples(m, images, labels, attacks, steps, k)
    return {
        "model": m, "report": report, "n": len(labels), "curves": curves,
        "clean": report.clean_accuracy, "clean_ci95": report.to_json()["clean_ci95"],
        "per_class": per_class(report.clean_correct, at_eps.robust, labels, info.num_classes),
        "per_class_attack": at_eps.attack,
        "examples": {"indices": list(range(k)), "labels": labels[:k].tolist(), "clean": shots["clean"].tolist(),
                     **{a: s[1].tolist() for a, s in shots.items() if a != "clean"}},
        "examples_png": plot_examples(m, images[:k], labels[:k], shots, info.class_names),
    }


def build(names, output, *, n=500, attacks=DEFAULT_ATTACKS, steps=20, factors=SWEEP_FACTORS, k=8,
          data_dir=None, recipe=None, eval_jsons=None, command="", verbose="auto"):
    """Writes `output/report.html` and `output/report.json` for one or more models.

    Args:
        names: zoo names, exported versions, run directories or .keras files,
            all of one dataset.
        output: directory for the page, its numbers and the sweep's state.
        n: test images for the sweep and the per-class numbers.
        attacks: sweep attacks (registry names); the last one gives the
            per-class robust accuracy.
        steps: iterations of the iterative sweep attacks.
        factors: the sweep's radii as multiples of each model's trained eps
            (1.0 must be among them).
        k: images in the grid of adversarial examples.
        data_dir: directory with the dataset's npz files or prepared TFDS data.
        recipe: a recipe for models that carry none.
        eval_jsons: optional evaluation JSON per model (None entries: the default source).
        command: the command line, for the page.

    Returns:
        The page's path.

    Raises:
        ValueError: models of different datasets, no 1.0 among the factors, or bad arguments.
    """
    from tfrobust import data as data_lib
    from tfrobust import validation
    from tfrobust.version import code_version

    n = validation.check_int("n", n, minimum=1)
    k = validation.check_int("examples", k, minimum=1)
    if not any(abs(f - 1.0) < 1e-9 for f in factors):
        raise ValueError(f"The sweep's factors must include 1.0 (the trained eps). Received: {factors}")
    if not attacks:
        raise ValueError("The sweep needs at least one attack.")
    eval_jsons = list(eval_jsons or []) + [None] * (len(names) - len(eval_jsons or []))
    models = [load_model(name, recipe, ej) for name, ej in zip(names, eval_jsons)]
    datasets = {m.recipe.data.dataset for m in models}
    if len(datasets) > 1:
        raise ValueError(f"The models are of different datasets ({', '.join(sorted(datasets))}); compare models "
                         "of one dataset.")
    dataset = datasets.pop()
    info = data_lib.info(dataset)
    recorded_dir = models[0].recipe.data.data_dir
    # The training machine's data directory, recorded in the recipe, may not exist here.
    test = data_lib.load(dataset, "test", data_dir=data_dir or (recorded_dir if recorded_dir and
                                                                os.path.isdir(recorded_dir) else None))
    images, labels = test.images[:n], test.labels[:n]
    os.makedirs(output, exist_ok=True)
    entries = [_entry(m, images, labels, attacks, factors, steps, k, os.path.join(output, STATE_DIR), info, verbose)
               for m in models]
    sweep_png = plot_sweep(entries)
    per_class_png = plot_per_class(entries, info.class_names)
    for e in entries:
        e["sweep_png"], e["per_class_png"] = sweep_png, per_class_png
    code = code_version()
    page = os.path.join(output, PAGE)
    tmp = page + ".tmp"
    with open(tmp, "w") as f:
        f.write(render(entries, info.class_names, command, code))
    os.replace(tmp, page)
    numbers = {"command": command, "code": code, "dataset": dataset, "n": len(labels), "models": [
        {"label": e["model"].label, "path": shown_path(e["model"].path), "recipe": e["model"].recipe.name,
         "threat_model": {"norm": e["model"].recipe.attack.norm, "eps": e["model"].recipe.attack.eps},
         "recorded": dict(e["model"].recorded or {}, source=shown_path(e["model"].recorded["source"]))
         if e["model"].recorded else None, "sweep": e["report"].to_json(), "per_class": e["per_class"],
         "per_class_attack": e["per_class_attack"], "examples": e["examples"], "commands": e["model"].commands}
        for e in entries]}
    jsonfile.write(os.path.join(output, NUMBERS), numbers)
    return page
