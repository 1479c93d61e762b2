"""Settings of the edits stage, light to import: the workflow checks them before any job."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class EditSettings:
    """Which magnifications and truncations of an edit to read, on which images."""

    alphas: tuple[float, ...] = (-1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0)  # x + alpha E(x)
    ranks: tuple[int, ...] = (1, 4, 16)  # k of the truncations; those above C are left out
    n_images: int = 16  # first test images read by the backbone
    invert_images: int = 6  # of those, how many FeatInv inverts (and the strips show)
    direction_images: int = 256  # first train images whose displacements give the directions
    seed: int = 0  # the control's noise
    lens_budget: float = 4.0  # image L2 of the input-space lens's morph (the lens stage's largest)
    batch_size: int = 128  # feature maps per forward pass
    threads: int = 0  # torch CPU threads; 0 keeps torch's default

    def __post_init__(self) -> None:
        checks = (
            ("alphas", len(self.alphas) > 0, "list at least one alpha"),
            ("ranks", all(k >= 1 for k in self.ranks), "ranks are at least 1"),
            ("n_images", self.n_images >= 1, "at least 1"),
            ("invert_images", 0 <= self.invert_images <= self.n_images, "0 to n_images"),
            ("direction_images", self.direction_images >= 1, "at least 1"),
            ("lens_budget", self.lens_budget > 0, "a positive image-space L2 distance"),
        )
        for key, ok, expected in checks:
            if not ok:
                raise ValueError(f"edits.{key}={getattr(self, key)!r}: {expected}")
