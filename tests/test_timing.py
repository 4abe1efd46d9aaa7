"""The one latency timer (edgeprune.timing) and its host helpers."""

from __future__ import annotations

import time

import pytest
import torch

from edgeprune import timing


def test_timer_returns_median_and_iqr_of_single_runs():
    calls = []

    def sleep_2ms() -> None:
        calls.append(1)
        time.sleep(0.002)

    stats = timing.time_call(sleep_2ms, warmup=3, repeats=6)
    assert stats.repeats == 6 and stats.warmup == 3
    assert len(calls) == 3 + 3 * 6  # torch.utils.benchmark runs two untimed calls before each timed one
    assert 2.0 <= stats.min_ms <= stats.q1_ms <= stats.median_ms <= stats.q3_ms <= stats.max_ms < 200
    assert stats.iqr_ms == pytest.approx(stats.q3_ms - stats.q1_ms)
    assert set(stats.to_dict()) >= {"median_ms", "iqr_ms", "threads", "load_1min"}


def test_timer_honours_the_thread_count_and_restores_it():
    before = torch.get_num_threads()
    seen = []
    stats = timing.time_call(lambda: seen.append(torch.get_num_threads()), warmup=2, repeats=4, threads=1)
    assert set(seen) == {1} and stats.threads == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("kwargs", [{"warmup": -1, "repeats": 4}, {"warmup": 0, "repeats": 3}])
def test_timer_rejects_too_few_runs(kwargs):
    with pytest.raises(ValueError, match="repeats >= 4"):
        timing.time_call(lambda: None, **kwargs)
    with pytest.raises(ValueError, match="threads"):
        timing.time_call(lambda: None, warmup=0, repeats=4, threads=0)


def test_host_helpers_describe_this_machine():
    assert timing.cpu_model().endswith(")")
    assert timing.quantized_engine() in torch.backends.quantized.supported_engines
