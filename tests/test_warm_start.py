"""Warm start on tensors: rows follow their tokens, new ids start fresh, shapes are checked."""
import os

import numpy as np

from models import warm_start
from models.data import SideSpec
from models.ranking import RankingModel
from models.retrieval import TwoTowerModel
from core.configs import RankingConfig, RetrievalConfig
from tests.tensor_helpers import batch

USER_VOCAB = [b'u1', b'u2', b'u3', b'u4']
ITEM_VOCAB = [b'i1', b'i2', b'i3', b'i4', b'i5', b'i6']
COUNTRY_VOCAB = [b'ES', b'FR', b'DE']
GENRE_VOCAB = [b'a', b'b', b'c', b'd']


class FakeTransformOutput:
  """The one method warm start needs from tft.TFTransformOutput."""

  def __init__(self, vocabularies):
    self.vocabularies = vocabularies

  def vocabulary_by_name(self, name):
    return self.vocabularies[name]


def specs(user_vocab, item_vocab):
  users = SideSpec(id_key='user_id_xf', id_rows=len(user_vocab) + 2,
                   categorical={'user__age_bucket_xf': 4},
                   bags={'user__country_xf': len(COUNTRY_VOCAB) + 2}, numeric=['user__age_xf'],
                   vocabularies={'user_id_xf': 'user_id', 'user__country_xf': 'country'})
  items = SideSpec(id_key='item_id_xf', id_rows=len(item_vocab) + 2, categorical={},
                   bags={'item__genres_xf': len(GENRE_VOCAB) + 2}, numeric=[],
                   vocabularies={'item_id_xf': 'item_id', 'item__genres_xf': 'genres'})
  tft_output = FakeTransformOutput({'user_id': user_vocab, 'item_id': item_vocab,
                                    'country': COUNTRY_VOCAB, 'genres': GENRE_VOCAB})
  return users, items, tft_output


def test_remap_rows_moves_known_tokens_and_keeps_new_rows_fresh():
  old = np.arange(5, dtype=np.float32).reshape(5, 1) * 10  # a, b, c, oov, spare
  new = -np.ones((6, 1), np.float32)                       # c, x, a, b, oov, spare
  rows, kept, fresh = warm_start.remap_rows(new, old, [b'c', b'x', b'a', b'b'], [b'a', b'b', b'c'])
  assert rows[:, 0].tolist() == [20, -1, 0, 10, 30, 40]
  assert (kept, fresh) == (3, 1)


def test_retrieval_model_warm_starts_by_token(tmp_path):
  users, items, tft_output = specs(USER_VOCAB, ITEM_VOCAB)
  old = TwoTowerModel(users, items, RetrievalConfig(embedding_dim=8, hidden_units=(4,)))
  old.compute_loss(batch())
  serving_dir = os.path.join(str(tmp_path), 'old', 'Format-Serving')
  warm_start.save(old, old.row_vocabularies(), tft_output, serving_dir)

  # The next span: u5 is new and u1 is gone; u2..u4 keep their learned rows.
  new_users = [b'u3', b'u5', b'u2', b'u4']
  users2, items2, tft_output2 = specs(new_users, ITEM_VOCAB)
  new = TwoTowerModel(users2, items2, RetrievalConfig(embedding_dim=8, hidden_units=(4,)))
  new.compute_loss(batch())
  fresh_u5 = new.query_tower.encoder.id_embedding.embeddings.numpy()[1].copy()
  report = warm_start.restore(new, new.row_vocabularies(), tft_output2, serving_dir)

  old_rows = old.query_tower.encoder.id_embedding.embeddings.numpy()
  new_rows = new.query_tower.encoder.id_embedding.embeddings.numpy()
  np.testing.assert_allclose(new_rows[0], old_rows[2])  # u3
  np.testing.assert_allclose(new_rows[2], old_rows[1])  # u2
  np.testing.assert_allclose(new_rows[3], old_rows[3])  # u4
  np.testing.assert_allclose(new_rows[1], fresh_u5)     # u5: new, fresh
  np.testing.assert_allclose(new_rows[-2:], old_rows[-2:])  # OOV rows carry over
  np.testing.assert_allclose(new.candidate_tower.encoder.id_embedding.embeddings.numpy(),
                             old.candidate_tower.encoder.id_embedding.embeddings.numpy())
  for a, b in zip(new.query_tower.mlp.weights, old.query_tower.mlp.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy())
  key = 'query_tower/encoder/id_embedding/embeddings'
  assert report['rows_kept'][key] == 3 and report['rows_new'][key] == 1
  assert report['fresh'] == [] and report['copied'] > 0


def test_changed_shapes_start_fresh_and_are_reported(tmp_path):
  users, items, tft_output = specs(USER_VOCAB, ITEM_VOCAB)
  old = RankingModel(users, items, RankingConfig(embedding_dim=8, hidden_units=(4,)))
  old(batch())
  serving_dir = os.path.join(str(tmp_path), 'old', 'Format-Serving')
  warm_start.save(old, old.row_vocabularies(), tft_output, serving_dir)

  new = RankingModel(users, items, RankingConfig(embedding_dim=8, hidden_units=(6,)))
  new(batch())
  report = warm_start.restore(new, new.row_vocabularies(), tft_output, serving_dir)
  assert any(k.startswith('rating_head/deep/') for k in report['fresh'])
  for head in ('rating_head', 'engagement_head'):
    np.testing.assert_allclose(getattr(new, head).user_bias.embeddings.numpy(),
                               getattr(old, head).user_bias.embeddings.numpy())
    np.testing.assert_allclose(getattr(new, head).global_bias.numpy(),
                               getattr(old, head).global_bias.numpy())


def test_base_model_without_state_trains_from_scratch(tmp_path):
  users, items, tft_output = specs(USER_VOCAB, ITEM_VOCAB)
  model = RankingModel(users, items, RankingConfig(embedding_dim=8, hidden_units=(4,)))
  model(batch())
  assert warm_start.restore(model, model.row_vocabularies(), tft_output,
                            str(tmp_path / 'Format-Serving')) is None
