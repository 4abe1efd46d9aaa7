"""edgeprune.recover: the one recovery protocol (budgets, BN re-estimation, distillation, QAT) and its params."""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from small_nets import chain, fake_quantized, separable, train_briefly

from edgeprune import prune
from edgeprune.data import Split
from edgeprune.recover import protocol
from edgeprune.recover.params import Budget, FinetuneParams
from edgeprune.recover.protocol import Recovery, schedule
from edgeprune.train import evaluate, predict

LIB = Path(__file__).resolve().parents[1] / "lib" / "edgeprune"
SHAPE = (3, 8, 8)


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    return train_briefly(chain(), steps=40)


@pytest.fixture(scope="module")
def data() -> Split:
    return Split(*separable(1024, seed=7))


def recovery(data: Split, **kwargs) -> Recovery:
    options = {"budgets": [Budget(steps=2)], "batch_size": 32, "calib_images": 64, "lr": 0.05}
    return Recovery(FinetuneParams(**{**options, **kwargs}), data)


# --------------------------------------------------------------------------- budgets


def test_schedule_turns_a_budget_into_images_epochs_and_steps():
    assert schedule(Budget(steps=8), 50_000, 256) == protocol.Schedule(2048, 1.0, 8, 256)
    assert schedule(Budget(images=None, epochs=2.0), 45_000, 128) == protocol.Schedule(45_000, 2.0, 702, 128)
    assert schedule(Budget(images=1000, epochs=1.5), 45_000, 100) == protocol.Schedule(1000, 1.5, 15, 100)
    # a buffer smaller than a batch: the batch is clamped, the step count kept
    assert schedule(Budget(steps=4), 40, 256) == protocol.Schedule(40, 4.0, 4, 40)
    assert schedule(Budget(steps=4), 40, 256).label == "4 steps"


def test_more_steps_never_recover_less(trained, data):
    """On the separable-colour fixture, 3/4 of the channels cut, same seed: held-out loss falls and
    top-1 never drops from 1 to 4 to 16 steps (top-1 alone saturates on this easy task)."""
    pruned, _ = prune.apply(trained, "l1_filter", 0.75, input_shape=SHAPE)
    test = Split(*separable(512, seed=9))
    losses, top1 = [], []
    for steps in (1, 4, 16):
        model = recovery(data).recover(copy.deepcopy(pruned), seed=0, budget=Budget(steps=steps))
        logits = predict(model, test.x)
        losses.append(nn.functional.cross_entropy(logits, test.y).item())
        top1.append(evaluate(model, test.x, test.y))
    assert losses == sorted(losses, reverse=True) and losses[-1] < losses[0]
    assert top1 == sorted(top1)


def test_bn_is_reestimated_before_training_only_for_pruned_networks(trained, data, monkeypatch):
    seen = []

    def record(model, *args, **kwargs):  # the fine-tune, replaced by a look at where it starts
        seen.append(model[1].running_mean.clone())

    monkeypatch.setattr(protocol, "fit", record)
    rec = recovery(data)
    rec.recover(copy.deepcopy(trained), seed=0, pruned=False, bits={"0": 4})  # quantized only: dense statistics
    rec.recover(copy.deepcopy(trained), seed=0, pruned=True)
    torch.testing.assert_close(seen[0], trained[1].running_mean, rtol=0, atol=0)
    expected = prune.recalibrate_bn(copy.deepcopy(trained), rec.calib_x)[1].running_mean
    torch.testing.assert_close(seen[1], expected)


def test_no_budget_means_bn_reestimation_alone(trained, data):
    model = recovery(data).recover(copy.deepcopy(trained), seed=0, budget=None, calib_x=data.x[:64])
    torch.testing.assert_close(model[0].weight, trained[0].weight, rtol=0, atol=0)
    expected = prune.recalibrate_bn(copy.deepcopy(trained), data.x[:64])[1].running_var
    torch.testing.assert_close(model[1].running_var, expected)


def test_quantization_aware_only_below_eight_bits(trained, data, monkeypatch):
    hooked = []
    monkeypatch.setattr(protocol, "fit", lambda model, *a, **k: hooked.append(fake_quantized(model)))
    rec = recovery(data)
    for bits in ({"0": 8, "3": 8}, {"0": 4, "3": 8}, None):
        model = rec.recover(copy.deepcopy(trained), seed=0, bits=bits, pruned=True)
        assert not fake_quantized(model)  # quantizers removed after
    assert hooked == [False, True, False]


def test_a_network_that_lost_nothing_is_returned_untouched(trained, data, monkeypatch):
    monkeypatch.setattr(protocol, "fit", lambda *a, **k: pytest.fail("an unpruned 8-bit network was trained"))
    for bits in (None, {"0": 8, "3": 8}):
        model = recovery(data).recover(copy.deepcopy(trained), seed=0, pruned=False, bits=bits)
        for name, value in trained.state_dict().items():
            torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)


def test_force_recovers_a_network_that_lost_nothing_like_a_changed_one(trained, data, monkeypatch):
    hooked = []
    monkeypatch.setattr(protocol, "fit", lambda model, *a, **k: hooked.append(fake_quantized(model)))
    for bits in ({"0": 8, "3": 8}, None):
        recovery(data).recover(copy.deepcopy(trained), seed=0, pruned=False, bits=bits, force=True)
    assert hooked == [True, False]  # 8 bits everywhere: QAT, as the changes it is compared with; no bits: float


def test_teacher_is_distilled_from_only_with_a_distillation_weight(trained, data, monkeypatch):
    teachers = []
    monkeypatch.setattr(protocol, "fit", lambda model, *a, teacher=None, **k: teachers.append((teacher, a[1].distill_weight)))
    recovery(data).recover(copy.deepcopy(trained), seed=0, teacher=trained)
    recovery(data, distill_weight=0.5).recover(copy.deepcopy(trained), seed=0, teacher=trained)
    recovery(data, distill_weight=0.5).recover(copy.deepcopy(trained), seed=0)
    assert [w for _, w in teachers] == [0.0, 0.5, 0.0]


def test_same_seed_same_weights_other_seed_differs(trained, data):
    runs = [recovery(data).recover(copy.deepcopy(trained), seed=s).state_dict()["0.weight"] for s in (0, 0, 1)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


# --------------------------------------------------------------------------- params


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"budgets": []}, "budgets"),
        ({"budgets": [{"steps": 0}]}, "steps"),
        ({"budgets": [{"images": 1000, "epochs": -1}]}, "epochs"),
        ({"budgets": [{"steps": 4, "epochs": 1}]}, "either"),
        ({"budgets": [{"images": 1000}]}, "epochs"),
        ({"budgets": [{"images": 64, "epochs": 1}], "batch_size": 256}, "batch_size"),
        ({"distill_temperature": 0}, "distill_temperature"),
        ({"distill_weight": 1.5}, "distill_weight"),
        ({"distill_weight": -0.1}, "distill_weight"),
    ],
)
def test_bad_finetune_params_name_the_key(options, message):
    with pytest.raises(ValidationError, match=message):
        FinetuneParams(**options)


# --------------------------------------------------------------------------- one protocol


def _importers(module: str, name: str) -> set[str]:
    """Modules of lib/edgeprune that import ``name`` from ``module`` (or use ``module.name``)."""
    package, _, leaf = module.rpartition(".")
    found = set()
    for path in LIB.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            direct = isinstance(node, ast.ImportFrom) and node.module == module and name in {a.name for a in node.names}
            qualified = isinstance(node, ast.Attribute) and node.attr == name and getattr(node.value, "id", None) == leaf
            if direct or qualified:
                found.add(path.relative_to(LIB).as_posix())
    return found


def test_every_stage_recovers_through_the_one_protocol():
    # the training loop: dense training and the protocol; nothing else fine-tunes (the bench modules time a
    # step of it to predict run times, and produce no results)
    trainers = {path for path in _importers("edgeprune.train", "fit") if not path.startswith("bench/")}
    assert trainers == {"recover/protocol.py", "stages/dense.py"}
    assert not _importers("edgeprune.train", "fine_tune")
    # BatchNorm re-estimation outside the protocol only where a search scores candidates it does not train
    # (bench/runtime re-estimates a random network's statistics to time it: no result comes of it)
    assert {p for p in _importers("edgeprune.prune", "recalibrate_bn") if not p.startswith("bench/")} <= {
        "recover/protocol.py", "akperl/task.py", "ppo/search.py", "qsa/threshold.py",
    }  # fmt: skip
    for stage in ("baselines", "akperl", "qsa", "ppo"):
        helper = {"ppo": LIB / "ppo" / "retrain.py", "akperl": LIB / "akperl" / "networks.py"}.get(stage)
        source = (LIB / "stages" / f"{stage}.py").read_text() + (helper.read_text() if helper else "")
        assert ".recover(" in source or "retrain(" in source, stage


# --------------------------------------------------------------------------- network slimming's training


def _bn_scale_l1(model: nn.Module) -> float:
    return sum(float(m.weight.detach().abs().sum()) for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_sparsity_training_shrinks_the_batchnorm_scales_by_its_penalty(trained, data):
    """Same seed, budget and images: the L1 penalty on BN scales is the only difference, and it lowers
    their L1 norm, the more the larger the penalty; a negative penalty is refused."""
    rec = recovery(data)
    norms = [
        _bn_scale_l1(rec.sparsity_train(copy.deepcopy(trained), seed=0, budget=Budget(steps=16), penalty=penalty))
        for penalty in (0.0, 0.05, 0.2)
    ]
    assert norms[0] > norms[1] > norms[2]
    with pytest.raises(ValueError, match="penalty must be >= 0"):
        rec.sparsity_train(copy.deepcopy(trained), seed=0, budget=Budget(steps=1), penalty=-1.0)


def test_slimming_params_name_a_bad_penalty_or_budget():
    from edgeprune.config import SlimmingParams

    with pytest.raises(ValidationError, match="penalty"):
        SlimmingParams(penalty=-1e-3)
    with pytest.raises(ValidationError, match="budget"):
        SlimmingParams(budget={"steps": 0})
