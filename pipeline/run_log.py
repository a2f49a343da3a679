"""The run log: every process of a run writes its log records to one file, OUT/run.log.

Kept apart from run_summary (which imports the whole pipeline) so that a component's own
process (pipeline/component_processes.py) sets up its logging without that import.
"""
import contextlib
import logging
import os
import threading


class _HandlerKeeper(threading.Thread):
  """Puts a handler back on the root logger whenever a library replaced the root's handlers."""

  def __init__(self, handler: logging.Handler, interval: float = 2.0):
    super().__init__(daemon=True)
    self.handler, self.interval = handler, interval
    self.done = threading.Event()

  def run(self) -> None:
    while not self.done.wait(self.interval):
      root = logging.getLogger()
      if self.handler not in root.handlers:
        root.addHandler(self.handler)


LOG_FORMAT = '%(asctime)s %(levelname)s %(name)s %(message)s'


@contextlib.contextmanager
def log_to_file(log_path: str, append: bool = False):
  """Every log record of this process goes to ``log_path``, in order; yields the handler.

  Two things inside a run would otherwise cut absl's INFO lines (component starts, evaluator
  reasons, pushes) out of the file. absl's verbosity flag keeps its default (WARNING) until
  someone sets it, and TensorFlow's SavedModel export reads it and sets it back, which pins
  the 'absl' logger at WARNING from the Transform's first export on; so the verbosity is set
  to INFO for the run. And a library may replace the root logger's handlers; a thread puts the
  file handler back every 2 s. Both are restored afterwards.

  The file is written in append mode, truncated first unless ``append``: the processes of one
  run (the runner and, with component processes, each component's) write the same run.log,
  and each write lands at the end of the file instead of over another process's lines.
  """
  from absl import logging as absl_logging
  root = logging.getLogger()
  os.makedirs(os.path.dirname(log_path) or '.', exist_ok=True)
  if not append:
    open(log_path, 'w').close()
  file_handler = logging.FileHandler(log_path, mode='a')
  file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
  saved = (root.level, list(root.handlers), absl_logging.get_verbosity(),
           absl_logging.get_absl_logger().level)
  root.handlers = [file_handler]
  root.setLevel(logging.INFO)
  absl_logging.set_verbosity(absl_logging.INFO)
  keeper = _HandlerKeeper(file_handler)
  keeper.start()
  try:
    yield file_handler
  finally:
    keeper.done.set()
    keeper.join()
    root.handlers = saved[1]
    root.setLevel(saved[0])
    absl_logging.set_verbosity(saved[2])
    absl_logging.get_absl_logger().setLevel(saved[3])
    file_handler.close()
