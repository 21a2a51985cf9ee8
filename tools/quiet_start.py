"""Starts TensorFlow, when a program first imports it, with fd 2 silenced.

Imported by every tfvae program (through `tools/__init__.py`) before anything
imports TensorFlow. TensorFlow's native libraries print CUDA probes and CPU
notes to file descriptor 2 before any log level applies, burying the one-line
messages the programs print; later native messages below ERROR... and the
failed CUDA probe on machines without a GPU are hidden by
TF_CPP_MIN_LOG_LEVEL=3 unless the user set another level. Python errors still
reach the user. Set TF_CPP_MIN_LOG_LEVEL=0 to see everything.

Importing this module imports nothing heavy: it hooks the first
`import tensorflow`, so a program's `--help`, which never imports TensorFlow,
stays fast.
"""
import contextlib
import importlib.abc
import importlib.util
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def _stderr_to_devnull():
  sys.stderr.flush()
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(devnull, 2)
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


class _QuietLoader(importlib.abc.Loader):
  """Runs TensorFlow's own loader, and its start-up, with fd 2 silenced."""

  def __init__(self, loader):
    self._loader = loader

  def create_module(self, spec):
    return self._loader.create_module(spec)

  def exec_module(self, module):
    with _stderr_to_devnull():
      self._loader.exec_module(module)
      import tensorflow_probability  # pylint: disable=g-import-not-at-top,unused-import
      # Probes CUDA now, while its failure on GPU-less machines goes unseen;
      # listing physical devices leaves logical ones configurable.
      module.config.list_physical_devices()
    # From here on the module looks as if imported without this hook.
    module.__loader__ = module.__spec__.loader = self._loader


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
  """Hands the first `import tensorflow` to `_QuietLoader`, then steps aside."""

  def find_spec(self, fullname, path=None, target=None):
    del path, target  # The real finders below search for it.
    if fullname != "tensorflow":
      return None
    sys.meta_path.remove(self)
    spec = importlib.util.find_spec(fullname)
    if spec is not None and spec.loader is not None:
      spec.loader = _QuietLoader(spec.loader)
    return spec


if (os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "0"
    and "tensorflow" not in sys.modules):
  sys.meta_path.insert(0, _QuietTensorFlowFinder())
