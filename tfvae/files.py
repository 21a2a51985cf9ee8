"""Writing files so that nothing on disk is ever half-written."""
import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_open(path, mode="wb"):
  """Opens a temporary file beside `path`; renames it to `path` on success.

  The file gets the permissions a plain `open()` would give (mkstemp makes
  it private), and on any error it is removed and `path` is left untouched.

  Args:
    path: The final file name; its directory is created if missing.
    mode: "wb" or "w".

  Yields:
    The open file object.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  suffix = os.path.splitext(path)[1]
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
  try:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    with os.fdopen(fd, mode) as f:
      yield f
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
