"""Scheduled retraining: spans, warm start, the gate against the served model of each kind."""
import collections
import csv
import glob
import json
import os
import random
import shutil
import zlib

import pytest
import tensorflow as tf

import local_runner
from pipeline.data_layout import LayoutError, resolve_layout
from tests.helpers import FAST, MOVIELENS, run_artifact, write


def _write_csv(path, header, rows):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', newline='', encoding='utf-8') as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)


def test_layout_reads_spans_with_shared_or_own_tables(tmp_path):
  for span in (1, 2, 10):
    write(tmp_path / f'span-{span}' / 'interactions.csv', 'user_id,item_id\n1,2\n')
  write(tmp_path / 'items.csv', 'item_id\n2\n')
  write(tmp_path / 'span-2' / 'users.csv', 'user_id\n1\n')
  latest = resolve_layout(str(tmp_path))
  assert latest.span == 10 and latest.spans and latest.shared_tables
  assert (latest.train, latest.items, latest.users) == (
      'span-{SPAN}/interactions.csv', 'items.csv', None)
  second = resolve_layout(str(tmp_path), span=2)
  assert second.span == 2 and second.users == 'span-{SPAN}/users.csv'
  with pytest.raises(LayoutError, match=r'no span-3 folder \(spans found: 1, 2, 10\)'):
    resolve_layout(str(tmp_path), span=3)
  os.remove(tmp_path / 'items.csv')
  with pytest.raises(LayoutError, match='span-10: missing items.csv'):
    resolve_layout(str(tmp_path))


def test_span_flag_without_span_folders_is_an_error(tiny_tables):
  with pytest.raises(LayoutError, match='no span-<N> folders'):
    resolve_layout(str(tiny_tables), span=1)


def _movielens(users):
  with open(os.path.join(MOVIELENS, 'interactions.csv')) as f:
    rows = list(csv.reader(f))
  return rows[0], [r for r in rows[1:] if int(r[0]) <= users]


def _is_eval(row):
  return zlib.crc32(f'{row[0]}-{row[1]}'.encode()) % 5 == 0


def _span(data, span, users, extra_train=()):
  """span-N with the interactions of the first ``users`` users (plus ``extra_train`` rows in
  its train split), pre-split (a trusted eval holdout). items.csv and users.csv sit once
  beside the span folders."""
  header, rows = _movielens(users)
  _write_csv(os.path.join(data, f'span-{span}', 'train', 'interactions.csv'), header,
             [r for r in rows if not _is_eval(r)] + list(extra_train))
  _write_csv(os.path.join(data, f'span-{span}', 'eval', 'interactions.csv'), header,
             [r for r in rows if _is_eval(r)])
  for name in ('items.csv', 'users.csv'):
    shutil.copy(os.path.join(MOVIELENS, name), os.path.join(data, name))


def _corrupted_span(data, span, users):
  """The same as ``_span`` but the training rows are scrambled (user ids and ratings
  shuffled, as a broken upstream join would); the eval rows are intact."""
  header, rows = _movielens(users)
  train = [list(r) for r in rows if not _is_eval(r)]
  rng = random.Random(0)
  users, ratings = [r[0] for r in train], [r[2] for r in train]
  rng.shuffle(users)
  rng.shuffle(ratings)
  for r, u, k in zip(train, users, ratings):
    r[0], r[2] = u, k
  _write_csv(os.path.join(data, f'span-{span}', 'train', 'interactions.csv'), header, train)
  _write_csv(os.path.join(data, f'span-{span}', 'eval', 'interactions.csv'), header,
             [r for r in rows if _is_eval(r)])


def _latest_versions(out):
  serving = os.path.join(out, 'serving')
  return {kind: max(os.listdir(os.path.join(serving, kind)), key=int, default=None)
          for kind in ('retrieval', 'ranking', 'feed')
          if os.path.isdir(os.path.join(serving, kind))}


def _baselines(out):
  """{kind: (the served version its ServedModel step copied, whether the trainer warm-started
  from that copy, whether the evaluator compared against the candidate kept inside it)} in
  the latest run (the served versions are refits, the default)."""
  from tensorflow_model_analysis.writers import eval_config_writer
  from tfx.types import standard_artifacts as sa
  from core import served
  from pipeline import pipeline as P
  out_ = {}
  blessing = run_artifact(out, P.RETRIEVAL_EVALUATOR, 'blessing', sa.ModelBlessing)
  evaluation = run_artifact(out, P.RANKING_EVALUATOR, 'evaluation', sa.ModelEvaluation)
  compared = {
      'retrieval': (blessing.get_string_custom_property('baseline_model')
                    if blessing.has_custom_property('baseline_model') else None),
      'ranking': eval_config_writer.load_eval_run(evaluation.uri)[3].get('baseline'),
  }
  for kind, node, trainer in (('retrieval', P.SERVED_RETRIEVAL, P.RETRIEVAL_TRAINER),
                              ('ranking', P.SERVED_RANKING, P.RANKING_TRAINER)):
    snapshot = run_artifact(out, node, 'model', sa.Model)
    gate = run_artifact(out, node, 'gate_model', sa.Model)
    run = run_artifact(out, trainer, 'model_run', sa.ModelRun)
    with open(os.path.join(run.uri, 'warm_start.json')) as f:
      base = json.load(f)['base_model']
    inside = lambda path, artifact: bool(path) and path.startswith(artifact.uri)
    version = snapshot.get_string_custom_property(served.SERVED_VERSION)
    assert gate.get_string_custom_property(served.SERVED_VERSION) == version
    copied = gate.get_string_custom_property(served.SERVED_PATH)
    assert copied.endswith(served.CANDIDATE_DIR) if version else copied == '', copied
    out_[kind] = (version, inside(base, snapshot), inside(compared[kind], gate))
  return out_


def _metrics(out):
  with open(os.path.join(out, 'metrics.json')) as f:
    return json.load(f)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_three_scheduled_runs(tmp_path, capsys):
  data, out = str(tmp_path / 'data'), str(tmp_path / 'out')
  # Span 1 also holds, for each of its users, three of the most popular items they never
  # rated in MovieLens: interactions that no later span delivers again.
  _, rows = _movielens(180)
  popularity = collections.Counter(r[1] for r in rows)
  rated = collections.defaultdict(set)
  for r in rows:
    rated[r[0]].add(r[1])
  only_in_span_1 = {u: [i for i, _ in popularity.most_common(40) if i not in rated[u]][:3]
                    for u in map(str, range(1, 121))}
  _span(data, 1, users=120, extra_train=[[u, i, '4', '874965758']
                                         for u, items in only_in_span_1.items() for i in items])
  run = lambda *extra: local_runner.main(['--data-dir', data, '--output-dir', out]
                                         + FAST + list(extra))

  # Run 1, span 1: nothing blessed yet; trains from scratch and pushes version 1. Its Beam
  # components (ExampleGen, StatisticsGen, Transform, Evaluator) run as on a laptop: the
  # DirectRunner in multi-processing mode, one worker per core.
  assert run('--span', '1', '--beam-mode', 'multi_processing', '--beam-workers', '2') == 0
  first = _metrics(out)
  # Three epochs on 120 users pass the default gates: the quality floors of a trained model.
  assert first['retrieval']['blessed'] and first['ranking']['blessed'], first
  assert 0.5 < first['ranking']['rmse'] < 1.5
  assert first['retrieval']['top_100'] > 0.1 and first['feed']['hit_rate_at_10'] > 0
  assert first['span'] == 1
  assert first['warm_start'] == {'retrieval': None, 'ranking': None}
  # Nothing served yet: no baseline to start from or to compare with.
  assert _baselines(out) == {'retrieval': ('', False, False), 'ranking': ('', False, False)}
  v1 = _latest_versions(out)
  assert set(v1) == {'retrieval', 'ranking', 'feed'} and all(v1.values())

  # Run 2, on the next delivery (the latest span, read by default): more users, so new ids.
  # Warm-started from version 1, the new users' rows start fresh; pushed.
  _span(data, 2, users=180)
  assert run('--if-new-data') == 0
  second = _metrics(out)
  assert second['span'] == 2
  for kind in ('retrieval', 'ranking'):
    warm = second['warm_start'][kind]
    assert warm['from_version'] == v1[kind], warm
    assert warm['rows_kept'] > 0 and warm['rows_new'] > 0  # users 121-180 are new
    assert second['pushed'][kind] and second['pushed'][kind] != v1[kind]
  assert 'warm start from version' in capsys.readouterr().out
  # Each trainer started from, and each evaluator compared against, a copy of the version of
  # its own kind that run 1 pushed.
  assert _baselines(out) == {kind: (v1[kind], True, True) for kind in ('retrieval', 'ranking')}
  v2 = _latest_versions(out)
  assert all(int(v2[k]) > int(v1[k]) for k in v1)
  # The pushed feed leaves out what users had in span 1 too, though span 2 does not have it,
  # while the retrieval model (which knows span 2 only) still proposes some of those items.
  users = sorted(only_in_span_1)
  had = {u: rated[u] | set(only_in_span_1[u]) for u in users}
  serving = os.path.join(out, 'serving')
  feed = tf.saved_model.load(os.path.join(serving, 'feed', v2['feed']))
  lists = feed.signatures['recommend'](user_id=tf.constant(users))['item_ids'].numpy()
  returned = sum(len({i.decode() for i in row} & had[u]) for u, row in zip(users, lists))
  assert returned == 0
  retrieval = tf.saved_model.load(os.path.join(serving, 'retrieval', v2['retrieval']))
  proposed = retrieval.signatures['retrieve'](user_id=tf.constant(users))['item_ids'].numpy()
  assert sum(len({i.decode() for i in row[:10]} & set(only_in_span_1[u]))
             for u, row in zip(users, proposed)) > 0
  from tfx.types import standard_artifacts
  from pipeline import pipeline as P
  evaluation = run_artifact(out, P.FEED_BUILDER, 'evaluation', standard_artifacts.ModelEvaluation)
  with open(os.path.join(evaluation.uri, 'feed_metrics.json')) as f:
    served = json.load(f)['served']
  assert served['carried_from'].endswith(v1['feed']) and served['carried_pairs'] > 0

  # The schedule fires again before new data arrives: nothing to do, nothing changes.
  assert run('--if-new-data') == 0
  assert 'Nothing new: span 2 was already trained on' in capsys.readouterr().out
  assert _latest_versions(out) == v2 and _metrics(out)['run_id'] == second['run_id']

  # Run 3, a corrupted delivery: both models fail the comparison with the served ones (run 2's
  # pushes), so nothing is pushed and version 2 stays the latest of every kind.
  _corrupted_span(data, 3, users=180)
  assert run('--if-new-data') == 0
  third = _metrics(out)
  assert third['span'] == 3
  assert third['retrieval']['blessed'] is False and third['ranking']['blessed'] is False
  assert third['pushed'] == {'retrieval': None, 'ranking': None, 'feed': None}
  assert _latest_versions(out) == v2
  assert _baselines(out) == {kind: (v2[kind], True, True) for kind in ('retrieval', 'ranking')}
  # Every version directory under serving/ is complete (has its saved_model.pb).
  for kind, version in v2.items():
    assert os.path.exists(os.path.join(out, 'serving', kind, version, 'saved_model.pb'))


@pytest.mark.slow
def test_curated_schema_stops_a_drifted_span(tmp_path, capsys):
  """A span whose users carry an occupation the curated schema does not know is stopped by
  the ExampleValidator before anything trains."""
  header, rows = _movielens(40)
  data = tmp_path / 'data'
  _write_csv(str(data / 'span-1' / 'interactions.csv'), header, rows)
  shutil.copy(os.path.join(MOVIELENS, 'items.csv'), data / 'items.csv')
  with open(os.path.join(MOVIELENS, 'users.csv'), encoding='utf-8') as f:
    users = f.read().replace(',technician,', ',astronaut,')
  write(data / 'span-1' / 'users.csv', users)
  schema = os.path.join(os.path.dirname(__file__), '..', 'data', 'movielens-100k',
                        'schema.pbtxt')
  out = str(tmp_path / 'out')
  code = local_runner.main(['--data-dir', str(data), '--output-dir', out, '--schema', schema]
                           + FAST)
  printed = capsys.readouterr().out
  assert code == 1
  assert 'failed in AnomalyGate' in printed
  assert 'user__occupation' in printed and 'astronaut' in printed
  assert not glob.glob(os.path.join(out, 'serving', '*', '*'))
