"""The smoke profile is the paper profile's shape at tiny budgets, generated, never edited (issue 18)."""

from __future__ import annotations

import yaml

from edgeprune import smoke
from edgeprune.config import load_params, profile_path


def _leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        out |= _leaves(value, path + ".") if isinstance(value, dict) else {path: value}
    return out


def test_committed_smoke_profile_is_what_paper_yaml_generates():
    assert smoke.main([]) == 0  # else: python -m edgeprune.smoke --write


def test_smoke_keeps_every_key_of_the_paper_profile_but_the_budgets():
    paper = _leaves(yaml.safe_load(profile_path("paper").read_text()))
    generated = _leaves(yaml.safe_load(profile_path("smoke").read_text()))
    budget = lambda key: any(key == b or key.startswith(b + ".") for b in smoke.BUDGET_KEYS)  # noqa: E731
    kept = {k for k in paper if not budget(k) and k not in ("profile", "device", "num_threads")}
    assert {k: generated.get(k) for k in kept} == {k: paper[k] for k in kept}
    shrunk = [k for k in paper if budget(k) and generated.get(k) != paper[k]]  # a budget may change form
    assert {"train.epochs", "akperl.dqn.steps", "ppo.episodes", "finetune.budgets"} <= set(shrunk)
    params = load_params(profile_path("smoke"))
    assert params.profile == "smoke" and params.train.epochs <= 2 and len(params.train.models) == 5


def test_every_budget_key_names_a_params_field():
    for key in smoke.BUDGET_KEYS:
        smoke._section_default(key.split("."))  # raises KeyError on a misspelt key
