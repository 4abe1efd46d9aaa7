"""edgeprune.train: learning happens, evaluation is right, resume reproduces an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import make_images
from edgeprune.data import Split, normalize
from edgeprune.models import create_model
from edgeprune.train import FitConfig, evaluate, fine_tune, fit, resolve_device, set_threads


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
        fine_tune(model, split.x, split.y, epochs=1, lr=0.05, batch_size=16, seed=seed)
        runs.append(model.state_dict()["0.weight"])
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="epochs"):
        FitConfig(epochs=0, lr=0.1)
    with pytest.raises(ValueError, match="schedule"):
        FitConfig(epochs=1, lr=0.1, schedule="step")
    with pytest.raises(ValueError, match="batch_size"):
        fit(small_net(), toy_split(2), FitConfig(epochs=1, lr=0.1, batch_size=64), progress=False)
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="num_threads"):
        set_threads(-1)
