"""edgeprune.stats against scipy/statsmodels directly and against hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats as sps
from statsmodels.stats.weightstats import ttest_ind as sm_ttest_ind

from edgeprune import stats


# --------------------------------------------------------------------------- mean_ci / summarise


def test_mean_ci_hand_computed():
    # [70, 72, 74]: mean 72, s = 2, sem = 2/sqrt(3) = 1.1547; t_{0.975, 2} = 4.302653
    # half width = 4.302653 * 1.1547005 = 4.968275
    mean, half = stats.mean_ci([70.0, 72.0, 74.0])
    assert mean == 72.0
    assert half == pytest.approx(4.968275, abs=1e-5)


def test_mean_ci_matches_scipy_interval():
    values = np.array([71.2, 72.9, 72.1, 70.8, 73.3])
    mean, half = stats.mean_ci(values, confidence=0.9)
    lo, hi = sps.t.interval(0.9, df=4, loc=values.mean(), scale=sps.sem(values))
    assert (mean - half, mean + half) == pytest.approx((lo, hi))


def test_mean_ci_single_value_has_nan_half_width():
    mean, half = stats.mean_ci([5.0])
    assert mean == 5.0 and math.isnan(half)


@pytest.mark.parametrize(
    ("values", "confidence", "match"),
    [([], 0.95, "at least one"), ([1.0, float("nan")], 0.95, "NaN"), ([1.0, 2.0], 1.0, "confidence")],
)
def test_mean_ci_bad_input(values, confidence, match):
    with pytest.raises(ValueError, match=match):
        stats.mean_ci(values, confidence)


def _tidy() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": ["m"] * 7,
            "method": ["base"] * 3 + ["l1"] * 3 + ["solo"],
            "seed": [0, 1, 2, 0, 1, 2, 0],
            "top1": [70.0, 72.0, 74.0, 60.0, 61.0, np.nan, 50.0],
            "power_mw": [150.0, 151.0, 152.0, 120.0, 121.0, 122.0, 99.0],
        }
    )


def test_summarise_groups_means_cis_and_counts():
    out = stats.summarise(_tidy(), by=["model", "method"], metrics=["top1", "power_mw"]).set_index("method")
    assert list(out.index) == ["base", "l1", "solo"]
    assert out.loc["base", "top1_mean"] == 72.0
    assert out.loc["base", "top1_ci"] == pytest.approx(4.968275, abs=1e-5)
    # NaN top1 of l1 seed 2 is left out: n = 2, mean 60.5, half = t_{.975,1} * 0.5
    assert out.loc["l1", "top1_n"] == 2 and out.loc["l1", "power_mw_n"] == 3
    assert out.loc["l1", "top1_ci"] == pytest.approx(12.706205 * 0.5, rel=1e-6)
    assert out.loc["solo", "top1_n"] == 1 and math.isnan(out.loc["solo", "top1_ci"])


def test_format_mean_ci_and_summary():
    assert stats.format_mean_ci(72.0, 0.4) == "72.0 ± 0.4"
    assert stats.format_mean_ci(72.04, 0.436, digits=2) == "72.04 ± 0.44"
    assert stats.format_mean_ci(50.0, math.nan) == "50.0 (no CI)"
    assert stats.format_mean_ci(math.nan, math.nan) == "n/a"
    summary = stats.summarise(_tidy(), by=["method"], metrics=["top1", "power_mw"])
    shown = stats.format_summary(summary, ["top1", "power_mw"], digits={"top1": 1, "power_mw": 0})
    assert list(shown.columns) == ["method", "top1", "power_mw"]
    assert shown.loc[0, "top1"] == "72.0 ± 5.0"
    assert shown.loc[0, "power_mw"] == "151 ± 2"


def test_summarise_bad_input():
    with pytest.raises(KeyError, match="accuracy"):
        stats.summarise(_tidy(), by=["method"], metrics=["accuracy"])
    with pytest.raises(ValueError, match="by"):
        stats.summarise(_tidy(), by=[], metrics=["top1"])
    with pytest.raises(ValueError, match="empty"):
        stats.summarise(_tidy().iloc[:0], by=["method"], metrics=["top1"])


# --------------------------------------------------------------------------- Welch t-test


def test_welch_hand_computed():
    # a = [2, 4, 6]: mean 4, s² = 4, s²/n = 4/3.   b = [1..5]: mean 3, s² = 2.5, s²/n = 0.5
    # SE = sqrt(4/3 + 1/2) = sqrt(11/6) = 1.354006;  t = (4 - 3) / SE = 0.738549
    # df = (11/6)² / ((4/3)²/2 + 0.5²/4) = 3.361111 / 0.951389 = 3.532847
    # pooled SD = sqrt((2*4 + 4*2.5) / 6) = sqrt(3);  d = 1 / sqrt(3) = 0.577350
    res = stats.welch_ttest([2, 4, 6], [1, 2, 3, 4, 5])
    assert res.t == pytest.approx(0.738549, abs=1e-6)
    assert res.df == pytest.approx(3.532847, abs=1e-6)
    assert res.p == pytest.approx(2 * sps.t.sf(0.738549, 3.532847), abs=1e-6)
    assert res.mean_diff == 1.0 and (res.mean_a, res.mean_b) == (4.0, 3.0)
    half = sps.t.ppf(0.975, 3.532847) * math.sqrt(11 / 6)
    assert (res.ci_low, res.ci_high) == pytest.approx((1 - half, 1 + half), abs=1e-5)
    assert res.cohens_d == pytest.approx(1 / math.sqrt(3))
    assert (res.n_a, res.n_b) == (3, 5)


def test_welch_matches_scipy_and_statsmodels():
    rng = np.random.default_rng(0)
    a, b = rng.normal(72, 0.5, 5), rng.normal(68, 2.0, 4)
    res = stats.welch_ttest(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert (res.t, res.p, res.df) == pytest.approx((ref.statistic, ref.pvalue, ref.df))
    t_sm, p_sm, df_sm = sm_ttest_ind(a, b, usevar="unequal")
    assert (res.t, res.p, res.df) == pytest.approx((t_sm, p_sm, df_sm))
    assert res.ci_low < res.mean_diff < res.ci_high


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")
def test_welch_one_sided_and_zero_spread():
    greater = stats.welch_ttest([5, 6, 7], [1, 2, 3], alternative="greater")
    two_sided = stats.welch_ttest([5, 6, 7], [1, 2, 3])
    assert greater.p == pytest.approx(two_sided.p / 2)
    assert greater.ci_high == math.inf
    # static methods give the same sparsity on every seed: d is infinite, not a crash
    assert stats.welch_ttest([0.3, 0.3, 0.3], [0.0, 0.0, 0.0]).cohens_d == math.inf


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [([1.0], [1.0, 2.0], "at least 2 values in a"), ([1.0, 2.0], [], "at least 2 values in b"),
     ([1.0, np.nan], [1.0, 2.0], "NaN")],
)
def test_welch_bad_input(a, b, match):
    with pytest.raises(ValueError, match=match):
        stats.welch_ttest(a, b)


def test_welch_bad_alternative():
    with pytest.raises(ValueError, match="alternative"):
        stats.welch_ttest([1, 2], [3, 4], alternative="bigger")


# --------------------------------------------------------------------------- Holm / compare_methods


def test_holm_known_vector():
    # m = 4, sorted p: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> max(0.06, 0.04) = 0.06
    reject, p_adj = stats.holm([0.01, 0.04, 0.03, 0.005], alpha=0.05)
    assert p_adj == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert reject.tolist() == [True, False, False, True]


@pytest.mark.parametrize(("p", "alpha"), [([0.2, 1.5], 0.05), ([], 0.05), ([0.1], 0.0)])
def test_holm_bad_input(p, alpha):
    with pytest.raises(ValueError):
        stats.holm(p, alpha)


def _methods_df() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    centres = {"base": 72.0, "l1": 68.0, "magnitude": 71.6, "akperl": 72.0}
    rows = [
        {"model": model, "method": m, "seed": s, "top1": c + (model == "vgg") + rng.normal(0, 0.4)}
        for model in ("mnv3", "vgg")
        for m, c in centres.items()
        for s in range(4)
    ]
    return pd.DataFrame(rows)


def test_compare_methods_welch_rows_and_holm():
    df = _methods_df()
    table = stats.compare_methods(df, "top1", ["akperl"], ["l1", "magnitude", "akperl"], by=["model"])
    assert len(table) == 4  # 2 models x 2 controls; akperl-vs-akperl skipped
    assert set(table["control"]) == {"l1", "magnitude"}
    row = table[(table.model == "vgg") & (table.control == "l1")].iloc[0]
    a = df[(df.model == "vgg") & (df.method == "akperl")].top1
    b = df[(df.model == "vgg") & (df.method == "l1")].top1
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert (row.t, row.p, row.mean_diff) == pytest.approx((ref.statistic, ref.pvalue, a.mean() - b.mean()))
    _, expected = stats.holm(table["p"].to_numpy())
    assert table["p_holm"].to_numpy() == pytest.approx(expected)
    assert (table["p_holm"] >= table["p"]).all()
    assert table["reject"].tolist() == (table["p_holm"] < 0.05).tolist()
    # a 4-pt gap over 0.4-pt noise survives Holm
    assert table[table.control == "l1"]["reject"].all()


def test_compare_methods_errors():
    df = _methods_df()
    with pytest.raises(KeyError, match="dqn"):
        stats.compare_methods(df, "top1", ["dqn"], ["l1"])
    with pytest.raises(KeyError, match="latency_ms"):
        stats.compare_methods(df, "latency_ms", ["akperl"], ["l1"])
    short = df[~((df.model == "vgg") & (df.method == "l1") & (df.seed > 0))]
    with pytest.raises(ValueError, match=r"'akperl' vs 'l1' in group \{'model': 'vgg'\}"):
        stats.compare_methods(short, "top1", ["akperl"], ["l1"], by=["model"])
    with pytest.raises(ValueError, match="self-comparisons"):
        stats.compare_methods(df, "top1", ["l1"], ["l1"])


# --------------------------------------------------------------------------- ANOVA


def test_anova_oneway_hand_computed_and_scipy():
    # groups [1,2,3], [4,5,6], [7,8,9]: means 2, 5, 8, grand mean 5; SS_between = 3*(9 + 0 + 9) = 54
    # SS_within = 3 groups * 2 = 6; F = (54/2) / (6/6) = 27; partial eta² = 54/60 = 0.9
    df = pd.DataFrame({"method": list("aaabbbccc"), "top1": [1, 2, 3, 4, 5, 6, 7, 8, 9.0]})
    res = stats.anova_oneway(df, "top1", "method")
    row = res.table.loc["method"]
    assert (row["sum_sq"], row["df"], row["F"]) == pytest.approx((54.0, 2.0, 27.0))
    assert res.table.loc["Residual", "sum_sq"] == pytest.approx(6.0)
    assert row["eta_sq_partial"] == pytest.approx(0.9)
    ref = sps.f_oneway([1, 2, 3], [4, 5, 6], [7, 8, 9])
    assert (row["F"], row["PR(>F)"]) == pytest.approx((ref.statistic, ref.pvalue))
    assert res.n == 9


def test_anova_assumption_checks_match_scipy():
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"cond": np.repeat(["clean", "noise", "blur"], 6), "top1": rng.normal(70, 1, 18)})
    df.loc[df.cond == "noise", "top1"] += rng.normal(-5, 3, 6)
    res = stats.anova_oneway(df, "top1", "cond")
    groups = [df[df.cond == c].top1.to_numpy() for c in ("blur", "clean", "noise")]
    lev = sps.levene(*groups, center="median")
    assert (res.levene_stat, res.levene_p) == pytest.approx((lev.statistic, lev.pvalue))
    resid = df.top1 - df.groupby("cond").top1.transform("mean")
    sw = sps.shapiro(resid)
    assert (res.shapiro_stat, res.shapiro_p) == pytest.approx((sw.statistic, sw.pvalue), rel=1e-6)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # Levene 0/0: equal spread in every cell
def test_anova_twoway_hand_computed():
    # cells (2 reps): a1b1 [1,3] m2, a1b2 [3,5] m4, a2b1 [5,7] m6, a2b2 [11,13] m12; grand mean 6
    # SS_A = 4*((3-6)² + (9-6)²) = 72;  SS_B = 4*((4-6)² + (8-6)²) = 32
    # interaction effects ±1 in every cell: SS_AB = 8 * 1 = 8;  SS_within = 8 * 1 = 8 on 4 df (MSE 2)
    # F_A = 36, F_B = 16, F_AB = 4
    df = pd.DataFrame(
        {"method": ["a1"] * 4 + ["a2"] * 4, "condition": ["b1", "b1", "b2", "b2"] * 2,
         "top1": [1, 3, 3, 5, 5, 7, 11, 13.0]}
    )
    table = stats.anova_twoway(df, "top1", "method", "condition").table
    assert list(table.index) == ["method", "condition", "method:condition", "Residual"]
    assert table["sum_sq"].tolist() == pytest.approx([72, 32, 8, 8])
    assert table["F"].iloc[:3].tolist() == pytest.approx([36, 16, 4])
    assert table.loc["method", "PR(>F)"] == pytest.approx(sps.f.sf(36, 1, 4))
    additive = stats.anova_twoway(df, "top1", "method", "condition", interaction=False).table
    assert "method:condition" not in additive.index
    assert additive.loc["Residual", "df"] == 5  # the interaction's df goes to the residual


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_anova_errors():
    one_level = pd.DataFrame({"method": ["a"] * 4, "top1": [1, 2, 3, 4.0]})
    with pytest.raises(ValueError, match="'method' needs at least 2 levels"):
        stats.anova_oneway(one_level, "top1", "method")
    no_resid = pd.DataFrame({"method": ["a", "b"], "top1": [1, 2.0]})
    with pytest.raises(ValueError, match="residual"):
        stats.anova_oneway(no_resid, "top1", "method")
    one_per_cell = pd.DataFrame(
        {"a": ["x", "x", "y", "y"], "b": ["u", "v", "u", "v"], "top1": [1, 2, 3, 5.0]}
    )
    with pytest.raises(ValueError, match="residual"):
        stats.anova_twoway(one_per_cell, "top1", "a", "b")
    assert stats.anova_twoway(one_per_cell.iloc[[0, 1, 2, 3, 0]], "top1", "a", "b", interaction=False).n == 5
    empty_cell = pd.DataFrame(
        {"a": ["x", "x", "y", "y", "x"], "b": ["u", "u", "u", "u", "v"], "top1": [1, 2, 3, 4, 5.0]}
    )
    with pytest.raises(ValueError, match="interaction=False"):
        stats.anova_twoway(empty_cell, "top1", "a", "b")
    with pytest.raises(KeyError, match="seedz"):
        stats.anova_oneway(one_level, "top1", "seedz")
    with pytest.raises(ValueError, match="must differ"):
        stats.anova_twoway(one_level, "top1", "method", "method")


# --------------------------------------------------------------------------- regression


def test_regression_recovers_noiseless_slope_and_phrasing():
    # power = 150 - 110 * sparsity: per +10 pt, -11 mW = -7.33% of the 150 mW intercept
    s = np.linspace(0.0, 0.8, 9)
    res = stats.regress_on_intensity(pd.DataFrame({"sparsity": s, "power_mw": 150 - 110 * s}), "power_mw")
    assert res.slope == pytest.approx(-110.0) and res.intercept == pytest.approx(150.0)
    assert res.r2 == pytest.approx(1.0)
    assert res.change_per_step == pytest.approx(-11.0)
    assert res.relative_change_pct == pytest.approx(-100 * 11 / 150)
    assert res.sentence.startswith("per +10 pt of sparsity: 7.3% less power_mw (-11 power_mw")


def test_regression_noisy_matches_linregress_and_covers_truth():
    rng = np.random.default_rng(3)
    s = rng.uniform(0, 0.9, 400)
    top1 = 72.0 - 8.0 * s + rng.normal(0, 0.5, 400)
    res = stats.regress_on_intensity(pd.DataFrame({"sparsity": s, "top1": top1}), "top1")
    ref = sps.linregress(s, top1)
    assert (res.slope, res.intercept, res.p, res.r2) == pytest.approx(
        (ref.slope, ref.intercept, ref.pvalue, ref.rvalue**2)
    )
    half = sps.t.ppf(0.975, 398) * ref.stderr
    assert res.slope_ci == pytest.approx((ref.slope - half, ref.slope + half))
    assert abs(res.slope + 8.0) < 0.4 and abs(res.intercept - 72.0) < 0.2  # ~4 standard errors
    assert res.change_per_step_ci == pytest.approx((res.slope_ci[0] / 10, res.slope_ci[1] / 10))
    assert res.intercept_ci == pytest.approx(tuple(sm.OLS(top1, sm.add_constant(s)).fit().conf_int()[0]))


def test_regression_percent_intensity_gives_same_change():
    s = np.array([0.0, 0.25, 0.5, 0.75])
    y = 20.0 - 4.0 * s + np.array([0.1, -0.1, 0.05, -0.05])
    frac = stats.regress_on_intensity(pd.DataFrame({"sparsity": s, "latency_ms": y}), "latency_ms")
    pct = stats.regress_on_intensity(
        pd.DataFrame({"sparsity": 100 * s, "latency_ms": y}), "latency_ms", percent=True
    )
    assert pct.change_per_step == pytest.approx(frac.change_per_step)
    assert pct.slope == pytest.approx(frac.slope / 100)


def test_regression_errors():
    with pytest.raises(ValueError, match="at least 3 rows"):
        stats.regress_on_intensity(pd.DataFrame({"sparsity": [0, 0.5], "top1": [70, 60]}), "top1")
    with pytest.raises(ValueError, match="single value"):
        stats.regress_on_intensity(pd.DataFrame({"sparsity": [0.3] * 3, "top1": [70, 60, 65]}), "top1")
    with pytest.raises(KeyError, match="power_mw"):
        stats.regress_on_intensity(pd.DataFrame({"sparsity": [0, 0.5, 1], "top1": [70, 60, 50]}), "power_mw")
    with pytest.raises(ValueError, match="step_pct"):
        stats.regress_on_intensity(
            pd.DataFrame({"sparsity": [0, 0.5, 1], "top1": [70, 60, 50]}), "top1", step_pct=0
        )


def test_compare_methods_lists_untestable_pairs_outside_the_holm_family():
    df = pd.DataFrame(
        {
            "method": ["t"] * 3 + ["c1"] * 3 + ["c2"] + ["c3"] * 2,
            "acc": [1.0, 2.0, 3.0, 0.0, 0.5, 1.0, 9.0, 4.0, 4.0],
        }
    )
    with pytest.raises(ValueError, match="at least 2 values"):
        stats.compare_methods(df, "acc", ["t"], ["c1", "c2"])
    table = stats.compare_methods(df, "acc", ["t"], ["c1", "c2", "c3", "absent"], untestable="list").set_index("control")
    assert "absent" not in table.index  # no data: no row
    assert not table.loc["c2", "tested"] and "fewer than 2" in table.loc["c2", "why_not"]
    assert table.loc["c3", "tested"]  # spread on one side is enough for Welch
    tested = table[table["tested"].astype(bool)]
    assert tested["p_holm"].to_numpy() == pytest.approx(stats.holm(tested["p"].to_numpy())[1])
    assert np.isnan(table.loc["c2", "p_holm"])
