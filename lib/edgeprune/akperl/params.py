"""The ``akperl`` section of params.yaml (stage 30_akperl_dqn).

Defaults are the TINY profile's values, so the notebook runs under nbval in seconds;
params.yaml (quick) and ``profiles/paper.yaml`` override them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from edgeprune.fields import ConditionSet, ModelNames, repeats_field
from edgeprune.schema import Section

LEVELS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
"""The agent's pruning levels per unit: the share of its channels removed (1.0 = the whole block, where it can go)."""
ABLATIONS = ("no_stats", "no_power", "uniform")


class DQNParams(Section):
    """Stable-Baselines3 ``DQN`` hyper-parameters (MLP Q-network)."""

    steps: int = Field(40, ge=10, description="environment steps per training run")
    learning_rate: float = Field(1e-3, gt=0, description="Adam learning rate of the Q-network")
    buffer_size: int = Field(10_000, ge=10, description="replay buffer capacity (transitions)")
    learning_starts: int = Field(10, ge=0, description="random-action steps before the first update")
    batch_size: int = Field(32, ge=1, description="replay minibatch size")
    gamma: float = Field(1.0, gt=0, le=1, description="discount; 1 keeps the shaped return equal to R (finite episodes)")
    n_steps: int = Field(3, ge=1, description="n-step returns (faster credit assignment over a short budget)")
    train_freq: int = Field(1, ge=1, description="environment steps between gradient updates")
    gradient_steps: int = Field(1, ge=1, description="gradient updates each time (cheap: the Q-network is a small MLP)")
    target_update_interval: int = Field(10, ge=1, description="steps between target-network copies")
    exploration_fraction: float = Field(0.4, gt=0, le=1, description="share of steps over which epsilon decays")
    exploration_final_eps: float = Field(0.05, ge=0, le=1, description="final epsilon of epsilon-greedy")
    net_arch: list[int] = Field(default_factory=lambda: [64, 64], min_length=1, description="hidden layer widths")


class AkperlParams(Section):
    """AKPERL: a DQN picks per-layer filter-pruning levels, rewarded for accuracy, against power and intensity."""

    models: ModelNames = Field(default_factory=lambda: ["mobilenet_v3_small"], min_length=1, description="models (DVC matrix)")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="agent / fine-tuning seeds")
    ablation_seeds: list[int] | None = Field(None, description="seeds of the ablation runs; None = the same as seeds")
    ablations: list[Literal["no_stats", "no_power", "uniform"]] = Field(
        default_factory=lambda: list(ABLATIONS), description="no input statistics in the state / beta=0 / uniform layer weights"
    )
    controls: list[Literal["random", "greedy"]] = Field(
        default_factory=lambda: ["random", "greedy"],
        description="search controls per seed (akperl.controls): random = uniform random levels, as many configurations "
        "as the agent's episodes, best by R; greedy = sensitivity allocation to target_sparsity (needs the target enforced)",
    )
    conditions: ConditionSet | None = Field(
        default_factory=lambda: ["clean", "low_light"], description="input conditions the policy sees; None = shift.conditions"
    )
    # reward
    alpha: list[float] = Field(default_factory=lambda: [1.0], min_length=1, description="grid of accuracy weights (> 0)")
    beta: list[float] = Field(default_factory=lambda: [0.5], min_length=1, description="grid of power weights (>= 0)")
    gamma: list[float] = Field(default_factory=lambda: [0.1], min_length=1, description="grid of intensity weights (>= 0)")
    lam: float = Field(0.01, ge=0, description="lambda: weight of the L1 norm of the episode's actions")
    layer_weights: Literal["mac_share", "uniform"] | dict[str, float] = Field(
        "mac_share", description="per-layer coefficient weights w_i (alpha_i = alpha w_i ...): by MAC share, uniform, or by layer name"
    )
    target_sparsity: float = Field(0.45, ge=0, lt=1, description="grid search keeps combinations reaching this channel sparsity")
    enforce_target_sparsity: bool = Field(
        True, description="raise actions so every episode reaches target_sparsity (AMC's constraint); false: the paper's pure reward"
    )
    grid_steps: int = Field(40, ge=10, description="DQN steps per grid-search run")
    # the environment
    min_mac_share: float = Field(0.05, ge=0, lt=1, description="layers (dependency groups) below this MAC share stay dense")
    round_to: int = Field(
        8, ge=1, description="channels a unit keeps, rounded to the nearest multiple (the x86 int8 kernels' fast path "
        "wants multiples of 8; unrounded AKPERL networks ran 7x slower in int8 than fp32); 1 = off"
    )
    accuracy_every: int = Field(2, ge=1, description="measure accuracy every k-th step (and at the episode's end)")
    val_images: int = Field(32, ge=2, description="fixed validation subset for the accuracy estimate during search")
    calib_images: int = Field(16, ge=2, description="training images for BatchNorm recalibration during search")
    stats_pool: int = Field(64, ge=2, description="training images from which each episode's input batch is drawn")
    stats_batch: int = Field(16, ge=2, description="images per incoming batch (input-condition statistics)")
    power_profile: str = Field("rpi4", min_length=1, description="device profile of the modelled power (edgeprune.power)")
    frame_rate_hz: float = Field(30.0, gt=0, description="inference rate at which power above idle is reported")
    energy_model: Literal["board", "dynamic_only"] = Field(
        "board", description="the reward's power term: board (active power over the modelled time, the one energy "
        "model) or dynamic_only (ablation: MAC and byte energies, nothing for time)",
    )  # fmt: skip
    dqn: DQNParams = DQNParams()
    # the chosen policy, fine-tuned (with the shared `finetune` budget) and measured
    eval_images: int | None = Field(None, ge=10, description="stratified test subset for the final measurement; None = all")
    latency_repeats: int = repeats_field(5)
    # the non-stationary stream
    stream_seeds: list[int] | None = Field(None, description="seeds whose networks run the stream (among seeds); None = seeds")
    stream_segments: int = Field(5, ge=1, description="condition segments in the stream (conditions cycle in a seeded order)")
    stream_batches: int = Field(2, ge=1, description="batches per segment")
    stream_batch_size: int = Field(16, ge=2)

    @field_validator("seeds", "ablation_seeds", "stream_seeds")
    @classmethod
    def _seeds(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or len(set(value)) != len(value) or min(value) < 0):
            raise ValueError(f"seeds must be a non-empty list of distinct non-negative integers, got {value}")
        return value

    @field_validator("alpha", "beta", "gamma")
    @classmethod
    def _grid(cls, value: list[float], info) -> list[float]:
        if len(set(value)) != len(value):
            raise ValueError(f"{info.field_name} grid has duplicate values: {value}")
        if info.field_name == "alpha" and min(value) <= 0:
            raise ValueError(f"alpha values must be > 0 (accuracy must count), got {value}")
        if min(value) < 0:
            raise ValueError(f"{info.field_name} values must be >= 0, got {value}")
        return value

    @field_validator("layer_weights")
    @classmethod
    def _weights(cls, value: str | dict[str, float]) -> str | dict[str, float]:
        if isinstance(value, dict) and (not value or min(value.values()) < 0 or sum(value.values()) <= 0):
            raise ValueError(f"layer_weights by name must be non-negative with a positive sum, got {value}")
        return value

    @field_validator("power_profile")
    @classmethod
    def _profile(cls, value: str) -> str:
        from edgeprune.power.profiles import available_profiles

        if value not in available_profiles():
            raise ValueError(f"unknown device profile {value!r}; shipped: {available_profiles()}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AkperlParams:
        stray = sorted(set(self.stream_seeds or []) - set(self.seeds))
        if stray:
            raise ValueError(f"stream_seeds {stray} are not among seeds {self.seeds}")
        if self.stats_batch > self.stats_pool:
            raise ValueError(f"stats_batch ({self.stats_batch}) must not exceed stats_pool ({self.stats_pool})")
        if "greedy" in self.controls and not (self.enforce_target_sparsity and self.target_sparsity > 0):
            raise ValueError(
                "controls has greedy, which allocates to a sparsity target: it needs target_sparsity > 0 and "
                "enforce_target_sparsity true (or leave greedy out of controls)"
            )
        if self.dqn.learning_starts >= min(self.dqn.steps, self.grid_steps):
            raise ValueError(
                f"dqn.learning_starts ({self.dqn.learning_starts}) must be below dqn.steps and grid_steps "
                f"({self.dqn.steps}, {self.grid_steps})"
            )
        return self
