"""Stage 60_device_power: batch-1 latency, energy per image and mean power on the edge devices.

For every model a method stage kept (``results/<stage>/<model>/models/<method>-<setting>.pt``):

1. export it for the device runner (:mod:`edgeprune.device`): TorchScript fp32, and int8
   converted with the ``qnnpack`` engine that PyTorch runs on the ARM boards, each checked by
   loading the saved file back and comparing its outputs with the model's;
2. model latency, energy and mean power on every device profile and precision
   (:func:`edgeprune.power.model.estimate`): source ``modelled: <profile>``;
3. the host: latency measured (the method stage's ``latency_b1_ms`` / ``int8_latency_b1_ms``,
   timed here only where its table has none), power metered where Intel RAPL is readable, else
   modelled from the measured latency (``latency measured, power modelled: host-x86``);
4. a JSON written by ``python -m edgeprune.device run`` on a real board and committed under
   ``results/device/measured/`` replaces the modelled row of its model, device and precision:
   ``measured on jetson-nano 10W`` when a meter ran, ``latency measured on rpi4, power
   modelled: rpi4`` when the board had none.

Outputs under ``results/device/``: ``power.csv`` (:data:`COLUMNS`), ``summary.json`` (dvc
metrics), ``ingest.json`` (which measured JSONs were used, which ignored and why, and the host's
meter) and ``export/``: ``<model>/<stage>/<method>-<setting>/{fp32,int8-qnnpack}.pt`` with their
JSON sidecars, listed in ``export/manifest.json`` (always written; empty with ``export: false``).
"""

from __future__ import annotations

import itertools
import json
import shutil
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from edgeprune import measure, results
from edgeprune.data import load_prepared, normalize
from edgeprune.device import export_model, load_exported, meter_inference
from edgeprune.io import atomic_write, load_module, write_json_atomic
from edgeprune.paths import ResultPaths
from edgeprune.power.meters import Meter, best_meter
from edgeprune.power.params import STAGE, DevicePowerParams
from edgeprune.counting import LayerCost, layer_costs
from edgeprune.power.model import estimate
from edgeprune.power.profiles import DeviceProfile, available_profiles, load_profile
from edgeprune.quant import quantize_int8
from edgeprune.timing import quantized_engine
from edgeprune.train import set_threads

if TYPE_CHECKING:
    from edgeprune.config import Params

HOST = "host"
ARM_ENGINE = "qnnpack"
KEY = ("model", "stage", "method", "setting", "device", "precision", "processor")
COLUMNS = (*KEY, "latency_ms", "energy_mj", "power_mw", "source", "macs", "extra")
_EXPORT_TAGS = {"fp32": "fp32", "int8": f"int8-{ARM_ENGINE}"}
_HOST_LATENCY = {"fp32": "latency_b1_ms", "int8": "int8_latency_b1_ms"}


# --------------------------------------------------------------------------- what is costed


@dataclass(frozen=True)
class KeptModel:
    """A model a method stage kept for the devices, named by its file ``<method>-<setting>.pt``."""

    model: str
    stage: str
    method: str
    setting: str
    path: Path

    @property
    def name(self) -> str:
        """The export's name, which a device's result JSON carries back."""
        return f"{self.model}/{self.stage}/{self.method}-{self.setting}"


def models_dir(paths: ResultPaths, stage: str, model: str) -> Path:
    return paths.method_rows(stage, model).with_name("models")


def stage_models(params: Params, stage: str) -> list[str]:
    """The models a method stage ran: its own ``models`` list (akperl, qsa, ppo) or ``train.models``."""
    return list(getattr(getattr(params, stage, None), "models", None) or params.train.models)


def discover(paths: ResultPaths, stages: Sequence[str], models: Sequence[str]) -> list[KeptModel]:
    """Every kept model of ``stages`` x ``models``; the method is the file name up to its first '-'."""
    kept = []
    for stage in stages:
        for model in models:
            folder = models_dir(paths, stage, model)
            files = sorted(folder.glob("*.pt")) if folder.is_dir() else []
            if not files:
                raise FileNotFoundError(f"{folder} holds no kept models (*.pt): has the {stage!r} stage run for {model}?")
            for path in files:
                method, sep, setting = path.stem.partition("-")
                if not (method and sep and setting):
                    raise ValueError(f"{path}: kept models are named <method>-<setting>.pt")
                kept.append(KeptModel(model, stage, method, setting, path))
    return kept


def export_dir(paths: ResultPaths, item: KeptModel) -> Path:
    return paths.root / STAGE / "export" / item.model / item.stage / f"{item.method}-{item.setting}"


def measured_dir(paths: ResultPaths) -> Path:
    """Where result JSONs of real device runs are committed (see its README.md)."""
    return paths.root / STAGE / "measured"


# --------------------------------------------------------------------------- one kept model


class _Costed:
    """A kept model loaded once, with its layer costs and (lazily) its int8 copies."""

    def __init__(self, item: KeptModel, input_shape: tuple[int, ...], calib_x: torch.Tensor) -> None:
        self.item, self.input_shape, self.calib_x = item, input_shape, calib_x
        self.module = load_module(item.path)
        self.costs: list[LayerCost] = layer_costs(self.module, input_shape)
        self._int8: dict[str, nn.Module] = {}

    @cached_property
    def macs(self) -> int:
        return sum(c.macs for c in self.costs)

    def int8(self, engine: str) -> nn.Module:
        if engine not in self._int8:
            self._int8[engine] = quantize_int8(self.module, self.calib_x, backend=engine)
        return self._int8[engine]

    def runnable(self, precision: str) -> nn.Module:
        """What runs on the host at ``precision``: the float model or its int8 copy on the host's engine."""
        return self.int8(quantized_engine()) if precision == "int8" else self.module


def export_checked(module: nn.Module, path: Path, *, name: str, input_shape: Sequence[int], x: torch.Tensor) -> Path:
    """Export ``module`` and prove the saved file reproduces it.

    ``torch.jit.trace``'s own re-trace check is skipped (two thirds of the export time); the
    comparison here is stronger: it goes through the file, the SHA-256 check and the int8
    weight re-packing of :func:`edgeprune.device.load_exported`. Float exports must agree to
    float rounding; int8 ones within 1% of the largest output or 10 steps of the output's
    quantization grid, whichever is larger, because the loader re-packs a ``qnnpack`` export
    for this host's int8 engine, whose kernels round differently at every layer (measured: up
    to 8 steps on a tiny network whose logits span only ~200 steps). A broken export is off by
    the size of the logits themselves.
    """
    with warnings.catch_warnings():
        # torch.ao int8 graphs read their (constant) activation scales as Python floats while tracing
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        export_model(module, path, name=name, input_shape=input_shape, check_trace=False)
    loaded, meta = load_exported(path)
    with torch.no_grad():
        got, want = loaded(x), module(x)
    if meta["precision"] == "int8":
        scales = [float(m.scale) for m in module.modules() if isinstance(getattr(m, "scale", None), float | torch.Tensor)]
        atol = max(1e-2 * want.abs().max().item(), 10 * scales[-1] if scales else 0.0)
    else:
        atol = 1e-5
    if not torch.allclose(got, want, rtol=1e-4, atol=atol):
        raise RuntimeError(f"export {path} does not reproduce {name}: max |diff| {(got - want).abs().max().item():.3g}")
    return path


def export_all(costed: _Costed, out: Path, precisions: Iterable[str]) -> list[Path]:
    """fp32 (also what the Jetson GPU runs in fp16 with ``--cuda-half``) and ARM int8 exports."""
    x = normalize(costed.calib_x[:4])
    wanted = {"fp32"} | ({"int8"} & set(precisions))
    engine = torch.backends.quantized.engine
    try:
        return [
            export_checked(costed.module if p == "fp32" else costed.int8(ARM_ENGINE), out / f"{_EXPORT_TAGS[p]}.pt",
                           name=costed.item.name, input_shape=costed.input_shape, x=x)
            for p in sorted(wanted)
        ]  # fmt: skip
    finally:
        torch.backends.quantized.engine = engine


def _row(item: KeptModel, device: str, precision: str, processor: str, *, latency_ms: float, energy_mj: float | None,
         power_mw: float | None, source: str, macs: int, **extra: Any) -> dict[str, Any]:  # fmt: skip
    return {"model": item.model, "stage": item.stage, "method": item.method, "setting": item.setting, "device": device,
            "precision": precision, "processor": processor, "latency_ms": latency_ms, "energy_mj": energy_mj,
            "power_mw": power_mw, "source": source, "macs": macs, "extra": extra}  # fmt: skip


def modelled_rows(costed: _Costed, profiles: Sequence[DeviceProfile], precisions: Sequence[str]) -> list[dict[str, Any]]:
    """One row per profile x precision the profile defines: everything modelled."""
    rows = []
    for profile in profiles:
        for precision in precisions:
            if precision not in profile.precisions:
                continue
            est = estimate(costed.costs, profile, precision=precision)
            rows.append(_row(costed.item, profile.name, precision, profile.precisions[precision].processor,
                             latency_ms=est.latency_s * 1e3, energy_mj=est.energy_j * 1e3,
                             power_mw=est.mean_power_w * 1e3, source=est.source, macs=costed.macs,
                             clamped_to_max_power=est.clamped))  # fmt: skip
    return rows


def method_table(paths: ResultPaths, stage: str, model: str) -> pd.DataFrame | None:
    """The tidy rows a method stage wrote for ``model``, or None where it wrote none."""
    path = paths.method_rows(stage, model)
    return results.read_table(path) if path.is_file() else None


def table_latency(table: pd.DataFrame | None, item: KeptModel, precision: str) -> tuple[float, dict[str, Any]] | None:
    """The method stage's measured batch-1 latency of ``item`` (its first row that has one), with provenance."""
    column = _HOST_LATENCY[precision]
    if table is None or column not in table:
        return None
    mine = table[(table["method"].astype(str) == item.method) & (table["setting"].astype(str) == item.setting)]
    mine = mine[mine[column].notna()]
    if mine.empty:
        return None
    row = mine.iloc[0]
    where = {"latency_from": f"{item.stage}/{item.model}/rows.csv {column} (seed {row['seed']})",
             "threads": row["threads"], "cpu": row["cpu"], "cpu_load_1min": row["cpu_load_1min"]}  # fmt: skip
    if precision == "int8":
        where["int8_backend"] = row["int8_backend"]
    return float(row[column]), where


def host_rows(costed: _Costed, table: pd.DataFrame | None, precisions: Sequence[str], host_profile: DeviceProfile,
              meter: Meter | None, cfg: DevicePowerParams, threads: int) -> list[dict[str, Any]]:  # fmt: skip
    """The host's fp32 and int8 rows: latency measured, energy metered (RAPL) or modelled from it."""
    rows = []
    shape = costed.input_shape
    for precision in [p for p in precisions if p in _HOST_LATENCY]:
        found = table_latency(table, costed.item, precision)
        if found is None:
            stats = measure.measure_latency(costed.runnable(precision), shape[1:], 1, warmup=cfg.host_warmup,
                                            repeats=cfg.host_repeats, threads=threads)  # fmt: skip
            found = stats["median_ms"], {"latency_from": "timed by this stage (measure.measure_latency)",
                                         "threads": stats["threads"], "cpu": stats["cpu"],
                                         "cpu_load_1min": stats["load_1min"]}  # fmt: skip
        latency_ms, extra = found
        if meter is not None:
            with _threads(threads):
                metered = meter_inference(costed.runnable(precision), torch.zeros(shape), meter,
                                          seconds=cfg.host_energy_seconds)  # fmt: skip
            energy_mj, power_mw, source = metered["energy_per_image_mj"], metered["mean_power_mw"], meter.source
            extra["meter"] = metered["reading"]
        else:
            est = estimate(costed.costs, host_profile, precision=precision, latency_s=latency_ms / 1e3)
            energy_mj, power_mw, source = est.energy_j * 1e3, est.mean_power_w * 1e3, est.source
        rows.append(_row(costed.item, HOST, precision, "cpu", latency_ms=latency_ms, energy_mj=energy_mj,
                         power_mw=power_mw, source=source, macs=costed.macs, **extra))  # fmt: skip
    return rows


# --------------------------------------------------------------------------- measured on a device


@dataclass(frozen=True)
class Measurement:
    """One result JSON of ``python -m edgeprune.device run``."""

    file: Path
    name: str
    device: str
    label: str
    precision: str
    latency_ms: float
    energy_mj: float | None
    power_mw: float | None
    metered: bool
    source: str
    macs: int

    @property
    def processor(self) -> str:
        """The runner puts only ``--cuda-half`` (fp16) on a GPU; everything else runs on the CPU."""
        return "gpu" if self.precision == "fp16" else "cpu"


def read_measurement(path: Path) -> Measurement:
    """Parse a device result JSON; a missing field is a ``KeyError`` naming the file."""
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"measured result {path} is not valid JSON: {err}") from None
    try:
        dev = raw["device"]
        mode = dev["power_mode"]
        label = dev["name"] if mode is None else f"{dev['name']} {mode['label']}"
        metered = "meter" in raw and raw["energy_per_image_mj"] is not None
        return Measurement(
            file=path, name=raw["model"], device=label.lower().replace(" ", "-"), label=label,
            precision=raw["precision"], latency_ms=float(raw["latency_ms"]["median"]),
            energy_mj=raw["energy_per_image_mj"] if metered else None,
            power_mw=raw["mean_power_mw"] if metered else None,
            metered=metered, source=raw["source"], macs=int(raw["export"]["macs"]),
        )  # fmt: skip
    except (KeyError, TypeError) as err:
        raise KeyError(f"measured result {path} lacks {err} (write it with `python -m edgeprune.device run`)") from None


def measured_row(m: Measurement, costed: _Costed) -> dict[str, Any]:
    """The row a measurement gives: metered energy, else power modelled from its latency where a profile exists."""
    extra: dict[str, Any] = {"measured_json": m.file.name, "runner_source": m.source}
    if m.metered:
        energy, power, source = m.energy_mj, m.power_mw, m.source
    elif m.device in available_profiles() and m.precision in load_profile(m.device).precisions:
        est = estimate(costed.costs, m.device, precision=m.precision, latency_s=m.latency_ms / 1e3)
        energy, power = est.energy_j * 1e3, est.mean_power_w * 1e3
        source = f"latency measured on {m.label}, power modelled: {m.device}"
    else:
        energy, power, source = None, None, f"latency measured on {m.label}, power not metered"
    return _row(costed.item, m.device, m.precision, m.processor, latency_ms=m.latency_ms, energy_mj=energy,
                power_mw=power, source=source, macs=costed.macs, **extra)  # fmt: skip


def ingest_measured(folder: Path, costed: dict[str, _Costed]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Rows of every usable JSON in ``folder``; the others with the reason they were ignored.

    A JSON is ignored (with a warning) when no kept model has its name, or when its export's MACs
    differ from the kept model's: it measured another architecture. Two JSONs for the same
    model, device and precision are an error: keep one.
    """
    rows, ignored, seen = [], {}, {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        m = read_measurement(path)
        if m.name not in costed:
            ignored[path.name] = f"no kept model named {m.name!r} in this run's stages and models"
        elif m.macs != costed[m.name].macs:
            ignored[path.name] = f"its export has {m.macs} MACs, {m.name} now has {costed[m.name].macs}: re-run the device"
        else:
            key = (m.name, m.device, m.precision, m.processor)
            if key in seen:
                raise ValueError(f"{seen[key]} and {path.name} both measure {m.name} {m.precision} on {m.label}: keep one")
            seen[key] = path.name
            rows.append(measured_row(m, costed[m.name]))
    for name, reason in ignored.items():
        warnings.warn(f"{folder / name} ignored: {reason}", stacklevel=2)
    return rows, ignored


def merge(modelled: list[dict[str, Any]], measured: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``modelled`` with every row that a measured row has the key of replaced by it."""
    by_key = {tuple(r[k] for k in KEY): r for r in modelled}
    by_key.update({tuple(r[k] for k in KEY): r for r in measured})
    return list(by_key.values())


# --------------------------------------------------------------------------- the stage


def out_dir(paths: ResultPaths) -> Path:
    return paths.root / STAGE


@contextmanager
def _threads(n: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run(params: Params, paths: ResultPaths, *, sysfs_root: str | Path = "/sys") -> pd.DataFrame:
    """Export, model, measure the host and ingest device JSONs for every kept model; write the tables.

    Host timing and metering use ``params.num_threads`` (as the method stages' latency columns
    do); everything else runs on one thread: exporting and int8 conversion are Python-bound
    graph work on a few images, where more OpenMP threads only spin on a shared machine (4x
    slower here with the second core busy).
    """
    cfg: DevicePowerParams | None = getattr(params, "device_power", None)
    if cfg is None:
        raise ValueError("params has no `device_power` section: the 60_device_power stage needs one")
    threads = set_threads(params.num_threads)
    out = out_dir(paths)
    shutil.rmtree(out / "export", ignore_errors=True)  # a re-run replaces the exports, never mixes with old ones
    with _threads(1):
        calib_x = load_prepared(paths.prepared).train.subset(cfg.calib_images, seed=0).x
        input_shape = (1, *calib_x.shape[1:])
        profiles = [load_profile(p) for p in cfg.profiles]
        host_profile = load_profile(cfg.host_profile) if cfg.host_profile else None
        meter, meter_skipped = best_meter(sysfs_root, device_name=HOST) if host_profile else (None, {})
        kept = [k for s in cfg.stages for k in discover(paths, [s], stage_models(params, s))]
        tables = {(s, m): method_table(paths, s, m) for s in cfg.stages for m in stage_models(params, s)}
        rows, manifest, costed = [], {}, {}
        for item in tqdm(kept, desc="device export / model", mininterval=5):
            c = costed[item.name] = _Costed(item, input_shape, calib_x)
            if cfg.export:
                files = export_all(c, export_dir(paths, item), cfg.precisions)
                manifest[item.name] = {"macs": c.macs, "files": [str(f.relative_to(out / "export")) for f in files]}
            rows += modelled_rows(c, profiles, cfg.precisions)
            if host_profile is not None:
                table = tables[item.stage, item.model]
                rows += host_rows(c, table, cfg.precisions, host_profile, meter, cfg, threads)
        measured, ignored = ingest_measured(measured_dir(paths), costed)
    table = to_frame(merge(rows, measured))
    with atomic_write(out / "power.csv") as tmp:
        table.to_csv(tmp, index=False)
    write_json_atomic(out / "export" / "manifest.json", {"input_shape": list(input_shape), "models": manifest})
    write_json_atomic(out / "summary.json", summary_metrics(table, sum(len(m["files"]) for m in manifest.values())))
    write_json_atomic(out / "ingest.json", {
        "measured_used": sorted({r["extra"]["measured_json"] for r in measured}), "measured_ignored": ignored,
        "host_meter": meter.source if meter else None, "host_meter_skipped": meter_skipped,
    })  # fmt: skip
    return table


def _plain(value: Any) -> Any:
    """numpy / pandas scalars (from the method tables) as Python numbers in ``extra``."""
    return value.item() if hasattr(value, "item") else str(value)


def to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame in :data:`COLUMNS` order, ``extra`` as a JSON string, sorted by key."""
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["extra"] = [json.dumps(e, sort_keys=True, default=_plain) for e in frame["extra"]]
    return frame.sort_values(list(KEY), kind="stable", ignore_index=True)


def read_power(paths: ResultPaths) -> pd.DataFrame:
    """``power.csv`` as written by :func:`run`."""
    path = out_dir(paths) / "power.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (has the 60_device_power stage run?)")
    return pd.read_csv(path, dtype={"setting": str, "method": str})


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


# --------------------------------------------------------------------------- notebook views


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


def energy_latency_figure(table: pd.DataFrame):
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
