"""``python -m edgeprune.bench plan``: counts derived from params, the table, and bad params.

The unit-cost measurement is replaced by fixed costs (it times real models: seconds, not what
these tests check); the counts come from the real stage rules on the tiny profile.
"""

from __future__ import annotations

import copy
import functools
import sys
from pathlib import Path

import pytest
import yaml

from edgeprune.bench import plan
from edgeprune.bench.plan.device_power import kept_models
from edgeprune.config import Params

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "lib" / "edgeprune" / "profiles" / "tiny.yaml"
FACTS = plan.ModelFacts(akperl_units=12, layers=40, groups=15)


def tiny_raw() -> dict:
    return yaml.safe_load(TINY.read_text())


@functools.cache
def tiny_sizes() -> plan.DataSizes:
    """The tiny profile's data sizes, read once (the tests vary no ``data`` key)."""
    return plan.dataset_sizes(Params.model_validate(tiny_raw()))


def context(raw: dict) -> plan.Context:
    params = Params.model_validate(raw)
    return plan.Context(params, tiny_sizes(), {m: FACTS for m in plan.stage_models(params)})


def stage(raw: dict, name: str) -> plan.StagePlan:
    return next(s for s in plan.plan_stages(context(raw)) if s.name == name)


def fake_costs(models: list[str], unit: float = 1e-3) -> plan.Costs:
    one = plan.ModelCosts(**{f: unit for f in plan.ModelCosts.__dataclass_fields__ if f != "facts"}, facts=FACTS)
    return plan.Costs({m: one for m in models}, item_s=2.0, decode_image_s=unit, read_image_s=unit, data_load_s=0.5,
                      measure_s=0.1, threads=1, load=0.0)  # fmt: skip


def test_stages_are_dvc_yamls_in_order():
    names = list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])
    assert list(plan.STAGES) == names
    assert [s.name for s in plan.plan_stages(context(tiny_raw()))] == names


def test_tiny_data_sizes():
    sizes = tiny_sizes()  # 40 images per class and split, a fifth of train held out for validation
    assert (sizes.train, sizes.val, sizes.test) == (320, 80, 400)


def test_dense_count_follows_epochs_models_and_seeds():
    raw = tiny_raw()
    base = stage(raw, "train_dense")
    sizes = context(raw).sizes
    steps_per_epoch = sizes.train // raw["train"]["batch_size"]
    assert base.total.train_images == raw["train"]["epochs"] * steps_per_epoch * raw["train"]["batch_size"]
    twice = copy.deepcopy(raw)
    twice["train"]["epochs"] *= 2
    assert stage(twice, "train_dense").total.train_images == 2 * base.total.train_images
    seeds = copy.deepcopy(raw)
    seeds["train"]["seeds"] = [0, 1]
    doubled = stage(seeds, "train_dense")
    assert doubled.items == 2 * base.items
    assert doubled.total.train_images == 2 * base.total.train_images
    assert doubled.total.eval_images == 2 * base.total.eval_images


@pytest.mark.parametrize("section", ["baselines", "qsa", "ppo"])
def test_method_recoveries_double_with_seeds(section):
    raw = tiny_raw()
    raw.setdefault(section, {})["seeds"] = [0]
    if section == "ppo":  # the sensitivity table is per dense model: test_ppo_sensitivity_table_is_counted_once
        raw["ppo"]["signal"] = "ptq"
    base = stage(raw, section).total
    raw[section]["seeds"] = [0, 1]
    twice = stage(raw, section).total
    sgd = ("recovery_images", "masked_images", "qat_images")
    assert base.recoveries > 0
    assert twice.recoveries == 2 * base.recoveries
    assert sum(getattr(twice, f) for f in sgd) == 2 * sum(getattr(base, f) for f in sgd)


def test_ppo_sensitivity_table_is_counted_once_per_dense_model():
    raw = tiny_raw()
    raw["ppo"].update(seeds=[0], signal="sensitivity", sensitivity={"steps": 3, "calibration": 2, "holdout": 5})
    p = Params.model_validate(raw).ppo
    base = stage(raw, "ppo").total
    raw["ppo"]["signal"] = "ptq"
    ptq = stage(raw, "ppo").total
    searches = 1 + len(p.controls)
    table = 1 + FACTS.layers * (len(p.bits) - 1) + FACTS.groups * (len(p.prune_rates) - 1)
    recovered = p.sensitivity.calibration + p.sensitivity.holdout + p.finalists * (1 + searches)  # static grid's too
    assert base.recoveries == ptq.recoveries + table + recovered
    raw["ppo"]["seeds"] = [0, 1]  # one dense model (seed 1 is not trained): still one table
    ptq_twice = stage(raw, "ppo").total
    raw["ppo"]["signal"] = "sensitivity"
    twice = stage(raw, "ppo").total
    assert twice.recoveries - base.recoveries == ptq_twice.recoveries - ptq.recoveries + p.finalists * searches
    assert base.qat_images > ptq.qat_images


def test_akperl_counts_follow_seeds_and_steps():
    raw = tiny_raw()
    raw["akperl"].update(seeds=[0], ablation_seeds=[0], stream_seeds=[0])  # ablations and stream stay on seed 0
    base = stage(raw, "akperl").total
    raw["akperl"]["seeds"] = [0, 1]
    twice = stage(raw, "akperl").total
    controls = len(Params.model_validate(raw).akperl.controls)
    per_seed = (3 + controls) * len(raw["finetune"]["budgets"])  # L1, magnitude, AKPERL's and each control's network
    assert twice.recoveries == base.recoveries + per_seed
    longer = copy.deepcopy(raw)
    longer["akperl"]["dqn"] = {"steps": 4 * 40, "learning_starts": 10}
    longer["akperl"]["grid_steps"] = 4 * 40
    assert stage(longer, "akperl").total.akperl_episodes > twice.akperl_episodes


def test_recovery_images_follow_the_budget_steps():
    raw = tiny_raw()
    base = stage(raw, "baselines").total
    longer = copy.deepcopy(raw)
    longer["finetune"]["budgets"] = [{"steps": 2 * b["steps"]} for b in raw["finetune"]["budgets"]]
    doubled = stage(longer, "baselines").total
    assert doubled.recoveries == base.recoveries
    assert doubled.recovery_steps == 2 * base.recovery_steps
    assert doubled.recovery_images + doubled.masked_images == 2 * (base.recovery_images + base.masked_images)


def test_prediction_is_counts_times_unit_costs():
    ctx = context(tiny_raw())
    dense = next(s for s in plan.plan_stages(ctx) if s.name == "train_dense")
    costs = fake_costs(list(ctx.facts))
    parts = plan.stage_seconds(dense, costs)
    assert parts["sgd"] == pytest.approx(dense.total.train_images * 1e-3)
    assert parts["start-up"] == dense.items * costs.item_s
    dearer = plan.Costs({m: plan.ModelCosts(**{**vars(c), "train_image_s": 2e-3}) for m, c in costs.models.items()},
                        **{k: v for k, v in vars(costs).items() if k != "models"})  # fmt: skip
    assert plan.stage_seconds(dense, dearer)["sgd"] == pytest.approx(2 * parts["sgd"])


def test_table_lists_every_stage(monkeypatch, capsys):
    def measure(params, sizes):
        return fake_costs(plan.stage_models(params)), sizes

    monkeypatch.setattr(plan, "measure_costs", measure)
    monkeypatch.setattr(plan, "host_has_meter", lambda: False)
    plan.main(["--params", str(TINY), "--compare"])
    out = capsys.readouterr().out
    rows = {line.split()[0] for line in out.splitlines() if line.strip()}
    for name in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]:
        assert name in rows, f"stage {name} missing from the table:\n{out}"
    assert "total" in rows
    assert "CPU prediction" in out
    assert "predicted / measured total" in out  # --compare: the quick run's stage times beside the prediction


def test_invalid_params_exit_2_naming_the_key(tmp_path, capsys):
    raw = tiny_raw()
    raw["train"]["epochs"] = -1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(SystemExit) as exit_:
        plan.main(["--params", str(bad)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "train.epochs" in err and str(bad) in err


def test_invalid_params_through_the_dispatcher(tmp_path, monkeypatch, capsys):
    """``python -m edgeprune.bench plan --params bad.yaml``: exit status 2, the message, no traceback."""
    from edgeprune.bench.__main__ import main as dispatch

    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text().replace("epochs: 2", "epochs: -1"))
    monkeypatch.setattr(sys, "argv", ["edgeprune.bench", "plan", "--params", str(bad)])
    with pytest.raises(SystemExit) as exit_:
        dispatch()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "train.epochs" in err and "Traceback" not in err


def test_device_power_times_every_kept_model_in_rounds():
    raw = tiny_raw()
    cfg = Params.model_validate(raw).device_power
    kept = sum(n for stages in kept_models(Params.model_validate(raw)).values() for n in stages.values())
    calls = cfg.host_rounds * (cfg.host_warmup + 3 * cfg.host_repeats)
    work = [w for name, w in stage(raw, "device_power").work.items() if name]
    assert sum(w.b1_calls for w in work) == kept * calls
    assert sum(w.int8_b1_calls for w in work) == (kept * calls if "int8" in cfg.precisions else 0)
    raw["device_power"]["host_rounds"] = 2 * cfg.host_rounds
    assert sum(w.b1_calls for w in stage(raw, "device_power").work.values()) == 2 * kept * calls
