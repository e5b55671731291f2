import json

import numpy as np
import pytest

from raydal.al.report import area_differences, area_under_curve, baseline_of, build_report, common_grid
from raydal.al.state import ALState, StateStore
from raydal.cli import main as cli
from raydal.exceptions import StateError


def _fake_run(path, strategy, seed, f1s):
    s = ALState(config={"strategy": strategy, "seed": seed}, fingerprint="x", phase="done")
    s.history = [
        {
            "iteration": i,
            "n_labeled": 10 + 5 * i,
            "test": {"micro_f1": f, "macro_f1": f / 2},
            "val": {"micro_f1": f, "macro_f1": f / 2},
            "seconds": {"train": 1.0 + i, "eval": 0.5, "score": 0.25, "select": 0.125},
        }
        for i, f in enumerate(f1s)
    ]
    StateStore(str(path)).save(s)
    return str(path)


def test_report_groups_trials_by_strategy(tmp_path):
    dirs = [
        _fake_run(tmp_path / "a0", "mge+clustering", 0, [0.4, 0.6, 0.7]),
        _fake_run(tmp_path / "a1", "mge+clustering", 1, [0.5, 0.6, 0.9]),
        _fake_run(tmp_path / "r0", "random", 0, [0.4, 0.5, 0.6]),
    ]
    summary = build_report(dirs, tmp_path / "out", at=[15, 20])
    mge = summary["strategies"]["mge+clustering"]
    assert mge["trials"] == 2
    assert mge["micro_f1"]["labels"] == [10, 15, 20]
    assert np.allclose(mge["micro_f1"]["mean"], [0.45, 0.6, 0.8])
    assert np.allclose(mge["micro_f1"]["std"], [0.05, 0.0, 0.1])
    # area = mean F1 over the label range (trapezoid): (0.45+0.6)/2*5 + (0.6+0.8)/2*5, / 10
    assert mge["micro_f1"]["auc"] == pytest.approx((0.525 + 0.7) / 2)
    assert mge["seconds_per_iteration"]["train"] == pytest.approx(2.0)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| mge+clustering | 2 | 60.00 ± 0.00 | 80.00 ± 10.00 |" in md
    assert (tmp_path / "out" / "f1_curves.png").stat().st_size > 1000
    assert json.loads((tmp_path / "out" / "report.json").read_text())["strategies"]["random"]["trials"] == 1


def test_report_shows_both_macro_f1_values_and_says_which_is_which(tmp_path):
    run = _fake_run(tmp_path / "p0", "mge+clustering", 0, [0.4, 0.6])
    store = StateStore(run)
    state = store.load()
    for h in state.history:  # 4 of 19 classes occur: all-class macro-F1 is capped at 4/19
        h["test"].update(macro_f1=h["test"]["micro_f1"] * 4 / 19, macro_f1_present=h["test"]["micro_f1"])
    store.save(state)
    old = _fake_run(tmp_path / "r0", "random", 0, [0.3, 0.5])  # a state from before macro_f1_present
    summary = build_report([run, old], tmp_path / "out")
    assert summary["strategies"]["mge+clustering"]["macro_f1_present"]["mean"] == pytest.approx([0.4, 0.6])
    assert "macro_f1_present" not in summary["strategies"]["random"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Test macro f1 (%)" in md and "## Test macro f1 present (%)" in md
    assert "`macro_f1`: mean F1 over all classes of the archive" in md
    assert "`macro_f1_present`: mean F1 over the classes that occur in the test split only." in md
    assert "| mge+clustering | 1 | 40.00 ± 0.00 | 60.00 ± 0.00 |" in md.split("macro f1 present")[1]


def test_area_under_curve():
    assert area_under_curve(np.array([0, 10]), np.array([0.0, 1.0])) == pytest.approx(0.5)
    assert area_under_curve(np.array([5]), np.array([0.3])) == pytest.approx(0.3)


def test_cli_report_expands_trial_folders(tmp_path, capsys):
    _fake_run(tmp_path / "exp" / "trial-0", "ll+clustering", 0, [0.1, 0.2])
    _fake_run(tmp_path / "exp" / "trial-1", "ll+clustering", 1, [0.3, 0.4])
    assert cli(["report", str(tmp_path / "exp"), "--out", str(tmp_path / "rep")]) == 0
    assert "| ll+clustering | 2 |" in capsys.readouterr().out
    with pytest.raises(StateError):
        build_report([str(tmp_path / "nothing")], tmp_path / "rep2")


def test_runs_differing_in_a_setting_are_separate_curves(tmp_path):
    a = _fake_run(tmp_path / "b5", "ll+clustering", 0, [0.4, 0.5])
    b = _fake_run(tmp_path / "b10", "ll+clustering", 0, [0.4, 0.7])
    for path, bval, lam in ((a, 5, 0.1), (b, 10, 0.1)):
        store = StateStore(path)
        state = store.load()
        state.config.update({"b": bval, "train": {"ll_lambda": lam, "seed": 3}})
        store.save(state)
    summary = build_report([a, b], tmp_path / "out")
    assert sorted(summary["strategies"]) == ["ll+clustering (b=10)", "ll+clustering (b=5)"]
    assert summary["strategies"]["ll+clustering (b=10)"]["micro_f1"]["mean"] == [0.4, 0.7]


def _areas(f1s):
    x = 10 + 5 * np.arange(len(f1s))
    return area_under_curve(x, np.array(f1s))


def test_report_gives_each_strategy_minus_random_paired_by_seed(tmp_path, capsys):
    ll = {0: [0.4, 0.6, 0.8], 1: [0.5, 0.7, 0.7]}
    rnd = {0: [0.4, 0.5, 0.6], 1: [0.5, 0.6, 0.8]}
    for seed in (0, 1):
        _fake_run(tmp_path / "exp" / f"ll-{seed}", "ll+clustering", seed, ll[seed])
        _fake_run(tmp_path / "exp" / f"random-{seed}", "random", seed, rnd[seed])
    _fake_run(tmp_path / "exp" / "tpd-7", "tpd+clustering", 7, [0.3, 0.5, 0.9])  # a seed random lacks
    assert cli(["report", str(tmp_path / "exp"), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    d = np.array([_areas(ll[s]) - _areas(rnd[s]) for s in (0, 1)])  # paired by seed
    summary = json.loads((tmp_path / "rep" / "report.json").read_text())["strategies"]
    got = summary["ll+clustering"]["micro_f1"]["auc_minus_baseline"]
    assert got["paired"] == 2 and got["baseline"] == "random" and got["range"] == [10, 20]
    assert got["mean"] == pytest.approx(d.mean()) and got["std"] == pytest.approx(d.std())
    half = 12.706 * d.std(ddof=1) / np.sqrt(2)  # t(0.975, 1 df) from a printed table
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half), abs=1e-4)
    assert got["verdict"] == "inconclusive"
    assert (
        f"| ll+clustering | random | {100 * d.mean():+.2f} (95% CI {100 * got['ci_low']:+.2f}.."
        f"{100 * got['ci_high']:+.2f}, 2 pairs): inconclusive at 5% |"
    ) in out
    unpaired = summary["tpd+clustering"]["micro_f1"]["auc_minus_baseline"]
    mean_random = np.mean([_areas(rnd[s]) for s in (0, 1)])
    assert unpaired["paired"] == 0 and unpaired["mean"] == pytest.approx(_areas([0.3, 0.5, 0.9]) - mean_random)
    assert unpaired["ci_low"] is None and unpaired["verdict"] == "inconclusive"
    assert "| tpd+clustering | random |" in out and "(unpaired: no interval)" in out
    assert "auc_minus_baseline" not in summary["random"]["micro_f1"]


def test_report_verdicts_follow_the_paired_t_test(tmp_path):
    """Five pairs: a steady gain is "ahead of random", a steady loss "behind", a noisy one inconclusive.
    Paired area differences (micro F1, 10..20 labels): ahead +0.04..+0.06, behind -0.03 +- 0.01, noisy +-0.1."""
    gains = {
        "ll": [0.05, 0.04, 0.06, 0.05, 0.05],
        "tpd": [-0.03, -0.02, -0.04, -0.03, -0.03],
        "mge": [0.10, -0.10, 0.12, -0.08, 0.02],
    }
    dirs = []
    for seed in range(5):
        dirs.append(_fake_run(tmp_path / f"random-{seed}", "random", seed, [0.4, 0.5, 0.6]))
        for strategy, g in gains.items():  # + g at every point: the area moves by g
            dirs.append(
                _fake_run(
                    tmp_path / f"{strategy}-{seed}", strategy, seed, [0.4 + g[seed], 0.5 + g[seed], 0.6 + g[seed]]
                )
            )
    summary = build_report(dirs, tmp_path / "out")["strategies"]
    verdicts = {s: summary[s]["micro_f1"]["auc_minus_baseline"]["verdict"] for s in gains}
    assert verdicts == {"ll": "holds", "tpd": "does not hold", "mge": "inconclusive"}
    tpd = summary["tpd"]["micro_f1"]["auc_minus_baseline"]
    assert tpd["mean"] == pytest.approx(-0.03) and tpd["p"] < 0.01 and tpd["ci_high"] < 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| ll | random | +5.00 (95% CI +4.12..+5.88, 5 pairs): ahead of random at 5% |" in md
    assert "-3.00 (95% CI" in md and "behind random at 5%" in md and "inconclusive at 5%" in md


def test_no_comparison_without_a_random_run(tmp_path):
    dirs = [_fake_run(tmp_path / "a", "mge", 0, [0.4, 0.5]), _fake_run(tmp_path / "b", "ll", 0, [0.4, 0.6])]
    build_report(dirs, tmp_path / "out")
    assert "minus random" not in (tmp_path / "out" / "report.md").read_text()


def test_baseline_is_the_random_run_with_the_same_settings():
    groups = ["ll (b=10)", "ll (b=20)", "random (b=10)", "random (b=20)"]
    assert baseline_of("ll (b=10)", groups) == "random (b=10)"
    assert baseline_of("ll (b=20)", groups) == "random (b=20)"
    assert baseline_of("mge (b=40)", groups) is None  # two random groups, none with b=40
    assert baseline_of("mge (b=40)", ["mge (b=40)", "random (b=10)"]) == "random (b=10)"
    assert baseline_of("random (b=10)", groups) is None


def test_differences_over_the_common_label_range():
    x, x0 = np.array([10, 20, 30, 40]), np.array([10, 30])
    y, y0 = np.array([[0.2, 0.4, 0.6, 0.8]]), np.array([[0.2, 0.4]])
    d = area_differences(x, y, [0], x0, y0, [0])
    assert d["range"] == [10, 30]
    assert d["mean"] == pytest.approx(area_under_curve(x[:3], y[0, :3]) - 0.3)


def test_differences_interpolate_both_curves_onto_one_grid():
    """The same F1 curve measured at other label counts: no difference, over the range both cover
    (each curve's own span would compare 10..30 with 10..35)."""
    x, y = np.array([10, 20, 30, 40]), np.array([[0.1, 0.5, 0.6, 0.9]])
    x0 = np.array([10, 20, 30, 35])
    y0 = np.interp(x0, x, y[0])[None]
    d = area_differences(x, y, [0], x0, y0, [0])
    assert d["range"] == [10, 35] and d["mean"] == pytest.approx(0.0, abs=1e-12)
    assert common_grid([x, x0]).tolist() == [10, 20, 30, 35]
    assert common_grid([np.array([10, 20]), np.array([30, 40])]) is None


def test_report_areas_share_the_grid_of_every_curve(tmp_path):
    """Curves measured at different label counts get their table areas over the same range."""
    a = _fake_run(tmp_path / "a", "ll", 0, [0.2, 0.4, 0.6, 0.8])  # labels 10, 15, 20, 25
    r = _fake_run(tmp_path / "r", "random", 0, [0.2, 0.4, 0.6])  # labels 10, 15, 20
    one = _fake_run(tmp_path / "t", "tpd", 0, [0.3])  # one point: no area, does not narrow the range
    summary = build_report([a, r, one], tmp_path / "out")
    assert summary["area_range"]["micro_f1"] == [10, 20]
    s = summary["strategies"]
    assert s["ll"]["micro_f1"]["auc"] == pytest.approx(0.4) and s["random"]["micro_f1"]["auc"] == pytest.approx(0.4)
    assert s["tpd"]["micro_f1"]["auc"] is None and "auc_minus_baseline" not in s["tpd"]["micro_f1"]
    assert s["ll"]["micro_f1"]["auc_minus_baseline"]["mean"] == pytest.approx(0.0, abs=1e-12)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| area 10..20 |" in md and "Area: the mean F1 over 10..20 labeled samples" in md


def test_execution_settings_never_split_a_curve_and_identity_ones_do(tmp_path):
    dirs = []
    for seed, extra in (
        (0, {"num_workers": 2}),
        (1, {"num_workers": 4}),
        (1, {"num_workers": 2, "iterations": 9, "score_batch_size": 8, "state_dir": "elsewhere"}),
    ):
        dirs.append(_fake_run(tmp_path / f"run{len(dirs)}", "ll", seed, [0.4, 0.5]))
        store = StateStore(dirs[-1])
        state = store.load()
        state.config.update(extra, dataset="ucmerced", executor="ray")
        store.save(state)
    summary = build_report(dirs, tmp_path / "out")
    assert sorted(summary["strategies"]) == ["ll (num_workers=2)", "ll (num_workers=4)"]  # iterations etc.: one curve
    assert summary["strategies"]["ll (num_workers=2)"]["trials"] == 2
    store = StateStore(dirs[1])
    state = store.load()
    state.config.update(num_workers=2, dataset="treesatai")
    store.save(state)
    assert sorted(build_report(dirs, tmp_path / "out2")["strategies"]) == [
        "ll (dataset=treesatai)",
        "ll (dataset=ucmerced)",
    ]


def test_report_gives_stopping_advice_with_numbers(tmp_path):
    from raydal.al.stopping import HISTORY_KEY

    run = _fake_run(tmp_path / "h0", "mge+clustering", 0, [0.4, 0.5, 0.55, 0.57, 0.58])
    store = StateStore(run)
    state = store.load()
    for h, k in zip(state.history[1:], (0.9, 0.99, 0.995, 0.998)):
        h[HISTORY_KEY] = {"kappa": k, "n": 1000}
    store.save(state)
    random = _fake_run(tmp_path / "r0", "random", 0, [0.4, 0.5, 0.6])  # scores nothing: no kappa
    summary = build_report([run, random], tmp_path / "out")
    advice = summary["stopping"][run]
    assert advice["kappas"] == [0.9, 0.99, 0.995, 0.998] and advice["stable"]  # mean of the last 3: 0.9943
    # last 3 rounds: F1 0.5, 0.55, 0.57, 0.58 at 15..30 labels, slope (7.5*0.08 + 2.5*0.02) / 125 = 0.0052 per label
    assert advice["slope"]["per_label"] == pytest.approx(0.0052)
    assert advice["slope"]["ci_low"] < 0.0052 < advice["slope"]["ci_high"]
    assert not summary["stopping"][random]["stable"] and summary["stopping"][random]["kappas"] == []
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## When to stop" in md
    assert f"| {run} | mge+clustering | 0.990, 0.995, 0.998 | yes | +52.00 points per 100 labels" in md
    assert f"| {random} | random | – | no | +200.00 points per 100 labels over the last 2 rounds" in md
