"""Model builders, feature stores and the retrieval metrics on plain tensors (no TFX)."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from models import data
from models.feature_store import FeatureStore
from models.rating_baseline import fit_biases
from models.ranking import (ENGAGEMENT, ENGAGEMENT_LOGIT, RATING, NegativeSampler, RankingModel,
                            negative_probabilities)
from models.retrieval import TwoTowerModel
from models.towers import Encoder
from core import features as F
from core.configs import RankingConfig, RetrievalConfig
from core.retrieval_metrics import rank_of_target, top_k_rates
from tests.tensor_helpers import ITEMS, USERS, batch


def test_encoder_concatenates_every_feature():
  encoder = Encoder(USERS, dim=8, feature_dim=3)
  out = encoder(batch())
  # id 8 + bucket 3 + bag 3 + one number
  assert out.shape == (4, 8 + 3 + 3 + 1)
  assert np.all(out.numpy()[3, 11:14] == 0)  # an empty bag pools to zeros, not NaN


def test_id_dropout_only_in_training():
  encoder = Encoder(USERS, dim=4, id_dropout=1.0)
  features = batch()
  trained = encoder(features, training=True).numpy()[:, :4]
  oov = encoder.id_embedding(tf.fill([4], encoder.oov_id)).numpy()
  np.testing.assert_allclose(trained, oov)
  assert not np.allclose(encoder(features, training=False).numpy()[:, :4], oov)


def test_two_tower_loss_decreases_on_a_fixed_batch():
  # Seeded before the weights exist; no id dropout and no weight averaging, whose averaged
  # weights after 20 steps sit near the initial ones: the loss is the trained weights' own.
  # Python's random too: tf_keras draws unseeded initializers' seeds from it, so with the
  # TensorFlow seed alone the weights depended on the tests run before in the same worker.
  tf_keras.utils.set_random_seed(0)
  config = RetrievalConfig(embedding_dim=8, hidden_units=(8,), id_dropout=0.0,
                           weight_averaging=0.0)
  model = TwoTowerModel(USERS, ITEMS, config,
                        item_log_prob=np.log(np.full([8], 1 / 8, np.float32)))
  model.compile(optimizer=tf_keras.optimizers.Adam(0.05))
  before = float(model.compute_loss(batch()))
  history = model.fit(tf.data.Dataset.from_tensors(batch()).repeat(20), epochs=1, verbose=0)
  assert float(model.compute_loss(batch())) < before
  queries = model.query_tower(batch())
  np.testing.assert_allclose(np.linalg.norm(queries.numpy(), axis=1), 1.0, rtol=1e-5)
  assert history.history['loss']


def test_ensemble_trains_each_pair_on_its_own_loss_and_serves_their_mean_score():
  config = RetrievalConfig(embedding_dim=8, hidden_units=(8,), ensemble=2)
  model = TwoTowerModel(USERS, ITEMS, config, item_log_prob=np.log(np.full([8], 1 / 8,
                                                                          np.float32)))
  features = batch()
  loss = float(model.compute_loss(features))
  pairs = list(zip(model.query_tower.members, model.candidate_tower.members))
  assert len(pairs) == 2
  sampling = tf.fill([4], 1 / 8)
  item_ids = tf.reshape(features['item_id_xf'], [-1])
  separate = [float(model.task(q(features), c(features), candidate_sampling_probability=sampling,
                               candidate_ids=item_ids, compute_metrics=False))
              for q, c in pairs]
  np.testing.assert_allclose(loss, sum(separate), rtol=1e-5)
  assert abs(separate[0] - separate[1]) > 1e-6  # different initial weights
  # Served: the ensembles' dot product is the mean of the pairs' scores.
  scores = tf.reduce_sum(model.query_tower(features) * model.candidate_tower(features), 1)
  mean = np.mean([tf.reduce_sum(q(features) * c(features), 1).numpy() for q, c in pairs], 0)
  np.testing.assert_allclose(scores.numpy(), mean, rtol=1e-5, atol=1e-6)
  # Warm start remaps the id tables of every member.
  users = dataclasses.replace(USERS, vocabularies={'user_id_xf': 'user_ids'})
  items = dataclasses.replace(ITEMS, vocabularies={'item_id_xf': 'item_ids'})
  model = TwoTowerModel(users, items, config)
  model.compute_loss(features)
  assert sorted(model.row_vocabularies().values()) == ['item_ids'] * 2 + ['user_ids'] * 2


def test_extra_negatives_join_the_softmax_with_the_mixture_correction():
  catalogue = {'item_id_xf': tf.constant(np.arange(6), tf.int64),
               'item__genres_xf': tf.ragged.constant(CATALOGUE_GENRES, dtype=tf.int64)}
  config = RetrievalConfig(embedding_dim=8, hidden_units=(8,), extra_negatives=5, batch_size=4)
  log_prob = np.log(np.full([8], 1 / 8, np.float32))
  model = TwoTowerModel(USERS, ITEMS, config, item_log_prob=log_prob, catalogue=catalogue)
  seen = {}
  original = model.task.call

  def spy(query_embeddings, candidate_embeddings, **kwargs):
    seen.update(candidates=candidate_embeddings.shape[0],
                probability=kwargs['candidate_sampling_probability'].numpy(),
                ids=kwargs['candidate_ids'].numpy())
    return original(query_embeddings, candidate_embeddings, **kwargs)

  model.task.call = spy
  loss = model.compute_loss(batch(), training=True)
  assert np.isfinite(float(loss))
  assert seen['candidates'] == 4 + 5  # the batch's items, then five catalogue rows
  assert set(seen['ids'][4:].tolist()) <= set(range(6))
  # Every column's probability under the mixture: (batch x p(item) + extra / rows) / (batch
  # + extra); here p is uniform over the 8 rows, so the mixture is uniform too.
  np.testing.assert_allclose(seen['probability'], 1 / 8, rtol=1e-6)
  # Without a catalogue the option is inert.
  assert TwoTowerModel(USERS, ITEMS, config, item_log_prob=log_prob).extra_negatives == 0


def test_popularity_weight_is_the_exponent_of_the_sampling_probability():
  log_prob = np.log(np.linspace(0.05, 0.2, 8)).astype(np.float32)
  seen = []
  for weight in (1.0, 2.0):
    config = RetrievalConfig(embedding_dim=8, hidden_units=(8,), popularity_weight=weight)
    model = TwoTowerModel(USERS, ITEMS, config, item_log_prob=log_prob)
    original = model.task.call
    model.task.call = lambda q, c, original=original, **kw: (
        seen.append(kw['candidate_sampling_probability'].numpy()) or original(q, c, **kw))
    assert np.isfinite(float(model.compute_loss(batch(), training=True)))
  items = batch()['item_id_xf'].numpy()
  np.testing.assert_allclose(seen[0], np.exp(log_prob[items]), rtol=1e-5)
  np.testing.assert_allclose(seen[1], seen[0] ** 2, rtol=1e-5)


def test_mask_seen_takes_a_users_train_items_out_of_their_negatives():
  features = batch()
  users = features['user_id_xf'].numpy()
  items = features['item_id_xf'].numpy()
  assert items[3] != items[0] and users[3] != users[0]
  # User of row 0 has also seen the item of row 3 (and its own positive).
  seen = data.SeenPairs([users[0] * 8 + items[3], users[0] * 8 + items[0]], item_rows=8)
  config = RetrievalConfig(embedding_dim=8, hidden_units=(8,), mask_seen=True,
                           popularity_correction=False)
  model = TwoTowerModel(USERS, ITEMS, config, seen=seen)
  loss = float(model.compute_loss(features))
  scores = (model.query_tower(features).numpy() @ model.candidate_tower(features).numpy().T
            / config.temperature)
  masked = (items[np.newaxis, :] == items[:, np.newaxis]) & ~np.eye(4, dtype=bool)
  masked[0, 3] = True
  scores[masked] = -1e9
  expected = -np.sum(np.diag(scores) - np.log(np.sum(np.exp(scores), axis=1)))
  np.testing.assert_allclose(loss, expected, rtol=1e-4)
  # Without the mask row 0's loss counts row 3's item as a negative.
  plain = TwoTowerModel(USERS, ITEMS, dataclasses.replace(config, mask_seen=False))
  plain.compute_loss(features)  # creates the variables
  plain.set_weights(model.get_weights())
  assert float(plain.compute_loss(features)) != pytest.approx(loss)


def test_index_settings_follow_the_catalogue_size():
  from models import index
  assert index.scann_leaves(1_000_000, 0.2) == (1000, 200)
  assert index.scann_leaves(10, 0.01) == (3, 1)
  assert type(index.make_index('brute_force', 5, 100)).__name__ == 'BruteForce'
  with pytest.raises(ValueError, match='unknown index'):
    index.make_index('faiss', 5, 100)
  with pytest.raises(ValueError, match='search_share'):
    index.make_index('scann', 5, 100, search_share=0)
  # ScaNN built the way the exports build it: searching every leaf and re-scoring more
  # candidates than there are items, it must find exactly what exact search finds.
  rng = np.random.default_rng(0)
  vectors = rng.normal(size=(400, 8)).astype(np.float32)
  queries = rng.normal(size=(3, 8)).astype(np.float32)
  scann = index.make_index('scann', 5, len(vectors), search_share=1.0)
  scann.index(tf.constant(vectors))
  _, found = scann(tf.constant(queries), k=5)
  exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :5]
  assert [sorted(f) for f in found.numpy().tolist()] == [sorted(e) for e in exact.tolist()]


CATALOGUE_GENRES = [[1, 2], [3], [], [0, 1], [4], [5]]


def sampler(probabilities=None, seen_keys=None):
  """Negatives over a six-item catalogue (item i has id i)."""
  features = {'item_id_xf': tf.constant(np.arange(6), tf.int64),
              'item__genres_xf': tf.ragged.constant(CATALOGUE_GENRES, dtype=tf.int64)}
  p = np.full(6, 1 / 6) if probabilities is None else probabilities
  return NegativeSampler(features, 'item_id_xf', ITEMS.id_rows, p, seen_keys)


def test_negative_probabilities_mix_popularity_and_uniform():
  # Catalogue rows with item ids 0, 1, 7 (7: beyond the counts, e.g. never in train).
  p = negative_probabilities(np.array([0, 1, 7]), np.array([3, 1]), popularity_share=0.5)
  np.testing.assert_allclose(p, [0.5 * 3 / 4 + 0.5 / 3, 0.5 * 1 / 4 + 0.5 / 3, 0.5 / 3])
  np.testing.assert_allclose(negative_probabilities(np.array([0, 1]), np.zeros(2), 1.0),
                             [0.5, 0.5])  # no counts at all: uniform


def test_sampler_draws_catalogue_rows_and_flags_seen_pairs():
  tf_keras.utils.set_random_seed(0)
  # Only items 2 and 4 can be drawn; user 1 has seen item 4, user 0 item 2.
  negatives = sampler(np.array([0, 0, 0.5, 0, 0.5, 0]), seen_keys=[1 * 8 + 4, 0 * 8 + 2]).sample(200)
  ids = negatives['item_id_xf'].numpy()
  assert set(ids.tolist()) == {2, 4}
  bags = tf.sparse.to_dense(negatives['item__genres_xf'], default_value=-1).numpy()
  for item, bag in zip(ids, bags):  # each row carries its own item's features
    assert [v for v in bag if v >= 0] == CATALOGUE_GENRES[item]
  seen = sampler(seen_keys=[1 * 8 + 4, 0 * 8 + 2]).is_seen(
      tf.constant([1, 1, 0, 0, 3], tf.int64), tf.constant([4, 2, 2, 4, 7], tf.int64))
  assert seen.numpy().tolist() == [True, False, True, False, False]


def test_sampler_draws_follow_the_probabilities():
  tf_keras.utils.set_random_seed(0)
  p = np.array([0.05, 0.0, 0.15, 0.5, 0.3, 0.0])  # a middle and the last row without mass
  rows = sampler(p).sample_rows(tf.constant(40_000)).numpy()
  shares = np.bincount(rows, minlength=len(p)) / len(rows)
  np.testing.assert_allclose(shares, p, atol=0.01)
  assert shares[[1, 5]].sum() == 0  # rows without probability are never drawn


def test_ranking_model_starts_at_the_mean_and_learns_both_tasks():
  # The rating head alone: the blended baseline has its own test below.
  config = RankingConfig(embedding_dim=4, hidden_units=(4,), engagement_negatives=3,
                         baseline_weight=0.0)
  model = RankingModel(USERS, ITEMS, config, mean_rating=3.25, sampler=sampler())
  model.compile(optimizer=tf_keras.optimizers.Adam(0.05))
  out = model(batch())
  assert sorted(out) == sorted([RATING, ENGAGEMENT, ENGAGEMENT_LOGIT])
  assert all(v.shape == (4,) and v.dtype == tf.float32 for v in out.values())
  assert np.all(np.abs(out[RATING].numpy() - 3.25) < 0.5)
  np.testing.assert_allclose(out[ENGAGEMENT].numpy(), tf.sigmoid(out[ENGAGEMENT_LOGIT]).numpy())
  ds = tf.data.Dataset.from_tensors(batch()).repeat(50)
  model.fit(ds, epochs=3, verbose=0)
  out = model(batch())
  rmse = np.sqrt(np.mean((out[RATING].numpy() - np.array([5, 3, 4, 1])) ** 2))
  assert rmse < 0.5
  # The observed pairs now score above the same users paired with other items.
  others = dict(batch(), item_id_xf=tf.constant([0, 0, 0, 0], tf.int64))
  assert 0 not in batch()['item_id_xf'].numpy()
  assert np.all(out[ENGAGEMENT_LOGIT].numpy() > model(others)[ENGAGEMENT_LOGIT].numpy())


def test_negatives_come_from_a_pool_encoded_once_per_batch():
  config = RankingConfig(embedding_dim=4, hidden_units=(4,), engagement_negatives=3,
                         negative_pool=5)
  model = RankingModel(USERS, ITEMS, config, mean_rating=3.0, sampler=sampler())
  rows = []
  original = model.item_encoder.call
  model.item_encoder.call = lambda features, **kw: (
      rows.append(int(tf.shape(features['item_id_xf'])[0])) or original(features, **kw))
  assert np.isfinite(float(model.compute_loss(batch(), training=True)))
  # The batch's 4 items, then 5 sampled items for the 4 x 3 negatives.
  assert rows == [4, 5]
  rows.clear()
  model = RankingModel(USERS, ITEMS, dataclasses.replace(config, negative_pool=0),
                       mean_rating=3.0, sampler=sampler())
  original = model.item_encoder.call
  model.item_encoder.call = lambda features, **kw: (
      rows.append(int(tf.shape(features['item_id_xf'])[0])) or original(features, **kw))
  model.compute_loss(batch(), training=True)
  assert rows == [4, 12]


def test_predicted_ratings_are_clipped_to_the_training_range_outside_training():
  model = RankingModel(USERS, ITEMS, RankingConfig(embedding_dim=4, hidden_units=(4,)),
                       mean_rating=9.0, rating_range=(1.0, 5.0))
  assert np.all(model(batch())[RATING].numpy() == 5.0)
  # Training sees the unclipped value, so the loss still has a gradient.
  assert np.all(model(batch(), training=True)[RATING].numpy() > 6.0)


def test_served_rating_blends_the_head_with_the_baseline_fitted_apart():
  config = RankingConfig(embedding_dim=4, hidden_units=(4,), id_dropout=0.0,
                         baseline_weight=0.25, baseline_user_shrinkage=0.0,
                         baseline_item_shrinkage=0.0)
  model = RankingModel(USERS, ITEMS, config, mean_rating=3.0, rating_range=(1.0, 5.0))
  b = batch()
  head = model(b, training=True)[RATING].numpy()  # training: the head alone, unclipped
  # Unfitted, the baseline predicts the mean rating for every pair.
  np.testing.assert_allclose(model(b)[RATING].numpy(), np.clip(0.75 * head + 0.75, 1, 5),
                             rtol=1e-5)
  users, items = b['user_id_xf'].numpy(), b['item_id_xf'].numpy()
  ratings = np.array([5.0, 3.0, 4.0, 1.0])
  model.fit_rating_baseline(users, items, ratings)
  baseline = model.rating_baseline(users, items).numpy()
  mu, bu, bi = fit_biases(users, items, ratings, USERS.id_rows, ITEMS.id_rows, 0.0, 0.0)
  np.testing.assert_allclose(baseline, mu + bu[users] + bi[items], rtol=1e-5)
  assert np.std(baseline) > 0.5  # the pairs' biases, not the mean
  np.testing.assert_allclose(model(b)[RATING].numpy(),
                             np.clip(0.75 * head + 0.25 * baseline, 1, 5), rtol=1e-5)
  # A request's covered share scales the baseline's weight per row (RankingServing's
  # request time): 0 leaves the head alone, 1 is the full blend.
  share = tf.constant([0.0, 1.0, 0.5, 0.0])
  weight = 0.25 * share.numpy()
  np.testing.assert_allclose(model(b, baseline_share=share)[RATING].numpy(),
                             np.clip((1 - weight) * head + weight * baseline, 1, 5), rtol=1e-5)
  # The head's loss ignores the baseline: fitting it leaves the training prediction alone.
  np.testing.assert_allclose(model(b, training=True)[RATING].numpy(), head, rtol=1e-6)
  alone = RankingModel(USERS, ITEMS, dataclasses.replace(config, baseline_weight=0.0),
                       mean_rating=3.0)
  assert alone.rating_baseline is None


def test_biases_follow_recent_ratings_when_weighted_by_age():
  # One user, two items: item 0 rated 1 long ago and 5 lately (twice each); item 1 rated 3.
  users = np.zeros(6, np.int64)
  items = np.array([0, 0, 0, 0, 1, 1])
  ratings = np.array([1.0, 1.0, 5.0, 5.0, 3.0, 3.0])
  _, _, plain = fit_biases(users, items, ratings, 1, 2, reg_u=0.0, reg_i=0.0)
  recent = np.array([1e-6, 1e-6, 1.0, 1.0, 1.0, 1.0])
  _, _, drift = fit_biases(users, items, ratings, 1, 2, reg_u=0.0, reg_i=0.0,
                           item_weights=recent)
  assert plain[0] == pytest.approx(plain[1])  # item 0 averages 3, as item 1 does
  assert drift[0] - drift[1] == pytest.approx(2.0, abs=1e-4)  # item 0 is a 5 lately
  # Shrinkage pulls an item's bias towards 0 by reg_i / (reg_i + its weight).
  _, _, shrunk = fit_biases(np.zeros(2, np.int64), np.array([0, 1]), np.array([5.0, 1.0]),
                            1, 2, reg_u=1e9, reg_i=1.0)
  np.testing.assert_allclose(shrunk, [1.0, -1.0])
  # A row with no rating and no shrinkage gets 0, not 0 / 0.
  _, users_bias, _ = fit_biases(np.zeros(1, np.int64), np.zeros(1, np.int64), np.array([4.0]),
                                2, 1, reg_u=0.0, reg_i=0.0)
  np.testing.assert_allclose(users_bias, [0.0, 0.0])


def test_implicit_ranking_model_has_no_rating_and_ignores_seen_negatives():
  features = batch()
  del features[F.RATING_XF]
  pairs = features['user_id_xf'].numpy() * ITEMS.id_rows + features['item_id_xf'].numpy()
  # Every negative is one of the user's own items: all are masked, so the loss is the
  # positives' cross-entropy only, whatever the negatives score.
  config = RankingConfig(embedding_dim=4, hidden_units=(4,), engagement_negatives=5, l2=0.0,
                         engagement_loss='binary')
  only_seen = np.zeros(6)
  only_seen[features['item_id_xf'].numpy()[0]] = 1.0
  all_users_seen = [u * ITEMS.id_rows + features['item_id_xf'].numpy()[0] for u in range(6)]
  model = RankingModel(USERS, ITEMS, config, with_rating=False,
                       sampler=sampler(only_seen, np.concatenate([pairs, all_users_seen])))
  out = model(features)
  assert sorted(out) == [ENGAGEMENT, ENGAGEMENT_LOGIT]
  positives = tf_keras.losses.BinaryCrossentropy(from_logits=True)(
      tf.ones([4, 1]), out[ENGAGEMENT_LOGIT][:, tf.newaxis])
  np.testing.assert_allclose(float(model.compute_loss(features)),
                             config.engagement_weight * float(positives) * 4 / 24, rtol=1e-5)
  # Trained against real negatives, it learns to tell observed pairs from the rest.
  model = RankingModel(USERS, ITEMS, config, with_rating=False,
                       sampler=sampler(seen_keys=pairs))
  model.compile(optimizer=tf_keras.optimizers.Adam(0.05))
  before = float(model.compute_loss(features))
  model.fit(tf.data.Dataset.from_tensors(features).repeat(60), epochs=2, verbose=0)
  assert float(model.compute_loss(features)) < before


def test_feature_store_returns_raw_features_and_misses():
  table = {
      F.USER_ID: np.array(['a', 'b'], dtype=object),
      'user__country': np.array(['ES', None], dtype=object),
      'user__country?': np.array([True, False]),
      'user__age': np.array([20.0, 30.0], dtype=object),
      'user__age?': np.array([True, True]),
  }
  spec = {F.USER_ID: tf.io.FixedLenFeature([1], tf.string),
          'user__country': tf.io.VarLenFeature(tf.string),
          'user__age': tf.io.FixedLenFeature([1], tf.float32)}
  store = FeatureStore(F.USER_ID, table, spec)
  out = store.lookup(tf.constant(['b', 'a', 'zz']))
  assert out[F.USER_ID].numpy().ravel().tolist() == [b'b', b'a', b'zz']
  country = tf.sparse.to_dense(out['user__country'], default_value=b'').numpy().ravel()
  assert country.tolist() == [b'', b'ES', b'']  # b has none, zz is unknown
  assert out['user__age'].numpy().ravel().tolist() == [30.0, 20.0, 25.0]  # unknown: mean
  assert store.contains(tf.constant(['a', 'zz'])).numpy().tolist() == [True, False]
  assert store.text(tf.constant(['a', 'zz']), 'user__country').numpy().tolist() == [b'ES', b'']


def test_split_files_points_at_sibling_splits():
  assert data.split_files(['/a/Examples/3/Split-train/*'], 'items') == [
      '/a/Examples/3/Split-items/*']
  with pytest.raises(ValueError):
    data.split_files(['/no/split/here/*'], 'items')


def test_every_nth_row_splits_batches_with_their_sparse_bags():
  ids = np.arange(10_000, dtype=np.int64)
  bags = tf.sparse.from_dense(tf.constant(np.stack([ids % 3, ids % 5], 1)))  # 0-2 values a row
  batches = tf.data.Dataset.from_tensor_slices({'id': ids, 'bag': bags}).batch(
      data.TRANSFORM_BATCH)
  held = data.columns(data.every_nth_row(batches, 20, held_out=True), ['id'])['id']
  rest = data.every_nth_row(batches, 20, held_out=False)
  assert list(held) == list(range(0, 10_000, 20))
  rest_ids = data.columns(rest, ['id'])['id']
  assert len(rest_ids) == 10_000 - len(held) and not set(rest_ids) & set(held)
  for rows in rest.unbatch().batch(7).take(3):  # each row keeps its own bag
    i = rows['id'].numpy()
    np.testing.assert_array_equal(tf.sparse.to_dense(rows['bag']).numpy(),
                                  np.stack([i % 3, i % 5], 1))
  users, items = data.id_pairs(
      tf.data.Dataset.from_tensor_slices({'u': ids[:5], 'i': ids[:5] * 2}).batch(2), 'u', 'i')
  assert users.dtype == np.int64 and list(items) == [0, 2, 4, 6, 8]


def test_rebatched_permutes_rows_with_their_bags_and_reshuffles_every_epoch():
  ids = np.arange(10_000, dtype=np.int64)
  bags = tf.sparse.from_dense(tf.constant(np.stack([ids % 3, ids % 5], 1)))  # 0-2 values a row
  batches = tf.data.Dataset.from_tensor_slices(
      {'id': ids, 'x': ids.astype(np.float32)[:, None], 'bag': bags}).batch(1000)
  shuffled = data.rebatched(batches, 384, shuffle=True, window=4)
  epochs = []
  for _ in range(2):
    seen = []
    for b in shuffled:
      i = b['id'].numpy()
      assert len(i) <= 384 and b['x'].shape == (len(i), 1)
      np.testing.assert_array_equal(b['x'].numpy()[:, 0], i)
      bag = tf.sparse.to_dense(b['bag']).numpy()  # each row keeps its own bag's values
      np.testing.assert_array_equal(bag.sum(1), i % 3 + i % 5)
      np.testing.assert_array_equal((bag > 0).sum(1), (i % 3 > 0).astype(int) + (i % 5 > 0))
      seen.append(i)
    everything = np.concatenate(seen)
    assert sorted(everything) == list(ids)  # every row once an epoch
    assert sum(len(i) < 384 for i in seen) <= 3  # one short batch a window at most
    epochs.append(everything)
  assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[0], ids)
  in_order = np.concatenate([b['id'].numpy() for b in data.rebatched(batches, 384, False)])
  np.testing.assert_array_equal(in_order, ids)


def test_rank_of_target_counts_ties_against():
  scores = np.array([[0.9, 0.5, 0.5, 0.1], [0.2, 0.3, 0.4, 0.5]])
  assert rank_of_target(scores, np.array([1, 3])).tolist() == [2, 0]
  excluded = np.array([[True, False, False, False], [False] * 4])
  assert rank_of_target(scores, np.array([1, 3]), excluded).tolist() == [1, 0]
  assert top_k_rates(np.array([0, 1, 5]), [1, 2]) == {'top_1': pytest.approx(1 / 3),
                                                       'top_2': pytest.approx(2 / 3)}


def test_softmax_engagement_loss_by_hand():
  """Each positive against its own negatives; a user's accidental hits leave its softmax."""
  features = batch()
  users = features['user_id_xf'].numpy()
  only_item_4 = np.array([0, 0, 0, 0, 1.0, 0])
  seen = [users[-1] * ITEMS.id_rows + 4]  # the last row's user has item 4 in train
  config = RankingConfig(embedding_dim=4, hidden_units=(4,), engagement_negatives=3,
                         engagement_loss='softmax', rating_weight=0.0, calibration_weight=0.0)
  model = RankingModel(USERS, ITEMS, config, sampler=sampler(only_item_4, seen))
  positive = model(features)[ENGAGEMENT_LOGIT].numpy()
  negative = model(dict(features, item_id_xf=tf.constant([4] * 4, tf.int64),
                        item__genres_xf=tf.sparse.from_dense(tf.constant([[4]] * 4, tf.int64)))
                   )[ENGAGEMENT_LOGIT].numpy()
  rows = -np.log(np.exp(positive) / (np.exp(positive) + 3 * np.exp(negative)))
  rows[users == users[-1]] = 0.0  # only the positive left in its softmax
  # The engagement loss is weighted (engagement_weight) against the rating loss.
  weight = config.engagement_weight
  np.testing.assert_allclose(float(model.compute_loss(features)), weight * rows.mean(),
                             rtol=1e-4)
  # The calibration term: the binary cross-entropy of every pair (accidental hits weighted 0)
  # over all 4 x (1 + 3) pairs, which anchors the logits' level.
  calibrated = RankingModel(USERS, ITEMS, dataclasses.replace(config, calibration_weight=0.5),
                            sampler=sampler(only_item_4, seen))
  calibrated(features)
  calibrated.set_weights(model.get_weights())
  hits = users == users[-1]
  binary = (np.log1p(np.exp(-positive)).sum()
            + 3 * np.log1p(np.exp(negative))[~hits].sum()) / (4 * 4)
  np.testing.assert_allclose(float(calibrated.compute_loss(features)),
                             weight * (rows.mean() + 0.5 * binary), rtol=1e-4)
  with pytest.raises(ValueError, match='engagement_loss'):
    RankingModel(USERS, ITEMS, RankingConfig(engagement_loss='pairwise'))


def test_retrieval_export_adds_the_popularity_priors():
  from models.retrieval import RetrievalServing
  users_spec = data.SideSpec(id_key='user_id_xf', id_rows=4, categorical={}, bags={}, numeric=[])
  items_spec = data.SideSpec(id_key='item_id_xf', id_rows=5, categorical={}, bags={}, numeric=[])
  # Random towers, the same in every run (orders are compared below).
  tf_keras.utils.set_random_seed(0)
  model = TwoTowerModel(users_spec, items_spec, RetrievalConfig(embedding_dim=4, hidden_units=()))
  spec = {'user_id': tf.io.FixedLenFeature([], tf.string),
          'item_id': tf.io.FixedLenFeature([], tf.string)}
  # Users a, b and the new user c (in the users table, not in the id vocabulary).
  users = FeatureStore('user_id', {'user_id': np.array(['a', 'b', 'c'], object)}, spec)
  items = FeatureStore('item_id', {'item_id': np.array(['x', 'y', 'z'], object)}, spec)
  vocab = {'user_id': ['a', 'b'], 'item_id': ['x', 'y', 'z']}
  tables = {k: tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
      tf.constant(v), tf.range(len(v), dtype=tf.int64)), default_value=len(v))
      for k, v in vocab.items()}

  def tft_layer(raw):  # the id vocabularies, OOV -> the vocabulary size
    return {f'{k}_xf': tables[k].lookup(tf.reshape(v, [-1])) for k, v in raw.items()}

  def users_tower(ids):
    return model.query_tower(tft_layer({'user_id': tf.constant(ids)})).numpy()

  def items_tower(ids):
    return model.candidate_tower(tft_layer({'item_id': tf.constant(ids)})).numpy()

  log_prob = np.log(np.array([0.7, 0.2, 0.1, 1e-3, 1e-3], np.float32))
  # Lately z is popular and x is not: log P_recent - log P, one value per vocabulary row.
  shift = np.array([-2.0, 0.0, 3.0, 0.0, 0.0], np.float32)
  until, day = 1_000_000, 86400  # the recent window: the 10 days before until
  settings = dict(k=3, index='brute_force', audience_k=3, item_log_prob=log_prob,
                  cold_start_weight=0.5, recency_shift=shift, recency_weight=0.1,
                  history_weight=2.0, history_length=2, recent_popularity_weight=0.25,
                  recent_until=until, recent_window_days=10)
  serving = RetrievalServing(model, tft_layer, users, items, **settings)
  queries = serving.embed_users(tf.constant(['a', 'c', 'unknown']))['embeddings'].numpy()
  scale = -np.log(1e-3)  # the largest |log P|: the item column stays within [-1, 0]
  np.testing.assert_allclose(queries[:, -2], [0.25 * scale, 0.75 * scale, 0.75 * scale],
                             rtol=1e-6)
  np.testing.assert_allclose(queries[:, -1], [0.35 * 3, 0.75 * 3, 0.75 * 3], rtol=1e-6)
  assert queries.shape[1] == 4 + F.RETRIEVAL_PRIOR_COLUMNS  # what segments and benchmarks drop
  np.testing.assert_allclose(queries[:, :-2], users_tower(['a', 'c', 'unknown']), rtol=1e-6)
  vectors = serving.embed_items(tf.constant(['x', 'z']))['embeddings'].numpy()
  np.testing.assert_allclose(vectors[:, -2], log_prob[[0, 2]] / scale, rtol=1e-6)
  np.testing.assert_allclose(vectors[:, -1], shift[[0, 2]] / 3, rtol=1e-6)
  # A known user's list is the towers' score plus 0.1 x the shift, plus 0.25 x log P_recent
  # = 0.25 x (log P + shift); a new user's adds (0.5 + 0.25) x log P_recent.
  catalogue = np.array(['x', 'y', 'z'])
  for user, prior, recency in (('a', 0.0, 0.1), ('c', 0.5, 0.5)):
    scores = (users_tower([user]) @ items_tower(catalogue).T + prior * log_prob[:3]
              + recency * shift[:3] + 0.25 * (log_prob[:3] + shift[:3]))[0]
    got = serving.retrieve(tf.constant([user]))['item_ids'].numpy()[0]
    assert [i.decode() for i in got] == catalogue[np.argsort(-scores)].tolist()
    np.testing.assert_allclose(serving.retrieve(tf.constant([user]))['scores'].numpy()[0],
                               np.sort(scores)[::-1], rtol=1e-5)
  # A request's latest items: 2 x the mean tower of the first history_length (2) known ones
  # is added to the user's tower; unknown ids and padding are skipped, priors stay.
  with_history = serving.embed_users_with_history(
      tf.constant(['a', 'c', 'b']),
      tf.constant([['x', 'nope', 'z', 'y'], ['', 'y', '', ''], ['', '', '', '']])
  )['embeddings'].numpy()
  plain = serving.embed_users(tf.constant(['a', 'c', 'b']))['embeddings'].numpy()
  moved = np.stack([items_tower(['x']).mean(0) * 2.0, items_tower(['y'])[0] * 2.0,
                    np.zeros(4)])
  np.testing.assert_allclose(with_history[:, :-2], plain[:, :-2] + moved, rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(with_history[:, -2:], plain[:, -2:], rtol=1e-6)
  # With a history encoder (models/sequence.py) its query replaces the mean: it reads the
  # same known items, most recent first, and an empty history still moves nothing.
  from models.sequence import HistoryEncoder
  encoder = HistoryEncoder(4, 8)
  with_encoder = RetrievalServing(model, tft_layer, users, items, history_encoder=encoder,
                                  **settings)
  encoded = with_encoder.embed_users_with_history(
      tf.constant(['a', 'c', 'b']),
      tf.constant([['x', 'nope', 'z', 'y'], ['', 'y', '', ''], ['', '', '', '']])
  )['embeddings'].numpy()
  vectors = np.stack([[items_tower(['x'])[0], np.zeros(4)], [np.zeros(4), items_tower(['y'])[0]],
                      [np.zeros(4), np.zeros(4)]]).astype(np.float32)
  mask = np.array([[True, False], [False, True], [False, False]])
  query = encoder(tf.constant(vectors), mask=tf.constant(mask)).numpy()
  np.testing.assert_allclose(encoded[:, :-2], plain[:, :-2] + 2.0 * query, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(encoded[2], plain[2], rtol=1e-6)
  np.testing.assert_allclose(encoded[:, -2:], plain[:, -2:], rtol=1e-6)
  # A request at or after until gets what embed_users gives; one from 5 days before, half
  # of a known user's prior columns; from 10 days or more before, the towers alone. A new
  # user keeps the columns at any time.
  times = [until + 3 * day, until, until - 5 * day, until - 10 * day, until - 40 * day]
  at = serving.embed_users_at(tf.constant(['a'] * 5), tf.constant(times, tf.int64)
                              )['embeddings'].numpy()
  np.testing.assert_allclose(at[:, :-2], np.repeat(plain[:1, :-2], 5, 0), rtol=1e-6)
  np.testing.assert_allclose(at[:, -2:], np.outer([1, 1, 0.5, 0, 0], plain[0, -2:]),
                             rtol=1e-5, atol=1e-7)
  cold = serving.embed_users_at(tf.constant(['c']), tf.constant([0], tf.int64)
                                )['embeddings'].numpy()
  np.testing.assert_allclose(cold, plain[1:2], rtol=1e-6)
  old = serving.retrieve_at(tf.constant(['a']), tf.constant([until - 40 * day], tf.int64))
  towers_only = (users_tower(['a']) @ items_tower(catalogue).T)[0]
  assert [i.decode() for i in old['item_ids'].numpy()[0]] == \
      catalogue[np.argsort(-towers_only)].tolist()
  # Audiences rank users by the towers alone: the prior shifts no one.
  audience = serving.audience(tf.constant(['y']))['scores'].numpy()[0]
  expected = (items_tower(['y']) @ users_tower(['a', 'b', 'c']).T)[0]
  np.testing.assert_allclose(np.sort(audience), np.sort(expected), rtol=1e-5)
