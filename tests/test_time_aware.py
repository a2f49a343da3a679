"""One pipeline run on synthetic data that has time in it: items released over the span whose
pull decays with age, users whose interests drift, implicit feedback. The default split is by
time, so the eval rows are the future; the retrieval model's recency column (what is popular
lately, RetrievalServing) must beat the same towers without it there.
"""
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx.types import standard_artifacts as sa

from models import evaluation as evaluator
from core.artifacts import embed
from core.retrieval_metrics import rank_of_target
from pipeline import pipeline as P
from tests.helpers import run_artifact, tail

pytestmark = pytest.mark.slow

FLAGS = ['--beam-mode', 'in_memory', '--ranking-epochs', '1', '--retrieval-epochs', '5',
         '--no-recent-popularity-gate', '--segments', '2']


@pytest.fixture(scope='module')
def time_run(tmp_path_factory):
  import local_runner
  from pipeline import synthetic_data
  data = tmp_path_factory.mktemp('timed')
  synthetic_data.generate(str(data), users=400, items=300, interactions=12000, seed=5,
                          implicit=True, time_dynamics=True)
  out = tmp_path_factory.mktemp('timed_out')
  code = local_runner.main(['--data-dir', str(data), '--output-dir', str(out)] + FLAGS)
  if code != 0:
    pytest.fail(f'the time-dynamic run failed (exit code {code}):\n'
                + tail(os.path.join(str(out), 'run.log')), pytrace=False)
  return str(out)


def _top_100_unseen(users, items, seen, target, known, blind: bool):
  """top_100_unseen of the exported vectors; ``blind`` drops the recency column, leaving the
  towers and the all-time popularity of the cold-start column."""
  if blind:
    users = users.copy()
    users[:, -1] = 0.0
  scores = users @ items.T
  excluded = np.zeros(scores.shape, dtype=bool)
  for r, cols in enumerate(seen):
    excluded[r, cols] = True
  ranks = rank_of_target(scores, target, excluded)
  return float(np.mean(ranks < 100)), float(np.mean(ranks[known] < 100))


def test_what_is_popular_lately_lifts_retrieval_on_the_future(time_run):
  examples = run_artifact(time_run, P.EXAMPLE_GEN, 'examples', sa.Examples)
  files = lambda split: [os.path.join(examples.uri, f'Split-{split}', '*')]
  eval_users, eval_items, catalogue, seen, _ = evaluator.evaluation_inputs(
      files('train'), files('eval'), files('items'))
  model_dir = os.path.join(run_artifact(time_run, P.RETRIEVAL_TRAINER, 'model',
                                        sa.Model).uri, 'Format-Serving')
  model = tf.saved_model.load(model_dir)
  column = {item: j for j, item in enumerate(catalogue)}
  users = embed(model.signatures['embed_users'], eval_users)
  items = embed(model.signatures['embed_items'], catalogue)
  target = np.array([column[i] for i in eval_items])
  seen_cols = [[column[i] for i in seen.get(u, ())] for u in eval_users]
  known = np.array([u in seen for u in eval_users])
  aware, aware_known = _top_100_unseen(users, items, seen_cols, target, known, blind=False)
  blind, blind_known = _top_100_unseen(users, items, seen_cols, target, known, blind=True)
  # The evaluator scored the same vectors: the time-aware figure is the run's own.
  found = evaluator.evaluate_retrieval(model, eval_users, eval_items, catalogue, seen, (100,))
  assert found['top_100_unseen'] == pytest.approx(aware)
  assert known.sum() > 100  # returning users are there to be judged
  assert aware > blind + 0.02, (aware, blind)
  assert aware_known > blind_known, (aware_known, blind_known)
