"""edgeprune.data: archive reading, splits, balance checks, shift conditions, augmentation, import."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import make_images, write_class_folder_zip
from edgeprune import data


def test_read_class_folders_zip_and_directory_agree(tiny_zip: Path, tmp_path: Path) -> None:
    splits, classes = data.read_class_folders(tiny_zip)
    assert classes == ["cat", "dog", "frog"]
    assert splits["train"].x.shape == (36, 3, 8, 8) and splits["train"].x.dtype == torch.uint8
    assert torch.bincount(splits["test"].y).tolist() == [4, 4, 4]
    folder = tmp_path / "unzipped"
    zipfile.ZipFile(tiny_zip).extractall(folder)
    splits_dir, classes_dir = data.read_class_folders(folder)
    assert classes_dir == classes
    assert torch.equal(splits_dir["train"].x, splits["train"].x)


def test_read_class_folders_resizes_and_limits(tiny_zip: Path) -> None:
    splits, _ = data.read_class_folders(tiny_zip, image_size=16, max_per_class=5)
    assert splits["train"].x.shape == (15, 3, 16, 16)
    assert splits["test"].x.shape == (12, 3, 16, 16)  # 4 per class, fewer than the limit


def test_val_folder_is_read_as_test(tmp_path: Path) -> None:
    src = write_class_folder_zip(tmp_path / "a.zip")
    renamed = tmp_path / "b.zip"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(renamed, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name.replace("test/", "val/", 1), zin.read(name))
    splits, _ = data.read_class_folders(renamed)
    assert len(splits["test"]) == 12


def test_missing_archive_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dvc pull"):
        data.read_class_folders(tmp_path / "nope.zip")


def test_corrupt_archive_is_detected(tiny_zip: Path) -> None:
    raw = bytearray(tiny_zip.read_bytes())
    raw[200:260] = b"\x00" * 60  # inside the first member's compressed data
    tiny_zip.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt"):
        data.read_class_folders(tiny_zip)
    tiny_zip.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="corrupt"):
        data.read_class_folders(tiny_zip)


def test_bad_layout_is_named(tmp_path: Path) -> None:
    path = tmp_path / "flat.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("train/cat.jpg", b"x")
    with pytest.raises(ValueError, match="<split>/<class>/<image>"):
        data.read_class_folders(path)


def test_prepare_is_stratified_deterministic_and_round_trips(tiny_zip: Path, tmp_path: Path) -> None:
    prepared = data.prepare(tiny_zip, tmp_path / "p.pt", val_fraction=0.25, seed=3)
    assert len(prepared.val) == 9 and len(prepared.train) == 27
    assert torch.bincount(prepared.val.y).tolist() == [3, 3, 3]
    again = data.prepare(tiny_zip, tmp_path / "q.pt", val_fraction=0.25, seed=3)
    assert torch.equal(again.val.x, prepared.val.x)
    other = data.prepare(tiny_zip, tmp_path / "r.pt", val_fraction=0.25, seed=4)
    assert not torch.equal(other.val.x, prepared.val.x)
    loaded = data.load_prepared(tmp_path / "p.pt")
    assert torch.equal(loaded.train.x, prepared.train.x) and loaded.classes == prepared.classes
    assert loaded.meta["counts"]["test"] == [4, 4, 4]


def test_prepared_file_does_not_depend_on_where_the_archive_lives(tiny_zip: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / tiny_zip.name
    moved.parent.mkdir()
    shutil.copy2(tiny_zip, moved)
    data.prepare(tiny_zip, tmp_path / "a" / "p.pt", val_fraction=0.25, seed=3)
    data.prepare(moved, tmp_path / "b" / "p.pt", val_fraction=0.25, seed=3)
    # byte for byte: DVC hashes it, and a new hash re-runs every stage after it
    assert (tmp_path / "a" / "p.pt").read_bytes() == (tmp_path / "b" / "p.pt").read_bytes()


def test_prepare_rejects_bad_val_fraction(tiny_zip: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        data.prepare(tiny_zip, tmp_path / "p.pt", val_fraction=0.7)
    assert not (tmp_path / "p.pt").exists()


def test_load_prepared_missing_names_the_stage(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="00_data"):
        data.load_prepared(tmp_path / "missing.pt")


def test_check_balance() -> None:
    assert data.check_balance(torch.tensor([0, 1, 1, 2]), 3, max_ratio=2) == [1, 2, 1]
    with pytest.raises(ValueError, match="no images"):
        data.check_balance(torch.tensor([0, 0, 2]), 3)
    with pytest.raises(ValueError, match="unbalanced"):
        data.check_balance(torch.tensor([0] * 5 + [1]), 2, max_ratio=1.5)


def test_stratified_subset_keeps_class_shares() -> None:
    y = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    split = data.Split(torch.zeros(100, 3, 4, 4, dtype=torch.uint8), y)
    sub = split.subset(50, seed=0)
    assert torch.bincount(sub.y).tolist() == [30, 15, 5]
    assert split.subset(None) is split


def test_split_is_the_subset_and_the_images_it_left_out() -> None:
    y = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    x = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1)  # each image names its index
    split = data.Split(x, y)
    chosen, rest = split.split(50, seed=3)
    assert torch.equal(chosen.x, split.subset(50, seed=3).x) and torch.equal(chosen.y, split.subset(50, seed=3).y)
    assert len(rest) == 50 and torch.bincount(rest.y).tolist() == [30, 15, 5]
    assert sorted(chosen.x.flatten().tolist() + rest.x.flatten().tolist()) == list(range(100))
    everything, nothing = split.split(None)
    assert everything is split and len(nothing) == 0


@pytest.fixture
def images() -> torch.Tensor:
    return make_images(16, 32, seed=0, label=3)


@pytest.mark.parametrize("condition", list(data.CONDITIONS))
def test_conditions_are_deterministic_and_keep_shape(images: torch.Tensor, condition: str) -> None:
    out = data.apply_condition(images, condition, severity=3, seed=1)
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert torch.equal(out, data.apply_condition(images, condition, severity=3, seed=1))
    assert torch.equal(out, images) == (condition == "clean")


def test_conditions_do_what_their_names_say(images: torch.Tensor) -> None:
    f = images.float()
    dark = data.apply_condition(images, "low_light", 5).float()
    assert dark.mean() < 0.5 * f.mean()
    flat = data.apply_condition(images, "low_contrast", 5).float()
    assert flat.std() < 0.5 * f.std()

    def roughness(x: torch.Tensor) -> torch.Tensor:  # total variation: blur lowers it, noise raises it
        return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., 1:] - x[..., :-1]).abs().mean()

    assert roughness(data.apply_condition(images, "blur", 5).float()) < 0.7 * roughness(f)
    smooth = torch.full_like(images, 128)
    noisy = data.apply_condition(smooth, "noise", 5, seed=0).float()
    assert abs(noisy.std().item() / 255 - 0.10) < 0.01  # severity 5 = sigma 0.10
    assert not torch.equal(noisy, data.apply_condition(smooth, "noise", 5, seed=1).float())


def test_shifted_copies_are_reused_until_the_source_changes(images: torch.Tensor) -> None:
    first = data.apply_condition(images, "blur", 3)
    assert data.apply_condition(images, "blur", 3) is first  # the same images, blurred once
    assert data.apply_condition(images, "noise", 3) is not first
    assert data.apply_condition(images, "blur", 3) is first  # other conditions do not evict it
    images += 1  # an in-place change of the source: never served stale
    again = data.apply_condition(images, "blur", 3)
    assert again is not first and not torch.equal(again, first)
    with torch.inference_mode():  # inference tensors carry no version counter: computed afresh
        frozen = images.clone()
        assert torch.equal(data.apply_condition(frozen, "blur", 3), again)


def test_condition_errors(images: torch.Tensor) -> None:
    with pytest.raises(KeyError, match="fog"):
        data.apply_condition(images, "fog")
    with pytest.raises(ValueError, match="severity"):
        data.apply_condition(images, "blur", severity=6)


def test_random_crop_flip_crops_and_flips() -> None:
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    out = data.random_crop_flip(x, torch.Generator().manual_seed(0), padding=0)
    for orig, aug in zip(x, out):
        assert torch.equal(aug, orig) or torch.equal(aug, orig.flip(-1))
    out = data.random_crop_flip(x, torch.Generator().manual_seed(0), padding=2)
    assert out.shape == x.shape
    again = data.random_crop_flip(x, torch.Generator().manual_seed(0), padding=2)
    assert torch.equal(out, again)
    # every augmented image is a window of the reflect-padded (and maybe flipped) original
    padded = torch.nn.functional.pad(x, [2] * 4, mode="reflect")
    for p, aug in zip(padded, out):
        windows = [p[:, i : i + 6, j : j + 6] for i in range(5) for j in range(5)]
        assert any(torch.equal(aug, w) or torch.equal(aug, w.flip(-1)) for w in windows)


def test_normalize_standardises() -> None:
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = data.normalize(x)
    expected = (1 - torch.tensor(data.CIFAR10_MEAN)) / torch.tensor(data.CIFAR10_STD)
    assert torch.allclose(out[0, :, 0, 0], expected)


class FakeCIFAR10:
    """Stands in for torchvision's CIFAR10 so the import runs without network."""

    classes = ["airplane", "automobile"]

    def __init__(self, root, train: bool, download: bool) -> None:
        self.images = make_images(4 if train else 2, 32, seed=int(train), label=1)
        self.labels = [0, 1] * (len(self.images) // 2)

    def __iter__(self):
        from PIL import Image

        for img, label in zip(self.images, self.labels):
            yield Image.fromarray(img.permute(1, 2, 0).numpy()), label

    def __len__(self) -> int:
        return len(self.labels)


def test_import_cifar10_builds_the_class_folder_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    out = data.import_cifar10(tmp_path / "c.zip", root=tmp_path / "cache")
    names = sorted(zipfile.ZipFile(out).namelist())
    assert names[0] == "test/airplane/0000.jpg" and "train/automobile/0001.jpg" in names
    splits, classes = data.read_class_folders(out)
    assert classes == ["airplane", "automobile"] and splits["train"].x.shape == (4, 3, 32, 32)
