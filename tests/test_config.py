"""edgeprune.config: every shipped params file validates; bad ones name the bad key."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from edgeprune.config import ParamsError, load_params, main, profile_path

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", [REPO / "params.yaml", *map(profile_path, ("paper", "reference", "tiny"))])
def test_shipped_params_validate(path: Path) -> None:
    params = load_params(path)
    assert params.train.models and params.train.seeds


def test_quick_profile_is_the_default() -> None:
    params = load_params(REPO / "params.yaml")
    assert params.profile == "quick" and params.train.models == ["mobilenet_v3_small"]


def write(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    mutate(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p["train"].update(epoks=3), "train.epoks"),
        (lambda p: p["train"].update(epochs="many"), "train.epochs"),
        (lambda p: p["train"].update(epochs=-1), "train.epochs"),
        (lambda p: p["data"].update(val_fraction=0.9), "data.val_fraction"),
        (lambda p: p["train"].update(models=["resnet1000"]), "resnet1000"),
        (lambda p: p["train"].update(seeds=[1, 1]), "seeds"),
        (lambda p: p["shift"].update(conditions=["fog"]), "fog"),
        (lambda p: p["shift"].update(severity=9), "shift.severity"),
        (lambda p: p["train"].update(rewind_epoch=50), "rewind_epoch"),
        (lambda p: p.update(device="tpu"), "device"),
        (lambda p: p.update(surprise=1), "surprise"),
        (lambda p: p["ppo"].update(models=["vgg19_bn"]), "ppo.models"),
        (lambda p: p["finetune"].update(budgets=[]), "finetune.budgets"),
        (lambda p: p["finetune"].update(budgets=[{"steps": -8}]), "finetune.budgets.0.steps"),
        (lambda p: p["finetune"].update(budgets=[{"images": 64, "epochs": 1.0}]), "finetune: .*batch_size"),
        (lambda p: p["finetune"].update(distill_temperature=0), "finetune.distill_temperature"),
        (lambda p: p["finetune"].update(distill_weight=1.2), "finetune.distill_weight"),
        (lambda p: p["baselines"].update(axis_sparsities=[0.9]), "baselines: .*axis_sparsities"),
        # one lower bound for timed runs in every section (edgeprune.timing.MIN_REPEATS)
        (lambda p: p["baselines"].update(latency_repeats=3), "baselines.latency_repeats"),
        (lambda p: p["akperl"].update(latency_repeats=3), "akperl.latency_repeats"),
        (lambda p: p["qsa"].update(latency_repeats=3), "qsa.latency_repeats"),
        (lambda p: p["ppo"].update(latency_repeats=3), "ppo.latency_repeats"),
        (lambda p: p["device_power"].update(host_repeats=3), "device_power.host_repeats"),
    ],
)
def test_bad_params_name_the_key(tmp_path: Path, mutate, message: str) -> None:
    path = write(tmp_path, mutate)
    with pytest.raises(ParamsError, match=message) as err:
        load_params(path)
    assert str(path) in str(err.value)


def test_unreadable_params(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("train: [unclosed")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "bad.yaml")


def test_cli_validates_and_switches_profile(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "params.yaml"
    assert main(["--use", "paper", str(target)]) == 0
    assert load_params(target).profile == "paper"
    assert main([str(write(tmp_path, lambda p: p["train"].update(lr=0)))]) == 2
    assert "train.lr" in capsys.readouterr().err
    with pytest.raises(ParamsError, match="no packaged profile"):
        profile_path("huge")


@pytest.mark.parametrize("profile", [None, "paper"])
def test_make_repro_validates_params_with_a_command_the_cli_accepts(tmp_path: Path, profile: str | None) -> None:
    cmd = ["make", "-n", "--no-print-directory", "repro"] + ([f"PROFILE={profile}"] if profile else [])
    dry_run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True).stdout
    line = next(l for l in dry_run.splitlines() if "edgeprune.config" in l)
    args = shlex.split(line)[3:]  # drop "<python> -m edgeprune.config"
    assert args[-1] == "params.yaml" and ("--use" in args) == (profile is not None)
    target = tmp_path / "params.yaml"
    target.write_text((REPO / "params.yaml").read_text())
    assert main([*args[:-1], str(target)]) == 0
    assert load_params(target).profile == (profile or "quick")


@pytest.mark.parametrize("path", [REPO / "params.yaml", profile_path("paper"), profile_path("tiny")], ids=lambda p: p.name)
def test_every_key_dvc_yaml_interpolates_is_written_in_the_profile(path: Path) -> None:
    """DVC templating reads the YAML itself, not the validated defaults."""
    import re

    keys = set(re.findall(r"\$\{([a-z_]+(?:\.[a-z_]+)+)\}", (REPO / "dvc.yaml").read_text())) - {"item.model", "item.seed"}
    raw = yaml.safe_load(path.read_text())
    for key in keys:
        node = raw
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"{path.name} lacks {key}, which dvc.yaml interpolates"
            node = node[part]


@pytest.mark.parametrize("path", [REPO / "params.yaml", profile_path("paper"), profile_path("tiny")], ids=lambda p: p.name)
def test_every_param_a_stage_tracks_is_written_in_the_profile(path: Path) -> None:
    """`dvc repro` stops with "Parameters ... are missing" when a tracked key is only a validated default."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    raw = yaml.safe_load(path.read_text())
    for name, stage in stages.items():
        for key in (stage.get("do", stage)).get("params", []):
            node = raw
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"{path.name} lacks {key}, which stage {name!r} tracks"
                node = node[part]
