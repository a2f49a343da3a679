"""InteractionExampleGen: a FileBasedExampleGen running the recommender's ingestion executor.

It keeps FileBasedExampleGen's driver, so ``{SPAN}`` patterns, input fingerprints and caching
work as for any ExampleGen.
"""
from typing import Any, Dict, Optional

from google.protobuf import any_pb2
from google.protobuf import struct_pb2
from tfx.components import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2

from components.interaction_example_gen import executor
from pipeline import features as F


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


def InteractionExampleGen(input_base: str, config: example_gen_pb2.Input,
                          options: Optional[Dict[str, Any]] = None) -> FileBasedExampleGen:
  """The ExampleGen node; ``options`` override executor.DEFAULT_OPTIONS."""
  struct = struct_pb2.Struct()
  struct.update(dict(executor.DEFAULT_OPTIONS, **(options or {})))
  packed = any_pb2.Any()
  packed.Pack(struct)
  return FileBasedExampleGen(
      input_base=input_base,
      input_config=config,
      custom_config=example_gen_pb2.CustomConfig(custom_config=packed),
      custom_executor_spec=executor_spec.BeamExecutorSpec(executor.Executor))
