"""The three papers' claims, each stated so that one of our measurements can check it.

Numbers come from the papers as the project's steering notes summarise them (``ANCHORS.md``
in the shared folder beside the checkout, not in this repository: "What the three papers
claim"). Where a claim is relative (a drop, a reduction, a ratio) it is stated relative here
too, so it can be checked on CIFAR-10 and our devices; the arithmetic from the paper's table
is written in the claim text. Tolerances marked "ours" are this project's choice, not the
paper's. A claim whose measurement depends on how long pruned networks were recovered
(``recovered=True``: accuracies and their differences) is checked at every recovery budget;
the rule that turns measurements into a verdict is :mod:`edgeprune.verdicts`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["CLAIMS", "KINDS", "PAPERS", "Claim"]

PAPERS = ("AKPERL", "QSA", "PPO")
KINDS = ("at_least", "at_most", "within", "difference_at_least", "qualitative")

Kind = Literal["at_least", "at_most", "within", "difference_at_least", "qualitative"]


@dataclass(frozen=True)
class Claim:
    """One checkable statement of a paper.

    ``metric`` says exactly what measurement of ours is compared, in ``unit``; ``value`` is the
    paper's number in that unit (None for a qualitative claim); ``tolerance`` is the slack
    allowed (:mod:`edgeprune.verdicts`); ``digits`` the decimals shown in the table;
    ``recovered`` whether the measurement depends on the recovery budget (then it is
    checked at each one); ``ours`` marks a check this project adds (a control the field
    expects of the paper's method), not a statement of the paper, which the table labels so.
    """

    id: str
    paper: str
    text: str
    metric: str
    value: float | None
    kind: Kind
    unit: str = ""
    tolerance: float = 0.0
    testable_here: bool = True
    why_not: str = ""
    note: str = ""
    digits: int = 1
    recovered: bool = False
    ours: bool = False

    def __post_init__(self) -> None:
        if self.paper not in PAPERS:
            raise ValueError(f"claim {self.id!r}: paper must be one of {PAPERS}, got {self.paper!r}")
        if self.kind not in KINDS:
            raise ValueError(f"claim {self.id!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if (self.value is None) != (self.kind == "qualitative"):
            raise ValueError(f"claim {self.id!r}: value must be None exactly when kind is 'qualitative'")
        if not self.tolerance >= 0:
            raise ValueError(f"claim {self.id!r}: tolerance must be >= 0, got {self.tolerance}")
        if self.kind == "within" and self.tolerance == 0:
            raise ValueError(f"claim {self.id!r}: kind 'within' needs a positive tolerance")
        if not self.testable_here and not self.why_not:
            raise ValueError(f"claim {self.id!r}: an untestable claim needs why_not")

    @property
    def threshold(self) -> float:
        """The bound our number is judged against (0 for a qualitative claim; the band's centre for 'within')."""
        if self.kind == "qualitative":
            return 0.0
        if self.kind == "at_most":
            return self.value + self.tolerance
        if self.kind == "within":
            return self.value
        return self.value - self.tolerance

    @property
    def source(self) -> str:
        """Whose statement it is, as the table shows it: the paper, or this project's check of it."""
        return f"{self.paper} (our check)" if self.ours else self.paper

    @property
    def paper_number(self) -> str:
        """The paper's number as shown in the table, e.g. ``"≤ 0.5 pt"`` or ``"4 ± 0.25 x"``."""
        if self.value is None:
            return "direction only"
        unit = f" {self.unit}" if self.unit else ""
        number = f"{round(self.value, 2):g}"
        if self.kind == "within":
            return f"{number} ± {self.tolerance:g}{unit}"
        prefix = "≤" if self.kind == "at_most" else "≥"
        slack = f" (tol {self.tolerance:g})" if self.tolerance else ""
        return f"{prefix} {number}{unit}{slack}"


_NO_IMAGENET = (
    "no ImageNet-scale run here: ImageNet is ~150 GB and training/compressing a network on it "
    "takes GPU-days, beyond the project's 2-core CPU budget (quick profile) and its paper "
    "profile, which run CIFAR-10; a class-folder ImageNet subset can be selected in params.yaml"
)
_DENSITY_GAIN = (
    "relative gain in performance density (top-1 % per MB stored) of PPO over static prune+quant (%)"
)
_MODELLED_POWER = "power is modelled from a device profile unless a real meter (INA3221/INA219/RAPL) was read"

CLAIMS: list[Claim] = [
    # ---------------------------------------------------------------- AKPERL (DQN kernel pruning)
    Claim(
        id="akperl_acc_drop",
        paper="AKPERL",
        text="AKPERL keeps MobileNetV3 top-1 within 0.5 pt of the unpruned baseline "
        "(Table 1: 72.5% -> 72.0%)",
        metric="top-1 of unpruned baseline minus top-1 of AKPERL (pt)",
        value=0.5,
        kind="at_most",
        unit="pt",
        recovered=True,
    ),
    Claim(
        id="akperl_vs_l1_acc",
        paper="AKPERL",
        text="Static L1-norm pruning loses 4.5 pt (72.5 -> 68.0) where AKPERL loses 0.5: "
        "AKPERL is 4.0 pt ahead",
        metric="top-1 of AKPERL minus top-1 of L1-norm filter ranking, Li et al. (pt)",
        value=4.0,
        kind="difference_at_least",
        unit="pt",
        recovered=True,
    ),
    Claim(
        id="akperl_vs_l1_regularised_acc",
        paper="AKPERL",
        text="Static L1 pruning (\"L1 regularization applied during training\") loses 4.5 pt (72.5 -> 68.0) "
        "where AKPERL loses 0.5: AKPERL is 4.0 pt ahead",
        metric="top-1 of AKPERL minus top-1 of L1-regularised training, network slimming (pt)",
        value=4.0,
        kind="difference_at_least",
        unit="pt",
        recovered=True,
    ),
    Claim(
        id="akperl_vs_magnitude_acc",
        paper="AKPERL",
        text="Static magnitude pruning loses 5.0 pt (72.5 -> 67.5) where AKPERL loses 0.5: "
        "AKPERL is 4.5 pt ahead",
        metric="top-1 of AKPERL minus top-1 of magnitude pruning (pt)",
        value=4.5,
        kind="difference_at_least",
        unit="pt",
        recovered=True,
    ),
    Claim(
        id="akperl_power_reduction",
        paper="AKPERL",
        text="AKPERL cuts inference power from 150 mW to 100 mW, i.e. by 33.3%",
        metric="power reduction of AKPERL relative to the unpruned baseline (%)",
        value=100.0 * (150 - 100) / 150,
        kind="at_least",
        unit="%",
        note=_MODELLED_POWER,
    ),
    Claim(
        id="akperl_power_vs_static",
        paper="AKPERL",
        text="AKPERL draws less power than both static baselines (100 mW vs L1 120 mW, magnitude 115 mW): "
        "15 mW below the better one, 10% of the 150 mW baseline",
        metric="power of the lower-power static baseline minus power of AKPERL, in % of baseline power",
        value=100.0 * (115 - 100) / 150,
        kind="difference_at_least",
        unit="%",
        note=_MODELLED_POWER,
    ),
    Claim(
        id="akperl_latency_reduction",
        paper="AKPERL",
        text="AKPERL lowers latency from 20 ms to 19 ms, i.e. by 5%",
        metric="latency reduction of AKPERL relative to the unpruned baseline (%)",
        value=100.0 * (20 - 19) / 20,
        kind="at_least",
        unit="%",
    ),
    Claim(
        id="akperl_sparsity",
        paper="AKPERL",
        text="AKPERL reaches 45% sparsity (L1 30%, magnitude 35%) while keeping accuracy",
        metric="sparsity of the AKPERL-pruned model (%)",
        value=45.0,
        kind="at_least",
        unit="%",
    ),
    Claim(
        id="akperl_significance",
        paper="AKPERL",
        text="AKPERL's improvements over the baselines are significant, p < 0.05",
        metric="largest Holm-corrected Welch p-value of AKPERL vs each static baseline on top-1",
        value=0.05,
        kind="at_most",
        digits=3,
        note="a p-value has no CI: pass a half-width of 0",
        recovered=True,
    ),
    Claim(
        id="akperl_dqn_convergence",
        paper="AKPERL",
        text="The DQN converges after about 200,000 iterations",
        metric="DQN environment steps until the episode reward plateaus",
        value=200_000.0,
        kind="at_most",
        unit="steps",
        digits=0,
        note="a run stopped before its reward plateaus gives no measurement",
    ),
    Claim(
        id="akperl_vs_random_search",
        paper="AKPERL",
        text="The DQN finds a better configuration than random search given the same number of scored "
        "configurations (same units, floor, evaluator and reward; Li et al. CVPR 2022 found random search "
        "as good as agents)",
        metric="episode reward R of the DQN's clean configuration minus R of the best of equal-budget random "
        "search (search time, clean condition)",
        value=0.0,
        kind="difference_at_least",
        digits=3,
        ours=True,
        note="not a claim of the paper: a control this project adds; both recovered networks are in Table 1",
    ),
    Claim(
        id="akperl_vs_greedy_search",
        paper="AKPERL",
        text="The DQN finds a better configuration than a greedy sensitivity allocation to the same sparsity "
        "target (NetAdapt / HAQ-style: each unit's drop measured alone, levels raised where they cost least)",
        metric="episode reward R of the DQN's clean configuration minus R of the greedy allocation (search time, "
        "clean condition)",
        value=0.0,
        kind="difference_at_least",
        digits=3,
        ours=True,
        note="not a claim of the paper: a control this project adds; both recovered networks are in Table 1",
    ),
    Claim(
        id="akperl_dynamic_vs_static",
        paper="AKPERL",
        text="Dynamic switching beats static pruning on a non-stationary stream (AKPERL 'adapts to varying "
        "input data')",
        metric="mean stream top-1 of the switching controller minus that of the best single network of its "
        "bank, chosen in hindsight (pt); the oracle switcher's gap bounds what any controller could gain",
        value=0.0,
        kind="difference_at_least",
        unit="pt",
        digits=2,
        note="the stream's networks are recovered at the primary budget; the oracle knows each batch's condition",
    ),
    Claim(
        id="akperl_monitoring_ablation",
        paper="AKPERL",
        text="Removing the monitoring system (accuracy/power/input statistics in the state) hurts",
        metric="episode reward of full AKPERL minus the agent without monitoring features (positive = hurts)",
        value=None,
        kind="qualitative",
        digits=2,
    ),
    # ---------------------------------------------------------------- QSA (quantized sparse autoencoders)
    Claim(
        id="qsa_cifar10_compression",
        paper="QSA",
        text="CIFAR-10: QSA gives an 8x model-size reduction (with a 1% accuracy drop, see qsa_cifar10_drop)",
        metric="stored size of the baseline / stored size of the QSA-compressed model (x)",
        value=8.0,
        kind="at_least",
        unit="x",
    ),
    Claim(
        id="qsa_cifar10_drop",
        paper="QSA",
        text="CIFAR-10: the 8x reduction costs 1% top-1",
        metric="top-1 of unpruned baseline minus top-1 of QSA at its compression (pt)",
        value=1.0,
        kind="at_most",
        unit="pt",
        recovered=True,
    ),
    Claim(
        id="qsa_cifar10_static_drop",
        paper="QSA",
        text="CIFAR-10: static pruning drops 5% at the same compression",
        metric="top-1 of unpruned baseline minus top-1 of static pruning at QSA's compression (pt)",
        value=5.0,
        kind="within",
        tolerance=1.0,
        unit="pt",
        note="tolerance ±1 pt is ours",
        recovered=True,
    ),
    Claim(
        id="qsa_cifar10_vs_static",
        paper="QSA",
        text="CIFAR-10: QSA beats static pruning at the same compression by 4 pt (5% - 1% drop)",
        metric="top-1 of QSA minus top-1 of static pruning at the same compression (pt)",
        value=4.0,
        kind="difference_at_least",
        unit="pt",
        recovered=True,
    ),
    Claim(
        id="qsa_dynamic_vs_static",
        paper="QSA",
        text="QSA with its drift controller beats static pruning on a non-stationary stream (QSA is 'superior "
        "... particularly in non-stationary environments')",
        metric="mean stream top-1 of QSA with its controller minus that of the best single network of its bank "
        "(the deployed QSA network and one re-pruned ahead of time per condition), chosen in hindsight (pt)",
        value=0.0,
        kind="difference_at_least",
        unit="pt",
        digits=2,
        note="int8 networks; the oracle knows each batch's condition and picks the bank network best on it",
    ),
    Claim(
        id="qsa_quantization_alone",
        paper="QSA",
        text="Quantization alone gives 4x",
        metric="stored size of the fp32 baseline / stored size of its int8 version (x)",
        value=4.0,
        kind="within",
        tolerance=0.25,
        unit="x",
        digits=2,
        note="tolerance ±0.25x is ours (tensors kept in fp32, e.g. biases, pull the ratio below 4)",
    ),
    Claim(
        id="qsa_imagenet",
        paper="QSA",
        text="ImageNet: 6x model-size reduction with a 2% drop (static pruning drops 4%)",
        metric="stored size of the baseline / stored size of the QSA-compressed model on ImageNet (x)",
        value=6.0,
        kind="at_least",
        unit="x",
        testable_here=False,
        why_not=_NO_IMAGENET,
    ),
    # ---------------------------------------------------------------- PPO prune + quant
    Claim(
        id="ppo_density_mobilenet",
        paper="PPO",
        text="MobileNet: 6-20% higher performance density than static pruning + quantization "
        "at maintained accuracy",
        metric=_DENSITY_GAIN,
        value=6.0,
        kind="at_least",
        unit="%",
        note="the paper gives 6-20% for MobileNet and VGG-19 together; the lower end is tested",
        recovered=True,
    ),
    Claim(
        id="ppo_density_vgg19",
        paper="PPO",
        text="VGG-19: 6-20% higher performance density than static pruning + quantization "
        "at maintained accuracy",
        metric=_DENSITY_GAIN,
        value=6.0,
        kind="at_least",
        unit="%",
        note="the paper gives 6-20% for MobileNet and VGG-19 together; the lower end is tested",
        recovered=True,
    ),
    Claim(
        id="ppo_accuracy_maintained",
        paper="PPO",
        text="The density gain comes at maintained accuracy",
        metric="top-1 of the unpruned baseline minus top-1 of PPO prune+quant (pt)",
        value=0.0,
        kind="at_most",
        tolerance=1.0,
        unit="pt",
        note="the paper gives no number for 'maintained'; the 1 pt tolerance is ours",
        recovered=True,
    ),
    Claim(
        id="ppo_vs_random_search",
        paper="PPO",
        text="PPO's choice beats equal-budget random search's on PPO's own objective (uniform random per-layer "
        "rate and bit-width, as many configurations as PPO's episodes, chosen and recovered by the same rule)",
        metric="PPO's reward minus the random-search control's, both after recovery on the test split: density "
        "relative to dense minus 1 per point below the accuracy floor",
        value=0.0,
        kind="difference_at_least",
        digits=2,
        recovered=True,
        ours=True,
        note="not a claim of the paper: a control this project adds",
    ),
    Claim(
        id="ppo_vs_greedy_search",
        paper="PPO",
        text="PPO's choice beats an equal-budget greedy sensitivity allocation on PPO's own objective "
        "(HAQ / NetAdapt-style: each move scored alone, then the moves of least drop per byte saved above the "
        "floor; chosen and recovered by the same rule)",
        metric="PPO's reward minus the greedy control's, both after recovery on the test split: density relative "
        "to dense minus 1 per point below the accuracy floor",
        value=0.0,
        kind="difference_at_least",
        digits=2,
        recovered=True,
        ours=True,
        note="not a claim of the paper: a control this project adds; with fewer episodes than moves the greedy "
        "control scores the moves that could save the most bytes",
    ),
]
