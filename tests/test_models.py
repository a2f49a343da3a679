"""Model builders, feature stores and the retrieval metrics on plain tensors (no TFX)."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from models import data
from models.feature_store import FeatureStore
from models.ranking import RatingModel
from models.retrieval import TwoTowerModel
from models.towers import Encoder
from pipeline import features as F
from pipeline.configs import RankingConfig, RetrievalConfig
from pipeline.retrieval_metrics import rank_of_target, top_k_rates

USERS = data.SideSpec(id_key='user_id_xf', id_rows=6, categorical={'user__age_bucket_xf': 4},
                      bags={'user__country_xf': 5}, numeric=['user__age_xf'])
ITEMS = data.SideSpec(id_key='item_id_xf', id_rows=8, categorical={}, bags={'item__genres_xf': 6},
                      numeric=[])


def batch(n=4):
  rng = np.random.default_rng(0)
  return {
      'user_id_xf': tf.constant(rng.integers(0, 4, n), tf.int64),
      'user__age_bucket_xf': tf.constant(rng.integers(0, 3, n), tf.int64),
      'user__country_xf': tf.sparse.from_dense(tf.constant([[1, 0]] * (n - 1) + [[0, 0]],
                                                           tf.int64)),
      'user__age_xf': tf.constant(rng.normal(size=n), tf.float32),
      'item_id_xf': tf.constant(rng.integers(0, 6, n), tf.int64),
      'item__genres_xf': tf.sparse.from_dense(tf.constant([[1, 2]] * n, tf.int64)),
      F.RATING_XF: tf.constant([5.0, 3.0, 4.0, 1.0][:n]),
  }


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
  model = TwoTowerModel(USERS, ITEMS, RetrievalConfig(embedding_dim=8, hidden_units=(8,)),
                        item_log_prob=np.log(np.full([8], 1 / 8, np.float32)))
  tf.random.set_seed(0)
  model.compile(optimizer=tf_keras.optimizers.Adam(0.05))
  before = float(model.compute_loss(batch()))
  history = model.fit(tf.data.Dataset.from_tensors(batch()).repeat(20), epochs=1, verbose=0)
  assert float(model.compute_loss(batch())) < before
  queries = model.query_tower(batch())
  np.testing.assert_allclose(np.linalg.norm(queries.numpy(), axis=1), 1.0, rtol=1e-5)
  assert history.history['loss']


def test_rating_model_starts_at_the_mean_and_learns():
  model = RatingModel(USERS, ITEMS, RankingConfig(embedding_dim=4, hidden_units=(4,)),
                      mean_rating=3.25)
  model.compile(optimizer=tf_keras.optimizers.Adam(0.05))
  predictions = model(batch()).numpy()
  assert predictions.shape == (4,)
  assert np.all(np.abs(predictions - 3.25) < 0.5)
  ds = tf.data.Dataset.from_tensors(batch()).repeat(50)
  model.fit(ds, epochs=3, verbose=0)
  rmse = np.sqrt(np.mean((model(batch()).numpy() - np.array([5, 3, 4, 1])) ** 2))
  assert rmse < 0.5


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


def test_rank_of_target_counts_ties_against():
  scores = np.array([[0.9, 0.5, 0.5, 0.1], [0.2, 0.3, 0.4, 0.5]])
  assert rank_of_target(scores, np.array([1, 3])).tolist() == [2, 0]
  excluded = np.array([[True, False, False, False], [False] * 4])
  assert rank_of_target(scores, np.array([1, 3]), excluded).tolist() == [1, 0]
  assert top_k_rates(np.array([0, 1, 5]), [1, 2]) == {'top_1': pytest.approx(1 / 3),
                                                       'top_2': pytest.approx(2 / 3)}
