"""Lens settings: which morphs are made, how they are matched to a budget, and the warp fit."""

import dataclasses

METHODS = (
    "steerable_phase",
    "steerable_phase_amplitude",
    "fourier_phase",
    "fourier_phase_amplitude",
    "pixel",
)
VARIANTS = ("one_step", "iterative")
OBJECTIVES = ("log_probability", "logit_margin")


@dataclasses.dataclass(frozen=True)
class WarpSettings:
    """The smooth warp (and gain) fitted to a morph's change."""

    grid: int = 8  # control points per side of the displacement and gain fields
    smoothness: float = 0.01  # weight of the mean squared difference of neighbouring controls
    steps: int = 100  # Adam steps
    lr: float = 0.1  # Adam learning rate (pixels of displacement per step, roughly)


@dataclasses.dataclass(frozen=True)
class LensSettings:
    """How the morphs are made, matched and scored."""

    budgets: tuple[float, ...] = (2.0, 4.0)  # L2 of the final frame's change, pixels in [0, 1]
    methods: tuple[str, ...] = (
        "steerable_phase",
        "steerable_phase_amplitude",
        "fourier_phase",
        "pixel",
    )
    variants: tuple[str, ...] = VARIANTS
    frames: int = 5  # frames per morph, the source first
    objective: str = "log_probability"  # or logit_margin (target logit minus the best other)
    orientations: int = 4  # pyramid orientations (the steerable filters' order + 1)
    height: int | None = None  # pyramid scales; None: as many as the image side allows
    max_steps: int = 100  # iterative: most gradient steps; then the walk goes on straight
    phase_step: float = 0.2  # iterative: largest change of a phase or log-amplitude per step
    pixel_step: float = 0.05  # iterative: largest change of a pixel per step
    budget_tolerance: float = 0.002  # relative distance to the budget that counts as matched
    warp: WarpSettings = WarpSettings()
    threads: int = 0  # torch CPU threads; 0 keeps torch's default

    def __post_init__(self) -> None:
        for name, allowed, values in (
            ("methods", METHODS, self.methods),
            ("variants", VARIANTS, self.variants),
            ("objective", OBJECTIVES, (self.objective,)),
        ):
            unknown = set(values) - set(allowed)
            if unknown:
                raise ValueError(f"lens.{name}: unknown {sorted(unknown)}; choose from {allowed}")
        if not self.budgets or min(self.budgets) <= 0:
            raise ValueError(f"lens.budgets must be positive L2 distances, got {self.budgets}")
        if self.frames < 2:
            raise ValueError("lens.frames must be at least 2 (the source and the final frame)")
        object.__setattr__(self, "budgets", tuple(sorted(float(b) for b in self.budgets)))
        object.__setattr__(self, "methods", tuple(self.methods))
        object.__setattr__(self, "variants", tuple(self.variants))
        if isinstance(self.warp, dict):
            object.__setattr__(self, "warp", WarpSettings(**self.warp))


def comparison_name(method: str, variant: str, budget: float) -> str:
    """The table's `comparison` of a morph: 'steerable_phase_iterative_l2_2'."""
    return f"{method}_{variant}_l2_{budget:g}"
