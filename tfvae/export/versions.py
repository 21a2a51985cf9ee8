"""TF Serving's versioned layout: finding, numbering and publishing versions.

An export directory holds one sub-directory per version, named by a positive
integer (`EXPORT_DIR/<version>/saved_model.pb` + `variables/`), which is the
layout TF Serving watches. A version is written under a temporary name in the
same parent, loaded back and verified, and only then renamed into place, so a
failed export never leaves a numeric directory behind and an existing version
is never overwritten.

Next to the warmup file, `assets.extra/` holds `METADATA_FILE`, the export's
provenance (run, checkpoint, step, part, shapes, model kind); TF Serving
ignores it.
"""
import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile

from absl import logging
import tensorflow as tf

from tfvae import errors
from tfvae.export import warmup

SERVING_TAG = "serve"
# Provenance of an export (run, checkpoint, step, part, shapes), next to the
# warmup file; TF Serving ignores it.
METADATA_FILE = "tfvae_export.json"

_VERSION_RE = re.compile(r"^[0-9]+$")


def existing_versions(export_dir):
  """Returns the sorted integer versions already under `export_dir`."""
  if not tf.io.gfile.isdir(export_dir):
    return []
  return sorted(
      int(name) for name in tf.io.gfile.listdir(export_dir)
      if _VERSION_RE.match(name.rstrip("/")) and int(name.rstrip("/")) > 0)


def next_version(export_dir):
  """Returns one above the highest version under `export_dir` (1 if none)."""
  versions = existing_versions(export_dir)
  return versions[-1] + 1 if versions else 1


# The temporary name a version is written under before it is renamed.
_TMP_PREFIX = ".tmp-"
_LEFTOVER_RE = re.compile(r"^\.tmp-[0-9]+-")


@contextlib.contextmanager
def _exclusive(export_dir):
  """Holds an exclusive lock on the export directory itself (`flock` on the
  directory, so no lock file appears among the versions) while a version is
  written. A publisher holding it knows any `.tmp-VERSION-*` it finds was
  left by an export that died; the OS drops the lock with its process."""
  fd = os.open(export_dir, os.O_RDONLY)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield
  finally:
    os.close(fd)


def _remove_leftovers(export_dir):
  """Removes the `.tmp-VERSION-*` directories of exports that died."""
  for name in sorted(os.listdir(export_dir)):
    path = os.path.join(export_dir, name)
    if _LEFTOVER_RE.match(name) and os.path.isdir(path) and \
       not os.path.islink(path):
      logging.info("Removing %s, left by an export that did not finish.",
                   path)
      shutil.rmtree(path, ignore_errors=True)


def publish(module, export_dir, version=None, signatures=None, verify=None,
            options=None):
  """Saves `module` as `export_dir/<version>/`, atomically.

  Args:
    module: The `tf.Module` to save (its tf.functions and variables).
    export_dir: Parent directory of the versions; created if missing.
    version: Positive integer version, or None for `next_version(export_dir)`.
    signatures: Passed to `tf.saved_model.save`.
    verify: Optional `verify(loaded, path)` called on the reloaded SavedModel
      before it is renamed into place; it raises to refuse publication. It may
      also write extra files into `path` (such as `assets.extra/`).
    options: Optional `tf.saved_model.SaveOptions`.

  Returns:
    The path of the published version directory.

  Raises:
    errors.TfvaeError: If the version exists or is not positive, or if saving
      or verification fails; nothing is left under `export_dir` then.
  """
  os.makedirs(export_dir, exist_ok=True)
  with _exclusive(export_dir):
    _remove_leftovers(export_dir)
    if version is None:
      version = next_version(export_dir)
    version = int(version)
    if version <= 0:
      raise errors.TfvaeError(
          f"export version must be a positive integer, got {version}")
    final_path = os.path.join(export_dir, str(version))
    if tf.io.gfile.exists(final_path):
      raise errors.TfvaeError(
          f"{final_path} already exists; tfvae never overwrites an export "
          "version (pass another --version or leave it out)")
    tmp_path = tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{version}-",
                                dir=export_dir)
    try:
      try:
        tf.saved_model.save(module, tmp_path, signatures=signatures,
                            options=options)
        loaded = tf.saved_model.load(tmp_path)
      except (tf.errors.OpError, ValueError, TypeError) as e:
        raise errors.TfvaeError(
            f"could not write the SavedModel for {final_path}: "
            f"{errors.op_message(e)}") from e
      if verify is not None:
        verify(loaded, tmp_path)
      if tf.io.gfile.exists(final_path):
        raise errors.TfvaeError(
            f"{final_path} appeared while exporting; not overwriting it")
      # mkdtemp makes the directory private (0700); a version must be readable
      # by a server running as another user, like any directory made here.
      umask = os.umask(0)
      os.umask(umask)
      os.chmod(tmp_path, 0o777 & ~umask)
      try:
        os.rename(tmp_path, final_path)
      except OSError as e:  # Another export took the version meanwhile.
        raise errors.TfvaeError(
            f"could not rename the export into {final_path}: {e.strerror}; "
            "not overwriting it") from None
    except BaseException:
      shutil.rmtree(tmp_path, ignore_errors=True)
      raise
    return final_path


def find_saved_model(path):
  """The SavedModel directory that `path` names.

  Args:
    path: A SavedModel directory (with saved_model.pb) or an export
      directory of numbered versions (its highest version is taken).

  Returns:
    The SavedModel directory, or None if `path` is neither.
  """
  if os.path.isfile(os.path.join(path, "saved_model.pb")):
    return path
  for version in reversed(existing_versions(path)):
    candidate = os.path.join(path, str(version))
    if os.path.isfile(os.path.join(candidate, "saved_model.pb")):
      return candidate
  return None


def metadata_path(saved_model_dir):
  """Where the provenance JSON (`METADATA_FILE`) of an export lives."""
  return os.path.join(saved_model_dir, warmup.ASSETS_EXTRA, METADATA_FILE)


def write_metadata(saved_model_dir, info):
  """Writes the provenance JSON of an export (a JSON-able dict)."""
  with open(metadata_path(saved_model_dir), "w") as f:
    json.dump(info, f, indent=2, sort_keys=True)
    f.write("\n")


def read_metadata(saved_model_dir):
  """The provenance JSON of an export (`METADATA_FILE`), or {} if absent."""
  source = metadata_path(saved_model_dir)
  if not os.path.isfile(source):
    return {}
  try:
    with open(source) as f:
      found = json.load(f)
  except (OSError, ValueError) as e:
    raise errors.TfvaeError(
        f"{source}: not a readable JSON file: {e}") from None
  return found if isinstance(found, dict) else {}
