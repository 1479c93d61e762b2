"""The shapes world: seeded, procedurally rendered scenes with exact counterfactuals.

A scene is one object (its class is the label) with a colour, size, position and rotation, on a
background that is a smooth gradient between two muted colours. Rendering is deterministic, so
changing one scene parameter and rendering again gives the exact counterfactual image that a
generative editor approximates on real photos.
"""

import dataclasses
import math

import numpy as np
from PIL import Image, ImageDraw

from featlab.data.images import ImageSet

CLASSES = ("circle", "square", "triangle", "cross", "star")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (40, 80, 230),
    "yellow": (235, 215, 40),
    "magenta": (210, 50, 200),
    "cyan": (40, 210, 220),
    "orange": (245, 140, 30),
    "white": (240, 240, 240),
}
BACKGROUNDS = {
    "slate": (70, 80, 95),
    "sand": (150, 135, 110),
    "moss": (85, 100, 70),
    "plum": (95, 70, 90),
    "charcoal": (40, 40, 45),
    "stone": (125, 125, 120),
}
# Scene parameters a counterfactual may change. (Not rotation: a circle, or a square turned by
# 90 degrees, would render unchanged.)
CHANGEABLE = ("class", "colour", "size", "position", "background")
_SUPERSAMPLE = 4  # render at 4x and downsample, for anti-aliased edges


@dataclasses.dataclass(frozen=True)
class Scene:
    """One shapes-world scene; sizes and positions are fractions of the image side."""

    shape: str
    colour: str
    size: float  # radius of the object's circumscribed circle
    position: tuple[float, float]  # (x, y) of the object's centre
    rotation: float  # degrees, counter-clockwise
    background: tuple[str, str]  # gradient from the first colour (top) to the second (bottom)

    @property
    def label(self) -> int:
        return CLASSES.index(self.shape)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Scene":
        return cls(
            shape=values["shape"],
            colour=values["colour"],
            size=float(values["size"]),
            position=tuple(values["position"]),
            rotation=float(values["rotation"]),
            background=tuple(values["background"]),
        )


@dataclasses.dataclass(frozen=True)
class ShapesSettings:
    """How many scenes to draw and from which ranges."""

    image_size: int = 64  # side of the square image in pixels
    n_train: int = 2000  # scenes in the train split
    n_test: int = 400  # scenes in the test split
    size_range: tuple[float, float] = (0.18, 0.32)  # object radius, fraction of the side
    seed: int = 0  # the same seed draws the same scenes


def sample_scene(rng: np.random.Generator, settings: ShapesSettings) -> Scene:
    """Draw one scene whose object lies entirely inside the image."""
    size = float(rng.uniform(*settings.size_range))
    low, high = size + 0.02, 1.0 - size - 0.02
    return Scene(
        shape=str(rng.choice(CLASSES)),
        colour=str(rng.choice(list(COLOURS))),
        size=size,
        position=(float(rng.uniform(low, high)), float(rng.uniform(low, high))),
        rotation=float(rng.uniform(0.0, 360.0)),
        background=tuple(str(b) for b in rng.choice(list(BACKGROUNDS), size=2, replace=False)),
    )


def sample_scenes(settings: ShapesSettings) -> tuple[list[Scene], list[str]]:
    """Draw the scenes of both splits; returns the scenes and their split names."""
    rng = np.random.default_rng(settings.seed)
    n_total = settings.n_train + settings.n_test
    scenes = [sample_scene(rng, settings) for _ in range(n_total)]
    splits = ["train"] * settings.n_train + ["test"] * settings.n_test
    return scenes, splits


def _outline(shape: str, radius: float) -> list[tuple[float, float]]:
    """Vertices of a polygonal shape around the origin, before rotation."""
    if shape == "square":
        return [(math.cos(a), math.sin(a)) for a in np.deg2rad([45, 135, 225, 315])]
    if shape == "triangle":
        return [(math.cos(a), math.sin(a)) for a in np.deg2rad([90, 210, 330])]
    if shape == "star":
        angles = np.deg2rad(np.arange(10) * 36 + 90)
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return [(r * math.cos(a), r * math.sin(a)) for r, a in zip(radii, angles, strict=True)]
    if shape == "cross":
        w = 0.33  # half-width of each bar
        return [(w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w), (-w, -1), (w, -1),
                (w, -w), (1, -w), (1, w), (w, w)]  # fmt: skip
    raise ValueError(f"unknown shape {shape!r}; known shapes: {', '.join(CLASSES)}")


def render(scene: Scene, image_size: int) -> np.ndarray:
    """Render a scene to a uint8 image of shape (image_size, image_size, 3)."""
    side = image_size * _SUPERSAMPLE
    # 1. Background: a vertical gradient between the two background colours.
    top, bottom = (np.array(BACKGROUNDS[name], dtype=np.float64) for name in scene.background)
    t = np.linspace(0.0, 1.0, side)[:, None, None]
    background = (1 - t) * top + t * bottom
    canvas = Image.fromarray(np.broadcast_to(background, (side, side, 3)).astype(np.uint8))
    # 2. The object, drawn at the scene's position, size and rotation (y grows downwards).
    draw = ImageDraw.Draw(canvas)
    cx, cy = scene.position[0] * side, scene.position[1] * side
    radius = scene.size * side
    colour = COLOURS[scene.colour]
    if scene.shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour)
    else:
        theta = math.radians(scene.rotation)
        cos, sin = math.cos(theta), math.sin(theta)
        points = [
            (cx + radius * (x * cos - y * sin), cy - radius * (x * sin + y * cos))
            for x, y in _outline(scene.shape, radius)
        ]
        draw.polygon(points, fill=colour)
    # 3. Downsample for anti-aliased edges.
    small = canvas.resize((image_size, image_size), Image.Resampling.LANCZOS)
    return np.asarray(small, dtype=np.uint8)


def counterfactual(scene: Scene, change: str, rng: np.random.Generator) -> Scene:
    """The same scene with exactly one parameter changed to a different value."""
    if change not in CHANGEABLE:
        raise ValueError(
            f"unknown counterfactual change {change!r}; choose one of {list(CHANGEABLE)}"
        )
    if change == "class":
        return dataclasses.replace(scene, shape=_other(rng, CLASSES, scene.shape))
    if change == "colour":
        return dataclasses.replace(scene, colour=_other(rng, list(COLOURS), scene.colour))
    if change == "background":
        names = [name for name in BACKGROUNDS if name not in scene.background]
        return dataclasses.replace(
            scene, background=tuple(rng.choice(names, 2, replace=False).tolist())
        )
    if change == "size":
        # Shrink by 30% or grow by 30%; growing is only offered while the object still fits
        # with at least a 15% larger radius, so the change is always visible.
        limit = min(*scene.position, 1 - scene.position[0], 1 - scene.position[1]) - 0.02
        sizes = [scene.size * 0.7] + [min(scene.size * 1.3, limit)] * (limit >= scene.size * 1.15)
        return dataclasses.replace(scene, size=float(rng.choice(sizes)))
    # change == "position": move the object to another place where it still fits.
    low, high = scene.size + 0.02, 1.0 - scene.size - 0.02
    return dataclasses.replace(
        scene, position=(float(rng.uniform(low, high)), float(rng.uniform(low, high)))
    )


def _other(rng: np.random.Generator, values, current: str) -> str:
    return str(rng.choice([value for value in values if value != current]))


def render_image_set(settings: ShapesSettings) -> tuple[ImageSet, list[Scene]]:
    """Draw and render the scenes of both splits; image ids are their zero-padded positions."""
    scenes, splits = sample_scenes(settings)
    images = np.stack([render(scene, settings.image_size) for scene in scenes])
    image_set = ImageSet(
        images=images,
        labels=np.array([scene.label for scene in scenes], dtype=np.int64),
        splits=np.array(splits),
        image_ids=np.array([f"shapes-{i:06d}" for i in range(len(scenes))]),
    )
    return image_set, scenes
