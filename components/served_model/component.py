"""ServedModel component: what production serves now of one kind, as a standard Model.

Execution parameter: ``served_dir``, the kind's folder under the serving directory
(``<serving_dir>/retrieval``, ``<serving_dir>/ranking``). Outputs, Model artifacts laid out
like a Trainer's, with the custom properties ``served_version`` and ``served_path``:
``model``, a copy of the highest served version (warm-start state included), which the
trainers start from; ``gate_model``, what the evaluators compare the candidates with: the
candidate kept inside a served refit (it never learnt the eval rows the refit did), else the
same version. When nothing is served yet both are empty (``served_version`` '') and the
trainers start fresh and the evaluators judge on their absolute thresholds only
(core/served.py).

Caching: the output depends on the serving directory, which no input artifact or fixed
parameter shows. In local runs the driver reads the served version before the cache lookup
and adds it as the ``served_version`` execution parameter, so the step is cached exactly
while the served version stays the same. Vertex AI runs no TFX driver for it:
kubeflow_v2_runner.py compiles this step with caching off (docs/kubeflow.md).
"""
from tfx import types
from tfx.dsl.components.base import base_component
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter
from tfx.types.component_spec import ExecutionParameter

from components.served_model import driver
from components.served_model import executor


class ServedModelSpec(types.ComponentSpec):
  PARAMETERS = {
      'served_dir': ExecutionParameter(type=str),
      # Set by the driver at run time (never at construction): the served version, or ''.
      'served_version': ExecutionParameter(type=str, optional=True),
  }
  INPUTS = {}
  OUTPUTS = {
      'model': ChannelParameter(type=standard_artifacts.Model),
      'gate_model': ChannelParameter(type=standard_artifacts.Model),
  }


class ServedModel(base_component.BaseComponent):
  """The latest pushed version under ``served_dir``, copied into a Model artifact."""

  SPEC_CLASS = ServedModelSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)
  DRIVER_CLASS = driver.Driver

  def __init__(self, served_dir: str):
    if not served_dir:
      raise ValueError('served_dir is required')
    super().__init__(spec=ServedModelSpec(
        served_dir=served_dir, model=types.Channel(type=standard_artifacts.Model),
        gate_model=types.Channel(type=standard_artifacts.Model)))
