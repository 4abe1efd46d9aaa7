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

    Every kept model is loaded and modelled on every profile (cheap), converted to int8 for the
    host (int8 in ``precisions``), timed at batch 1 at each host precision in ``host_rounds``
    rounds of ``host_warmup`` + 3 x ``host_repeats`` calls, metered for ``host_energy_seconds``
    per precision where the host has a meter, and exported with ``export`` (fp32 and
    int8-qnnpack files: one more conversion, two exports).
    """
    p, cfg = ctx.params, ctx.params.device_power
    if cfg is None:
        return StagePlan("device_power", 1, "no device_power section", {})
    host = [x for x in ("fp32", "int8") if x in cfg.precisions] if cfg.host_profile else []
    work, n_kept, timed = {"": Work(data_loads=1)}, 0, 0  # the calibration images come from the prepared tensors
    for model, stages in kept_models(p).items():
        w = Work()
        for n in stages.values():
            n_kept += n
            for precision in host:
                timed += n
                calls = n * cfg.host_rounds * (cfg.host_warmup + 3 * cfg.host_repeats)
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
    count = (f"{n_kept} kept models x {len(cfg.profiles)} profiles; {timed} host latency figures timed here in {cfg.host_rounds} rounds"
             f"{', metered' if ctx.host_meter else ''}{f', {2 * n_kept} exports' if cfg.export else ''}")  # fmt: skip
    return StagePlan("device_power", 1, count, work)
