"""What a run did, read back from ML Metadata: progress lines, metrics.json and the summary."""
import contextlib
import dataclasses
import logging
import os
import sys


@dataclasses.dataclass(frozen=True)
class OutputPaths:
  """The layout of an output folder."""
  root: str

  @property
  def pipeline_root(self) -> str:
    return os.path.join(self.root, 'pipeline')

  @property
  def metadata_path(self) -> str:
    return os.path.join(self.root, 'metadata.sqlite')

  @property
  def serving_dir(self) -> str:
    return os.path.join(self.root, 'serving')

  @property
  def metrics_path(self) -> str:
    return os.path.join(self.root, 'metrics.json')


@contextlib.contextmanager
def progress_printer():
  yield


def summarize(paths, started, error):
  return {'error': str(error) if error else None}


def format_summary(summary):
  return str(summary)
