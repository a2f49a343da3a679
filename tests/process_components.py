"""Trivial TFX components for tests/test_component_processes.py.

They live in a module of their own because a component's own process imports its executor by
module path: the decorator registers the executor class in this module.
"""
import json
import os
import signal

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Model

RECORD = 'record.json'


def read_record(uri: str):
  with open(os.path.join(uri, RECORD)) as f:
    return json.load(f)


def _write_record(uri: str, record) -> None:
  os.makedirs(uri, exist_ok=True)
  with open(os.path.join(uri, RECORD), 'w') as f:
    json.dump(record, f)


@component
def Produce(output: OutputArtifact[Model]):
  """Records the process it ran in."""
  _write_record(output.uri, {'pid': os.getpid()})


@component
def Consume(source: InputArtifact[Model], output: OutputArtifact[Model]):
  """Records the process it ran in and what its input recorded."""
  _write_record(output.uri, {'pid': os.getpid(), 'seen': read_record(source.uri)})


@component
def Fail(how: Parameter[str], output: OutputArtifact[Model]):
  """Fails as asked: 'raise' an exception, or 'kill' its own process."""
  if how == 'kill':
    os.kill(os.getpid(), signal.SIGKILL)
  raise ValueError('planted failure')
