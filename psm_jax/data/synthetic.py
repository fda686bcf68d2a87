"""A procedurally generated personalised-saliency release: no download, deterministic given a seed.

Scenes: a smooth textured background with 3-6 objects from `CATEGORIES` (face-like, text-like,
high-contrast disc, stripes, bright triangle) at random positions and sizes.

Observers: each has a preference over the categories, softmax(population_logits + noise), drawn
around a shared population preference; a centre-bias weight; and a dispersion (how far from an
object's centre their fixations land, relative to its size). On each of `viewings` viewings of an
image an observer makes 1 + Poisson(mean_fixations - 1) fixations: with probability centre_bias
near the image centre, otherwise on an object chosen with probability proportional to
preference[category] * sqrt(object size). Durations are 80 ms + Gamma(2, 110 ms).

The ground-truth preference vectors are returned in the release metadata (and so stored in the
dataset metadata), so later stages can test whether learned user embeddings recover them.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
from PIL import Image

from psm_jax.data.fixations import FixationTable
from psm_jax.data.releases.base import Release

CATEGORIES = ("face", "text", "disc", "stripes", "triangle")
POPULATION_LOGITS = np.array([1.0, 0.5, 0.0, -0.3, -0.5])


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """Size and behaviour of a generated release.

    Attributes:
      num_images: number of scenes.
      num_observers: number of simulated observers.
      image_size: native (H, W) of the scenes.
      viewings: repeated viewings of each image by each observer.
      mean_fixations: mean number of fixations per viewing.
      preference_spread: std of the per-observer noise on the population preference logits.
      sigma_px: Gaussian sigma for the PSMs, in native pixels.
      seed: everything is a function of it.
    """

    num_images: int = 500
    num_observers: int = 30
    image_size: tuple[int, int] = (240, 320)
    viewings: int = 4
    mean_fixations: float = 8.0
    preference_spread: float = 1.0
    sigma_px: float = 10.0
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class SceneObject:
    category: int
    centre: tuple[float, float]  # (y, x) native pixels
    radius: float


def scene_layout(spec: SyntheticSpec, image_index: int) -> list[SceneObject]:
    """The objects of scene `image_index` (cheap: no pixels)."""
    rng = np.random.default_rng([spec.seed, 1, image_index])
    height, width = spec.image_size
    short = min(height, width)
    objects: list[SceneObject] = []
    for _ in range(rng.integers(3, 7)):
        for _attempt in range(20):  # prefer objects that do not overlap much
            radius = rng.uniform(0.07, 0.16) * short
            centre = (rng.uniform(radius, height - radius), rng.uniform(radius, width - radius))
            if all(
                np.hypot(centre[0] - o.centre[0], centre[1] - o.centre[1])
                > 0.8 * (radius + o.radius)
                for o in objects
            ):
                break
        objects.append(SceneObject(int(rng.integers(len(CATEGORIES))), centre, radius))
    return objects


def render_scene(spec: SyntheticSpec, image_index: int) -> np.ndarray:
    """(H, W, 3) uint8 pixels of scene `image_index`."""
    rng = np.random.default_rng([spec.seed, 2, image_index])
    height, width = spec.image_size
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    texture = np.zeros((height, width), np.float32)
    for _ in range(4):
        freq = rng.uniform(0.01, 0.06, size=2)
        texture += np.sin(rows * freq[0] + cols * freq[1] + rng.uniform(0, 2 * np.pi))
    texture += 0.5 * rng.standard_normal((height, width)).astype(np.float32)
    base = rng.uniform(70, 170, size=3).astype(np.float32)
    image = base[None, None, :] + 12.0 * texture[..., None]

    for obj in scene_layout(spec, image_index):
        cy, cx = obj.centre
        r = obj.radius
        dy, dx = rows - cy, cols - cx
        if obj.category == 0:  # face: skin ellipse, two eyes, a mouth
            image[(dx / (0.8 * r)) ** 2 + (dy / r) ** 2 <= 1] = (225, 180, 150)
            for ex in (-0.35 * r, 0.35 * r):
                image[(dx - ex) ** 2 + (dy + 0.25 * r) ** 2 <= (0.12 * r) ** 2] = (30, 30, 30)
            image[(np.abs(dy - 0.4 * r) < 0.06 * r) & (np.abs(dx) < 0.35 * r)] = (150, 40, 40)
        elif obj.category == 1:  # text: light panel with rows of short dark bars
            panel = (np.abs(dx) < r) & (np.abs(dy) < 0.7 * r)
            image[panel] = (240, 240, 230)
            line = (np.mod(dy + 0.7 * r, 0.28 * r) < 0.12 * r) & (np.mod(dx, 0.3 * r) < 0.22 * r)
            image[panel & line & (np.abs(dx) < 0.85 * r) & (np.abs(dy) < 0.55 * r)] = (20, 20, 20)
        elif obj.category == 2:  # disc: saturated, black outline
            distance = np.hypot(dx, dy)
            image[distance <= r] = (0, 0, 0)
            image[distance <= 0.85 * r] = rng.choice([(255, 0, 0), (0, 200, 255), (255, 230, 0)])
        elif obj.category == 3:  # stripes: black and white bars
            square = (np.abs(dx) < 0.8 * r) & (np.abs(dy) < 0.8 * r)
            image[square] = np.where((np.mod(dx[square], 0.3 * r) < 0.15 * r)[:, None], 255, 0)
        else:  # triangle: bright, pointing up
            inside = (dy < 0.7 * r) & (dy > -r + 1.7 * np.abs(dx))
            image[inside] = (255, 255, 255)
    return np.clip(image, 0, 255).astype(np.uint8)


def observer_traits(spec: SyntheticSpec) -> dict[str, np.ndarray]:
    """Per-observer preference (O, K), centre_bias (O,) and dispersion (O,)."""
    rng = np.random.default_rng([spec.seed, 3])
    logits = POPULATION_LOGITS + spec.preference_spread * rng.standard_normal(
        (spec.num_observers, len(CATEGORIES))
    )
    preference = np.exp(logits - logits.max(axis=1, keepdims=True))
    preference /= preference.sum(axis=1, keepdims=True)
    return {
        "preference": preference,
        "centre_bias": rng.uniform(0.05, 0.25, spec.num_observers),
        "dispersion": np.exp(rng.normal(np.log(0.35), 0.3, spec.num_observers)),
    }


def simulate_fixations(spec: SyntheticSpec, image_index: int, traits: dict) -> FixationTable:
    """Every observer's fixations on scene `image_index`, over all viewings."""
    objects = scene_layout(spec, image_index)
    height, width = spec.image_size
    categories = np.array([o.category for o in objects])
    centres = np.array([o.centre for o in objects])
    radii = np.array([o.radius for o in objects])
    columns = {k: [] for k in ("observer", "viewing", "x", "y", "duration_ms")}
    for observer in range(spec.num_observers):
        rng = np.random.default_rng([spec.seed, 4, image_index, observer])
        object_p = traits["preference"][observer, categories] * np.sqrt(radii)
        object_p /= object_p.sum()
        counts = 1 + rng.poisson(spec.mean_fixations - 1, size=spec.viewings)
        n = int(counts.sum())
        at_centre = rng.random(n) < traits["centre_bias"][observer]
        chosen = rng.choice(len(objects), size=n, p=object_p)
        spread = traits["dispersion"][observer] * radii[chosen]
        object_y = rng.normal(centres[chosen, 0], spread)
        object_x = rng.normal(centres[chosen, 1], spread)
        centre_y = rng.normal(height / 2, 0.15 * height, n)
        centre_x = rng.normal(width / 2, 0.15 * width, n)
        columns["observer"].append(np.full(n, observer))
        columns["viewing"].append(np.repeat(np.arange(spec.viewings), counts))
        columns["x"].append(np.where(at_centre, centre_x, object_x))
        columns["y"].append(np.where(at_centre, centre_y, object_y))
        columns["duration_ms"].append(80.0 + rng.gamma(2.0, 110.0, n))
    data = {k: np.concatenate(v) for k, v in columns.items()}
    return FixationTable.from_columns(image=np.full(len(data["x"]), image_index), **data)


def encode_jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def generate_release(spec: SyntheticSpec) -> Release:
    """The generated release; scenes are rendered only when `read_image` asks for them."""
    traits = observer_traits(spec)
    fixations = FixationTable.concatenate(
        [simulate_fixations(spec, i, traits) for i in range(spec.num_images)]
    )
    return Release(
        name="synthetic_personal_saliency",
        image_ids=tuple(f"scene_{i:05d}.jpg" for i in range(spec.num_images)),
        image_sizes=np.tile(np.array(spec.image_size, np.int64), (spec.num_images, 1)),
        observer_ids=tuple(f"observer_{o:03d}" for o in range(spec.num_observers)),
        fixations=fixations,
        sigma=np.full((spec.num_images, 2), spec.sigma_px),
        read_image=lambda i: encode_jpeg(render_scene(spec, i)),
        image_source=lambda i: f"synthetic scene {i} (seed {spec.seed})",
        metadata={
            "categories": list(CATEGORIES),
            "population_preference_logits": POPULATION_LOGITS.tolist(),
            "observer_preferences": traits["preference"].round(6).tolist(),
            "observer_centre_bias": traits["centre_bias"].round(6).tolist(),
            "observer_dispersion": traits["dispersion"].round(6).tolist(),
            "generator": dataclasses.asdict(spec),
        },
    )
