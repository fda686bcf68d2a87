"""The (test image, observer) pairs a protocol scores, with everything methods and metrics need.

Protocols (Strohm et al.):
  closed  the training observers on the test images;
  open    the test observers, never seen in training, on the test images.
A pair exists where the observer has a valid PSM and at least one fixation on the image. The USM of
each image is the ground-truth USM the models were trained with: the mean PSM of the training
observers (`usm_mode="train"`), so a test observer's own map never leaks into it. In the closed set
the scored observer is one of those n training observers, so the USM holds 1/n of the very map it
is scored against (as in the papers, whose USM averages every observer): worth CC +0.03 on the
synthetic draws and +0.08 on OSIE against the same mean without that observer
(`studies/closed_set_usm.py`). Every closed-set row gets the same USM; compare rows, not
protocols. The closed set also holds each pair's leave-one-out USM, the other training observers'
mean (`leave_one_out_usm`): the evaluation's `closed_usm="leave_one_out"` scores every closed-set
row against it instead (`EvaluationSet.pair_usm`), and otherwise it is a row of its own.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from psm_jax.data import pipeline, saliency_maps

PROTOCOLS = {"closed": "train", "open": "test"}
"""Protocol -> the observer group it evaluates."""


def observer_group(protocol: str) -> str:
    """The observer group a protocol evaluates ("train" or "test")."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {tuple(PROTOCOLS)}, got {protocol!r}")
    return PROTOCOLS[protocol]


@dataclasses.dataclass(frozen=True)
class Pair:
    """One (image, observer) pair while the set is read: `image` indexes the set's images,
    `observer` is the observer's index within the protocol's group; fixations are native pixels."""

    image: int
    observer: int
    psm: np.ndarray
    fixation_x: np.ndarray
    fixation_y: np.ndarray
    image_size: np.ndarray


@dataclasses.dataclass(frozen=True)
class EvaluationSet:
    """The pairs of a protocol as arrays.

    Attributes:
      dataset, data_dir, protocol, split: what was read.
      images: (I, H, W, 3) uint8 images at the working resolution; image_ids: their ids;
      encoded_images: their stored JPEG/PNG bytes (`images_at` decodes them at another size).
      usm: (I, H, W) ground-truth USMs (the training observers' mean).
      image: (P,) image index of each pair; observer: (P,) observer index within the group;
      observer_ids: the group's observer ids as in the dataset (observer k is observer_ids[k]);
      psm: (P, H, W) ground-truth PSMs; fixation_x/y/mask: (P, F) native fixations, padded;
      image_size: (P, 2) native (H, W).
      leave_one_out_usm: closed set: (P, H, W) each pair's USM without the scored observer (the
        other training observers' mean PSM); None in the open set, where it is the USM.
      closed_usm: "train" (`usm` for every pair) or "leave_one_out" (`leave_one_out_usm`): the
        USM every row is given (`pair_usm`).
    """

    dataset: str
    data_dir: str
    protocol: str
    split: str
    images: np.ndarray
    image_ids: list[str]
    usm: np.ndarray
    image: np.ndarray
    observer: np.ndarray
    observer_ids: list[str]
    psm: np.ndarray
    fixation_x: np.ndarray
    fixation_y: np.ndarray
    fixation_mask: np.ndarray
    image_size: np.ndarray
    encoded_images: tuple[bytes, ...] = ()
    leave_one_out_usm: np.ndarray | None = None
    closed_usm: str = "train"

    def images_at(self, size: tuple[int, int]) -> np.ndarray:
        """(I, H, W, 3) uint8: the images decoded at `size` from their stored bytes, as the
        training pipelines decode them (`psm_jax.data.pipeline.decode_image`); a universal model
        with a backbone reads them larger than the working size."""
        if tuple(size) == tuple(self.images.shape[1:3]) or not self.encoded_images:
            return self.images
        return np.stack([pipeline.decode_image(encoded, size) for encoded in self.encoded_images])

    @property
    def group(self) -> str:
        return observer_group(self.protocol)

    @property
    def pair_usm(self) -> np.ndarray:
        """(P, H, W) the ground-truth USM of each pair: its image's, or without the scored
        observer's own map in the closed set with `closed_usm="leave_one_out"`."""
        if self.closed_usm == "leave_one_out" and self.leave_one_out_usm is not None:
            return self.leave_one_out_usm
        return self.usm[self.image]

    @property
    def pair_images(self) -> np.ndarray:
        """(P, H, W, 3) each pair's image."""
        return self.images[self.image]


CLOSED_USMS = ("train", "leave_one_out")
"""The closed set's USM (`EvaluationSet.closed_usm`; the evaluation config's `closed_usm`)."""


def evaluation_set(
    dataset: str, data_dir: str, protocol: str, split: str = "test", closed_usm: str = "train"
) -> EvaluationSet:
    """Reads the pairs of `protocol` on the `split` images of a built dataset; `closed_usm`: see
    `EvaluationSet`."""
    if closed_usm not in CLOSED_USMS:
        raise ValueError(f"--config.closed_usm={closed_usm!r}: must be one of {CLOSED_USMS}.")
    group_name = observer_group(protocol)
    source, metadata = pipeline.open_split(dataset, split, data_dir)
    group = metadata.observers(group_name)
    images, image_ids, usms, pairs, encoded, own_usms = [], [], [], [], [], []
    for index in range(len(source)):
        record = source[index]
        psm, valid, usm = pipeline.ground_truth_maps(record, metadata)
        if usm is None:
            continue
        image_index = len(images)
        images.append(pipeline.decode_image(record["image"], metadata.working_size))
        encoded.append(bytes(record["image"]))
        image_ids.append(pipeline.image_id(record))
        usms.append(usm)
        if protocol == "closed":
            leave_one_out, _ = saliency_maps.universal_saliency_maps(
                psm, valid, mode="leave_one_out", train_observers=metadata.train_mask
            )
        fixations = record["fixations"]
        for k, o in enumerate(group):
            own = np.asarray(fixations["observer"]) == o
            if not valid[o] or not own.any():
                continue
            pairs.append(
                Pair(
                    image=image_index,
                    observer=k,
                    psm=psm[o],
                    fixation_x=np.asarray(fixations["x"], np.float32)[own],
                    fixation_y=np.asarray(fixations["y"], np.float32)[own],
                    image_size=np.asarray(record["image_size"], np.int32),
                )
            )
            if protocol == "closed":
                own_usms.append(leave_one_out[o])
    if not pairs:
        raise ValueError(f"{dataset} {split}: no (image, observer) pair for protocol {protocol!r}.")
    # Fixations padded to a power of two, so that only a few shapes are ever compiled.
    width = max(8, 1 << (max(len(p.fixation_x) for p in pairs) - 1).bit_length())
    fixation_x = np.zeros((len(pairs), width), np.float32)
    fixation_y = np.zeros((len(pairs), width), np.float32)
    mask = np.zeros((len(pairs), width), bool)
    for row, pair in enumerate(pairs):
        count = len(pair.fixation_x)
        fixation_x[row, :count] = pair.fixation_x
        fixation_y[row, :count] = pair.fixation_y
        mask[row, :count] = True
    return EvaluationSet(
        dataset=dataset,
        data_dir=data_dir,
        protocol=protocol,
        split=split,
        images=np.stack(images),
        image_ids=image_ids,
        usm=np.stack(usms),
        image=np.array([p.image for p in pairs]),
        observer=np.array([p.observer for p in pairs]),
        observer_ids=[str(metadata.observer_ids[o]) for o in group],
        psm=np.stack([p.psm for p in pairs]),
        fixation_x=fixation_x,
        fixation_y=fixation_y,
        fixation_mask=mask,
        image_size=np.stack([p.image_size for p in pairs]),
        encoded_images=tuple(encoded),
        leave_one_out_usm=np.stack(own_usms) if own_usms else None,
        closed_usm=closed_usm,
    )
