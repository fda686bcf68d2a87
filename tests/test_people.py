"""Statistics over people (psm_jax/evaluation/people.py) and the per-pair scores file
(psm_jax/evaluation/scoring.py): the observer, not the pair, is the unit that generalises."""

import numpy as np
import pytest

from psm_jax.evaluation import methods, people, report, scoring


def _design(observers: int, images: int):
    """Every observer on every image: (observer ids, image ids) per pair."""
    observer = np.repeat([f"o{k}" for k in range(observers)], images)
    image = np.tile([f"i{k}" for k in range(images)], observers)
    return observer, image


def test_the_sign_test_below_six_people_and_wilcoxon_from_six():
    assert people.over_people_p(np.array([0.1, 0.2, 0.3])) == ("sign", pytest.approx(0.25))
    assert people.over_people_p(np.full(5, 0.1)) == ("sign", pytest.approx(0.0625))
    test, p = people.over_people_p(np.linspace(0.1, 0.6, 6))
    assert test == "wilcoxon" and p == pytest.approx(0.03125)  # exact: 2 / 2^6
    assert people.over_people_p(np.zeros(7)) == ("wilcoxon", 1.0)
    assert people.sign_test_p(np.array([0.1, -0.1, 0.0])) == 1.0


def test_a_gain_of_one_person_is_not_a_gain_of_people():
    # 10 people x 100 images; one person gains a lot, the other nine nothing (noise only).
    rng = np.random.default_rng(0)
    observer, image = _design(10, 100)
    reference = rng.normal(0.5, 0.05, observer.size)
    values = reference + rng.normal(0, 0.01, observer.size)
    values[observer == "o3"] += 0.3
    over = people.People(observer, image).versus(values, reference, "cc")
    assert over["n"] == 10 and over["test"] == "wilcoxon"
    assert over["p"] > 0.05  # one person of ten
    # while the pairs' test calls it overwhelming
    assert scoring.versus_usm(values, reference)["p"] < 1e-4
    low, high = over["interval"]
    assert low < 0.03 < high  # the mean gain is 0.03; resampling people makes it uncertain
    assert over["differences"][3] == pytest.approx(0.3, abs=0.01)


def test_a_gain_every_person_shares_is_found_over_people_and_counted_in_the_right_direction():
    rng = np.random.default_rng(1)
    observer, image = _design(8, 50)
    reference = rng.normal(1.0, 0.1, observer.size)
    lower = reference - 0.05 + rng.normal(0, 0.01, observer.size)  # KLD: lower is better
    over = people.People(observer, image).versus(lower, reference, "kld")
    assert over["better"] == 8 and over["n"] == 8
    assert over["p"] < 0.01
    low, high = over["interval"]
    assert low < -0.05 < high and high < 0
    worse = people.People(observer, image).versus(lower, reference, "cc")  # higher is better
    assert worse["better"] == 0


def test_an_observer_without_finite_scores_is_not_counted():
    observer, image = _design(4, 10)
    values, reference = np.ones(40), np.zeros(40)
    values[observer == "o0"] = np.nan
    over = people.People(observer, image).versus(values, reference, "cc")
    assert over["n"] == 3 and over["better"] == 3 and np.isnan(over["differences"][0])


class _Set:
    """What `write_scores` and `table` read of an evaluation set."""

    def __init__(self, observers: int, images: int):
        self.dataset, self.protocol = "d", "closed"
        self.image = np.tile(np.arange(images), observers)
        self.observer = np.repeat(np.arange(observers), images)
        self.image_ids = [f"img{k}" for k in range(images)]
        self.observer_ids = [f"sub{k}" for k in range(observers)]


def _scores(rows: dict[str, float], pairs: int, seed: int = 0, gain_of=None):
    rng = np.random.default_rng(seed)
    base = {m: rng.normal(0.5, 0.05, pairs) for m in (*scoring.METRICS, "information_gain")}
    result = {}
    for row_id, shift in rows.items():
        values = {}
        for metric, v in base.items():
            step = shift * (-1 if metric == "kld" else 1)
            values[metric] = v + (step if gain_of is None else step * gain_of)
        result[row_id] = values
    return result


def test_the_scores_file_round_trips_and_names_itself_when_it_is_not_one(tmp_path):
    evaluation = _Set(observers=3, images=4)
    scores = _scores({"gt_usm": 0.0, "embedding": 0.1}, 12)
    path = scoring.write_scores(tmp_path / "closed_scores.csv", evaluation, scores)
    lines = path.read_text().splitlines()
    assert lines[0] == "row,image_id,observer_id,cc,sim,auc_judd,nss,kld,ig"
    assert lines[1].startswith("gt_usm,img0,sub0,") and len(lines) == 1 + 2 * 12
    read = scoring.read_scores(path)
    assert list(read.rows) == ["gt_usm", "embedding"]
    assert list(read.observer_ids[:5]) == ["sub0"] * 4 + ["sub1"]
    for row_id, values in scores.items():
        for metric, column in values.items():
            np.testing.assert_array_equal(read.rows[row_id][metric], column)
    path.write_text("row,image\n")
    with pytest.raises(ValueError, match="closed_scores.csv: not a scores file"):
        scoring.read_scores(path)


def _table(evaluation, scores, tmp_path):
    rows = [methods.Row(row_id, row_id, None) for row_id in scores]
    path = scoring.write_scores(tmp_path / "closed_scores.csv", evaluation, scores)
    return scoring.table(
        evaluation,
        rows,
        scoring.read_scores(path),
        usm_floor=0.3,
        m=32,
        discrepancy_weight=1.0,
    )


def test_the_asterisk_tests_over_people_where_there_are_six_or_more(tmp_path):
    # 8 people x 100 images: the embedding row's gain is one person's alone.
    evaluation = _Set(observers=8, images=100)
    one_person = (evaluation.observer == 2).astype(float)
    scores = _scores({"gt_usm": 0.0, "per_observer": 0.0}, 800)
    scores.update(_scores({"embedding": 0.5}, 800, gain_of=one_person))
    table = _table(evaluation, scores, tmp_path)
    assert table.people == 8 and table.significance == "people"
    assert not any(table.rows["embedding"][m]["significant"] for m in scoring.METRICS)
    assert table.rows["embedding"]["cc"]["versus_usm"]["p"] < 1e-3  # the pairs' test says yes
    people_cc = table.rows["embedding"]["cc"]["versus_usm"]["people"]
    assert (people_cc["better"], people_cc["n"], people_cc["test"]) == (1, 8, "wilcoxon")
    markdown = report.versus_usm_markdown(table)
    assert "over people" in markdown and "1/8 (W " in markdown
    assert "Wilcoxon signed-rank test of the 8 observers" in report.table_markdown(table)
    # Everybody's gain: the asterisk.
    everyone = _scores({"gt_usm": 0.0, "per_observer": 0.0, "embedding": 0.2}, 800)
    table = _table(evaluation, everyone, tmp_path)
    assert all(table.rows["embedding"][m]["significant"] for m in scoring.METRICS)
    sentence = report._verdict(table, "embedding")
    assert "CC better (+0.200, p = 0.0078 Wilcoxon over people; 8 of 8 people better)" in sentence


def test_with_fewer_than_six_people_the_sentences_say_the_test_is_over_pairs(tmp_path):
    evaluation = _Set(observers=3, images=100)
    scores = _scores({"gt_usm": 0.0, "embedding": 0.2}, 300)
    table = _table(evaluation, scores, tmp_path)
    assert table.significance == "pairs" and table.people == 3
    sentence = report._verdict(table, "embedding")
    assert "over pairs, which are not independent" in sentence
    assert "3 of 3 people better, sign test over people p = 0.25" in sentence
    assert "Mann-Whitney p < 0.05 over pairs" in report.table_markdown(table)


def _fold(first_observer: int, observers: int, images: int, rows: dict[str, float], seed: int):
    """One fold's open-set scores: observers sub<first_observer>... on images img0..."""
    observer_ids = np.repeat([f"sub{first_observer + k}" for k in range(observers)], images)
    image_ids = np.tile([f"img{k}" for k in range(images)], observers)
    return scoring.PairScores(image_ids, observer_ids, _scores(rows, observers * images, seed))


def _scores_table(pair_scores, title="d, open set"):
    names = {row_id: row_id.replace("_", " ") for row_id in pair_scores.rows}
    return scoring.table_from_scores(
        pair_scores,
        names,
        title=title,
        protocol="open",
        usm_floor=0.3,
        m=32,
        discrepancy_weight=1.0,
    )


def test_folds_pooled_test_over_every_person_where_one_fold_cannot(tmp_path):
    # 3 folds of 3 unseen people each, on the same 20 images: the embedding row beats the GT USM
    # by 0.05 and the strongest other row (per_observer, +0.02) by 0.03 for everybody.
    shifts = {
        "gt_usm": 0.0,
        "per_observer": 0.02,
        "centre_bias": -0.1,
        "embedding": 0.05,
        "embedding_mean": 0.01,
    }
    folds = [
        _fold(3 * k, 3, 20, {**shifts, **({"multi_task": 0.0} if k else {})}, seed=k)
        for k in range(3)
    ]
    pooled = scoring.pool_scores(folds)
    assert list(pooled.rows) == list(shifts)  # multi_task is not scored in fold 0
    assert len(pooled.observer_ids) == 180 and len(set(pooled.observer_ids)) == 9
    np.testing.assert_array_equal(pooled.observer_ids[60:120], folds[1].observer_ids)
    np.testing.assert_array_equal(
        pooled.rows["embedding"]["kld"][60:120], folds[1].rows["embedding"]["kld"]
    )
    path = scoring.write_pair_scores(tmp_path / "pooled_open_scores.csv", pooled)
    again = scoring.read_scores(path)  # anyone can recompute from the file
    np.testing.assert_array_equal(again.image_ids, pooled.image_ids)
    np.testing.assert_array_equal(again.rows["embedding"]["nss"], pooled.rows["embedding"]["nss"])

    table = _scores_table(again, "d, open set pooled over 3 folds")
    assert (table.people, table.significance, table.pairs) == (9, "people", 180)
    cc = table.rows["embedding"]["cc"]
    assert cc["mean"] == pytest.approx(np.mean(pooled.rows["embedding"]["cc"]))
    over_people = cc["versus_usm"]["people"]
    assert (over_people["better"], over_people["n"], over_people["test"]) == (9, 9, "wilcoxon")
    assert over_people["p"] == pytest.approx(2 / 2**9)
    assert over_people["interval"] == pytest.approx([0.05, 0.05])
    assert cc["versus_mean_embedding"]["people"]["better"] == 9
    strongest = table.rows["embedding"]["kld"]["versus_strongest"]
    assert strongest["row"] == "per_observer" and strongest["difference"] == pytest.approx(-0.03)
    assert strongest["people"]["better"] == 9 and all(
        table.rows["embedding"][m]["significant"] for m in scoring.METRICS
    )
    markdown = report.pooled_markdown(table)
    assert "9/9 (W 0.0039)" in markdown and "per observer" in markdown
    assert "mean-embedding control" in markdown and "strongest other row" in markdown
    # One fold alone: 3 people, whose sign test cannot go below p = 0.25.
    alone = _scores_table(folds[0]).rows["embedding"]["cc"]["versus_usm"]["people"]
    assert (alone["better"], alone["n"], alone["p"]) == (3, 3, pytest.approx(0.25))


def test_pooling_counts_each_person_once():
    fold = _fold(0, 3, 5, {"gt_usm": 0.0, "embedding": 0.1}, seed=0)
    with pytest.raises(ValueError, match="sub0 is scored in parts 0 and 1"):
        scoring.pool_scores([fold, fold])
    with pytest.raises(ValueError, match="no row is scored in every part"):
        other = _fold(3, 3, 5, {"centre_bias": 0.0}, seed=0)
        scoring.pool_scores([fold, other])


def test_in_real_use_the_strongest_other_row_is_one_a_new_image_allows():
    """The embedding network given the universal model's USM competes with the rows a new image
    allows (the predicted USM, the centre bias, other models given that USM), not with a baseline
    that reads the test image's ground-truth USM."""
    rng = np.random.default_rng(2)
    observer, image = _design(8, 30)
    base = {m: rng.normal(0.5, 0.05, observer.size) for m in scoring.METRICS}

    def shifted(step):
        return {m: v + (-step if m == "kld" else step) for m, v in base.items()}

    scores = {
        "gt_usm": shifted(0.3),
        "predicted_usm": shifted(0.0),
        "prior_blend": shifted(0.35),  # reads the ground-truth USM of the test image
        "per_observer": shifted(0.05),
        "embedding": shifted(0.1),
        "no_embedding": shifted(0.2),  # a control: never the strongest other row
    }
    given = {"per_observer", "embedding", "no_embedding"}
    for metric in scoring.METRICS:
        assert scoring.strongest_other(scores, "embedding", metric, given) == "per_observer"
        assert scoring.strongest_other(scores, "embedding", metric) == "prior_blend"
    table = scoring.table_from_scores(
        scoring.PairScores(image, observer, scores),
        {row_id: row_id for row_id in scores},
        title="t",
        protocol="open",
        usm_floor=0.3,
        m=32,
        discrepancy_weight=1.0,
        given_predicted_usm=given,
    )
    assert table.rows["embedding"]["cc"]["versus_strongest"]["row"] == "per_observer"
    assert all(table.rows["embedding"][m]["significant"] for m in scoring.METRICS)
    markdown = report.pooled_markdown(table)
    assert "Real use: against the universal model's own map" in markdown
    versus_none = table.rows["embedding"]["kld"]["versus_no_embedding"]
    assert versus_none["difference"] == pytest.approx(0.1) and versus_none["people"]["better"] == 0
    assert "#### Against the no-embedding control (open set), over people" in markdown
