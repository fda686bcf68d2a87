"""The main job the README's first command runs.

Today it prepares the dataset (the synthetic default unless told otherwise), prints its summary,
and draws batches from both input streams to show they work and how fast they are. Training,
evaluation and the report exist as launchers (launch/train_*.py, launch/evaluate.py) and join the
main job with issue 6.
"""

from __future__ import annotations

import time

from psm_jax.data import datasets, pipeline

DEFAULT_DATASET = "synthetic_personal_saliency"


def run(
    dataset: str = DEFAULT_DATASET,
    *,
    data_dir: str = datasets.DEFAULT_DATA_DIR,
    manual_dir: str | None = None,
    batches: int = 20,
    batch_size: int = 64,
) -> dict:
    """Builds `dataset`, prints its summary and samples the pipelines.

    Returns:
      {"regression_examples_per_s": float, "embedding_sets_per_s": float}
    """
    print(f"[1/3] Preparing {dataset} in {data_dir} (reused if already built)...", flush=True)
    builder = datasets.build_dataset(dataset, data_dir=data_dir, manual_dir=manual_dir)
    print(datasets.summarise(builder), flush=True)

    source, metadata = pipeline.open_split(dataset, "train", data_dir)
    print(f"[2/3] PSM-regression stream, {batches} batches of {batch_size}...", flush=True)
    stream = iter(pipeline.psm_regression_dataset(source, metadata, batch_size=batch_size, seed=0))
    batch = next(stream)
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(stream)
    regression_rate = batches * batch_size / (time.perf_counter() - start)
    for key, value in batch.items():
        print(f"    {key:12s} {str(value.shape):22s} {value.dtype}")
    print(
        f"    discrepancy range [{batch['discrepancy'].min():.2f}, "
        f"{batch['discrepancy'].max():.2f}]; {regression_rate:.0f} (image, observer) examples/s"
    )

    m, sets = 8, 16
    print(f"[3/3] Embedding stream, {batches} batches of {sets} sets of m={m} pairs...", flush=True)
    stream = iter(pipeline.embedding_dataset(source, metadata, batch_size=sets, m=m, seed=0))
    batch = next(stream)
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(stream)
    embedding_rate = batches * sets / (time.perf_counter() - start)
    for key, value in batch.items():
        print(f"    {key:12s} {str(value.shape):22s} {value.dtype}")
    print(f"    {embedding_rate:.0f} sets/s")
    print(
        "Training and evaluation run from launch/train_*.py and launch/evaluate.py (README); the "
        "main job does not run them yet (issue 6)."
    )
    return {"regression_examples_per_s": regression_rate, "embedding_sets_per_s": embedding_rate}
