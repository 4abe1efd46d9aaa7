"""Checks of a params file that need the models themselves, run before ``dvc repro`` starts.

:mod:`edgeprune.config` validates keys, types and ranges without importing torch. Some
settings can only be judged against a model's graph: whether AKPERL's sparsity floor is
reachable with the units ``min_mac_share`` leaves (squeezenet1_1 with ``min_mac_share``
0.05 cannot lose 45 % of its channels), whether QSA's named layers exist, whether
``device: cuda`` has a GPU. Without this check such a setting fails in the method stage,
after the dense models have trained (hours in the paper profile). Each check builds the
model with random weights and costs well under a second; ``make repro`` runs them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from edgeprune.akperl.budget import SparsityFloor
from edgeprune.akperl.units import find_units
from edgeprune.config import Params, ParamsError, load_params
from edgeprune.models import create_model
from edgeprune.prune import classifier_name
from edgeprune.qsa.cycle import QSAPruner, QSASettings
from edgeprune.placement import resolve_device


def _input_shape(params: Params) -> tuple[int, int, int]:
    side = params.data.image_size or 32
    return (3, side, side)


def _akperl(params: Params, model_name: str) -> None:
    p, shape = params.akperl, _input_shape(params)
    model = create_model(model_name).eval()
    ignored = [classifier_name(model, shape)]
    units = find_units(model, ignored_layers=ignored, input_shape=shape, min_mac_share=p.min_mac_share, round_to=p.round_to)
    if p.enforce_target_sparsity:
        try:
            SparsityFloor(model, units, ignored, p.target_sparsity)
        except ValueError as err:  # units below min_mac_share stay dense, so it decides what is reachable too
            raise ValueError(f"target_sparsity {p.target_sparsity} with min_mac_share {p.min_mac_share}: {err}") from err


def _qsa(params: Params, model_name: str) -> None:
    q = params.qsa
    QSAPruner(create_model(model_name).eval(), q.layers, QSASettings(round_to=q.round_to), input_shape=_input_shape(params))


CHECKS: dict[str, Callable[[Params, str], None]] = {"akperl": _akperl, "qsa": _qsa}


def problems(params: Params) -> list[str]:
    """One line per failed check, naming the params key and the model; empty when all pass."""
    found = []
    try:
        resolve_device(params.device)
    except ValueError as err:
        found.append(f"device: {err}")
    for section, check in CHECKS.items():
        config = getattr(params, section)
        for model_name in config.models if config is not None else []:
            try:
                check(params, model_name)
            except (ValueError, KeyError) as err:
                found.append(f"{section}.models {model_name}: {err}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeprune.preflight", description=__doc__.splitlines()[0])
    parser.add_argument("params", nargs="?", default="params.yaml")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
    except ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    found = problems(params)
    for line in found:
        print(f"error: {args.params}: {line}", file=sys.stderr)
    if found:
        return 2
    print(f"{args.params}: model checks passed ({', '.join(s for s in CHECKS if getattr(params, s))}, device)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
