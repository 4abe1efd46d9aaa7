"""Reading back what the 60_device_power stage wrote, and the notebook's table and figure over it.

The stage (:mod:`edgeprune.stages.device_power`) writes under ``results/device/``: ``power.csv``
(:data:`COLUMNS`, one row per kept model, device, precision and processor), ``host_check.csv``
(the energy model's predicted vs the host's measured latency per kept network,
:mod:`edgeprune.power.validation`), ``summary.json`` (dvc metrics, :func:`summary_metrics`, and
``host_check``, that check's summary), ``ingest.json`` (which measured JSONs were used, which ignored
and why, and the host's meter) and ``export/``: ``<model>/<stage>/<method>-<setting>/{fp32,int8-qnnpack}.pt``
with their JSON sidecars, listed in ``export/manifest.json`` (always written; empty with
``export: false``). :func:`load` reads them back. Torch-free.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from edgeprune.io import read_json
from edgeprune.paths import ResultPaths
from edgeprune.power.params import STAGE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

HOST = "host"
KEY = ("model", "stage", "method", "setting", "device", "precision", "processor")
COLUMNS = (*KEY, "latency_ms", "energy_mj", "power_mw", "source", "macs", "extra")
JSONS = {"summary": "summary.json", "ingest": "ingest.json", "manifest": "export/manifest.json"}


def out_dir(paths: ResultPaths) -> Path:
    return paths.stage_dir(STAGE)


def read_power(paths: ResultPaths) -> pd.DataFrame:
    """``power.csv`` as the stage wrote it."""
    path = out_dir(paths) / "power.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (has the 60_device_power stage run?)")
    return pd.read_csv(path, dtype={"setting": str, "method": str})


def read_host_check(paths: ResultPaths) -> pd.DataFrame:
    """``host_check.csv`` (empty where the check was skipped: its reason is in ``summary.json``)."""
    path = out_dir(paths) / "host_check.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (has the 60_device_power stage run?)")
    try:
        return pd.read_csv(path, dtype={"setting": str, "method": str})
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def load(paths: ResultPaths) -> dict[str, Any]:
    """``power`` (:func:`read_power`), ``host_check`` where written, and the :data:`JSONS` by name."""
    out = out_dir(paths)
    checked = {"host_check": read_host_check(paths)} if (out / "host_check.csv").is_file() else {}
    return {"power": read_power(paths)} | checked | {name: read_json(out / f) for name, f in JSONS.items() if (out / f).is_file()}


def evidence(source: str) -> str:
    """``measured`` (energy metered), ``latency measured`` (power modelled) or ``modelled``."""
    if source.startswith("measured"):
        return "measured"
    return "latency measured" if source.startswith("latency measured") else "modelled"


def summary_metrics(table: pd.DataFrame, exports: int) -> dict[str, Any]:
    """Counts, and per device and precision the span of energy per image over the kept models (dvc metrics)."""
    kinds = table["source"].map(evidence).value_counts()
    spans = {}
    for (device, precision), group in table.groupby(["device", "precision"]):
        energy = group["energy_mj"].dropna()
        spans[f"{device}/{precision}"] = {
            "latency_ms_min": round(group["latency_ms"].min(), 4), "latency_ms_max": round(group["latency_ms"].max(), 4),
            **({"energy_mj_min": round(energy.min(), 4), "energy_mj_max": round(energy.max(), 4)} if len(energy) else {}),
        }  # fmt: skip
    return {
        "rows": len(table), "kept_models": int(table[["model", "stage", "method", "setting"]].drop_duplicates().shape[0]),
        "exports": exports, "rows_measured": int(kinds.get("measured", 0)),
        "rows_latency_measured": int(kinds.get("latency measured", 0)), "rows_modelled": int(kinds.get("modelled", 0)),
        **spans,
    }  # fmt: skip


def _device_order(devices: Iterable[str]) -> list[str]:
    return sorted(set(devices), key=lambda d: (not d.startswith(HOST), d))


def paper_view(table: pd.DataFrame, precision: str = "fp32") -> pd.DataFrame:
    """AKPERL Table 1's hardware columns: per kept model and device, latency (ms), mean power (mW)
    and whether the row is ``measured``, ``latency measured`` (power modelled) or ``modelled``.

    A device measured on another processor than its profile models (a Jetson fp32 run on the
    CPU) gets a column of its own, ``device (processor)``.
    """
    sub = table[table["precision"] == precision].copy()
    several = sub.groupby("device")["processor"].transform("nunique") > 1
    sub["device"] = sub["device"].where(~several, sub["device"] + " (" + sub["processor"] + ")")
    sub["evidence"] = sub["source"].map(evidence)
    quantities = ["latency_ms", "power_mw", "evidence"]
    wide = sub.pivot_table(index=["model", "stage", "method", "setting"], columns="device", values=quantities,
                           aggfunc="first")  # fmt: skip
    columns = pd.MultiIndex.from_product([_device_order(sub["device"]), quantities])
    return wide.swaplevel(0, 1, axis=1).reindex(columns=columns)


def energy_latency_figure(table: pd.DataFrame) -> Figure:
    """Energy per image against latency, one panel per device: marker shape per method, colour per
    precision, filled = measured, half-filled = latency measured and power modelled, hollow = modelled."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    devices = _device_order(table["device"])
    methods = sorted(table["method"].unique())
    precisions = sorted(table["precision"].unique())
    shapes = dict(zip(methods, itertools.cycle("osD^vP*Xph<>")))
    colours = {p: f"C{i}" for i, p in enumerate(precisions)}
    fills = {"measured": "full", "latency measured": "left", "modelled": "none"}
    fig, axes = plt.subplots(1, len(devices), figsize=(3.6 * len(devices), 3.6), squeeze=False)
    for ax, device in zip(axes[0], devices):
        sub = table[(table["device"] == device) & table["energy_mj"].notna()]
        for _, r in sub.iterrows():
            ax.plot(r["latency_ms"], r["energy_mj"], marker=shapes[r["method"]], color=colours[r["precision"]],
                    fillstyle=fills[evidence(r["source"])], markersize=7, linestyle="none")  # fmt: skip
        kinds = sorted(set(sub["source"].map(evidence)))
        ax.set_title(f"{device}\n({', '.join(kinds)})", fontsize=9)
        ax.set_xlabel("latency, batch 1 (ms)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("energy per image (mJ)")
    handles = [Line2D([], [], marker=shapes[m], color="grey", linestyle="none", label=m) for m in methods]
    handles += [Line2D([], [], marker="o", color=colours[p], linestyle="none", label=p) for p in precisions]
    handles += [Line2D([], [], marker="o", color="black", fillstyle=f, linestyle="none", label=k) for k, f in fills.items()]
    fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 8), fontsize=8, bbox_to_anchor=(0.5, 1.0))
    modelled = sorted(table.loc[table["source"].map(evidence) == "modelled", "device"].unique())
    partly = sorted(table.loc[table["source"].map(evidence) == "latency measured", "device"].unique())
    fig.text(0.5, 0.0, f"Modelled (edgeprune.power.model, hollow): {', '.join(modelled) or 'none'}. "
             f"Latency measured, power modelled (half-filled): {', '.join(partly) or 'none'}. Filled: metered.",
             ha="center", va="bottom", fontsize=8, wrap=True)  # fmt: skip
    fig.tight_layout(rect=(0, 0.06, 1, 0.9))
    return fig
