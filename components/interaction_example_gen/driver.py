"""ExampleGen driver that lets the catalogue and users tables be shared by every span.

FileBasedExampleGen's driver resolves ``{SPAN}`` only when every split pattern has it. The
recommender's spans keep their interactions in ``span-{SPAN}/`` while ``items.csv`` and
``users.csv`` may sit either in the span folder (that copy wins) or once beside the span
folders. This driver resolves the span from the splits that have ``{SPAN}`` and adds the
fingerprint of the shared files, so a change to a shared table still invalidates the cache.

Only LocalDagRunner (and other runners that run TFX drivers in-process) use this class; the
Kubeflow V2 runner has its own FileBasedExampleGen driver, which needs ``{SPAN}`` in every
pattern (see kubeflow_v2_runner.py).
"""
import os
from typing import Iterable, Optional, Tuple

from tfx.components.example_gen import driver as tfx_driver
from tfx.components.example_gen import input_processor
from tfx.proto import example_gen_pb2
from tfx.proto import range_config_pb2
from tfx.utils import io_utils

SPAN_SPEC = '{SPAN}'


class SharedTablesInputProcessor(input_processor.FileBasedInputProcessor):
  """FileBasedInputProcessor for spanned splits plus span-independent ones."""

  def __init__(self, input_base_uri: str, splits: Iterable[example_gen_pb2.Input.Split],
               range_config: Optional[range_config_pb2.RangeConfig] = None):
    splits = list(splits)
    spanned = [s for s in splits if SPAN_SPEC in s.pattern]
    self._shared = [s for s in splits if SPAN_SPEC not in s.pattern] if spanned else []
    super().__init__(input_base_uri, spanned or splits, range_config)
    self._base = input_base_uri

  def resolve_span_and_version(self) -> Tuple[int, Optional[int]]:
    span, version = super().resolve_span_and_version()
    if self._shared:
      self._fingerprint = '\n'.join(
          [self._fingerprint] +
          [io_utils.generate_fingerprint(s.name, os.path.join(self._base, s.pattern))
           for s in self._shared])
    return span, version

  def get_pattern_for_span_version(self, pattern: str, span: int,
                                   version: Optional[int]) -> str:
    if self._shared and SPAN_SPEC not in pattern:
      return pattern
    return super().get_pattern_for_span_version(pattern, span, version)


class SharedTablesDriver(tfx_driver.FileBasedDriver):
  """FileBasedDriver with SharedTablesInputProcessor."""

  def get_input_processor(self, splits, range_config=None, input_base_uri=None):
    assert input_base_uri
    return SharedTablesInputProcessor(input_base_uri, splits, range_config)
