"""edgeprune.power: meters on fake sysfs trees / fake I2C sensors, and the modelled backend."""

from __future__ import annotations

import math
import os
import stat
import sys
import time
import types
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from edgeprune.power import __main__ as power_cli
from edgeprune.power.calibration import calibration_table, fit_profile, free_parameters, with_constants
from edgeprune.power.meters import (
    INA260,
    I2CMeter,
    JetsonINA3221Meter,
    PowerMode,
    RaplMeter,
    best_meter,
    parse_nvpmodel,
    read_nvpmodel,
    reading_from_trace,
)
from edgeprune.counting import LayerCost, layer_costs
from edgeprune.power.model import default_precision, estimate, layer_latencies
from edgeprune.power.profiles import available_profiles, load_profile

# --- fake sensors ------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return path


def jetpack4_tree(root: Path, mw: tuple[int, int, int] = (5000, 2000, 1500)) -> Path:
    """The JetPack 4 ina3221x iio layout of a Jetson Nano, rails in mW."""
    device = root / "bus/i2c/drivers/ina3221x/6-0040/iio:device0"
    for channel, (rail, power) in enumerate(zip(("POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"), mw)):
        write(device / f"rail_name_{channel}", rail)
        write(device / f"in_power{channel}_input", str(power))
        write(device / f"in_current{channel}_input", str(power // 5))
        write(device / f"in_voltage{channel}_input", "5000")
    return device


def jetpack5_tree(root: Path) -> Path:
    """The JetPack 5+ hwmon ina3221 layout: labels, mV and mA per channel, shunt channels unlabelled."""
    device = root / "bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    write(device / "name", "ina3221")
    for channel, (rail, mv, ma) in enumerate((("VDD_IN", 5000, 1200), ("VDD_CPU_GPU_CV", 5000, 300)), start=1):
        write(device / f"in{channel}_label", rail)
        write(device / f"in{channel}_input", str(mv))
        write(device / f"curr{channel}_input", str(ma))
    write(device / "in4_input", "12")  # a shunt voltage: no label, no current
    return device


class LinearSensor:
    """A fake INA219: power rises linearly in time, 1 W at t0 plus 1 W per second (reported in mW)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def power(self) -> float:
        return (1.0 + (time.perf_counter() - self.t0)) * 1e3


# --- the energy integral -----------------------------------------------------------------------


def test_reading_from_trace_integrates_known_power_traces() -> None:
    t = [i / 1000 for i in range(2001)]
    ramp = reading_from_trace(t, [2.0 + x for x in t], "test")  # integral of 2 + t over [0, 2] = 6 J
    assert ramp.energy_j == pytest.approx(6.0, rel=1e-12)
    assert ramp.mean_power_w == pytest.approx(3.0)
    assert (ramp.samples, ramp.duration_s, ramp.sample_interval_s) == (2001, pytest.approx(2.0), pytest.approx(1e-3))
    t = [i / 1000 for i in range(1001)]
    sine = reading_from_trace(t, [3 + math.sin(2 * math.pi * x) for x in t], "test")
    assert sine.energy_j == pytest.approx(3.0, abs=1e-6)
    counter = reading_from_trace([0.0, 1.0, 4.0], [10.0, 12.0, 19.0], "test", cumulative=True)
    assert (counter.energy_j, counter.mean_power_w) == (9.0, 2.25)


@pytest.mark.parametrize(
    ("times", "values", "match"),
    [([0.0], [1.0], "at least 2"), ([0.0, 1.0], [1.0], "entries"), ([0.0, 0.0], [1.0, 1.0], "increasing")],
)
def test_reading_from_trace_rejects_bad_traces(times: list, values: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        reading_from_trace(times, values, "test")


def test_threaded_sampler_integrates_a_time_varying_sensor() -> None:
    meter = I2CMeter(LinearSensor(), rate_hz=200)
    sensor = meter._sensor
    with meter:
        time.sleep(0.25)
    reading = meter.read()
    t_first, t_last = meter._times[0] - sensor.t0, meter._times[-1] - sensor.t0
    exact = (t_last - t_first) + (t_last**2 - t_first**2) / 2  # integral of 1 + t
    assert reading.energy_j == pytest.approx(exact, rel=2e-2)
    assert reading.samples >= 5  # start + stop + the thread's samples, even on a loaded machine
    assert reading.sample_interval_s == pytest.approx(reading.duration_s / (reading.samples - 1))
    assert reading.duration_s >= 0.25
    assert reading.source == "measured on rpi4 (INA219)"


def test_sampler_refuses_misuse() -> None:
    meter = I2CMeter(LinearSensor())
    with pytest.raises(RuntimeError, match="start"):
        meter.read()
    with pytest.raises(RuntimeError, match="not running"):
        meter.stop()
    meter.start()
    with pytest.raises(RuntimeError, match="already running"):
        meter.start()
    meter.stop()
    with pytest.raises(ValueError, match="rate_hz"):
        I2CMeter(LinearSensor(), rate_hz=0)


# --- Jetson INA3221 ----------------------------------------------------------------------------


def test_jetpack4_meter_reads_the_input_rail_not_the_sum(tmp_path: Path) -> None:
    jetpack4_tree(tmp_path)
    meter = JetsonINA3221Meter(tmp_path, device_name="jetson-nano", power_mode=PowerMode("MAXN", 0))
    assert meter.layout == "jetpack4-ina3221x"
    assert meter.rail == "POM_5V_IN"
    assert meter.sample() == 5.0  # not 5 + 2 + 1.5
    assert meter.rails() == {"POM_5V_IN": 5.0, "POM_5V_GPU": 2.0, "POM_5V_CPU": 1.5}
    assert meter.source == "measured on jetson-nano 10W"
    with meter:
        time.sleep(0.05)
    reading = meter.read()
    assert reading.mean_power_w == pytest.approx(5.0)
    assert reading.energy_j == pytest.approx(5.0 * reading.duration_s)
    assert JetsonINA3221Meter(tmp_path, rail="POM_5V_GPU").sample() == 2.0


def test_jetpack5_hwmon_meter_multiplies_volts_and_amps(tmp_path: Path) -> None:
    jetpack5_tree(tmp_path)
    meter = JetsonINA3221Meter(tmp_path, power_mode=PowerMode("15W", 2))
    assert meter.layout == "jetpack5-hwmon"
    assert meter.rail == "VDD_IN"
    assert meter.sample() == pytest.approx(6.0)  # 5000 mV x 1200 mA
    assert set(meter.rails()) == {"VDD_IN", "VDD_CPU_GPU_CV"}
    assert meter.source == "measured on jetson 15W"


def test_jetpack5_layout_found_through_class_hwmon(tmp_path: Path) -> None:
    device = tmp_path / "class/hwmon/hwmon1"
    write(device / "name", "ina3221")
    write(device / "in1_label", "VDD_IN")
    write(device / "in1_input", "5100")
    write(device / "curr1_input", "1000")
    assert JetsonINA3221Meter(tmp_path).sample() == pytest.approx(5.1)


def test_jetson_meter_bad_paths_and_sensors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        JetsonINA3221Meter(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="JetPack 4.*JetPack 5"):
        JetsonINA3221Meter(tmp_path)
    device = jetpack4_tree(tmp_path)
    with pytest.raises(KeyError, match="POM_5V_GPU"):
        JetsonINA3221Meter(tmp_path, rail="VDD_SOC")
    write(device / "in_power0_input", "N/A")
    with pytest.raises(ValueError, match="in_power0_input.*'N/A'"):
        JetsonINA3221Meter(tmp_path)
    (device / "in_power0_input").unlink()
    (device / "in_power0_input").mkdir()  # unreadable as a file, even for root
    with pytest.raises(OSError, match="in_power0_input"):
        JetsonINA3221Meter(tmp_path)


def test_jetson_meter_without_input_rail_refuses_to_guess(tmp_path: Path) -> None:
    device = jetpack4_tree(tmp_path)
    write(device / "rail_name_0", "POM_5V_SOC")
    with pytest.raises(KeyError, match="no board input rail"):
        JetsonINA3221Meter(tmp_path)


def test_sensor_failing_mid_run_is_reported_by_stop(tmp_path: Path) -> None:
    device = jetpack4_tree(tmp_path)
    meter = JetsonINA3221Meter(tmp_path, rate_hz=200)
    meter.start()
    (device / "in_power0_input").unlink()
    time.sleep(0.05)
    with pytest.raises(RuntimeError, match="in_power0_input"):
        meter.stop()


def test_nvpmodel_output_parsing() -> None:
    assert parse_nvpmodel("NV Fan Mode:quiet\nNV Power Mode: MAXN\n0\n") == PowerMode("MAXN", 0)
    five = parse_nvpmodel("NV Power Mode: 5W\n1\n")
    assert (five.id, five.label("jetson-nano")) == (1, "5W")
    assert PowerMode("MAXN", 0).label("jetson-nano") == "10W"
    assert PowerMode("MAXN", 0).label("jetson-xavier-nx") == "MAXN"  # a different budget there
    with pytest.raises(ValueError, match="unrecognised"):
        parse_nvpmodel("command not found")


def test_read_nvpmodel_runs_the_tool_when_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert read_nvpmodel(("no-such-nvpmodel-tool", "-q")) is None
    tool = write(tmp_path / "nvpmodel", "#!/bin/sh\nprintf 'NV Power Mode: 5W\\n1\\n'")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert read_nvpmodel() == PowerMode("5W", 1)


# --- I2C ---------------------------------------------------------------------------------------


class FakeI2CDevice:
    def __init__(self, registers: dict[int, list[int]]) -> None:
        self.registers = registers

    def readList(self, register: int, length: int) -> list[int]:  # noqa: N802 (Adafruit_GPIO's name)
        return self.registers[register][:length]


def test_ina260_decodes_the_power_register() -> None:
    sensor = INA260(FakeI2CDevice({0x03: [0x01, 0x2C]}))  # 300 LSB x 10 mW
    assert sensor.power() == 3000.0
    meter = I2CMeter(sensor, chip="INA260")
    assert meter.sample() == 3.0
    assert meter.source == "measured on rpi4 (INA260)"


class FakeINA219:
    """Stands in for pi-ina219's ``INA219``: records how it was opened and configured."""

    RANGE_16V = 0
    opened: dict = {}

    def __init__(self, shunt_ohms: float, max_expected_amps: float, address: int = 0x40, busnum: int | None = None) -> None:
        FakeINA219.opened = {"shunt_ohms": shunt_ohms, "max_expected_amps": max_expected_amps, "address": address,
                             "busnum": busnum}

    def configure(self, voltage_range: int) -> None:
        FakeINA219.opened["voltage_range"] = voltage_range

    def power(self) -> float:
        return 5100.0


def test_ina219_opens_with_the_configured_address_and_shunt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ina219", types.SimpleNamespace(INA219=FakeINA219))
    meter = I2CMeter.ina219(address=0x41, shunt_ohms=0.05, max_expected_amps=2.0, busnum=1, device_name="rpi4")
    assert FakeINA219.opened == {"shunt_ohms": 0.05, "max_expected_amps": 2.0, "address": 0x41, "busnum": 1,
                                 "voltage_range": FakeINA219.RANGE_16V}
    assert meter.sample() == pytest.approx(5.1)
    assert meter.source == "measured on rpi4 (INA219)"


def test_i2c_meter_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TypeError, match="power"):
        I2CMeter(object())
    with pytest.raises(ValueError, match="shunt_ohms"):
        I2CMeter.ina219(shunt_ohms=0)
    monkeypatch.setitem(sys.modules, "ina219", None)  # as if pi-ina219 were not installed
    with pytest.raises(ModuleNotFoundError, match=r"edgeprune\[pi\]"):
        I2CMeter.ina219()
    monkeypatch.setitem(sys.modules, "Adafruit_GPIO", None)
    with pytest.raises(ModuleNotFoundError, match=r"edgeprune\[pi\]"):
        I2CMeter.ina260()


# --- RAPL --------------------------------------------------------------------------------------


def rapl_tree(root: Path, energy_uj: int, max_uj: int = 1_000_000) -> Path:
    package = root / "intel-rapl:0"
    write(package / "name", "package-0")
    write(package / "energy_uj", str(energy_uj))
    write(package / "max_energy_range_uj", str(max_uj))
    write(root / "intel-rapl:0:0/name", "core")  # a subdomain: inside package-0, never added
    write(root / "intel-rapl:0:0/energy_uj", "5")
    write(root / "intel-rapl:1/name", "psys")  # the platform domain includes the package: not default
    write(root / "intel-rapl:1/energy_uj", "7")
    write(root / "intel-rapl:1/max_energy_range_uj", str(max_uj))
    return package


def test_rapl_counts_across_a_wrap(tmp_path: Path) -> None:
    package = rapl_tree(tmp_path, 900_000)
    meter = RaplMeter(tmp_path, rate_hz=0.1)  # the thread never fires: start and stop samples only
    assert meter.domains == ["package-0"]
    meter.start()
    write(package / "energy_uj", "100000")  # wrapped: 100 000 to the top, 100 000 after
    meter.stop()
    assert meter.read().energy_j == pytest.approx(0.2)
    assert meter.source == "measured on host (RAPL package-0)"
    meter._reset()
    write(package / "energy_uj", "350000")
    assert meter.sample() == pytest.approx(0.25)


def test_rapl_absent_or_unreadable(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no Intel RAPL"):
        RaplMeter(tmp_path / "powercap")
    with pytest.raises(FileNotFoundError, match="domains there: \\[\\]"):
        RaplMeter(tmp_path)
    package = rapl_tree(tmp_path, 10)
    with pytest.raises(FileNotFoundError, match="dram"):
        RaplMeter(tmp_path, domains=["dram"])
    (package / "energy_uj").unlink()
    (package / "energy_uj").mkdir()
    with pytest.raises(OSError, match="energy_uj"):
        RaplMeter(tmp_path)


def test_best_meter_prefers_jetson_and_says_why_others_were_skipped(tmp_path: Path) -> None:
    meter, skipped = best_meter(tmp_path)
    assert meter is None
    assert set(skipped) == {"jetson-ina3221", "ina219", "rapl"}
    rapl_tree(tmp_path / "class/powercap", 0)
    meter, skipped = best_meter(tmp_path, device_name="host")
    assert isinstance(meter, RaplMeter) and set(skipped) == {"jetson-ina3221", "ina219"}
    jetpack4_tree(tmp_path)
    meter, skipped = best_meter(tmp_path, device_name="jetson-nano")
    assert isinstance(meter, JetsonINA3221Meter) and skipped == {}


# --- modelled backend --------------------------------------------------------------------------

CALIBRATED = ("rpi4", "jetson-nano-10w")


def test_every_calibration_point_is_within_2x_in_sample_and_left_out() -> None:
    table = calibration_table()
    assert set(table["profile"]) == set(CALIBRATED) and len(table) == 10
    assert table["ratio"].between(0.5, 2.0).all(), table
    assert table["loo_ratio"].between(0.5, 2.0).all(), table


@pytest.mark.parametrize("name", CALIBRATED)
def test_profile_constants_are_what_the_documented_fit_gives(name: str) -> None:
    shipped = load_profile(name)
    fitted = fit_profile(shipped)
    for section, key, field in free_parameters(shipped):
        got = getattr(getattr(fitted, section)[key], field).value
        assert getattr(getattr(shipped, section)[key], field).value == pytest.approx(got, rel=0.01), (section, key, field)


def test_uncalibrated_jetson_constants_track_the_rpi4_fit() -> None:
    rpi4 = load_profile("rpi4")
    for name in ("jetson-nano-10w", "jetson-nano-5w"):
        nano = load_profile(name)
        for proc in nano.processors.values():
            assert proc.depthwise_efficiency_ratio.value == rpi4.processors["cpu"].depthwise_efficiency_ratio.value
        assert nano.precisions["int8"].efficiency.value == rpi4.precisions["int8"].efficiency.value


def test_shipped_profiles_load_and_cite_every_constant() -> None:
    assert set(available_profiles()) >= {"rpi4", "jetson-nano-10w", "jetson-nano-5w", "host-x86"}
    for name in available_profiles():
        constants = _constants(yaml.safe_load(_profile_text(name)))
        assert constants and all(c["source"].strip() for c in constants), name
        assert load_profile(name).name == name


def _constants(node: object) -> list[dict]:
    if isinstance(node, dict):
        if set(node) == {"value", "source"}:
            return [node]
        return [c for v in node.values() for c in _constants(v)]
    if isinstance(node, list):
        return [c for v in node for c in _constants(v)]
    return []


def _costs(macs: int, elements: int, kind: str = "conv") -> list[LayerCost]:
    return [LayerCost("layer", kind, macs, elements, 0, 0)]


@pytest.mark.parametrize("name", ["rpi4", "jetson-nano-10w", "jetson-nano-5w", "host-x86"])
def test_modelled_latency_is_monotone_in_macs_and_bytes(name: str) -> None:
    profile = load_profile(name)
    for precision in profile.precisions:
        # the overhead term: a layer that does nothing still costs its dispatch
        overhead = profile.processors[profile.precisions[precision].processor].layer_overhead_us.value * 1e-6
        assert sum(layer_latencies(_costs(0, 0), profile, precision)) == pytest.approx(overhead) and overhead > 0
        grid = [10**k for k in range(3, 11)]
        by_macs = [sum(layer_latencies(_costs(m, 10**6), profile, precision)) for m in grid]
        by_bytes = [sum(layer_latencies(_costs(10**8, e), profile, precision)) for e in grid]
        assert all(a <= b for a, b in zip(by_macs, by_macs[1:])) and by_macs[-1] > by_macs[0]
        assert all(a <= b for a, b in zip(by_bytes, by_bytes[1:])) and by_bytes[-1] > by_bytes[0]
        dense, depthwise = (sum(layer_latencies(_costs(10**9, 1, k), profile, precision)) for k in ("conv", "depthwise"))
        assert depthwise > dense


def _convnet(width: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10),
    )


def test_wider_networks_cost_more_time_and_energy_on_every_profile() -> None:
    for name in ("rpi4", "jetson-nano-10w", "jetson-nano-5w"):
        for precision in load_profile(name).precisions:
            runs = [estimate(_convnet(w), name, precision=precision, input_shape=(1, 3, 32, 32)) for w in (8, 32, 128)]
            assert runs[0].latency_s < runs[1].latency_s < runs[2].latency_s
            assert runs[0].energy_j < runs[1].energy_j < runs[2].energy_j


def test_board_energy_is_active_power_over_time_and_dynamic_only_is_the_ablation() -> None:
    from edgeprune.power.calibration import calibration_costs

    for name in ("rpi4", "jetson-nano-10w", "jetson-nano-5w"):
        profile = load_profile(name)
        idle, active = profile.idle_power_w.value, profile.active_power_w.value
        for precision in profile.precisions:
            for model in ("resnet18", "mobilenet_v2", "vgg16"):
                est = estimate(calibration_costs(model), profile, precision=precision)
                assert est.source == f"modelled: {name}"
                assert est.energy_j == pytest.approx(active * est.latency_s)
                assert est.above_idle_energy_j == pytest.approx((active - idle) * est.latency_s)
                assert est.mean_power_w == active
                assert 0 < est.dynamic_only_energy_j
    rpi4 = load_profile("rpi4")
    resnet = calibration_costs("resnet18")
    fp32, int8 = (estimate(resnet, rpi4, precision=p) for p in ("fp32", "int8"))
    assert int8.energy_j < fp32.energy_j and int8.latency_s < fp32.latency_s
    assert int8.energy_j / fp32.energy_j == pytest.approx(int8.latency_s / fp32.latency_s)  # energy falls as time does
    # the ablation: dense fp32 layers at the calibrated efficiency draw (active - idle) W, overhead draws nothing
    compute_only = with_constants(rpi4, {("processors", "cpu", "layer_overhead_us"): 0.0})
    busy = estimate(resnet, compute_only, precision="fp32")
    assert busy.dynamic_only_energy_j == pytest.approx(busy.above_idle_energy_j, rel=0.1)


def test_above_idle_power_at_a_frame_rate_caps_the_busy_share() -> None:
    est = estimate(_costs(10**8, 10**6), "rpi4", precision="fp32", latency_s=0.01)
    above = est.above_idle_energy_j / 0.01
    assert est.above_idle_power_w(30) == pytest.approx(above * 0.3)
    assert est.above_idle_power_w(1000) == pytest.approx(above)  # frames faster than it can run: busy all the time
    with pytest.raises(ValueError, match="frame_rate_hz"):
        est.above_idle_power_w(0)


def test_measured_latency_only_models_power(tmp_path: Path) -> None:
    est = estimate(_costs(10**8, 10**6), "rpi4", precision="fp32", latency_s=0.5)
    assert est.latency_s == 0.5
    assert est.source == "latency measured, power modelled: rpi4"
    host = estimate(_costs(1, 1), "host-x86", precision="fp32", latency_s=0.02)
    assert (host.energy_j, host.mean_power_w) == (pytest.approx(0.25), 12.5)
    raw = yaml.safe_load(_profile_text("host-x86"))
    flat = {k: raw[k] for k in ("name", "description", "idle_power_w", "active_power_w", "max_power_w")}
    path = write(tmp_path / "flat.yaml", yaml.safe_dump(flat))
    assert estimate(_costs(1, 1), path, latency_s=0.02).energy_j == pytest.approx(0.25)
    assert math.isnan(estimate(_costs(1, 1), path, latency_s=0.02).dynamic_only_energy_j)
    with pytest.raises(ValueError, match="no roofline: pass the measured latency_s"):
        estimate(_costs(1, 1), path)
    with pytest.raises(ValueError, match="latency_s"):
        estimate(_costs(1, 1), "rpi4", precision="fp32", latency_s=0.0)
    with pytest.raises(KeyError, match="fp16.*fp32, int8"):
        estimate(_costs(1, 1), "rpi4", precision="fp16")


def test_layer_costs_count_macs_weights_and_activations() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
                          nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
    model.train()
    costs = layer_costs(model, (1, 3, 8, 8))
    assert model.training  # restored
    assert [c.kind for c in costs] == ["conv", "depthwise", "linear"]
    assert (costs[0].macs, costs[0].weights, costs[0].inputs, costs[0].outputs) == (8 * 64 * 3 * 9, 8 * 27 + 8, 192, 512)
    assert (costs[1].macs, costs[1].weights) == (8 * 64 * 9, 72)
    assert (costs[2].macs, costs[2].weights) == (512 * 10, 5130)
    assert costs[0].bytes_moved(4) == (224 + 192 + 512) * 4
    with pytest.raises(ValueError, match="input_shape"):
        layer_costs(model, (1, 3, 0, 8))
    with pytest.raises(ValueError, match="no Conv2d"):
        layer_costs(nn.Sequential(nn.ReLU()), (1, 3, 8, 8))


def test_quantized_model_costs_as_its_float_twin() -> None:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    float_model = _convnet(8).eval()
    example = torch.randn(2, 3, 16, 16)
    prepared = prepare_fx(_copy(float_model), get_default_qconfig_mapping("x86"), (example,))
    prepared(example)
    quantized = convert_fx(prepared)
    assert default_precision(quantized) == "int8" and default_precision(float_model) == "fp32"
    q, f = layer_costs(quantized, (1, 3, 16, 16)), layer_costs(float_model, (1, 3, 16, 16))
    assert [(c.kind, c.macs, c.weights) for c in q] == [(c.kind, c.macs, c.weights) for c in f]


def _copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model)


def _profile_text(name: str) -> str:
    from importlib import resources

    return resources.files("edgeprune").joinpath("devices", f"{name}.yaml").read_text()


def test_bad_profiles_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="rpi4"):
        load_profile("raspberry-pi-9")
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_profile(tmp_path / "missing.yaml")
    raw = yaml.safe_load(_profile_text("rpi4"))
    del raw["precisions"]["fp32"]["efficiency"]
    with pytest.raises(KeyError, match=r"no_eff.yaml.*precisions\.fp32\.efficiency"):
        load_profile(write(tmp_path / "no_eff.yaml", yaml.safe_dump(raw)))
    raw = yaml.safe_load(_profile_text("rpi4"))
    del raw["memory_bandwidth_gb_s"]
    with pytest.raises(KeyError, match="memory_bandwidth_gb_s"):
        load_profile(write(tmp_path / "no_bw.yaml", yaml.safe_dump(raw)))
    raw = yaml.safe_load(_profile_text("rpi4"))
    raw["idle_power_w"]["value"] = 9.0
    with pytest.raises(ValueError, match="idle_power_w <= active_power_w"):
        load_profile(write(tmp_path / "hot.yaml", yaml.safe_dump(raw)))
    raw = yaml.safe_load(_profile_text("rpi4"))
    raw["precisions"]["fp32"]["efficiency"]["source"] = ""
    with pytest.raises(ValueError, match="source"):
        load_profile(write(tmp_path / "unsourced.yaml", yaml.safe_dump(raw)))


def test_cli_prints_the_calibration_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert power_cli.main(["calibrate", "--profile", "rpi4", "--no-loo"]) == 0
    out = capsys.readouterr().out
    for model in ("mobilenet_v2", "mobilenet_v3_large", "resnet18", "resnet50", "shufflenet_v2_x0_5"):
        assert model in out
    assert "worst in-sample miss" in out
    assert power_cli.main(["probe", "--sysfs-root", "/nonexistent"]) == 0
    assert "best meter: none" in capsys.readouterr().out
