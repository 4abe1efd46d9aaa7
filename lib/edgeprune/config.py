"""params.yaml, validated at load time: a wrong key, type or range names itself.

Every stage reads one :class:`Params` object. DVC cannot interpolate list-valued
parameters into a command line, so stages receive the params file path (plus their
matrix item, e.g. ``model`` and ``seed``) and list the keys they read under ``params:``
in dvc.yaml, which is how DVC knows what to re-run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from edgeprune.akperl.params import AkperlParams
from edgeprune.conditions import CONDITIONS
from edgeprune.fields import ConditionSet, ModelNames, Seeds, repeats_field
from edgeprune.power.params import DevicePowerParams
from edgeprune.ppo.params import PPOParams
from edgeprune.qsa.params import QSAParams
from edgeprune.recover.params import Budget, FinetuneParams
from edgeprune.schema import Section

PROFILES = ("quick", "paper", "reference", "tiny", "smoke")


class ParamsError(ValueError):
    """A params file that does not validate; the message names the file and the key."""


class DataParams(Section):
    """Raw data and its decoding (stage 00_data)."""

    archive: str = "data/cifar10-jpeg.zip"
    image_size: int | None = Field(None, ge=8, description="resize to this side; None keeps the archive's")
    max_per_class: int | None = Field(None, ge=2, description="decode at most this many images per class")
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    split_seed: int = Field(0, ge=0)


class ShiftParams(Section):
    """Distribution-shift conditions for the dynamic experiments."""

    conditions: ConditionSet = Field(default_factory=lambda: list(CONDITIONS))
    severity: int = Field(3, ge=1, le=5)


class TrainParams(Section):
    """Dense training (stage 10_train_dense): SGD + one-cycle, label smoothing, CIFAR augmentation."""

    models: ModelNames = Field(min_length=1)
    seeds: Seeds
    epochs: float = Field(gt=0)
    batch_size: int = Field(256, ge=2)
    lr: float = Field(0.2, gt=0, description="peak learning rate of the one-cycle schedule")
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    channels_last: bool = True
    bf16_models: ModelNames = Field(default_factory=list, description="models trained under bf16 autocast")
    train_subset: int | None = Field(None, ge=10, description="stratified subset of the train split")
    rewind_epoch: int = Field(1, ge=0, description="epoch whose weights are kept for lottery-ticket rewinding")
    eval_batch_size: int = Field(1000, ge=1)

    @model_validator(mode="after")
    def _rewind_inside_schedule(self) -> TrainParams:
        if self.rewind_epoch >= self.epochs:
            raise ValueError(f"rewind_epoch ({self.rewind_epoch}) must be below epochs ({self.epochs})")
        return self


BaselineMethod = Literal["l1_filter", "l1_regularised", "magnitude_structured", "magnitude_unstructured"]


class SlimmingParams(Section):
    """The L1-regularised training that precedes the ``l1_regularised`` baseline (network slimming).

    From the trained dense weights, once per dense model, through the recovery protocol's loop
    (:meth:`edgeprune.recover.protocol.Recovery.sparsity_train`).
    """

    penalty: float = Field(1e-3, ge=0, description="L1 penalty on the BatchNorm scales (lambda)")
    budget: Budget = Field(default_factory=lambda: Budget(steps=8), description="the sparsity training's budget")


class BaselineParams(Section):
    """Static pruning baselines (stage 20_baselines)."""

    methods: list[BaselineMethod] = Field(min_length=1)
    sparsities: list[float] = Field(min_length=1, description="target fractions of channels / weights")
    axis_sparsities: list[float] = Field(
        default_factory=list, description="sparsities also recovered at every further finetune budget (the budget axis)"
    )
    axis_methods: list[BaselineMethod] | None = Field(
        None, description="methods recovered at every budget at those sparsities; None = every method"
    )
    seeds: Seeds = Field(description="statistical seeds: fine-tuning order and subset")
    slimming: SlimmingParams = Field(default_factory=SlimmingParams, description="l1_regularised: its training")
    round_to: int | None = Field(
        8, ge=1, description="structured: kept channels per group rounded to the nearest multiple (prune.channels_to_keep)"
    )
    eval_images: int | None = Field(None, ge=10, description="stratified test subset for accuracy; None = all")
    calib_images: int = Field(256, ge=1, description="train images calibrating the int8 copy")
    int8: bool = True
    latency_warmup: int = Field(5, ge=0)
    latency_repeats: int = repeats_field(20)

    @field_validator("sparsities")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        bad = [s for s in value if not 0.0 < s < 1.0]
        if bad:
            raise ValueError(f"sparsities must lie in (0, 1), got {bad}")
        return value

    @model_validator(mode="after")
    def _axis_in_sweep(self) -> BaselineParams:
        missing = [s for s in self.axis_sparsities if s not in self.sparsities]
        if missing:
            raise ValueError(f"axis_sparsities {missing} are not in sparsities {self.sparsities}")
        absent = [m for m in self.axis_methods or [] if m not in self.methods]
        if absent:
            raise ValueError(f"axis_methods {absent} are not in methods {self.methods}")
        return self


class Params(Section):
    """The whole params.yaml."""

    profile: Literal["quick", "paper", "reference", "tiny", "smoke", "custom"] = "custom"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int = Field(0, ge=0, description="torch intra-op threads; 0 = all cores, or cores / $EDGEPRUNE_WORKERS")
    data: DataParams = DataParams()
    shift: ShiftParams = ShiftParams()
    train: TrainParams
    finetune: FinetuneParams = FinetuneParams()
    baselines: BaselineParams | None = None
    akperl: AkperlParams | None = None
    qsa: QSAParams | None = None
    ppo: PPOParams | None = None
    device_power: DevicePowerParams | None = None

    @model_validator(mode="after")
    def _methods_use_trained_models(self) -> Params:
        for name in ("akperl", "qsa", "ppo"):
            section = getattr(self, name)
            missing = [m for m in section.models if m not in self.train.models] if section else []
            if missing:
                raise ValueError(f"{name}.models {missing} are not in train.models {self.train.models}: no dense model to prune")
        return self


def load_params(path: str | Path) -> Params:
    """Read and validate a params file; raise :class:`ParamsError` naming file, key and problem."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '<top>'}: {e['msg']} (got {e.get('input')!r})" for e in err.errors()
        )
        raise ParamsError(f"{path}: {problems}") from err


def profile_path(name: str) -> Path:
    """The packaged params file of a named profile (``paper``, ``reference``, ``tiny``)."""
    if name not in PROFILES or name == "quick":
        raise ParamsError(f"no packaged profile {name!r}; choose from {[p for p in PROFILES if p != 'quick']}")
    return Path(str(resources.files("edgeprune") / "profiles" / f"{name}.yaml"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeprune.config", description="validate params.yaml")
    parser.add_argument("params", nargs="?", default="params.yaml")
    parser.add_argument("--use", metavar="PROFILE", help="first replace params with a packaged profile (paper, reference, tiny, smoke)")
    args = parser.parse_args(argv)
    try:
        if args.use:
            source = profile_path(args.use)
            load_params(source)
            shutil.copyfile(source, args.params)
            print(f"{args.params}: replaced by the {args.use} profile (`git checkout {args.params}` restores quick)")
        params = load_params(args.params)
    except ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.params}: valid ({params.profile} profile, models {params.train.models}, seeds {params.train.seeds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
