"""One publisher for everything served from a versioned folder: models and user segments.

A publication is a new ``<base>/<version>/`` folder, version = Unix time raised above every
numeric version already there, so the newest publication is the highest number even with
clock skew. Readers (TF Serving's file-system source, the ad tools reading segments) pick the
highest numeric folder. Every file operation goes through TFX's ``fileio`` (tf.io.gfile), so
``base`` may be a local folder or a ``gs://`` / ``s3://`` URL, and through a small
file-operations layer (``FileOps``) that tests replace with one that fails midway.

What TF Serving does (tensorflow/serving, read at commit 9d981c5c, 2026-07-30):

- ``tensorflow_serving/sources/storage_path/file_system_storage_path_source.cc``: each poll
  (``--file_system_poll_wait_seconds``, default 1 s) lists the base path; a child is a version
  only if its whole name parses as an integer (``ParseVersionNumber``, absl::SimpleAtoi), so a
  ``.incoming-...`` folder is never seen. On GCS ``GetChildren`` returns every object below the
  base path and the source keeps the part before the first ``/``: a version folder exists as
  soon as its first object does. The "latest" policy aspires the highest version.
- ``tensorflow_serving/core/availability_preserving_policy.h``: a newly aspired version is
  loaded while the old one keeps serving; the old one is unloaded only when it is not the only
  loaded version, so a new version that fails to load leaves the previous one served.
- ``tensorflow_serving/core/loader_harness.cc`` with ``util/retrier.cc`` and the server flags
  in ``model_servers/main.cc``: a failed load is retried ``--max_num_load_retries`` times
  (default 5) every ``--load_retry_interval_micros`` (default 1 minute), on any error, until
  the version is no longer aspired. TensorFlow's SavedModel loader reads ``saved_model.pb``
  first and fails with NotFound while it is missing.

The guarantees, by store:

- **Local disk (and any path without a ``scheme://``): atomic.** The files are written to a
  hidden ``.incoming-<version>-<random>`` folder beside the versions, fsynced, and renamed
  to the numeric name in one ``rename(2)``: a reader sees the whole version or none. A failure
  removes the hidden folder; nothing numeric is left behind.
- **Object stores (gs://, s3://, any URL): saved_model.pb last, loads retried.** They have no
  folder rename (a "rename" is a copy of object after object), so the files are first copied
  to the hidden staging folder (as slow as the upload may be; TF Serving does not see it),
  then copied store-side into the numeric folder with every file except the ``last`` ones
  (``saved_model.pb`` for models) first, the ``last`` ones at the end, then the staging folder
  is deleted. Each object appears whole (GCS and S3 writes are atomic per object). A poll that
  sees the version before ``saved_model.pb`` exists fails to load it and retries a minute
  later, when every file is there: no half model is loaded. The window is the store-side copy
  of one model, far inside the default 5 retries x 1 minute; a server run with fewer retries
  or a copy slower than that leaves the version unloaded (the previous one stays served)
  until the server restarts. A failure midway removes the partial numeric folder (best
  effort; until then it has no ``saved_model.pb`` and does not load) and the staging folder.
- Segments follow the same rules with ``segments.json`` as the last file: on an object store
  a reader should take the highest version that has ``segments.json``.

Errors of any store are raised as OSError. (``s3://`` through tf.io.gfile needs
tensorflow-io's file systems; ``gs://`` is built into TensorFlow.)
"""
import os
import re
import secrets
import time
from typing import Callable, Dict, Iterable, Optional, Sequence

import tensorflow as tf
from absl import logging
from tfx.dsl.io import fileio

STAGING_PREFIX = '.incoming-'
SAVED_MODEL_PB = 'saved_model.pb'
_URL = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*://')


def has_atomic_rename(path: str) -> bool:
  """True for local paths (no ``scheme://``): a folder rename there is one rename(2)."""
  return not _URL.match(path)


class FileOps:
  """The file operations the publisher uses, through TFX's fileio (tf.io.gfile)."""

  def makedirs(self, path: str) -> None:
    fileio.makedirs(path)

  def listdir(self, path: str) -> Sequence[str]:
    return [c.rstrip('/') for c in fileio.listdir(path)] if fileio.isdir(path) else []

  def exists(self, path: str) -> bool:
    return fileio.exists(path)

  def walk(self, top: str):
    return fileio.walk(top)

  def copy(self, src: str, dst: str) -> None:
    fileio.copy(src, dst, overwrite=False)

  def write(self, path: str, text: str) -> None:
    with fileio.open(path, 'w') as f:
      f.write(text)

  def rename(self, src: str, dst: str) -> None:
    fileio.rename(src, dst, overwrite=False)

  def rmtree(self, path: str) -> None:
    if fileio.exists(path):
      fileio.rmtree(path)

  def sync(self, folder: str) -> None:
    """Makes a local folder's files durable before the rename (no-op elsewhere)."""
    if _URL.match(folder):
      return
    for root, _, names in os.walk(folder):
      for name in names:
        fd = os.open(os.path.join(root, name), os.O_RDONLY)
        try:
          os.fsync(fd)
        finally:
          os.close(fd)
    os.chmod(folder, 0o755)  # readers may run as another user


def latest_version(base: str, marker: str = SAVED_MODEL_PB,
                   ops: Optional[FileOps] = None) -> Optional[str]:
  """The newest complete version folder under ``base`` (holding ``marker``, the file a
  publication writes last), as TF Serving picks it; None when there is none."""
  ops = ops or FileOps()
  versions = [v for v in ops.listdir(base)
              if v.isdigit() and ops.exists(os.path.join(base, v, marker))]
  return os.path.join(base, max(versions, key=int)) if versions else None


def next_version(base: str, now: Optional[float] = None, ops: Optional[FileOps] = None) -> int:
  """A Unix-time version greater than every numeric version already in ``base``."""
  ops = ops or FileOps()
  existing = [int(v) for v in ops.listdir(base) if v.isdigit()]
  return max([int(time.time() if now is None else now)] + [v + 1 for v in existing])


def _files(ops: FileOps, top: str):
  """(relative folders, relative files) below ``top``."""
  folders, files = [], []
  top = top.rstrip('/')
  for root, dirs, names in ops.walk(top):
    root = str(root).rstrip('/')
    assert root == top or root.startswith(top + '/'), (root, top)
    rel = root[len(top) + 1:]
    folders += [os.path.join(rel, d.rstrip('/')) for d in dirs]
    files += [os.path.join(rel, n) for n in names]
  return sorted(folders), sorted(files)


def _copy_tree(ops: FileOps, src: str, dst: str, last: Iterable[str] = ()) -> None:
  """Copies src into dst (created); files named in ``last`` (relative paths) go last."""
  folders, files = _files(ops, src)
  ops.makedirs(dst)
  for folder in folders:
    ops.makedirs(os.path.join(dst, folder))
  last = set(last)
  for rel in [f for f in files if f not in last] + [f for f in files if f in last]:
    ops.copy(os.path.join(src, rel), os.path.join(dst, rel))


def _publish(base: str, stage: Callable[[FileOps, str], None], last: Iterable[str],
             now: Optional[float], ops: Optional[FileOps]) -> str:
  ops = ops or FileOps()
  try:
    ops.makedirs(base)
    version = next_version(base, now, ops)
    staging = os.path.join(base, f'{STAGING_PREFIX}{version}-{secrets.token_hex(4)}')
    target = None  # the numeric folder being filled on an object store
    try:
      stage(ops, staging)
      if has_atomic_rename(base):
        ops.sync(staging)
        while True:
          final = os.path.join(base, str(version))
          if not ops.exists(final):
            try:
              ops.rename(staging, final)
              return final
            except (OSError, tf.errors.OpError):
              if not ops.exists(final):
                raise
          version += 1  # taken, possibly by a concurrent publisher
      version = next_version(base, version, ops)  # another publisher may have come meanwhile
      target = os.path.join(base, str(version))
      _copy_tree(ops, staging, target, last)
    except BaseException:
      for partial in (target, staging):
        if partial is not None:
          try:
            ops.rmtree(partial)
          except Exception:  # pylint: disable=broad-except; the original error matters more
            logging.warning('Could not remove %s', partial, exc_info=True)
      raise
    try:
      ops.rmtree(staging)
    except Exception:  # pylint: disable=broad-except; the version is published already
      logging.warning('Published %s but could not remove %s', target, staging, exc_info=True)
    return target
  except tf.errors.OpError as e:
    raise OSError(f'{e.message} ({type(e).__name__})') from e


def publish_dir(source: str, base: str, *, last: Iterable[str] = (SAVED_MODEL_PB,),
                now: Optional[float] = None, ops: Optional[FileOps] = None) -> str:
  """Publishes a copy of the folder ``source`` as ``base/<new version>``; returns that path."""
  return _publish(base, lambda o, staging: _copy_tree(o, source, staging, last), last, now,
                  ops)


def publish_files(files: Dict[str, str], base: str, *, last: Iterable[str] = (),
                  now: Optional[float] = None, ops: Optional[FileOps] = None) -> str:
  """Publishes ``files`` (name -> text) as ``base/<new version>``; returns that path."""
  last = set(last)

  def stage(o: FileOps, staging: str) -> None:
    o.makedirs(staging)
    for name in [n for n in files if n not in last] + [n for n in files if n in last]:
      o.write(os.path.join(staging, name), files[name])

  return _publish(base, stage, last, now, ops)
