"""Semantic manipulations: exact counterfactuals of shapes-world scenes.

Where the paper asks a generative editor to change one attribute of a photo, the shapes world can
change one scene parameter and render again, which gives the true edited image.
"""

import numpy as np

from featlab.data.shapes import Scene, counterfactual, render


def counterfactual_images(
    scenes: list[Scene], change: str, seed: int, image_size: int, first_index: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Render each scene with one parameter (`change`, see shapes.CHANGEABLE) changed.

    Scene i is changed with `np.random.default_rng((seed, first_index + i))`, so the result does
    not depend on how the set was split into chunks.

    Returns:
        The (N, image_size, image_size, 3) uint8 images and the (N,) int64 labels of the changed
        scenes (a "class" change changes every label).
    """
    images = np.empty((len(scenes), image_size, image_size, 3), dtype=np.uint8)
    labels = np.empty(len(scenes), dtype=np.int64)
    for i, scene in enumerate(scenes):
        changed = counterfactual(scene, change, np.random.default_rng((seed, first_index + i)))
        images[i] = render(changed, image_size)
        labels[i] = changed.label
    return images, labels
