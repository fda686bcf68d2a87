"""grain pipelines: shapes, targets, masking, determinism, resume, per-process sharding."""

import io

import numpy as np
import pytest
from conftest import TINY
from PIL import Image

from psm_jax.data import pipeline, saliency_maps

NUM_IMAGES, NUM_OBSERVERS = 12, 5
GROUPS = {"train": [0, 1, 2], "validation": [3], "test": [4]}


def _jpeg(seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def fake_split():
    """An in-memory split laid out like the TFDS records: 12 images x 5 observers, 2 empty pairs."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(NUM_IMAGES):
        valid = np.ones(NUM_OBSERVERS, bool)
        if i == 2:
            valid[[1, 4]] = False
        psm = rng.random((NUM_OBSERVERS, 120, 160)).astype(np.float16) * valid[:, None, None]
        records.append(
            {"image": _jpeg(i), "image_id": f"img{i}.jpg", "psm": psm, "psm_valid": valid}
        )
    ids = [f"o{k}" for k in range(NUM_OBSERVERS)]
    metadata = pipeline.DatasetMetadata.from_info(
        "fake",
        {
            "observer_ids": ids,
            "observer_split": {g: [ids[k] for k in v] for g, v in GROUPS.items()},
            "psm": {"working_size": [120, 160]},
        },
    )
    return records, metadata


def _take(dataset, n):
    iterator = iter(dataset)
    return [next(iterator) for _ in range(n)]


def test_regression_batches_shapes_and_targets(fake_split):
    records, metadata = fake_split
    (batch,) = _take(
        pipeline.psm_regression_dataset(
            records, metadata, batch_size=8, shard_index=0, shard_count=1
        ),
        1,
    )
    assert batch["image"].shape == (8, 120, 160, 3) and batch["image"].dtype == np.uint8
    assert batch["usm"].shape == batch["psm"].shape == (8, 120, 160)
    assert batch["discrepancy"].shape == (8, 15, 20)
    assert set(batch["observer"]) <= {0, 1, 2}
    for j in range(8):
        record = records[batch["image_index"][j]]
        observer = GROUPS["train"][batch["observer"][j]]
        psm = record["psm"].astype(np.float32)
        usm, _ = saliency_maps.universal_saliency_maps(
            psm, record["psm_valid"], mode="train", train_observers=metadata.train_mask
        )
        np.testing.assert_allclose(batch["psm"][j], psm[observer])
        np.testing.assert_allclose(batch["usm"][j], usm[observer], atol=1e-6)
        expected = saliency_maps.area_resize(psm[observer] - usm[observer], (15, 20))
        np.testing.assert_allclose(batch["discrepancy"][j], expected, atol=1e-5)


def test_one_epoch_emits_every_valid_pair_once(fake_split):
    records, metadata = fake_split
    dataset = pipeline.psm_regression_dataset(
        records,
        metadata,
        batch_size=1,
        shuffle=False,
        num_epochs=1,
        drop_remainder=False,
        observers="all",
        usm_mode="leave_one_out",
        shard_index=0,
        shard_count=1,
    )
    pairs = [(int(b["image_index"][0]), int(b["observer"][0])) for b in dataset]
    assert len(pairs) == len(set(pairs)) == NUM_IMAGES * NUM_OBSERVERS - 2
    assert (2, 1) not in pairs and (2, 4) not in pairs  # no fixations: masked, never emitted


def test_deterministic_and_seed_dependent(fake_split):
    records, metadata = fake_split
    make = lambda seed: pipeline.psm_regression_dataset(  # noqa: E731
        records, metadata, batch_size=4, seed=seed, window_size=16, shard_index=0, shard_count=1
    )
    first, again, other = _take(make(0), 5), _take(make(0), 5), _take(make(1), 5)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a["image_index"], b["image_index"])
        np.testing.assert_array_equal(a["observer"], b["observer"])
    assert any(
        not np.array_equal(a["image_index"], c["image_index"])
        for a, c in zip(first, other, strict=True)
    )


@pytest.mark.parametrize("stream", ["regression", "embedding"])
def test_iterator_state_restores_exactly(fake_split, stream):
    records, metadata = fake_split
    if stream == "regression":
        make = lambda: pipeline.psm_regression_dataset(  # noqa: E731
            records, metadata, batch_size=4, seed=3, window_size=16, shard_index=0, shard_count=1
        )
    else:
        make = lambda: pipeline.embedding_dataset(  # noqa: E731
            records, metadata, batch_size=2, m=3, seed=3, shard_index=0, shard_count=1
        )
    iterator = iter(make())
    for _ in range(7):  # crosses an epoch boundary of the 12 records
        next(iterator)
    state = iterator.get_state()
    expected = [next(iterator) for _ in range(4)]
    restored = iter(make())
    restored.set_state(state)
    for want in expected:
        got = next(restored)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])


def test_process_shards_are_disjoint_and_cover(fake_split):
    records, metadata = fake_split
    seen = []
    for shard in range(3):
        dataset = pipeline.psm_regression_dataset(
            records,
            metadata,
            batch_size=1,
            seed=0,
            num_epochs=1,
            drop_remainder=False,
            shard_index=shard,
            shard_count=3,
        )
        seen.append({int(b["image_index"][0]) for b in dataset})
    assert sum(len(s) for s in seen) == NUM_IMAGES
    assert set.union(*seen) == set(range(NUM_IMAGES))
    with pytest.raises(ValueError, match="shard_index 3"):
        pipeline.psm_regression_dataset(
            records, metadata, batch_size=1, shard_index=3, shard_count=3
        )


def test_embedding_sets_belong_to_their_observer(fake_split):
    records, metadata = fake_split
    (batch,) = _take(
        pipeline.embedding_dataset(
            records, metadata, batch_size=6, m=4, seed=0, shard_index=0, shard_count=1
        ),
        1,
    )
    assert batch["images"].shape == (6, 4, 120, 160, 3)
    assert batch["psms"].shape == (6, 4, 120, 160)
    for psms, k in zip(batch["psms"], batch["observer"], strict=True):
        observer = GROUPS["train"][k]
        for psm in psms:  # every map of the set is one of this observer's stored maps
            assert any(np.array_equal(psm, r["psm"][observer].astype(np.float32)) for r in records)
        assert len({psm.tobytes() for psm in psms}) == 4  # m distinct images
    # Each pair's USM is its image's ground-truth USM (for encoders that read the departure).
    assert batch["usms"].shape == (6, 4, 120, 160)
    by_index = {int(i): r for i, r in enumerate(records)}
    for usms, indices in zip(batch["usms"], batch["image_index"], strict=True):
        for usm, index in zip(usms, indices, strict=True):
            _, _, expected = pipeline.ground_truth_maps(by_index[int(index)], metadata)
            np.testing.assert_allclose(usm, 0 if expected is None else expected, atol=1e-6)


def test_decode_image_resizes_jpeg_and_png():
    rows, cols = np.mgrid[0:240, 0:320]
    pixels = np.stack([rows, cols * 0.7, (rows + cols) * 0.4], axis=-1).astype(np.uint8)
    for fmt in ("JPEG", "PNG"):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format=fmt)
        decoded = pipeline.decode_image(buffer.getvalue(), (120, 160))
        assert decoded.shape == (120, 160, 3) and decoded.dtype == np.uint8
        reference = pixels.reshape(120, 2, 160, 2, 3).mean(axis=(1, 3))
        assert np.abs(decoded.astype(float) - reference).mean() < (3 if fmt == "JPEG" else 1)


def test_unknown_group_is_an_error(fake_split):
    records, metadata = fake_split
    with pytest.raises(ValueError, match="Unknown observer group 'testing'"):
        pipeline.psm_regression_dataset(
            records, metadata, batch_size=1, observers="testing", shard_index=0, shard_count=1
        )


def test_external_usm_folder_replaces_the_ground_truth_usm(fake_split, tmp_path):
    records, metadata = fake_split
    rng = np.random.default_rng(3)
    external = {}
    for i in range(NUM_IMAGES):
        if i % 2:  # .npy at another size and range
            values = 5.0 + 3.0 * rng.random((30, 40))
            np.save(tmp_path / f"img{i}.npy", values)
            external[i] = (values - values.min()) / (values.max() - values.min())
        else:  # an 8-bit grayscale PNG at the working size
            values = rng.integers(0, 256, (120, 160), dtype=np.uint8)
            Image.fromarray(values).save(tmp_path / f"img{i}.png")
            external[i] = (values - values.min()) / (values.max() - values.min())
    dataset = pipeline.psm_regression_dataset(
        records,
        metadata,
        batch_size=6,
        shard_index=0,
        shard_count=1,
        external_usm_dir=str(tmp_path),
    )
    (batch,) = _take(dataset, 1)
    for j in range(6):
        i = int(batch["image_index"][j])
        usm = batch["usm"][j]
        assert usm.min() == 0.0 and usm.max() == pytest.approx(1.0)
        if i % 2 == 0:
            np.testing.assert_allclose(usm, external[i], atol=1e-6)
        else:  # enlarged 4x from 30x40: the same map, smoothly interpolated
            coarse = saliency_maps.area_resize(usm, (30, 40))
            assert np.corrcoef(coarse.ravel(), external[i].ravel())[0, 1] > 0.9
        observer = GROUPS["train"][batch["observer"][j]]
        psm = records[i]["psm"].astype(np.float32)[observer]
        expected = saliency_maps.area_resize(psm - usm, (15, 20))
        np.testing.assert_allclose(batch["discrepancy"][j], expected, atol=1e-5)


def test_external_usms_replace_the_ground_truth_in_the_encoders_sets(fake_split, tmp_path):
    """The encoder's set stream reads the same folder (the "predicted" option), so an encoder can
    train on the USMs a new person's enrolment will have."""
    records, metadata = fake_split
    rng = np.random.default_rng(4)
    external = {}
    for i in range(NUM_IMAGES):
        external[i] = rng.random((120, 160)).astype(np.float32)
        external[i][0, 0], external[i][0, 1] = 0.0, 1.0  # already in [0, 1]: read as stored
        np.save(tmp_path / f"img{i}.npy", external[i])
    kwargs = {"batch_size": 3, "m": 4, "seed": 1, "shard_index": 0, "shard_count": 1}
    (batch,) = _take(pipeline.embedding_dataset(records, metadata, **kwargs), 1)
    (other,) = _take(
        pipeline.embedding_dataset(records, metadata, external_usm_dir=str(tmp_path), **kwargs), 1
    )
    np.testing.assert_array_equal(other["image_index"], batch["image_index"])  # the same sets
    np.testing.assert_array_equal(other["psms"], batch["psms"])
    for s, indices in enumerate(other["image_index"]):
        for j, i in enumerate(indices):
            np.testing.assert_allclose(other["usms"][s, j], external[int(i)], atol=1e-6)
            assert not np.allclose(batch["usms"][s, j], external[int(i)])


def test_external_usm_errors_name_the_file(tmp_path):
    from psm_jax.data import external_usm

    with pytest.raises(FileNotFoundError, match="does not exist"):
        external_usm.ExternalUsms(tmp_path / "missing", (120, 160))
    usms = external_usm.ExternalUsms(tmp_path, (120, 160))
    with pytest.raises(FileNotFoundError, match="img7"):
        usms("img7.jpg")
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="bad.npy"):
        usms("bad.jpg")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        usms("broken.jpg")


def test_an_embedding_stream_with_too_few_images_for_m_is_an_error_not_a_hang(tiny_data_dir):
    """The encoder with m = 4 on the tiny set's 3 validation images used to wait forever."""
    source, metadata = pipeline.open_split(TINY, "validation", tiny_data_dir)
    with pytest.raises(ValueError, match="m = 4 .* need 4 distinct images.* has 3 in this split"):
        pipeline.embedding_dataset(source, metadata, batch_size=2, m=4)


@pytest.mark.parametrize("disjoint", [True, False])
def test_an_observers_sets_from_one_window_share_no_image_unless_asked(fake_split, disjoint):
    """Strohm et al.'s Eq. 1 makes the positive of other images than the anchor: two sets of one
    person that share (image, PSM) pairs can be matched without learning anything personal."""
    records, metadata = fake_split
    stream = pipeline.embedding_sets(
        records,
        metadata,
        m=3,
        seed=1,
        observers="validation",  # one observer, who viewed every image: two sets per window
        sets_per_observer=2,
        disjoint=disjoint,
        shard_index=0,
        shard_count=1,
    )
    iterator = iter(stream)
    shared = []
    for _ in range(20):  # windows of 6 images
        a, b = next(iterator), next(iterator)
        shared.append(len(set(a["image_index"].tolist()) & set(b["image_index"].tolist())))
    if disjoint:
        assert max(shared) == 0
    else:
        assert np.mean(shared) > 1  # m^2 / window = 1.5 expected
