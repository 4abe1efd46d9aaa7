"""edgeprune.report: claim measurements, tables, statistics and the HTML index on hand-made results."""

from __future__ import annotations

import dataclasses
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from edgeprune import results
from edgeprune.verdicts import VERDICTS, claims_table
from edgeprune.paths import ResultPaths
from edgeprune.report import analysis, figures, tables
from edgeprune.report.collect import Results, load_results
from edgeprune.report.evidence import claim_measurements
from edgeprune.report.html import VERDICT_COLOURS, write_index
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests


def _frame(stage: str, rows: list[dict]) -> pd.DataFrame:
    out = []
    for row in rows:
        full = {c: np.nan for c in results.COLUMNS}
        extra = row.pop("extra", {})
        full.update(row, extra=json.dumps(extra), stage=stage)
        out.append(full)
    return pd.DataFrame(out)


DENSE = {"top1": 72.0, "power": 150.0, "latency": 20.0}
AKPERL = [71.5, 71.8, 72.1]
L1 = [68.0, 68.5, 67.9]
MAG = [67.0, 67.4, 66.8]
RANDOM = [71.6, 71.0, 72.3]  # equal-budget random search: no better or worse than AKPERL beyond noise
AGENT_R_MINUS = [0.45, 0.47, 0.44]  # the random control's best R: below the agent's clean R (0.50, 0.52, 0.47)


def _akperl_rows() -> pd.DataFrame:
    rows = [{"model": "mobilenet_v3_small", "method": "none", "setting": "dense", "seed": 0, "top1": DENSE["top1"],
             "latency_b1_ms": DENSE["latency"], "sparsity_realised": 0.0, "extra": {"power_mw_modelled": DENSE["power"], "power_mw_dynamic_only": DENSE["power"]}}]  # fmt: skip
    for seed in range(3):
        for method, acc, power, sparsity in (
            ("akperl", AKPERL[seed], 100.0 + seed, 0.45),
            ("l1_filter", L1[seed], 120.0, 0.45),
            ("magnitude_structured", MAG[seed], 115.0 - seed, 0.45),
            ("random_search", RANDOM[seed], 105.0, 0.47),
        ):
            rows.append({"model": "mobilenet_v3_small", "method": method, "setting": "x", "seed": seed, "top1": acc,
                         "latency_b1_ms": 19.0 + 0.1 * seed, "sparsity_realised": sparsity,
                         "extra": {"power_mw_modelled": power, "power_mw_dynamic_only": power, "dense_seed": 0}})  # fmt: skip
    return _frame("akperl", rows)


def _qsa_rows() -> pd.DataFrame:
    rows = []
    for seed in range(3):
        rows.append({"model": "m", "method": "none", "setting": "dense", "seed": seed, "top1": 80.0, "int8_top1": 79.8,
                     "extra": {"compression_int8": 3.9, "compression_fp32": 1.0, "dense_seed": 0}})  # fmt: skip
        for target, qsa_acc in ((4.0, 79.5), (8.0, 78.0 + 0.2 * seed)):
            rows.append({"model": "m", "method": "qsa", "setting": f"c{target:g}", "seed": seed, "top1": qsa_acc + 0.1,
                         "int8_top1": qsa_acc, "extra": {"target": target, "compression_int8": target + 0.1 * seed,
                                                          "compression_fp32": target / 4, "dense_seed": 0}})  # fmt: skip
            for method, acc in (("l1_filter", qsa_acc - 3.0 - 0.1 * seed), ("magnitude_structured", qsa_acc - 5.0)):
                rows.append({"model": "m", "method": method, "setting": f"c{target:g}", "seed": seed, "top1": acc,
                             "int8_top1": acc, "extra": {"target": target, "compression_int8": target,
                                                         "compression_fp32": target / 4, "dense_seed": 0}})  # fmt: skip
    return _frame("qsa", rows)


def _ppo_comparison(gains: list[float]) -> pd.DataFrame:
    n = len(gains)
    return pd.DataFrame({
        "seed": range(n), "density_gain_pct": gains, "top1_loss": [0.5] * n, "ppo_density": [10.0] * n,
        "static_density": [9.0] * n, "ppo_top1": [70.0] * n, "static_top1": [70.5] * n, "dense_top1": [70.5] * n,
        "size_reduction": [5.0] * n, "ppo_bits": [6.0] * n, "lth_top1": [60.0] * n, "ft_top1_float": [70.2] * n,
        "lth_top1_float": [60.5] * n, "lth_density": [8.0] * n, "budget": [0] * n, "recovery_steps": [8] * n,
        "density_gain_vs_random_pct": [g - 8.0 for g in gains], "reward_gain_vs_random": [g / 10 - 0.8 for g in gains],
        "random_top1": [60.0] * n,
    })  # fmt: skip


@pytest.fixture
def res() -> Results:
    akperl_summary = {"steps_to_99": {"0": 100, "1": 120, "2": 140}, "steps_per_run": 300}
    ablations = pd.DataFrame({"variant": ["full", "no_stats"], "seed": [0, 0], "final_R": [1.0, 0.7]})
    policies = pd.DataFrame({"label": ["akperl"] * 6, "seed": [0, 0, 1, 1, 2, 2], "condition": ["clean", "fog"] * 3,
                             "R": [0.50, 0.1, 0.52, 0.1, 0.47, 0.1]})  # fmt: skip
    controls = pd.DataFrame({"label": ["random"] * 3, "seed": [0, 1, 2], "condition": ["clean"] * 3, "R": AGENT_R_MINUS})
    stream = pd.DataFrame([{"seed": seed, "method": m, "batch": b, "top1": top1 + seed + b % 2}
                           for seed in range(3) for b in range(4)
                           for m, top1 in (("akperl_dynamic", 61.0), ("best_static", 60.0), ("oracle", 63.0))])  # fmt: skip
    return Results(
        rows=pd.concat([_akperl_rows(), _qsa_rows()], ignore_index=True),
        akperl={"mobilenet_v3_small": {"summary": akperl_summary, "ablations": ablations, "policies": policies,
                                        "controls": controls, "stream": stream}},
        ppo={"mobilenet_v2": _ppo_comparison([10.0, 12.0, 14.0])},
    )


def _t_ci(values) -> tuple[float, float]:
    values = np.asarray(values, float)
    return values.mean(), sps.t.ppf(0.975, len(values) - 1) * sps.sem(values)


def test_akperl_measurements_are_per_seed_differences_with_t_intervals(res):
    m = claim_measurements(res)
    mean, half = _t_ci(DENSE["top1"] - np.array(AKPERL))
    assert m["akperl_acc_drop"][:2] == pytest.approx((mean, half))
    mean, half = _t_ci(np.array(AKPERL) - np.array(L1))
    assert m["akperl_vs_l1_acc"][:2] == pytest.approx((mean, half))
    power = 100.0 + np.arange(3)
    assert m["akperl_power_reduction"][0] == pytest.approx(np.mean(100 * (150 - power) / 150))
    best_static = np.minimum(120.0, 115.0 - np.arange(3))
    assert m["akperl_power_vs_static"][0] == pytest.approx(np.mean(100 * (best_static - power) / 150))
    assert m["akperl_sparsity"][0] == pytest.approx(45.0)
    # convergence: every run reached 99% within half of its 300 steps
    assert m["akperl_dqn_convergence"][0] == pytest.approx(120.0)
    mean, half = m["akperl_monitoring_ablation"][:2]  # one ablation seed: a mean, no interval
    assert mean == pytest.approx(0.3) and np.isnan(half)


def test_power_claims_on_rows_from_before_the_board_energy_model_are_not_judged(res):
    old = res.rows.assign(extra=res.rows["extra"].map(
        lambda e: {k: v for k, v in (json.loads(e) if isinstance(e, str) else e).items() if k != "power_mw_dynamic_only"}))
    m = claim_measurements(Results(rows=old, akperl=res.akperl, ppo=res.ppo))
    for claim in ("akperl_power_reduction", "akperl_power_vs_static"):
        assert m[claim].mean is None and "predate the board energy model" in m[claim].note
    assert m["akperl_acc_drop"].mean is not None  # the other claims stand


def test_dynamic_switching_is_judged_against_the_best_static_network_with_the_oracle_gap(res):
    m = claim_measurements(res)["akperl_dynamic_vs_static"]
    assert m.mean == pytest.approx(1.0) and m.ci_half_width == pytest.approx(0.0) and m.n == 3
    assert "oracle switcher − best static: +3.00 ± 0.00 pt" in m.note
    assert claims_table({"akperl_dynamic_vs_static": m}).set_index("id").loc["akperl_dynamic_vs_static", "verdict"] == "reproduced"


def test_qsa_controller_is_judged_against_its_banks_best_static_network(res):
    stream = pd.DataFrame([{"seed": seed, "arm": arm, "batch": b, "top1": top1 + b}
                           for seed in range(2) for b in range(3)
                           for arm, top1 in (("qsa+controller", 50.0 + seed), ("best_static", 52.0), ("oracle", 52.0))])  # fmt: skip
    with_stream = Results(rows=res.rows, akperl=res.akperl, ppo=res.ppo, qsa={"m": {"stream": stream}})
    m = claim_measurements(with_stream)["qsa_dynamic_vs_static"]
    assert m.mean == pytest.approx(-1.5) and m.n == 2
    assert "+0.00 ± 0.00 pt (the oracle gains nothing here" in m.note


def test_the_dqn_is_judged_against_equal_budget_random_search_as_our_check(res):
    m = claim_measurements(res)
    agent_r = np.array([0.50, 0.52, 0.47])  # the clean condition's R; the fog rows are another condition
    assert m["akperl_vs_random_search"][:2] == pytest.approx(_t_ci(agent_r - np.array(AGENT_R_MINUS)))
    table = claims_table(m).set_index("id")
    assert table.loc["akperl_vs_random_search", "paper"] == "AKPERL (our check)"
    assert table.loc["akperl_vs_random_search", "verdict"] == "reproduced"  # +0.043 ± 0.016: the DQN is ahead
    assert table.loc["akperl_vs_l1_acc", "paper"] == "AKPERL"
    files = {k: v for k, v in res.akperl["mobilenet_v3_small"].items() if k != "controls"}
    without = Results(rows=res.rows, akperl={"mobilenet_v3_small": files}, ppo=res.ppo)
    assert "akperl_vs_random_search" not in claim_measurements(without)  # a run without controls: not testable


def test_the_dqn_is_judged_against_the_greedy_allocation_as_our_check(res):
    """A greedy control well ahead of the agent: the check says so ("not reproduced"); random stays judged apart."""
    greedy = pd.DataFrame({"label": ["greedy"] * 3, "seed": [0, 1, 2], "condition": ["clean"] * 3, "R": [0.60, 0.63, 0.58]})
    files = dict(res.akperl["mobilenet_v3_small"])
    files["controls"] = pd.concat([files["controls"], greedy], ignore_index=True)
    m = claim_measurements(Results(rows=res.rows, akperl={"mobilenet_v3_small": files}, ppo=res.ppo))
    agent_r = np.array([0.50, 0.52, 0.47])
    assert m["akperl_vs_greedy_search"][:2] == pytest.approx(_t_ci(agent_r - greedy.R.to_numpy()))
    assert m["akperl_vs_random_search"][:2] == pytest.approx(_t_ci(agent_r - np.array(AGENT_R_MINUS)))
    table = claims_table(m).set_index("id")
    assert table.loc["akperl_vs_greedy_search", "paper"] == "AKPERL (our check)"
    assert table.loc["akperl_vs_greedy_search", "verdict"] == "not reproduced"  # -0.107 ± 0.02: greedy is ahead
    assert "akperl_vs_greedy_search" not in claim_measurements(res)  # a run without the greedy control


def test_akperl_significance_is_the_largest_holm_adjusted_one_sided_p(res):
    p = [sps.ttest_ind(AKPERL, other, equal_var=False, alternative="greater").pvalue for other in (L1, MAG)]
    expected = multipletests(p, method="holm")[1].max()
    mean, half, note = claim_measurements(res)["akperl_significance"][:3]
    assert mean == pytest.approx(expected)
    assert half == 0.0 and "Holm" in note


def test_a_run_without_a_plateau_gives_no_convergence_number(res):
    res.akperl["mobilenet_v3_small"]["summary"] = {"steps_to_99": {"0": 290, "1": 100}, "steps_per_run": 300}
    mean, _, note = claim_measurements(res)["akperl_dqn_convergence"][:3]
    assert mean is None and "still rising" in note


def test_qsa_is_judged_at_the_target_nearest_8x_against_the_best_static_baseline(res):
    m = claim_measurements(res)
    qsa = 78.0 + 0.2 * np.arange(3)
    l1 = qsa - 3.0 - 0.1 * np.arange(3)  # the better static baseline
    assert m["qsa_cifar10_compression"][0] == pytest.approx(8.1)
    assert m["qsa_cifar10_drop"][0] == pytest.approx(np.mean(80.0 - qsa))
    assert m["qsa_cifar10_static_drop"][0] == pytest.approx(np.mean(80.0 - l1))
    assert m["qsa_cifar10_vs_static"][:2] == pytest.approx(_t_ci(qsa - l1))
    assert "l1_filter" in m["qsa_cifar10_vs_static"][2]
    assert m["qsa_quantization_alone"][0] == pytest.approx(3.9)


def test_ppo_density_claims_per_model_and_missing_models_say_why(res):
    m = claim_measurements(res)
    assert m["ppo_density_mobilenet"][:2] == pytest.approx(_t_ci([10.0, 12.0, 14.0]))
    assert m["ppo_density_vgg19"][0] is None and "vgg19_bn" in m["ppo_density_vgg19"][2]


def test_ppo_is_judged_against_equal_budget_random_search_as_our_check(res):
    m = claim_measurements(res)
    assert m["ppo_vs_random_search"][:2] == pytest.approx(_t_ci([0.2, 0.4, 0.6]))
    assert "density gain over random +4 % at top-1 70.0 vs 60.0 %" in m["ppo_vs_random_search"].note
    assert claims_table(m).set_index("id").loc["ppo_vs_random_search", "paper"] == "PPO (our check)"
    no_control = res.ppo["mobilenet_v2"].assign(reward_gain_vs_random=np.nan)
    assert "ppo_vs_random_search" not in claim_measurements(Results(rows=res.rows, akperl=res.akperl, ppo={"mobilenet_v2": no_control}))
    assert "ppo_vs_greedy_search" not in m  # the greedy control did not run


def test_ppo_is_judged_against_the_greedy_allocation_as_our_check(res):
    comp = res.ppo["mobilenet_v2"].assign(reward_gain_vs_greedy=[-0.3, -0.2, -0.4], density_gain_vs_greedy_pct=-5.0,
                                          greedy_top1=71.0)  # fmt: skip
    m = claim_measurements(Results(rows=res.rows, akperl=res.akperl, ppo={"mobilenet_v2": comp}))
    assert m["ppo_vs_greedy_search"][:2] == pytest.approx(_t_ci([-0.3, -0.2, -0.4]))
    assert "density gain over greedy -5 % at top-1 70.0 vs 71.0 %" in m["ppo_vs_greedy_search"].note
    row = claims_table(m).set_index("id").loc["ppo_vs_greedy_search"]
    assert row["paper"] == "PPO (our check)" and row["verdict"] == "not reproduced"  # the greedy control is ahead


def test_claims_table_verdicts_follow_from_the_measurements(res):
    table = claims_table(claim_measurements(res)).set_index("id")
    # drop 0.2 ± 0.75 pt against "at most 0.5": the CI spans the threshold
    assert table.loc["akperl_acc_drop", "verdict"] == "inconclusive"
    assert table.loc["akperl_acc_drop", "detectable"].endswith(" pt")
    # AKPERL ahead of magnitude by 4.73 ± 1.23 pt, claim 4.5: the CI straddles it
    assert table.loc["akperl_vs_magnitude_acc", "verdict"] == "inconclusive"
    # QSA ahead of L1 by 3.1 ± 0.25 pt, claim 4: direction right, magnitude short
    assert table.loc["qsa_cifar10_vs_static", "verdict"] == "partly"
    assert "magnitude short" in table.loc["qsa_cifar10_vs_static", "note"]
    # dense int8 compression 3.9 exactly, claim 4 ± 0.25: reproduced
    assert table.loc["qsa_quantization_alone", "verdict"] == "reproduced"
    # PPO density gain 12 ± 5 %, claim >= 6: reproduced
    assert table.loc["ppo_density_mobilenet", "verdict"] == "reproduced"
    assert table.loc["qsa_imagenet", "verdict"] == "not testable here"
    assert table.loc["ppo_density_vgg19", "verdict"] == "not testable here"


def test_recovered_claims_are_measured_at_every_budget_against_methods_at_that_budget(res):
    rows = res.rows.assign(budget=np.where(res.rows["method"] == "none", np.nan, 0.0), recovery_steps=8.0)
    rows.loc[rows["method"] == "none", "recovery_steps"] = np.nan
    longer = rows[rows["method"] != "none"].assign(budget=1.0, recovery_steps=64.0)
    longer.loc[longer["method"] == "l1_filter", "top1"] += 2.0  # L1 recovers more with a longer budget
    res.rows = pd.concat([rows, longer], ignore_index=True)
    m = claim_measurements(res)
    assert set(m["akperl_vs_l1_acc"]) == {8, 64}
    assert m["akperl_vs_l1_acc"][8].mean == pytest.approx(np.mean(np.array(AKPERL) - np.array(L1)))
    assert m["akperl_vs_l1_acc"][64].mean == pytest.approx(np.mean(np.array(AKPERL) - np.array(L1)) - 2.0)
    assert m["akperl_sparsity"].mean == pytest.approx(45.0)  # structure only: one measurement
    table = claims_table(m).set_index("id")
    assert {"ours @ 8 steps", "verdict @ 64 steps", "trend"} <= set(table.columns)
    assert table.loc["akperl_sparsity", "ours @ 64 steps"] == "—"


def test_akperl_table1_puts_the_papers_numbers_beside_ours(res):
    numeric, shown = tables.akperl_table1(res)
    assert list(shown["method"]) == ["none", "l1_filter", "magnitude_structured", "akperl", "random_search"]
    assert pd.isna(shown.set_index("method").loc["random_search", "paper top-1 %"])  # a control: no paper number
    row = shown.set_index("method").loc["akperl"]
    assert row["paper top-1 %"] == 72.0
    assert row["top-1 %"].startswith(f"{np.mean(AKPERL):.2f} ± ")
    assert any("modelled" in c for c in shown.columns) and any("measured" in c for c in shown.columns)
    assert numeric.set_index("method").loc["akperl", "top1_n"] == 3


def test_qsa_tables_drop_and_ablation(res):
    numeric, _ = tables.qsa_compression(res)
    qsa8 = numeric[(numeric["method"] == "qsa") & (numeric["target"] == 8.0)].iloc[0]
    assert qsa8["drop_int8_mean"] == pytest.approx(np.mean(80.0 - (78.0 + 0.2 * np.arange(3))))
    numeric, shown = tables.qsa_ablation(res)
    assert set(shown["variant"]) == {"neither (dense fp32)", "quantization only (int8)", "sparsity only (QSA, fp32)",
                                     "both (QSA + int8)"}  # fmt: skip


def test_missing_stages_are_skipped_with_a_reason(res):
    built, skipped = tables.build_all(res)
    assert {"claims", "akperl_table1", "qsa_compression", "ppo_density", "ppo_lth"} <= set(built)
    assert "baselines" in skipped["baselines_sweep"]
    assert "stream" in skipped["qsa_dynamic"]


def test_write_table_writes_csv_markdown_and_escaped_latex(tmp_path, res):
    numeric, shown = tables.akperl_table1(res)
    paths = tables.write_table(numeric, shown, tmp_path, "t1", "A caption")
    assert [p.suffix for p in paths] == [".csv", ".md", ".tex"]
    assert pd.read_csv(tmp_path / "t1.csv").shape == numeric.shape
    assert (tmp_path / "t1.md").read_text().startswith("**A caption**")
    tex = (tmp_path / "t1.tex").read_text()
    assert "\\caption{A caption}" in tex and "l1\\_filter" in tex
    with pytest.raises(ValueError, match="plain file stem"):
        tables.write_table(numeric, shown, tmp_path, "a/b", "x")


def test_claims_summary_counts_verdicts(res):
    numeric, _ = tables.claims(res)
    summary = tables.claims_summary(numeric)
    assert sum(summary["verdicts"].values()) == len(numeric)
    assert summary["ours"]["akperl_sparsity"] == pytest.approx(45.0)


def test_dynamic_vs_static_holm_over_the_whole_table(res):
    table = analysis.dynamic_vs_static(res)
    tested = table[table["tested"]]
    assert tested["p_holm"].to_numpy() == pytest.approx(multipletests(tested["p"], method="holm")[1])
    top1 = tested[(tested["paper"] == "AKPERL") & (tested["metric"] == "top1") & (tested["control"] == "l1_filter")].iloc[0]
    assert top1["p"] == pytest.approx(sps.ttest_ind(AKPERL, L1, equal_var=False).pvalue)
    assert bool(top1["treatment_better"])
    # power: lower is better, AKPERL draws less
    power = tested[(tested["paper"] == "AKPERL") & (tested["metric"] == "power_mw_modelled")]
    assert power["treatment_better"].astype(bool).all()
    # L1 power has no spread and neither has... AKPERL does: still tested; QSA per target
    assert set(table.loc[table["paper"] == "QSA", "target"]) == {4.0, 8.0}


def test_an_untestable_pair_is_listed_not_dropped():
    rows = _frame("akperl", [
        {"model": "m", "method": "akperl", "setting": "x", "seed": 0, "top1": 70.0},
        {"model": "m", "method": "l1_filter", "setting": "x", "seed": 0, "top1": 69.0},
        {"model": "m", "method": "l1_filter", "setting": "x", "seed": 1, "top1": 68.0},
    ])  # fmt: skip
    table = analysis.dynamic_vs_static(Results(rows=rows))
    row = table[table["metric"] == "top1"].iloc[0]
    assert not row["tested"] and "fewer than 2" in row["why_not"]


def test_anovas_on_a_static_sweep():
    rng = np.random.default_rng(0)
    rows = [{"model": "m", "method": m, "setting": f"s{s}", "seed": seed, "sparsity": s,
             "top1": 80 - 20 * s - (3 if m == "b" else 0) + rng.normal(0, 0.3)}  # fmt: skip
            for m in ("a", "b") for s in (0.3, 0.5) for seed in range(3)]
    fits, skipped = analysis.anovas(Results(rows=_frame("baselines", rows)))
    frame = analysis.anova_frame(fits)
    sweep = frame[frame["analysis"].str.contains("method x sparsity")].set_index("term")
    assert sweep.loc["method", "PR(>F)"] < 1e-6 and sweep.loc["sparsity", "PR(>F)"] < 1e-6
    assert "no shift conditions" in next(iter(skipped.values()))


def test_regressions_read_per_10_points_of_sparsity():
    rows = [{"model": "m", "method": "none", "setting": "dense", "seed": 0, "sparsity": 0.0, "top1": 80.0}]
    rows += [{"model": "m", "method": "l1", "setting": f"s{s}", "seed": 0, "sparsity": s, "top1": 80.0 - 10 * s}
             for s in (0.3, 0.5, 0.7)]  # fmt: skip
    fits = analysis.regressions(Results(rows=_frame("baselines", rows)))
    frame = analysis.regression_frame(fits)
    assert frame.loc[frame["quantity"] == "top1", "change_per_step"].iloc[0] == pytest.approx(-1.0)


def test_pareto_front_keeps_only_undominated_points():
    x = pd.Series([1.0, 2.0, 3.0, 2.5])
    y = pd.Series([70.0, 75.0, 74.0, 76.0])
    assert figures.pareto_front(x, y).tolist() == [True, True, False, True]


def test_intensity_figure_draws_seed_means_per_method_with_the_dense_row_at_zero():
    rows = [{"method": "none", "sparsity": None, "seed": 0, "top1": 80.0, "latency_b1_ms": 4.0}]
    rows += [{"method": m, "sparsity": s, "seed": seed, "top1": 70.0 - 10 * s + seed, "latency_b1_ms": 4.0 - s}
             for m in ("l1", "magnitude") for s in (0.3, 0.5) for seed in (0, 2)]  # fmt: skip
    fig = figures.intensity(pd.DataFrame(rows))
    accuracy, latency = fig.axes
    lines = {c.get_label(): c for c in accuracy.containers}
    assert sorted(lines) == ["l1", "magnitude", "none"]
    x, y = lines["l1"].lines[0].get_data()
    assert list(x) == [30.0, 50.0] and list(y) == pytest.approx([68.0, 66.0])  # means over seeds 0 and 2
    assert list(lines["none"].lines[0].get_data()[0]) == [0.0]
    assert len(latency.containers) == 3
    plt.close(fig)


def test_load_results_reads_the_stages_and_lists_what_is_missing(tmp_path):
    paths = ResultPaths(tmp_path)
    rows = _akperl_rows().drop(columns=["stage"]).to_dict("records")
    results.append_rows(paths.method_rows("akperl", "mobilenet_v3_small"), rows)
    res = load_results(paths, ["mobilenet_v3_small"])
    assert len(res.stage("akperl")) == len(rows)
    assert "ppo/mobilenet_v3_small" in res.missing and res.power is None
    with pytest.raises(ValueError, match="unknown stage"):
        load_results(paths, ["m"], stages=["nope"])


def test_index_links_every_notebook_and_shows_the_claims(tmp_path, res):
    reports = tmp_path / "reports"
    (reports / "30_akperl_dqn").mkdir(parents=True)
    (reports / "30_akperl_dqn" / "mobilenet_v3_small.html").write_text("<html></html>")
    (reports / "90_tables.html").write_text("<html></html>")
    numeric, shown = tables.claims(res)
    tables.write_table(numeric, shown, tmp_path / "tables", "claims", "c")
    page = write_index(reports, tmp_path / "tables").read_text()
    assert 'href="30_akperl_dqn/mobilenet_v3_small.html"' in page and 'href="90_tables.html"' in page
    assert 'class="v-reproduced"' in page and "not testable here" in page
    assert set(VERDICT_COLOURS) == set(VERDICTS)  # every verdict has its colour, here and in 90_tables
    assert "td.v-not-testable-here { background: #e2e3e5; }" in page
    assert 'href="../tables/claims.tex"' in page
    with pytest.raises(FileNotFoundError, match="dvc repro"):
        write_index(tmp_path / "nowhere", tmp_path)


def test_index_lists_the_claims_not_compared_with_the_reference(tmp_path, res):
    (tmp_path / "reports").mkdir()
    _, shown = tables.claims(res)
    why = ["ppo.repair not recorded there"] + [""] * (len(shown) - 1)
    numeric, shown = tables.claims(res, shown[["id", "ours", "verdict"]].assign(**{"not compared": why}))
    tables.write_table(numeric, shown, tmp_path / "tables", "claims", "c")
    page = write_index(tmp_path / "reports", tmp_path / "tables", reference=tmp_path).read_text()
    first = shown["id"].iloc[0]
    assert "Conflicts (reproduced here, not reproduced there, or the reverse): none." in page
    assert f"the note says which setting): {first}.</p>" in page and "ppo.repair not recorded there" in page


def test_reference_ran_with_another_ppo_is_not_compared(tmp_path):
    from edgeprune.claims import CLAIMS
    from edgeprune.report.reference import load_claims, method_changes

    ppo_claim = next(c.id for c in CLAIMS if c.paper == "PPO")
    qsa_claim = next(c.id for c in CLAIMS if c.paper == "QSA")
    ref, run = tmp_path / "reference", tmp_path / "results"
    (ref / "tables").mkdir(parents=True)
    pd.DataFrame({"id": [ppo_claim, qsa_claim], "ours": ["1", "2"], "verdict": ["reproduced"] * 2}).to_csv(
        ref / "tables" / "claims.csv", index=False
    )
    for folder, summary in ((ref, {"signal": "ptq"}), (run, {"signal": "sensitivity", "repair": True})):
        (folder / "ppo" / "m").mkdir(parents=True)
        (folder / "ppo" / "m" / "summary.json").write_text(json.dumps(summary))
    assert method_changes(run, ref) == {
        "PPO": "reference ran another method version (ppo.signal ptq there, sensitivity here; "
        "ppo.repair not recorded there, True here)"
    }
    table = load_claims(ref, results=run).set_index("id")
    assert table.loc[ppo_claim, "not compared"].startswith("reference ran another") and table.loc[qsa_claim, "not compared"] == ""
    (ref / "ppo" / "m" / "summary.json").write_text(json.dumps({"signal": "sensitivity", "repair": True}))
    assert method_changes(run, ref) == {} and "not compared" not in load_claims(ref)


def test_reference_snapshot_keeps_small_outputs_with_provenance(tmp_path):
    from edgeprune.report.reference import describe, load_claims, snapshot

    run = tmp_path / "ref" / "results"
    (run / "tables").mkdir(parents=True)
    pd.DataFrame({"id": ["a"], "ours": ["1.0"], "verdict": ["reproduced"]}).to_csv(run / "tables" / "claims.csv", index=False)
    (run / "akperl" / "m").mkdir(parents=True)
    (run / "akperl" / "m" / "rows.csv").write_text("x\n1\n")
    (run / "akperl" / "m" / "summary.json").write_text(json.dumps({"timing_s": {"total_s": 12.5}}))
    (run / "akperl" / "m" / "models").mkdir()
    (run / "akperl" / "m" / "models" / "net.pt").write_bytes(b"weights")  # never copied
    (run.parent / "params.yaml").write_text("profile: reference\n")
    out = tmp_path / "repo" / "results" / "reference"
    out.mkdir(parents=True)
    (out / "README.md").write_text("kept")
    (out / "stale.csv").write_text("from an older run")
    snapshot(run, out, run.parent / "params.yaml", note="one sitting")
    assert (out / "README.md").read_text() == "kept" and not (out / "stale.csv").exists()
    assert (out / "akperl" / "m" / "rows.csv").is_file() and not (out / "akperl" / "m" / "models").exists()
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["stage_seconds"] == {"akperl/m": 12.5} and provenance["note"] == "one sitting"
    assert provenance["machine"]["cores"] >= 1 and (out / "params.yaml").read_text() == "profile: reference\n"
    assert load_claims(out)["verdict"].tolist() == ["reproduced"] and "reference run of commit" in describe(out)
    assert load_claims(tmp_path) is None
    with pytest.raises(FileNotFoundError, match="claims.csv"):
        snapshot(tmp_path / "nothing", out, run.parent / "params.yaml")


def test_speedups_put_measured_speedup_beside_macs_reduction():
    from edgeprune.report.tables import speedups

    def row(method, seed, macs, b1, b64, int8_b64, budget=0):
        return {"stage": "baselines", "model": "m", "method": method, "setting": "s", "seed": seed, "budget": budget,
                "macs": macs, "latency_b1_ms": b1, "latency_b64_ms": b64, "int8_latency_b64_ms": int8_b64,
                "extra": "{}"}  # fmt: skip

    rows = pd.DataFrame([
        row("none", 0, 400, 4.0, 40.0, 20.0), row("none", 1, 400, 4.0, 40.0, 20.0),
        row("l1_filter", 0, 100, 4.0, 20.0, 10.0), row("l1_filter", 1, 100, 2.0, 20.0, 10.0),
        row("l1_filter", 0, 100, 1.0, 1.0, 1.0, budget=1),  # another budget: not the primary
    ])  # fmt: skip
    numeric, display = speedups(Results(rows=rows))
    got = numeric.set_index("method").loc["l1_filter"]
    assert got["macs_reduction_mean"] == pytest.approx(4.0)
    assert got["speedup_b1_mean"] == pytest.approx(1.5)  # 4/4 and 4/2
    assert got["speedup_b64_mean"] == pytest.approx(2.0) and got["realised_b64_mean"] == pytest.approx(0.5)
    assert got["int8_speedup_b64_mean"] == pytest.approx(4.0)
    assert "none" not in set(numeric["method"]) and "realised / MACs (b64)" in display


def test_speedups_pair_each_network_with_the_dense_model_it_was_pruned_from():
    from edgeprune.report.tables import speedups

    def row(method, dense_seed, b1):
        return {"stage": "akperl", "model": "m", "method": method, "setting": "s", "seed": 0, "budget": 0, "macs": 100,
                "latency_b1_ms": b1, "latency_b64_ms": 10 * b1, "extra": json.dumps({"dense_seed": dense_seed})}  # fmt: skip

    # dense models timed 4 and 8 ms, their pruned networks 2 and 4 ms: each 2x faster than its own parent
    # (against the two parents' mean, 6 ms, they would read 3x and 1.5x: a mean of 2.25)
    rows = pd.DataFrame([row("none", 0, 4.0), row("none", 1, 8.0), row("akperl", 0, 2.0), row("akperl", 1, 4.0)])
    numeric, _ = speedups(Results(rows=rows))
    got = numeric.set_index("method").loc["akperl"]
    assert got["speedup_b1_mean"] == pytest.approx(2.0) and got["speedup_b64_mean"] == pytest.approx(2.0)


def test_modelled_power_cut_is_flagged_when_measured_time_does_not_fall(res):
    assert "modelled power falls" not in claim_measurements(res)["akperl_power_reduction"][2]  # AKPERL 5 % faster here
    slower = res.rows.copy()
    slower.loc[slower["method"] == "akperl", "latency_b1_ms"] = 21.0  # the dense network: 20 ms
    note = claim_measurements(Results(rows=slower, akperl=res.akperl))["akperl_power_reduction"][2]
    assert "modelled power falls" in note and "0.95x" in note


def test_every_table_build_all_can_make_has_a_caption(res):
    built, skipped = tables.build_all(res)
    assert set(built) | set(skipped) <= set(tables.CAPTIONS)


def test_the_papers_l1_is_judged_on_network_slimming_rows_and_untestable_without_them(res):
    """akperl_vs_l1_regularised_acc uses the l1_regularised rows (the paper's "L1 regularization applied during
    training"); a profile that leaves them out gets no number for it, while akperl_vs_l1_acc (Li et al.) stands."""
    assert claim_measurements(res)["akperl_vs_l1_regularised_acc"].mean is None
    slimmed = res.rows[res.rows["method"] == "l1_filter"].assign(method="l1_regularised", top1=lambda d: d["top1"] - 1.0)
    with_slimming = dataclasses.replace(res, rows=pd.concat([res.rows, slimmed], ignore_index=True))
    m = claim_measurements(with_slimming)
    assert m["akperl_vs_l1_regularised_acc"][:2] == pytest.approx(_t_ci(np.array(AKPERL) - np.array(L1) + 1.0))
    assert m["akperl_vs_l1_acc"][:2] == pytest.approx(_t_ci(np.array(AKPERL) - np.array(L1)))
