"""Writing files so that nothing on disk is ever half-written."""
import contextlib
import os
import re
import tempfile


@contextlib.contextmanager
def atomic_open(path, mode="wb", owner=None):
  """Opens a temporary file beside `path`; renames it to `path` on success.

  The file gets the permissions a plain `open()` would give (mkstemp makes
  it private), and on any error it is removed and `path` is left untouched.

  Args:
    path: The final file name; its directory is created if missing.
    mode: "wb" or "w".
    owner: None for a `.tmp-XXXXXXXX[.ext]` temporary, or a program's name
      for `.tmp-OWNER-PID-XXXXXXXX[.ext]`, which the program's next start
      can tell from a live writer's (`remove_dead_temporaries`).

  Yields:
    The open file object.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  suffix = os.path.splitext(path)[1]
  prefix = f".tmp-{owner}-{os.getpid()}-" if owner else ".tmp-"
  fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
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


def _alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # Someone else's process.
  return True


def remove_dead_temporaries(directory, owner):
  """Removes the temporaries of `owner`'s writes whose process has died.

  Only files named `.tmp-OWNER-PID-XXXXXXXX[.ext]` (what
  `atomic_open(..., owner=OWNER)` writes) are touched, and only when no
  process PID is alive; a live writer's temporary is left to it. A reused
  pid only keeps a leftover one more time.

  Args:
    directory: Where the temporaries would be; a missing one holds none.
    owner: The name the program passes to `atomic_open`.

  Returns:
    The paths removed.
  """
  pattern = re.compile(
      rf"^\.tmp-{re.escape(owner)}-([0-9]+)-[a-z0-9_]{{8}}(\.[a-z0-9]+)?$")
  try:
    names = sorted(os.listdir(directory))
  except (FileNotFoundError, NotADirectoryError):
    return []
  removed = []
  for name in names:
    match = pattern.match(name)
    path = os.path.join(directory, name)
    if (not match or _alive(int(match.group(1))) or os.path.islink(path)
        or not os.path.isfile(path)):
      continue
    try:
      os.unlink(path)
    except FileNotFoundError:
      continue
    removed.append(path)
  return removed


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
