"""The model-dependent params checks run before `dvc repro` (edgeprune.preflight)."""

from __future__ import annotations

import torch
import yaml

from edgeprune import preflight
from edgeprune.config import PROFILES, load_params, profile_path


def _write(tmp_path, edit) -> str:
    raw = yaml.safe_load(profile_path("paper").read_text())
    edit(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_every_packaged_profile_passes():
    for name in PROFILES:
        if name != "quick":
            assert preflight.problems(load_params(profile_path(name))) == [], name


def test_an_unreachable_akperl_floor_is_refused_before_training(tmp_path, capsys):
    def edit(raw):  # units below 5 % of the MACs stay dense: squeezenet can then lose only ~42 % of its channels
        raw["akperl"]["min_mac_share"] = 0.05

    assert preflight.main([_write(tmp_path, edit)]) == 2
    err = capsys.readouterr().err
    assert "akperl.models squeezenet1_1" in err and "target_sparsity 0.45" in err and "min_mac_share 0.05" in err
    assert "mobilenet_v3_small" not in err  # the models that can reach it pass


def test_unknown_qsa_layer_and_missing_gpu_are_named(tmp_path, monkeypatch):
    def edit(raw):
        raw["qsa"]["models"] = ["mobilenet_v3_small"]
        raw["qsa"]["layers"] = ["features.0.0", "no.such.layer"]
        raw["device"] = "cuda"

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    found = preflight.problems(load_params(_write(tmp_path, edit)))
    assert any(line.startswith("device:") and "cuda" in line for line in found)
    assert any(line.startswith("qsa.models mobilenet_v3_small") and "no.such.layer" in line for line in found)


def test_an_invalid_file_prints_the_validation_error(tmp_path, capsys):
    path = tmp_path / "params.yaml"
    path.write_text("train: {models: [mobilenet_v3_small], seeds: [0], epochs: -1}\n")
    assert preflight.main([str(path)]) == 2
    assert "train.epochs" in capsys.readouterr().err
