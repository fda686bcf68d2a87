"""How well can unseen synthetic observers be told apart from m (image, PSM) pairs at all?

    .venv/bin/python studies/identity_ceiling.py --data_dir=/tmp/tfds_s6 --runs=/tmp/s7/sweep

A reference for the encoder's precision@1 (issue 14's target: >= 0.9 at m = 32 for the test
observers) that needs no learning, because it reads what the generator knows and the encoder
must infer: where each scene's objects are and what they are (`psm_jax.data.synthetic`).
A set's "layout embedding" is, per object category, the mean over the set's objects of that
category of (the PSM's share of mass inside the object's disc) - (the ground-truth USM's share),
and the same difference for a disc around the image centre (the centre bias): 6 numbers, the
departure from the population along the generator's own axes of preference. Its precision@1 is
scored exactly as the encoder's (`psm_jax.evaluation.embeddings`: 10 sets per observer drawn
from the training images by `pipeline.embedding_dataset`, nearest neighbour by cosine, the same
seeds), so with `--runs` (a seed sweep's workdir) the trained encoder's precision@1 on the
identical sets is printed beside it.

Not a strict upper bound (a better hand-made summary may exist), but one that knows the object
layout, which the encoder has to find in the pixels.
"""

import json
from pathlib import Path

import numpy as np
from absl import app, flags

import tfds_builders
from psm_jax import cli, inference, metrics, xla_defaults
from psm_jax.configs import synthetic as synthetic_configs
from psm_jax.data import pipeline
from psm_jax.data import synthetic as generator
from psm_jax.evaluation import embeddings

_DATA_DIR = flags.DEFINE_string("data_dir", "data/tfds", "Where the datasets are built.")
_RUNS = flags.DEFINE_string(
    "runs", None, "A seed sweep's workdir (<runs>/<draw>/embedding): also score its encoder."
)
_DATASETS = flags.DEFINE_list("datasets", list(synthetic_configs.DRAWS), "The synthetic draws.")
_GROUPS = flags.DEFINE_list("groups", ["validation", "test"], "Whose sets.")
_MS = flags.DEFINE_list("ms", ["8", "32"], "Set sizes m.")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the results as JSON here.")

_CENTRE_RADIUS = 0.15  # of the image's shorter side


def generator_spec(metadata: pipeline.DatasetMetadata) -> generator.SyntheticSpec:
    """The generator settings a synthetic dataset was built with (its release metadata)."""
    fields = metadata.raw.get("release", {}).get("generator")
    if fields is None:
        raise ValueError(f"{metadata.name} is not a synthetic dataset: no generator recorded.")
    fields = dict(fields, image_size=tuple(fields["image_size"]))
    return generator.SyntheticSpec(**fields)


class LayoutFeatures:
    """The layout embedding of a set (see the module docstring), from its maps and image ids."""

    def __init__(self, source, metadata: pipeline.DatasetMetadata):
        self.spec = generator_spec(metadata)
        self.source = source
        self.working_size = tuple(metadata.working_size)
        self._masks: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def masks(self, record_index: int) -> tuple[np.ndarray, np.ndarray]:
        """(objects + 1, H, W) disc masks at the working size (the last: the centre disc) and
        each disc's category (-1: the centre)."""
        if record_index not in self._masks:
            image_id = pipeline.image_id(self.source[record_index])
            scene = int(Path(image_id).stem.removeprefix("scene_"))
            height, width = self.working_size
            scale_y = height / self.spec.image_size[0]
            scale_x = width / self.spec.image_size[1]
            rows, cols = np.mgrid[0:height, 0:width] + 0.5
            discs, categories = [], []
            for item in generator.scene_layout(self.spec, scene):
                y, x = item.centre[0] * scale_y, item.centre[1] * scale_x
                discs.append(np.hypot(rows - y, cols - x) <= item.radius * scale_y)
                categories.append(item.category)
            centre = np.hypot(rows - height / 2, cols - width / 2) <= _CENTRE_RADIUS * height
            discs.append(centre)
            categories.append(-1)
            self._masks[record_index] = (np.stack(discs).astype(np.float32), np.array(categories))
        return self._masks[record_index]

    def __call__(self, psms: np.ndarray, usms: np.ndarray, image_index: np.ndarray) -> np.ndarray:
        """psms, usms: (m, H, W); image_index: (m,) record indices. Returns (C + 1,)."""
        count = len(generator.CATEGORIES)
        total, seen = np.zeros(count + 1), np.zeros(count + 1)
        for psm, usm, index in zip(psms, usms, image_index, strict=True):
            discs, categories = self.masks(int(index))
            share = discs.reshape(len(discs), -1) @ psm.reshape(-1) / max(psm.sum(), 1e-12)
            usm_share = discs.reshape(len(discs), -1) @ usm.reshape(-1) / max(usm.sum(), 1e-12)
            slots = np.where(categories < 0, count, categories)
            np.add.at(total, slots, share - usm_share)
            np.add.at(seen, slots, 1.0)
        return total / np.maximum(seen, 1.0)


def layout_embeddings(features: LayoutFeatures, source, metadata, *, group: str, m: int, seed: int):
    """As `embeddings.set_embeddings` (10 sets per observer, the same draw for the same seed),
    with the layout embedding in place of the encoder."""
    per_observer = 10
    stream = inference.set_stream(
        source, metadata, group=group, m=m, seed=seed, sets_per_observer=2
    )

    def embed(batch):
        sets = zip(batch["psms"], batch["usms"], batch["image_index"], strict=True)
        return np.stack([features(psms, usms, index) for psms, usms, index in sets])

    count = len(metadata.observers(group))
    vectors = pipeline.collect_sets(stream, count, per_observer, embed)
    labels = np.repeat(np.arange(count), per_observer)
    return vectors.reshape(-1, vectors.shape[-1]), labels


def main(argv):
    del argv
    rows = []
    for dataset in _DATASETS.value:
        source, metadata = pipeline.open_split(dataset, "train", _DATA_DIR.value)
        features = LayoutFeatures(source, metadata)
        encoder = None
        if _RUNS.value:
            workdir = Path(_RUNS.value) / dataset.replace("/", "_") / "embedding"
            encoder = inference.restore(workdir, kind="embedding")
        for group in _GROUPS.value:
            for m in (int(m) for m in _MS.value):
                # The seeds of `embeddings.precision_at_1_versus_m(seed=1)` (the studies) and
                # of the main job's evaluation (seed 0) differ; seed + m is the draw of both.
                vectors, labels = layout_embeddings(
                    features, source, metadata, group=group, m=m, seed=m
                )
                row = {
                    "dataset": dataset,
                    "group": group,
                    "m": m,
                    "layout": float(np.mean(metrics.precision_at_1(vectors, labels))),
                }
                if encoder is not None:
                    row["encoder"] = embeddings.precision_at_1_versus_m(
                        encoder, source, metadata, group=group, ms=(m,), seed=0
                    )[m]
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("| draw | observers | m | layout embedding p@1 | trained encoder p@1 |")
    print("|---|---|---|---|---|")
    for row in rows:
        encoder_cell = f"{row['encoder']:.2f}" if "encoder" in row else "-"
        print(
            f"| {row['dataset'].split('/')[-1]} | {row['group']} | {row['m']} | "
            f"{row['layout']:.2f} | {encoder_cell} |"
        )
    if _OUTPUT.value:
        Path(_OUTPUT.value).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    tfds_builders.register()
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
