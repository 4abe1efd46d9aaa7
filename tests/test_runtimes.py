"""The CPU runtimes of edgeprune.runtimes: same logits as eager where they should, clear errors otherwise."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from small_nets import chain, separable, train_briefly

from edgeprune import runtimes
from edgeprune.data import normalize


@pytest.fixture(scope="module")
def trained():
    model = train_briefly(chain(seed=0))
    x, y = separable(256, seed=3)
    with torch.inference_mode():
        reference = model(normalize(x))
    return model, x, y, reference


def test_unknown_runtime_is_an_error_naming_it_and_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown runtime 'tvm'.*eager"):
        runtimes.check_runtime("tvm")


def test_a_runtime_whose_package_is_missing_names_the_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(ImportError, match=r"'ort_int8' needs the package 'onnxruntime'.*pip install onnxruntime"):
        runtimes.check_runtime("ort_int8")
    assert runtimes.check_runtime("eager").name == "eager"  # needs nothing beyond torch


@pytest.mark.parametrize("name", ["fused_bn", "ort"])
def test_float_runtimes_give_eager_logits(trained, tmp_path, name):
    """BN folding and the ONNX export round trip (through ONNX Runtime) change no logit beyond float noise."""
    model, x, _, reference = trained
    predict = runtimes.prepare(name, model, x[:64], threads=1, workdir=tmp_path)
    torch.testing.assert_close(predict(normalize(x)), reference, atol=1e-4, rtol=1e-4)


def test_onnx_export_has_a_dynamic_batch(trained, tmp_path):
    onnx = pytest.importorskip("onnx")
    model, *_ = trained
    path = runtimes.export_onnx(model, tmp_path / "m.onnx", (3, 8, 8))
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["logits"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


@pytest.mark.parametrize("name", ["ort_int8", "torch_int8"])
def test_int8_runtimes_keep_a_trained_nets_predictions(trained, tmp_path, name):
    """Calibrated on training-like images, both int8 paths agree with eager on nearly every test image
    and keep its accuracy within a few points."""
    model, x, y, reference = trained
    calib, _ = separable(128, seed=5)
    logits = runtimes.prepare(name, model, calib, threads=1, workdir=tmp_path)(normalize(x)).float()
    assert (logits.argmax(1) == reference.argmax(1)).float().mean() >= 0.9
    assert (logits.argmax(1) == y).float().mean() >= (reference.argmax(1) == y).float().mean() - 0.05
