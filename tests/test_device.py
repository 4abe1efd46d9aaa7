"""edgeprune.device: export, load and run on the host; fake Jetson sysfs for the metered path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from edgeprune import device
from edgeprune.device import (
    NOT_METERED,
    device_name,
    export_model,
    load_exported,
    quantized_engine,
    run_benchmark,
    sidecar_path,
)
from edgeprune.counting import layer_costs

from fake_boards import JETSON_NANO, fake_board, restore_torch_state  # noqa: F401 (fixture)

SHAPE = (1, 3, 16, 16)
FAST = {"repeats": 5, "warmup": 1, "energy_seconds": 0.05, "idle_seconds": 0.02}


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    ).eval()


pytestmark = pytest.mark.usefixtures("restore_torch_state")


@pytest.fixture
def exported(tmp_path: Path) -> tuple[nn.Module, Path]:
    model = tiny_net()
    return model, export_model(model, tmp_path / "tiny.pt", name="tiny", input_shape=SHAPE)


def test_export_round_trips_a_float_model(exported: tuple[nn.Module, Path]) -> None:
    model, path = exported
    module, meta = load_exported(path)
    x = torch.randn(4, *SHAPE[1:])
    torch.testing.assert_close(module(x), model(x))
    assert (meta["model"], meta["precision"], meta["input_shape"]) == ("tiny", "fp32", list(SHAPE))
    assert meta["macs"] == sum(c.macs for c in layer_costs(model, SHAPE))
    assert [layer["kind"] for layer in meta["layers"]] == ["conv", "depthwise", "linear"]


def test_export_round_trips_an_int8_model(tmp_path: Path) -> None:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    engine = quantized_engine()
    torch.backends.quantized.engine = engine
    x = torch.randn(8, *SHAPE[1:])
    prepared = prepare_fx(tiny_net(), get_default_qconfig_mapping(engine), (x,))
    prepared(x)
    quantized = convert_fx(prepared)
    path = export_model(quantized, tmp_path / "tiny_int8.pt", name="tiny", input_shape=SHAPE)
    module, meta = load_exported(path)
    assert meta["precision"] == "int8"
    assert torch.backends.quantized.engine == engine
    torch.testing.assert_close(module(x), quantized(x))


def test_run_on_the_host_measures_latency_and_says_power_is_not_metered(
    exported: tuple[nn.Module, Path], tmp_path: Path
) -> None:
    _, path = exported
    result = run_benchmark(path, sysfs_root=tmp_path / "empty-sys", threads=1, **FAST)
    lat = result["latency_ms"]
    assert 0 < lat["min"] <= lat["q1"] <= lat["median"] <= lat["q3"] <= lat["max"]
    assert lat["iqr"] == pytest.approx(lat["q3"] - lat["q1"])
    assert (lat["repeats"], result["batch_size"], result["device"]["torch_threads"]) == (5, 1, 1)
    assert result["source"] == NOT_METERED
    assert result["energy_per_image_mj"] is None and result["mean_power_mw"] is None
    assert set(result["meter_skipped"]) == {"jetson-ina3221", "ina219", "rapl"}
    json.dumps(result)  # the pipeline ingests it as JSON


def test_run_models_host_power_from_the_measured_latency(exported: tuple[nn.Module, Path], tmp_path: Path) -> None:
    _, path = exported
    result = run_benchmark(path, sysfs_root=tmp_path, power_profile="host-x86", **FAST)
    assert result["source"] == "latency measured, power modelled: host-x86"
    assert result["mean_power_mw"] == pytest.approx(12500.0)
    assert result["energy_per_image_mj"] == pytest.approx(12.5 * result["latency_ms"]["median"])


def fake_jetson(root: Path, bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Jetson Nano as the runner sees it, with its nvpmodel on PATH (which also prints a fan-mode line)."""
    fake_board(root, JETSON_NANO, bin_dir, nvpmodel_lines=("NV Fan Mode:quiet",))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_run_on_a_fake_jetson_meters_the_input_rail(
    exported: tuple[nn.Module, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, path = exported
    fake_jetson(tmp_path / "sys", tmp_path / "bin", monkeypatch)
    result = run_benchmark(path, sysfs_root=tmp_path / "sys", rate_hz=200, **FAST)
    assert result["device"]["name"] == "jetson-nano"
    assert result["device"]["power_mode"] == {"name": "MAXN", "id": 0, "label": "10W"}
    assert result["source"] == "measured on jetson-nano 10W"
    assert result["idle_power_mw"] == pytest.approx(4000.0)
    assert result["mean_power_mw"] == pytest.approx(4000.0)  # the input rail alone, not 5800
    reading = result["meter"]
    assert result["energy_per_image_mj"] == pytest.approx(reading["energy_j"] * 1e3 / result["metered_images"])
    assert reading["samples"] >= 2 and reading["duration_s"] >= FAST["energy_seconds"]


def test_cli_writes_the_result_json(exported: tuple[nn.Module, Path], tmp_path: Path) -> None:
    _, path = exported
    out = tmp_path / "out" / "result.json"
    argv = ["run", str(path), "--out", str(out), "--repeats", "4", "--warmup", "0", "--sysfs-root", str(tmp_path)]
    assert device.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["model"] == "tiny" and result["latency_ms"]["repeats"] == 4
    assert result["source"] == NOT_METERED


def test_bad_exports_get_clear_errors(exported: tuple[nn.Module, Path], tmp_path: Path) -> None:
    model, path = exported
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_exported(tmp_path / "nope.pt")
    with pytest.raises(ValueError, match=r"\.pt"):
        export_model(model, tmp_path / "tiny.pth", name="tiny", input_shape=SHAPE)
    with pytest.raises(ValueError, match="batch-1"):
        export_model(model, tmp_path / "b4.pt", name="tiny", input_shape=(4, 3, 16, 16))
    with path.open("ab") as f:  # corrupted after export
        f.write(b"\0")
    with pytest.raises(ValueError, match="SHA-256"):
        load_exported(path)
    path.write_bytes(b"not a torchscript archive")  # consistent sidecar, unloadable file
    meta = json.loads(sidecar_path(path).read_text())
    meta["sha256"] = device._sha256(path)
    sidecar_path(path).write_text(json.dumps(meta))
    with pytest.raises(RuntimeError, match="cannot load"):
        load_exported(path)
    sidecar_path(path).write_text(json.dumps({"format": "torchscript"}))
    with pytest.raises(KeyError, match="precision"):
        load_exported(path)
    sidecar_path(path).unlink()
    with pytest.raises(FileNotFoundError, match="tiny.json"):
        load_exported(path)


def test_run_refuses_bad_settings(exported: tuple[nn.Module, Path], tmp_path: Path) -> None:
    _, path = exported
    with pytest.raises(ValueError, match="energy_seconds"):
        run_benchmark(path, energy_seconds=0, sysfs_root=tmp_path)
    with pytest.raises(ValueError, match="threads"):
        run_benchmark(path, threads=0, sysfs_root=tmp_path)
    with pytest.raises(ValueError, match="repeats"):
        run_benchmark(path, repeats=2, sysfs_root=tmp_path)


@pytest.mark.parametrize(
    ("model", "name"),
    [("NVIDIA Jetson Nano Developer Kit\x00", "jetson-nano"), ("Raspberry Pi 4 Model B Rev 1.4\x00", "rpi4"),
     ("NVIDIA Jetson Xavier NX Developer Kit", "jetson-xavier-nx"), (None, "host")],
)
def test_device_name_from_the_device_tree(tmp_path: Path, model: str | None, name: str) -> None:
    if model is not None:
        (tmp_path / "firmware/devicetree/base").mkdir(parents=True)
        (tmp_path / "firmware/devicetree/base/model").write_text(model)
    assert device_name(tmp_path) == name


def test_int8_engine_per_architecture() -> None:
    assert quantized_engine("aarch64") == "qnnpack"
    assert quantized_engine("x86_64") in ("x86", "fbgemm")


def test_runner_needs_only_torch_on_the_device(exported: tuple[nn.Module, Path], tmp_path: Path) -> None:
    """The board has torch but not this project's stack: block it and run the CLI."""
    _, path = exported
    out = tmp_path / "result.json"
    blocked = ("pydantic", "yaml", "scipy", "pandas", "torchvision", "timm", "torch_pruning")
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "from edgeprune.device import main\n"
        f"sys.exit(main(['run', {str(path)!r}, '--out', {str(out)!r}, '--repeats', '4', '--warmup', '0',"
        f" '--sysfs-root', {str(tmp_path)!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["source"] == NOT_METERED


def test_onnx_export_round_trips_and_runs_on_the_runner(tmp_path: Path) -> None:
    model = tiny_net()
    path = export_model(model, tmp_path / "tiny.onnx", name="tiny", input_shape=SHAPE)
    module, meta = load_exported(path, threads=1)
    assert (meta["format"], meta["precision"], meta["input_shape"]) == ("onnx", "fp32", list(SHAPE))
    x = torch.randn(4, *SHAPE[1:])
    with torch.no_grad():
        torch.testing.assert_close(module(x), model(x), rtol=1e-4, atol=1e-5)
    result = run_benchmark(path, sysfs_root=tmp_path / "empty-sys", threads=1, **FAST)
    assert result["runtime"].startswith("onnxruntime ") and result["export"]["format"] == "onnx"
    assert result["latency_ms"]["median"] > 0 and result["source"] == NOT_METERED


def test_onnx_int8_export_is_calibrated_and_stays_close(tmp_path: Path) -> None:
    model = tiny_net()
    images = torch.randint(0, 256, (64, *SHAPE[1:]), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="needs calib_x"):
        export_model(model, tmp_path / "bad.onnx", name="tiny", input_shape=SHAPE, precision="int8")
    assert not (tmp_path / "bad.onnx").exists()
    path = export_model(model, tmp_path / "tiny8.onnx", name="tiny", input_shape=SHAPE, precision="int8", calib_x=images)
    module, meta = load_exported(path)
    assert meta["precision"] == "int8"
    from edgeprune.data import normalize

    x = normalize(images[:16])
    with torch.no_grad():
        reference = model(x)
    assert (module(x) - reference).abs().max() < 0.1 * reference.abs().max()  # int8 noise, not another network


def test_an_export_whose_suffix_disagrees_with_its_sidecar_is_refused(exported: tuple[nn.Module, Path]) -> None:
    _, path = exported
    moved = path.with_suffix(".onnx")
    moved.write_bytes(path.read_bytes())
    sidecar_path(moved).write_text(sidecar_path(path).read_text())
    with pytest.raises(ValueError, match="format 'torchscript', but tiny.onnx is read as 'onnx'"):
        load_exported(moved)
    with pytest.raises(ValueError, match=r"must end in one of \['.onnx', '.pt'\]"):
        export_model(tiny_net(), path.with_suffix(".pth"), name="tiny", input_shape=SHAPE)
