"""Measurement harness: bytes, parameters, MACs, latency and the one-row report."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune
from torch.utils.flop_counter import FlopCounterMode

from edgeprune import harness, measure
from edgeprune.counting import layer_costs
from edgeprune.results import COLUMNS, SHIFT_CONDITIONS, append_rows, read_table


def tiny_model() -> nn.Module:
    """conv 4x3x3x3 (no bias) + BN(4) + linear 4->2: 108 + 8 + 10 parameters."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    ).eval()


def test_dense_size_matches_hand_count():
    size = measure.model_size(tiny_model())
    # conv 108 x 4 B; BN weight, bias, running mean, running var 4 x 4 x 4 B (num_batches_tracked
    # is bookkeeping, not stored); linear 8 x 4 B + bias 2 x 4 B.
    assert size.total_bytes == 108 * 4 + 4 * 4 * 4 + 8 * 4 + 2 * 4 == 536
    assert size.index_bytes == 0 and size.encoding == "dense"
    assert [t.name for t in size.tensors][:1] == ["0.weight"]


def test_sparse_weights_pay_for_their_index():
    model = tiny_model()
    with torch.no_grad():
        flat = model[0].weight.view(-1)
        flat[8:] = 0  # 8 non-zeros of 108, all in the first output channel
    conv = measure.model_size(model).tensors[0]
    # CSR: 8 values x 4 B + 8 column indices x 1 B (27 columns) + 5 row pointers x 1 B = 45 B;
    # bitmask would be 32 + ceil(108 / 8) = 46 B; dense 432 B.
    assert (conv.encoding, conv.value_bytes, conv.index_bytes, conv.total_bytes) == ("csr", 32, 13, 45)
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(4, 3, 3, 3).sign())
        model[0].weight.view(-1)[::2] = 0  # 54 non-zeros
    conv = measure.model_size(model).tensors[0]
    # bitmask: 54 x 4 B + 14 B = 230 B; CSR: 216 + 54 + 5 = 275 B; dense 432 B.
    assert (conv.encoding, conv.total_bytes, conv.index_bytes) == ("bitmask", 230, 14)


def test_masked_model_counts_effective_weights():
    model = tiny_model()
    torch_prune.l1_unstructured(model[0], "weight", amount=0.5)
    names = [name for name, _ in measure.stored_tensors(model)]
    assert "0.weight" in names and "0.weight_orig" not in names and "0.weight_mask" not in names
    params, nonzero = measure.count_params(model)
    assert params == 108 + 8 + 10 and nonzero == params - 54 - 4  # BN biases start at zero
    baked = tiny_model()
    with torch.no_grad():
        baked[0].weight.mul_(model[0].weight_mask)
    assert measure.model_size(model).total_bytes == measure.model_size(baked).total_bytes
    assert measure.model_size(model).tensors[0].index_bytes > 0


def test_k_bit_weights_are_packed_with_scales():
    size = measure.model_size(tiny_model(), bits=4)
    conv, linear = size.tensors[0], size.tensors[-2]
    assert (conv.bits, conv.value_bytes, conv.qparam_bytes) == (4, 54, 4 * 4)  # 108 x 4 bit, 4 fp32 scales
    assert (linear.name, linear.value_bytes, linear.qparam_bytes) == ("5.weight", 4, 2 * 4)
    assert size.total_bytes == 536 - 432 - 32 + 54 + 16 + 4 + 8
    with pytest.raises(KeyError, match="nope.weight"):
        measure.model_size(tiny_model(), bits={"nope.weight": 4})
    with pytest.raises(ValueError, match="1..32"):
        measure.model_size(tiny_model(), bits={"0.weight": 0})


def test_macs_match_hand_count_and_flop_counter():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.Conv2d(4, 6, 1, stride=2),
        nn.Flatten(), nn.Linear(96, 2),
    )  # fmt: skip
    # conv 8*8 positions x 4 out x 3 in x 9; depthwise 8*8 x 4 x 9; pointwise stride 2: 4*4 x 6 x 4; linear 96 x 2
    hand = 64 * 4 * 27 + 64 * 4 * 9 + 16 * 6 * 4 + 96 * 2
    assert measure.count_macs(model, (3, 8, 8)) == hand
    assert [c.macs for c in layer_costs(model, (1, 3, 8, 8))] == [64 * 4 * 27, 64 * 4 * 9, 16 * 6 * 4, 96 * 2]
    flops = FlopCounterMode(display=False)
    with torch.no_grad(), flops:
        model(torch.zeros(1, 3, 8, 8))
    assert flops.get_total_flops() // 2 == hand  # torch's own counter agrees on convs, depthwise and linear


def test_latency_returns_requested_statistics():
    before = torch.get_num_threads()
    stats = harness.measure_latency(tiny_model(), (3, 8, 8), batch_size=4, warmup=1, repeats=7, threads=1)
    assert stats["q1_ms"] <= stats["median_ms"] <= stats["q3_ms"]
    assert stats["iqr_ms"] == pytest.approx(stats["q3_ms"] - stats["q1_ms"])
    assert stats["median_ms"] > 0 and stats["repeats"] == 7 and stats["batch_size"] == 4
    assert stats["threads"] == 1 and torch.get_num_threads() == before
    assert stats["layout"] == "channels_last" and stats["cpu"]
    with pytest.raises(ValueError, match="repeats"):
        harness.measure_latency(tiny_model(), (3, 8, 8), repeats=1)


def test_report_fills_one_schema_row(tmp_path):
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (40, 3, 12, 12), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 2, (40,), generator=gen)
    row = harness.report(
        tiny_model(), x, y, model_name="tiny", method="none", setting="dense", seed=0, calib_x=x,
        input_shape=(3, 12, 12), warmup=1, repeats=4, conditions=["noise"],
    )  # fmt: skip
    assert set(row) <= set(COLUMNS)
    assert row["params"] == 126 and row["bits"] == 32 and row["bits_simulated"] is False
    assert 0 <= row["top1"] <= 100 and 0 <= row["top1_noise"] <= 100 and 0 <= row["int8_top1"] <= 100
    assert row["size_bytes"] == 536 and row["int8_size_bytes"] < row["size_bytes"]
    assert row["latency_b64_ms"] > 0 and row["int8_latency_b1_ms"] > 0
    table = append_rows(tmp_path / "rows.csv", [row])
    assert read_table(table).loc[0, "size_bytes"] == 536
    with pytest.raises(KeyError, match="fog"):
        harness.report(tiny_model(), x, y, model_name="t", method="none", setting="d", seed=0, int8=False,
                       conditions=["fog"])  # fmt: skip
    with pytest.raises(ValueError, match="calib_x"):
        harness.report(tiny_model(), x, y, model_name="t", method="none", setting="d", seed=0)
    assert "noise" in SHIFT_CONDITIONS


def test_append_rows_replaces_same_key_and_checks_schema(tmp_path):
    path = tmp_path / "t.csv"
    append_rows(path, [{"model": "m", "method": "none", "setting": "dense", "seed": 0, "top1": 50.0}])
    append_rows(path, [{"model": "m", "method": "none", "setting": "dense", "seed": 0, "top1": 60.0},
                       {"model": "m", "method": "none", "setting": "dense", "seed": 1, "extra": {"a": 1}}])  # fmt: skip
    table = read_table(path)
    assert list(table.columns) == list(COLUMNS)
    assert table["top1"].tolist()[0] == 60.0 and len(table) == 2 and table["extra"][1] == '{"a": 1}'
    with pytest.raises(KeyError, match="accuracy"):
        append_rows(path, [{"model": "m", "method": "none", "setting": "d", "seed": 0, "accuracy": 1}])
    with pytest.raises(ValueError, match="seed"):
        append_rows(path, [{"model": "m", "method": "none", "setting": "d"}])
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="bad.csv"):
        append_rows(tmp_path / "bad.csv", [{"model": "m", "method": "none", "setting": "d", "seed": 0}])


@pytest.mark.parametrize("channels", [64, 61])  # a multiple of 8 (fast int8 kernels on x86) and an odd count
def test_slow_int8_flag_matches_the_measured_latencies(channels):
    from edgeprune.report.collect import Results
    from edgeprune.report.tables import slow_int8
    from edgeprune.results import INT8_SLOW

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(),
        nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10),
    ).eval()  # fmt: skip
    x = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8)
    row = harness.report(net, x, torch.zeros(32, dtype=torch.long), model_name="m", method="m", setting=str(channels),
                         seed=0, conditions=[], calib_x=x, input_shape=(3, 16, 16), warmup=2, repeats=5, threads=1)  # fmt: skip
    ratio = row["int8_latency_b64_ms"] / row["latency_b64_ms"]
    assert row["int8_latency_ratio_b64"] == pytest.approx(ratio)
    rows = pd.DataFrame([{c: row.get(c) for c in COLUMNS} | {"stage": "s"}])
    flagged = set(slow_int8(Results(rows=rows))[0]["setting"])
    assert (str(channels) in flagged) == (ratio > INT8_SLOW)
