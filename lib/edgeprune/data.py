"""Datasets: class-folder archives decoded once to uint8 tensors, splits, shift conditions.

The raw data is a class-folder archive (``train/<class>/*.jpg``, ``test/<class>/*.jpg``;
a ``val/`` folder is read as the test split when there is no ``test/``), either a zip or a
directory. CIFAR-10 comes as ``data/cifar10-jpeg.zip`` through DVC: JPEG (quality 75)
copies of the original images, so accuracies sit slightly below the canonical figures.
Decoding happens once (:func:`prepare`); training reads uint8 tensors from memory.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import weakref
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF
from torchvision.io import ImageReadMode, decode_image
from tqdm.auto import tqdm

from edgeprune.conditions import CONDITIONS
from edgeprune.io import atomic_write, save_torch_atomic

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
HOW_TO_GET_DATA = (
    "fetch it with `dvc pull data.dvc` (DVC remote ../shared/dvc-remote), or build it from the "
    "canonical CIFAR-10 download with `python -m edgeprune.data import-cifar10 --out data/cifar10-jpeg.zip`"
)


@dataclass
class Split:
    """Images (N, C, H, W) uint8 and integer labels (N,)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, n: int | None, seed: int = 0) -> Split:
        """A class-stratified random subset of ``n`` images (all when ``n`` is None or too big)."""
        if n is None or n >= len(self):
            return self
        idx = stratified_indices(self.y, n, seed)
        return Split(self.x[idx], self.y[idx])

    def split(self, n: int | None, seed: int = 0) -> tuple[Split, Split]:
        """(:meth:`subset` of ``n`` images, the images it left out), two disjoint splits."""
        if n is None or n >= len(self):
            return self, Split(self.x[:0], self.y[:0])
        idx = stratified_indices(self.y, n, seed)
        left = torch.ones(len(self), dtype=torch.bool)
        left[idx] = False
        return Split(self.x[idx], self.y[idx]), Split(self.x[left], self.y[left])


@dataclass
class PreparedData:
    """The decoded dataset: train / val / test splits and class names."""

    train: Split
    val: Split
    test: Split
    classes: list[str]
    meta: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def stratified_indices(y: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` indices drawn per class in proportion to its frequency, deterministically."""
    g = torch.Generator().manual_seed(seed)
    classes = torch.unique(y)
    picked = []
    for i, c in enumerate(classes):
        members = torch.nonzero(y == c).flatten()
        share = round(n * len(members) / len(y)) if i < len(classes) - 1 else n - sum(map(len, picked))
        picked.append(members[torch.randperm(len(members), generator=g)[: max(share, 0)]])
    return torch.sort(torch.cat(picked)).values


def _open_archive(path: Path) -> tuple[list[str], Callable[[str], bytes]]:
    """List the image members of a zip or directory and return a reader for them."""
    if not path.exists():
        raise FileNotFoundError(f"dataset archive {path} not found: {HOW_TO_GET_DATA}")
    if path.is_dir():
        names = sorted(
            str(p.relative_to(path)) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
        )
        return names, lambda name: (path / name).read_bytes()
    try:
        archive = zipfile.ZipFile(path)
        bad = archive.testzip()  # CRC-checks every member
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"dataset archive {path} is corrupt ({err}): {HOW_TO_GET_DATA}") from err
    if bad is not None:
        raise ValueError(f"dataset archive {path} is corrupt (bad CRC in {bad}): {HOW_TO_GET_DATA}")
    names = sorted(n for n in archive.namelist() if n.lower().endswith(IMAGE_SUFFIXES))
    return names, archive.read


def read_class_folders(
    path: str | Path, image_size: int | None = None, max_per_class: int | None = None
) -> tuple[dict[str, Split], list[str]]:
    """Decode a class-folder archive into uint8 splits; resize to ``image_size`` if given."""
    path = Path(path)
    names, read = _open_archive(path)
    by_split: dict[str, dict[str, list[str]]] = {}
    for name in names:
        parts = Path(name).parts
        if len(parts) != 3:
            raise ValueError(f"{path}: member {name!r} is not <split>/<class>/<image>")
        by_split.setdefault(parts[0], {}).setdefault(parts[1], []).append(name)
    if "test" not in by_split and "val" in by_split:
        by_split["test"] = by_split.pop("val")
    missing = {"train", "test"} - set(by_split)
    if missing:
        raise ValueError(f"{path}: no {sorted(missing)} folder(s); found {sorted(by_split)}")
    classes = sorted(by_split["train"])
    if sorted(by_split["test"]) != classes:
        raise ValueError(f"{path}: train and test class folders differ")
    splits = {}
    for split in ("train", "test"):
        xs, ys = [], []
        for label, cls in enumerate(classes):
            members = by_split[split][cls][:max_per_class]
            for name in tqdm(members, desc=f"decode {split}/{cls}", leave=False, mininterval=2):
                img = decode_image(torch.frombuffer(bytearray(read(name)), dtype=torch.uint8), ImageReadMode.RGB)
                if image_size is not None and img.shape[-2:] != (image_size, image_size):
                    img = TF.resize(img, [image_size, image_size], antialias=True)
                xs.append(img)
                ys.append(label)
        shapes = {tuple(x.shape) for x in xs}
        if len(shapes) != 1:
            raise ValueError(f"{path}: images of several sizes {sorted(shapes)[:3]}; set data.image_size")
        splits[split] = Split(torch.stack(xs), torch.tensor(ys, dtype=torch.long))
    return splits, classes


def check_balance(y: torch.Tensor, num_classes: int, max_ratio: float = 1.5, where: str = "") -> list[int]:
    """Class counts; raises when a class is missing or the largest/smallest ratio exceeds ``max_ratio``."""
    counts = torch.bincount(y, minlength=num_classes).tolist()
    if min(counts) == 0:
        raise ValueError(f"{where}: class(es) {[i for i, c in enumerate(counts) if c == 0]} have no images")
    if max(counts) / min(counts) > max_ratio:
        raise ValueError(f"{where}: classes unbalanced beyond {max_ratio}x: counts {counts}")
    return counts


def file_md5(path: Path) -> str:
    if path.is_dir():
        return "directory"
    digest = hashlib.md5()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def prepare(
    archive: str | Path,
    out: str | Path,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    image_size: int | None = None,
    max_per_class: int | None = None,
) -> PreparedData:
    """Decode ``archive`` once, split a stratified validation set off train, save to ``out``."""
    if not 0.0 < val_fraction < 0.5:
        raise ValueError(f"data.val_fraction must be in (0, 0.5), got {val_fraction}")
    archive = Path(archive)
    splits, classes = read_class_folders(archive, image_size, max_per_class)
    full_train = splits["train"]
    val_idx = stratified_indices(full_train.y, round(val_fraction * len(full_train)), seed)
    is_val = torch.zeros(len(full_train), dtype=torch.bool)
    is_val[val_idx] = True
    data = PreparedData(
        train=Split(full_train.x[~is_val], full_train.y[~is_val]),
        val=Split(full_train.x[is_val], full_train.y[is_val]),
        test=splits["test"],
        classes=classes,
    )
    data.meta = {
        "archive": archive.name,  # not the absolute path: the output must not depend on where the clone lives
        "archive_md5": file_md5(archive),
        "val_fraction": val_fraction,
        "split_seed": seed,
        "image_shape": list(data.train.x.shape[1:]),
        "counts": {
            name: check_balance(s.y, len(classes), where=f"{archive} {name} split")
            for name, s in (("train", data.train), ("val", data.val), ("test", data.test))
        },
    }
    save_torch_atomic(
        {
            "classes": classes,
            "meta": data.meta,
            **{f"{n}_{k}": getattr(getattr(data, n), k) for n in ("train", "val", "test") for k in "xy"},
        },
        out,
    )
    return data


def load_prepared(path: str | Path) -> PreparedData:
    """Load the tensors written by :func:`prepare`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prepared data {path} not found: run the 00_data stage (`dvc repro data`)")
    blob = torch.load(path, weights_only=True)
    splits = {n: Split(blob[f"{n}_x"], blob[f"{n}_y"]) for n in ("train", "val", "test")}
    return PreparedData(**splits, classes=list(blob["classes"]), meta=dict(blob["meta"]))


def normalize(x: torch.Tensor, mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD) -> torch.Tensor:
    """uint8 images -> float, standardised per channel."""
    m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x.float() / 255.0 - m) / s


_SHIFTED: dict[int, tuple[weakref.ref, dict[tuple, torch.Tensor]]] = {}  # id(source) -> (weak ref, shifted copies)


def _shifted_copies(x: torch.Tensor) -> dict[tuple, torch.Tensor]:
    """The memo of ``x``'s shifted copies, dropped when ``x`` is garbage-collected (tensors compare
    element-wise, so a ``WeakKeyDictionary`` cannot hold them: the memo is keyed by identity)."""
    entry = _SHIFTED.get(id(x))
    if entry is None or entry[0]() is not x:
        entry = (weakref.ref(x, lambda _, key=id(x): _SHIFTED.pop(key, None)), {})
        _SHIFTED[id(x)] = entry
    return entry[1]


def apply_condition(x: torch.Tensor, condition: str, severity: int = 3, seed: int = 0) -> torch.Tensor:
    """Apply a distribution-shift condition to uint8 images, deterministically for a given seed.

    The result is remembered per source tensor (weakly, and keyed on its version counter, so an
    in-place change of ``x`` is never served stale; inference-mode tensors, which have no
    counter, are not remembered): a stage measures every network on the same test images
    under the same conditions, and blurring them once per network cost ~1 s a row.
    """
    if condition not in CONDITIONS:
        raise KeyError(f"unknown condition {condition!r}; known: {', '.join(CONDITIONS)}")
    if not 1 <= severity <= 5:
        raise ValueError(f"severity must be in 1..5, got {severity}")
    if condition == "clean":
        return x
    level = CONDITIONS[condition][severity - 1]
    if x.is_inference():  # no version counter to check against: computed afresh
        return _shift(x, condition, level, seed)
    key = (condition, severity, seed, x._version)
    memo = _shifted_copies(x)
    if key not in memo:
        for stale in [k for k in memo if k[3] != x._version]:  # copies of an older version of x
            del memo[stale]
        memo[key] = _shift(x, condition, level, seed)
    return memo[key]


def _shift(x: torch.Tensor, condition: str, level: float, seed: int) -> torch.Tensor:
    """``x`` under ``condition`` at ``level`` (the severity's CIFAR-10-C-like parameter)."""
    if condition == "noise":
        g = torch.Generator(device=x.device).manual_seed(seed)
        noisy = x.float() / 255.0 + level * torch.randn(x.shape, generator=g, device=x.device)
        return (noisy.clamp(0, 1) * 255.0).round().to(torch.uint8)
    if condition == "blur":
        radius = max(1, int(3 * level + 0.5))
        return TF.gaussian_blur(x, kernel_size=[2 * radius + 1] * 2, sigma=[level, level])
    if condition == "low_light":
        return TF.adjust_brightness(x, level)
    return TF.adjust_contrast(x, level)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Standard CIFAR augmentation on a batch: reflect-pad, random crop back, random h-flip."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, [padding] * 4, mode="reflect")
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    batch = torch.arange(n)[:, None, None, None]
    chans = torch.arange(x.shape[1])[None, :, None, None]
    out = padded[batch, chans, rows, cols]
    flip = torch.rand(n, generator=generator) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def import_cifar10(out: str | Path, root: str | Path = "~/.cache/edgeprune", quality: int = 75) -> Path:
    """Build ``data/cifar10-jpeg.zip`` from the canonical CIFAR-10 download (needs internet).

    Writes the same class-folder layout and JPEG quality as the DVC-tracked archive.
    """
    from PIL import Image
    from torchvision.datasets import CIFAR10

    out = Path(out)
    root = Path(root).expanduser()
    with atomic_write(out) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for split, train in (("train", True), ("test", False)):
            dataset = CIFAR10(root, train=train, download=True)
            counters: dict[int, int] = {}
            for image, label in tqdm(dataset, desc=f"cifar10 {split}"):
                index = counters[label] = counters.get(label, -1) + 1
                buf = io.BytesIO()
                (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buf, "JPEG", quality=quality)
                zf.writestr(f"{split}/{dataset.classes[label]}/{index:04d}.jpg", buf.getvalue())
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m edgeprune.data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import-cifar10", help="build the class-folder zip from the torchvision download")
    imp.add_argument("--out", default="data/cifar10-jpeg.zip")
    imp.add_argument("--root", default="~/.cache/edgeprune", help="torchvision download cache")
    imp.add_argument("--quality", type=int, default=75)
    args = parser.parse_args(argv)
    print(import_cifar10(args.out, args.root, args.quality))


if __name__ == "__main__":
    main()
