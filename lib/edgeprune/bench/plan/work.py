"""The units of a stage's work and what its count needs: the data's size, the models, the params."""

from __future__ import annotations

import math
import zipfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from edgeprune.config import Params
from edgeprune.data import IMAGE_SUFFIXES
from edgeprune.paths import from_root

# Measurement sizes: the dense SGD step is timed at min(train.batch_size, TRAIN_BATCH) images; the
# recovery steps (pruned, masked, quantization-aware) at SMALL_BATCH, relative to the dense step at
# the same batch; forward passes on min(train.eval_batch_size, EVAL_BATCH) images. Per-image costs
# are then scaled linearly to the counts (a larger batch is usually a little cheaper per image, so
# the prediction errs high).
TRAIN_BATCH = 128
SMALL_BATCH = 32
EVAL_BATCH = 128
INT8_CALIB_BATCH = 64  # edgeprune.quant.quantize_int8 calibrates in batches of 64
DECODE_SAMPLE = 256  # archive members read and decoded to time the data stage


# --------------------------------------------------------------------------- what a stage does


@dataclass(frozen=True)
class DataSizes:
    """Images per split after the data stage (decoded counts from the archive's listing)."""

    train: int
    val: int
    test: int
    image_shape: tuple[int, int, int] = (3, 32, 32)
    source: str = "CIFAR-10 sizes (assumed: archive not found)"

    @property
    def decoded(self) -> int:
        return self.train + self.val + self.test


@dataclass(frozen=True)
class ModelFacts:
    """Structure of a model that sets how many steps its searches take (from the model itself)."""

    akperl_units: int = 0  # AKPERL decision units (edgeprune.akperl.units.find_units): steps per episode
    layers: int = 0  # Conv2d / Linear layers (edgeprune.fakequant.quantized_layers): PPO steps per episode
    groups: int = 0  # PPO's channel groups (edgeprune.ppo.pruning.taylor_groups): prune-rate rows of its sensitivity table


@dataclass
class Work:
    """The work of one stage on one model, in the units whose costs are measured.

    Image counts are images through one pass (an SGD step, a forward pass); the rest are counts of
    fixed items. ``recoveries`` and ``recovery_steps`` are shown, their cost is in the image counts.
    """

    train_images: float = 0.0  # SGD step of the dense network as trained (dense training; Taylor scores)
    masked_images: float = 0.0  # SGD step of an unpruned fp32 network in the recovery loop (unstructured masks)
    recovery_images: float = 0.0  # SGD step of a channel-pruned network (float recovery)
    qat_images: float = 0.0  # SGD step with k-bit fake quantizers in the loop (quantization-aware recovery)
    eval_images: float = 0.0  # fp32 forward (accuracy, BatchNorm re-estimation, activation samples, latency batches)
    int8_images: float = 0.0  # real int8 forward
    histogram_images: float = 0.0  # fp32 forward with an activation histogram on every layer (KL calibration)
    fakequant_images: float = 0.0  # forward of a fake-quantized (simulated k-bit) network
    b1_calls: float = 0.0  # batch-1 fp32 forward calls (latency figures)
    int8_b1_calls: float = 0.0  # batch-1 int8 forward calls
    prunes: float = 0.0  # structural prunes (Torch-Pruning dependency graph and removal)
    int8_conversions: float = 0.0  # quantize_int8 calls (one calibration batch each)
    int8_extra_batches: float = 0.0  # further calibration batches of those conversions
    exports: float = 0.0  # TorchScript export files (trace, save, reload, compare), priced as an int8 conversion
    kl_candidates: float = 0.0  # histogram bins tried by KL threshold searches (bins / stride per threshold)
    weight_clips: float = 0.0  # clip ratios chosen for every layer of a network (edgeprune.clipping, ppo.weight_clip)
    akperl_episodes: float = 0.0  # AKPERL episodes' pruning (graph, one prune and modelled power per unit)
    qsa_steps: float = 0.0  # Adam steps over every layer's QSA at qsa.calib_images x positions samples
    data_loads: float = 0.0  # torch.load of results/data/prepared.pt (every stage that reads images)
    decoded_images: float = 0.0  # JPEGs decoded
    read_images: float = 0.0  # archive members read (CRC checked)
    fixed_s: float = 0.0  # seconds known without a unit: RL libraries' updates (estimated), metered inference (its duration)
    recoveries: int = 0
    recovery_steps: int = 0
    int8_copies: int = 0
    rows: int = 0

    def __iadd__(self, other: Work) -> Work:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def times(self, k: int) -> Work:
        """This work done ``k`` times."""
        return Work(**{f.name: getattr(self, f.name) * k for f in fields(self)})


@dataclass
class StagePlan:
    """One stage of dvc.yaml: its items (papermill runs), what it does per model and what to print."""

    name: str
    items: int
    count: str
    work: dict[str, Work] = field(default_factory=dict)  # model name ("" for model-independent work) -> work

    @property
    def total(self) -> Work:
        total = Work()
        for w in self.work.values():
            total += w
        return total


@dataclass(frozen=True)
class Context:
    """What every stage's count needs: the params, the data sizes, the models' structure, the host."""

    params: Params
    sizes: DataSizes
    facts: Mapping[str, ModelFacts]
    host_meter: bool = False  # a power meter (RAPL, INA) the device_power stage reads for every kept model


# --------------------------------------------------------------------------- the data's size


def dataset_sizes(params: Params) -> DataSizes:
    """Train / val / test images the data stage will produce, from the archive's listing (no decoding).

    Without the archive: CIFAR-10's 50,000 / 10,000 images (said in ``source``)."""
    d = params.data
    path = from_root(d.archive)
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    elif path.is_dir():
        names = [str(f.relative_to(path)) for f in path.rglob("*")]
    else:
        names = []
    folders: dict[str, Counter] = {}  # split folder -> images per class (data.read_class_folders' layout)
    for name in names:
        parts = Path(name).parts
        if len(parts) == 3 and name.lower().endswith(IMAGE_SUFFIXES):
            folders.setdefault(parts[0], Counter())[parts[1]] += 1
    if "test" not in folders and "val" in folders:
        folders["test"] = folders.pop("val")
    if folders.get("train") and folders.get("test"):
        per_class, source = folders, d.archive
    else:
        per_class = {"train": Counter({str(c): 5000 for c in range(10)}), "test": Counter({str(c): 1000 for c in range(10)})}
        source = f"CIFAR-10 sizes (assumed: {d.archive} not found)"
    cap = d.max_per_class or math.inf
    full_train = int(sum(min(n, cap) for n in per_class["train"].values()))
    test = int(sum(min(n, cap) for n in per_class["test"].values()))
    val = round(d.val_fraction * full_train)
    side = d.image_size or 32  # the measured sample sets it when the archive is read (measure_costs)
    return DataSizes(full_train - val, val, test, (3, side, side), source)


def stage_models(params: Params) -> list[str]:
    """Every model some stage trains, prunes or measures."""
    names = list(params.train.models)
    for section in (params.akperl, params.qsa, params.ppo):
        names += [m for m in (section.models if section else []) if m not in names]
    return names
