"""Stage 60_device_power on a tiny fake results tree: labels, measured overrides, exports, errors."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError

from edgeprune import prune
from edgeprune.config import Params, TrainParams
from edgeprune.data import normalize, prepare
from edgeprune.device import load_exported, run_benchmark
from edgeprune.io import load_module, save_module
from edgeprune.models import create_model
from edgeprune.paths import ResultPaths
from edgeprune.stages import device_power as dp
from edgeprune.power.params import DevicePowerParams

from conftest import write_class_folder_zip
from fake_boards import JETSON_NANO, RASPBERRY_PI_4, fake_board, restore_torch_state  # noqa: F401 (fixture)

MODEL = "resnet20"
FAST = {"repeats": 4, "warmup": 0, "energy_seconds": 0.05, "idle_seconds": 0.0}


class StageParams(Params):
    """Params with this stage's section (until edgeprune.config carries it)."""

    device_power: DevicePowerParams = DevicePowerParams()


def params(**section: object) -> StageParams:
    train = TrainParams(models=[MODEL], seeds=[0], epochs=2)
    return StageParams(num_threads=1, train=train, device_power=DevicePowerParams(**section))


pytestmark = pytest.mark.usefixtures("restore_torch_state")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[ResultPaths, pd.DataFrame, Path]:
    """Prepared 8x8 data, a dense and an L1-pruned resnet20 kept by `baselines`, and one run of the stage
    over them (no RAPL: an empty sysfs)."""
    root = tmp_path_factory.mktemp("results")
    paths = ResultPaths(root)
    prepare(write_class_folder_zip(root / "tiny.zip"), paths.prepared, val_fraction=0.2)
    torch.manual_seed(0)
    dense = create_model(MODEL, num_classes=3).eval()
    pruned, _ = prune.apply(dense, "l1_filter", 0.5)
    models = dp.models_dir(paths, "baselines", MODEL)
    save_module(dense, models / "none-dense.pt")
    save_module(pruned, models / "l1_filter-s0.50.pt")
    sysfs = root / "empty-sys"
    threads, engine = torch.get_num_threads(), torch.backends.quantized.engine
    try:
        table = dp.run(params(), paths, sysfs_root=sysfs)
    finally:
        torch.set_num_threads(threads)
        torch.backends.quantized.engine = engine
    return paths, table, sysfs


def _only(table: pd.DataFrame, **where: object) -> pd.Series:
    sub = table
    for key, value in where.items():
        sub = sub[sub[key] == value]
    assert len(sub) == 1, f"{where}: {len(sub)} rows"
    return sub.iloc[0]


def test_modelled_rows_are_labelled_and_cover_each_profiles_precisions(tree) -> None:
    paths, table, _ = tree
    assert tuple(table.columns) == dp.COLUMNS
    assert table.equals(dp.read_power(paths).astype(table.dtypes.to_dict()))
    devices = table[table["device"] != dp.HOST]
    assert (devices["source"] == "modelled: " + devices["device"]).all()
    offered = {d: set(g["precision"]) for d, g in devices.groupby("device")}
    assert offered == {"rpi4": {"fp32", "int8"}, "jetson-nano-10w": {"fp16", "fp32", "int8"},
                       "jetson-nano-5w": {"fp16", "fp32", "int8"}}  # fmt: skip
    assert len(devices) == 2 * 8  # two kept models
    assert (devices[["latency_ms", "energy_mj", "power_mw"]] > 0).all().all()
    # energy = mean power x time in every modelled row
    assert (table["energy_mj"] - table["power_mw"] * table["latency_ms"] / 1e3).abs().max() < 1e-6
    summary = json.loads((paths.root / "device" / "summary.json").read_text())
    assert (summary["rows"], summary["kept_models"], summary["rows_modelled"]) == (len(table), 2, 16)


def test_pruning_lowers_modelled_energy_on_every_device(tree) -> None:
    _, table, _ = tree
    devices = table[table["device"] != dp.HOST].set_index(["device", "precision", "method"])
    dense, pruned = devices.xs("none", level="method"), devices.xs("l1_filter", level="method")
    assert (pruned["macs"] < dense["macs"]).all()
    assert (pruned["energy_mj"] < dense["energy_mj"]).all()
    assert (pruned["latency_ms"] <= dense["latency_ms"]).all()


def test_host_latency_is_measured_and_its_power_modelled(tree) -> None:
    paths, table, _ = tree
    host = table[table["device"] == dp.HOST]
    assert set(host["precision"]) == {"fp32", "int8"}
    assert (host["source"] == "latency measured, power modelled: host-x86").all()
    rounds = DevicePowerParams().host_rounds
    for _, row in host.iterrows():  # every kept model timed here, in interleaved rounds
        provenance = json.loads(row["extra"])
        assert provenance["latency_from"].startswith(f"timed by this stage: {rounds} interleaved rounds")
        assert len(provenance["round_medians_ms"]) == rounds
        assert row["latency_ms"] == pytest.approx(float(np.median(provenance["round_medians_ms"])), abs=1e-3)
        assert row["power_mw"] == pytest.approx(12500.0)  # host-x86: 2 vCPUs' share of the package TDP


def test_the_energy_models_time_is_checked_against_the_host(tree) -> None:
    paths, table, _ = tree
    check = dp.load(paths)["host_check"]
    summary = json.loads((paths.root / "device" / "summary.json").read_text())["host_check"]
    assert set(zip(check["method"], check["precision"])) == {(m, p) for m in ("none", "l1_filter") for p in ("fp32", "int8")}
    host = table[table["device"] == dp.HOST].set_index(["method", "precision"])["latency_ms"]
    for _, row in check.iterrows():  # the measured column is the host rows' latency; ratios are against dense
        assert row["measured_ms"] == pytest.approx(host[row["method"], row["precision"]])
        assert row["measured_vs_dense"] == pytest.approx(host[row["method"], row["precision"]] / host["none", row["precision"]])
    assert summary["profile"] == "host-x86" and summary["tolerance"] == 1.5
    assert summary["errors"]["apriori"]["all"]["networks"] == 2  # the pruned network at fp32 and int8
    assert summary["recalibrated"] == (summary["errors"]["apriori"]["all"]["worst"] > 1.5)
    assert set(summary["passes"]) == {"all", "fp32", "int8"}


def test_exports_round_trip_through_the_device_loader(tree) -> None:
    paths, _, _ = tree
    folder = paths.root / "device" / "export" / MODEL / "baselines" / "l1_filter-s0.50"
    model = load_module(dp.models_dir(paths, "baselines", MODEL) / "l1_filter-s0.50.pt")
    x = normalize(torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8))
    fp32, meta = load_exported(folder / "fp32.pt")
    assert (meta["model"], meta["precision"], meta["input_shape"]) == (f"{MODEL}/baselines/l1_filter-s0.50", "fp32", [1, 3, 8, 8])
    torch.testing.assert_close(fp32(x), model(x))
    int8, meta = load_exported(folder / "int8-qnnpack.pt")
    assert (meta["precision"], meta["quantized_engine"]) == ("int8", "qnnpack")
    assert int8(x).shape == model(x).shape
    manifest = json.loads((paths.root / "device" / "export" / "manifest.json").read_text())
    assert manifest["models"][meta["model"]]["files"] == [f"{MODEL}/baselines/l1_filter-s0.50/{f}.pt" for f in ("fp32", "int8-qnnpack")]
    assert json.loads((paths.root / "device" / "ingest.json").read_text())["host_meter"] is None


def test_measured_jsons_override_their_rows(tree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths, before, sysfs = tree
    export = paths.root / "device" / "export" / MODEL / "baselines"
    jetson = fake_board(tmp_path / "jetson", JETSON_NANO, tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    metered = run_benchmark(export / "none-dense" / "int8-qnnpack.pt", sysfs_root=jetson, rate_hz=200, **FAST)
    monkeypatch.setenv("PATH", os.environ["PATH"].split(os.pathsep, 1)[1])
    pi = fake_board(tmp_path / "pi", RASPBERRY_PI_4)
    unmetered = run_benchmark(export / "l1_filter-s0.50" / "fp32.pt", sysfs_root=pi, **FAST)
    stale = {**unmetered, "export": {**unmetered["export"], "macs": 1}}
    stranger = {**unmetered, "model": "vgg19_bn/baselines/none-dense"}
    measured = dp.measured_dir(paths)
    measured.mkdir(parents=True)
    for name, result in [("nano.json", metered), ("pi.json", unmetered), ("stale.json", stale), ("other.json", stranger)]:
        (measured / name).write_text(json.dumps(result))
    try:
        with pytest.warns(UserWarning, match="ignored"):
            after = dp.run(params(export=False), paths, sysfs_root=sysfs)
    finally:
        shutil.rmtree(measured)

    nano = _only(after, method="none", device="jetson-nano-10w", precision="int8")
    assert nano["source"] == "measured on jetson-nano 10W"
    assert nano["latency_ms"] == pytest.approx(metered["latency_ms"]["median"])
    assert nano["power_mw"] == pytest.approx(4000.0)  # the fake board's input rail
    pi_row = _only(after, method="l1_filter", device="rpi4", precision="fp32")
    assert pi_row["source"] == "latency measured on rpi4, power modelled: rpi4"
    assert pi_row["latency_ms"] == pytest.approx(unmetered["latency_ms"]["median"])
    # every other row is what the stage modelled before
    key = list(dp.KEY)
    untouched = after.merge(before, on=key, suffixes=("", "_before"))
    untouched = untouched[~untouched["source"].str.contains("measured on")]
    assert len(untouched) == len(before) - 2
    assert (untouched["source"] == untouched["source_before"]).all()
    assert json.loads((paths.root / "device" / "export" / "manifest.json").read_text())["models"] == {}  # export: false
    ingest = json.loads((paths.root / "device" / "ingest.json").read_text())
    assert ingest["measured_used"] == ["nano.json", "pi.json"]
    assert "MACs" in ingest["measured_ignored"]["stale.json"]
    assert "no kept model" in ingest["measured_ignored"]["other.json"]
    assert json.loads((paths.root / "device" / "summary.json").read_text())["rows_measured"] == 1


def test_bad_measured_jsons_are_clear_errors(tmp_path: Path) -> None:
    costed = {dp.KeptModel(MODEL, "baselines", "none", "dense", Path()).name: None}
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json is not valid JSON"):
        dp.ingest_measured(tmp_path, costed)
    (tmp_path / "broken.json").write_text(json.dumps({"model": "x", "precision": "fp32"}))
    with pytest.raises(KeyError, match="broken.json lacks"):
        dp.ingest_measured(tmp_path, costed)


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"profiles": ["rpi4", "raspberry-pi-9"]}, "unknown device profile.*raspberry-pi-9"),
        ({"profiles": ["rpi4"], "precisions": ["fp16"]}, "fp16"),
        ({"host_profile": "laptop"}, "unknown host_profile 'laptop'"),
        ({"stages": ["baselines", "device"]}, "stages must be"),
    ],
)
def test_bad_params_are_refused(section: dict, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        DevicePowerParams(**section)


def test_a_stage_without_kept_models_is_named(tree) -> None:
    paths, _, _ = tree
    with pytest.raises(FileNotFoundError, match="'akperl' stage run for resnet20"):
        dp.discover(paths, ["baselines", "akperl"], [MODEL])


def test_paper_view_and_figure_say_what_is_modelled(tree) -> None:
    import matplotlib

    matplotlib.use("Agg")
    _, table, _ = tree
    view = dp.paper_view(table, "fp32")
    assert list(view.columns.get_level_values(0).unique()) == ["host", "jetson-nano-10w", "jetson-nano-5w", "rpi4"]
    assert (view[("rpi4", "evidence")] == "modelled").all()
    assert (view[("host", "evidence")] == "latency measured").all()
    assert view.loc[(MODEL, "baselines", "none", "dense"), ("host", "latency_ms")] > 0
    fig = dp.energy_latency_figure(table)
    panels = {ax.get_title().split("\n")[0]: ax for ax in fig.axes}
    assert {line.get_fillstyle() for line in panels["rpi4"].lines} == {"none"}  # hollow: modelled
    assert {line.get_fillstyle() for line in panels["host"].lines} == {"left"}  # half: latency measured
    assert len(panels["rpi4"].lines) == 2 * 2  # two models x (fp32, int8)
    assert "Modelled" in fig.texts[0].get_text() and "rpi4" in fig.texts[0].get_text()


def test_a_network_qnnpack_cannot_run_is_exported_in_fp32_and_the_reason_kept(tmp_path: Path) -> None:
    """QNNPACK refuses a quantized add whose input / output scale ratio is below 2^-14: a residual branch
    with near-zero output (make smoke's third find, on a barely trained MobileNetV3). The network keeps its
    fp32 export; its int8 file is missing, with the reason."""
    torch.manual_seed(0)
    model = create_model(MODEL, num_classes=3).eval()
    with torch.no_grad():
        model.layer1[0].bn2.weight.zero_()  # the first block's residual branch outputs zeros
        model.layer1[0].bn2.bias.zero_()
    save_module(model, tmp_path / "none-dense.pt")
    item = dp.KeptModel(MODEL, "baselines", "none", "dense", tmp_path / "none-dense.pt")
    costed = dp._Costed(item, (1, 3, 8, 8), torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8))
    engine = torch.backends.quantized.engine
    files, skipped = dp.export_all(costed, tmp_path / "export", ["fp32", "int8"])
    assert torch.backends.quantized.engine == engine
    assert [f.name for f in files] == ["fp32.pt"] and list(skipped) == ["int8"]
    assert "qnnpack" in skipped["int8"]
    load_exported(files[0])


def test_an_int8_export_that_does_not_reproduce_its_network_is_removed_and_said(tmp_path: Path, monkeypatch) -> None:
    torch.manual_seed(0)
    save_module(create_model(MODEL, num_classes=3).eval(), tmp_path / "none-dense.pt")
    item = dp.KeptModel(MODEL, "baselines", "none", "dense", tmp_path / "none-dense.pt")
    costed = dp._Costed(item, (1, 3, 8, 8), torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8))
    real = dp.export_checked

    def disagreeing(module, path, **kw):
        real(module, path, **kw)
        if "int8" in path.name:
            raise RuntimeError(f"export {path} does not reproduce it")
        return path

    monkeypatch.setattr(dp, "export_checked", disagreeing)
    files, skipped = dp.export_all(costed, tmp_path / "export", ["fp32", "int8"])
    assert [f.name for f in files] == ["fp32.pt"] and "does not reproduce" in skipped["int8"]
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["fp32.json", "fp32.pt"]  # no wrong file left
