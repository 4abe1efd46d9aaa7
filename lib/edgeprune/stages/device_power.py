"""Stage 60_device_power: batch-1 latency, energy per image and mean power on the edge devices.

For every model a method stage kept (``results/<stage>/<model>/models/<method>-<setting>.pt``):

1. export it for the device runner (:mod:`edgeprune.device`): TorchScript fp32, and int8
   converted with the ``qnnpack`` engine that PyTorch runs on the ARM boards, each checked by
   loading the saved file back and comparing its outputs with the model's;
2. model latency, energy and mean power on every device profile and precision
   (:func:`edgeprune.power.model.estimate`): source ``modelled: <profile>``;
3. the host: every kept model's batch-1 latency timed here, fp32 and int8 (this host's engine),
   in interleaved rounds so that compressed / dense ratios share one load; power metered where
   Intel RAPL is readable, else modelled from the measured latency (``latency measured, power
   modelled: host-x86``);
4. the energy model's time checked against those latencies (:mod:`edgeprune.power.validation`):
   the same roofline on the ``host-x86`` profile predicts every network, and the ratio error of
   compressed / dense latency is reported per network, refitted (overhead, efficiencies) and
   reported leave-one-out where the a-priori constants miss by more than 1.5x;
5. a JSON written by ``python -m edgeprune.device run`` on a real board and committed under
   ``results/device/measured/`` replaces the modelled row of its model, device and precision:
   ``measured on jetson-nano 10W`` when a meter ran, ``latency measured on rpi4, power
   modelled: rpi4`` when the board had none (:mod:`edgeprune.power.ingest`).

Outputs under ``results/device/`` (``power.csv``, ``host_check.csv``, ``summary.json``,
``ingest.json`` and ``export/``), described and read back by :mod:`edgeprune.power.outputs`.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from edgeprune import harness
from edgeprune.data import load_prepared, normalize
from edgeprune.device import export_model, load_exported, meter_inference, sidecar_path
from edgeprune.io import atomic_write, load_module, write_json_atomic
from edgeprune.paths import ResultPaths
from edgeprune.power.ingest import KeptModel, ingest_measured, measured_dir, merge, power_row
from edgeprune.power.meters import Meter, best_meter
from edgeprune.power.outputs import (
    COLUMNS, HOST, KEY, energy_latency_figure, load, out_dir, paper_view, read_power, summary_metrics,
)  # fmt: skip
from edgeprune.power.params import DevicePowerParams
from edgeprune.counting import LayerCost, layer_costs
from edgeprune.power.calibration import Case
from edgeprune.power.model import estimate
from edgeprune.power.profiles import DeviceProfile, load_profile
from edgeprune.power.validation import HostCase, check
from edgeprune.quant import quantize_int8
from edgeprune.timing import quantized_engine
from edgeprune.train import set_threads

if TYPE_CHECKING:
    from edgeprune.config import Params

# The read side (power.csv, the paper's view, the figure) lives in edgeprune.power.outputs and the
# ingestion of measured JSONs in edgeprune.power.ingest; re-exported for the notebook and the tests.
__all__ = [
    "discover", "models_dir", "run",
    "KeptModel", "energy_latency_figure", "ingest_measured", "load", "measured_dir", "out_dir", "paper_view",
    "read_power",
]  # fmt: skip

ARM_ENGINE = "qnnpack"
_EXPORT_TAGS = {"fp32": "fp32", "int8": f"int8-{ARM_ENGINE}"}
_HOST_PRECISIONS = ("fp32", "int8")


# --------------------------------------------------------------------------- what is costed


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
    return out_dir(paths) / "export" / item.model / item.stage / f"{item.method}-{item.setting}"


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


def export_all(costed: _Costed, out: Path, precisions: Iterable[str]) -> tuple[list[Path], dict[str, str]]:
    """fp32 (also what the Jetson GPU runs in fp16 with ``--cuda-half``) and ARM int8 exports, and the
    precisions that could not be exported, with the reason.

    QNNPACK (the ARM int8 engine) refuses a quantized add whose input / output scale ratio falls
    outside [2^-14, 2^8), as it does where a residual branch's activations are near zero (met by
    ``make smoke`` on a barely trained MobileNetV3), and an int8 file that, reloaded, does not
    reproduce the network (``make smoke``: a 90 %-pruned, barely trained MobileNetV2, 0.077 off)
    is removed: that network gets no int8 file, and the manifest says why, rather than the stage
    failing for every network. An fp32 export that does not reproduce its network is an error.
    """
    x = normalize(costed.calib_x[:4])
    wanted = {"fp32"} | ({"int8"} & set(precisions))
    engine = torch.backends.quantized.engine
    files, skipped = [], {}
    try:
        for p in sorted(wanted):
            try:
                module = costed.module if p == "fp32" else costed.int8(ARM_ENGINE)
            except ValueError as err:  # quantize_int8: the engine cannot run this network
                skipped[p] = str(err)
                continue
            path = out / f"{_EXPORT_TAGS[p]}.pt"
            try:
                files.append(export_checked(module, path, name=costed.item.name, input_shape=costed.input_shape, x=x))
            except RuntimeError as err:  # the reloaded int8 file disagrees with the network: no file is better
                if p == "fp32":
                    raise
                path.unlink(missing_ok=True)
                sidecar_path(path).unlink(missing_ok=True)
                skipped[p] = str(err)
    finally:
        torch.backends.quantized.engine = engine
    return files, skipped


def modelled_rows(costed: _Costed, profiles: Sequence[DeviceProfile], precisions: Sequence[str]) -> list[dict[str, Any]]:
    """One row per profile x precision the profile defines: everything modelled."""
    rows = []
    for profile in profiles:
        for precision in precisions:
            if precision not in profile.precisions:
                continue
            est = estimate(costed.costs, profile, precision=precision)
            rows.append(power_row(costed.item, profile.name, precision, profile.precisions[precision].processor,
                                  latency_ms=est.latency_s * 1e3, energy_mj=est.energy_j * 1e3,
                                  power_mw=est.mean_power_w * 1e3, source=est.source, macs=costed.macs,
                                  dynamic_only_energy_mj=est.dynamic_only_energy_j * 1e3))  # fmt: skip
    return rows


def time_host(
    costed: Sequence[_Costed], precisions: Sequence[str], cfg: DevicePowerParams, threads: int
) -> dict[tuple[str, str], dict[str, Any]]:
    """Batch-1 latency of every kept model at every host precision, timed here in interleaved rounds.

    Each round times every network once (``host_warmup`` + ``host_repeats`` runs); a network's
    latency is the median of its round medians. Timing them all in one place, interleaved, gives
    ratios (compressed / dense) measured under the same load: the method stages' own timings ran
    minutes or hours apart, and on a shared 2-core host their ratios moved by up to 1.7x (int8,
    quick profile) where a quiet re-measure gave 0.96.
    """
    wanted = [(c, p) for c in costed for p in precisions if p in _HOST_PRECISIONS]
    rounds: dict[tuple[str, str], list[dict[str, Any]]] = {(c.item.name, p): [] for c, p in wanted}
    for _ in range(cfg.host_rounds):
        for c, precision in wanted:
            rounds[c.item.name, precision].append(harness.measure_latency(
                c.runnable(precision), c.input_shape[1:], 1, warmup=cfg.host_warmup, repeats=cfg.host_repeats,
                threads=threads))  # fmt: skip
    out = {}
    for key, stats in rounds.items():
        medians = [s["median_ms"] for s in stats]
        out[key] = {"latency_ms": float(np.median(medians)), "round_medians_ms": [round(m, 4) for m in medians],
                    "threads": stats[0]["threads"], "cpu": stats[0]["cpu"],
                    "cpu_load_1min": max(s["load_1min"] for s in stats)}  # fmt: skip
    return out


def host_rows(costed: _Costed, timed: dict[tuple[str, str], dict[str, Any]], precisions: Sequence[str],
              host_profile: DeviceProfile, meter: Meter | None, cfg: DevicePowerParams, threads: int) -> list[dict[str, Any]]:  # fmt: skip
    """The host's fp32 and int8 rows: latency measured, energy metered (RAPL) or modelled from it."""
    rows = []
    for precision in [p for p in precisions if p in _HOST_PRECISIONS]:
        extra = dict(timed[costed.item.name, precision])
        latency_ms = extra.pop("latency_ms")
        extra["latency_from"] = f"timed by this stage: {cfg.host_rounds} interleaved rounds (median of round medians)"
        if precision == "int8":
            extra["int8_backend"] = quantized_engine()
        if meter is not None:
            with _threads(threads):
                metered = meter_inference(costed.runnable(precision), torch.zeros(costed.input_shape), meter,
                                          seconds=cfg.host_energy_seconds)  # fmt: skip
            energy_mj, power_mw, source = metered["energy_per_image_mj"], metered["mean_power_mw"], meter.source
            extra["meter"] = metered["reading"]
        else:
            est = estimate(costed.costs, host_profile, precision=precision, latency_s=latency_ms / 1e3)
            energy_mj, power_mw, source = est.energy_j * 1e3, est.mean_power_w * 1e3, est.source
        rows.append(power_row(costed.item, HOST, precision, "cpu", latency_ms=latency_ms, energy_mj=energy_mj,
                              power_mw=power_mw, source=source, macs=costed.macs, **extra))  # fmt: skip
    return rows


def host_check(costed: Sequence[_Costed], timed: dict[tuple[str, str], dict[str, Any]],
               host_profile: DeviceProfile) -> tuple[pd.DataFrame, dict[str, Any]]:  # fmt: skip
    """The energy model's time ratios checked against the host's (:func:`edgeprune.power.validation.check`);
    an empty table and the reason where no dense network (the baselines' ``none``) was timed."""
    by_name = {c.item.name: c for c in costed}
    items = []
    for (name, precision), t in timed.items():
        item, costs = by_name[name].item, tuple(by_name[name].costs)
        key = {"model": item.model, "stage": item.stage, "method": item.method, "setting": item.setting}
        items.append(HostCase(key, item.method == "none", Case(name, costs, precision, t["latency_ms"])))
    dense = {(i.key["model"], i.case.precision) for i in items if i.dense}
    items = [i for i in items if (i.key["model"], i.case.precision) in dense]
    if not items:
        return pd.DataFrame(), {"skipped": "no dense network (method 'none', the baselines stage) among the kept models"}
    return check(host_profile, items)


# --------------------------------------------------------------------------- the stage


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
    do), after every int8 conversion; everything else runs on one thread: exporting and int8 conversion are Python-bound
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
        rows, manifest, costed = [], {}, {}
        for item in tqdm(kept, desc="device export / model", mininterval=5):
            c = costed[item.name] = _Costed(item, input_shape, calib_x)
            if cfg.export:
                files, skipped = export_all(c, export_dir(paths, item), cfg.precisions)
                manifest[item.name] = {"macs": c.macs, "files": [str(f.relative_to(out / "export")) for f in files]}
                if skipped:
                    manifest[item.name]["not_exported"] = skipped
                    print(f"{item.name}: not exported at {', '.join(skipped)}: {'; '.join(skipped.values())}")
            rows += modelled_rows(c, profiles, cfg.precisions)
        measured, ignored = ingest_measured(measured_dir(paths), costed)
    checked: tuple[pd.DataFrame, dict[str, Any]] = (pd.DataFrame(), {"skipped": "host_profile is null"})
    if host_profile is not None:
        if "int8" in cfg.precisions:  # convert before timing: graph work on one thread, outside the timed rounds
            with _threads(1):
                for c in costed.values():
                    c.runnable("int8")
        timed = time_host(list(costed.values()), cfg.precisions, cfg, threads)
        for c in costed.values():
            rows += host_rows(c, timed, cfg.precisions, host_profile, meter, cfg, threads)
        checked = host_check(list(costed.values()), timed, host_profile)
    table = to_frame(merge(rows, measured))
    with atomic_write(out / "power.csv") as tmp:
        table.to_csv(tmp, index=False)
    write_json_atomic(out / "export" / "manifest.json", {"input_shape": list(input_shape), "models": manifest})
    with atomic_write(out / "host_check.csv") as tmp:
        checked[0].to_csv(tmp, index=False)
    not_exported = {name: m["not_exported"] for name, m in manifest.items() if "not_exported" in m}
    write_json_atomic(out / "summary.json", summary_metrics(table, sum(len(m["files"]) for m in manifest.values()))
                      | {"host_check": checked[1], "not_exported": not_exported})
    write_json_atomic(out / "ingest.json", {
        "measured_used": sorted({r["extra"]["measured_json"] for r in measured}), "measured_ignored": ignored,
        "host_meter": meter.source if meter else None, "host_meter_skipped": meter_skipped,
    })  # fmt: skip
    return table


def _plain(value: Any) -> Any:
    """numpy / pandas scalars (from the method tables) as Python numbers in ``extra``."""
    return value.item() if hasattr(value, "item") else str(value)


def to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame in :data:`~edgeprune.power.outputs.COLUMNS` order, ``extra`` as a JSON string, sorted by key."""
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["extra"] = [json.dumps(e, sort_keys=True, default=_plain) for e in frame["extra"]]
    return frame.sort_values(list(KEY), kind="stable", ignore_index=True)
