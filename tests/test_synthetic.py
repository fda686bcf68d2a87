"""The synthetic generator: deterministic, and observers really fixate by their preferences."""

import numpy as np

from psm_jax.data import synthetic

SPEC = synthetic.SyntheticSpec(num_images=40, num_observers=10, image_size=(120, 160), sigma_px=5)


def test_deterministic_given_seed():
    a = synthetic.generate_release(SPEC)
    b = synthetic.generate_release(SPEC)
    np.testing.assert_array_equal(a.fixations.x, b.fixations.x)
    assert a.read_image(3) == b.read_image(3)
    c = synthetic.generate_release(synthetic.SyntheticSpec(**{**SPEC.__dict__, "seed": 1}))
    assert len(c.fixations) != len(a.fixations) or not np.array_equal(c.fixations.x, a.fixations.x)


def test_layout_viewings_and_metadata():
    release = synthetic.generate_release(SPEC)
    assert release.num_images == 40 and release.num_observers == 10
    preferences = np.array(release.metadata["observer_preferences"])
    assert preferences.shape == (10, len(synthetic.CATEGORIES))
    np.testing.assert_allclose(preferences.sum(axis=1), 1.0, atol=1e-5)
    assert set(np.unique(release.fixations.viewing)) == {0, 1, 2, 3}
    for i in range(5):
        assert 3 <= len(synthetic.scene_layout(SPEC, i)) <= 6
    assert synthetic.render_scene(SPEC, 0).shape == (120, 160, 3)


def test_fixations_follow_each_observers_preferences():
    release = synthetic.generate_release(SPEC)
    preferences = np.array(release.metadata["observer_preferences"])
    fx = release.fixations
    hits = np.zeros((SPEC.num_observers, len(synthetic.CATEGORIES)))
    offered = np.zeros(len(synthetic.CATEGORIES))
    for i in range(SPEC.num_images):
        objects = synthetic.scene_layout(SPEC, i)
        own = fx.image == i
        for obj in objects:
            offered[obj.category] += 1
            inside = own & (np.hypot(fx.x - obj.centre[1], fx.y - obj.centre[0]) < obj.radius)
            np.add.at(hits[:, obj.category], fx.observer[inside], 1)
    share = hits / hits.sum(axis=1, keepdims=True)
    # Across observers, the share of fixations on each category tracks the true preference.
    for k in range(len(synthetic.CATEGORIES)):
        assert np.corrcoef(share[:, k], preferences[:, k])[0, 1] > 0.7, synthetic.CATEGORIES[k]
