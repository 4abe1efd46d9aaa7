"""The rule that turns our measurements into a verdict on each claim of :data:`edgeprune.claims.CLAIMS`.

**At one recovery budget**, with ``[lo, hi] = mean ± CI half-width`` (95 % Student-t over seeds)
and ``T`` the claim's threshold (:attr:`edgeprune.claims.Claim.threshold`):

============================  ============  ==========================  ==================================
kind (threshold T)            reproduced    not reproduced              inconclusive (the CI spans T)
============================  ============  ==========================  ==================================
at_least (T = value - tol)    lo >= T       hi < T                      otherwise
at_most (T = value + tol)     hi <= T       lo > T                      otherwise
within (value ± tol)          CI in band    CI outside the band         otherwise
difference_at_least           lo >= T       hi < T and lo <= 0          otherwise; *partly* when hi < T
(T = value - tol)                                                       but lo > 0 (direction right,
                                                                        magnitude short, zero excluded)
qualitative (sign)            lo > 0        hi <= 0                     otherwise
============================  ============  ==========================  ==================================

For ``difference_at_least`` and ``qualitative`` the measurement is signed so that a positive
number points the way the paper claims. One seed (no CI) is *inconclusive* whatever its
mean. An inconclusive verdict comes with the **detectable effect**: the smallest distance
from the threshold that a two-sided one-sample t-test over the same number of seeds, with
the same spread, detects at 80 % power and alpha 0.05 (statsmodels' ``TTestPower``).

**Across budgets** (claims whose measurement depends on recovery, checked at every
``finetune`` budget, smallest first), the verdict is *budget-sensitive* when the per-budget
verdicts differ, or when they agree on reproduced / partly / not reproduced but the margin
to the threshold shrinks as the budget grows by more than the noise (the two CI half-widths
added in quadrature): a longer recovery could overturn it. Otherwise the common verdict
stands. *Not testable here* carries the reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd
from scipy import stats as sps
from statsmodels.stats.power import TTestPower

from edgeprune.claims import CLAIMS, Claim
from edgeprune.stats import format_mean_ci

__all__ = [
    "NOT_COMPARED", "VERDICTS", "Judgement", "Measurement", "claims_table", "combine", "compare_with_reference",
    "conflicts", "detectable_effect", "judge", "verdict",
]  # fmt: skip

VERDICTS = ("reproduced", "partly", "inconclusive", "budget-sensitive", "not reproduced", "not testable here")
DECISIVE = ("reproduced", "not reproduced")
POWER, ALPHA = 0.8, 0.05
NOT_COMPARED = "not compared"
"""The reference table's column giving, per claim, why its reference row measured another method version."""


class Measurement(NamedTuple):
    """Our number for a claim: mean over seeds, CI half-width, a note, and the number of seeds."""

    mean: float | None
    ci_half_width: float | None
    note: str = ""
    n: int | None = None


@dataclass(frozen=True)
class Judgement:
    """A verdict at one budget: the class, why, the signed margin to the threshold (positive = on
    the claim's side) and the detectable effect when inconclusive."""

    verdict: str
    reason: str = ""
    margin: float = math.nan
    half: float = math.nan
    detectable: float = math.nan


def _missing(x: float | None) -> bool:
    return x is None or math.isnan(float(x))


def detectable_effect(half_width: float, n: int, power: float = POWER, alpha: float = ALPHA) -> float:
    """Smallest distance from the threshold a t-test over ``n`` seeds detects at ``power``, given the
    spread implied by a 95 % CI half-width (``sd = half sqrt(n) / t_{0.975, n-1}``)."""
    if n is None or n < 2 or _missing(half_width):
        return math.nan
    sd = half_width * math.sqrt(n) / sps.t.ppf(0.975, df=n - 1)
    return float(TTestPower().solve_power(nobs=n, alpha=alpha, power=power)) * sd


def _margin(claim: Claim, mean: float) -> float:
    """Signed distance of ``mean`` from the threshold, positive on the claim's side."""
    if claim.kind == "at_most":
        return claim.threshold - mean
    if claim.kind == "within":
        return claim.tolerance - abs(mean - claim.value)
    return mean - claim.threshold


def judge(claim: Claim, m: Measurement) -> Judgement:
    """The verdict on ``claim`` at one budget (rule in the module docstring)."""
    if not claim.testable_here:
        return Judgement("not testable here", claim.why_not)
    if _missing(m.mean):
        return Judgement("not testable here", "no measurement supplied")
    mean, half = float(m.mean), m.ci_half_width
    if not math.isfinite(mean):
        raise ValueError(f"claim {claim.id!r}: measured mean must be finite, got {mean}")
    if not _missing(half) and not (math.isfinite(half) and half >= 0):
        raise ValueError(f"claim {claim.id!r}: CI half-width must be finite and >= 0, got {half}")
    margin = _margin(claim, mean)
    if _missing(half):
        return Judgement("inconclusive", "one seed: no CI", margin)
    lo, hi = mean - half, mean + half
    t = claim.threshold
    if claim.kind == "at_most":
        holds, fails = hi <= t, lo > t
    elif claim.kind == "within":
        band = (claim.value - claim.tolerance, claim.value + claim.tolerance)
        holds, fails = band[0] <= lo and hi <= band[1], hi < band[0] or lo > band[1]
    else:  # at_least, difference_at_least, qualitative: larger is on the claim's side
        holds, fails = (lo > t, hi <= t) if claim.kind == "qualitative" else (lo >= t, hi < t)
    if holds:
        return Judgement("reproduced", "", margin, half)
    if fails:
        if claim.kind == "difference_at_least" and lo > 0:
            return Judgement("partly", "direction right, magnitude short of the paper's (CI excludes zero)", margin, half)
        return Judgement("not reproduced", "", margin, half)
    detectable = detectable_effect(half, m.n) if m.n else math.nan
    return Judgement("inconclusive", "the CI spans the threshold", margin, half, detectable)


def verdict(claim: Claim, measured_mean: float | None, ci_half_width: float | None, n: int | None = None) -> str:
    """The verdict at one budget; ``measured_mean`` None/NaN means not measured, a half-width None/NaN one seed."""
    return judge(claim, Measurement(measured_mean, ci_half_width, "", n)).verdict


def combine(claim: Claim, judged: list[tuple[int, Judgement]]) -> tuple[str, str]:
    """``(verdict, reason)`` over budgets, ``judged`` being (SGD steps, judgement) smallest first."""
    measured = [(steps, j) for steps, j in judged if j.verdict != "not testable here"]
    if len(measured) < 2:
        last = (measured or judged)[-1][1]
        return last.verdict, last.reason
    kinds = [j.verdict for _, j in measured]
    if len(set(kinds)) > 1:
        return "budget-sensitive", "verdict changes with the recovery budget: " + ", ".join(
            f"{v} at {steps} steps" for (steps, _), v in zip(measured, kinds)
        )
    (s0, first), (s1, last) = measured[0], measured[-1]
    noise = math.hypot(*(0.0 if _missing(j.half) else j.half for j in (first, last)))
    if kinds[0] != "inconclusive" and abs(first.margin) - abs(last.margin) > noise:
        return "budget-sensitive", (
            f"{kinds[0]} at every budget, but the margin to the threshold shrinks from {abs(first.margin):.{claim.digits}f} "
            f"to {abs(last.margin):.{claim.digits}f} as the budget grows from {s0} to {s1} steps: a longer recovery "
            "could overturn it"
        )
    return kinds[0], last.reason


def _trend(claim: Claim, measured: list[tuple[int, Measurement, Judgement]]) -> str:
    """How the effect moves as the budget grows: first and last means and the direction."""
    (_, m0, j0), (_, m1, j1) = measured[0], measured[-1]
    noise = math.hypot(*(0.0 if _missing(j.half) else j.half for j in (j0, j1)))
    change = abs(j0.margin) - abs(j1.margin)
    if abs(j1.margin - j0.margin) <= noise:
        way = "flat (within noise)"
    elif (j0.margin > 0) != (j1.margin > 0):
        way = "across the threshold"
    else:
        way = "toward the threshold" if change > 0 else "away from the threshold"
    unit = f" {claim.unit}" if claim.unit else ""
    return f"{m0.mean:.{claim.digits}f} → {m1.mean:.{claim.digits}f}{unit}, {way}"


def _as_measurement(given: object, claim_id: str) -> Measurement:
    if isinstance(given, Measurement):
        return given
    if not isinstance(given, tuple) or not 2 <= len(given) <= 4:
        raise ValueError(f"measurement for {claim_id!r} must be (mean, ci[, note[, n]]), got {given!r}")
    return Measurement(*given)


def claims_table(measurements: Mapping[str, object], claims: list[Claim] | None = None) -> pd.DataFrame:
    """The "claimed vs reproduced" table: one row per claim, measured or not.

    ``measurements`` maps a claim id to a :class:`Measurement` (or a ``(mean, ci[, note[, n]])``
    tuple), or, for a claim checked along the budget axis, to ``{SGD steps: measurement}``.
    An id not among ``claims`` (default :data:`~edgeprune.claims.CLAIMS`) is a KeyError, so a
    typo cannot silently turn a measured claim into "not testable here". Columns: the claim,
    ``ours @ <k> steps`` and ``verdict @ <k> steps`` per budget, ``ours`` (at the largest
    budget), ``verdict`` (across budgets), ``trend``, ``detectable`` and ``note``.
    """
    claims = CLAIMS if claims is None else claims
    ids = {c.id for c in claims}
    unknown = sorted(set(measurements) - ids)
    if unknown:
        raise KeyError(f"measurements for unknown claim id(s) {unknown}; known ids: {sorted(ids)}")
    axis = sorted({k for v in measurements.values() if isinstance(v, Mapping) for k in v})
    rows = []
    for claim in claims:
        given = measurements.get(claim.id, (None, None))
        per_budget = {int(k): _as_measurement(v, claim.id) for k, v in given.items()} if isinstance(given, Mapping) else {}
        single = None if per_budget else _as_measurement(given, claim.id)
        judged = [(k, m, judge(claim, m)) for k, m in sorted(per_budget.items())] or [(None, single, judge(claim, single))]
        label, reason = combine(claim, [(k or 0, j) for k, m, j in judged])
        _, headline, last = judged[-1]
        unit = f" {claim.unit}" if claim.unit else ""

        def shown(m: Measurement) -> str:
            return "—" if _missing(m.mean) else format_mean_ci(m.mean, m.ci_half_width, claim.digits) + unit

        row = {"id": claim.id, "paper": claim.source, "claim": claim.text, "metric": claim.metric,
               "paper's number": claim.paper_number}  # fmt: skip
        for steps in axis:
            m = per_budget.get(steps)
            row[f"ours @ {steps} steps"] = shown(m) if m else "—"
            row[f"verdict @ {steps} steps"] = judge(claim, m).verdict if m else "—"
        measured = [(k, m, j) for k, m, j in judged if j.verdict != "not testable here"]
        notes = dict.fromkeys(part for part in (reason, claim.note, *(m.note for _, m, _ in judged)) if part)
        row |= {
            "ours": shown(headline),
            "verdict": label,
            "trend": _trend(claim, measured) if len(measured) > 1 else "—",
            "detectable": f"{last.detectable:.{claim.digits}f}{unit}" if math.isfinite(last.detectable) else "—",
            "note": "; ".join(notes),
        }
        rows.append(row)
    return pd.DataFrame(rows)


def compare_with_reference(quick: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """``quick`` (a :func:`claims_table`) with the reference run's number and verdict beside each claim.

    ``quick vs reference`` is *agree* (same verdict), *conflict* (one says reproduced, the other
    not reproduced: the disagreement a starved budget must never produce), *differ* (any other
    difference), *not compared* where the reference's :data:`NOT_COMPARED` column gives a reason
    (its method stage ran another version of the method, so the two verdicts judge different
    methods; the reason joins the note), or *—* when the reference run has no row for the claim.
    """
    columns = ["ours", "verdict", *([NOT_COMPARED] if NOT_COMPARED in reference else [])]
    ref = reference.set_index("id")[columns].rename(columns=lambda c: f"reference {c}")
    out = quick.join(ref, on="id")
    why = out.pop(f"reference {NOT_COMPARED}") if f"reference {NOT_COMPARED}" in out else pd.Series("", index=out.index)
    why = why.where(why.map(lambda w: isinstance(w, str) and bool(w)), "")

    def relation(row: pd.Series) -> str:
        q, r = row["verdict"], row["reference verdict"]
        if not isinstance(r, str):
            return "—"
        if why[row.name]:
            return NOT_COMPARED
        if q == r:
            return "agree"
        return "conflict" if {q, r} == set(DECISIVE) else "differ"

    out["quick vs reference"] = out.apply(relation, axis=1)
    if "note" in out:
        out["note"] = [f"{n}; {w}" if n and w else n or w for n, w in zip(out["note"], why, strict=True)]
    return out.fillna({"reference ours": "—", "reference verdict": "—"})


def conflicts(table: pd.DataFrame) -> pd.DataFrame:
    """The claims where quick and reference verdicts conflict (reproduced vs not reproduced)."""
    if "quick vs reference" not in table:
        return table.iloc[0:0]
    return table[table["quick vs reference"] == "conflict"][["id", "verdict", "reference verdict", "ours", "reference ours"]]
