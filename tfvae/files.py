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


def unwritable_reason(path, directory=False):
  """Why `path` could not be written, or None if it can be, asking first.

  Programs call this before any work so that a bad output path is refused
  before anything is created. `path` need not exist: its missing directories
  are created when it is written, so the nearest existing one above it must
  be a directory this process may write in (`os.access`, which also answers
  for read-only file systems, where even root may not write).

  Args:
    path: A file to create or replace, or with `directory` a directory to
      create or write in.
    directory: Whether `path` names a directory.

  Returns:
    None, or a reason naming the path at fault ("/x is not a directory").
  """
  if not path:
    return "empty path"
  path = os.path.abspath(path)
  if os.path.exists(path):
    if directory and not os.path.isdir(path):
      return f"{path} is not a directory"
    if not directory and os.path.isdir(path):
      return f"{path} is a directory"
  place = path if directory and os.path.isdir(path) else os.path.dirname(path)
  while not os.path.exists(place):
    place = os.path.dirname(place)
  if not os.path.isdir(place):
    return f"{place} is not a directory"
  if not os.access(place, os.W_OK | os.X_OK):
    return f"cannot write in {place} (read-only or permission denied)"
  return None
