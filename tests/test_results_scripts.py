"""The shell helpers of the reproduce scripts (docs/results/lib.sh)."""

import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bash(script, cwd):
    return subprocess.run(["bash", "-c", f". {REPO}/docs/results/lib.sh\n{script}"], cwd=cwd,
                          capture_output=True, text=True, check=True).stdout.split()


def test_collected_needs_every_file_and_leaves_the_callers_loop_variables_alone(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "eval.json").write_text("{}")
    # The ratio sweep loops over `f`: `collected` must not reassign it (it did, and the sweep then
    # trained with data.generated_fraction=eval.json).
    out = _bash("for f in 0.3 0.9; do collected run eval.json && echo yes$f || echo no$f; "
                "collected run eval.json history.csv && echo yes$f || echo no$f; done", tmp_path)
    assert out == ["yes0.3", "no0.3", "yes0.9", "no0.9"]


def test_check_parts_names_an_unknown_part(tmp_path):
    result = subprocess.run(["bash", "-c", f". {REPO}/docs/results/lib.sh\ncheck_parts 'rows dpeth' rows depth"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2 and "unknown part 'dpeth'" in result.stderr


def test_gowal_mt_part_evaluates_only_uncollected_runs_whose_model_is_here(tmp_path):
    results = tmp_path / "docs" / "results"
    (results / "gowal").mkdir(parents=True)
    for name in ("lib.sh", "gowal/reproduce.sh"):
        (results / name).write_text(open(os.path.join(REPO, "docs", "results", name)).read())
    collected = results / "gowal"
    for run in ("l2_lowdata500_none_s0", "l2_lowdata500_gaussian_s0", "l2_lowdata500_none_s1",
                "lowdata500_none_s0"):
        (collected / run).mkdir()
        (collected / run / "eval.json").write_text("{}")
    (collected / "l2_lowdata500_none_s0" / "eval_mt500.json").write_text("{}")  # already done
    for run in ("l2_lowdata500_none_s0", "l2_lowdata500_gaussian_s0", "l2_lowdata500_none_s1"):
        (tmp_path / "runs" / f"gowal_{run}").mkdir(parents=True)
        (tmp_path / "runs" / f"gowal_{run}" / "model.keras").write_text("")
    # lowdata500_none_s0's model is not on this machine: listed and skipped.
    stub = tmp_path / "bin" / "tfrobust"
    stub.parent.mkdir()
    stub.write_text('#!/bin/bash\necho "$@" >> "$LOG"\n'
                    'while [ $# -gt 0 ]; do [ "$1" = --json ] && echo "{}" > "$2"; shift; done\n')
    stub.chmod(0o755)
    env = dict(os.environ, PATH=f"{stub.parent}:{os.environ['PATH']}", LOG=str(tmp_path / "calls"))
    result = subprocess.run(["bash", "docs/results/gowal/reproduce.sh", "mt"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, check=True)
    calls = (tmp_path / "calls").read_text().splitlines()
    evals = sorted(c.split()[1] for c in calls if c.startswith("eval "))
    assert evals == ["runs/gowal_l2_lowdata500_gaussian_s0", "runs/gowal_l2_lowdata500_none_s1"]
    assert all("--attacks pgd,multitargeted --n 500" in c for c in calls if c.startswith("eval "))
    for run in ("l2_lowdata500_gaussian_s0", "l2_lowdata500_none_s1"):
        assert (collected / run / "eval_mt500.json").exists()
    assert not (collected / "lowdata500_none_s0" / "eval_mt500.json").exists()
    assert "runs/gowal_lowdata500_none_s0 is not on this machine" in result.stdout
    [compare] = [c for c in calls if c.startswith("compare ")]
    assert "l2_lowdata500_mt500_compare.json" in compare


def _run_with_stub(tmp_path, paper, part, seeds, collected=()):
    """Runs docs/results/PAPER/reproduce.sh PART in a copy with a `tfrobust` stub that logs its calls.

    The stub writes every --json file and makes a finished model in every --output directory (and a teacher's
    generated/teacher.json); COLLECTED lists files already in docs/results/. Returns the calls, one per line.
    """
    results = tmp_path / "docs" / "results"
    (results / paper).mkdir(parents=True)
    for name in ("lib.sh", "collect.sh", f"{paper}/reproduce.sh"):
        (results / name).write_text(open(os.path.join(REPO, "docs", "results", name)).read())
    (results / "collect.sh").chmod(0o755)
    for path in collected:
        (results / path).parent.mkdir(parents=True, exist_ok=True)
        (results / path).write_text("{}")
    stub = tmp_path / "bin" / "tfrobust"
    stub.parent.mkdir()
    stub.write_text('#!/bin/bash\necho "$@" >> "$LOG"\n'
                    'while [ $# -gt 0 ]; do\n'
                    '  [ "$1" = --json ] && echo "{}" > "$2"\n'
                    '  [ "$1" = --output ] && mkdir -p "$2/generated" && touch "$2/model.keras" &&\n'
                    '    echo "{}" > "$2/recipe.json" && echo "{}" > "$2/generated/teacher.json"\n'
                    '  shift\ndone\n')
    stub.chmod(0o755)
    env = dict(os.environ, PATH=f"{stub.parent}:{os.environ['PATH']}", LOG=str(tmp_path / "calls"), SEEDS=seeds)
    subprocess.run(["bash", f"docs/results/{paper}/reproduce.sh", part], cwd=tmp_path, env=env,
                   capture_output=True, text=True, check=True)
    return (tmp_path / "calls").read_text().splitlines()


def test_gowal_aa500_part_trains_and_evaluates_each_uncollected_row_then_compares(tmp_path):
    results = tmp_path / "docs" / "results"
    calls = _run_with_stub(tmp_path, "gowal", "aa500", "0", collected=["gowal/lowdata500aa_none_s0/eval_aa500.json"])
    # The collected row is left alone; the other is trained, evaluated by PGD and AutoAttack on 500, collected.
    assert [c.split()[:2] for c in calls] == [["train", "recipes/gowal2021_cifar10_linf_trades_gaussian_resnet20.py"],
                                              ["eval", "runs/gowal_lowdata500aa_gaussian_s0"],
                                              ["compare", "none=docs/results/gowal/lowdata500aa_none_s*/eval_aa500.json"]]
    assert "--variant lowdata500 --set data.seed=0" in calls[0]
    assert "--attacks pgd,autoattack --apgd-steps 100 --queries 5000 --n 500" in calls[1]
    assert (results / "gowal" / "lowdata500aa_gaussian_s0" / "eval_aa500.json").exists()
    assert calls[2].endswith("--json docs/results/gowal/lowdata500aa_compare.json")


def test_gowal_pseudo_part_trains_the_teacher_then_students_evaluated_by_pgd_and_autoattack(tmp_path):
    results = tmp_path / "docs" / "results"
    calls = _run_with_stub(tmp_path, "gowal", "pseudo", "0 1",
                           collected=["gowal/lowdata500aa_none_s0/eval_aa500.json",
                                      "gowal/lowdata500aa_gaussian_s0/eval_aa500.json"])
    teacher = "runs/gowal_teacher500_standard_fixed_s0"
    assert calls[0].startswith("train recipes/suri2021_cifar10_standard_fixed_resnet20.py") and teacher in calls[0]
    trains = [c for c in calls[1:] if c.startswith("train ")]
    assert len(trains) == 2 and all(f"--set data.teacher={teacher}" in c for c in trains)
    evals = [c for c in calls if c.startswith("eval ")]
    assert len(evals) == 4
    assert sum("--attacks pgd,autoattack --apgd-steps 100 --queries 5000 --n 500" in c and c.endswith("eval_aa500.json") for c in evals) == 2
    for s in (0, 1):
        for f in ("eval.json", "eval_aa500.json", "teacher.json"):
            assert (results / "gowal" / f"lowdata500_gaussianpl_s{s}" / f).exists()
    assert (results / "gowal" / "teacher500_standard_fixed_s0" / "recipe.json").exists()
    compares = [c for c in calls if c.startswith("compare ")]
    assert [c.split()[-1] for c in compares] == ["docs/results/gowal/lowdata500_pseudo_compare.json",
                                                 "docs/results/gowal/lowdata500_pseudo_vs_gaussian_compare.json",
                                                 "docs/results/gowal/lowdata500_pseudo_aa500_compare.json",
                                                 "docs/results/gowal/lowdata500_pseudo_vs_gaussian_aa500_compare.json"]
    assert "pseudo=docs/results/gowal/lowdata500_gaussianpl_s*/eval_aa500.json" in compares[2]
    # The two labelings paired seed by seed: the generator-labelled row is the baseline.
    assert compares[1].split()[1].startswith("gaussian=") and compares[3].split()[1].startswith("gaussian=")
    assert "pseudo=docs/results/gowal/lowdata500_gaussianpl_s*/eval_aa500.json" in compares[3]


def test_xie_bnstats_part_retrains_seeds_into_their_own_folders_with_every_bn_evaluation(tmp_path):
    results = tmp_path / "docs" / "results"
    calls = _run_with_stub(tmp_path, "xie", "bnstats", "1",
                           collected=[f"xie/bn_s1_retrained/{f}" for f in ("eval.json", "eval_batchstats.json")])
    # One BN's seed 1 is collected; MixBN and adversarial-only are trained again under their own names.
    assert [c.split()[-1] for c in calls if c.startswith("train ")] == ["runs/xie_mixbn_s1_retrained",
                                                                         "runs/xie_advonly_s1_retrained"]
    assert all("--variant small --set data.seed=1" in c for c in calls if c.startswith("train "))
    mixbn = [c for c in calls if "runs/xie_mixbn_s1_retrained" in c and not c.startswith("train ")]
    assert [c.split()[0] for c in mixbn] == ["eval", "eval", "eval", "mixbn-stats"]
    assert "--bn batch_stats" in mixbn[1] and "--bn-branch clean" in mixbn[2]
    for f in ("eval.json", "eval_batchstats.json", "eval_cleanbranch.json", "mixbn_stats.json"):
        assert (results / "xie" / "mixbn_s1_retrained" / f).exists()
    assert not (results / "xie" / "advonly_s1_retrained" / "eval_cleanbranch.json").exists()
    # The committed seed-1 rows are not touched.
    assert not (results / "xie" / "mixbn_s1").exists()


def test_precision_train_part_pairs_a_float32_and_a_bfloat16_attack_per_seed_then_compares(tmp_path):
    results = tmp_path / "docs" / "results"
    calls = _run_with_stub(tmp_path, "precision", "train compare", "0 1", collected=["precision/f32_s0/eval.json"])
    trains = [c for c in calls if c.startswith("train ")]
    # The collected row is skipped; the three others are trained for 15 epochs with the float32 training pass.
    assert [c.split()[-1] for c in trains] == ["runs/precision_bf16_s0", "runs/precision_f32_s1",
                                               "runs/precision_bf16_s1"]
    assert all(c.startswith("train recipes/tfrobust_cifar10_linf_pgd3_resnet20.py") for c in trains)
    assert all("--set train.epochs=15" in c and "--set train.precision=float32" in c for c in trains)
    assert ["attack.precision=bfloat16" in c for c in trains] == [True, False, True]
    assert all("--set data.seed=1" in c for c in trains[1:]) and "--set data.seed=0" in trains[0]
    evals = [c for c in calls if c.startswith("eval ")]
    assert len(evals) == 3 and all("--attacks pgd --n 1000" in c for c in evals)
    for row in ("bf16_s0", "f32_s1", "bf16_s1"):
        assert (results / "precision" / row / "eval.json").exists()
    assert calls[-1] == ("compare f32=docs/results/precision/f32_s* bf16=docs/results/precision/bf16_s* "
                         "--json docs/results/precision/compare.json")


def test_precision_script_names_an_unknown_attack_precision_before_training(tmp_path):
    env = dict(os.environ, ATTACKS="f32 fp16")
    result = subprocess.run(["bash", "docs/results/precision/reproduce.sh", "train"], cwd=REPO, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == "ATTACKS: unknown attack precision 'fp16'; the choices are f32 and bf16"


def test_xie_bnstats_part_pairs_moving_averages_with_batch_statistics_across_seed_0_and_the_retrained_seeds(tmp_path):
    calls = _run_with_stub(tmp_path, "xie", "bnstats", "1 2")
    compares = [c for c in calls if c.startswith("compare ")]
    assert [c.split()[-1] for c in compares] == [f"docs/results/xie/bnstats_{n}_compare.json"
                                                 for n in ("bn", "mixbn", "advonly", "mixbn_branch")]
    R = "docs/results/xie"
    assert compares[0].split()[1:3] == [
        f"moving={R}/bn_s0/eval.json,{R}/bn_s1_retrained/eval.json,{R}/bn_s2_retrained/eval.json",
        f"batch={R}/bn_s0/eval_batchstats.json,{R}/bn_s1_retrained/eval_batchstats.json,"
        f"{R}/bn_s2_retrained/eval_batchstats.json"]
    assert compares[3].split()[2] == (f"clean={R}/mixbn_s0/eval_cleanbranch.json,"
                                      f"{R}/mixbn_s1_retrained/eval_cleanbranch.json,"
                                      f"{R}/mixbn_s2_retrained/eval_cleanbranch.json")


def test_files_in_joins_each_directory_with_the_file(tmp_path):
    for d in ("a_s1", "a_s2"):
        (tmp_path / d).mkdir()
    assert _bash('files_in "z a_s?" eval.json', tmp_path) == ["z/eval.json,a_s1/eval.json,a_s2/eval.json"]


def test_wong_precision_part_trains_only_the_uncollected_lowprecisionbatchnorm_row(tmp_path):
    done = [f"wong2020_preactresnet18/precision_check_{r}/eval.json" for r in ("bf16", "f32")]
    calls = _run_with_stub(tmp_path, "wong2020_preactresnet18", "precision", "0", collected=done)
    assert [c.split()[:2] for c in calls] == [["train", "recipes/wong2020_cifar10_linf_fgsm_rs_preactresnet18.py"],
                                              ["eval", "runs/wong2020_precision_check_bf16lpbn"]]
    # The recipe's own precision: no float32 override.
    assert "precision=" not in calls[0] and calls[0].endswith("--output runs/wong2020_precision_check_bf16lpbn")
    assert (tmp_path / "docs" / "results" / "wong2020_preactresnet18" / "precision_check_bf16lpbn" /
            "eval.json").exists()


def test_xie_rows_and_depth_compare_leave_the_retrained_models_out(tmp_path):
    # The retrained seeds of the bnstats part are other models than the rows' seeds: `bn_s*` would take both.
    done = [f"xie/{row}_s{s}/{f}" for row in ("bn", "mixbn", "advonly") for s in (0, 1)
            for f in ("eval.json", "eval_batchstats.json", "eval_cleanbranch.json", "mixbn_stats.json")]
    done += [f"xie/advonly{d}_s{s}/eval.json" for d in (56, 110) for s in (0, 1)] + ["xie/advonly_s1_retrained/eval.json"]
    calls = _run_with_stub(tmp_path, "xie", "rows depth", "0 1", collected=done)
    compares = [c for c in calls if c.startswith(("compare ", "curves "))]
    assert len(compares) == 4 and not any(c.startswith(("train ", "eval ")) for c in calls)
    for c in compares:
        groups = [a.split("=", 1)[1] for a in c.split() if "=" in a]
        assert groups and all(g.endswith("_s?") for g in groups), c
