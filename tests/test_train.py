"""edgeprune.train: learning happens, evaluation is right, resume reproduces an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import make_images
from edgeprune.data import Split, normalize
from edgeprune.models import create_model
from edgeprune.train import FitConfig, distillation_loss, evaluate, fit, set_threads


def toy_split(n_per_class: int = 32) -> Split:
    x = torch.cat([make_images(n_per_class, 16, seed=c, label=c) for c in range(4)])
    y = torch.arange(4).repeat_interleave(n_per_class)
    return Split(x, y)


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )


def test_training_lowers_the_loss_and_learns() -> None:
    split = toy_split()
    model = small_net()
    result = fit(model, split, FitConfig(epochs=6, lr=0.1, batch_size=16, label_smoothing=0.0), progress=False)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.6 * losses[0]
    assert evaluate(model, split.x, split.y) > 90.0


def test_few_steps_on_a_fixed_batch_lower_the_loss_of_a_real_model() -> None:
    split = toy_split(4)  # one batch of 16 images
    model = create_model("resnet20", num_classes=4)
    loss = nn.CrossEntropyLoss()

    def batch_loss() -> float:  # train-mode BN: the loss the optimiser sees, without augmentation
        model.train()
        with torch.no_grad():
            return loss(model(normalize(split.x).contiguous(memory_format=torch.channels_last)), split.y).item()

    before = batch_loss()
    fit(model, split, FitConfig(epochs=6, lr=0.05, batch_size=16, schedule="cosine", label_smoothing=0.0), progress=False)
    assert batch_loss() < 0.8 * before


def test_evaluate_counts_correct_predictions() -> None:
    class Oracle(nn.Module):  # predicts class 0 for dark images, 1 for bright ones
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            bright = x.mean(dim=(1, 2, 3)) > 0
            return torch.stack([(~bright).float(), bright.float()], 1)

    x = torch.cat([torch.zeros(3, 3, 4, 4), torch.full((5, 3, 4, 4), 255.0)]).to(torch.uint8)
    y = torch.tensor([0, 0, 0, 1, 1, 1, 1, 0])
    assert evaluate(Oracle(), x, y, batch_size=3) == pytest.approx(100 * 7 / 8)
    with pytest.raises(ValueError, match="labels"):
        evaluate(Oracle(), x, y[:3])


class Interrupt(Exception):
    pass


def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    split = toy_split(16)
    config = FitConfig(epochs=3, lr=0.05, batch_size=16, rewind_epoch=1, seed=5)
    reference = small_net()
    ref = fit(reference, split, config, progress=False)

    def stop_after_two(epoch: int, record: dict) -> None:
        if epoch == 2:
            raise Interrupt

    checkpoint = tmp_path / "ckpt.pt"
    model = small_net()
    with pytest.raises(Interrupt):
        fit(model, split, config, checkpoint=checkpoint, on_epoch=stop_after_two, progress=False)
    resumed_model = small_net()  # a fresh process would rebuild the model from scratch
    logged = []
    resumed = fit(resumed_model, split, config, checkpoint=checkpoint, progress=False,
                  on_epoch=lambda epoch, record: logged.append((epoch, record["train_loss"])))  # fmt: skip
    assert resumed.resumed_from_epoch == 2
    # the callback saw the restored epochs, then the new one: a log it writes covers the whole run
    assert [e for e, _ in logged] == [1, 2, 3]
    assert [loss for _, loss in logged] == [h["train_loss"] for h in resumed.history]
    assert [h["train_loss"] for h in resumed.history] == pytest.approx([h["train_loss"] for h in ref.history])
    for a, b in zip(reference.state_dict().values(), resumed_model.state_dict().values()):
        assert torch.equal(a, b)
    for key, value in ref.rewind_state.items():
        assert torch.equal(value, resumed.rewind_state[key])


def test_checkpoint_of_another_config_is_not_resumed(tmp_path: Path) -> None:
    split = toy_split(8)
    checkpoint = tmp_path / "ckpt.pt"
    fit(small_net(), split, FitConfig(epochs=1, lr=0.05, batch_size=16), checkpoint=checkpoint, progress=False)
    result = fit(small_net(), split, FitConfig(epochs=2, lr=0.05, batch_size=16), checkpoint=checkpoint, progress=False)
    assert result.resumed_from_epoch == 0 and len(result.history) == 2


def test_rewind_state_holds_early_weights() -> None:
    split = toy_split(8)
    model = small_net()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    result = fit(model, split, FitConfig(epochs=2, lr=0.05, batch_size=16, rewind_epoch=0), progress=False)
    assert all(torch.equal(initial[k], v) for k, v in result.rewind_state.items())
    assert not torch.equal(initial["0.weight"], model.state_dict()["0.weight"])


def test_same_seed_same_weights_other_seed_differs() -> None:
    split = toy_split(8)
    runs = []
    for seed in (0, 0, 1):
        model = small_net()
        fit(model, split, FitConfig(epochs=1, lr=0.05, batch_size=16, schedule="cosine", seed=seed), progress=False)
        runs.append(model.state_dict()["0.weight"])
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_distillation_loss_equals_a_hand_computation() -> None:
    student = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 1.0]])
    teacher = torch.tensor([[1.0, 1.0, -2.0], [0.0, 2.0, 0.0]])
    labels = torch.tensor([0, 2])
    t, w = 2.0, 0.75
    # by hand: soft targets p = softmax(teacher / T), student log-probabilities log q = log_softmax(student / T)
    p = torch.exp(teacher / t) / torch.exp(teacher / t).sum(1, keepdim=True)
    log_q = student / t - torch.log(torch.exp(student / t).sum(1, keepdim=True))
    kl = (p * (torch.log(p) - log_q)).sum(1).mean()
    log_probs = student - torch.log(torch.exp(student).sum(1, keepdim=True))
    ce = -log_probs[torch.arange(2), labels].mean()
    expected = (1 - w) * ce + w * t**2 * kl
    got = distillation_loss(student, teacher, labels, temperature=t, weight=w)
    torch.testing.assert_close(got, expected)
    assert distillation_loss(student, teacher, labels, temperature=t, weight=0.0) == pytest.approx(ce.item())


def test_distillation_pulls_the_student_toward_the_teacher() -> None:
    split = toy_split(16)
    teacher = small_net()
    fit(teacher, split, FitConfig(epochs=4, lr=0.05, batch_size=16), progress=False)
    x = normalize(split.x)
    gaps = {}
    for weight in (0.0, 1.0):
        student = small_net()
        torch.manual_seed(1)  # another start than the teacher's, so only the loss can bring them together
        for p in student.parameters():
            nn.init.normal_(p, std=0.1)
        config = FitConfig(epochs=20, lr=0.2, batch_size=16, schedule="cosine", distill_weight=weight,
                           distill_temperature=1.0, label_smoothing=0.0)  # T = 1: the loss is the KL measured below
        fit(student, split, config, progress=False, teacher=teacher)
        with torch.no_grad():
            gaps[weight] = nn.functional.kl_div(
                student(x).log_softmax(1), teacher(x).log_softmax(1), log_target=True, reduction="batchmean"
            ).item()
    assert gaps[1.0] < 0.1 * gaps[0.0]  # cross-entropy alone drives the student to confident one-hot logits


def test_plain_training_keeps_its_checkpoint_fingerprint() -> None:
    """Distillation settings enter the fingerprint only when distillation is on (old checkpoints stay resumable)."""
    plain = FitConfig(epochs=2, lr=0.1)
    assert plain.fingerprint() == FitConfig(epochs=2, lr=0.1, distill_temperature=8.0).fingerprint()
    assert plain.fingerprint() != FitConfig(epochs=2, lr=0.1, distill_weight=0.5).fingerprint()


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="epochs"):
        FitConfig(epochs=0, lr=0.1)
    with pytest.raises(ValueError, match="schedule"):
        FitConfig(epochs=1, lr=0.1, schedule="step")
    with pytest.raises(ValueError, match="distill_weight"):
        FitConfig(epochs=1, lr=0.1, distill_weight=2.0)
    with pytest.raises(ValueError, match="distill_temperature"):
        FitConfig(epochs=1, lr=0.1, distill_temperature=0.0)
    with pytest.raises(ValueError, match="batch_size"):
        fit(small_net(), toy_split(2), FitConfig(epochs=1, lr=0.1, batch_size=64), progress=False)
    with pytest.raises(ValueError, match="num_threads"):
        set_threads(-1)


def test_zero_threads_shares_the_cores_among_the_queue_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeprune.train import WORKERS_ENV, default_threads

    monkeypatch.setattr("os.cpu_count", lambda: 8)
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    assert default_threads() == 8
    monkeypatch.setenv(WORKERS_ENV, "2")
    assert default_threads() == 4
    monkeypatch.setenv(WORKERS_ENV, "16")
    assert default_threads() == 1  # more workers than cores: one thread each
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(WORKERS_ENV, bad)
        with pytest.raises(ValueError, match=f"EDGEPRUNE_WORKERS must be a whole number >= 1.*{bad!r}"):
            default_threads()
