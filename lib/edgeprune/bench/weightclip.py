"""Benchmark: per-channel weight clipping (max-abs, MSE, KL) at k bits on the pipeline's dense model.

``python -m edgeprune.bench weightclip`` quantizes every Conv2d / Linear weight of the quick
profile's dense model (``results/dense/<model>-s0``) to ``--bits`` with each clipping rule of
:data:`edgeprune.clipping.WEIGHT_CLIPS` and prints, per bit-width and rule:

- the weights' relative quantization error sum (w - q(w))^2 / sum w^2 over the whole model;
- top-1 of the weight-only quantized model on ``--test-images`` test images, after
  post-training quantization (activations float), and after quantization-aware recovery at
  each ``finetune`` budget of ``--qat-budgets`` (the one recovery protocol, weights only, the
  rule in the loop, deployed on the grid it trained on) for the bit-widths in ``--qat-bits``;
- the seconds the rule takes to choose every layer's ratios, and after the last QAT (which
  keeps the ratios chosen at its start) the median and largest change of a channel's ratio
  were the rule to choose it again on the trained weights (why the deployed model does not).

What chose the default of ``ppo.weight_clip``.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from edgeprune import fakequant
from edgeprune.bench._pipeline import load_pipeline_model
from edgeprune.clipping import WEIGHT_CLIPS, channel_amax, quantize_channels, weight_clip_ratios
from edgeprune.train import evaluate


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m edgeprune.bench weightclip", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--results", default="results")
    parser.add_argument("--model", default="mobilenet_v3_small")
    parser.add_argument("--bits", nargs="+", type=int, default=[2, 3, 4, 8])
    parser.add_argument("--clips", nargs="+", choices=WEIGHT_CLIPS, default=list(WEIGHT_CLIPS))
    parser.add_argument("--qat-bits", nargs="*", type=int, default=[2, 3, 4], help="bit-widths also recovered with QAT")
    parser.add_argument("--qat-budgets", nargs="*", type=int, default=[0, 1], help="indices into finetune.budgets")
    parser.add_argument("--test-images", type=int, default=2000)
    return parser.parse_args(argv)


def relative_error(model: torch.nn.Module, bits: int, clip: str) -> tuple[float, float]:
    """sum (w - q(w))^2 / sum w^2 over every quantized layer, and the seconds choosing the ratios took."""
    error = total = seconds = 0.0
    for layer in fakequant.quantized_layers(model).values():
        w = layer.weight.detach()
        start = time.perf_counter()
        ratios = weight_clip_ratios(w, bits, clip)
        seconds += time.perf_counter() - start
        error += float((w - quantize_channels(w, ratios * channel_amax(w), bits)).square().sum())
        total += float(w.square().sum())
    return error / total, seconds


def ratio_shift(before: torch.nn.Module, after: torch.nn.Module, bits: int, clip: str) -> torch.Tensor:
    """|r_c(after) - r_c(before)| of every channel of every quantized layer."""
    layers = fakequant.quantized_layers(after)
    return torch.cat([
        (weight_clip_ratios(layers[name].weight, bits, clip) - weight_clip_ratios(layer.weight, bits, clip)).abs()
        for name, layer in fakequant.quantized_layers(before).items()
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run = load_pipeline_model(args.params, args.results, args.model, args.test_images)
    test, dense, recovery = run.test, run.dense, run.recovery
    steps = [recovery.schedule(b).steps for b in args.qat_budgets]
    layers = list(fakequant.quantized_layers(dense))
    print(f"{args.model}: dense top-1 {evaluate(dense, test.x, test.y):.2f} on {len(test)} test images; "
          f"{len(layers)} layers, weights only; QAT steps {steps} (finetune budgets {args.qat_budgets})")  # fmt: skip
    qat_header = " ".join(f"{f'QAT {n}':>9}" for n in steps)
    print(f"{'bits':>4} {'clip':>4} {'rel. error':>10} {'PTQ top-1':>9} {qat_header} {'ratio s':>7} "
          f"{'shift med':>9} {'shift max':>9}")  # fmt: skip
    for bits in args.bits:
        for clip in args.clips:
            error, seconds = relative_error(dense, bits, clip)
            per_layer = dict.fromkeys(layers, bits)
            ptq = evaluate(fakequant.quantize_model(dense, per_layer, weight_clip=clip), test.x, test.y)
            qat, shift_median, shift_max = [float("nan")] * len(steps), float("nan"), float("nan")
            for i, budget in enumerate(args.qat_budgets if bits in args.qat_bits else []):
                net = recovery.recover(
                    copy.deepcopy(dense), seed=0, budget=budget, pruned=False, bits=per_layer,
                    scheme=fakequant.QuantScheme(clip, activations=False),
                )  # fmt: skip
                qat[i] = evaluate(fakequant.quantize_model(net, per_layer, weight_clip=clip), test.x, test.y)
                shift = ratio_shift(dense, net, bits, clip)
                shift_median, shift_max = float(shift.median()), float(shift.max())
            qat_text = " ".join(f"{a:>9.2f}" for a in qat)
            print(f"{bits:>4} {clip:>4} {error:>10.5f} {ptq:>9.2f} {qat_text} {seconds:>7.2f} "
                  f"{shift_median:>9.3f} {shift_max:>9.3f}", flush=True)  # fmt: skip
