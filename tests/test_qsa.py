"""QSA: sparse int8 autoencoders rank channels, KL picks the threshold, the controller re-prunes on drift."""

from __future__ import annotations

import math
import types

import pydantic
import pytest
import torch
from torch import nn

from edgeprune.data import Split
from edgeprune.measure import model_size
from edgeprune.prune import METHODS
from edgeprune.qsa.activations import activation_sites
from edgeprune.qsa.autoencoder import fit_qsa
from edgeprune.qsa.controller import Deployment, DriftController, ImageBatch, make_image_stream
from edgeprune.qsa.cycle import QSAPruner, QSASettings
from edgeprune.qsa.masks import Compression, ignored_for, threshold_of
from edgeprune.qsa.params import BASELINES, ControllerParams, QSAParams
from edgeprune.qsa.threshold import Candidate, CompressionCurve, ThresholdSearch, choose_threshold, histogram_kl
from edgeprune.recover.params import Budget, FinetuneParams
from edgeprune.recover.protocol import Recovery


SHAPE = (3, 8, 8)


def chain(dead: int = 0) -> nn.Sequential:
    """conv 3->8, BN, ReLU, conv 8->8, BN, ReLU, 1x1 classifier conv 8->3, pooled.

    The first ``dead`` channels of the first layer are always zero after its ReLU.
    """
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 3, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    ).eval()  # fmt: skip
    with torch.no_grad():
        model[0].weight[:dead] = 0
        model[1].bias[:dead] = -1.0
    return model


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, *SHAPE), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


# --------------------------------------------------------------------------- the autoencoder


def low_rank_data(n: int = 256) -> torch.Tensor:
    """Channels 0-3 mix three latent factors, 4-7 are faint noise, 8-11 are always zero."""
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(n, 12)
    x[:, :4] = torch.rand(n, 3, generator=g) @ torch.rand(3, 4, generator=g) * 2
    x[:, 4:8] = 0.05 * torch.rand(n, 4, generator=g)
    return x


def test_l1_term_drives_weights_to_zero_as_lambda_grows():
    x = low_rank_data()
    mean_abs, near_zero = [], []
    for lam in (0.0, 0.03, 0.3, 3.0):
        encoder, decoder = fit_qsa(x, lam=lam, hidden_fraction=0.5, steps=150).weights()
        w = torch.cat([encoder.flatten(), decoder.flatten()]).detach().abs()
        mean_abs.append(float(w.mean()))
        near_zero.append(float((w < 1e-3).float().mean()))
    assert all(a > b for a, b in zip(mean_abs, mean_abs[1:])), mean_abs
    assert all(a < b for a, b in zip(near_zero, near_zero[1:])), near_zero
    assert near_zero[0] < 0.05 and near_zero[-1] > 0.75


def test_importance_ranks_informative_channels_and_zeroes_dead_ones():
    qsa = fit_qsa(low_rank_data(), lam=0.3, hidden_fraction=0.5, steps=150)
    importance = qsa.channel_importance()[0]
    assert set(importance.argsort(descending=True)[:3].tolist()) <= {0, 1, 2, 3}
    assert importance[4:8].max() < importance[:4].max() / 10
    assert (importance[8:] == 0).all()  # always-zero channels are never read
    encoder = qsa.weights()[0].detach().flatten(0, 1)
    steps = encoder / qsa.encoder_fake_quant.scale.unsqueeze(1)  # one scale per code unit
    assert torch.allclose(steps, steps.round(), atol=1e-3) and steps.abs().max() <= 128  # int8 values


def test_negative_lambda_is_refused():
    with pytest.raises(ValueError, match="λ"):
        fit_qsa(low_rank_data(), lam=-0.1)
    with pytest.raises(pydantic.ValidationError, match="λ"):
        QSAParams(lambdas=[0.01, -1.0])


# --------------------------------------------------------------------------- the KL threshold


def test_histogram_kl_matches_the_gaussian_closed_form():
    g = torch.Generator().manual_seed(0)
    before = torch.randn(200_000, generator=g)
    after = torch.randn(200_000, generator=g) + 0.5
    assert histogram_kl(before, after, bins=128) == pytest.approx(0.5**2 / 2, abs=0.01)  # KL(N(0,1) || N(0.5,1))
    assert histogram_kl(before, before, bins=128) == pytest.approx(0.0, abs=1e-9)


def test_kl_search_returns_the_constrained_minimiser():
    """After pruning at τ the values shift by τ - 0.6: KL is least at τ = 0.6; compression is 1 + 10 τ."""
    g = torch.Generator().manual_seed(1)
    before = torch.randn(100_000, generator=g)
    candidates = [
        Candidate(0.0, tau, tau, 1 + 10 * tau, histogram_kl(before, torch.randn(100_000, generator=g) + tau - 0.6))
        for tau in [i / 10 for i in range(11)]
    ]
    assert choose_threshold(candidates, 4.0).threshold == pytest.approx(0.6)  # interior minimiser, feasible
    assert choose_threshold(candidates, 8.0).threshold == pytest.approx(0.7)  # the constraint binds
    with pytest.raises(ValueError, match="unreachable"):
        choose_threshold(candidates, 20.0)


def test_threshold_of_is_the_smallest_score_kept():
    scores = torch.tensor([2.0, 0.1, 1.0, 0.5])
    weights = torch.ones(4)
    assert threshold_of(scores, weights, 0.5) == 1.0  # 0.1 and 0.5 go, everything from 1.0 up stays
    assert threshold_of(scores, weights, 0.0) == pytest.approx(0.1)  # nothing goes
    assert threshold_of(scores, weights, 1.0) == math.inf


def test_compression_curve_finds_the_smallest_fraction_and_refuses_the_unreachable():
    def prune(fraction: float):
        if fraction > 0.6:
            raise ValueError("cannot lose that much")
        return fraction, None

    curve = CompressionCurve(prune, lambda fraction: 1 / (1 - fraction))  # the "model" is its fraction here
    fraction = curve.smallest_fraction(2.0)
    assert 0.5 <= fraction <= 0.51 and curve(fraction) >= 2.0
    with pytest.raises(ValueError, match="unreachable"):
        curve.smallest_fraction(4.0)  # needs 75% of the channels, only 60% can go


# --------------------------------------------------------------------------- masks on a network


class SharedReLU(nn.Module):
    """conv -> BN -> ReLU, conv -> BN, + skip, the same ReLU module again (as ResNets reuse it)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.conv2, self.bn2 = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + x)


def test_activation_sites_follow_the_norm_and_nonlinearity():
    model = chain()
    assert activation_sites(model, ["0", "3"], torch.randn(1, *SHAPE)) == {"0": "2", "3": "5"}
    shared = SharedReLU().eval()  # a module called twice would mix two activations: stop at the BN
    assert activation_sites(shared, ["conv1", "conv2"], torch.randn(1, *SHAPE)) == {"conv1": "bn1", "conv2": "bn2"}
    with pytest.raises(KeyError, match="nope"):
        activation_sites(model, ["nope"], torch.randn(1, *SHAPE))


def test_qsa_masks_physically_remove_the_dead_channels():
    model = chain(dead=4)
    pruner = QSAPruner(model, None, QSASettings(steps=60), input_shape=SHAPE)
    qsas = pruner.lambda_path(images(64), [0.01])[0.01]
    assert (qsas.importance()["0"][:4] == 0).all()
    pruned, report = pruner.prune(qsas, 0.25)  # 4 of the 16 prunable channels
    assert [m.out_channels for m in pruned.modules() if isinstance(m, nn.Conv2d)] == [4, 8, 3]
    assert torch.equal(pruned[0].weight, model[0].weight[4:])  # the live filters survive, physically
    assert model[0].out_channels == 8  # the dense model is untouched
    x = torch.randn(2, *SHAPE)
    assert pruned(x).shape == (2, 3)
    assert torch.allclose(pruned(x), model(x), atol=1e-5)  # dead channels contributed nothing
    assert report.method == "qsa" and report.realised == 0.25 and report.params_after < report.params_before


def test_bad_layer_names_and_unreachable_targets_are_refused():
    model = chain()
    with pytest.raises(KeyError, match="nope"):
        QSAPruner(model, ["0", "nope"], QSASettings(), input_shape=SHAPE)
    with pytest.raises(ValueError, match="classifier"):
        ignored_for(model, ["0", "6"], SHAPE)
    with pytest.raises(KeyError, match="nope"):
        ThresholdSearch(model, images(16), Compression(1000), ignored_layers=["6"], kl_layer="nope", input_shape=SHAPE)
    pruner = QSAPruner(model, None, QSASettings(steps=20), input_shape=SHAPE)
    scores = {0.01: pruner.fit(images(32), 0.01).importance()}
    search = ThresholdSearch(model, images(32), Compression(4000), ignored_layers=pruner.ignored, input_shape=SHAPE)
    with pytest.raises(ValueError, match="unreachable"):
        search.search(scores, 1000.0)


def test_search_and_cycle_give_a_smaller_int8_network():
    model = chain()
    x = images(64)
    pruner = QSAPruner(model, None, QSASettings(steps=30), input_shape=SHAPE)
    path = pruner.lambda_path(x, [0.01, 0.1])
    fp32 = Compression(model_size(model).total_bytes)
    search = ThresholdSearch(model, x, fp32, ignored_layers=pruner.ignored, input_shape=SHAPE)
    chosen, evaluated = search.search({lam: q.importance() for lam, q in path.items()}, 6.0, candidates=2, step=0.1)
    assert len(evaluated) == 4 and chosen in evaluated  # two thresholds for each of two λ
    assert chosen.compression >= 6.0 and chosen.kl == min(c.kl for c in evaluated if c.compression >= 6.0)
    pruner.deploy(path[chosen.lam], chosen.lam, chosen.fraction)
    unlabelled = Split(x, torch.zeros(len(x), dtype=torch.long))  # the cycle recovers on its buffer, not this split
    recovery = Recovery(FinetuneParams(budgets=[Budget(steps=1)], batch_size=16, calib_images=16), unlabelled)
    deployment = pruner.cycle(images(32, seed=1), steps=10, recovery=recovery)
    assert deployment.model(torch.randn(2, *SHAPE)).shape == (2, 3)
    assert deployment.info["channels_removed"] > 0 and deployment.info["int8_seconds"] > 0


# --------------------------------------------------------------------------- the controller


class ColourNet(nn.Module):
    """Predicts the brightest colour channel (rolled by ``shift``); confident on saturated images, unsure on grey ones."""

    def __init__(self, scale: float = 5.0, shift: int = 0) -> None:
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x.mean((2, 3)).roll(self.shift, 1)


def batch(index: int, kind: str, n: int = 30) -> ImageBatch:
    """``clean``: class k is bright in channel k; ``swapped``: labels shifted; ``grey``: the dataset mean colour."""
    y = torch.arange(n) % 3
    x = torch.full((n, *SHAPE), 40, dtype=torch.uint8)
    x[torch.arange(n), y] = 220
    if kind == "grey":  # normalised to ~0 in every channel: flat logits, maximal entropy
        x = torch.tensor([125, 123, 114], dtype=torch.uint8).view(1, 3, 1, 1).expand(n, *SHAPE).clone()
    if kind == "swapped":
        y = (y + 1) % 3
    return ImageBatch(index, kind, x, y)


def run(kinds: list[str], candidate: nn.Module | None = None, **config) -> tuple[DriftController, list[tuple]]:
    calls = []

    def reprune(x: torch.Tensor, y: torch.Tensor | None) -> Deployment:
        calls.append((len(x), None if y is None else len(y)))
        return Deployment(candidate or ColourNet(), {"call": len(calls)})

    settings = {"window": 2, "cooldown": 1, "buffer_batches": 2, "label_delay": 1, "timer": None, "accept": "always"}
    settings |= {"accuracy_drop": 20.0, "entropy_rise": 0.3}
    controller = DriftController(Deployment(ColourNet()), reprune, ControllerParams(**{**settings, **config}))
    controller.run([batch(i, kind) for i, kind in enumerate(kinds)])
    return controller, calls


@pytest.mark.parametrize("monitor, drift", [("labels", "swapped"), ("entropy", "grey")])
def test_controller_fires_on_drift_and_not_on_a_stationary_stream(monitor, drift):
    quiet, calls = run(["clean"] * 12, monitor=monitor)
    assert quiet.triggers == [] and calls == []
    assert min(r["top1"] for r in quiet.records) == 100.0
    drifting, calls = run(["clean"] * 6 + [drift] * 6, monitor=monitor)
    assert len(drifting.triggers) == 1  # after re-pruning, the drifted level is the new normal
    trigger = drifting.triggers[0]
    assert 6 <= trigger["batch"] <= 6 + 2 + (monitor == "labels")  # within window (+ label delay) of the drift
    assert trigger["reason"] == ("accuracy" if monitor == "labels" else "entropy")
    assert trigger["call"] == 1 and trigger["seconds"] >= 0
    # the QSA is retrained on the last two batches; labels only for those that have arrived
    assert calls == [(60, 30 if monitor == "labels" else None)]
    assert [r["deployment"] for r in drifting.records][trigger["batch"] + 1] == 1


def test_timer_fires_on_schedule():
    controller, _ = run(["clean"] * 9, timer=3, cooldown=0)
    assert [t["batch"] for t in controller.triggers] == [2, 5, 8]
    assert {t["reason"] for t in controller.triggers} == {"timer"}


@pytest.mark.parametrize(
    "monitor, candidate, judge, accepted",
    [
        ("labels", ColourNet(shift=1), "top1", False),  # wrong on every image of the held-out batch
        ("labels", ColourNet(scale=50.0), "top1", True),  # as accurate: ties go to the new network
        ("entropy", ColourNet(scale=0.5), "entropy", False),  # flatter logits: higher entropy on the buffer
        ("entropy", ColourNet(scale=50.0), "entropy", True),
    ],
)
def test_gate_deploys_only_a_candidate_at_least_as_good(monitor, candidate, judge, accepted):
    controller, calls = run(["clean"] * 4, candidate, monitor=monitor, timer=3, cooldown=0, buffer_batches=3, accept="better")
    (trigger,) = controller.triggers
    assert trigger["batch"] == 2 and trigger["judge"] == judge and trigger["accepted"] is accepted
    if judge == "top1":
        assert (trigger["score_deployed"], trigger["score_candidate"]) == (100.0, 100.0 if accepted else 0.0)
        assert calls == [(90, 30)]  # batches 0-1 labelled by batch 2; batch 1 held out of fine-tuning to judge
    else:
        assert (trigger["score_candidate"] < trigger["score_deployed"]) is accepted and calls == [(90, None)]
    assert (controller.deployment.model is candidate) is accepted
    assert controller.records[3]["deployment"] == int(accepted)


def test_stream_needs_conditions_and_enough_images():
    x, y = images(40), torch.zeros(40, dtype=torch.long)
    with pytest.raises(ValueError, match="at least one condition"):
        make_image_stream(x, y, [], batches_per_condition=1, batch_size=4)
    with pytest.raises(ValueError, match="needs 60 images"):
        make_image_stream(x, y, ["clean", "noise", "blur"], batches_per_condition=2, batch_size=10)
    stream = make_image_stream(x, y, ["clean", "noise"], batches_per_condition=2, batch_size=10)
    assert [b.condition for b in stream] == ["clean", "clean", "noise", "noise"]
    assert [b.index for b in stream] == [0, 1, 2, 3]
    with pytest.raises(pydantic.ValidationError, match="at least 1 item"):
        ControllerParams(conditions=[])


def test_params_agree_with_the_library_and_check_the_stream_target():
    assert set(BASELINES) <= set(METHODS)
    with pytest.raises(pydantic.ValidationError, match="controller.compression"):
        QSAParams(compressions=[4.0], controller=ControllerParams(compression=8.0))
    with pytest.raises(pydantic.ValidationError, match="unknown condition"):
        ControllerParams(conditions=["clean", "fog"])


def test_the_stage_resumes_finished_seeds_and_writes_the_same_files(tmp_path, monkeypatch):
    """Seeds are checkpointed: a second run with the same params, weights and code re-runs none and writes
    byte-identical outputs; new params re-run every seed; a missing kept network re-runs the first seed."""
    from edgeprune.config import load_params
    from edgeprune.io import save_module
    from edgeprune.paths import ResultPaths, repo_root
    from edgeprune.stages import qsa as stage

    params = load_params(repo_root() / "lib/edgeprune/profiles/tiny.yaml")
    paths = ResultPaths.at(tmp_path / "results")
    for seed in params.train.seeds:
        paths.dense("mobilenet_v3_small", seed).mkdir(parents=True)
        (paths.dense("mobilenet_v3_small", seed) / "model.pt").write_bytes(b"weights")
    ran: list[int] = []

    def fake_seed(ctx, seed, outputs):  # what _run_seed leaves: rows, tables, the first seed's kept networks
        ran.append(seed)
        outputs["rows"].append({"model": "mobilenet_v3_small", "method": "qsa", "setting": "c8x", "seed": seed,
                                "top1": 0.1 * seed + 1 / 3, "extra": {"target": 8.0, "kept": (3, 4)}})  # fmt: skip
        outputs["candidates"].append({"seed": seed, "target": 8.0, "kl": float(torch.tensor(0.1, dtype=torch.float32))})
        outputs["stream"] += [{"seed": seed, "arm": "qsa", "top1": 50.0 + seed}] if seed else []
        if seed == ctx.params.qsa.seeds[0]:
            for target in ctx.params.qsa.compressions:
                save_module(nn.Linear(2, 2), stage.kept_model_path(ctx.paths, ctx.model_name, target))
        return {"search_seconds": 1.0}

    monkeypatch.setattr(stage, "_run_seed", fake_seed)
    monkeypatch.setattr(stage, "load_prepared", lambda path: types.SimpleNamespace(train=None))
    monkeypatch.setattr(stage, "Recovery", lambda *a, **k: None)
    out = paths.root / "qsa" / "mobilenet_v3_small"
    files = ["rows.csv", "candidates.csv", "stream.csv", "triggers.csv"]

    stage.run(params, paths, "mobilenet_v3_small")
    assert ran == params.qsa.seeds
    first = {f: (out / f).read_bytes() for f in files}
    assert {f"qsa-{stage.setting(t)}.pt" for t in params.qsa.compressions} <= {p.name for p in (out / "models").iterdir()}
    stage.run(params, paths, "mobilenet_v3_small")
    assert ran == params.qsa.seeds  # nothing re-ran
    assert {f: (out / f).read_bytes() for f in files} == first
    stage.kept_model_path(paths, "mobilenet_v3_small", params.qsa.compressions[0]).unlink()
    stage.run(params, paths, "mobilenet_v3_small")
    assert ran == [*params.qsa.seeds, params.qsa.seeds[0]]  # only the seed that keeps networks
    changed = params.model_copy(update={"qsa": params.qsa.model_copy(update={"candidates": params.qsa.candidates + 1})})
    stage.run(changed, paths, "mobilenet_v3_small")
    assert ran[-len(params.qsa.seeds):] == params.qsa.seeds  # other params: every seed again
