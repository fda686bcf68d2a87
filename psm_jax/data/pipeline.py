"""grain input pipelines over the TFDS data sources (no TensorFlow).

Two streams, both deterministic given a seed, with checkpointable iterator state
(`iterator.get_state()` / `iterator.set_state(state)`, or grain's Orbax checkpoint handler), and
sharded per process for multi-host runs:

- `psm_regression_dataset`: batches of (image, USM, PSM, target discrepancy, observer) for the PSM
  networks. Records (images) are shuffled globally every epoch; each image is decoded once and
  expanded into one example per observer of the requested group whose PSM and USM are valid
  (pairs without fixations are masked out, never emitted as all-zero targets); a window shuffle
  then mixes the examples of neighbouring images before batching.
- `embedding_dataset`: batches of sets of m (image, PSM) pairs of one observer each, for the
  user-embedding encoder. Records are read in windows of images; in each window every observer of
  the group draws `sets_per_observer` sets of m of the window's images that they viewed, so the
  sets of different observers share images and differ by who looked. One observer's sets from a
  window share no image (Strohm et al., Eq. 1: the positive is made of other images than the
  anchor), so that matching two sets of a person never reduces to finding the same (image, PSM)
  pair in both.

Per-observer fields use `observer` = the index of the observer in the requested group, in the
order of the dataset metadata's `observer_split[group]` (`DatasetMetadata.observers(group)`).
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence

import grain
import grain.experimental as grain_experimental
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from psm_jax.data import datasets, external_usm, saliency_maps
from psm_jax.data.releases.base import to_rgb

OBSERVER_GROUPS = ("train", "validation", "test", "all")


@dataclasses.dataclass(frozen=True)
class DatasetMetadata:
    """What the pipelines read from a built dataset's metadata.

    Attributes:
      name: the TFDS name (with config).
      observer_ids: every observer, in the index order of the records.
      observer_split: group name -> observer indices (train / validation / test / all).
      working_size: (H, W) of the stored PSMs.
      raw: the whole metadata dict (splits, quality counts, release facts).
    """

    name: str
    observer_ids: tuple[str, ...]
    observer_split: dict[str, np.ndarray]
    working_size: tuple[int, int]
    raw: dict

    @classmethod
    def from_info(cls, name: str, metadata) -> DatasetMetadata:
        observer_ids = tuple(metadata["observer_ids"])
        index = {o: i for i, o in enumerate(observer_ids)}
        groups = {
            g: np.array([index[o] for o in ids], np.int64)
            for g, ids in metadata["observer_split"].items()
        }
        groups["all"] = np.arange(len(observer_ids))
        return cls(
            name=name,
            observer_ids=observer_ids,
            observer_split=groups,
            working_size=tuple(metadata["psm"]["working_size"]),
            raw=dict(metadata),
        )

    def observers(self, group: str) -> np.ndarray:
        """Indices (into observer_ids) of the observers of `group`."""
        if group not in self.observer_split:
            raise ValueError(
                f"Unknown observer group {group!r}; expected one of {OBSERVER_GROUPS}."
            )
        return self.observer_split[group]

    @property
    def train_mask(self) -> np.ndarray:
        mask = np.zeros(len(self.observer_ids), bool)
        mask[self.observers("train")] = True
        return mask


def open_split(name: str, split: str, data_dir: str | None = None):
    """The TFDS data source of a built psm-jax dataset split (images left encoded) and its metadata.

    Args:
      name: e.g. "osie_personal" or "synthetic_personal_saliency/tiny".
      split: "train", "validation" or "test".
      data_dir: where the dataset was prepared (TFDS's default if None).

    Returns:
      (random-access source of records, DatasetMetadata).
    """
    builder = datasets.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"Dataset {name} is not prepared in {builder.data_dir}. Build it first: python "
            f"launch/build_dataset.py --dataset={name} --data_dir={data_dir or '<data_dir>'}"
        )
    source = builder.as_data_source(split=split, decoders={"image": tfds.decode.SkipDecoding()})
    return source, DatasetMetadata.from_info(name, builder.info.metadata)


def decode_image(encoded: bytes, size: tuple[int, int]) -> np.ndarray:
    """Decodes JPEG/PNG bytes to (H, W, 3) uint8 at `size` = (H, W), area (box) resampled.

    JPEGs are decoded at a reduced DCT scale when that is still at least `size` (PIL's draft mode),
    which is several times faster than a full decode followed by a resize.
    """
    height, width = size
    with Image.open(io.BytesIO(encoded)) as image:
        if image.format == "JPEG":
            image.draft("RGB", (width, height))
        image = to_rgb(image)
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BOX)
        return np.asarray(image)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 at `size` = (H, W), area (box) resampled as `decode_image` does; the image
    itself when it has that size already."""
    if tuple(image.shape[:2]) == tuple(size):
        return np.asarray(image)
    resized = Image.fromarray(np.asarray(image, np.uint8)).resize(size[::-1], Image.Resampling.BOX)
    return np.asarray(resized)


@dataclasses.dataclass(frozen=True)
class _ImageRecord:
    """A decoded record: working-resolution image, PSMs and their masks."""

    image_index: int
    image_id: str
    image: np.ndarray
    psm: np.ndarray
    psm_valid: np.ndarray


def ground_truth_maps(record, metadata: DatasetMetadata):
    """A record's PSMs (O, H, W) float32, their validity (O,), and its ground-truth USM (H, W),
    the mean PSM of the training observers (`usm_mode="train"`), or None when none of them has a
    valid map on the image."""
    psm = np.asarray(record["psm"], np.float32)
    valid = np.asarray(record["psm_valid"], bool)
    usm, usm_valid = saliency_maps.universal_saliency_maps(
        psm, valid, mode="train", train_observers=metadata.train_mask
    )
    return psm, valid, (usm[0] if usm_valid[0] else None)


def image_id(record) -> str:
    """A record's image id as text (data sources give bytes)."""
    value = record["image_id"]
    return value.decode() if isinstance(value, bytes) else str(value)


class _RecordDecoder:
    """Decodes a raw record (with its position in the split) into an `_ImageRecord`."""

    def __init__(self, working_size: tuple[int, int]):
        self.working_size = working_size

    def __call__(self, indexed_record) -> _ImageRecord:
        image_index, record = indexed_record
        return _ImageRecord(
            image_index=int(image_index),
            image_id=image_id(record),
            image=decode_image(record["image"], self.working_size),
            psm=np.asarray(record["psm"], np.float32),
            psm_valid=np.asarray(record["psm_valid"], bool),
        )


class _PairsOfImage(grain_experimental.FlatMapTransform):
    """One PSM-regression example per valid (image, observer) pair of the group."""

    def __init__(
        self, metadata: DatasetMetadata, group: str, usm_mode, output_size, external_usms=None
    ):
        self.observers = metadata.observers(group)
        self.train_mask = metadata.train_mask
        self.usm_mode = usm_mode
        self.output_size = output_size
        self.external_usms = external_usms
        self.max_fan_out = len(self.observers)

    def flat_map(self, record: _ImageRecord):
        if self.external_usms is not None:
            external = self.external_usms(record.image_id)
            usm = np.broadcast_to(external, record.psm.shape)
            usm_valid = np.ones(record.psm.shape[:1], bool)
        else:
            usm, usm_valid = saliency_maps.universal_saliency_maps(
                record.psm, record.psm_valid, mode=self.usm_mode, train_observers=self.train_mask
            )
        usable = record.psm_valid & usm_valid
        chosen = [(k, o) for k, o in enumerate(self.observers) if usable[o]]
        if not chosen:
            return []
        rows = np.array([o for _, o in chosen])
        discrepancy = saliency_maps.discrepancy_maps(record.psm[rows], usm[rows], self.output_size)
        return [
            {
                "image": record.image,
                "usm": usm[o],
                "psm": record.psm[o],
                "discrepancy": discrepancy[j],
                "observer": np.int32(k),
                "image_index": np.int32(record.image_index),
            }
            for j, (k, o) in enumerate(chosen)
        ]


def _process_shard(shard_index: int | None, shard_count: int | None) -> tuple[int, int]:
    if shard_index is None or shard_count is None:
        import jax

        return jax.process_index(), jax.process_count()
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} is not in [0, shard_count={shard_count}).")
    return shard_index, shard_count


# Read-ahead of the decoded records (or windows of them) before the flat map. grain's default
# (16 threads, 500 elements) holds 500 windows of an embedding stream in memory, about 43 MB each
# at m = 8 (issue: the main job grew to 23 GB and swapped); 2 threads match this machine's cores.
_READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=8)


def _records(source, seed: int, shuffle: bool, num_epochs: int | None, shard) -> grain.MapDataset:
    """(index, record) pairs of this process's shard, reshuffled every epoch."""
    shard_index, shard_count = shard
    indexed = grain.MapDataset.range(len(source)).map(lambda i: (i, source[i]))
    dataset = indexed[shard_index::shard_count]
    if len(dataset) == 0:
        raise ValueError(f"Shard {shard_index} of {shard_count} holds no record of {len(source)}.")
    if shuffle:
        dataset = dataset.shuffle(seed=seed)
    return dataset.repeat(num_epochs)


def _finish(dataset: grain.IterDataset, batch_size: int, drop_remainder: bool, num_workers: int):
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if num_workers > 0:
        dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
    return dataset


def psm_regression_dataset(
    source: Sequence,
    metadata: DatasetMetadata,
    *,
    batch_size: int,
    seed: int = 0,
    observers: str = "train",
    usm_mode: saliency_maps.UsmMode = "train",
    shuffle: bool = True,
    num_epochs: int | None = None,
    window_size: int = 512,
    drop_remainder: bool = True,
    output_size: tuple[int, int] = saliency_maps.OUTPUT_SIZE,
    shard_index: int | None = None,
    shard_count: int | None = None,
    num_workers: int = 0,
    external_usm_dir: str | None = None,
) -> grain.IterDataset:
    """Batches of PSM-regression examples.

    Args:
      source: a split's data source (`open_split`).
      metadata: its DatasetMetadata.
      batch_size: examples per batch (per process).
      seed: seed of the record shuffle and of the example window shuffle.
      observers: whose examples to emit: "train", "validation", "test" or "all".
      usm_mode: which observers' PSMs make the USM (`saliency_maps.universal_saliency_maps`).
      shuffle: shuffle records each epoch and examples within a window; off for evaluation.
      num_epochs: passes over the records; None repeats forever.
      window_size: examples mixed by the window shuffle.
      drop_remainder: drop a last incomplete batch.
      output_size: (H, W) of the target discrepancy.
      shard_index, shard_count: this process's shard of the records (default: JAX's process
        index and count).
      num_workers: grain worker processes (0: decode in this process). Needs absl flags parsed.
      external_usm_dir: a folder of USMs precomputed by an external model, one map file per image
        (`psm_jax.data.external_usm`); when given, it replaces the ground-truth USM (`usm_mode`
        is then unused) in the usm field and in the discrepancy target.

    Returns:
      An IterDataset of dicts: image (B, H, W, 3) uint8, usm and psm (B, H, W) float32,
      discrepancy (B, h, w) float32 in [-1, 1], observer (B,) int32 (index in the group),
      image_index (B,) int32 (record index in the split).
    """
    records = _records(source, seed, shuffle, num_epochs, _process_shard(shard_index, shard_count))
    decoded = records.map(_RecordDecoder(metadata.working_size)).to_iter_dataset(_READ_OPTIONS)
    external_usms = (
        None
        if external_usm_dir is None
        else external_usm.ExternalUsms(external_usm_dir, metadata.working_size)
    )
    pairs = grain_experimental.FlatMapIterDataset(
        decoded, _PairsOfImage(metadata, observers, usm_mode, output_size, external_usms)
    )
    if shuffle:
        pairs = grain_experimental.WindowShuffleIterDataset(
            pairs, window_size=window_size, seed=seed + 1
        )
    return _finish(pairs, batch_size, drop_remainder, num_workers)


class _SetsOfWindow(grain.transforms.RandomMap):
    """Sets of m (image, PSM) pairs per observer from a window of decoded records."""

    def __init__(
        self,
        metadata: DatasetMetadata,
        group: str,
        m: int,
        sets_per_observer: int,
        disjoint: bool = True,
        external_usms=None,
    ):
        self.observers = metadata.observers(group)
        self.train_mask = metadata.train_mask
        self.m = m
        self.sets_per_observer = sets_per_observer
        self.disjoint = disjoint
        self.external_usms = external_usms

    def random_map(self, window: list[_ImageRecord], rng: np.random.Generator):
        # A window that spans an epoch boundary can hold an image twice: keep it once.
        unique = {r.image_index: r for r in reversed(window)}
        window = [unique[i] for i in dict.fromkeys(r.image_index for r in window)]
        images = np.stack([r.image for r in window])
        psms = np.stack([r.psm for r in window])
        valid = np.stack([r.psm_valid for r in window])
        indices = np.array([r.image_index for r in window], np.int32)
        # The USM of each image, for encoders that read the departure from it: the ground truth
        # (mean PSM of the training observers; zeros where none of them has a map), or an
        # external model's map of the image.
        if self.external_usms is not None:
            usms = np.stack([self.external_usms(r.image_id) for r in window])
        else:
            usms = np.stack(
                [
                    saliency_maps.universal_saliency_maps(
                        r.psm, r.psm_valid, mode="train", train_observers=self.train_mask
                    )[0][0]
                    for r in window
                ]
            )
        usms = usms.astype(np.float32)
        sets = []
        for k, o in enumerate(self.observers):
            viewed = np.flatnonzero(valid[:, o])
            if len(viewed) < self.m:
                continue
            shuffled = rng.permutation(viewed)
            for j in range(self.sets_per_observer):
                if self.disjoint:
                    # Consecutive chunks of one permutation: as many sets as the window holds.
                    if (j + 1) * self.m > len(shuffled):
                        break
                    chosen = shuffled[j * self.m : (j + 1) * self.m]
                else:
                    chosen = rng.choice(viewed, size=self.m, replace=False)
                sets.append(
                    {
                        "images": images[chosen],
                        "psms": psms[chosen, o],
                        "usms": usms[chosen],
                        "observer": np.int32(k),
                        "image_index": indices[chosen],
                    }
                )
        order = rng.permutation(len(sets))
        return [sets[i] for i in order]


class _Flatten(grain_experimental.FlatMapTransform):
    def __init__(self, max_fan_out: int):
        self.max_fan_out = max_fan_out

    def flat_map(self, elements):
        return elements


def embedding_sets(
    source: Sequence,
    metadata: DatasetMetadata,
    *,
    m: int,
    seed: int = 0,
    observers: str = "train",
    sets_per_observer: int = 1,
    window_images: int | None = None,
    num_epochs: int | None = None,
    shard_index: int | None = None,
    shard_count: int | None = None,
    disjoint: bool = True,
    external_usm_dir: str | None = None,
) -> grain.IterDataset:
    """Unbatched sets of m (image, PSM) pairs, each from one observer (`embedding_dataset` batches
    them).

    Args:
      source, metadata: from `open_split`.
      m: pairs per set.
      seed: seed of the record shuffle and of the set sampling.
      observers: whose sets: "train", "validation", "test" or "all".
      sets_per_observer: sets each observer draws from each window.
      window_images: records per window (default 2 m); an observer who viewed fewer than m of
        them draws no set from that window.
      num_epochs, shard_index, shard_count: as in `psm_regression_dataset`.
      disjoint: one observer's sets from a window share no image (as many sets as the images
        they viewed in the window allow, up to `sets_per_observer`); False draws each set
        independently, so an observer's sets share about half their images (psm-jax before
        2026-11-30; `config.overlapping_sets`, kept to measure its effect).
      external_usm_dir: as in `psm_regression_dataset` (external USMs replace the ground truth
        in the usms field).
    """
    window_images = window_images or 2 * m
    if window_images < m:
        raise ValueError(f"window_images={window_images} must be at least m={m}.")
    shard = _process_shard(shard_index, shard_count)
    records_per_shard = len(range(shard[0], len(source), shard[1]))
    if records_per_shard < m:
        # A set needs m distinct images; windows that wrap around the epochs never hold more than
        # the split has, so with fewer no set is ever drawn and the stream would wait forever.
        raise ValueError(
            f"Sets of m = {m} (image, PSM) pairs need {m} distinct images, but {metadata.name} "
            f"has {records_per_shard} in this split"
            + (f" for this process (of {shard[1]})" if shard[1] > 1 else "")
            + ": lower m (--config.m)."
        )
    records = _records(source, seed, True, num_epochs, shard).map(
        _RecordDecoder(metadata.working_size)
    )
    windows = records.batch(window_images, drop_remainder=True, batch_fn=list)
    external_usms = (
        None
        if external_usm_dir is None
        else external_usm.ExternalUsms(external_usm_dir, metadata.working_size)
    )
    sets = windows.random_map(
        _SetsOfWindow(metadata, observers, m, sets_per_observer, disjoint, external_usms),
        seed=seed + 1,
    ).to_iter_dataset(_READ_OPTIONS)
    fan_out = len(metadata.observers(observers)) * sets_per_observer
    flat = grain_experimental.FlatMapIterDataset(sets, _Flatten(max(fan_out, 1)))
    return flat


def embedding_dataset(
    source: Sequence,
    metadata: DatasetMetadata,
    *,
    batch_size: int,
    drop_remainder: bool = True,
    num_workers: int = 0,
    **sets,
) -> grain.IterDataset:
    """Batches of sets of m (image, PSM) pairs, each set from one observer (a triplet-loss label).

    Args:
      source, metadata: from `open_split`.
      batch_size: sets per batch (per process).
      drop_remainder, num_workers: as in `psm_regression_dataset`.
      **sets: how the sets are drawn, the keyword arguments of `embedding_sets` (m, seed,
        observers, sets_per_observer, window_images, num_epochs, shard_index, shard_count,
        disjoint, external_usm_dir).

    Returns:
      An IterDataset of dicts: images (B, m, H, W, 3) uint8, psms (B, m, H, W) float32,
      usms (B, m, H, W) float32 (the images' USMs), observer (B,) int32 (index in
      the group), image_index (B, m) int32 (record indices in the split of the set's images).
    """
    return _finish(
        embedding_sets(source, metadata, **sets), batch_size, drop_remainder, num_workers
    )


def collect_sets(
    batches,
    num_observers: int,
    per_observer: int,
    embed,
    *,
    progress=None,
    with_image_index: bool = False,
):
    """The first `per_observer` sets of each observer in a stream of set batches, embedded.

    The one loop that collects observers' sets: the encoder's embeddings
    (`psm_jax.models.embedding.collect_embeddings`: the PSM network's training pool, the
    evaluated observers, the embedding studies) and any other summary of a set (a study's
    reference embedding) go through it.

    Args:
      batches: an iterable of batches of sets (`embedding_dataset`), observer (B,) in
        [0, num_observers).
      num_observers, per_observer: observers to collect for, and sets per observer.
      embed: batch -> (B, d) vectors, one per set of the batch.
      progress: optional tqdm-like object, updated once per collected set.
      with_image_index: also return which images each collected set holds (`image_index`).

    Returns:
      (num_observers, per_observer, d) float32; with `with_image_index`, also
      (num_observers, per_observer, m) int: the record indices of each set's images.
    """
    collected: list[list[np.ndarray]] = [[] for _ in range(num_observers)]
    images: list[list[np.ndarray]] = [[] for _ in range(num_observers)]
    for batch in batches:
        vectors = embed(batch)
        for row, (vector, observer) in enumerate(zip(vectors, batch["observer"], strict=True)):
            if len(collected[observer]) < per_observer:
                collected[observer].append(vector)
                if with_image_index:
                    images[observer].append(np.asarray(batch["image_index"][row]))
                if progress is not None:
                    progress.update(1)
        if all(len(sets) == per_observer for sets in collected):
            vectors = np.stack([np.stack(sets) for sets in collected]).astype(np.float32)
            if with_image_index:
                return vectors, np.stack([np.stack(sets) for sets in images])
            return vectors
    short = [k for k, sets in enumerate(collected) if len(sets) < per_observer]
    raise ValueError(
        f"The stream ended before observers {short} had {per_observer} sets each "
        "(too few images for the set size m?)."
    )


class _OffsetObserver(grain.transforms.Map):
    """Shifts the observer label, so that observers of several datasets stay distinct."""

    def __init__(self, offset: int):
        self.offset = offset

    def map(self, element):
        return dict(element, observer=np.int32(element["observer"] + self.offset))


def combined_embedding_dataset(
    parts: Sequence[tuple[Sequence, DatasetMetadata]],
    *,
    batch_size: int,
    seed: int = 0,
    observers: str = "train",
    drop_remainder: bool = True,
    num_workers: int = 0,
    **sets,
) -> grain.IterDataset:
    """Sets of several datasets mixed into one stream (Strohm et al.'s combined dataset, CD).

    Each part's sets are drawn as by `embedding_dataset`; the observer labels of part k are offset
    by the number of `observers` of parts 0..k-1, so labels are distinct across datasets; the sets
    are mixed in proportion to each part's number of observers, then batched. All parts must share
    the working resolution.

    Args:
      parts: (source, metadata) of each dataset's split.
      batch_size, seed, observers, drop_remainder, num_workers: as in `embedding_dataset` (part k
        draws with seed + 10 k).
      **sets: the other options of `embedding_sets` (m, sets_per_observer, num_epochs, disjoint,
        ...), the same for every part.
    """
    sizes = {tuple(metadata.working_size) for _, metadata in parts}
    if len(sizes) > 1:
        raise ValueError(f"Datasets to combine have different working sizes: {sorted(sizes)}")
    streams, weights, offset = [], [], 0
    for k, (source, metadata) in enumerate(parts):
        drawn = embedding_sets(source, metadata, seed=seed + 10 * k, observers=observers, **sets)
        streams.append(drawn.map(_OffsetObserver(offset)))
        count = len(metadata.observers(observers))
        weights.append(float(count))
        offset += count
    return _finish(grain.IterDataset.mix(streams, weights), batch_size, drop_remainder, num_workers)
