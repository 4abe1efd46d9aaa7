"""The three papers' claims and the rule that turns our measurements into a verdict on each.

Numbers come from the papers as summarised in ``shared/ANCHORS.md`` ("What the three papers
claim"). Where a claim is relative (a drop, a reduction, a ratio) it is stated relative here
too, so it can be checked on CIFAR-10 and our devices; the arithmetic from the paper's table
is written in the claim text. Tolerances marked "ours" are this project's choice, not the
paper's.

Verdict rule (:func:`verdict`), with ``[lo, hi] = mean ± CI half-width``:

============================  ======================  =====================================  ==============
kind (threshold T)            reproduced              partly                                 not reproduced
============================  ======================  =====================================  ==============
at_least (T = value - tol)    lo >= T                 hi >= T (the mean or part of the CI)   hi < T
at_most (T = value + tol)     hi <= T                 lo <= T                                lo > T
within (value ± tol)          [lo, hi] inside band    [lo, hi] overlaps the band             no overlap
difference_at_least           lo >= T                 hi >= T, or lo > 0 (direction right,   otherwise
(T = value - tol)                                     magnitude short)
qualitative (sign)            lo > 0                  mean > 0                               mean <= 0
============================  ======================  =====================================  ==============

For ``difference_at_least`` and ``qualitative`` the measurement is signed so that a positive
number points the way the paper claims. A CI of NaN (one seed) cannot show that the claim
holds over the interval, so the best verdict is "partly" (judged on the mean alone). A claim
not testable here, or with no measurement, is "not testable here", with the reason in the note.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

import pandas as pd

from edgeprune.stats import format_mean_ci

__all__ = ["CLAIMS", "KINDS", "PAPERS", "VERDICTS", "Claim", "Measurement", "claims_table", "verdict"]

PAPERS = ("AKPERL", "QSA", "PPO")
KINDS = ("at_least", "at_most", "within", "difference_at_least", "qualitative")
VERDICTS = ("reproduced", "partly", "not reproduced", "not testable here")

Kind = Literal["at_least", "at_most", "within", "difference_at_least", "qualitative"]


@dataclass(frozen=True)
class Claim:
    """One checkable statement of a paper.

    ``metric`` says exactly what measurement of ours is compared, in ``unit``; ``value`` is the
    paper's number in that unit (None for a qualitative claim); ``tolerance`` is the slack
    allowed (see the module docstring); ``digits`` the decimals shown in the table.
    """

    id: str
    paper: str
    text: str
    metric: str
    value: float | None
    kind: Kind
    unit: str = ""
    tolerance: float = 0.0
    testable_here: bool = True
    why_not: str = ""
    note: str = ""
    digits: int = 1

    def __post_init__(self) -> None:
        if self.paper not in PAPERS:
            raise ValueError(f"claim {self.id!r}: paper must be one of {PAPERS}, got {self.paper!r}")
        if self.kind not in KINDS:
            raise ValueError(f"claim {self.id!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if (self.value is None) != (self.kind == "qualitative"):
            raise ValueError(f"claim {self.id!r}: value must be None exactly when kind is 'qualitative'")
        if not self.tolerance >= 0:
            raise ValueError(f"claim {self.id!r}: tolerance must be >= 0, got {self.tolerance}")
        if self.kind == "within" and self.tolerance == 0:
            raise ValueError(f"claim {self.id!r}: kind 'within' needs a positive tolerance")
        if not self.testable_here and not self.why_not:
            raise ValueError(f"claim {self.id!r}: an untestable claim needs why_not")

    @property
    def paper_number(self) -> str:
        """The paper's number as shown in the table, e.g. ``"≤ 0.5 pt"`` or ``"4 ± 0.25 x"``."""
        if self.value is None:
            return "direction only"
        unit = f" {self.unit}" if self.unit else ""
        number = f"{round(self.value, 2):g}"
        if self.kind == "within":
            return f"{number} ± {self.tolerance:g}{unit}"
        prefix = "≤" if self.kind == "at_most" else "≥"
        slack = f" (tol {self.tolerance:g})" if self.tolerance else ""
        return f"{prefix} {number}{unit}{slack}"


class Measurement(NamedTuple):
    """Our number for a claim: mean over seeds, CI half-width, and an optional note."""

    mean: float | None
    ci_half_width: float | None
    note: str = ""


def _is_missing(x: float | None) -> bool:
    return x is None or math.isnan(float(x))


def _judge(claim: Claim, mean: float | None, half: float | None) -> tuple[str, str]:
    """``(verdict, reason)`` by the rule in the module docstring."""
    if not claim.testable_here:
        return "not testable here", claim.why_not
    if _is_missing(mean):
        return "not testable here", "no measurement supplied"
    if not math.isfinite(mean):
        raise ValueError(f"claim {claim.id!r}: measured mean must be finite, got {mean}")
    no_ci = _is_missing(half)
    if not no_ci and not (math.isfinite(half) and half >= 0):
        raise ValueError(f"claim {claim.id!r}: CI half-width must be finite and >= 0, got {half}")
    h = 0.0 if no_ci else half
    lo, hi = mean - h, mean + h
    tol = claim.tolerance

    if claim.kind == "at_least":
        t = claim.value - tol
        full, part = lo >= t, hi >= t
    elif claim.kind == "at_most":
        t = claim.value + tol
        full, part = hi <= t, lo <= t
    elif claim.kind == "within":
        band_lo, band_hi = claim.value - tol, claim.value + tol
        full, part = band_lo <= lo and hi <= band_hi, lo <= band_hi and hi >= band_lo
    elif claim.kind == "difference_at_least":
        t = claim.value - tol
        full, part = lo >= t, hi >= t or lo > 0
    else:  # qualitative
        full, part = lo > 0, mean > 0

    if full and not no_ci:
        return "reproduced", ""
    if full or part:
        if no_ci:
            return "partly", "one seed: no CI, judged on the mean alone"
        if claim.kind == "difference_at_least" and not hi >= claim.value - tol:
            return "partly", "direction right, magnitude short of the paper's"
        return "partly", "the claim holds for part of the CI only"
    return "not reproduced", ""


def verdict(claim: Claim, measured_mean: float | None, ci_half_width: float | None) -> str:
    """Verdict on ``claim`` from our mean and CI half-width (rule in the module docstring).

    Returns one of :data:`VERDICTS`. ``measured_mean`` None/NaN means not measured; a
    ``ci_half_width`` of None/NaN means a single seed.
    """
    return _judge(claim, measured_mean, ci_half_width)[0]


def claims_table(
    measurements: Mapping[str, tuple[float | None, float | None] | tuple[float | None, float | None, str]],
    claims: list[Claim] | None = None,
) -> pd.DataFrame:
    """The "claimed vs reproduced" table: one row per claim, measured or not.

    ``measurements`` maps claim id to ``(mean, ci_half_width)`` or ``(mean, ci_half_width, note)``
    in the claim's unit. An id not among ``claims`` (default :data:`CLAIMS`) is a KeyError, so a
    typo cannot silently turn a measured claim into "not testable here".
    """
    claims = CLAIMS if claims is None else claims
    ids = {c.id for c in claims}
    unknown = sorted(set(measurements) - ids)
    if unknown:
        raise KeyError(f"measurements for unknown claim id(s) {unknown}; known ids: {sorted(ids)}")
    rows = []
    for claim in claims:
        given = measurements.get(claim.id, (None, None))
        if not 2 <= len(given) <= 3:
            raise ValueError(
                f"measurement for {claim.id!r} must be (mean, ci) or (mean, ci, note), got {given!r}"
            )
        m = Measurement(*given)
        label, reason = _judge(claim, m.mean, m.ci_half_width)
        ours = "—" if _is_missing(m.mean) else format_mean_ci(m.mean, m.ci_half_width, claim.digits)
        if ours != "—" and claim.unit:
            ours = f"{ours} {claim.unit}"
        note = "; ".join(part for part in (reason, claim.note, m.note) if part)
        rows.append(
            {
                "id": claim.id,
                "paper": claim.paper,
                "claim": claim.text,
                "metric": claim.metric,
                "paper's number": claim.paper_number,
                "ours": ours,
                "verdict": label,
                "note": note,
            }
        )
    return pd.DataFrame(rows)


_NO_IMAGENET = (
    "no ImageNet-scale run here: ImageNet is ~150 GB and training/compressing a network on it "
    "takes GPU-days, beyond the project's 2-core CPU budget (quick profile) and its paper "
    "profile, which run CIFAR-10; a class-folder ImageNet subset can be selected in params.yaml"
)
_DENSITY_GAIN = (
    "relative gain in performance density (top-1 % per MB stored) of PPO over static prune+quant (%)"
)
_MODELLED_POWER = "power is modelled from a device profile unless a real meter (INA3221/INA219/RAPL) was read"

CLAIMS: list[Claim] = [
    # ---------------------------------------------------------------- AKPERL (DQN kernel pruning)
    Claim(
        id="akperl_acc_drop",
        paper="AKPERL",
        text="AKPERL keeps MobileNetV3 top-1 within 0.5 pt of the unpruned baseline "
        "(Table 1: 72.5% -> 72.0%)",
        metric="top-1 of unpruned baseline minus top-1 of AKPERL (pt)",
        value=0.5,
        kind="at_most",
        unit="pt",
    ),
    Claim(
        id="akperl_vs_l1_acc",
        paper="AKPERL",
        text="Static L1-norm pruning loses 4.5 pt (72.5 -> 68.0) where AKPERL loses 0.5: "
        "AKPERL is 4.0 pt ahead",
        metric="top-1 of AKPERL minus top-1 of L1-norm filter pruning (pt)",
        value=4.0,
        kind="difference_at_least",
        unit="pt",
    ),
    Claim(
        id="akperl_vs_magnitude_acc",
        paper="AKPERL",
        text="Static magnitude pruning loses 5.0 pt (72.5 -> 67.5) where AKPERL loses 0.5: "
        "AKPERL is 4.5 pt ahead",
        metric="top-1 of AKPERL minus top-1 of magnitude pruning (pt)",
        value=4.5,
        kind="difference_at_least",
        unit="pt",
    ),
    Claim(
        id="akperl_power_reduction",
        paper="AKPERL",
        text="AKPERL cuts inference power from 150 mW to 100 mW, i.e. by 33.3%",
        metric="power reduction of AKPERL relative to the unpruned baseline (%)",
        value=100.0 * (150 - 100) / 150,
        kind="at_least",
        unit="%",
        note=_MODELLED_POWER,
    ),
    Claim(
        id="akperl_power_vs_static",
        paper="AKPERL",
        text="AKPERL draws less power than both static baselines (100 mW vs L1 120 mW, magnitude 115 mW): "
        "15 mW below the better one, 10% of the 150 mW baseline",
        metric="power of the lower-power static baseline minus power of AKPERL, in % of baseline power",
        value=100.0 * (115 - 100) / 150,
        kind="difference_at_least",
        unit="%",
        note=_MODELLED_POWER,
    ),
    Claim(
        id="akperl_latency_reduction",
        paper="AKPERL",
        text="AKPERL lowers latency from 20 ms to 19 ms, i.e. by 5%",
        metric="latency reduction of AKPERL relative to the unpruned baseline (%)",
        value=100.0 * (20 - 19) / 20,
        kind="at_least",
        unit="%",
    ),
    Claim(
        id="akperl_sparsity",
        paper="AKPERL",
        text="AKPERL reaches 45% sparsity (L1 30%, magnitude 35%) while keeping accuracy",
        metric="sparsity of the AKPERL-pruned model (%)",
        value=45.0,
        kind="at_least",
        unit="%",
    ),
    Claim(
        id="akperl_significance",
        paper="AKPERL",
        text="AKPERL's improvements over the baselines are significant, p < 0.05",
        metric="largest Holm-corrected Welch p-value of AKPERL vs each static baseline on top-1",
        value=0.05,
        kind="at_most",
        digits=3,
        note="a p-value has no CI: pass a half-width of 0",
    ),
    Claim(
        id="akperl_dqn_convergence",
        paper="AKPERL",
        text="The DQN converges after about 200,000 iterations",
        metric="DQN environment steps until the episode reward plateaus",
        value=200_000.0,
        kind="at_most",
        unit="steps",
        digits=0,
        note="a run stopped before its reward plateaus gives no measurement",
    ),
    Claim(
        id="akperl_monitoring_ablation",
        paper="AKPERL",
        text="Removing the monitoring system (accuracy/power/input statistics in the state) hurts",
        metric="episode reward of full AKPERL minus the agent without monitoring features (positive = hurts)",
        value=None,
        kind="qualitative",
        digits=2,
    ),
    # ---------------------------------------------------------------- QSA (quantized sparse autoencoders)
    Claim(
        id="qsa_cifar10_compression",
        paper="QSA",
        text="CIFAR-10: QSA gives an 8x model-size reduction (with a 1% accuracy drop, see qsa_cifar10_drop)",
        metric="stored size of the baseline / stored size of the QSA-compressed model (x)",
        value=8.0,
        kind="at_least",
        unit="x",
    ),
    Claim(
        id="qsa_cifar10_drop",
        paper="QSA",
        text="CIFAR-10: the 8x reduction costs 1% top-1",
        metric="top-1 of unpruned baseline minus top-1 of QSA at its compression (pt)",
        value=1.0,
        kind="at_most",
        unit="pt",
    ),
    Claim(
        id="qsa_cifar10_static_drop",
        paper="QSA",
        text="CIFAR-10: static pruning drops 5% at the same compression",
        metric="top-1 of unpruned baseline minus top-1 of static pruning at QSA's compression (pt)",
        value=5.0,
        kind="within",
        tolerance=1.0,
        unit="pt",
        note="tolerance ±1 pt is ours",
    ),
    Claim(
        id="qsa_cifar10_vs_static",
        paper="QSA",
        text="CIFAR-10: QSA beats static pruning at the same compression by 4 pt (5% - 1% drop)",
        metric="top-1 of QSA minus top-1 of static pruning at the same compression (pt)",
        value=4.0,
        kind="difference_at_least",
        unit="pt",
    ),
    Claim(
        id="qsa_quantization_alone",
        paper="QSA",
        text="Quantization alone gives 4x",
        metric="stored size of the fp32 baseline / stored size of its int8 version (x)",
        value=4.0,
        kind="within",
        tolerance=0.25,
        unit="x",
        digits=2,
        note="tolerance ±0.25x is ours (tensors kept in fp32, e.g. biases, pull the ratio below 4)",
    ),
    Claim(
        id="qsa_imagenet",
        paper="QSA",
        text="ImageNet: 6x model-size reduction with a 2% drop (static pruning drops 4%)",
        metric="stored size of the baseline / stored size of the QSA-compressed model on ImageNet (x)",
        value=6.0,
        kind="at_least",
        unit="x",
        testable_here=False,
        why_not=_NO_IMAGENET,
    ),
    # ---------------------------------------------------------------- PPO prune + quant
    Claim(
        id="ppo_density_mobilenet",
        paper="PPO",
        text="MobileNet: 6-20% higher performance density than static pruning + quantization "
        "at maintained accuracy",
        metric=_DENSITY_GAIN,
        value=6.0,
        kind="at_least",
        unit="%",
        note="the paper gives 6-20% for MobileNet and VGG-19 together; the lower end is tested",
    ),
    Claim(
        id="ppo_density_vgg19",
        paper="PPO",
        text="VGG-19: 6-20% higher performance density than static pruning + quantization "
        "at maintained accuracy",
        metric=_DENSITY_GAIN,
        value=6.0,
        kind="at_least",
        unit="%",
        note="the paper gives 6-20% for MobileNet and VGG-19 together; the lower end is tested",
    ),
    Claim(
        id="ppo_accuracy_maintained",
        paper="PPO",
        text="The density gain comes at maintained accuracy",
        metric="top-1 of the unpruned baseline minus top-1 of PPO prune+quant (pt)",
        value=0.0,
        kind="at_most",
        tolerance=1.0,
        unit="pt",
        note="the paper gives no number for 'maintained'; the 1 pt tolerance is ours",
    ),
]
