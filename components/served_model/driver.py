"""ServedModel driver: the served version, read before the cache lookup (local runs).

TFX's launcher runs a component's driver before it looks for a cached execution and keys the
cache on the execution parameters the driver returns. Adding the served version there means
a run reuses the previous snapshot only while production serves the same version, and the
executor copies that same version (a push between the two steps cannot split them).
"""
from tfx.dsl.components.base import base_driver
from tfx.orchestration import metadata
from tfx.orchestration.portable import base_driver as ir_base_driver
from tfx.orchestration.portable import data_types
from tfx.proto.orchestration import driver_output_pb2

from core import served


class Driver(base_driver.BaseDriver, ir_base_driver.BaseDriver):
  """Adds ``served_version`` (the version, or '' when nothing is served)."""

  def __init__(self, metadata_handle: metadata.Metadata):
    base_driver.BaseDriver.__init__(self, metadata_handle)
    ir_base_driver.BaseDriver.__init__(self, metadata_handle)

  def run(self, execution_info: data_types.ExecutionInfo) -> driver_output_pb2.DriverOutput:
    version = served.latest_served(execution_info.exec_properties['served_dir']) or ''
    result = driver_output_pb2.DriverOutput()
    result.exec_properties[served.SERVED_VERSION].string_value = version
    return result
