"""Checkpoint-based evaluation: pairs, rows with stable ids, tables, significance, the embedding
studies, and restoring models with their parameters only."""

import dataclasses
import json
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest
from conftest import TINY, tiny_config

from psm_jax import inference, metrics
from psm_jax.configs import evaluation as evaluation_configs
from psm_jax.evaluation import embeddings, evaluators, methods, pairs, report, scoring
from psm_jax.train import checkpoint, loop


def _context(models, output_dir="/tmp/unused", **fields) -> evaluators.Context:
    """An evaluation context of the tiny dataset: m = 3 (its 24 training images), the papers'
    discrepancy weight, other fields given."""
    config = evaluation_configs.get_config()
    config.m, config.discrepancy_weight = 3, 1.0
    config.update(fields)
    return evaluators.Context(models, config, output_dir)


def test_tables_from_trained_workdirs(tiny_data_dir, tiny_workdirs, tmp_path):
    models = methods.Models.restore(
        {name: tiny_workdirs[name] for name in ("embedding", "psm_network", "per_observer")}
    )
    context = _context(models, output_dir=tmp_path / "unused")
    for protocol in ("closed", "open"):
        evaluation = context.evaluation_set(protocol)
        count = len(evaluation.image)
        assert evaluation.psm.shape == (count, 120, 160) and count > 0
        table, rows, scores = (
            context.table(protocol),
            context.rows(protocol),
            context.scores(protocol),
        )
        ids = [
            "gt_usm",
            *(["gt_usm_leave_one_out"] if protocol == "closed" else []),
            "centre_bias",
            "mean_discrepancy",
            "prior_blend",
            "density_ratio",
            "per_observer",
        ]
        controls = ["embedding_shuffled", "embedding_mean"]
        assert [row.id for row in rows] == ids + ["embedding", *controls]
        [per_observer] = [row for row in rows if row.id == "per_observer"]
        assert per_observer.name.endswith(", oracle") == (protocol == "open")
        assert all(values.shape == (count,) for values in scores["gt_usm"].values())
        expected_cc = metrics.cc(evaluation.pair_usm, evaluation.psm)
        np.testing.assert_allclose(scores["gt_usm"]["cc"], expected_cc, rtol=1e-4, atol=1e-5)
        assert table.mean("gt_usm", "cc") == pytest.approx(float(np.mean(expected_cc)), rel=1e-5)
        path = report.write_table(table, tmp_path / "report")
        assert "| USM (ground truth) |" in path.read_text()
        assert "Against the ground-truth USM" in path.read_text()
        stored = json.loads((tmp_path / "report" / f"{protocol}.json").read_text())
        assert list(stored["rows"]) == ids + ["embedding", *controls]
        # The table is computed from the per-pair scores file beside it.
        read = scoring.read_scores(tmp_path / "unused" / f"{protocol}_scores.csv")
        assert list(read.rows) == [row.id for row in rows]
        assert table.mean("embedding", "kld") == pytest.approx(
            float(np.mean(read.rows["embedding"]["kld"])), rel=1e-12
        )
        assert sorted(set(read.observer_ids)) == sorted(set(evaluation.observer_ids))
        people = stored["rows"]["embedding"]["cc"]["versus_usm"]["people"]
        assert people["n"] == len(np.unique(evaluation.observer)) == table.people
        versus_mean = stored["rows"]["embedding"]["cc"]["versus_mean_embedding"]
        np.testing.assert_allclose(
            versus_mean["difference"],
            table.mean("embedding", "cc") - table.mean("embedding_mean", "cc"),
            atol=1e-9,
        )
        usm_row = stored["rows"]["gt_usm"]
        assert usm_row["information_gain"] == pytest.approx(0.0, abs=1e-6)
        assert usm_row["cc"]["versus_usm"]["p"] == 1.0
        np.testing.assert_allclose(
            stored["rows"]["embedding"]["cc"]["versus_usm"]["difference"],
            stored["rows"]["embedding"]["cc"]["mean"] - usm_row["cc"]["mean"],
            atol=1e-6,
        )
        assert 0.0 <= stored["rows"]["embedding"]["kld"]["versus_usm"]["p"] <= 1.0
        assert stored["rows"]["gt_usm"]["name"] == "USM (ground truth)"
        assert (stored["usm_floor"], stored["m"], stored["pairs"]) == (0.3, 3, count)


def test_every_row_of_the_closed_set_and_the_multi_task_row_only_there(
    tiny_data_dir, tiny_workdirs
):
    # The main job's models trained on the universal model's USMs (usm_source="predicted"): each
    # is given that model's USM of the test image, and compared with it too.
    models = methods.Models.restore(tiny_workdirs)
    assert models.psm_network.predicted_usm and models.multi_task.predicted_usm
    context = _context(models)
    closed = context.evaluation_set("closed")
    rows = context.rows("closed")
    assert [row.id for row in rows] == [
        "gt_usm",
        "gt_usm_leave_one_out",
        "predicted_usm",
        "centre_bias",
        "mean_discrepancy",
        "prior_blend",
        "density_ratio",
        "multi_task",
        "per_observer",
        "embedding",
        "embedding_shuffled",
        "embedding_mean",
    ]
    given = {row.id for row in rows if row.given_predicted_usm}
    assert given == {"multi_task", "per_observer", "embedding", "embedding_mean"}
    for row in rows:
        assert row.psm.shape == closed.psm.shape and np.isfinite(row.psm).all()
    assert rows[9].id == "embedding" and rows[9].name.endswith("w/ predicted USM")
    # The control differs from the embedding row only by whose embedding the network got.
    by_id = {row.id: row.psm for row in rows}
    assert not np.allclose(by_id["embedding"], by_id["embedding_shuffled"])
    table = context.table("closed")
    versus = table.rows["embedding"]["cc"]["versus_predicted_usm"]
    predicted_cc = context.scores("closed")["predicted_usm"]["cc"]
    ours_cc = context.scores("closed")["embedding"]["cc"]
    np.testing.assert_allclose(versus["difference"], np.mean(ours_cc - predicted_cc), atol=1e-6)
    assert versus["people"]["n"] == len(np.unique(closed.observer))
    assert "versus_predicted_usm" not in table.rows["centre_bias"]["cc"]
    assert 0.0 < table.predicted_usm_cc < 1.0
    markdown = report.real_use_markdown(table)
    assert "| Embedding + hypernetwork (Strohm et al.) w/ predicted USM |" in markdown
    open_rows = context.rows("open")
    assert "multi_task" not in [row.id for row in open_rows]  # no head for unseen observers


@pytest.mark.slow
def test_models_trained_on_the_ground_truth_add_the_real_use_rows(tiny_data_dir, tmp_path):
    # usm_source="ground_truth": each model's row given the GT USM, then the same model given the
    # universal model's USM (the encoder's sets embedded from predicted USMs too).
    trained = {}
    for model in ("embedding", "psm_network", "multi_task", "universal"):
        fields = {"encoder_workdir": trained["embedding"]} if model == "psm_network" else {}
        config = tiny_config(model, tiny_data_dir, **fields)
        assert config.usm == "ground_truth"
        trained[model] = str(tmp_path / model)
        loop.train_and_evaluate(config, trained[model])
    context = _context(methods.Models.restore(trained))
    closed = context.evaluation_set("closed")
    rows = context.rows("closed")
    assert [row.id for row in rows] == [
        "gt_usm",
        "gt_usm_leave_one_out",
        "predicted_usm",
        "centre_bias",
        "mean_discrepancy",
        "prior_blend",
        "density_ratio",
        "multi_task",
        "multi_task_predicted_usm",
        "embedding",
        "embedding_predicted_usm",
        "embedding_shuffled",
        "embedding_mean",
    ]
    by_id = {row.id: row.psm for row in rows}
    assert not np.allclose(by_id["multi_task"], by_id["multi_task_predicted_usm"])
    assert not np.allclose(by_id["embedding"], by_id["embedding_predicted_usm"])
    table = context.table("closed")
    assert "versus_predicted_usm" not in table.rows["embedding"]["cc"]
    versus = table.rows["embedding_predicted_usm"]["cc"]["versus_predicted_usm"]
    predicted_cc = context.scores("closed")["predicted_usm"]["cc"]
    ours_cc = context.scores("closed")["embedding_predicted_usm"]["cc"]
    np.testing.assert_allclose(versus["difference"], np.mean(ours_cc - predicted_cc), atol=1e-6)
    assert versus["people"]["n"] == len(np.unique(closed.observer))
    findings = report.findings_markdown({"closed": table}, {}, {}, None, m=3)
    assert "Closed set: the embedding network against the ground-truth USM" in findings
    assert "Real use, given the universal model's USM and enrolled on predicted USMs" in findings


@pytest.mark.slow
def test_a_fine_tuned_universal_network_adds_the_pretrained_row(
    tiny_data_dir, tiny_workdirs, tmp_path
):
    tuned = tiny_config("universal", tiny_data_dir, init_from=tiny_workdirs["universal"])
    loop.train_and_evaluate(tuned, tmp_path / "tuned")
    models = methods.Models.restore({"universal": str(tmp_path / "tuned")})
    assert models.pretrained_universal.workdir == Path(tiny_workdirs["universal"])
    rows = _context(models).rows("closed", baselines=False)
    assert [(row.id, row.name) for row in rows] == [
        ("gt_usm", "USM (ground truth)"),
        ("gt_usm_leave_one_out", "USM without the scored observer (leave-one-out; ours)"),
        ("pretrained_usm", f"USM (universal network trained on {TINY}, not fine-tuned)"),
        ("predicted_usm", "USM (fine-tuned universal network)"),
    ]


def test_restoring_builds_no_optimiser_and_opens_no_dataset(tiny_workdirs, monkeypatch):
    """Parameters only: the network from config.json, shapes from eval_shape, values from the
    checkpoint; equal to the parameters training saved."""
    import optax
    from flax import nnx

    from psm_jax.data import pipeline
    from psm_jax.train import tasks

    calls = []
    monkeypatch.setattr(pipeline, "open_split", lambda *a, **k: calls.append("open_split"))
    monkeypatch.setattr(tasks, "optimizer", lambda *a, **k: calls.append("optimizer"))
    for name in ("sgd", "adam"):
        monkeypatch.setattr(optax, name, lambda *a, _n=name, **k: calls.append(_n))
    restored = {name: inference.restore(workdir) for name, workdir in tiny_workdirs.items()}
    assert calls == []
    assert {name: r.kind for name, r in restored.items()} == {n: n for n in tiny_workdirs}
    assert restored["multi_task"].model.num_observers == 4  # the tiny set's training observers
    with pytest.raises(ValueError, match="holds a 'universal' model, not 'embedding'"):
        inference.restore(tiny_workdirs["universal"], kind="embedding")
    monkeypatch.undo()
    # The same values as a whole-state restore of the run's best checkpoint.
    config = checkpoint.load_config(tiny_workdirs["psm_network"])
    _, metadata = pipeline.open_split(config.dataset, "train", config.data_dir)
    task = tasks.make_task(config, metadata, np.zeros((4, 4, 8), np.float32))
    from psm_jax.train import step as train_step

    graphdef, state = train_step.init_state(
        task.build_model(nnx.Rngs(0)), tasks.optimizer(config, 1)
    )
    mgr = checkpoint.manager(tiny_workdirs["psm_network"])
    state, _ = checkpoint.restore(mgr, state, mgr.best_step())
    whole = nnx.state(train_step.merge(graphdef, state), nnx.Param)
    alone = nnx.state(restored["psm_network"].model, nnx.Param)
    for a, b in zip(jax_leaves(whole), jax_leaves(alone), strict=True):
        np.testing.assert_array_equal(a, b)


def jax_leaves(state):
    import jax

    return [np.asarray(leaf) for leaf in jax.tree.leaves(state)]


def test_a_workdir_saved_before_num_observers_was_recorded_still_restores(tiny_workdirs, tmp_path):
    import shutil

    old = tmp_path / "multi_task"
    shutil.copytree(tiny_workdirs["multi_task"], old)
    stored = json.loads((old / "config.json").read_text())
    del stored["num_observers"], stored["working_size"]
    (old / "config.json").write_text(json.dumps(stored))
    restored = inference.restore(old)
    assert restored.model.num_observers == 4  # read from the stored parameters' shapes
    assert restored.working_size == (120, 160)


@pytest.mark.slow
def test_a_workdir_restores_computing_in_bfloat16_with_the_same_parameters(
    tiny_data_dir, tiny_workdirs
):
    """`compute_dtype` changes what a restored model computes in, not what it holds: the same
    float32 parameters, float32 outputs close to the float32 model's; models without the
    option come back as trained."""
    from flax import nnx

    from psm_jax.data import pipeline

    source, metadata = pipeline.open_split(TINY, "train", tiny_data_dir)
    records = [source[i] for i in range(8)]
    images = np.stack([pipeline.decode_image(r["image"], metadata.working_size) for r in records])
    usms = np.stack([pipeline.ground_truth_maps(r, metadata)[2] for r in records])
    embedding = np.random.default_rng(0).normal(size=(8, 8)).astype(np.float32)
    embedding /= np.linalg.norm(embedding, axis=1, keepdims=True)
    outputs, params = {}, {}
    for dtype in (None, "bfloat16"):
        restored = inference.restore(tiny_workdirs["psm_network"], compute_dtype=dtype)
        outputs[dtype] = inference.predict_discrepancy(restored, images, usms, embedding)
        params[dtype] = jax_leaves(nnx.state(restored.model, nnx.Param))
    assert restored.config.network.compute_dtype == "bfloat16"
    for as_trained, in_bfloat16 in zip(params[None], params["bfloat16"], strict=True):
        assert in_bfloat16.dtype == np.float32
        np.testing.assert_array_equal(in_bfloat16, as_trained)
    assert outputs["bfloat16"].dtype == np.float32
    scale = np.abs(outputs[None]).max()
    assert 0 < np.abs(outputs["bfloat16"] - outputs[None]).max() < 0.05 * scale + 1e-3
    universal = inference.restore(tiny_workdirs["universal"], compute_dtype="bfloat16")
    assert "compute_dtype" not in universal.config.network  # computes in float32
    with pytest.raises(ValueError, match="compute_dtype must be one of"):
        inference.restore(tiny_workdirs["psm_network"], compute_dtype="float16")


def test_the_asterisk_marks_a_significant_win_over_the_strongest_row(tmp_path):
    # Three people: the papers' Mann-Whitney over pairs (tests/test_people.py: over people).
    rng = np.random.default_rng(0)
    evaluation = _FakeSet()
    base = {m: rng.normal(0.5, 0.05, 200) for m in (*scoring.METRICS, "information_gain")}
    strong = {m: v + (0.2 if m != "kld" else -0.2) for m, v in base.items()}
    rows = [
        methods.Row("gt_usm", "USM", None),
        methods.Row("per_observer", "Other", None),
        methods.Row("embedding", "Ours", None),
    ]

    def table(rows, scores):
        path = scoring.write_scores(tmp_path / "closed_scores.csv", evaluation, scores)
        return scoring.table(
            evaluation,
            rows,
            scoring.read_scores(path),
            usm_floor=0.3,
            m=32,
            discrepancy_weight=1.0,
        )

    table_ = table(rows, {"gt_usm": base, "per_observer": dict(base), "embedding": strong})
    assert table_.significance == "pairs"
    assert all(table_.rows["embedding"][m]["significant"] for m in scoring.METRICS)
    assert not any(table_.rows["gt_usm"][m]["significant"] for m in scoring.METRICS)
    tie = table(rows[::2], {"gt_usm": base, "embedding": dict(base)})
    assert not any(tie.rows["embedding"][m]["significant"] for m in scoring.METRICS)
    assert "| Ours | 0.700* |" in report.table_markdown(table_).replace(
        f"{table_.mean('embedding', 'cc'):.3f}", "0.700"
    )


class _FakeSet:
    dataset, protocol = "d", "closed"
    image = np.tile(np.arange(50), 4)[:200]
    observer = np.repeat(np.arange(3), 67)[:200]
    image_ids = [f"i{k}" for k in range(50)]
    observer_ids = ["a", "b", "c"]


def test_preference_alignment_tracks_true_preference_distances():
    rng = np.random.default_rng(0)
    preferences = rng.dirichlet(np.ones(5), size=12)
    logits = np.log(preferences)
    logits -= logits.mean(axis=1, keepdims=True)
    # Embeddings that are the (normalised) centred log-preferences plus a little set noise: their
    # cosine distances follow the preference distances closely.
    labels = np.repeat(np.arange(12), 4)
    noisy = logits[labels] + 0.05 * rng.standard_normal((48, 5))
    aligned = embeddings.preference_alignment(noisy + 3.0 * np.eye(5)[0], labels, preferences)
    assert aligned["spearman"] > 0.5 and aligned["p_value"] < 0.01 and aligned["pairs"] == 66
    unrelated = embeddings.preference_alignment(rng.standard_normal((48, 8)), labels, preferences)
    assert abs(unrelated["spearman"]) < 0.3 and unrelated["p_value"] > 0.05


def test_precision_at_1_versus_m_is_nan_where_the_images_cannot_supply_a_set(
    tiny_data_dir, tiny_workdirs
):
    from psm_jax.data import pipeline

    encoder = inference.restore(tiny_workdirs["embedding"])
    source, metadata = pipeline.open_split(TINY, "train", tiny_data_dir)
    details: dict = {}
    precision = embeddings.precision_at_1_versus_m(
        encoder, source, metadata, ms=(4, 16), sets_per_observer=3, details=details
    )
    assert 0.0 <= precision[4] <= 1.0 and np.isnan(precision[16])  # 24 training images
    # An observer's sets share no image; at m = 16 nobody has two such sets in 24 images.
    chosen = details[4]["image_index"]
    assert chosen.shape == (2, 3, 4) and details[4]["people"] == 2
    for own in chosen:
        assert len(np.unique(own)) == own.size
    assert details[4]["chance"] == pytest.approx(2 / 5)
    assert details[16]["sets_per_observer"] == 1 and np.isnan(details[16]["chance"])
    # The earlier draw from windows of 2 m images, kept as an option, shares images.
    overlapping: dict = {}
    windows = embeddings.precision_at_1_versus_m(
        encoder,
        source,
        metadata,
        ms=(8,),
        sets_per_observer=3,
        image_disjoint=False,
        details=overlapping,
    )
    assert 0.0 <= windows[8] <= 1.0 and "image_index" not in overlapping[8]
    vectors, labels = embeddings.set_embeddings(
        encoder, source, metadata, group="test", m=4, sets_per_observer=3
    )
    assert vectors.shape == (6, 8) and list(labels) == [0, 0, 0, 1, 1, 1]
    # A pair cache shared between calls (the main job's precision@1 and preference alignment on
    # the test observers) fills once and changes no embedding.
    shared: dict = {}
    again = embeddings.precision_at_1_versus_m(
        encoder, source, metadata, ms=(4, 16), sets_per_observer=3, pair_cache=shared
    )
    assert again[4] == precision[4] and len(shared) > 0
    cached, _ = embeddings.set_embeddings(
        encoder, source, metadata, group="test", m=4, sets_per_observer=3, pair_cache=shared
    )
    np.testing.assert_allclose(cached, vectors, atol=1e-6)
    with pytest.raises(ValueError, match="m must be an integer from 1 to 12 .* has 24 images"):
        inference.embed_observers(encoder, source, metadata, group="test", m=16)


def test_observers_can_be_embedded_on_other_usms_than_the_ground_truth(
    tiny_data_dir, tiny_workdirs, tmp_path
):
    """`usms` replaces the USM each image has in the encoder's training (a new person's
    enrolment has only the universal network's): the same maps given explicitly change nothing,
    other maps do."""
    from psm_jax.data import pipeline

    encoder = inference.restore(tiny_workdirs["embedding"])
    assert encoder.model.needs_usms  # the main job's encoder reads the departure from the USM
    # ... from the universal model's USMs, which the main job wrote and trained it on
    assert encoder.predicted_usm
    source, metadata = pipeline.open_split(TINY, "train", tiny_data_dir)
    predicted = inference.source_usms(inference.restore(tiny_workdirs["universal"]), source)
    truth = np.stack(
        [pipeline.ground_truth_maps(source[i], metadata)[2] for i in range(len(source))]
    )
    kwargs = {"group": "test", "m": 4, "per_observer": 2, "sets_per_observer": 2}
    default = inference.embed_observers(encoder, source, metadata, **kwargs)
    explicit = inference.embed_observers(encoder, source, metadata, usms=predicted, **kwargs)
    np.testing.assert_allclose(explicit, default, atol=1e-5)
    other = inference.embed_observers(encoder, source, metadata, usms=truth[::-1], **kwargs)
    assert not np.allclose(other, default, atol=1e-3)
    with pytest.raises(ValueError, match="usms holds 3 maps for 24 records"):
        inference.embed_observers(encoder, source, metadata, usms=truth[:3], **kwargs)
    # An encoder trained on external USMs (the "predicted" option) is embedded on them.
    folder = tmp_path / "usms"
    folder.mkdir()
    stored = truth[::-1] - truth[::-1].min(axis=(1, 2), keepdims=True)
    stored /= stored.max(axis=(1, 2), keepdims=True)  # as the external reader normalises them
    for i in range(len(source)):
        np.save(folder / f"{Path(pipeline.image_id(source[i])).stem}.npy", stored[i])
    config = encoder.config.copy_and_resolve_references()
    config.usm, config.external_usm_dir = "external", str(folder)
    external = dataclasses.replace(encoder, config=config)
    np.testing.assert_allclose(
        inference.embed_observers(external, source, metadata, **kwargs),
        inference.embed_observers(encoder, source, metadata, usms=stored, **kwargs),
        atol=1e-5,
    )


def test_the_usm_floor_keeps_a_fraction_of_the_usm_where_the_discrepancy_erases_it():
    usm = np.linspace(0.0, 0.8, 8 * 8, dtype=np.float32).reshape(1, 8, 8)
    discrepancy = np.full((1, 2, 2), -0.5, np.float32)  # coarse, upsampled 4x
    discrepancy[0, 0, 0] = 0.9  # and one cell pushed above 1
    papers = inference.compose_psm(usm, discrepancy, usm_floor=0.0, discrepancy_weight=1.0)
    np.testing.assert_allclose(papers, np.clip(usm + _up(discrepancy), 0, 1))
    floored = inference.compose_psm(usm, discrepancy, usm_floor=0.3, discrepancy_weight=1.0)
    erased = usm + _up(discrepancy) < 0.3 * usm
    assert erased.sum() > 10  # the case the floor is for
    np.testing.assert_allclose(floored[erased], 0.3 * usm[erased], rtol=1e-6)
    np.testing.assert_allclose(floored[~erased], papers[~erased], rtol=1e-6)
    assert floored.max() <= 1.0
    with pytest.raises(ValueError, match="usm_floor"):
        inference.compose_psm(usm, discrepancy, usm_floor=1.5, discrepancy_weight=1.0)


def test_the_discrepancy_weight_scales_the_discrepancy_before_the_clip():
    usm = np.linspace(0.0, 0.8, 8 * 8, dtype=np.float32).reshape(1, 8, 8)
    discrepancy = np.full((1, 2, 2), -0.5, np.float32)
    discrepancy[0, 0, 0] = 0.9
    half = inference.compose_psm(usm, discrepancy, usm_floor=0.3, discrepancy_weight=0.5)
    np.testing.assert_allclose(half, np.clip(usm + 0.5 * _up(discrepancy), 0.3 * usm, 1), 1e-6)
    # The papers' weight, 1, adds the whole discrepancy; weight 0 gives the USM back.
    np.testing.assert_allclose(
        inference.compose_psm(usm, discrepancy, usm_floor=0.3, discrepancy_weight=1.0),
        np.clip(usm + _up(discrepancy), 0.3 * usm, 1),
        1e-6,
    )
    np.testing.assert_allclose(
        inference.compose_psm(usm, discrepancy, usm_floor=0.3, discrepancy_weight=0.0), usm
    )
    with pytest.raises(ValueError, match="discrepancy_weight"):
        inference.compose_psm(usm, discrepancy, usm_floor=0.3, discrepancy_weight=-0.1)
    assert report.composition(0.3, 0.5) == (
        "Predicted PSM = clip(USM + 0.5 x predicted discrepancy, 0.3 x USM, 1) (our USM floor; "
        "the papers clip at 0: usm_floor=0 in the evaluation config; our discrepancy weight; the "
        "papers': discrepancy_weight=1)"
    )
    assert report.composition(0, 1) == "Predicted PSM = clip(USM + predicted discrepancy, 0, 1)"
    assert report.composition(0, 0.5, log_ratio_scale=2.0).endswith(
        "USM x exp(2 x its output), peak 1, as trained"
    )


def test_the_training_loss_scores_the_papers_composition():
    """losses.composed_kld's value is the KLD of compose_psm(..., usm_floor=0)."""
    import jax.numpy as jnp

    from psm_jax import losses

    rng = np.random.default_rng(0)
    usm = rng.random((2, 16, 24)).astype(np.float32)
    psm = rng.random((2, 16, 24)).astype(np.float32)
    discrepancy = rng.uniform(-0.6, 0.6, (2, 4, 6)).astype(np.float32)
    composed = inference.compose_psm(usm, discrepancy, usm_floor=0.0, discrepancy_weight=1.0)
    assert (composed == 0).any()
    p = composed / composed.sum(axis=(1, 2), keepdims=True)
    q = psm / psm.sum(axis=(1, 2), keepdims=True)
    expected = np.mean(np.sum(q * np.log(1e-7 + q / (p + 1e-7)), axis=(1, 2)))
    value = losses.composed_kld(jnp.asarray(discrepancy), usm, psm, epsilon=1e-7)
    np.testing.assert_allclose(value, expected, rtol=1e-4)


def test_the_log_ratio_composition_and_its_loss_score_the_same_map():
    """compose_psm's "log_ratio" form is USM x exp(w s D) at peak 1, and losses.log_ratio_kld is
    the KLD of that map (w = 1) against the PSM."""
    import jax.numpy as jnp

    from psm_jax import losses

    rng = np.random.default_rng(1)
    usm = rng.random((2, 16, 24)).astype(np.float32)
    psm = rng.random((2, 16, 24)).astype(np.float32)
    log_ratio = rng.uniform(-1, 1, (2, 4, 6)).astype(np.float32)
    composed = inference.compose_psm(usm, log_ratio, 0.3, 1.0, "log_ratio", 2.0)
    resized = np.asarray(jax.image.resize(log_ratio, (2, 16, 24), "bilinear"))
    expected = usm * np.exp(2.0 * resized)
    expected /= expected.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(composed, expected, rtol=1e-5)
    assert composed.max(axis=(1, 2)) == pytest.approx(1.0)
    # w = 0 gives the USM back (scaled to its peak); the floor plays no part.
    np.testing.assert_allclose(
        inference.compose_psm(usm, log_ratio, 0.0, 0.0, "log_ratio", 2.0),
        usm / usm.max(axis=(1, 2), keepdims=True),
        rtol=1e-6,
    )
    p = composed / composed.sum(axis=(1, 2), keepdims=True)
    q = psm / psm.sum(axis=(1, 2), keepdims=True)
    kld = np.mean(np.sum(q * np.log(1e-7 + q / (p + 1e-7)), axis=(1, 2)))
    level = np.mean(np.square(log_ratio.mean(axis=(1, 2))))
    value = losses.log_ratio_kld([jnp.asarray(log_ratio)], usm, psm, 2.0)
    np.testing.assert_allclose(value, kld + level, rtol=1e-4)
    # Deep supervision: the sum over outputs.
    twice = losses.log_ratio_kld([jnp.asarray(log_ratio)] * 2, usm, psm, 2.0)
    np.testing.assert_allclose(twice, 2 * (kld + level), rtol=1e-4)
    # A constant added to the output changes no map, only the level term that pins it at 0.
    centred = log_ratio - log_ratio.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(
        inference.compose_psm(usm, centred, 0.3, 1.0, "log_ratio", 2.0), composed, rtol=1e-5
    )
    np.testing.assert_allclose(
        losses.log_ratio_kld([jnp.asarray(centred)], usm, psm, 2.0), kld, rtol=1e-4
    )
    with pytest.raises(ValueError, match="composition"):
        inference.compose_psm(usm, log_ratio, 0.3, 1.0, "multiplicative")


def _up(discrepancy):
    import jax

    return np.asarray(jax.image.resize(discrepancy, (1, 8, 8), "bilinear"))


def test_the_open_set_oracle_picks_each_unseen_observers_best_trained_network(
    tiny_data_dir, tiny_workdirs
):
    """Strohm et al.'s oracle: per unseen observer, the trained observer's network with the lowest
    discrepancy MSE against that observer's own targets (PSM - the pair's USM)."""
    from psm_jax.data import saliency_maps

    models = methods.Models.restore({"per_observer": tiny_workdirs["per_observer"]})
    context = _context(models, usm_floor=0.0)
    evaluation = context.evaluation_set("open")
    oracle = context.rows("open")[-1]
    assert oracle.id == "per_observer"
    usm = evaluation.pair_usm
    target = saliency_maps.discrepancy_maps(evaluation.psm, usm, saliency_maps.OUTPUT_SIZE)
    candidates = [
        inference.predict_discrepancy(
            models.per_observer, evaluation.pair_images, usm, np.full(len(usm), k, np.int32)
        )
        for k in range(models.per_observer.model.num_observers)
    ]
    for observer in np.unique(evaluation.observer):
        own = evaluation.observer == observer
        errors = [np.mean((c[own] - target[own]) ** 2) for c in candidates]
        best = candidates[int(np.argmin(errors))][own]
        expected = inference.compose_psm(usm[own], best, usm_floor=0.0, discrepancy_weight=1.0)
        np.testing.assert_allclose(oracle.psm[own], expected, atol=1e-6)


@pytest.mark.slow
def test_baselines_come_from_the_data_the_embedding_gets(tiny_data_dir, tiny_workdirs):
    """Closed set: every training image an observer viewed; open set: their m enrolment pairs.
    The blend weight is the grid value with the lowest KLD on those pairs."""
    from psm_jax.data import pipeline, saliency_maps
    from psm_jax.evaluation import priors

    source, metadata = pipeline.open_split(TINY, "train", tiny_data_dir)
    closed = priors.observer_priors(source, metadata, "train")
    observer = metadata.observers("train")[1]
    psms, usms = [], []
    for index in range(len(source)):
        record = source[index]
        psm = np.asarray(record["psm"], np.float32)
        valid = np.asarray(record["psm_valid"], bool)
        usm, usm_valid = saliency_maps.universal_saliency_maps(
            psm, valid, mode="train", train_observers=metadata.train_mask
        )
        if valid[observer] and usm_valid[0]:
            psms.append(psm[observer])
            usms.append(usm[0])
    psms, usms = np.stack(psms), np.stack(usms)
    assert closed.pairs[1] == len(psms)
    np.testing.assert_allclose(closed.mean_psm[1], psms.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(closed.mean_discrepancy[1], (psms - usms).mean(axis=0), atol=1e-6)
    losses = {
        a: float(np.mean(metrics.kld(priors.blend(usms, psms.mean(axis=0), a), psms)))
        for a in priors.BLEND_WEIGHTS
    }
    assert losses[float(closed.blend[1])] == pytest.approx(min(losses.values()), abs=1e-7)
    # The density ratio against the mean USM of the same pairs; g, then w given g, by KLD.
    epsilon = priors.RATIO_EPSILON * usms.mean(axis=0).max()
    ratio = (psms.mean(axis=0) + epsilon) / (usms.mean(axis=0) + epsilon)
    np.testing.assert_allclose(closed.density_ratio[1], ratio, rtol=1e-5)
    losses = {
        g: float(np.mean(metrics.kld(priors.density_ratio_map(usms, ratio, g, 0.0), psms)))
        for g in priors.GAMMAS
    }
    chosen = min(priors.GAMMAS, key=lambda g: abs(g - closed.gamma[1]))  # float32 -> grid
    assert losses[chosen] == pytest.approx(min(losses.values()), abs=1e-6)
    # w by two-fold cross-fitting: the ratio of the even pairs scored on the odd ones and back.
    halves = (slice(0, None, 2), slice(1, None, 2))
    losses = {}
    for w in priors.RATIO_WEIGHTS:
        total = 0.0
        for fit, held in (halves, halves[::-1]):
            fitted = priors.density_ratio(psms[fit], usms[fit])
            held_map = priors.density_ratio_map(usms[held], fitted, closed.gamma[1], w)
            total += float(np.sum(metrics.kld(held_map, psms[held])))
        losses[w] = total / len(psms)
    assert losses[float(closed.ratio_weight[1])] == pytest.approx(min(losses.values()), abs=1e-6)

    encoder = inference.restore(tiny_workdirs["embedding"])
    _, enrolment = inference.embed_observers(
        encoder, source, metadata, group="test", m=3, with_image_index=True
    )
    opened = priors.observer_priors(source, metadata, "test", enrolment[:, 0])
    test_observer = metadata.observers("test")[0]
    own = np.stack(
        [np.asarray(source[int(i)]["psm"], np.float32)[test_observer] for i in enrolment[0, 0]]
    )
    assert opened.pairs[0] == 3
    np.testing.assert_allclose(opened.mean_psm[0], own.mean(axis=0), atol=1e-6)
    centre = priors.centre_bias(source, metadata)
    assert centre.shape == (120, 160) and 0 < centre.max() <= 1


def test_density_ratio_map_reweights_the_usm_in_log_space():
    from psm_jax.evaluation import priors

    usm = np.array([[[0.25, 1.0], [0.5, 0.0]]], np.float32)
    ratio = np.array([[4.0, 1.0], [0.25, 2.0]], np.float32)
    np.testing.assert_allclose(priors.density_ratio_map(usm, ratio, [1.0], [0.0]), usm)
    # g = 2, w = 1: [[0.0625 * 4, 1], [0.25 * 0.25, 0]], then scaled to a maximum of 1.
    expected = np.array([[[0.25, 1.0], [0.0625, 0.0]]], np.float32)
    np.testing.assert_allclose(priors.density_ratio_map(usm, ratio, [2.0], [1.0]), expected)
    # w = 0.5 on the ratio alone: sqrt of the ratio times the USM, peak 1.
    halved = priors.density_ratio_map(usm, ratio, [1.0], [0.5])
    np.testing.assert_allclose(halved, np.array([[[0.5, 1.0], [0.25, 0.0]]]), rtol=1e-6)
    zero = priors.density_ratio_map(np.zeros_like(usm), ratio, [1.0], [1.0])
    assert np.all(zero == 0)


def test_in_batches_gives_every_call_the_full_batch_shape():
    shapes = []

    def function(x, y):
        shapes.append(x.shape)
        return x * 2 + y

    x, y = np.arange(10.0).reshape(5, 2), np.ones((5, 2))
    np.testing.assert_array_equal(inference.in_batches(function, x, y, batch_size=2), x * 2 + y)
    assert shapes == [(2, 2)] * 3  # the last batch of one row padded to two
    shapes.clear()
    np.testing.assert_array_equal(inference.in_batches(function, x, y, batch_size=8), x * 2 + y)
    assert shapes == [(5, 2)]  # fewer rows than a batch: not padded


def test_one_observers_predictions_equal_naming_them_per_example(tiny_data_dir, tiny_workdirs):
    """The per-observer oracle's path: one training observer's layers on every pair."""
    per_observer = inference.restore(tiny_workdirs["per_observer"])
    evaluation = pairs.evaluation_set(TINY, tiny_data_dir, "open", "test")
    images, usm = evaluation.pair_images, evaluation.pair_usm
    one = inference.predict_discrepancy_of_observer(per_observer, images, usm, 1)
    each = inference.predict_discrepancy(per_observer, images, usm, np.full(len(images), 1))
    np.testing.assert_allclose(one, each, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="no observer heads"):
        inference.predict_discrepancy_of_observer(
            inference.restore(tiny_workdirs["psm_network"]), images, usm, 0
        )


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("m", 0, r"--config.m=0: m must be an integer from 1 to half the train split's images"),
        ("seed", -1, r"--config.seed=-1: .*0 or more"),
        ("usm_floor", float("nan"), r"--config.usm_floor must be in \[0, 1\], got nan"),
        ("discrepancy_weight", float("inf"), r"--config.discrepancy_weight must be in \[0, 2\]"),
        ("evals.precision.ms", (0, 4), r"--config.evals.precision.ms=\(0, 4\): .*1 or more"),
        ("evals.precision.sets_per_observer", 0, r"--config.evals.precision.sets_per_observer=0"),
        ("evals.alignment.sets_per_observer", -2, r"--config.evals.alignment.sets_per_observer"),
        ("evals.activity.pairs", 0, r"--config.evals.activity.pairs=0: .*1 or more"),
        ("evals.examples.images", -1, r"--config.evals.examples.images=-1: .*0 or more"),
    ],
)
def test_every_number_of_the_evaluation_config_is_checked_naming_its_flag(field, value, message):
    config = evaluation_configs.get_config()
    config.update_from_flattened_dict({field: value})
    with pytest.raises(ValueError, match=message):
        evaluators.check(config)


def test_an_m_larger_than_the_train_split_allows_names_the_split_and_its_images():
    """A set of m pairs is drawn from a window of 2m training images: a larger m is refused
    naming --config.m, its range and the train split's image count."""
    import types

    import ml_collections
    from flax import nnx

    from psm_jax.models import embedding

    config = embedding.EncoderConfig(widths=(4, 4, 4, 4), embedding_size=6)
    encoder = inference.Restored(
        Path("/nowhere/embedding"),
        ml_collections.ConfigDict({"model": "embedding"}),
        embedding.UserEmbeddingEncoder(config, rngs=nnx.Rngs(0)),
        1,
    )
    metadata = types.SimpleNamespace(name="tiny_dataset")
    with pytest.raises(
        ValueError,
        match=r"--config.m=6: m must be an integer from 1 to 5 .*the train split of tiny_dataset "
        r"has 10 images",
    ):
        inference.embed_observers(encoder, list(range(10)), metadata, group="test", m=6)


def test_a_full_disk_writing_the_report_names_the_file(tmp_path, monkeypatch):
    """Issue 36 case 17: "[Errno 28] No space left on device" named no file."""
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError, match=f"disk is full: no space left to write {tmp_path}/report.md"):
        report.write_report(
            tmp_path / "report.md",
            {},
            dataset=TINY,
            usm_floor=0.0,
            discrepancy_weight=1.0,
            m=3,
            dataset_summary="",
            runs={},
        )


@pytest.mark.slow
def test_the_no_embedding_control_trains_one_embedding_for_everybody_and_adds_its_row(
    tiny_data_dir, tiny_workdirs, tmp_path
):
    """Issue 37's no-embedding control: the PSM network's recipe with one fixed unit vector for
    every observer (`--config.embedding_input=none`), a universal refiner of the USM; given to the
    evaluation as `no_embedding`, it adds its row among the controls."""
    from psm_jax.data import pipeline

    trained = tiny_workdirs["psm_network"]
    data_dir = checkpoint.load_config(trained).data_dir  # the tiny main job's, as the others
    config = tiny_config(
        "psm_network",
        data_dir,
        encoder_workdir=tiny_workdirs["embedding"],
        embedding_input="none",
    )
    _, metadata = pipeline.open_split(TINY, "train", data_dir)
    with config.unlocked():
        config.network.embedding_size = 8
    pool = loop.constant_embedding_pool(config, metadata)
    assert pool.shape == (len(metadata.observers("train")), config.embedding_pool_size, 8)
    assert (pool == loop.constant_embedding(8)).all()
    loop.train_and_evaluate(config, str(tmp_path / "no_embedding"))
    models = methods.Models.restore(
        {
            "embedding": tiny_workdirs["embedding"],
            "psm_network": trained,
            "no_embedding": str(tmp_path / "no_embedding"),
        }
    )
    context = _context(models, output_dir=tmp_path / "report")
    rows = {row.id: row for row in context.rows("closed")}
    assert "no_embedding" in rows and np.isfinite(rows["no_embedding"].psm).all()
    assert not np.allclose(rows["no_embedding"].psm, rows["embedding"].psm)
    table = context.table("closed")
    assert not any(table.rows["no_embedding"][m]["significant"] for m in scoring.METRICS)
    with pytest.raises(ValueError, match="not the no-embedding control"):
        methods.Models.restore({"embedding": tiny_workdirs["embedding"], "no_embedding": trained})
    config.embedding_input = "nothing"
    with pytest.raises(ValueError, match="--config.embedding_input='nothing'"):
        loop.no_embedding(config)


def test_the_controls_configs_come_from_the_trained_models_configs():
    """`--config.controls` (issue 37): the no-embedding control is the PSM network's config with
    one embedding for everybody; a baseline trained alike keeps its architecture and batch size
    and takes the PSM network's composition, optimiser and examples (num_steps x batch_size)."""
    from psm_jax.configs import main as main_configs

    config = main_configs.get_config("synthetic_personal_saliency")
    models = {name: config.models[name] for name in ("psm_network", "multi_task", "per_observer")}
    models["psm_network"].batch_size = 16
    models["multi_task"].batch_size = 8
    none = main_configs.control_config("no_embedding", models)
    assert none.embedding_input == "none" and none.model == "psm_network"
    alike = main_configs.control_config("multi_task_alike", models)
    psm = models["psm_network"]
    assert alike.model == "multi_task" and alike.batch_size == 8
    assert alike.num_steps * 8 == psm.num_steps * 16
    assert (alike.composition, alike.log_ratio_scale) == ("log_ratio", psm.log_ratio_scale)
    assert (alike.optimizer, alike.learning_rate) == (psm.optimizer, psm.learning_rate)
    assert alike.network.to_dict() == models["multi_task"].network.to_dict()
    assert models["multi_task"].composition == "additive"  # the papers' form stays as it was
    per_observer = main_configs.control_config("per_observer_alike", models)
    assert per_observer.architecture == models["per_observer"].architecture
    assert main_configs.controls(ml_collections.ConfigDict({"controls": ()})) == ()
    given = ml_collections.ConfigDict({"controls": "per_observer_alike,no_embedding"})
    assert main_configs.controls(given) == ("no_embedding", "per_observer_alike")
    with pytest.raises(ValueError, match="--config.controls: unknown"):
        main_configs.controls(ml_collections.ConfigDict({"controls": ("no_embeding",)}))
    with pytest.raises(ValueError, match="unknown control"):
        main_configs.control_config("universal_alike", models)
    with pytest.raises(ValueError, match="needs the multi_task model"):
        main_configs.control_config("multi_task_alike", {"psm_network": psm})


@pytest.mark.slow
def test_the_baselines_trained_alike_add_their_rows_and_the_comparison(tiny_workdirs, tmp_path):
    """The multi-task CNN and the per-observer networks trained alike the PSM network (from the
    tiny main job's configs, as `--config.controls` trains them) give rows in the closed set, the
    per-observer ones through the oracle in the open set (chosen by the composed map's KLD), and
    the embedding row's comparison with the stronger of them; a model of the papers' additive
    form is refused as one."""
    from psm_jax.configs import main as main_configs

    trained = {name: checkpoint.load_config(path) for name, path in tiny_workdirs.items()}
    workdirs = dict(tiny_workdirs)
    for control in ("multi_task_alike", "per_observer_alike"):
        config = main_configs.control_config(control, trained)
        config.num_steps = 4
        loop.train_and_evaluate(config, str(tmp_path / control))
        workdirs[control] = str(tmp_path / control)
    models = methods.Models.restore(workdirs)
    context = _context(models, output_dir=tmp_path / "report")
    closed = {row.id: row for row in context.rows("closed")}
    open_rows = {row.id: row for row in context.rows("open")}
    for row_id in ("multi_task_alike", "per_observer_alike"):
        assert np.isfinite(closed[row_id].psm).all()
        assert not np.allclose(closed[row_id].psm, closed[row_id.removesuffix("_alike")].psm)
    assert "multi_task_alike" not in open_rows and "oracle" in open_rows["per_observer_alike"].name
    table = context.table("closed")
    versus = table.rows["embedding"]["kld"]["versus_alike"]
    assert versus["row"] in ("multi_task_alike", "per_observer_alike")
    assert versus["people"]["n"] == table.people
    with pytest.raises(ValueError, match="not one trained alike"):
        methods.Models.restore({"multi_task_alike": tiny_workdirs["multi_task"]})


def test_the_closed_set_leave_one_out_usm_row_and_option(tiny_data_dir):
    """Issue 37, item 7: each closed-set pair's USM without the scored observer, (n USM - own
    PSM) / (n - 1) over the n training observers with a map; a row of its own by default, the USM
    of every row with `closed_usm="leave_one_out"`; none in the open set."""
    from psm_jax.data import pipeline

    closed = pairs.evaluation_set(TINY, tiny_data_dir, "closed")
    source, metadata = pipeline.open_split(TINY, "test", tiny_data_dir)
    counts = {}
    for index in range(len(source)):
        record = source[index]
        valid = np.asarray(record["psm_valid"], bool) & metadata.train_mask
        counts[pipeline.image_id(record)] = int(valid.sum())
    n = np.array([counts[closed.image_ids[i]] for i in closed.image])[:, None, None]
    expected = (n * closed.pair_usm - closed.psm) / (n - 1)
    np.testing.assert_allclose(closed.leave_one_out_usm, expected, atol=1e-5)
    assert not np.allclose(closed.leave_one_out_usm, closed.pair_usm)
    assert pairs.evaluation_set(TINY, tiny_data_dir, "open").leave_one_out_usm is None
    scored = pairs.evaluation_set(TINY, tiny_data_dir, "closed", closed_usm="leave_one_out")
    np.testing.assert_array_equal(scored.pair_usm, closed.leave_one_out_usm)
    with pytest.raises(ValueError, match="--config.closed_usm='own'"):
        pairs.evaluation_set(TINY, tiny_data_dir, "closed", closed_usm="own")
    source, metadata = pipeline.open_split(TINY, "train", tiny_data_dir)
    rows = methods.predict_rows(
        closed,
        methods.Models(),
        source=source,
        metadata=metadata,
        observer_embeddings=None,
        usm_floor=0.0,
        discrepancy_weight=1.0,
    )
    ids = [row.id for row in rows]
    assert ids[:2] == ["gt_usm", "gt_usm_leave_one_out"]
    rows = methods.predict_rows(
        scored,
        methods.Models(),
        source=source,
        metadata=metadata,
        observer_embeddings=None,
        usm_floor=0.0,
        discrepancy_weight=1.0,
    )
    assert "gt_usm_leave_one_out" not in [row.id for row in rows]
    assert rows[0].name.endswith("without the scored observer)")
    np.testing.assert_array_equal(rows[0].psm, closed.leave_one_out_usm)


def test_a_discrepancy_model_trains_against_the_leave_one_out_usm(tiny_data_dir):
    """`--config.usm_mode=leave_one_out`: the regression stream gives a training observer the
    other training observers' mean; refused with external (predicted) USMs, or unknown."""
    from psm_jax.data import pipeline
    from psm_jax.train import tasks

    source, metadata = pipeline.open_split(TINY, "train", tiny_data_dir)
    batches = {}
    for mode in ("train", "leave_one_out"):
        config = tiny_config("multi_task", tiny_data_dir, usm_mode=mode)
        task = tasks.make_task(config, metadata)
        batches[mode] = next(iter(task.stream(source, seed=0, shuffle=False, num_epochs=1)))
    np.testing.assert_array_equal(
        batches["train"]["observer"], batches["leave_one_out"]["observer"]
    )
    assert not np.allclose(batches["train"]["usm"], batches["leave_one_out"]["usm"])
    with pytest.raises(ValueError, match="--config.usm_mode=leave_one_out: this config trains"):
        tasks.make_task(
            tiny_config("multi_task", tiny_data_dir, usm_mode="leave_one_out", usm="external"),
            metadata,
        )
    with pytest.raises(ValueError, match="--config.usm_mode='own'"):
        tasks.make_task(tiny_config("multi_task", tiny_data_dir, usm_mode="own"), metadata)


def test_the_commit_is_found_in_a_checkout_and_unknown_outside_one(tmp_path):
    """The report's commit: the short hash, "+ uncommitted changes" once a tracked file differs
    (an untracked output does not count), "unknown" outside a git checkout (no crash)."""
    import subprocess

    from psm_jax.evaluation import provenance

    repo = tmp_path / "repo"
    (repo / "code").mkdir(parents=True)
    (repo / "code" / "module.py").write_text("x = 1\n")

    def git(*args):
        return subprocess.run(
            ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "first")
    head = git("rev-parse", "--short", "HEAD")
    assert provenance.commit(repo / "code") == head
    (repo / "code" / "output.png").write_text("untracked")
    assert provenance.commit(repo / "code") == head
    (repo / "code" / "module.py").write_text("x = 2\n")
    assert provenance.commit(repo / "code") == f"{head} + uncommitted changes"
    (repo / "copy").mkdir()  # e.g. an installed copy inside a checkout: not its code
    assert provenance.commit(repo / "copy") == "unknown"
    (tmp_path / "plain").mkdir()
    assert provenance.commit(tmp_path / "plain") == "unknown"
    record = provenance.record()
    assert set(record) == {"version", "commit", "command", "machine", "date"}
    assert "backend" in record["machine"] and "CPUs" in record["machine"]


def _report(tmp_path, results, **fields):
    settings = dict(
        dataset=TINY,
        usm_floor=0.3,
        discrepancy_weight=0.5,
        m=32,
        dataset_summary="",
        runs={},
        wall_time="Main job wall time: 5 s.",
        provenance={
            "version": "0.1.0",
            "commit": "abc1234 + uncommitted changes",
            "command": "launch/main.py '--workdir=/tmp/a b'",
            "machine": "Linux; 2 CPUs; JAX, cpu backend",
            "date": "2026-12-07 10:00:00+00:00",
        },
    )
    settings.update(fields)
    return report.write_report(tmp_path / "report.md", results, **settings).read_text()


def test_the_report_says_where_it_came_from_and_how_to_read_its_metrics(tmp_path):
    details = {m: {"chance": 0.1, "people": 5, "sets_per_observer": 10} for m in (4, 8, 32, 64)}
    results = {"precision_at_1": {8: 0.4, 32: 0.6, 64: 0.9}, "precision_details": details}
    text = _report(tmp_path, results)
    assert text.startswith(
        f"# psm-jax report: {TINY}\n\n"
        "- Code: psm-jax 0.1.0, commit abc1234 + uncommitted changes\n"
        "- Command: `launch/main.py '--workdir=/tmp/a b'`\n"
        "- Machine: Linux; 2 CPUs; JAX, cpu backend\n"
        "- Date: 2026-12-07 10:00:00+00:00\n"
        "- Main job wall time: 5 s.\n\n"
    )
    # Precision@1's headline is at the m the tables embed people from, not the largest m.
    findings = text.split("## What the results say")[1].split("Caveats")[0]
    assert "precision@1 0.60 at m = 32, the evaluation's m" in findings and "0.90" not in findings
    guide = text.split("## How to read this report")[1]
    for metric in ("CC ↑", "SIM ↑", "AUC-Judd ↑", "NSS ↑", "KLD ↓", "IG ↑", "precision@1 ↑"):
        assert f"- **{metric}**: " in guide
    # Another run of the same results differs only in its provenance.
    again = _report(tmp_path, results, wall_time="Evaluation wall time: 7 s.", provenance={})
    assert "- Code: psm-jax unknown, commit unknown\n" in again
    assert report.without_provenance(text) == report.without_provenance(again)
    assert report.without_provenance(text).startswith(f"# psm-jax report: {TINY}\n\nPredicted PSM")
    unscored = {"precision_at_1": {4: 0.5, 32: float("nan")}, "precision_details": details}
    assert "no precision@1 at the evaluation's m = 32" in _report(tmp_path, unscored)


def test_the_row_glossary_explains_every_row_the_report_shows():
    import types

    assert set(methods.ROW_GLOSSARY) == set(methods.ROW_IDS)
    shown = {
        "closed": types.SimpleNamespace(
            rows={"gt_usm": {"name": "USM (ground truth)"}, "multi_task": {"name": "Multi-task"}}
        ),
        "open": types.SimpleNamespace(
            rows={"gt_usm": {"name": "USM (ground truth)"}, "embedding": {"name": "Ours"}}
        ),
    }
    guide = report.reading_guide_markdown(shown)
    rows = [line for line in guide.splitlines() if line.startswith("- ") and "`" in line]
    assert rows == [
        f"- USM (ground truth) (`gt_usm`): {methods.ROW_GLOSSARY['gt_usm']}.",
        f"- Multi-task (`multi_task`): {methods.ROW_GLOSSARY['multi_task']}.",
        f"- Ours (`embedding`): {methods.ROW_GLOSSARY['embedding']}.",
    ]
    assert "precision@1" not in guide  # a report without it does not define it


def test_the_training_table_shows_only_the_settings_each_model_uses():
    """The multi-task CNN ignores `config.architecture` (it is Xu et al.'s whatever the field
    says): only the per-observer networks' row names it."""
    import ml_collections

    def run(**fields):
        config = dict(num_steps=6, batch_size=8, optimizer="adam", learning_rate=1e-3, seed=0)
        return {"config": ml_collections.ConfigDict({**config, **fields}), "step": 6}

    text = report.training_markdown(
        "", {"multi_task": run(architecture="strohm"), "per_observer": run(architecture="xu")}
    )
    [multi_task] = [line for line in text.splitlines() if line.startswith("| multi_task |")]
    [per_observer] = [line for line in text.splitlines() if line.startswith("| per_observer |")]
    assert "architecture" not in multi_task and "Strohm" not in multi_task
    assert "| Xu et al.'s architecture |" in per_observer


def test_the_main_jobs_report_explains_itself(tiny_main_job):
    """The demo's report.md: its provenance, the metrics with their directions above the tables,
    a glossary line for every row its tables show, precision@1's headline at the evaluation's m,
    and the training table naming no setting a model ignores."""
    import shlex
    import sys

    text = tiny_main_job["result"]["report"].read_text()
    head = text.split("\n\n", 2)[1]
    assert "- Code: psm-jax " in head and "commit " in head and "- Main job wall time: " in head
    assert f"- Command: `{shlex.join(sys.argv)}`" in head  # the fixture ran in this process
    assert "backend" in head.split("- Machine: ")[1]
    guide = text.split("## How to read this report")[1].split("### ")[0]
    assert "| Method | CC ↑ | SIM ↑ | AUC-Judd ↑ | NSS ↑ | KLD ↓ |" in text
    shown = {
        row_id for table in tiny_main_job["result"]["tables"].values() for row_id in table.rows
    }
    for row_id in shown:
        assert f"(`{row_id}`): {methods.ROW_GLOSSARY[row_id]}." in guide
    assert "(strohm)" not in text and "Per-observer networks (Strohm et al.'s architecture)" in text
    findings = text.split("## What the results say")[1].split("Caveats")[0]
    m = json.loads(
        (tiny_main_job["result"]["report"].parent / "report" / "evaluation_config.json").read_text()
    )["m"]
    assert f"at m = {m}, the evaluation's m" in findings or f"evaluation's m = {m} (" in findings
    assert m in tiny_main_job["result"]["precision_at_1"]
    [multi_task] = [line for line in text.splitlines() if line.startswith("| multi_task |")]
    assert "architecture" not in multi_task
