"""Our number for each claim of :data:`edgeprune.claims.CLAIMS`, computed from the stages' results.

Every measurement is a mean over seeds with the half-width of its 95% Student-t interval,
taken over *per-seed* quantities: a difference or a ratio is formed within each seed first
(AKPERL seed s against the static baselines recovered with seed s, against the dense model
it pruned), then averaged. A claim whose measurement depends on recovery
(:attr:`~edgeprune.claims.Claim.recovered`) is measured at every recovery budget present in
the rows, each method against the others recovered at the same budget; the others at the
primary budget. A claim whose stage or model did not run gets no entry, which the claims
table shows as "not testable here: no measurement supplied", or an entry with a note saying
why the measurement is missing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from edgeprune import results
from edgeprune.claims import CLAIMS
from edgeprune.report.collect import Results, dense_reference, extra
from edgeprune.stats import compare_methods, mean_ci
from edgeprune.streams import gaps_per_seed
from edgeprune.verdicts import Measurement

__all__ = ["PLATEAU_FRACTION", "QSA_PAPER_TARGET", "claim_measurements"]

Measured = Measurement

QSA_PAPER_TARGET = 8.0
"""The compression of the QSA paper's CIFAR-10 claim: the QSA setting nearest to it is judged."""

PLATEAU_FRACTION = 0.5
"""A DQN run counts as converged when its rolling reward reaches 99% of its final value within
this fraction of its steps (it then stays on a plateau for the rest of the run)."""


def _mci(values: pd.Series | np.ndarray, note: str = "") -> Measured:
    values = pd.Series(values, dtype=float).dropna()
    if values.empty:
        return Measurement(None, None, note or "no values")
    mean, half = mean_ci(values)
    return Measurement(mean, half, note, len(values))


def _by_seed(rows: pd.DataFrame, method: str, column: str) -> pd.Series:
    """``column`` of ``method``'s rows indexed by seed (one row per seed expected)."""
    part = rows[rows["method"] == method]
    if part["seed"].duplicated().any():
        raise ValueError(f"method {method!r} has several rows per seed; select one setting first")
    return part.set_index(part["seed"].astype(int))[column].astype(float)


def _dense_by_seed(rows: pd.DataFrame, column: str) -> pd.Series:
    """The dense model's ``column`` per method seed (:func:`~edgeprune.report.collect.dense_reference`)."""
    method_rows = rows[rows["method"] != "none"].drop_duplicates("seed")
    reference = dense_reference(rows, column)[method_rows.index]
    return pd.Series(reference.to_numpy(), index=method_rows["seed"].astype(int).to_numpy())


def _mobilenet(models: list[str]) -> str | None:
    return next((m for m in models if m.startswith("mobilenet")), None)


# --------------------------------------------------------------------------- AKPERL


def _measured_time_note(dense_ms: pd.Series, method_ms: pd.Series, dense_power: pd.Series, method_power: pd.Series) -> str:
    """A warning where modelled power falls but the measured time on this CPU does not: the modelled
    figure rests on the device model's time (or, on rows from before the board model, on MACs and
    bytes), and board power spent over time falls only as fast as the measured time does."""
    speed = (dense_ms / method_ms).mean()
    if not (speed <= 1.0 and (method_power < dense_power).mean() > 0.5):
        return ""
    return (f"; modelled power falls, but measured on this CPU the network runs at {speed:.2f}x the dense network's "
            "speed (batch 1): the modelled cut rests on the device model's time, not on time measured here")


def _energy_check(summary: dict[str, Any] | None, precision: str = "fp32") -> tuple[bool, str]:
    """Whether the energy model may judge a power claim, and the note saying why: its time ratios
    (compressed / dense) checked against the host's measured ones at ``precision`` (the device
    stage's ``host_check``, :mod:`edgeprune.power.validation`)."""
    if summary is None or "skipped" in summary:
        reason = summary["skipped"] if summary else "the device stage has not run"
        return True, f"energy model not checked against measured time ({reason})"
    errors = summary["errors"][summary["judge"]].get(precision, {"networks": 0})
    if not errors["networks"]:
        return True, f"energy model not checked at {precision} (no compressed {precision} network timed on the host)"
    figures = (f"energy model's {precision} time ratios vs the host's measured ones ({summary['judged_by']}): "
               f"median miss {errors['median']:.2f}x, worst {errors['worst']:.2f}x over {errors['networks']} networks")  # fmt: skip
    if errors["worst"] > summary["tolerance"]:
        return False, f"not judged: the {figures}, beyond the {summary['tolerance']:g}x the model needs to judge a power claim"
    return True, figures


def _switching(stream: pd.DataFrame | None, controller: str, arm: str, model: str) -> Measured | None:
    """Stream top-1 of ``controller`` minus the best static bank network in hindsight, per stream seed, with
    the oracle switcher's gap in the note (:func:`edgeprune.streams.hindsight_arms`); None without those arms."""
    gaps = gaps_per_seed(stream, controller, arm) if stream is not None else None
    if gaps is None:
        return None
    oracle = mean_ci(gaps["oracle"].to_numpy())
    nothing = " (the oracle gains nothing here: no controller can on these conditions)" if oracle[0] <= 1e-9 else ""
    return _mci(
        gaps["controller"],
        f"{model}, stream seeds {gaps.index.tolist()}; oracle switcher − best static: {oracle[0]:+.2f} ± {oracle[1]:.2f} pt{nothing}",
    )


def _akperl(res: Results, out: dict[str, Measured], budget: int) -> None:
    models = res.models("akperl")
    model = _mobilenet(models) or (models[0] if models else None)
    if model is None:
        return
    rows = res.stage("akperl", model, budget)
    rows = rows.assign(power=extra(rows, "power_mw_modelled").astype(float))
    note = f"{model}, seeds {sorted(_by_seed(rows, 'akperl', 'top1').index.tolist())}"
    ak = {c: _by_seed(rows, "akperl", c) for c in ("top1", "power", "latency_b1_ms", "sparsity_realised")}
    l1 = {c: _by_seed(rows, "l1_filter", c) for c in ("top1", "power")}
    slimmed = _by_seed(rows, "l1_regularised", "top1")
    mag = {c: _by_seed(rows, "magnitude_structured", c) for c in ("top1", "power")}
    dense = {c: _dense_by_seed(rows, c) for c in ("top1", "power", "latency_b1_ms")}

    out["akperl_acc_drop"] = _mci(dense["top1"] - ak["top1"], note)
    out["akperl_vs_l1_acc"] = _mci(ak["top1"] - l1["top1"], note)
    out["akperl_vs_l1_regularised_acc"] = (
        _mci(ak["top1"] - slimmed, note) if len(slimmed) else
        Measurement(None, None, "no network-slimming rows: this profile's baselines.methods leaves l1_regularised out")
    )  # fmt: skip
    out["akperl_vs_magnitude_acc"] = _mci(ak["top1"] - mag["top1"], note)
    power_note = note + _measured_time_note(dense["latency_b1_ms"], ak["latency_b1_ms"], dense["power"], ak["power"])
    checked, check_note = _energy_check(res.host_check)
    if extra(rows, "power_mw_dynamic_only").isna().all():  # rows written before the one energy model
        checked, check_note = False, ("not judged: these AKPERL rows predate the board energy model (their power is "
                                      "the dynamic-only MAC + byte figure, which charges nothing for time); re-run akperl")
    best_static = pd.concat([l1["power"], mag["power"]], axis=1).min(axis=1)
    power_claims = {
        "akperl_power_reduction": (100 * (dense["power"] - ak["power"]) / dense["power"], power_note),
        "akperl_power_vs_static": (100 * (best_static - ak["power"]) / dense["power"], note),
    }
    for claim, (values, text) in power_claims.items():
        out[claim] = _mci(values, f"{text}; {check_note}") if checked else Measurement(None, None, check_note)
    out["akperl_latency_reduction"] = _mci(
        100 * (dense["latency_b1_ms"] - ak["latency_b1_ms"]) / dense["latency_b1_ms"],
        f"{note}; measured on this machine's CPU, batch 1",
    )
    out["akperl_sparsity"] = _mci(100 * ak["sparsity_realised"], f"{note}; share of prunable channels removed")

    if len(ak["top1"]) >= 2:
        tests = compare_methods(rows, "top1", ["akperl"], ["l1_filter", "magnitude_structured"], alternative="greater")
        out["akperl_significance"] = Measurement(
            float(tests["p_holm"].max()),
            0.0,
            f"{note}; one-sided Welch (AKPERL > baseline), Holm over both baselines, n = {len(ak['top1'])} per method",
        )
    else:
        out["akperl_significance"] = Measurement(None, None, "needs at least 2 seeds")

    files = res.akperl.get(model, {})
    summary = files.get("summary")
    if summary:
        steps = pd.Series({int(k): v for k, v in summary["steps_to_99"].items()}, dtype=float)
        budget = summary["steps_per_run"]
        converged = steps[steps <= PLATEAU_FRACTION * budget]
        if len(converged) == len(steps) and len(steps):
            out["akperl_dqn_convergence"] = _mci(
                converged, f"{note}; reward within 1% of its final value by these steps of {budget} per run"
            )
        else:
            out["akperl_dqn_convergence"] = Measurement(
                None,
                None,
                f"{len(steps) - len(converged)} of {len(steps)} runs still rising after {PLATEAU_FRACTION:.0%} "
                f"of their {budget} steps: no plateau to measure (raise akperl.dqn.steps)",
            )
    switching = _switching(files.get("stream"), "akperl_dynamic", "method", model)
    if switching is not None:
        out["akperl_dynamic_vs_static"] = switching
    controls, policies = files.get("controls"), files.get("policies")
    if controls is not None and policies is not None and len(controls):
        agent = policies[(policies["label"] == "akperl")]
        agent = agent[agent["condition"].isin(controls["condition"])].set_index("seed")["R"]
        budgets = {
            "random": "random search scored as many configurations as the agent finished episodes",
            "greedy": "greedy allocation from a sensitivity table of single-unit evaluations (fewer than the agent's)",
        }
        for label, budget in budgets.items():
            control = controls[controls["label"] == label].set_index("seed")["R"]
            if len(control):
                out[f"akperl_vs_{label}_search"] = _mci((agent - control).dropna(), f"{note}; {budget}")
    ablations = files.get("ablations")
    if ablations is not None and "no_stats" in set(ablations["variant"]):
        full = ablations[ablations["variant"] == "full"].set_index("seed")["final_R"]
        cut = ablations[ablations["variant"] == "no_stats"].set_index("seed")["final_R"]
        paired = (full - cut).dropna()
        out["akperl_monitoring_ablation"] = _mci(paired, f"{model}, ablation seeds {paired.index.tolist()}")


# --------------------------------------------------------------------------- QSA


def _qsa(res: Results, out: dict[str, Measured], budget: int) -> None:
    models = res.models("qsa")
    if not models:
        return
    model = _mobilenet(models) or models[0]
    rows = res.stage("qsa", model, budget)
    rows = rows.assign(target=extra(rows, "target").astype(float), compression=extra(rows, "compression_int8").astype(float))
    dense = rows[rows["method"] == "none"]
    out["qsa_quantization_alone"] = _mci(dense["compression"], f"{model}: dense fp32 bytes / its int8 bytes")
    switching = _switching(res.qsa.get(model, {}).get("stream"), "qsa+controller", "arm", model)
    if switching is not None:
        out["qsa_dynamic_vs_static"] = switching

    qsa = rows[rows["method"] == "qsa"]
    if qsa.empty:
        return
    targets = qsa["target"].unique()
    target = float(targets[np.argmin(np.abs(targets - QSA_PAPER_TARGET))])
    at = rows[(rows["target"] == target) | (rows["method"] == "none")]
    statics = [m for m in at["method"].unique() if m not in ("none", "qsa")]
    note = f"{model}, QSA target {target:g}x, int8 accuracy, seeds {sorted(qsa['seed'].unique().tolist())}"
    q = _by_seed(at, "qsa", "int8_top1")
    dense_top1 = _dense_by_seed(at, "top1")
    out["qsa_cifar10_compression"] = _mci(_by_seed(at, "qsa", "compression"), note)
    out["qsa_cifar10_drop"] = _mci(dense_top1 - q, f"{note}; drop from the dense fp32 model")
    if statics:
        best = max(statics, key=lambda m: _by_seed(at, m, "int8_top1").mean())
        s = _by_seed(at, best, "int8_top1")
        why = f"{note}; best static baseline at the same compression: {best}"
        out["qsa_cifar10_static_drop"] = _mci(dense_top1.reindex(s.index) - s, why)
        out["qsa_cifar10_vs_static"] = _mci(q - s, why)


# --------------------------------------------------------------------------- PPO


def _ppo(res: Results, out: dict[str, Measured], budget: int) -> None:
    comparisons = {m: res.ppo_comparison(m, budget) for m in res.ppo}
    models = [m for m, c in comparisons.items() if len(c)]
    mobilenet = _mobilenet(models)
    for claim, model in (("ppo_density_mobilenet", mobilenet), ("ppo_density_vgg19", "vgg19_bn")):
        if model in models:
            comp = comparisons[model]
            out[claim] = _mci(comp["density_gain_pct"], f"{model}, seeds {comp['seed'].tolist()}")
        else:
            out[claim] = Measurement(None, None, f"no PPO run on {model or 'a MobileNet'} in this profile (ppo.models)")
    budgets = {"random": "as many random configurations as PPO's episodes",
               "greedy": "a greedy sensitivity allocation scoring as many configurations as PPO's episodes"}
    for name, budget_text in budgets.items():
        gain_column = f"reward_gain_vs_{name}"
        controlled = [m for m in models if comparisons[m].get(gain_column, pd.Series(dtype=float)).notna().any()]
        if controlled:
            model = _mobilenet(controlled) or controlled[0]
            comp = comparisons[model]
            gain = comp[f"density_gain_vs_{name}_pct"]
            out[f"ppo_vs_{name}_search"] = _mci(
                comp[gain_column],
                f"{model}, seeds {comp['seed'].tolist()}; {budget_text}; density gain over {name} {gain.mean():+.0f} % "
                f"at top-1 {comp['ppo_top1'].mean():.1f} vs {comp[f'{name}_top1'].mean():.1f} %",
            )
    if models:
        loss = pd.concat([comparisons[m]["top1_loss"] for m in models], ignore_index=True)
        out["ppo_accuracy_maintained"] = _mci(loss, f"{', '.join(models)} pooled, {len(loss)} runs")


def _at_budget(res: Results, budget: int) -> dict[str, Measured]:
    out: dict[str, Measured] = {}
    for part in (_akperl, _qsa, _ppo):
        part(res, out, budget)
    return {k: Measurement(None, None, v.note or "no value") if v.mean is None or math.isnan(v.mean) else v for k, v in out.items()}


def claim_measurements(res: Results) -> dict[str, Measured | dict[int, Measured]]:
    """Claim id -> our :class:`~edgeprune.verdicts.Measurement`; for a claim that depends on recovery,
    ``{SGD steps: measurement}`` over the recovery budgets the rows hold (the primary budget alone
    when the rows carry none)."""
    axis = results.budgets(res.rows)
    primary = _at_budget(res, 0)
    if axis.empty:
        return primary
    per_budget = {int(steps): _at_budget(res, int(b)) for b, steps in zip(axis["budget"], axis["recovery_steps"])}
    out: dict[str, Measured | dict[int, Measured]] = dict(primary)
    for claim in CLAIMS:
        if claim.recovered and claim.id in primary:
            out[claim.id] = {steps: found[claim.id] for steps, found in per_budget.items() if claim.id in found}
    return out
