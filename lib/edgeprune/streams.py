"""What switching could gain on a non-stationary stream: arms chosen in hindsight from a bank of networks.

Both dynamic methods run a controller on a stream of batches whose input condition changes
(AKPERL switches among its pruned networks, QSA re-prunes on drift). Whether switching *could*
pay on these conditions is a question about the bank of networks, not the controller:
:func:`hindsight_arms` adds the strongest static choice and an oracle switcher, both chosen
with knowledge no controller has, so the controller's gain can be read against them.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from edgeprune.stats import format_mean_ci, mean_ci

__all__ = ["gaps_per_seed", "hindsight_arms", "switching_gaps"]


def hindsight_arms(frame: pd.DataFrame, bank: Sequence[str], arm: str = "method") -> pd.DataFrame:
    """``frame`` (one row per arm and batch: ``arm``, ``batch``, ``condition``, ``top1`` ...) with two arms added.

    ``bank`` names the arms of ``frame`` that each ran one network of the bank statically.
    ``best_static``: the bank network with the highest mean top-1 over the whole stream, chosen
    in hindsight (the strongest static choice). ``oracle``: for every batch, the bank network with
    the highest mean top-1 over the stream's batches of that batch's *true* condition, an upper
    bound on any switching controller among these networks (it knows the condition and each
    network's accuracy on it); it scores at least ``best_static`` by construction. Both copy the
    chosen arm's rows, so latency and modelled power come with them; ``network`` names the bank
    arm that ran.
    """
    missing = [m for m in bank if m not in set(frame[arm])]
    if not bank or missing:
        raise ValueError(f"hindsight arms need bank arms present in the stream; missing {missing or 'all'}")
    if frame["condition"].nunique() < 2:
        raise ValueError("an oracle switcher needs a stream with at least two conditions")
    rows = frame[frame[arm].isin(bank)]
    best = rows.groupby(arm)["top1"].mean().reindex(list(bank)).idxmax()  # the first of the bank on ties
    per_condition = rows.groupby(["condition", arm])["top1"].mean().unstack().reindex(columns=list(bank))
    choice = per_condition.idxmax(axis=1)
    static = rows[rows[arm] == best].assign(**{arm: "best_static", "network": best})
    oracle = rows[rows[arm] == rows["condition"].map(choice)]
    oracle = oracle.assign(network=oracle[arm]).assign(**{arm: "oracle"})
    return pd.concat([frame, static, oracle], ignore_index=True)


def gaps_per_seed(stream: pd.DataFrame, controller: str, arm: str = "method") -> pd.DataFrame | None:
    """Per stream seed (index), the mean top-1 of the ``controller`` arm and of the oracle minus that of
    ``best_static`` (columns ``controller`` and ``oracle``, points); None when a stream lacks those arms
    (:func:`hindsight_arms` did not run)."""
    if not {controller, "best_static", "oracle"} <= set(stream[arm]):
        return None
    per_seed = stream.groupby(["seed", arm])["top1"].mean().unstack()
    return pd.DataFrame({"controller": per_seed[controller], "oracle": per_seed["oracle"]}).sub(per_seed["best_static"], axis=0)


def switching_gaps(stream: pd.DataFrame, controller: str, arm: str = "method") -> pd.DataFrame:
    """What switching gained on the stream, and what it could have: :func:`gaps_per_seed` as mean ± 95 % CI
    over stream seeds."""
    gaps = gaps_per_seed(stream, controller, arm)
    out: dict[str, object] = {}
    for label, column in {"controller − best static (pt)": "controller", "oracle − best static (pt)": "oracle"}.items():
        diff = gaps[column].dropna() if gaps is not None else pd.Series()
        out[label] = format_mean_ci(*mean_ci(diff.to_numpy()), 2) if len(diff) else "—"
    return pd.DataFrame([{"controller": controller, **out, "stream seeds": 0 if gaps is None else len(gaps)}])
