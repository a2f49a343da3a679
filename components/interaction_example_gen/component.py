"""InteractionExampleGen: a FileBasedExampleGen running the recommender's ingestion executor.

It keeps FileBasedExampleGen's span resolution, input fingerprints and caching; its driver
(driver.py) also accepts item and user tables shared by every span.
"""
from typing import Any, Dict, Optional

from google.protobuf import any_pb2
from google.protobuf import struct_pb2
from tfx.components import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.proto import range_config_pb2

from components.interaction_example_gen import driver, executor
from core import features as F
from transforms.ingestion import DEFAULT_OPTIONS


def input_config(train: str, eval_: str, items: str, users: Optional[str]) -> example_gen_pb2.Input:
  """Input splits, as patterns relative to the input base.

  Pass the same pattern for ``train`` and ``eval`` to split the interactions by hash; pass
  ``users=None`` when there is no users.csv (users then come from the interactions).
  """
  return example_gen_pb2.Input(splits=[
      example_gen_pb2.Input.Split(name=F.TRAIN, pattern=train),
      example_gen_pb2.Input.Split(name=F.EVAL, pattern=eval_),
      example_gen_pb2.Input.Split(name=F.ITEMS, pattern=items),
      example_gen_pb2.Input.Split(name=F.USERS, pattern=users or train),
  ])


def span_range(span: Optional[int]) -> Optional[range_config_pb2.RangeConfig]:
  """ExampleGen's RangeConfig reading exactly ``span`` (None: the latest span)."""
  if span is None:
    return None
  return range_config_pb2.RangeConfig(
      static_range=range_config_pb2.StaticRange(start_span_number=span, end_span_number=span))


class _SpanAwareExampleGen(FileBasedExampleGen):
  DRIVER_CLASS = driver.SharedTablesDriver


def InteractionExampleGen(input_base: str, config: example_gen_pb2.Input,
                          options: Optional[Dict[str, Any]] = None,
                          span: Optional[int] = None) -> FileBasedExampleGen:
  """The ExampleGen node; ``options`` override transforms.ingestion.DEFAULT_OPTIONS.

  ``span`` reads that span of ``{SPAN}`` patterns; None reads the latest one.
  """
  struct = struct_pb2.Struct()
  struct.update(dict(DEFAULT_OPTIONS, **(options or {})))
  packed = any_pb2.Any()
  packed.Pack(struct)
  return _SpanAwareExampleGen(
      input_base=input_base,
      input_config=config,
      range_config=span_range(span),
      custom_config=example_gen_pb2.CustomConfig(custom_config=packed),
      custom_executor_spec=executor_spec.BeamExecutorSpec(executor.Executor))
