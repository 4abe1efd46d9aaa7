"""Unit costs measured on this machine, and the seconds they give a stage's work."""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

from edgeprune.config import Params
from edgeprune.data import IMAGE_SUFFIXES
from edgeprune.paths import from_root
from edgeprune.bench.plan.work import (
    DECODE_SAMPLE, EVAL_BATCH, INT8_CALIB_BATCH, SMALL_BATCH, TRAIN_BATCH, DataSizes, ModelFacts, StagePlan, Work,
    stage_models,
)  # fmt: skip


# --------------------------------------------------------------------------- unit costs, measured here


@dataclass(frozen=True)
class ModelCosts:
    """Seconds per unit of :class:`Work` for one model, measured on this machine (see :func:`measure_model`)."""

    train_image_s: float  # an image of a dense SGD step as trained (params' layout, bf16)
    masked_image_s: float  # an image of an fp32 SGD step of the unpruned network in the recovery loop
    recovery_image_s: float  # an image of an SGD step of the network without 50 % of its channels (L1)
    qat_image_s: float  # an image of a quantization-aware SGD step (6-bit quantizers on every layer)
    eval_image_s: float  # an image of an fp32 forward pass (evaluation batch)
    int8_image_s: float  # an image of a real int8 forward pass
    histogram_image_s: float  # an image of a forward pass histogramming every layer's input
    fakequant_image_s: float  # an image of a fake-quantized forward pass (8 bits)
    b1_s: float  # one batch-1 fp32 forward call
    int8_b1_s: float  # one batch-1 int8 forward call
    prune_s: float  # one structural prune (L1 at 50 % of the channels)
    int8_convert_s: float  # one int8 conversion with one calibration batch
    int8_batch_s: float  # each further calibration batch of a conversion
    kl_bin_s: float  # one candidate bin of a KL threshold search (8 bits)
    weight_clip_s: float  # choosing every layer's weight clip ratios (ppo.weight_clip, 4 bits)
    akperl_episode_s: float  # one AKPERL episode's pruning, power and floor (accuracy excluded)
    qsa_step_s: float  # one Adam step of every layer's QSA at qsa.calib_images x positions samples
    facts: ModelFacts = ModelFacts()


@dataclass(frozen=True)
class Costs:
    """All unit costs: per model, per stage item, per JPEG; and how they were measured."""

    models: dict[str, ModelCosts]
    item_s: float  # one stage item's start-up: papermill and its kernel, nbconvert, DVC loading the pipeline
    decode_image_s: float
    read_image_s: float
    data_load_s: float = 0.0  # loading the prepared tensors, once per stage item that reads images
    measure_s: float = 0.0
    threads: int = 1
    load: float = float("nan")

    @property
    def facts(self) -> dict[str, ModelFacts]:
        return {m: c.facts for m, c in self.models.items()}


def seconds(work: Work, model: ModelCosts | None, costs: Costs) -> dict[str, float]:
    """Predicted seconds of ``work`` by part: SGD steps, forward passes, everything else."""
    other = (work.fixed_s + work.decoded_images * costs.decode_image_s + work.read_images * costs.read_image_s
             + work.data_loads * costs.data_load_s)  # fmt: skip
    if model is None:
        return {"sgd": 0.0, "forward": 0.0, "other": other}
    m = model
    sgd = (work.train_images * m.train_image_s + work.masked_images * m.masked_image_s
           + work.recovery_images * m.recovery_image_s + work.qat_images * m.qat_image_s)  # fmt: skip
    forward = (work.eval_images * m.eval_image_s + work.int8_images * m.int8_image_s
               + work.histogram_images * m.histogram_image_s + work.fakequant_images * m.fakequant_image_s
               + work.b1_calls * m.b1_s + work.int8_b1_calls * m.int8_b1_s)  # fmt: skip
    other += (work.prunes * m.prune_s + (work.int8_conversions + work.exports) * m.int8_convert_s
              + work.int8_extra_batches * m.int8_batch_s + work.kl_candidates * m.kl_bin_s
              + work.weight_clips * m.weight_clip_s
              + work.akperl_episodes * m.akperl_episode_s + work.qsa_steps * m.qsa_step_s)  # fmt: skip
    return {"sgd": sgd, "forward": forward, "other": other}


def stage_seconds(stage: StagePlan, costs: Costs) -> dict[str, float]:
    """Predicted seconds of one stage by part, start-up included."""
    parts = {"sgd": 0.0, "forward": 0.0, "other": 0.0, "start-up": stage.items * costs.item_s}
    for model, work in stage.work.items():
        for key, value in seconds(work, costs.models.get(model) if model else None, costs).items():
            parts[key] += value
    parts["total"] = sum(parts.values())
    return parts




def _timed(fn, *args, **kwargs) -> tuple[float, object]:
    tic = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - tic, out


def _step_seconds(model, x, y, config, repeat: int = 1) -> float:
    """Seconds per image of one SGD step by :func:`edgeprune.train.fit`, after one untimed warm-up step
    (oneDNN builds its primitives on the first call); the fastest of ``repeat`` timed steps."""
    from edgeprune.data import Split
    from edgeprune.train import fit

    batch = Split(x[: config.batch_size], y[: config.batch_size])
    fit(model, batch, config, progress=False)
    return min(_timed(fit, model, batch, config, progress=False)[0] for _ in range(repeat)) / config.batch_size


def measure_model(name: str, params: Params, sizes: DataSizes) -> ModelCosts:
    """Time each unit once on a freshly initialised ``name`` (weights do not change run time) with
    random images of the data's shape: a few seconds for a small model."""
    import torch

    from edgeprune import fakequant, prune
    from edgeprune.clipping import weight_clip_ratios
    from edgeprune.data import normalize
    from edgeprune.harness import measure_latency
    from edgeprune.models import create_model
    from edgeprune.ppo.pruning import taylor_groups
    from edgeprune.quant import quantize_int8
    from edgeprune.train import FitConfig, evaluate

    t = params.train
    torch.manual_seed(0)
    model = create_model(name)
    shape = sizes.image_shape
    n_eval = max(8, min(t.eval_batch_size, EVAL_BATCH))
    big = max(n_eval, min(t.batch_size, TRAIN_BATCH), 2 * INT8_CALIB_BATCH)
    x = torch.randint(0, 256, (big, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (big,), generator=torch.Generator().manual_seed(1))

    # SGD: the dense step as trained, at min(train.batch_size, TRAIN_BATCH); the recovery loop's steps
    # (fp32, channels-last, as edgeprune.recover runs them) at SMALL_BATCH, scaled by the dense step's
    # per-image cost between the two batches
    train_cfg = FitConfig(epochs=1, lr=0.01, batch_size=min(t.batch_size, TRAIN_BATCH), channels_last=t.channels_last,
                          bf16=name in t.bf16_models)  # fmt: skip
    small = min(SMALL_BATCH, train_cfg.batch_size)
    recover_cfg = FitConfig(epochs=1, lr=0.01, batch_size=small, schedule="cosine")
    as_recovery = train_cfg.channels_last and not train_cfg.bf16
    train_image_s = _step_seconds(model, x, y, train_cfg)
    if train_cfg.batch_size == small and as_recovery:
        dense_small_s = train_small_s = train_image_s
    else:  # the small steps are cheap: the faster of two, so that one slow step does not skew the ratios
        dense_small_s = _step_seconds(model, x, y, recover_cfg, repeat=2)
        train_small_s = dense_small_s if as_recovery else _step_seconds(model, x, y, replace(train_cfg, batch_size=small), 2)
    scale = train_image_s / train_small_s
    layers = fakequant.quantized_layers(model)
    prune_s, (pruned, _) = _timed(prune.apply, model.eval(), "l1_filter", 0.5, round_to=8)
    recovery_image_s = _step_seconds(pruned, x, y, recover_cfg, repeat=2) * scale
    qat_image_s = 0.0
    if params.ppo is not None and name in params.ppo.models and params.ppo.qat:
        # on the unpruned network: PPO's accuracy floor (within a point or two of dense before any
        # fine-tuning) keeps most channels, so its quantization-aware recoveries run near the dense shape
        qat_model = copy.deepcopy(model)
        bits = dict.fromkeys(layers, 6)
        acts = fakequant.calibrate(qat_model.eval(), normalize(x[:small]), bits)
        with fakequant.quantization_aware(qat_model, bits, acts):
            qat_image_s = _step_seconds(qat_model, x, y, recover_cfg, repeat=2) * scale

    # forward passes
    xe, ye = x[:n_eval], y[:n_eval]
    evaluate(model, xe, ye, batch_size=n_eval)
    eval_image_s = _timed(evaluate, model, xe, ye, batch_size=n_eval)[0] / n_eval
    b1_s = measure_latency(model, shape, 1, warmup=3, repeats=4)["median_ms"] / 1e3
    convert_s, int8_model = _timed(quantize_int8, model, x[:INT8_CALIB_BATCH])  # one calibration batch ...
    convert2_s, _ = _timed(quantize_int8, model, x[: 2 * INT8_CALIB_BATCH])  # ... and two: the cost of a further batch
    evaluate(int8_model, xe, ye, batch_size=n_eval)
    int8_image_s = _timed(evaluate, int8_model, xe, ye, batch_size=n_eval)[0] / n_eval
    int8_b1_s = measure_latency(int8_model, shape, 1, warmup=3, repeats=4)["median_ms"] / 1e3
    histogram_image_s = fakequant_image_s = kl_bin_s = weight_clip_s = 0.0
    groups = 0
    if params.ppo is not None and name in params.ppo.models:
        groups = len(taylor_groups(model, x[:8], y[:8], input_shape=shape))
        weight_clip_s = _timed(lambda: [weight_clip_ratios(m.weight, 4, params.ppo.weight_clip) for m in layers.values()])[0]
        bins = params.ppo.kl_bins
        hist_s, hists = _timed(fakequant.activation_histograms, model, normalize(xe), list(layers), bins=bins, batch_size=n_eval)
        kl_s, acts = _timed(lambda: {n: fakequant.threshold_from_histogram(*hists[n], 8) for n in layers})
        histogram_image_s, kl_bin_s = hist_s / n_eval, kl_s / (len(layers) * bins)
        with fakequant.simulated(model, dict.fromkeys(layers, 8), acts):
            fakequant_image_s = _timed(evaluate, model, xe, ye, batch_size=n_eval)[0] / n_eval

    # AKPERL: one episode's pruning at 25 % per unit (accuracy is priced as forward passes)
    akperl_episode_s, units = 0.0, 0
    if params.akperl is not None and name in params.akperl.models:
        akperl_episode_s, units = _akperl_episode(model, params, x)
    qsa_step_s = 0.0
    if params.qsa is not None and name in params.qsa.models:
        qsa_step_s = _qsa_step(model, params, x, sizes)
    return ModelCosts(
        train_image_s=train_image_s, masked_image_s=dense_small_s * scale, recovery_image_s=recovery_image_s,
        qat_image_s=qat_image_s,
        eval_image_s=eval_image_s, int8_image_s=int8_image_s, histogram_image_s=histogram_image_s,
        fakequant_image_s=fakequant_image_s, b1_s=b1_s, int8_b1_s=int8_b1_s, prune_s=prune_s,
        int8_convert_s=convert_s, int8_batch_s=max(convert2_s - convert_s, 0.0), kl_bin_s=kl_bin_s,
        weight_clip_s=weight_clip_s,
        akperl_episode_s=akperl_episode_s, qsa_step_s=qsa_step_s, facts=ModelFacts(units, len(layers), groups),
    )  # fmt: skip


def _akperl_episode(model, params: Params, x) -> tuple[float, int]:
    """Seconds of one AKPERL episode (dependency graph, every unit pruned 25 %, modelled power and the
    sparsity floor each step; the final accuracy on 16 images is negligible) and the number of units."""
    import torch

    from edgeprune.akperl.reward import RewardCoefficients, layer_weights
    from edgeprune.akperl.task import PruningTask
    from edgeprune.data import Split
    from edgeprune.envs.akperl import AkperlEnv

    a = params.akperl
    task = PruningTask.build(
        model.eval(), val=Split(x[:16], torch.zeros(16, dtype=torch.long)), calib_x=x[:16], stats_x=x[:32],
        conditions=["clean"], power_profile=a.power_profile, frame_rate_hz=a.frame_rate_hz,
        min_mac_share=a.min_mac_share, round_to=a.round_to,
    )  # fmt: skip
    coefficients = RewardCoefficients(1.0, 0.5, 0.1, a.lam, layer_weights(task.units, "mac_share"))
    floor = a.target_sparsity if a.enforce_target_sparsity else None
    env = AkperlEnv(task, coefficients, accuracy_every=10**9, stats_batch=16, min_sparsity=floor)
    task.dense_accuracy("clean")  # measured once per task in the stage: not part of an episode
    tic = time.perf_counter()
    env.reset(seed=0)
    done = False
    while not done:
        done = env.step(1)[2]
    return time.perf_counter() - tic, len(task.units)


def _qsa_step(model, params: Params, x, sizes: DataSizes) -> float:
    """Seconds of one Adam step over every layer's QSA at ``qsa.calib_images`` x ``positions`` samples
    (timed at up to 64 images' samples and scaled linearly)."""
    from edgeprune.qsa.autoencoder import fit_layer_qsas
    from edgeprune.qsa.cycle import QSAPruner, QSASettings

    q = params.qsa
    steps = 4
    pruner = QSAPruner(model.eval(), q.layers, QSASettings(q.hidden_fraction, q.max_hidden, q.positions, steps, q.lr, q.round_to),
                       input_shape=sizes.image_shape)  # fmt: skip
    n = min(q.calib_images, len(x), 64)
    samples = pruner.activations(x[:n])  # a forward pass: priced as evaluation images where the stage runs it
    seconds, _ = _timed(fit_layer_qsas, samples, lam=q.lambdas[0], hidden_fraction=q.hidden_fraction,
                        max_hidden=q.max_hidden, steps=steps, lr=q.lr)  # fmt: skip
    return seconds / steps * min(q.calib_images, sizes.train) / n


def _run_seconds(*args: str, cwd: Path | None = None) -> float:
    """Wall seconds of a command (``sys.executable`` with ``args``); a failure is an error naming it."""
    tic = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} failed while timing a stage's start-up: {done.stderr.strip()[-400:]}")
    return time.perf_counter() - tic


def measure_item_overhead() -> float:
    """Seconds one stage item spends outside its own work, timed on a one-cell notebook: papermill
    running it in a fresh ``python3`` kernel that imports what a stage notebook imports (torch,
    matplotlib, pandas, the stage modules), nbconvert exporting it to HTML, and DVC loading the
    pipeline (``Repo.index``, as ``dvc repro`` does before and around every stage)."""
    import json
    import tempfile

    from edgeprune.paths import repo_root

    imports = "import matplotlib.pyplot, pandas, torch\n" + "\n".join(
        f"import edgeprune.stages.{m}" for m in ("data", "dense", "baselines", "akperl", "qsa", "ppo", "device_power")
    )
    cells = [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "x = 0", "outputs": [], "execution_count": None},
             {"cell_type": "code", "metadata": {}, "source": imports, "outputs": [], "execution_count": None}]  # fmt: skip
    notebook = {"cells": cells, "nbformat": 4, "nbformat_minor": 5, "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}}}  # fmt: skip
    root = repo_root()
    with tempfile.TemporaryDirectory(prefix="edgeprune-plan-") as tmp:
        source, out = Path(tmp) / "probe.ipynb", Path(tmp) / "probe-out.ipynb"
        source.write_text(json.dumps(notebook))
        seconds = _run_seconds("-m", "papermill", str(source), str(out), "-k", "python3", "--log-level", "WARNING",
                               "-p", "x", "1", cwd=root)  # fmt: skip
        seconds += _run_seconds("-m", "nbconvert", "--to", "html", "--log-level", "WARN", str(out), cwd=root)
    seconds += _run_seconds("-c", "from dvc.repo import Repo; list(Repo('.').index.stages)", cwd=root)
    return seconds


def measure_decoding(params: Params, sizes: DataSizes) -> tuple[float, float, DataSizes]:
    """Seconds to read (CRC-checked) and to decode one archive member, from up to DECODE_SAMPLE
    members; also the decoded image shape. Without a zip archive: 0.2 ms to decode (estimate)."""
    import torch
    from torchvision.io import ImageReadMode, decode_image

    path = from_root(params.data.archive)
    if not (path.is_file() and zipfile.is_zipfile(path)):
        return 0.0, 2e-4, sizes
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.lower().endswith(IMAGE_SUFFIXES)]
        names = names[:: max(1, len(names) // DECODE_SAMPLE)][:DECODE_SAMPLE]  # spread over splits and classes
        read_s, blobs = _timed(lambda: [archive.read(n) for n in names])
    images = []
    decode_s, _ = _timed(lambda: [images.append(decode_image(torch.frombuffer(bytearray(b), dtype=torch.uint8),
                                                             ImageReadMode.RGB)) for b in blobs])  # fmt: skip
    side = params.data.image_size
    shape = (3, side, side) if side else tuple(images[0].shape) if images else sizes.image_shape
    sizes = DataSizes(sizes.train, sizes.val, sizes.test, shape, sizes.source)
    return read_s / max(1, len(names)), decode_s / max(1, len(names)), sizes


def measure_data_load(sizes: DataSizes) -> float:
    """Seconds to load ``results/data/prepared.pt`` (timed when a run has written it; else its size read
    at 1 GB/s, an estimate)."""
    import torch

    from edgeprune.paths import ResultPaths

    path = ResultPaths.at(from_root("results")).prepared
    if path.is_file():
        return _timed(torch.load, path, weights_only=True)[0]
    return sizes.decoded * math.prod(sizes.image_shape) / 1e9


def measure_costs(params: Params, sizes: DataSizes) -> tuple[Costs, DataSizes]:
    """Every unit cost on this machine, at the params' thread count, on the CPU."""
    from edgeprune.train import set_threads

    tic = time.perf_counter()
    threads = set_threads(params.num_threads)
    read_s, decode_s, sizes = measure_decoding(params, sizes)
    models = {}
    for name in stage_models(params):
        print(f"timing the unit costs of {name} ...", file=sys.stderr, flush=True)
        models[name] = measure_model(name, params, sizes)
    print("timing a stage's start-up (papermill, nbconvert, dvc) ...", file=sys.stderr, flush=True)
    item_s = measure_item_overhead()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    costs = Costs(models, item_s, decode_s, read_s, measure_data_load(sizes), time.perf_counter() - tic, threads, load)
    return costs, sizes


def host_has_meter() -> bool:
    """Whether the device_power stage will find a power meter here (it then meters every kept model)."""
    from edgeprune.power.meters import best_meter

    return best_meter("/sys", device_name="host")[0] is not None
