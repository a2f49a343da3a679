"""The ServingCheck probe: load a SavedModel in this fresh process, call it, print a report.

    python -m components.serving_check.probe --model_dir DIR --spec SPEC.json [--load_scann]

SPEC.json (written by the executor's ``probe_spec``) holds the kind, the requests, the
catalogue and the probed users' train items. Only TensorFlow is imported (not TFRS, which
would register ScaNN's ops), so the load fails here as it would in a plain TF Serving;
``--load_scann`` registers ScaNN's ops first, for models exported with a ScaNN index.

The last stdout line is the JSON report:
``{"kind", "model_dir", "passed", "checks": [{"name", "passed", "detail"}]}``.
The exit code is 0 whenever a report was printed, whatever it says.
"""
import argparse
import json
import os
import sys
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402

# signature -> its input names, per kind: the serving contract of each model.
SIGNATURES = {
    'retrieval': {'retrieve': ('user_id',), 'serving_default': ('user_id',),
                  'embed_users': ('user_id',), 'embed_items': ('item_id',),
                  'embed_users_with_history': ('user_id', 'history_item_ids'),
                  'embed_users_at': ('user_id', 'request_time'),
                  'retrieve_at': ('user_id', 'request_time')},
    'ranking': {'rank': ('user_id', 'item_id'), 'serving_default': ('examples',),
                'rank_at': ('user_id', 'item_id', 'request_time')},
    'feed': {'recommend': ('user_id',), 'serving_default': ('user_id',),
             'recommend_excluding': ('user_id', 'exclude_item_ids'),
             'recommend_with_history': ('user_id', 'history_item_ids')},
}
TOP_LIST_KEYS = {'item_ids', 'scores'}
# The feed also says where each list comes from (model, features, popularity).
OPTIONAL_KEYS = {'source'}


# --- Checks on answers (numpy in, problems out; empty list = fine) ---------------------------

def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def check_top_list(outputs: Dict[str, np.ndarray], batch: int, catalogue: set) -> List[str]:
  """A [batch, k] list of item ids with float32 scores, best first, no repeats, all known."""
  problems = []
  if not TOP_LIST_KEYS <= set(outputs) <= TOP_LIST_KEYS | OPTIONAL_KEYS:
    return [f'output keys {sorted(outputs)} != {sorted(TOP_LIST_KEYS)}']
  if 'source' in outputs and outputs['source'].shape != (batch,):
    problems.append(f"source shape {outputs['source'].shape}, expected ({batch},)")
  ids, scores = outputs['item_ids'], outputs['scores']
  if ids.dtype != object:
    problems.append(f'item_ids dtype {ids.dtype}, expected string')
  if scores.dtype != np.float32:
    problems.append(f'scores dtype {scores.dtype}, expected float32')
  if ids.ndim != 2 or ids.shape[0] != batch or ids.shape[1] < 1:
    problems.append(f'item_ids shape {ids.shape}, expected ({batch}, k>0)')
  if scores.shape != ids.shape:
    problems.append(f'scores shape {scores.shape} != item_ids shape {ids.shape}')
  if problems:
    return problems
  if scores.dtype.kind == 'f' and not np.all(np.isfinite(scores)):
    bad = int(np.sum(~np.isfinite(scores)))
    problems.append(f'{bad} non-finite scores')
  elif np.any(np.diff(scores, axis=1) > 1e-5):
    problems.append('scores are not sorted best first')
  if ids.dtype == object:
    unknown = sorted({_text(i) for i in ids.ravel()} - catalogue)
    if unknown:
      problems.append(f'{len(unknown)} ids not in the catalogue, e.g. {unknown[:3]}')
    repeats = [r for r, row in enumerate(ids) if len(set(row.tolist())) != len(row)]
    if repeats:
      problems.append(f'{len(repeats)} rows repeat an id, e.g. row {repeats[0]}')
  return problems


def check_not_seen(item_ids: np.ndarray, users: Sequence[str],
                   seen: Dict[str, Sequence[str]]) -> List[str]:
  """No row returns an item its user already has (``seen``: user -> items)."""
  problems = []
  for user, row in zip(users, item_ids):
    returned = {_text(i) for i in row} & set(seen.get(user, ()))
    if returned:
      problems.append(f'user {user!r} gets {len(returned)} items they already have, e.g. '
                      f'{sorted(returned)[:3]}')
  return problems[:5]


def check_exclusions(outputs: Dict[str, np.ndarray], width: int, users: Sequence[str],
                     excluded: Sequence[Sequence[str]], seen: Dict[str, Sequence[str]],
                     catalogue: set) -> List[str]:
  """A request's exclusions: no excluded item comes back, and each row still has ``width``
  items, best first, unless the catalogue has fewer left for the user (then it ends in ''
  padding scored -inf). Which items move up depends on the model; the hand-made feeds of
  the tests check that part exactly."""
  problems = []
  ids, scores = outputs['item_ids'], outputs['scores']
  if ids.shape != (len(users), width) or scores.shape != ids.shape:
    return [f'item_ids {ids.shape} / scores {scores.shape}, expected ({len(users)}, {width})']
  for r, user in enumerate(users):
    listed = [_text(i) for i in ids[r] if _text(i)]
    left_out = set(excluded[r]) - {''}
    room = len(catalogue - set(seen.get(user, ())) - left_out)
    if left_out & set(listed):
      problems.append(f'row {r} returns excluded items {sorted(left_out & set(listed))[:3]}')
    if len(listed) != min(width, room):
      problems.append(f'row {r} has {len(listed)} items; {min(width, room)} were available')
    if len(set(listed)) != len(listed) or set(listed) - catalogue:
      problems.append(f'row {r} repeats items or names ids outside the catalogue')
    finite = scores[r][:len(listed)]
    if not np.all(np.isfinite(finite)) or np.any(np.diff(finite) > 1e-5):
      problems.append(f'row {r}: scores not finite and best first')
  return problems[:5]


def check_vectors(outputs: Dict[str, np.ndarray], batch: int) -> List[str]:
  if set(outputs) != {'embeddings'}:
    return [f'output keys {sorted(outputs)} != [\'embeddings\']']
  emb = outputs['embeddings']
  if emb.dtype != np.float32 or emb.ndim != 2 or emb.shape[0] != batch or emb.shape[1] < 1:
    return [f'embeddings {emb.dtype} {emb.shape}, expected float32 ({batch}, d>0)']
  if not np.all(np.isfinite(emb)):
    return [f'{int(np.sum(~np.isfinite(emb)))} non-finite embedding values']
  return []


# The ranking model's outputs, per signature: with a rating column, or implicit feedback.
RANK_OUTPUTS = ({'rating', 'engagement', 'engagement_logit'}, {'engagement', 'engagement_logit'})
SERVING_DEFAULT_OUTPUTS = ({'rating'}, {'engagement'})


def check_ratings(outputs: Dict[str, np.ndarray], batch: int,
                  allowed: Sequence[set] = RANK_OUTPUTS) -> List[str]:
  """float32 [batch] finite scores under one of the ``allowed`` key sets; engagement in [0, 1]."""
  if set(outputs) not in [set(a) for a in allowed]:
    return [f'output keys {sorted(outputs)} not one of {[sorted(a) for a in allowed]}']
  for key, values in sorted(outputs.items()):
    if values.dtype != np.float32 or values.shape != (batch,):
      return [f'{key} {values.dtype} {values.shape}, expected float32 ({batch},)']
    if not np.all(np.isfinite(values)):
      return [f'{int(np.sum(~np.isfinite(values)))} non-finite {key} values']
  engagement = outputs.get('engagement')
  if engagement is not None and not np.all((engagement >= 0) & (engagement <= 1)):
    return ['engagement outside [0, 1]']
  return []


def unregistered_ops(model_dir: str) -> List[str]:
  """Op types in the SavedModel's graphs that this process's TensorFlow does not know."""
  from tensorflow.core.protobuf import saved_model_pb2
  from tensorflow.python.framework import op_def_registry
  saved = saved_model_pb2.SavedModel()
  with open(os.path.join(model_dir, 'saved_model.pb'), 'rb') as f:
    saved.ParseFromString(f.read())
  ops, functions = set(), set()
  for graph in saved.meta_graphs:
    ops |= {node.op for node in graph.graph_def.node}
    for function in graph.graph_def.library.function:
      functions.add(function.signature.name)
      ops |= {node.op for node in function.node_def}
  return sorted(op for op in ops - functions if op_def_registry.get(op) is None)


# --- The run ---------------------------------------------------------------------------------

class Checks:
  """Collects named checks; a check is a list of problems, or an exception."""

  def __init__(self):
    self.checks: List[Dict[str, Any]] = []

  def add(self, name: str, problems: Sequence[str]) -> bool:
    self.checks.append({'name': name, 'passed': not problems, 'detail': '; '.join(problems)})
    return not problems

  def run(self, name: str, fn: Callable[[], Sequence[str]]) -> bool:
    try:
      problems = fn()
    except Exception as e:  # pylint: disable=broad-except; reported as a failed check
      first_line = (str(e).strip().splitlines() or [''])[0]
      problems = [f'{type(e).__name__}: {first_line}'[:500]]
    return self.add(name, problems)

  @property
  def passed(self) -> bool:
    return bool(self.checks) and all(c['passed'] for c in self.checks)


def _call(model, signature: str, **inputs) -> Dict[str, np.ndarray]:
  import tensorflow as tf
  outputs = model.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
  return {k: v.numpy() for k, v in outputs.items()}


def _serialized_examples(users: Sequence[str], items: Sequence[str]) -> np.ndarray:
  import tensorflow as tf
  records = []
  for u, i in zip(users, items):
    feature = {'user_id': tf.train.Feature(bytes_list=tf.train.BytesList(value=[u.encode()])),
               'item_id': tf.train.Feature(bytes_list=tf.train.BytesList(value=[i.encode()]))}
    records.append(tf.train.Example(
        features=tf.train.Features(feature=feature)).SerializeToString())
  return np.array(records, dtype=object)


def _replay_warmup(model, model_dir: str) -> List[str]:
  import tensorflow as tf
  from models.warmup import read_warmup_requests
  problems = []
  for n, request in enumerate(read_warmup_requests(model_dir)):
    name = request.model_spec.signature_name or 'serving_default'
    if name not in model.signatures:
      problems.append(f'request {n} names signature {name!r}, which the model lacks')
      continue
    inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
    model.signatures[name](**inputs)
  return problems


def _load_scann_ops() -> List[str]:
  from scann.scann_ops.py import scann_ops  # noqa: F401 (registers the Scann* ops)
  return []


def probe(model_dir: str, spec: Dict[str, Any], load_scann: bool = False) -> Dict[str, Any]:
  """Loads ``model_dir`` and runs every check of ``spec``; the report."""
  kind = spec['kind']
  checks = Checks()
  if load_scann:
    checks.run('load_scann_ops', _load_scann_ops)
  import tensorflow as tf
  checks.run('no_custom_ops', lambda: [f'ops unknown to plain TensorFlow: {ops}']
             if (ops := unregistered_ops(model_dir)) else [])
  holder: Dict[str, Any] = {}

  def load():
    holder['model'] = tf.saved_model.load(model_dir)
    return []

  if not checks.run('loads_in_fresh_process', load):
    return _report(kind, model_dir, checks)
  model = holder['model']
  expected = SIGNATURES[kind]

  def signatures():
    problems = []
    for name, inputs in expected.items():
      if name not in model.signatures:
        problems.append(f'missing signature {name!r} (has {sorted(model.signatures)})')
        continue
      _, kwargs = model.signatures[name].structured_input_signature
      if set(kwargs) != set(inputs):
        problems.append(f'{name} takes {sorted(kwargs)}, expected {sorted(inputs)}')
    return problems

  if not checks.run('signatures', signatures):
    return _report(kind, model_dir, checks)

  catalogue = set(spec['catalogue'])
  seen = spec.get('seen', {})
  widths: Dict[str, int] = {}

  def top_list(signature, request):
    def check():
      users = request['user_id']
      out = _call(model, signature, user_id=np.array(users, dtype=object))
      problems = check_top_list(out, len(users), catalogue)
      if not problems:
        widths[request['name']] = out['item_ids'].shape[1]
        if kind == 'feed':
          problems += check_not_seen(out['item_ids'], users, seen)
      return problems
    return check

  def excluding(request, signature='recommend_excluding', key='exclude_item_ids'):
    """The request's items are left out (with history, they may also move the list)."""
    def check():
      users = request['user_id']
      plain = _call(model, 'recommend', user_id=np.array(users, dtype=object))['item_ids']
      # Rows of different lengths padded with '', a repeat and an unknown id, as a client
      # may send them: one item of each user's own list is left out.
      rows = [[_text(row[0]), _text(row[0]), '__unknown_item__']
              if r % 2 == 0 else [_text(row[-1]), '', ''] for r, row in enumerate(plain)]
      out = _call(model, signature, user_id=np.array(users, dtype=object),
                  **{key: np.array(rows, dtype=object)})
      return (check_exclusions(out, plain.shape[1], users, rows, seen, catalogue)
              + check_not_seen(out['item_ids'], users, seen))
    return check

  def with_history(users):
    """Vectors of the same shape as embed_users', equal to them where the history names no
    known item."""
    plain = _call(model, 'embed_users', user_id=np.array(users, dtype=object))
    item = min(catalogue)
    rows = [[item, ''] if r % 2 == 0 else ['', ''] for r in range(len(users))]
    out = _call(model, 'embed_users_with_history', user_id=np.array(users, dtype=object),
                history_item_ids=np.array(rows, dtype=object))
    problems = check_vectors(out, len(users))
    if not problems and out['embeddings'].shape != plain['embeddings'].shape:
      problems.append(f"shape {out['embeddings'].shape} != embed_users' "
                      f"{plain['embeddings'].shape}")
    elif not problems and not np.allclose(out['embeddings'][1::2], plain['embeddings'][1::2],
                                          atol=1e-5):
      problems.append('an empty history changes the user\'s vector')
    return problems

  def at_now(users):
    """retrieve_at for a request made after training returns retrieve's lists (a time far
    ahead, since data can carry any clock)."""
    plain = _call(model, 'retrieve', user_id=np.array(users, dtype=object))
    out = _call(model, 'retrieve_at', user_id=np.array(users, dtype=object),
                request_time=np.full(len(users), 2 ** 40, np.int64))
    problems = check_top_list(out, len(users), catalogue)
    if not problems and not np.array_equal(out['item_ids'], plain['item_ids']):
      problems.append('retrieve_at now differs from retrieve')
    return problems

  def rank_at_now(users, items):
    """rank_at for requests made after training gives rank's answers."""
    pairs = dict(user_id=np.array(users, dtype=object), item_id=np.array(items, dtype=object))
    plain = _call(model, 'rank', **pairs)
    out = _call(model, 'rank_at', request_time=np.full(len(users), 2 ** 40, np.int64), **pairs)
    problems = check_ratings(out, len(users))
    if not problems and any(not np.allclose(out[k], plain[k], atol=1e-5) for k in plain):
      problems.append('rank_at after training differs from rank')
    return problems

  for request in spec['requests']:
    name, users = request['name'], request.get('user_id')
    if kind == 'feed':
      checks.run(f'{name}:recommend', top_list('recommend', request))
      checks.run(f'{name}:serving_default', top_list('serving_default', request))
      checks.run(f'{name}:recommend_excluding', excluding(request))
      checks.run(f'{name}:recommend_with_history',
                 excluding(request, 'recommend_with_history', 'history_item_ids'))
    elif kind == 'retrieval' and users is not None:
      checks.run(f'{name}:retrieve', top_list('retrieve', request))
      checks.run(f'{name}:serving_default', top_list('serving_default', request))
      checks.run(f'{name}:embed_users', lambda u=users: check_vectors(
          _call(model, 'embed_users', user_id=np.array(u, dtype=object)), len(u)))
      checks.run(f'{name}:embed_users_with_history', lambda u=users: with_history(u))
      checks.run(f'{name}:retrieve_at', lambda u=users: at_now(u))
    elif kind == 'retrieval':
      items = request['item_id']
      checks.run(f'{name}', lambda i=items: check_vectors(
          _call(model, 'embed_items', item_id=np.array(i, dtype=object)), len(i)))
    elif kind == 'ranking':
      items = request['item_id']
      checks.run(f'{name}:rank', lambda u=users, i=items: check_ratings(_call(
          model, 'rank', user_id=np.array(u, dtype=object), item_id=np.array(i, dtype=object)),
          len(u)))
      checks.run(f'{name}:serving_default', lambda u=users, i=items: check_ratings(_call(
          model, 'serving_default', examples=_serialized_examples(u, i)), len(u),
          SERVING_DEFAULT_OUTPUTS))
      checks.run(f'{name}:rank_at', lambda u=users, i=items: rank_at_now(u, i))
  if widths:
    checks.add('same_list_width', [] if len(set(widths.values())) == 1
               else [f'list widths differ between requests: {widths}'])
  checks.run('warmup_requests', lambda: _replay_warmup(model, model_dir))
  return _report(kind, model_dir, checks)


def _report(kind: str, model_dir: str, checks: Checks) -> Dict[str, Any]:
  return {'kind': kind, 'model_dir': model_dir, 'passed': checks.passed,
          'checks': checks.checks}


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--model_dir', required=True)
  parser.add_argument('--spec', required=True, help='JSON written by executor.probe_spec')
  parser.add_argument('--load_scann', action='store_true')
  args = parser.parse_args(argv)
  with open(args.spec) as f:
    spec = json.load(f)
  try:
    report = probe(args.model_dir, spec, args.load_scann)
  except Exception:  # pylint: disable=broad-except; the report says what broke
    report = {'kind': spec.get('kind'), 'model_dir': args.model_dir, 'passed': False,
              'checks': [{'name': 'probe', 'passed': False,
                          'detail': traceback.format_exc()[-2000:]}]}
  sys.stdout.flush()
  print(json.dumps(report))
  return 0


if __name__ == '__main__':
  sys.exit(main())
