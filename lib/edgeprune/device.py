"""Export a model for an edge device and measure it there.

On the host, :func:`export_model` writes a traced TorchScript file (``<name>.pt``, float or
``torch.ao`` int8) or an ONNX file (``<name>.onnx``, fp32, or int8 QDQ calibrated on images), and
a JSON sidecar (model, format, precision, input shape, torch version, SHA-256, per-layer costs).
On the device::

    python -m edgeprune.device run model.pt --out result.json     # or model.onnx

loads it (TorchScript with torch alone, frozen: weights become constants, conv-BN folds; ONNX
with an ONNX Runtime CPU session, every graph optimisation on), times batch-1 inference
(median / IQR after warm-up), meters energy with the best meter present (Jetson INA3221 ->
INA219 -> RAPL) and writes a JSON the pipeline ingests. The device needs torch plus this
package's ``__init__``, ``io``, ``timing``, ``onnx_runtime``, ``device`` and ``power/meters`` (``pip
install --no-deps edgeprune`` is enough), and ``onnxruntime`` for ONNX files (it installs on the Pi 4's
aarch64; at 32x32 it ran the quick model 5-6x faster than torch eager at batch 1 here,
``python -m edgeprune.bench runtime``); only ``--power-profile`` (modelled power where no meter
exists) needs the full stack.

TorchScript rather than ``torch.export``: the boards' PyTorch builds (Jetson Nano: JetPack 4 wheels
up to 1.x) load TorchScript but not ``.pt2``, so torch's TorchScript deprecation warnings are
silenced here. TorchScript files are not guaranteed to load in an older torch than the one that
wrote them: export with a torch no newer than the device's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import torch
from torch import nn

from edgeprune.io import atomic_write, write_json_atomic
from edgeprune.onnx_runtime import OnnxSession
from edgeprune.power.meters import Meter, PowerMode, best_meter, read_nvpmodel
from edgeprune.timing import cpu_model, quantized_engine, time_call

FORMATS = {".pt": "torchscript", ".onnx": "onnx"}
"""Export file suffix -> format written in the sidecar."""
NOT_METERED = "latency measured, power not metered"


@contextmanager
def _torchscript() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=FutureWarning)
        yield


def sidecar_path(path: str | Path) -> Path:
    """The JSON that describes an exported ``.pt``."""
    return Path(path).with_suffix(".json")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_model(
    model: nn.Module,
    path: str | Path,
    *,
    name: str,
    input_shape: Sequence[int],
    precision: Optional[str] = None,
    check_trace: bool = True,
    calib_x: Optional[torch.Tensor] = None,
) -> Path:
    """Trace ``model`` and save it to ``path`` with its JSON sidecar; return ``path``.

    ``path``'s suffix picks the format (:data:`FORMATS`): ``.pt`` TorchScript, ``.onnx`` ONNX.
    ``precision`` defaults to ``int8`` for a ``torch.ao`` quantized model, else ``fp32``; an ONNX
    export takes a float model, and ``precision="int8"`` quantizes it to QDQ int8 with ONNX
    Runtime's static quantizer, calibrated on ``calib_x`` (uint8 images). The sidecar keeps the
    per-layer costs so that power can be modelled from a measured latency without the model's
    code. ``check_trace`` is ``torch.jit.trace``'s re-trace check (about 2/3 of the export time); a
    caller that compares the loaded export's outputs with ``model``'s may skip it.
    """
    from edgeprune.counting import layer_costs
    from edgeprune.power.model import default_precision

    path = Path(path)
    if path.suffix not in FORMATS:
        raise ValueError(f"export path must end in one of {sorted(FORMATS)}, got {path}")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) < 2 or shape[0] != 1 or min(shape) < 1:
        raise ValueError(f"input_shape must be batch-1 (1, C, ...), got {shape}")
    precision = precision or default_precision(model)
    costs = layer_costs(model, shape)
    model = model.eval()
    if FORMATS[path.suffix] == "onnx":
        _export_onnx(model, path, shape, precision, calib_x)
    else:
        example = torch.zeros(shape)
        with torch.no_grad(), _torchscript():
            traced = torch.jit.trace(model, example, check_trace=check_trace)
        with atomic_write(path) as tmp, _torchscript():
            torch.jit.save(traced, str(tmp))
    meta = {
        "format": FORMATS[path.suffix],
        "model": name,
        "precision": precision,
        "input_shape": list(shape),
        "torch_version": torch.__version__,
        "quantized_engine": torch.backends.quantized.engine,
        "sha256": _sha256(path),
        "macs": sum(c.macs for c in costs),
        "layers": [asdict(c) for c in costs],
    }
    write_json_atomic(sidecar_path(path), meta)
    return path


def _export_onnx(model: nn.Module, path: Path, shape: Tuple[int, ...], precision: str,
                 calib_x: Optional[torch.Tensor]) -> None:  # fmt: skip
    """``model`` (float) as ONNX at ``path``: fp32, or QDQ int8 calibrated on ``calib_x`` (host side)."""
    import tempfile

    from edgeprune.runtimes import check_runtime, export_onnx, quantize_onnx

    check_runtime("ort_int8" if precision == "int8" else "ort")
    if any(p.is_quantized for p in model.state_dict().values() if isinstance(p, torch.Tensor)):
        raise ValueError("an ONNX export takes the float model (a torch.ao int8 model exports as .pt); "
                         "ask for precision='int8' to quantize it in ONNX")  # fmt: skip
    if precision not in ("fp32", "int8"):
        raise ValueError(f"ONNX exports are fp32 or int8, got precision {precision!r}")
    if precision == "int8" and (calib_x is None or len(calib_x) == 0):
        raise ValueError("an int8 ONNX export needs calib_x: images calibrating its activation ranges")
    with tempfile.TemporaryDirectory() as work, atomic_write(path) as tmp:
        fp32 = export_onnx(model, Path(work) / "fp32.onnx", shape[1:])
        if precision == "int8":
            quantize_onnx(fp32, tmp, calib_x)
        else:
            Path(tmp).write_bytes(fp32.read_bytes())


def load_exported(path: str | Path, threads: Optional[int] = None) -> Tuple[Any, Dict[str, Any]]:
    """Load an exported model and its sidecar, checking that they belong together: a TorchScript
    module, or an :class:`OnnxSession` (ONNX Runtime session with ``threads`` intra-op threads)."""
    path = Path(path)
    side = sidecar_path(path)
    for needed in (path, side):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed} does not exist (export with edgeprune.device.export_model)")
    try:
        meta = json.loads(side.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"sidecar {side} is not valid JSON: {err}") from None
    missing = [k for k in ("format", "model", "precision", "input_shape", "sha256", "torch_version") if k not in meta]
    if missing:
        raise KeyError(f"sidecar {side} lacks {missing}")
    if meta["format"] != FORMATS.get(path.suffix):
        raise ValueError(f"sidecar {side}: format {meta['format']!r}, but {path.name} is read as "
                         f"{FORMATS.get(path.suffix, 'nothing this runner reads')!r}")  # fmt: skip
    if _sha256(path) != meta["sha256"]:
        raise ValueError(f"{path} does not match the SHA-256 in {side}: the file is corrupt or from another export")
    if meta["format"] == "onnx":
        try:
            return OnnxSession(path, threads), meta
        except ImportError:
            raise ImportError(f"{path} is an ONNX export: install onnxruntime to run it") from None
    if meta["precision"] == "int8":
        torch.backends.quantized.engine = quantized_engine()
    try:
        with _torchscript():
            module = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as err:
        raise RuntimeError(
            f"torch {torch.__version__} cannot load {path} (exported with torch {meta['torch_version']}): {err}"
        ) from None
    return module, meta


def device_name(sysfs_root: str | Path = "/sys") -> str:
    """``jetson-nano`` / ``rpi4`` / ... from the device-tree model string, else ``host``."""
    model_file = Path(sysfs_root) / "firmware/devicetree/base/model"
    try:
        model = model_file.read_text().strip("\x00\n ")
    except OSError:
        return "host"
    known = {"Jetson Nano": "jetson-nano", "Raspberry Pi 4": "rpi4", "Raspberry Pi 5": "rpi5"}
    for marker, name in known.items():
        if marker in model:
            return name
    return "-".join(model.lower().replace("nvidia", "").replace("developer kit", "").split()) or "host"


def describe_device(sysfs_root: str | Path = "/sys", power_mode: Optional[PowerMode] = None) -> Dict[str, Any]:
    """What ran the benchmark: device, platform, CPU, torch, threads, int8 engine, Jetson power mode."""
    name = device_name(sysfs_root)
    return {
        "name": name,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "quantized_engine": torch.backends.quantized.engine,
        "power_mode": None if power_mode is None else {**asdict(power_mode), "label": power_mode.label(name)},
    }


def _infer(module: torch.jit.ScriptModule, x: torch.Tensor, sync: bool) -> None:
    module(x)
    if sync:
        torch.cuda.synchronize()


def time_latency(
    module: torch.jit.ScriptModule, x: torch.Tensor, *, warmup: int, repeats: int, sync: bool = False
) -> Dict[str, float]:
    """Batch-1 latency statistics in ms (the project's one timer, :func:`edgeprune.timing.time_call`)."""
    with torch.no_grad():
        stats = time_call(lambda: module(x), warmup=warmup, repeats=repeats, sync=sync)
    return {"median": stats.median_ms, "q1": stats.q1_ms, "q3": stats.q3_ms, "iqr": stats.iqr_ms, "mean": stats.mean_ms,
            "min": stats.min_ms, "max": stats.max_ms, "repeats": stats.repeats, "warmup": stats.warmup,
            "threads": stats.threads}


def meter_inference(
    module: torch.jit.ScriptModule, x: torch.Tensor, meter: Meter, *, seconds: float, sync: bool = False
) -> Dict[str, Any]:
    """Run back-to-back inferences for ``seconds`` under ``meter``: energy per image and mean power."""
    images = 0
    with torch.no_grad():
        meter.start()
        deadline = time.perf_counter() + seconds
        while images == 0 or time.perf_counter() < deadline:
            _infer(module, x, sync)
            images += 1
        meter.stop()
    reading = meter.read()
    return {"images": images, "energy_per_image_mj": reading.energy_j / images * 1e3,
            "mean_power_mw": reading.mean_power_w * 1e3, "reading": reading.to_dict()}


def meter_idle(meter: Meter, seconds: float) -> float:
    """Mean board power in mW while nothing runs, for ``seconds``."""
    meter.start()
    time.sleep(seconds)
    meter.stop()
    return meter.read().mean_power_w * 1e3


def run_benchmark(
    path: str | Path,
    *,
    repeats: int = 100,
    warmup: int = 10,
    energy_seconds: float = 5.0,
    idle_seconds: float = 2.0,
    threads: Optional[int] = None,
    sysfs_root: str | Path = "/sys",
    rate_hz: float = 50.0,
    power_profile: Optional[str] = None,
    cuda_half: bool = False,
) -> Dict[str, Any]:
    """Measure an exported model on this machine; the dict :func:`main` writes as JSON.

    ``threads`` sets torch's intra-op thread count for the process. ``power_profile`` (host side
    only) models power from the measured latency where no meter exists; ``cuda_half`` runs an
    fp32 export on the GPU in fp16 (Jetson).
    """
    if energy_seconds <= 0 or idle_seconds < 0:
        raise ValueError(f"need energy_seconds > 0 and idle_seconds >= 0, got {energy_seconds}, {idle_seconds}")
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    module, meta = load_exported(path, threads)
    x = torch.zeros(meta["input_shape"])
    precision = meta["precision"]
    if cuda_half:
        if not torch.cuda.is_available():
            raise ValueError("cuda_half needs a CUDA GPU; none is available")
        if precision != "fp32" or meta["format"] != "torchscript":
            raise ValueError(f"cuda_half runs fp32 TorchScript exports in fp16; this export is {meta['format']} "
                             f"{precision}")  # fmt: skip
        module, x, precision = module.to("cuda").half(), x.to("cuda").half(), "fp16"
    if meta["format"] == "torchscript":
        with _torchscript():
            module = torch.jit.freeze(module.eval())
    mode = read_nvpmodel()
    device = describe_device(sysfs_root, mode)
    meter, skipped = best_meter(sysfs_root, rate_hz=rate_hz, device_name=device["name"], power_mode=mode)
    result: Dict[str, Any] = {
        "model": meta["model"],
        "precision": precision,
        "input_shape": meta["input_shape"],
        "batch_size": 1,
        "export": {k: meta.get(k) for k in ("format", "torch_version", "quantized_engine", "sha256", "macs")}
        | {"path": str(path)},
        "runtime": f"onnxruntime {module.version}" if isinstance(module, OnnxSession) else f"torch {torch.__version__}",
        "device": device,
        "latency_ms": time_latency(module, x, warmup=warmup, repeats=repeats, sync=cuda_half),
        "meter_skipped": skipped,
        "idle_power_mw": None,
        "energy_per_image_mj": None,
        "mean_power_mw": None,
        "source": NOT_METERED,
    }
    if meter is not None:
        if idle_seconds > 0:
            result["idle_power_mw"] = meter_idle(meter, idle_seconds)
        metered = meter_inference(module, x, meter, seconds=energy_seconds, sync=cuda_half)
        result.update(energy_per_image_mj=metered["energy_per_image_mj"], mean_power_mw=metered["mean_power_mw"],
                      meter=metered["reading"], metered_images=metered["images"], source=meter.source)
    elif power_profile is not None:
        from edgeprune.counting import LayerCost
        from edgeprune.power.model import estimate

        if "layers" not in meta:
            raise KeyError(f"sidecar of {path} has no 'layers': re-export to model power from it")
        costs = [LayerCost(**layer) for layer in meta["layers"]]
        modelled = estimate(costs, power_profile, precision=precision, latency_s=result["latency_ms"]["median"] / 1e3)
        result.update(energy_per_image_mj=modelled.energy_j * 1e3, mean_power_mw=modelled.mean_power_w * 1e3,
                      source=modelled.source)
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeprune.device", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="measure an exported model's latency and energy on this machine")
    run.add_argument("model", type=Path, help="exported .pt or .onnx (its .json sidecar beside it)")
    run.add_argument("--out", type=Path, required=True, help="result JSON to write")
    run.add_argument("--repeats", type=int, default=100)
    run.add_argument("--warmup", type=int, default=10)
    run.add_argument("--energy-seconds", type=float, default=5.0, help="metered inference time")
    run.add_argument("--idle-seconds", type=float, default=2.0, help="metered idle time before it (0 skips)")
    run.add_argument("--threads", type=int, default=None,
                     help="intra-op threads, torch's and ONNX Runtime's (default: theirs)")  # fmt: skip
    run.add_argument("--sysfs-root", default="/sys")
    run.add_argument("--rate-hz", type=float, default=50.0, help="meter sampling rate")
    run.add_argument("--power-profile", default=None, help="model power with this profile where no meter exists")
    run.add_argument("--cuda-half", action="store_true", help="run an fp32 export on the GPU in fp16")
    args = parser.parse_args(argv)
    result = run_benchmark(
        args.model, repeats=args.repeats, warmup=args.warmup, energy_seconds=args.energy_seconds,
        idle_seconds=args.idle_seconds, threads=args.threads, sysfs_root=args.sysfs_root, rate_hz=args.rate_hz,
        power_profile=args.power_profile, cuda_half=args.cuda_half,
    )
    write_json_atomic(args.out, result)
    lat = result["latency_ms"]
    energy = result["energy_per_image_mj"]
    print(f"{result['model']} ({result['precision']}) on {result['device']['name']}: "
          f"{lat['median']:.2f} ms (IQR {lat['iqr']:.2f}), "
          f"{'n/a' if energy is None else f'{energy:.1f} mJ'} per image [{result['source']}] -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
