"""The device_power stage's work (60_device_power): the kept models timed, metered and exported on the host."""

from __future__ import annotations

from edgeprune.config import Params
from edgeprune.bench.plan.rules import int8_copy
from edgeprune.bench.plan.work import Context, StagePlan, Work

__all__ = ["device_power_stage", "kept_models"]


def kept_models(params: Params) -> dict[str, dict[str, int]]:
    """Models each method stage keeps for the devices, per model: {model: {stage: count}}."""
    kept: dict[str, dict[str, int]] = {}
    cfg = params.device_power
    stages = cfg.stages if cfg is not None else []
    for stage in stages:
        section = getattr(params, stage, None)
        if section is None:
            continue
        models = getattr(section, "models", None) or params.train.models
        n = {"baselines": 1 + len(getattr(section, "methods", [])) * len(getattr(section, "sparsities", [])),
             "qsa": len(getattr(section, "compressions", [])), "akperl": 1, "ppo": 1}.get(stage, 0)  # fmt: skip
        for model in models:
            kept.setdefault(model, {})[stage] = n
    return kept


def device_power_stage(ctx: Context) -> StagePlan:
    """60_device_power, one item (``edgeprune.stages.device_power.run``).

    Every kept model is loaded and modelled on every profile (cheap), its host latency taken from
    its method stage's table where that measured it (baselines always, int8 with
    ``baselines.int8``; AKPERL fp32 only; QSA and PPO with their ``latency``), else timed here
    (``host_warmup`` + 3 x ``host_repeats`` batch-1 calls, after an int8 conversion for int8), metered
    for ``host_energy_seconds`` per precision where the host has a meter, and exported with
    ``export`` (fp32 and int8-qnnpack files: one conversion, two exports).
    """
    p, cfg = ctx.params, ctx.params.device_power
    if cfg is None:
        return StagePlan("device_power", 1, "no device_power section", {})
    host = [x for x in ("fp32", "int8") if x in cfg.precisions] if cfg.host_profile else []
    in_table = {  # (stage) -> precisions whose batch-1 latency the method stage's table holds
        "baselines": {"fp32", *(["int8"] if p.baselines is not None and p.baselines.int8 else [])},
        "akperl": {"fp32"},
        "qsa": {"fp32", "int8"} if p.qsa is not None and p.qsa.latency else set(),
        "ppo": ({"fp32", *(["int8"] if p.ppo.int8 else [])} if p.ppo is not None and p.ppo.latency else set()),
    }
    work, n_kept, timed = {"": Work(data_loads=1)}, 0, 0  # the calibration images come from the prepared tensors
    for model, stages in kept_models(p).items():
        w = Work()
        for stage, n in stages.items():
            n_kept += n
            for precision in host:
                if precision not in in_table.get(stage, set()):  # timed here: warm-up, then timed runs (3 calls each)
                    timed += n
                    calls = n * (cfg.host_warmup + 3 * cfg.host_repeats)
                    if precision == "int8":
                        for _ in range(n):
                            int8_copy(w, cfg.calib_images)
                        w.int8_b1_calls += calls
                    else:
                        w.b1_calls += calls
                if ctx.host_meter:
                    w.fixed_s += n * cfg.host_energy_seconds  # metered inference runs for a fixed time
            if cfg.export:
                for _ in range(n):
                    int8_copy(w, cfg.calib_images)  # the qnnpack copy
                w.exports += 2 * n
        work[model] = w
    count = (f"{n_kept} kept models x {len(cfg.profiles)} profiles; {timed} host latency figures timed here"
             f"{', metered' if ctx.host_meter else ''}{f', {2 * n_kept} exports' if cfg.export else ''}")  # fmt: skip
    return StagePlan("device_power", 1, count, work)
