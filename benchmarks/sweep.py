"""Hyper-parameter sweep of one stage on the data of an existing pipeline run.

Re-running the whole pipeline for each variant costs minutes of ingestion and Transform; this
trains the retrieval or ranking model alone on a run's ExampleGen and Transform outputs, the
way its Trainer would, and prints one table row per variant, the default configuration
first (run-to-run noise on the seed-42 split: about +-0.004 top_100_unseen, +-0.003 RMSE).

  python -m benchmarks.sweep --pipeline-root out/benchmark/out/pipeline --stage retrieval \\
      --variant '{"popularity_weight": 1.5}' --variant '{"temperature": 0.15}'

With ``--feed`` each variant is also exported and combined with the run's model of the other
stage into a feed model, as FeedModelBuilder does, and the feed's hit rate and nDCG at 10 on
the eval split are added to its row (about 30 s more a row).

Do not edit models/ while it runs: autograph re-reads the source of the functions it traces.
"""
import argparse
import json
import os
import tempfile
import time
from typing import Any, Dict, List

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402

METRICS = {'retrieval': ('top_10', 'top_100', 'top_10_unseen', 'top_100_unseen'),
           'ranking': ('rmse', 'epochs')}
FEED_METRICS = ('hit_rate_at_10', 'ndcg_at_10')


def _latest(folder: str) -> str:
  runs = sorted(os.listdir(folder), key=lambda name: int(name) if name.isdigit() else -1)
  if not runs:
    raise FileNotFoundError(f'{folder}: no artifact; run the pipeline first')
  return os.path.join(folder, runs[-1])


class _FnArgs:
  """The part of the Trainer's FnArgs that models/*.train reads."""

  def __init__(self, pipeline_root: str):
    from tfx.types import artifact_utils, standard_artifacts

    from core import features as F
    examples = standard_artifacts.Examples()
    examples.uri = _latest(os.path.join(pipeline_root, 'InteractionExampleGen', 'examples'))
    examples.split_names = artifact_utils.encode_split_names(list(F.SPLITS))
    self.train_files = [os.path.join(examples.uri, f'Split-{F.TRAIN}', '*')]
    self.eval_files = [os.path.join(examples.uri, f'Split-{F.EVAL}', '*')]
    self.transform_output = _latest(os.path.join(pipeline_root, 'Transform', 'transform_graph'))
    self.examples = examples
    self.pipeline_root = pipeline_root
    self._feed_data = None

  def feed_data(self):
    """The run's catalogue, train pairs and eval triples, read once for every feed row."""
    if self._feed_data is None:
      from models import feed
      self._feed_data = feed.read_feed_data([self.examples])
    return self._feed_data

  def model_dir(self, stage: str) -> str:
    """The serving directory of the run's latest model of ``stage``."""
    trainer = {'retrieval': 'RetrievalTrainer', 'ranking': 'RankingTrainer'}[stage]
    return os.path.join(_latest(os.path.join(self.pipeline_root, trainer, 'model')),
                        'Format-Serving')


def feed_metrics(fn_args: _FnArgs, stage: str, serving) -> Dict[str, float]:
  """Hit rate and nDCG at 10 of the feed built from ``serving`` (a variant of ``stage``) and
  the run's model of the other stage, exported and evaluated as FeedModelBuilder does."""
  from models import feed, tracing
  with tempfile.TemporaryDirectory() as tmp:
    variant_dir = os.path.join(tmp, stage)
    tracing.save(serving, variant_dir, signatures=serving.signatures())
    dirs = {stage: variant_dir}
    other = 'ranking' if stage == 'retrieval' else 'retrieval'
    dirs[other] = fn_args.model_dir(other)
    feed_data = fn_args.feed_data()
    feed_dir = os.path.join(tmp, 'feed')
    feed.export_feed_model(dirs['retrieval'], dirs['ranking'], feed_dir, feed_data)
    found = feed.evaluate_feed(feed_dir, feed_data)
  return {k: found[k] for k in FEED_METRICS}


def retrieval_metrics(fn_args: _FnArgs, tft_output, variant: Dict[str, Any],
                      feed: bool = False) -> Dict[str, float]:
  from models.evaluation import evaluate_retrieval, evaluation_inputs
  from models import data, retrieval
  from models.feature_store import build_stores
  from core import features as F
  from core.configs import RetrievalConfig, config_from_dict
  config = config_from_dict(RetrievalConfig, variant)
  users, items = build_stores(fn_args.train_files, tft_output)
  model, _, _ = retrieval.train(fn_args, tft_output, config, items=items)
  serving, _ = retrieval.serving_model(model, tft_output, users, items, config,
                                       fn_args.train_files, index='brute_force')

  class Signatures:  # evaluate_retrieval takes a loaded SavedModel
    signatures = {'embed_users': serving.embed_users, 'embed_items': serving.embed_items,
                  F.RETRIEVAL_AT_SIGNATURE: serving.embed_users_at}

  eval_users, eval_items, catalogue, seen, eval_times = evaluation_inputs(
      fn_args.train_files, fn_args.eval_files, data.split_files(fn_args.train_files, F.ITEMS))
  found = evaluate_retrieval(Signatures, eval_users, eval_items, catalogue, seen,
                             eval_times=eval_times)
  return {**found, **(feed_metrics(fn_args, 'retrieval', serving) if feed else {})}


def ranking_metrics(fn_args: _FnArgs, tft_output, variant: Dict[str, Any],
                    feed: bool = False) -> Dict[str, float]:
  from models import data, ranking
  from core import features as F
  from core.configs import RankingConfig, config_from_dict
  from models.feature_store import build_stores
  config = config_from_dict(RankingConfig, variant)
  users, items = build_stores(fn_args.train_files, tft_output)  # read once: train and feed
  model, history, _ = ranking.train(fn_args, tft_output, config, items=items)
  keys = (data.side_spec(tft_output, F.USER_ID, F.USER_PREFIX).keys
          + data.side_spec(tft_output, F.ITEM_ID, F.ITEM_PREFIX).keys + [F.RATING_XF])
  # Every row requested now (the full baseline blend): the time split's figure. On a hash
  # split the Evaluator scores rows at their timestamps (RankingServing), so it differs.
  errors = [model(batch)['rating'].numpy().ravel() - batch[F.RATING_XF].numpy().ravel()
            for batch in data.transformed_batches(fn_args.eval_files, tft_output, keys)]
  found = {'rmse': float(np.sqrt(np.mean(np.concatenate(errors) ** 2))),
           'epochs': len(history['loss'])}
  if feed:
    serving = ranking.RankingServing(model, tft_output.transform_features_layer(), users, items)
    found.update(feed_metrics(fn_args, 'ranking', serving))
  return found


def table(stage: str, rows: List[Dict[str, Any]]) -> str:
  names = METRICS[stage] + tuple(n for n in FEED_METRICS if rows and n in rows[0])
  lines = ['| variant | ' + ' | '.join(names) + ' | seconds |',
           '| --- |' + ' --- |' * (len(names) + 1)]
  for row in rows:
    values = [f'{row[n]:.4f}' if isinstance(row[n], float) else str(row[n]) for n in names]
    lines.append(f'| {row["variant"]} | ' + ' | '.join(values) + f' | {row["seconds"]:.0f} |')
  return '\n'.join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--pipeline-root', required=True,
                      help="a run's pipeline folder (OUT/pipeline) holding ExampleGen and "
                           'Transform outputs')
  parser.add_argument('--stage', choices=sorted(METRICS), required=True)
  parser.add_argument('--variant', action='append', default=[],
                      help='JSON of config fields that differ from the defaults (repeatable)')
  parser.add_argument('--no-default', action='store_true', help='skip the default row')
  parser.add_argument('--feed', action='store_true',
                      help="also the hit rate and nDCG of the feed built with the run's model "
                           'of the other stage')
  args = parser.parse_args(argv)
  from pipeline.cli import config_fields
  from core.configs import RankingConfig, RetrievalConfig
  # The runners' check of --retrieval-config / --ranking-config: a misspelt field or a wrong
  # type stops here, not after the rows before it have trained.
  check = config_fields(RetrievalConfig if args.stage == 'retrieval' else RankingConfig)
  try:
    for text in args.variant:
      check(text)
  except argparse.ArgumentTypeError as e:
    parser.error(f'--variant: {e}')
  import tensorflow_transform as tft
  variants = ([] if args.no_default else [{}]) + [json.loads(v) for v in args.variant]
  fn_args = _FnArgs(args.pipeline_root)
  tft_output = tft.TFTransformOutput(fn_args.transform_output)
  measure = retrieval_metrics if args.stage == 'retrieval' else ranking_metrics
  rows = []
  for variant in variants:
    started = time.time()
    result = measure(fn_args, tft_output, variant, feed=args.feed)
    rows.append({'variant': json.dumps(variant) if variant else 'defaults',
                 'seconds': time.time() - started, **result})
    print(table(args.stage, rows[-1:]).splitlines()[-1], flush=True)
  print(table(args.stage, rows))
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
