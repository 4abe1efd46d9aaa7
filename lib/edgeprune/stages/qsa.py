"""Stage 40_qsa: QSA masks + KL threshold + int8, static baselines at equal compression, drift stream.

For one model and every seed of ``params.qsa.seeds``:

1. the dense network and its int8 copy (the "quantization only" ablation) are measured;
2. QSAs are trained along the λ path on the activations of ``calib_images`` training
   images; for each target compression the KL search picks (λ, τ); the pruned network
   is recovered with the shared protocol (:mod:`edgeprune.recover`) at every ``finetune``
   budget and measured with its int8 copy (the float columns are the "sparsity only"
   ablation, the int8 columns "both");
3. each static baseline is pruned to the same estimated compression as the QSA
   network, recovered and measured the same way;
4. on a non-stationary stream four networks run side by side: static, QSA without
   controller, QSA with controller, and the controller with static masks (the same
   re-prune cycle minus the QSA), each trigger logged.

The dense model of seed ``s`` is used when dense training ran that seed, else the
first dense seed (the quick profile trains one dense model and varies the cheaper
QSA stage over seeds: QSA initialisation, calibration, fine-tuning and stream).
Outputs: ``results/qsa/<model>/``, read back by :mod:`edgeprune.qsa.outputs`. Each finished seed
is checkpointed (``results/checkpoints/qsa/<model>/s<seed>.json``, the first seed's kept networks
beside it), so an interrupted stage re-runs only the seeds it had not finished
(:func:`edgeprune.checkpoints.resume`); every seed's outputs, fresh or resumed, are read back from
its checkpoint, so both give the same files.
"""

from __future__ import annotations

import copy
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from edgeprune import harness, prune, results
from edgeprune.checkpoints import dense_seed_for, fingerprint, load_dense, record_path, resume
from edgeprune.data import PreparedData, Split, apply_condition, load_prepared
from edgeprune.io import atomic_write, read_json, save_module, write_csv_atomic, write_json_atomic
from edgeprune.paths import ResultPaths
from edgeprune.qsa.controller import Deployment, DriftController, make_image_stream
from edgeprune.qsa.cycle import QSAPruner, QSASettings, recover_on_buffer
from edgeprune.qsa.masks import Compression, int8_size_estimate
from edgeprune.qsa.outputs import (
    STAGE, ablation, best_within, comparison, compression_figure, load, out_dir, setting, stream_figure,
)  # fmt: skip
from edgeprune.qsa.threshold import CompressionCurve, ThresholdSearch
from edgeprune.quant import quantize_int8
from edgeprune.recover.protocol import Recovery
from edgeprune.streams import hindsight_arms
from edgeprune.placement import resolve_device
from edgeprune.train import set_threads

if TYPE_CHECKING:
    from edgeprune.config import Params

# The read side (outputs, tables, figures) lives in edgeprune.qsa.outputs; re-exported for the notebook.
__all__ = [
    "bank_networks", "run",
    "ablation", "best_within", "comparison", "compression_figure", "load", "setting", "stream_figure",
]  # fmt: skip

TRIGGER_COLUMNS = [
    "seed", "arm", "batch", "condition", "reason", "signal", "reference", "seconds", "buffer_images", "labelled_images",
    "accepted",
]  # fmt: skip


TABLES = ("candidates", "stream", "triggers")
"""The per-seed tables a record holds beside its rows (``split``-oriented: columns and data)."""

FINGERPRINT_SECTIONS = ("qsa", "finetune", "shift", "data.split_seed", "train.eval_batch_size")
"""The params a QSA seed's record depends on (with the dense weights and the stage's code)."""


def kept_model_path(paths: ResultPaths, model_name: str, target: float) -> Path:
    """Where the first seed's recovered QSA network at ``target`` is kept beside the checkpoints."""
    return paths.stage_checkpoints(STAGE, model_name) / f"qsa-{setting(target)}.pt"


def _fingerprint(params: Params, paths: ResultPaths, model_name: str, dense_seed: int) -> str:
    return fingerprint(params, FINGERPRINT_SECTIONS, [paths.dense(model_name, dense_seed) / "model.pt"],
                       "edgeprune.stages.qsa")  # fmt: skip


def _record(ctx: _Context, seed: int, expected: str) -> dict[str, Any]:
    """The seed's record: resumed from its checkpoint, or run, checkpointed and read back."""
    path = record_path(ctx.paths, STAGE, ctx.model_name, seed)
    record = resume(path, expected)
    kept = [kept_model_path(ctx.paths, ctx.model_name, t) for t in ctx.params.qsa.compressions]
    if record is None or (seed == ctx.params.qsa.seeds[0] and not all(k.is_file() for k in kept)):
        outputs: dict[str, list] = {"rows": [], **{name: [] for name in TABLES}}
        summary = _run_seed(ctx, seed, outputs)
        tables = {name: pd.DataFrame(outputs[name]).to_dict(orient="split", index=False) for name in TABLES}
        write_json_atomic(path, {"fingerprint": expected, "summary": summary, "rows": outputs["rows"], "tables": tables})
        record = read_json(path)
    return record


def run(params: Params, paths: ResultPaths, model_name: str) -> dict[str, Any]:
    """Run (or resume) every seed; write rows.csv (the tidy table), candidates.csv, stream.csv, triggers.csv,
    summary.json and the first seed's kept networks."""
    if params.qsa is None:
        raise ValueError("params has no `qsa` section: the 40_qsa stage needs one")
    tic = time.perf_counter()
    set_threads(params.num_threads)
    data = load_prepared(paths.prepared)
    device = resolve_device(params.device)
    context = _Context(params, paths, model_name, data, device, Recovery(params.finetune, data.train, device=device))
    records = {}
    for seed in tqdm(params.qsa.seeds, desc=f"qsa {model_name}", mininterval=5):
        expected = _fingerprint(params, paths, model_name, dense_seed_for(params, seed))
        records[seed] = _record(context, seed, expected)
    out = out_dir(paths, model_name)
    rows_path = paths.method_rows(STAGE, model_name)
    rows_path.unlink(missing_ok=True)  # a re-run replaces the rows, never mixes with an old run's
    results.append_rows(rows_path, [row for record in records.values() for row in record["rows"]])
    for name in TABLES:
        frames = [pd.DataFrame(**r["tables"][name]) for r in records.values() if r["tables"][name]["data"]]
        empty = pd.DataFrame(columns=TRIGGER_COLUMNS if name == "triggers" else None)
        write_csv_atomic(pd.concat(frames, ignore_index=True) if frames else empty, out / f"{name}.csv")
    for target in params.qsa.compressions:  # kept for the device-power stage (first seed, as in 20_baselines)
        with atomic_write(out / "models" / f"qsa-{setting(target)}.pt") as tmp:
            shutil.copyfile(kept_model_path(paths, model_name, target), tmp)
    summary = {"seeds": {str(seed): record["summary"] for seed, record in records.items()},
               "stage_seconds": time.perf_counter() - tic}  # fmt: skip
    write_json_atomic(out / "summary.json", summary)
    return summary


@dataclass
class _Context:
    """What every seed shares: params, data, device, and the static baselines' compression curves."""

    params: Params
    paths: ResultPaths
    model_name: str
    data: PreparedData
    device: torch.device
    recovery: Recovery
    static_curves: dict[tuple[int, str], CompressionCurve] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.data.train.x.shape[1:])


def _run_seed(ctx: _Context, seed: int, outputs: dict[str, list]) -> dict[str, Any]:
    """One seed: dense + int8, the QSA search and rows per target, static rows, the stream."""
    params, q = ctx.params, ctx.params.qsa
    dense_seed = dense_seed_for(params, seed)
    dense = load_dense(ctx.paths, ctx.model_name, dense_seed)
    calib = ctx.data.train.subset(q.calib_images, seed=seed)
    test = ctx.data.test.subset(q.eval_images, seed=params.data.split_seed)
    measure_kwargs = {
        "model_name": ctx.model_name,
        "conditions": [c for c in params.shift.conditions if c != "clean"] if q.shift_accuracy else [],
        "severity": params.shift.severity,
        "latency": q.latency,
        "warmup": 3,
        "repeats": q.latency_repeats,
        "input_shape": ctx.input_shape,
        "eval_batch_size": params.train.eval_batch_size,
        "device": ctx.device,
    }

    def recovered(pruned: nn.Module, budget: int) -> nn.Module:
        """A copy of ``pruned`` through the shared recovery protocol at ``budget``."""
        return ctx.recovery.recover(copy.deepcopy(pruned), seed=seed, budget=budget, teacher=dense)

    def report(model: nn.Module, method: str, name: str, budget: int | None = None, **kw: Any) -> dict[str, Any]:
        row = harness.report(
            model, test.x, test.y, method=method, setting=name, seed=seed, calib_x=calib.x, **kw, **measure_kwargs
        )
        row["extra"] = {"dense_seed": dense_seed, **(row["extra"] or {})}
        if budget is not None:
            row |= ctx.recovery.columns(budget)
        outputs["rows"].append(row)
        return row

    # 1. dense and int8 ("quantization only")
    dense_row = report(dense, "none", "dense")
    fp32_bytes = dense_row["size_bytes"]
    compression = Compression(fp32_bytes, dense_row["int8_size_bytes"] / int8_size_estimate(dense))
    _add_compression(dense_row, fp32_bytes)

    # 2. QSAs along the λ path, the KL search and the QSA network per target
    start = time.perf_counter()
    pruner = QSAPruner(
        dense,
        q.layers,
        QSASettings(q.hidden_fraction, q.max_hidden, q.positions, q.steps, q.lr, q.round_to),
        input_shape=ctx.input_shape,
        seed=seed,
        device=ctx.device,
    )
    path = pruner.lambda_path(calib.x, q.lambdas)
    scores = {lam: qsas.importance() for lam, qsas in path.items()}
    search = ThresholdSearch(
        dense, calib.x, compression, ignored_layers=pruner.ignored, kl_layer=q.kl_layer, bins=q.kl_bins,
        round_to=q.round_to, input_shape=ctx.input_shape,
    )  # fmt: skip
    summary: dict[str, Any] = {
        "dense_seed": dense_seed,
        "dense_channels": _kept_channels(dense, pruner.layers),
        "qsa_bytes": {str(lam): qsas.stored_bytes() for lam, qsas in path.items()},
    }
    stream_networks: dict[str, nn.Module] = {}
    budgets = range(len(params.finetune.budgets))
    for target in q.compressions:
        chosen, evaluated = search.search(scores, target, candidates=q.candidates, step=q.candidate_step)
        outputs["candidates"] += [{"seed": seed, "target": target, "chosen": c == chosen, **c.row()} for c in evaluated]
        pruned, prune_report = search.curve(chosen.lam, scores[chosen.lam]).model(chosen.fraction)
        found = {
            "target": target, "lambda": chosen.lam, "tau": chosen.threshold, "fraction": chosen.fraction,
            "kl": chosen.kl, "compression_estimate": chosen.compression,
        }  # fmt: skip
        networks = [recovered(pruned, budget) for budget in budgets]  # the budget axis
        for budget, model in zip(budgets, networks):
            _add_compression(report(model, "qsa", setting(target), budget, pruning=prune_report, extra=found), fp32_bytes)
        model = networks[0]  # the primary budget's network serves the stream and the export
        if seed == q.seeds[0]:  # kept for the device-power stage; run() copies it into the stage's outputs
            save_module(model, kept_model_path(ctx.paths, ctx.model_name, target))
        summary[setting(target)] = {**found, "kept_channels": _kept_channels(model, pruner.layers)}
        streamed = target == q.controller.compression
        if streamed:
            pruner.deploy(path[chosen.lam], chosen.lam, chosen.fraction)
            stream_networks["qsa"] = model

        # 3. static baselines pruned to the QSA network's estimated compression. Their
        # curves depend on the dense weights only (and the first seed's int8 correction):
        # shared by the seeds of one dense model.
        for method in q.baselines:
            key = (dense_seed, method)
            if key not in ctx.static_curves:
                ctx.static_curves[key] = _static_curve(dense, method, compression, pruner.ignored, q.round_to, ctx.input_shape)
            curve = ctx.static_curves[key]
            sparsity = curve.smallest_fraction(chosen.compression)
            static, static_report = curve.model(sparsity)
            extra = {"target": target, "matched_compression_estimate": curve(sparsity)}
            networks = [recovered(static, budget) for budget in budgets]
            for budget, model in zip(budgets, networks):
                _add_compression(report(model, method, setting(target), budget, pruning=static_report, extra=extra), fp32_bytes)
            if streamed:
                stream_networks[method] = networks[0]
                stream_networks[f"{method}:pruned"] = static  # before recovery
    summary["search_seconds"] = time.perf_counter() - start

    # 4. the stream
    if q.stream_seeds is None or seed in q.stream_seeds:
        records, fired, summary["cycle_seconds"] = _stream(
            params, pruner, stream_networks, calib, ctx.data.test, seed, compression, ctx.recovery
        )
        outputs["stream"] += records
        outputs["triggers"] += fired
    return summary


def _add_compression(row: dict[str, Any], fp32_bytes: int) -> None:
    """The row's compression ratios: fp32 dense bytes over its fp32 and its int8 bytes."""
    row["extra"] |= {"compression_fp32": fp32_bytes / row["size_bytes"], "compression_int8": fp32_bytes / row["int8_size_bytes"]}


def _kept_channels(model: nn.Module, layers: list[str]) -> list[tuple[str, int]]:
    """(layer, output channels) in network order."""
    modules = dict(model.named_modules())
    return [(n, getattr(modules[n], "out_channels", getattr(modules[n], "out_features", 0))) for n in layers]


def _static_curve(
    dense: nn.Module,
    method: str,
    compression: Compression,
    ignored: list[str],
    round_to: int | None,
    input_shape: tuple[int, ...],
) -> CompressionCurve:
    """Compression of a static baseline as a function of its sparsity."""

    def pruned(sparsity: float) -> tuple[nn.Module, prune.PruneReport]:
        return prune.apply(dense, method, sparsity, ignored_layers=ignored, round_to=round_to, input_shape=input_shape)

    return CompressionCurve(pruned, compression.estimate)


def _stream(
    params: Params,
    pruner: QSAPruner,
    networks: dict[str, nn.Module],
    calib: Split,
    pool: Split,
    seed: int,
    compression: Compression,
    recovery: Recovery,
) -> tuple[list[dict], list[dict], float]:
    """Run the arms on one stream; returns per-batch records, triggers and one timed cycle.

    ``networks`` holds the deployed (BN-recalibrated, fine-tuned) "qsa" and static
    networks, and each static network's pruned copy before that ("<method>:pruned").
    Both controllers re-prune from the dense weights: the QSA one with regenerated
    masks, the static one with its fixed masks; both then recover with the shared
    protocol on the recent images only (:func:`~edgeprune.qsa.cycle.recover_on_buffer`)
    and re-quantize. Then the bank an oracle switcher chooses from (:func:`bank_networks`) runs the
    stream network by network, and :func:`edgeprune.streams.hindsight_arms` adds ``best_static``
    and ``oracle``.
    """
    c = params.qsa.controller
    calib_x = calib.x
    stream = make_image_stream(
        pool.x, pool.y, c.conditions, batches_per_condition=c.batches_per_condition, batch_size=c.batch_size,
        severity=params.shift.severity, seed=seed,
    )  # fmt: skip
    static_method = params.qsa.baselines[0] if params.qsa.baselines else None
    cycle = {"steps": c.retrain_steps, "compression": compression, "fine_tune_epochs": c.fine_tune_epochs, "recovery": recovery}
    start = time.perf_counter()
    pruner.cycle(calib_x, **cycle)  # one cycle on calibration data: the controller's overhead
    cycle_seconds = time.perf_counter() - start
    qsa_state = (pruner.qsas, pruner.lam, pruner.fraction)

    def static_cycle(pruned: nn.Module) -> Callable[[torch.Tensor, torch.Tensor | None], Deployment]:
        """The same cycle with the static masks fixed."""

        def reprune(x: torch.Tensor, y: torch.Tensor | None) -> Deployment:
            model = recover_on_buffer(recovery, copy.deepcopy(pruned), x, y, c.fine_tune_epochs, seed=seed, teacher=pruner.dense)
            return Deployment(quantize_int8(model, x), {"compression_estimate": compression.estimate(model)})

        return reprune

    int8 = {name: quantize_int8(networks[name], calib_x) for name in ("qsa", static_method) if name}  # first deployments
    arms = {"qsa": ("qsa", None), "qsa+controller": ("qsa", "qsa")}
    if static_method is not None:
        arms = {"static": (static_method, None), **arms, "static+controller": (static_method, "static")}
    records, fired = [], []
    for arm, (network, adapt) in arms.items():
        pruner.qsas, pruner.lam, pruner.fraction = qsa_state  # every QSA arm starts from the deployed QSAs
        reprune = None
        if adapt == "qsa":
            reprune = lambda x, y: pruner.cycle(x, y, **cycle)  # noqa: E731
        elif adapt == "static":
            reprune = static_cycle(networks[f"{network}:pruned"])
        controller = DriftController(Deployment(int8[network]), reprune, c)
        records += [{"seed": seed, "arm": arm, **r} for r in controller.run(stream)]
        fired += [{"seed": seed, "arm": arm, **t} for t in controller.triggers]
    if len({b.condition for b in stream}) > 1:  # what re-pruning for the condition could gain at best (issue 19)
        pruner.qsas, pruner.lam, pruner.fraction = qsa_state
        bank = bank_networks(pruner, int8["qsa"], calib, [b.condition for b in stream], params.shift.severity, seed, cycle)
        for name, model in bank.items():
            records += [{"seed": seed, "arm": name, **r} for r in DriftController(Deployment(model), None, c).run(stream)]
        records = hindsight_arms(pd.DataFrame(records), list(bank), arm="arm").to_dict("records")
        pruner.qsas, pruner.lam, pruner.fraction = qsa_state
    return records, fired, cycle_seconds


def bank_networks(
    pruner: QSAPruner, deployed: nn.Module, calib: Split, conditions: list[str], severity: int, seed: int,
    cycle: dict[str, Any],
) -> dict[str, nn.Module]:
    """The networks an oracle switcher may choose from: the deployed QSA network (``bank:qsa``) and, per
    condition of the stream, the controller's own re-prune cycle run ahead of time on the labelled
    calibration images under that condition (``bank:qsa@<condition>``): what re-pruning could give if
    the controller knew the condition before it arrived. Every cycle starts from the deployed QSAs."""
    start = (pruner.qsas, pruner.lam, pruner.fraction)
    bank = {"bank:qsa": deployed}
    for i, condition in enumerate(dict.fromkeys(conditions)):
        pruner.qsas, pruner.lam, pruner.fraction = start
        shifted = apply_condition(calib.x, condition, severity, seed=seed * 1000 + 500 + i)
        bank[f"bank:qsa@{condition}"] = pruner.cycle(shifted, calib.y, **cycle).model
    return bank
