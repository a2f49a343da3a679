"""The publisher (core/publish.py) through a file-operations layer that
watches every step and fails midway: no half version is ever visible under a numeric name
(local disk) or loadable (object store: saved_model.pb last), and the previous version stays
the one served.
"""
import errno
import os

import pytest

from components.atomic_pusher import executor as pusher
from core import publish as publisher
from models import segments

MODEL_FILES = {'saved_model.pb', 'fingerprint.pb', 'variables/variables.index',
               'variables/variables.data-00000-of-00001', 'assets/vocab.txt'}


def _model(folder, tag='v1'):
  for name in MODEL_FILES:
    path = os.path.join(folder, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
      f.write(f'{tag}:{name}')
  return str(folder)


# --- local disk: hidden staging folder, then one rename ------------------------------------

def _local_files(folder):
  return {os.path.relpath(os.path.join(root, n), folder)
          for root, _, names in os.walk(folder) for n in names}


class WatchedLocalOps(publisher.FileOps):
  """The real operations; after each one every numeric folder must hold the whole model.
  ``fail`` names an operation and the call number at which it raises (a full disk)."""

  def __init__(self, base, fail=None):
    self.base, self.fail, self.counts, self.checks = base, fail, {}, 0

  def _step(self, op):
    self.counts[op] = self.counts.get(op, 0) + 1
    if self.fail == (op, self.counts[op]):
      raise OSError(errno.ENOSPC, 'No space left on device')

  def _check(self):
    for v in os.listdir(self.base) if os.path.isdir(self.base) else []:
      if v.isdigit():
        assert _local_files(os.path.join(self.base, v)) == MODEL_FILES, v
    self.checks += 1

  def copy(self, src, dst):
    self._step('copy')
    super().copy(src, dst)
    self._check()

  def makedirs(self, path):
    self._step('makedirs')
    super().makedirs(path)
    self._check()

  def rename(self, src, dst):
    self._step('rename')
    super().rename(src, dst)
    self._check()


def _latest_whole(base):
  """The version TF Serving would serve: the highest numeric folder with saved_model.pb."""
  versions = [int(v) for v in os.listdir(base) if v.isdigit()
              and os.path.exists(os.path.join(base, v, 'saved_model.pb'))]
  return max(versions) if versions else None


def test_local_publication_is_never_half_visible(tmp_path):
  base = str(tmp_path / 'serving' / 'retrieval')
  ops = WatchedLocalOps(base)
  first = publisher.publish_dir(_model(tmp_path / 'm1'), base, now=1000, ops=ops)
  second = publisher.publish_dir(_model(tmp_path / 'm2', 'v2'), base, now=1000, ops=ops)
  assert (os.path.basename(first), os.path.basename(second)) == ('1000', '1001')
  assert ops.counts['rename'] == 2 and ops.checks > 10
  assert sorted(os.listdir(base)) == ['1000', '1001']  # no staging folder left
  with open(os.path.join(second, 'variables', 'variables.index')) as f:
    assert f.read() == 'v2:variables/variables.index'


@pytest.mark.parametrize('fail', [('copy', 1), ('copy', 3), ('copy', 5), ('makedirs', 3),
                                  ('rename', 1)])
def test_local_failure_midway_keeps_the_previous_version(tmp_path, fail):
  base = str(tmp_path / 'serving')
  kept = publisher.publish_dir(_model(tmp_path / 'm1'), base, now=1000)
  ops = WatchedLocalOps(base, fail=fail)
  with pytest.raises(OSError, match='No space left'):
    publisher.publish_dir(_model(tmp_path / 'm2', 'v2'), base, now=2000, ops=ops)
  assert os.listdir(base) == ['1000']  # no partial version, no staging folder
  assert _latest_whole(base) == 1000
  assert _local_files(kept) == MODEL_FILES


def test_the_pusher_and_the_segments_use_the_publisher(tmp_path):
  path = pusher.publish(_model(tmp_path / 'm1'), str(tmp_path / 'serving'))
  assert _local_files(path) == MODEL_FILES
  path = segments.publish(str(tmp_path / 'segments'),
                          {'segments.csv': 'a', 'segments.json': '{}'}, now=7)
  assert os.path.basename(path) == '7' and sorted(os.listdir(path)) == ['segments.csv',
                                                                         'segments.json']


# --- object store: no rename; staging, then saved_model.pb last ----------------------------

class ObjectStore(publisher.FileOps):
  """gs:// paths in memory, as GCS behaves: no folders and no rename; a "folder" exists as
  soon as one object below it does, and each object appears whole. Local paths are real.
  After every object write, TF Serving polls (``poll``)."""

  def __init__(self, base, fail_on=None):
    self.base, self.fail_on = base, fail_on
    self.objects, self.log, self.polls = {}, [], []

  @staticmethod
  def _gs(path):
    return str(path).startswith('gs://')

  def _put(self, key, data):
    if self.fail_on and self.fail_on(key):
      raise OSError(errno.EIO, f'upload of {key} failed')
    if key in self.objects:
      raise OSError(errno.EEXIST, key)
    self.objects[key] = data
    self.log.append(key)
    self.polls.append(self.poll())

  def poll(self):
    """What TF Serving does: aspire the highest numeric version; a load fails (and is
    retried) while saved_model.pb is missing; a load that succeeds must see the whole model."""
    versions = sorted(int(v) for v in self.listdir(self.base) if v.isdigit())
    if not versions:
      return None
    folder = f'{self.base}/{versions[-1]}'
    files = {k[len(folder) + 1:] for k in self.objects if k.startswith(folder + '/')}
    if 'saved_model.pb' not in files:
      return ('retry', versions[-1])
    assert files == MODEL_FILES, f'a half model was loadable: {sorted(files)}'
    return ('loaded', versions[-1])

  def makedirs(self, path):
    if not self._gs(path):
      super().makedirs(path)

  def listdir(self, path):
    if not self._gs(path):
      return super().listdir(path)
    prefix = path.rstrip('/') + '/'
    return sorted({k[len(prefix):].split('/')[0] for k in self.objects if k.startswith(prefix)})

  def exists(self, path):
    if not self._gs(path):
      return super().exists(path)
    path = path.rstrip('/')
    return path in self.objects or any(k.startswith(path + '/') for k in self.objects)

  def walk(self, top):
    if not self._gs(top):
      yield from super().walk(top)
      return
    top = top.rstrip('/')
    keys = [k[len(top) + 1:] for k in self.objects if k.startswith(top + '/')]

    def folder(rel):
      prefix = rel + '/' if rel else ''
      below = [k[len(prefix):] for k in keys if k.startswith(prefix)]
      dirs = sorted({b.split('/')[0] for b in below if '/' in b})
      yield (top + ('/' + rel if rel else ''), dirs, sorted(b for b in below if '/' not in b))
      for d in dirs:
        yield from folder(prefix + d)

    yield from folder('')

  def copy(self, src, dst):
    assert self._gs(dst)
    if self._gs(src):
      data = self.objects[src]
    else:
      with open(src, 'rb') as f:
        data = f.read()
    self._put(dst, data)

  def write(self, path, text):
    self._put(path, text.encode())

  def rename(self, src, dst):
    raise AssertionError('an object store has no folder rename')

  def rmtree(self, path):
    for key in [k for k in self.objects if k.startswith(path.rstrip('/') + '/')]:
      del self.objects[key]


BASE = 'gs://bucket/serving/retrieval'


def test_object_store_order_saved_model_pb_last(tmp_path):
  store = ObjectStore(BASE)
  first = publisher.publish_dir(_model(tmp_path / 'm1'), BASE, now=1000, ops=store)
  assert first == BASE + '/1000'
  log = list(store.log)
  staged = [k for k in log if '/.incoming-1000-' in k]
  published = [k for k in log if k.startswith(BASE + '/1000/')]
  assert len(staged) == len(published) == len(MODEL_FILES) and len(log) == 2 * len(MODEL_FILES)
  assert log.index(published[0]) > log.index(staged[-1])  # all staged before any is visible
  assert published[-1] == BASE + '/1000/saved_model.pb'
  assert staged[-1].endswith('/saved_model.pb')
  assert store.listdir(BASE) == ['1000']  # staging removed
  # Every poll before saved_model.pb saw a version that fails to load (and is retried).
  assert store.polls[-1] == ('loaded', 1000)
  assert set(store.polls[len(staged):-1]) == {('retry', 1000)}
  second = publisher.publish_dir(_model(tmp_path / 'm2', 'v2'), BASE, now=1000, ops=store)
  assert second == BASE + '/1001' and store.poll() == ('loaded', 1001)
  assert store.objects[BASE + '/1001/assets/vocab.txt'] == b'v2:assets/vocab.txt'


@pytest.mark.parametrize('fails', ['staging', 'version'])
def test_object_store_failure_midway_keeps_the_previous_version(tmp_path, fails):
  store = ObjectStore(BASE)
  publisher.publish_dir(_model(tmp_path / 'm1'), BASE, now=1000, ops=store)
  part = '/.incoming-' if fails == 'staging' else '/2000/'
  store.fail_on = lambda key: part in key and key.endswith('variables.data-00000-of-00001')
  with pytest.raises(OSError, match='upload of .* failed'):
    publisher.publish_dir(_model(tmp_path / 'm2', 'v2'), BASE, now=2000, ops=store)
  assert store.listdir(BASE) == ['1000']  # the partial version and the staging are removed
  assert store.poll() == ('loaded', 1000)
  # No poll during the failed publication could load a half model (poll() asserts it), and
  # none loaded the new version.
  assert ('loaded', 2000) not in store.polls


def test_object_store_errors_are_oserrors(tmp_path):
  import tensorflow as tf

  class Broken(ObjectStore):
    def copy(self, src, dst):
      raise tf.errors.PermissionDeniedError(None, None, '403 on gs://bucket')

  with pytest.raises(OSError, match='403 on gs://bucket'):
    publisher.publish_dir(_model(tmp_path / 'm1'), BASE, ops=Broken(BASE))


def test_segments_on_an_object_store_write_segments_json_last(monkeypatch):
  base = 'gs://bucket/serving/segments'
  store = ObjectStore(base)
  store.poll = lambda: None
  monkeypatch.setattr(publisher, 'FileOps', lambda: store)
  path = segments.publish(base, {'segments.json': '{"num_segments": 2}',
                                 'segments.csv': 'user_id,segment\nu1,0\n'}, now=5)
  assert path == base + '/5'
  published = [k for k in store.log if k.startswith(base + '/5/')]
  assert published == [base + '/5/segments.csv', base + '/5/segments.json']
  assert store.listdir(base) == ['5']
