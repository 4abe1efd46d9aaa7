"""edgeprune.claims: every branch of the verdict rule for every comparison kind, and the claims list."""

from __future__ import annotations

import math

import pytest

from edgeprune.claims import CLAIMS, KINDS, PAPERS, VERDICTS, Claim, claims_table, verdict

NAN = math.nan


def _claim(kind: str, value: float | None = 10.0, tolerance: float = 0.0, **kw) -> Claim:
    return Claim(
        id=f"t_{kind}", paper="QSA", text="t", metric="m", value=value, kind=kind, tolerance=tolerance, **kw
    )


# (kind, value, tolerance, mean, half width, expected)
CASES = [
    # at_least 10: whole CI >= 10 / part of it / none of it
    ("at_least", 10.0, 0.0, 12.0, 1.0, "reproduced"),
    ("at_least", 10.0, 0.0, 10.5, 1.0, "partly"),  # mean holds, CI reaches 9.5
    ("at_least", 10.0, 0.0, 9.5, 1.0, "partly"),  # mean short, upper CI 10.5 holds
    ("at_least", 10.0, 0.0, 8.0, 1.0, "not reproduced"),
    ("at_least", 10.0, 1.0, 9.5, 0.4, "reproduced"),  # tolerance lowers the bar to 9
    ("at_least", 10.0, 0.0, 10.0, 0.0, "reproduced"),  # exact value, exact measurement (boundary)
    # at_most 0.5
    ("at_most", 0.5, 0.0, 0.2, 0.2, "reproduced"),
    ("at_most", 0.5, 0.0, 0.6, 0.2, "partly"),
    ("at_most", 0.5, 0.0, 1.0, 0.2, "not reproduced"),
    ("at_most", 0.0, 1.0, 0.8, 0.1, "reproduced"),
    # within 4 ± 0.25
    ("within", 4.0, 0.25, 3.95, 0.05, "reproduced"),
    ("within", 4.0, 0.25, 3.80, 0.10, "partly"),  # CI [3.7, 3.9] overlaps [3.75, 4.25]
    ("within", 4.0, 0.25, 4.00, 0.50, "partly"),  # CI wider than the band
    ("within", 4.0, 0.25, 3.50, 0.10, "not reproduced"),
    ("within", 4.0, 0.25, 4.50, 0.10, "not reproduced"),
    # difference_at_least 4
    ("difference_at_least", 4.0, 0.0, 5.0, 0.5, "reproduced"),
    ("difference_at_least", 4.0, 0.0, 3.8, 0.5, "partly"),  # part of the CI >= 4
    ("difference_at_least", 4.0, 0.0, 2.0, 0.5, "partly"),  # CI [1.5, 2.5] > 0: direction right, short
    ("difference_at_least", 4.0, 0.0, 1.0, 1.5, "not reproduced"),  # CI includes 0
    ("difference_at_least", 4.0, 0.0, -2.0, 0.5, "not reproduced"),  # wrong direction
    # qualitative: sign only
    ("qualitative", None, 0.0, 0.3, 0.1, "reproduced"),
    ("qualitative", None, 0.0, 0.3, 0.5, "partly"),
    ("qualitative", None, 0.0, -0.3, 0.1, "not reproduced"),
    ("qualitative", None, 0.0, 0.0, 0.0, "not reproduced"),
]


@pytest.mark.parametrize(("kind", "value", "tol", "mean", "half", "expected"), CASES)
def test_verdict_branches(kind, value, tol, mean, half, expected):
    assert verdict(_claim(kind, value, tol), mean, half) == expected


def test_cases_cover_every_kind_and_verdict():
    for kind in KINDS:
        seen = {c[-1] for c in CASES if c[0] == kind}
        assert seen == {"reproduced", "partly", "not reproduced"}, kind


@pytest.mark.parametrize("kind", KINDS)
def test_single_seed_is_at_best_partly(kind):
    value = None if kind == "qualitative" else 1.0
    claim = _claim(kind, value, 0.5 if kind == "within" else 0.0)
    assert verdict(claim, 1.0, NAN) == "partly"  # holds on the mean, no CI to show more
    assert verdict(claim, 1.0, None) == "partly"
    failing = 5.0 if kind == "at_most" else -5.0
    assert verdict(claim, failing, NAN) == "not reproduced"


def test_missing_measurement_and_untestable_claim():
    claim = _claim("at_least")
    assert verdict(claim, None, None) == "not testable here"
    assert verdict(claim, NAN, 0.1) == "not testable here"
    untestable = _claim("at_least", testable_here=False, why_not="needs ImageNet")
    assert verdict(untestable, 100.0, 0.1) == "not testable here"


def test_difference_partly_reasons_in_table():
    claim = _claim("difference_at_least", 4.0)
    table = claims_table({claim.id: (2.0, 0.5)}, claims=[claim]).iloc[0]
    assert table["verdict"] == "partly" and "magnitude short" in table["note"]
    table = claims_table({claim.id: (3.8, 0.5)}, claims=[claim]).iloc[0]
    assert "part of the CI" in table["note"]


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
        "akperl_acc_drop": (0.3, 0.1),  # reproduced
        "qsa_quantization_alone": (3.9, 0.02, "fx x86 int8"),  # inside 4 ± 0.25: reproduced
        "akperl_vs_l1_acc": (2.0, 0.5),  # direction right, short: partly
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
