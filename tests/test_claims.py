"""edgeprune.claims and edgeprune.verdicts: every branch of the verdict rule, the budget axis, the claims list."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats as sps

from edgeprune.claims import CLAIMS, KINDS, PAPERS, Claim
from edgeprune.verdicts import (
    NOT_COMPARED, VERDICTS, Measurement, claims_table, compare_with_reference, conflicts, detectable_effect, verdict,
)  # fmt: skip

NAN = math.nan


def _claim(kind: str, value: float | None = 10.0, tolerance: float = 0.0, **kw) -> Claim:
    return Claim(
        id=f"t_{kind}", paper="QSA", text="t", metric="m", value=value, kind=kind, tolerance=tolerance, **kw
    )


# (kind, value, tolerance, mean, half width, expected) at one budget, three seeds
CASES = [
    # at_least 10: whole CI >= 10 / CI spans 10 / whole CI below
    ("at_least", 10.0, 0.0, 12.0, 1.0, "reproduced"),
    ("at_least", 10.0, 0.0, 10.5, 1.0, "inconclusive"),  # mean holds, CI reaches 9.5
    ("at_least", 10.0, 0.0, 9.5, 1.0, "inconclusive"),  # mean short, upper CI 10.5 holds
    ("at_least", 10.0, 0.0, 8.0, 1.0, "not reproduced"),
    ("at_least", 10.0, 1.0, 9.5, 0.4, "reproduced"),  # tolerance lowers the bar to 9
    ("at_least", 10.0, 0.0, 10.0, 0.0, "reproduced"),  # exact value, exact measurement (boundary)
    # at_most 0.5
    ("at_most", 0.5, 0.0, 0.2, 0.2, "reproduced"),
    ("at_most", 0.5, 0.0, 0.6, 0.2, "inconclusive"),
    ("at_most", 0.5, 0.0, 1.0, 0.2, "not reproduced"),
    ("at_most", 0.0, 1.0, 0.8, 0.1, "reproduced"),
    # within 4 ± 0.25
    ("within", 4.0, 0.25, 3.95, 0.05, "reproduced"),
    ("within", 4.0, 0.25, 3.80, 0.10, "inconclusive"),  # CI [3.7, 3.9] overlaps [3.75, 4.25]
    ("within", 4.0, 0.25, 4.00, 0.50, "inconclusive"),  # CI wider than the band
    ("within", 4.0, 0.25, 3.50, 0.10, "not reproduced"),
    ("within", 4.0, 0.25, 4.50, 0.10, "not reproduced"),
    # difference_at_least 4
    ("difference_at_least", 4.0, 0.0, 5.0, 0.5, "reproduced"),
    ("difference_at_least", 4.0, 0.0, 3.8, 0.5, "inconclusive"),  # CI [3.3, 4.3] spans 4
    ("difference_at_least", 4.0, 0.0, 2.0, 0.5, "partly"),  # CI [1.5, 2.5] > 0: direction right, short
    ("difference_at_least", 4.0, 0.0, 1.0, 1.5, "not reproduced"),  # CI includes 0, below 4
    ("difference_at_least", 4.0, 0.0, -2.0, 0.5, "not reproduced"),  # wrong direction
    # qualitative: sign only
    ("qualitative", None, 0.0, 0.3, 0.1, "reproduced"),
    ("qualitative", None, 0.0, 0.3, 0.5, "inconclusive"),
    ("qualitative", None, 0.0, -0.3, 0.1, "not reproduced"),
    ("qualitative", None, 0.0, 0.0, 0.0, "not reproduced"),
]


@pytest.mark.parametrize(("kind", "value", "tol", "mean", "half", "expected"), CASES)
def test_verdict_branches(kind, value, tol, mean, half, expected):
    assert verdict(_claim(kind, value, tol), mean, half, n=3) == expected


def test_cases_cover_every_kind_and_verdict():
    for kind in KINDS:
        seen = {c[-1] for c in CASES if c[0] == kind}
        expected = {"reproduced", "inconclusive", "not reproduced"} | ({"partly"} if kind == "difference_at_least" else set())
        assert seen == expected, kind


@pytest.mark.parametrize("kind", KINDS)
def test_single_seed_is_inconclusive(kind):
    value = None if kind == "qualitative" else 1.0
    claim = _claim(kind, value, 0.5 if kind == "within" else 0.0)
    for mean in (1.0, -5.0, 5.0):
        assert verdict(claim, mean, NAN) == "inconclusive"
        assert verdict(claim, mean, None) == "inconclusive"


def test_missing_measurement_and_untestable_claim():
    claim = _claim("at_least")
    assert verdict(claim, None, None) == "not testable here"
    assert verdict(claim, NAN, 0.1) == "not testable here"
    untestable = _claim("at_least", testable_here=False, why_not="needs ImageNet")
    assert verdict(untestable, 100.0, 0.1) == "not testable here"


def test_inconclusive_shows_the_effect_the_seeds_could_detect():
    claim = _claim("difference_at_least", 4.0, unit="pt")
    row = claims_table({claim.id: Measurement(3.8, 0.5, "", 3)}, claims=[claim]).iloc[0]
    assert row["verdict"] == "inconclusive" and "spans" in row["note"]
    # 3 seeds, half-width 0.5: sd = 0.5 sqrt(3) / t(0.975, 2); TTestPower(n=3, 80%) gives d = 3.264
    sd = 0.5 * math.sqrt(3) / sps.t.ppf(0.975, 2)
    assert detectable_effect(0.5, 3) == pytest.approx(3.264 * sd, rel=1e-3)
    assert row["detectable"] == f"{detectable_effect(0.5, 3):.1f} pt"
    half5 = sps.t.ppf(0.975, 4) * sd / math.sqrt(5)  # the same spread over 5 seeds detects a smaller effect
    assert detectable_effect(half5, 5) < detectable_effect(0.5, 3)
    reproduced = claims_table({claim.id: Measurement(6.0, 0.5, "", 3)}, claims=[claim]).iloc[0]
    assert reproduced["detectable"] == "—"


def test_partly_only_for_direction_right_magnitude_short():
    claim = _claim("difference_at_least", 4.0)
    row = claims_table({claim.id: (2.0, 0.5)}, claims=[claim]).iloc[0]
    assert row["verdict"] == "partly" and "magnitude short" in row["note"]


# --------------------------------------------------------------------------- the budget axis


def _axis(claim: Claim, *points: tuple[int, float, float]) -> pd.Series:
    return claims_table({claim.id: {s: Measurement(m, h, "", 3) for s, m, h in points}}, claims=[claim]).iloc[0]


def test_a_verdict_that_changes_with_the_budget_is_budget_sensitive():
    claim = _claim("difference_at_least", 4.0, unit="pt")
    row = _axis(claim, (8, 7.8, 2.4), (64, 4.2, 2.0))  # reproduced at 8 steps, inconclusive at 64
    assert row["verdict @ 8 steps"] == "reproduced" and row["verdict @ 64 steps"] == "inconclusive"
    assert row["verdict"] == "budget-sensitive" and "changes with the recovery budget" in row["note"]
    assert row["ours"] == "4.2 ± 2.0 pt" and row["trend"] == "7.8 → 4.2 pt, toward the threshold"


def test_a_shrinking_margin_is_budget_sensitive_a_stable_one_is_not():
    claim = _claim("difference_at_least", 4.0, unit="pt")
    shrinking = _axis(claim, (8, 25.3, 5.2), (64, 15.7, 3.0))  # reproduced at both; margin 21.3 -> 11.7 > noise 6.0
    assert (shrinking["verdict @ 8 steps"], shrinking["verdict @ 64 steps"]) == ("reproduced", "reproduced")
    assert shrinking["verdict"] == "budget-sensitive" and "margin" in shrinking["note"]
    stable = _axis(claim, (8, 12.0, 3.0), (64, 11.0, 3.0))  # a shrink inside the noise
    assert stable["verdict"] == "reproduced" and "flat" in stable["trend"]
    growing = _axis(claim, (8, 6.0, 1.0), (64, 12.0, 1.0))
    assert growing["verdict"] == "reproduced" and "away from the threshold" in growing["trend"]
    failing = _axis(_claim("at_most", 1.0, unit="pt"), (8, 11.6, 1.0), (64, 5.5, 1.0))  # not reproduced, closing in
    assert failing["verdict"] == "budget-sensitive"
    steady_fail = _axis(_claim("at_most", 1.0, unit="pt"), (8, 5.6, 1.0), (64, 5.5, 1.0))
    assert steady_fail["verdict"] == "not reproduced"
    crossing = _axis(_claim("at_most", 0.05, digits=3), (8, 0.047, 0.0), (64, 0.090, 0.0))  # a p-value: no CI
    assert crossing["verdict"] == "budget-sensitive" and "across the threshold" in crossing["trend"]


def test_budget_independent_claims_and_mixed_tables():
    recovered = _claim("difference_at_least", 4.0, recovered=True)
    fixed = Claim(id="c", paper="QSA", text="t", metric="m", value=8.0, kind="at_least")
    table = claims_table(
        {recovered.id: {8: (5.0, 0.5, "", 3), 64: (5.1, 0.5, "", 3)}, fixed.id: (9.0, 0.2, "", 3)}, claims=[recovered, fixed]
    ).set_index("id")
    assert table.loc["c", "verdict"] == "reproduced" and table.loc["c", "verdict @ 64 steps"] == "—"
    assert table.loc[recovered.id, "verdict"] == "reproduced"


# --------------------------------------------------------------------------- quick vs reference


def test_reference_verdicts_sit_beside_ours_and_conflicts_are_listed():
    quick = pd.DataFrame({"id": ["a", "b", "c", "d"], "ours": ["1", "2", "3", "4"],
                          "verdict": ["reproduced", "budget-sensitive", "not reproduced", "inconclusive"]})  # fmt: skip
    reference = pd.DataFrame({"id": ["a", "b", "c"], "ours": ["1.1", "2.2", "3.3"],
                              "verdict": ["reproduced", "not reproduced", "reproduced"]})  # fmt: skip
    both = compare_with_reference(quick, reference).set_index("id")
    assert list(both["quick vs reference"]) == ["agree", "differ", "conflict", "—"]
    assert both.loc["c", "reference ours"] == "3.3" and both.loc["d", "reference verdict"] == "—"
    assert conflicts(both.reset_index())["id"].tolist() == ["c"]


def test_a_reference_of_another_method_version_is_not_compared():
    quick = pd.DataFrame({"id": ["a", "b", "c"], "ours": ["1", "2", "3"], "note": ["", "seeds 3", ""],
                          "verdict": ["not reproduced", "not reproduced", "reproduced"]})  # fmt: skip
    reference = pd.DataFrame({"id": ["a", "b", "c"], "ours": ["1.1", "2.2", "3.3"],
                              "verdict": ["reproduced", "reproduced", "not reproduced"],
                              NOT_COMPARED: ["ppo.repair not recorded there", "ppo.repair not recorded there", ""]})  # fmt: skip
    both = compare_with_reference(quick, reference).set_index("id")
    assert list(both["quick vs reference"]) == [NOT_COMPARED, NOT_COMPARED, "conflict"]
    assert both.loc["a", "note"] == "ppo.repair not recorded there"
    assert both.loc["b", "note"] == "seeds 3; ppo.repair not recorded there" and both.loc["c", "note"] == ""
    assert conflicts(both.reset_index())["id"].tolist() == ["c"] and NOT_COMPARED not in both


def test_verdict_rejects_bad_numbers():
    claim = _claim("at_least")
    with pytest.raises(ValueError, match="half-width"):
        verdict(claim, 1.0, -0.1)
    with pytest.raises(ValueError, match="finite"):
        verdict(claim, math.inf, 0.1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"paper": "DQN"}, "paper"),
        ({"kind": "roughly"}, "kind"),
        ({"kind": "qualitative", "value": 1.0}, "None"),
        ({"kind": "at_least", "value": None}, "None"),
        ({"kind": "within", "tolerance": 0.0}, "positive tolerance"),
        ({"tolerance": -1.0}, "tolerance"),
        ({"testable_here": False}, "why_not"),
    ],
)
def test_claim_validation(kwargs, match):
    base = {"id": "x", "paper": "PPO", "text": "t", "metric": "m", "value": 1.0, "kind": "at_least"}
    with pytest.raises(ValueError, match=match):
        Claim(**{**base, **kwargs})


def test_paper_number_display():
    assert _claim("at_most", 0.5, unit="pt").paper_number == "≤ 0.5 pt"
    assert _claim("within", 4.0, 0.25, unit="x").paper_number == "4 ± 0.25 x"
    assert _claim("difference_at_least", 4.0, unit="pt").paper_number == "≥ 4 pt"
    assert _claim("qualitative", None).paper_number == "direction only"


# --------------------------------------------------------------------------- the papers' claims


def test_claims_have_unique_ids_and_known_papers():
    ids = [c.id for c in CLAIMS]
    assert len(ids) == len(set(ids))
    assert {c.paper for c in CLAIMS} == set(PAPERS)  # every paper has claims
    assert all(c.kind in KINDS for c in CLAIMS)


def test_claims_carry_the_anchor_numbers():
    by_id = {c.id: c for c in CLAIMS}
    assert by_id["akperl_acc_drop"].value == pytest.approx(72.5 - 72.0)
    assert by_id["akperl_vs_l1_acc"].value == pytest.approx(72.0 - 68.0)
    assert by_id["akperl_vs_magnitude_acc"].value == pytest.approx(72.0 - 67.5)
    assert by_id["akperl_power_reduction"].value == pytest.approx(100 / 3)
    assert by_id["akperl_sparsity"].value == 45.0
    assert by_id["akperl_significance"].value == 0.05
    assert by_id["akperl_dqn_convergence"].value == 200_000
    assert (by_id["qsa_cifar10_compression"].value, by_id["qsa_cifar10_drop"].value) == (8.0, 1.0)
    assert by_id["qsa_quantization_alone"].value == 4.0
    assert by_id["ppo_density_mobilenet"].value == by_id["ppo_density_vgg19"].value == 6.0
    imagenet = by_id["qsa_imagenet"]
    assert not imagenet.testable_here and "ImageNet" in imagenet.why_not


def test_claims_table_rows_and_columns():
    measured = {
        "akperl_acc_drop": (0.3, 0.1, "", 3),  # reproduced
        "qsa_quantization_alone": (3.9, 0.02, "fx x86 int8"),  # inside 4 ± 0.25: reproduced
        "akperl_vs_l1_acc": (2.0, 0.5, "", 3),  # direction right, short: partly
        "qsa_imagenet": (6.5, 0.1),  # untestable whatever is passed
        "ppo_density_vgg19": (3.0, 1.0),  # not reproduced
    }
    table = claims_table(measured).set_index("id")
    assert len(table) == len(CLAIMS)
    assert {"paper", "claim", "paper's number", "ours", "verdict", "note"} <= set(table.columns)
    assert set(table["verdict"]) <= set(VERDICTS)
    assert table.loc["akperl_acc_drop", "verdict"] == "reproduced"
    assert table.loc["akperl_acc_drop", "ours"] == "0.3 ± 0.1 pt"
    assert table.loc["akperl_acc_drop", "paper's number"] == "≤ 0.5 pt"
    assert table.loc["qsa_quantization_alone", "verdict"] == "reproduced"
    assert "fx x86 int8" in table.loc["qsa_quantization_alone", "note"]
    assert table.loc["akperl_vs_l1_acc", "verdict"] == "partly"
    assert table.loc["qsa_imagenet", "verdict"] == "not testable here"
    assert "ImageNet" in table.loc["qsa_imagenet", "note"]
    assert table.loc["ppo_density_vgg19", "verdict"] == "not reproduced"
    unmeasured = table.loc["qsa_cifar10_drop"]
    assert (unmeasured["verdict"], unmeasured["ours"]) == ("not testable here", "—")
    assert "no measurement" in unmeasured["note"]


def test_claims_table_rejects_unknown_ids_and_bad_tuples():
    with pytest.raises(KeyError, match="akperl_acc_dorp"):
        claims_table({"akperl_acc_dorp": (0.3, 0.1)})
    with pytest.raises(ValueError, match="akperl_acc_drop"):
        claims_table({"akperl_acc_drop": (0.3,)})


def test_recovered_claims_are_the_accuracy_comparisons():
    recovered = {c.id for c in CLAIMS if c.recovered}
    assert {"akperl_vs_l1_acc", "qsa_cifar10_vs_static", "ppo_density_mobilenet", "qsa_cifar10_drop"} <= recovered
    assert not recovered & {"akperl_sparsity", "qsa_cifar10_compression", "qsa_quantization_alone", "akperl_power_reduction"}
