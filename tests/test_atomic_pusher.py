"""The atomic push: a failure half-way leaves the serving folder exactly as it was."""
import os

import pytest
from tfx.utils import io_utils

from components.atomic_pusher import executor as ex


def _model(folder):
  os.makedirs(os.path.join(folder, 'variables'))
  for name in ('saved_model.pb', 'variables/variables.index', 'variables/data'):
    with open(os.path.join(folder, name), 'w') as f:
      f.write(name)
  return str(folder)


def _listing(base):
  return sorted(os.listdir(base)) if os.path.isdir(base) else []


def test_publish_creates_increasing_versions(tmp_path):
  model = _model(tmp_path / 'model')
  first = ex.publish(model, str(tmp_path / 'serving'))
  second = ex.publish(model, str(tmp_path / 'serving'))
  assert int(os.path.basename(second)) > int(os.path.basename(first))
  assert os.path.exists(os.path.join(second, 'variables', 'data'))
  assert _listing(tmp_path / 'serving') == sorted([os.path.basename(first),
                                                    os.path.basename(second)])


def test_failed_copy_leaves_no_partial_version(tmp_path, monkeypatch):
  model = _model(tmp_path / 'model')
  base = str(tmp_path / 'serving')
  kept = ex.publish(model, base)
  before = _listing(base)
  real_copy = io_utils.fileio.copy
  calls = []

  def disk_full(src, dst, overwrite=False):
    calls.append(src)
    if len(calls) == 2:  # the second file of the copy fails
      raise OSError(28, 'No space left on device')
    return real_copy(src, dst, overwrite)

  monkeypatch.setattr(io_utils.fileio, 'copy', disk_full)
  with pytest.raises(OSError, match='No space left'):
    ex.publish(model, base)
  assert _listing(base) == before  # no new version, no temporary folder left behind
  assert os.path.exists(os.path.join(kept, 'saved_model.pb'))
