"""bench repro: a forced run whose dense stage resumed its checkpoint says what training it left out."""

import json

from edgeprune.bench.repro import dense_train_seconds, skipped_dense_training


def _dense(results, name, seconds, resumed, epochs=6.0):
    folder = results / "dense" / name
    folder.mkdir(parents=True)
    (folder / "timing.json").write_text(json.dumps({"train_seconds": seconds, "resumed_from_epoch": resumed}))
    (folder / "metrics.json").write_text(json.dumps({"epochs": epochs}))


def test_a_resumed_dense_run_counts_the_training_it_did_not_redo(tmp_path):
    _dense(tmp_path, "m-s0", 240.0, 0)  # trained in this run: nothing skipped
    _dense(tmp_path, "m-s1", 200.0, 6)  # resumed its finished checkpoint: all of it skipped
    _dense(tmp_path, "m-s2", 300.0, 2)  # resumed at epoch 2 of 6: a third skipped
    assert dense_train_seconds(tmp_path) == 740.0
    assert skipped_dense_training(tmp_path) == {"m-s1": 200.0, "m-s2": 100.0}


def test_no_dense_runs_nothing_skipped(tmp_path):
    assert skipped_dense_training(tmp_path) == {} and dense_train_seconds(tmp_path) == 0
