"""The scoring functions of benchmarks/ceiling_temporal.py on hand-made arrays."""
import numpy as np
import pytest

from benchmarks import ceiling_temporal as ct

DAY = 86400


def test_history_weights_halve_per_half_life_of_the_users_own_time():
  users = np.array(['a', 'a', 'a', 'b'])
  times = np.array([0, DAY, 2 * DAY, 10 * DAY])
  w = ct.history_weights(users, times, (1, 'days'))
  # Ages from each user's latest row: a's rows are 2, 1 and 0 days old; b's only row is new.
  np.testing.assert_allclose(w, [0.25, 0.5, 1.0, 1.0])
  np.testing.assert_allclose(ct.history_weights(users, times, None), 1.0)


def test_history_weights_by_interactions_share_a_weight_on_ties():
  users = np.array(['a'] * 4)
  times = np.array([5, 7, 7, 1])  # rows later than each: 2, 0, 0, 3
  w = ct.history_weights(users, times, (2, 'interactions'))
  np.testing.assert_allclose(w, 0.5 ** (np.array([2, 0, 0, 3]) / 2))
  with pytest.raises(ValueError, match='unit'):
    ct.history_weights(users, times, (2, 'weeks'))


def test_item_decayed_counts_fade_with_age_and_ignore_the_future():
  items = np.array([0, 0, 1, 1])
  times = np.array([9 * DAY, 7 * DAY, 10 * DAY - 1, 10 * DAY])
  counts = ct.item_decayed_counts(items, times, 3, until=10 * DAY, half_life_days=1)
  # item 0: 1 and 3 days old; item 1: a second old, its row at `until` left out.
  np.testing.assert_allclose(counts, [0.5 + 0.125, 0.5 ** (1 / DAY), 0.0])


def test_linear_blend_recovers_the_weights_of_an_exact_mixture():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=50), rng.normal(size=50)
  target = 0.1 + 0.3 * a + 0.7 * b
  weights = ct.fit_linear_blend(np.column_stack([a, b]), target)
  np.testing.assert_allclose(weights, [0.1, 0.3, 0.7], atol=1e-9)
  np.testing.assert_allclose(ct.apply_linear_blend(weights, np.column_stack([a, b])), target)


def test_nonnegative_blend_drops_a_model_that_would_get_a_negative_weight():
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=200), rng.normal(size=200)
  target = 1.0 + 2.0 * a - 1.0 * b
  free = ct.fit_linear_blend(np.column_stack([a, b]), target)
  np.testing.assert_allclose(free, [1.0, 2.0, -1.0], atol=1e-9)
  kept = ct.fit_linear_blend(np.column_stack([a, b]), target, nonnegative=True)
  assert kept[2] == 0.0 and kept[1] > 1.5
  # The intercept still centres the blend: its mean is the target's.
  assert ct.apply_linear_blend(kept, np.column_stack([a, b])).mean() == pytest.approx(
      target.mean())


def test_feature_biases_split_an_additive_effect_between_features():
  # Feature 0 adds +1 / -1, feature 1 adds +0.5 / -0.5, on every combination.
  codes = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 25)
  residuals = np.array([1.5, 0.5, -0.5, -1.5] * 25)
  first, second = ct.fit_feature_biases(codes, residuals, reg=0.0)
  np.testing.assert_allclose(first, [1.0, -1.0], atol=1e-6)
  np.testing.assert_allclose(second, [0.5, -0.5], atol=1e-6)


def test_choose_takes_the_best_and_the_first_listed_on_ties():
  assert ct.choose({'a': 0.2, 'b': 0.3, 'c': 0.3}) == 'b'
  assert ct.choose({'a': 1.02, 'b': 1.01, 'c': 1.01}, lower_is_better=True) == 'b'
