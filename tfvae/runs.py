"""Run directories: their layout, their checkpoints, and rebuilding models.

  RUN_DIR/
    config.json        the run's `config.Config` (written by tfvae-train)
    ckpt/              tf.train.Checkpoint files: checkpoint, ckpt-N.index,
                       ckpt-N.data-00000-of-00001
    metrics.jsonl      one JSON object per finished epoch
    lock               the pid of the tfvae-train holding the run (an OS lock,
                       `lock_run_dir`; gone with the process)
    summaries/train/   TensorBoard event files (train scalars)
    summaries/eval/    TensorBoard event files (test scalars, sample images)
    pictures/          PNGs written during training

See WORKSPACE.md for which program reads and writes what.
"""
import errno
import fcntl
import os
import re
import shutil
import time

from absl import logging
import tensorflow as tf

from tfvae import config as config_lib
from tfvae import errors
from tfvae import files
from tfvae import kinds

CONFIG = "config.json"
CKPT = "ckpt"
METRICS = "metrics.jsonl"
SUMMARIES = "summaries"
PICTURES = "pictures"
CKPT_PREFIX = "ckpt"
LOCK = "lock"

_CKPT_INDEX_RE = re.compile(r"^" + CKPT_PREFIX + r"-([0-9]+)\.index$")


def config_path(run_dir):
  return os.path.join(run_dir, CONFIG)


def ckpt_dir(run_dir):
  return os.path.join(run_dir, CKPT)


def metrics_path(run_dir):
  return os.path.join(run_dir, METRICS)


def summaries_dir(run_dir, split):
  return os.path.join(run_dir, SUMMARIES, split)


def pictures_dir(run_dir):
  return os.path.join(run_dir, PICTURES)


def is_run_dir(path):
  """Whether `path` looks like a tfvae run directory (has config.json)."""
  return os.path.isfile(config_path(path))


def write_error(path, e):
  """The one-line `errors.RunDirError` for a failed write of `path`.

  Args:
    path: The file or directory that could not be written.
    e: The `OSError` or `tf.errors.OpError` raised (disk full, read-only
      file system, permission denied...).
  """
  if isinstance(e, OSError) and e.strerror:
    why = e.strerror
  else:
    why = errors.op_message(e)
  return errors.RunDirError(f"cannot write {path}: {why}")


def lock_run_dir(run_dir):
  """Takes the exclusive lock of a run directory, for a trainer.

  The lock is an `fcntl.flock` on RUN_DIR/lock, which the OS releases when
  the returned file is closed or the process dies, so a killed run never
  leaves a stale lock. The holder's pid is written into the file, for the
  message a second trainer gets. `run_dir` is created if missing.

  Args:
    run_dir: The run directory.

  Returns:
    The open lock file; close it to release the lock.

  Raises:
    errors.RunDirError: If another process holds the lock (naming its pid),
      or the lock file cannot be created.
  """
  path = os.path.join(run_dir, LOCK)
  try:
    os.makedirs(run_dir, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise write_error(path, e) from None
  lock_file = os.fdopen(fd, "r+")
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    holder = lock_file.read().strip() or "unknown"
    lock_file.close()
    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
      raise errors.RunDirError(
          f"{run_dir} is in use: another process (pid {holder}) holds "
          f"{path}; wait for it to end or use another --run_dir") from None
    raise write_error(path, e) from None
  try:
    lock_file.truncate(0)
    lock_file.write(f"{os.getpid()}\n")
    lock_file.flush()
  except OSError:
    # A full disk: the lock holds without the pid, which is only for
    # messages.
    pass
  return lock_file


# The names of tfvae's and TensorFlow's own temporary files in a run
# directory, which a killed or failed write leaves behind.
_ATOMIC_TMP_RE = re.compile(r"^\.tmp-[a-z0-9_]{8}(\.[a-z]+)?$")  # files.atomic_open
_CKPT_TEMP_RE = re.compile(r"^" + CKPT_PREFIX + r"-[0-9]+_temp$")  # a save's shards
_STATE_TMP_RE = re.compile(r"^checkpoint\.tmp[0-9a-f]{32}$")  # the state file's
_CKPT_DATA_RE = re.compile(r"^(" + CKPT_PREFIX +
                           r"-[0-9]+)\.data-[0-9]+-of-[0-9]+$")


def clean_leftovers(run_dir):
  """Removes the temporary files a killed or failed write left in a run.

  Only names of tfvae's and TensorFlow's temporary patterns are touched:
  `.tmp-XXXXXXXX[.ext]` (atomic writes) in the run directory, pictures/ and
  ckpt/; in ckpt/ also `ckpt-N_temp/` (the shards of a save that did not
  finish), `checkpoint.tmp<hex>` (the state file's temporary) and
  `ckpt-N.data-*` files that have no `ckpt-N.index` (a save cut short
  before its index). Call it only while holding the run's lock
  (`lock_run_dir`), so that no live writer's files are removed.

  Args:
    run_dir: The run directory.

  Returns:
    The paths removed.
  """
  removed = []

  def remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path, ignore_errors=True)
    else:
      try:
        os.unlink(path)
      except FileNotFoundError:
        pass
    removed.append(path)

  for directory in (run_dir, pictures_dir(run_dir), ckpt_dir(run_dir)):
    if not os.path.isdir(directory):
      continue
    names = os.listdir(directory)
    for name in names:
      path = os.path.join(directory, name)
      if _ATOMIC_TMP_RE.match(name) and os.path.isfile(path):
        remove(path)
      elif directory == ckpt_dir(run_dir):
        data = _CKPT_DATA_RE.match(name)
        if _CKPT_TEMP_RE.match(name) or _STATE_TMP_RE.match(name) or (
            data and f"{data.group(1)}.index" not in names):
          remove(path)
  for path in removed:
    logging.warning("Removed %s, left over by an earlier run that stopped "
                    "while writing it.", path)
  return removed


def remove_failed_save(prefix):
  """Removes what a checkpoint save that failed left of `prefix`.

  Its `PREFIX_temp/` shards and, without `PREFIX.index`, its `PREFIX.data-*`
  files: nothing half-written stays in the run after the error (the next
  start's `clean_leftovers` covers a save that was killed instead). Call it
  only while holding the run's lock.

  Args:
    prefix: The checkpoint prefix the save was writing (`RUN/ckpt/ckpt-N`).

  Returns:
    The paths removed.
  """
  removed = []
  if os.path.isdir(prefix + "_temp") and not os.path.islink(prefix + "_temp"):
    shutil.rmtree(prefix + "_temp", ignore_errors=True)
    removed.append(prefix + "_temp")
  if not os.path.exists(prefix + ".index"):
    directory, base = os.path.split(prefix)
    for name in sorted(os.listdir(directory)):
      data = _CKPT_DATA_RE.match(name)
      if data and data.group(1) == base:
        try:
          os.unlink(os.path.join(directory, name))
        except FileNotFoundError:
          continue
        removed.append(os.path.join(directory, name))
  return removed


def verify_checkpoint(prefix):
  """Reads every tensor of a checkpoint, which checks each one's CRC32C.

  Returns:
    None if the checkpoint is intact, else a one-line reason.
  """
  try:
    reader = tf.train.load_checkpoint(prefix)
    for name in reader.get_variable_to_shape_map():
      reader.get_tensor(name)
  # The reader raises OpErrors, but also IndexError/ValueError for short files.
  except Exception as e:  # pylint: disable=broad-except
    return _first_line(e)
  return None


def _first_line(e):
  text = str(getattr(e, "message", None) or e).strip()
  return text.splitlines()[0] if text else type(e).__name__


def found_checkpoints(directory):
  """Prefixes of ckpt-N checkpoints in `directory`, oldest first."""
  if not os.path.isdir(directory):
    return []
  numbered = []
  for name in os.listdir(directory):
    m = _CKPT_INDEX_RE.match(name)
    if m:
      numbered.append((int(m.group(1)), os.path.join(directory, name[:-6])))
  return [prefix for _, prefix in sorted(numbered)]


def _state_problem(directory):
  """Checks the `checkpoint` state file; returns a reason it is bad or None."""
  state_file = os.path.join(directory, "checkpoint")
  if not os.path.exists(state_file):
    return None
  try:
    with open(state_file, "rb") as f:
      text = f.read()
  except OSError as e:
    return f"unreadable ({e.strerror})"
  if not text.strip():
    return "empty"
  try:
    state = tf.train.get_checkpoint_state(directory)
  except Exception as e:  # pylint: disable=broad-except
    return f"not a checkpoint state file ({_first_line(e)})"
  if state is None or not state.model_checkpoint_path:
    return "names no checkpoint"
  real_dir = os.path.realpath(directory)
  for path in [state.model_checkpoint_path,
               *state.all_model_checkpoint_paths]:
    full = os.path.realpath(os.path.join(directory, path))
    if os.path.dirname(full) != real_dir:
      return f"points outside {directory}: {path}"
  if not os.path.exists(state.model_checkpoint_path + ".index") and \
     not os.path.exists(os.path.join(directory,
                                     state.model_checkpoint_path + ".index")):
    return f"names {state.model_checkpoint_path}, which does not exist"
  return None


def _set_aside(path):
  """Renames a damaged file out of the way, keeping it for the user."""
  target = f"{path}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
  os.replace(path, target)
  return target


def recover_checkpoints(directory):
  """Prepares a checkpoint directory for resuming; repairs what it can.

  A damaged `checkpoint` state file (empty, garbage, pointing outside the
  directory or at missing files) and damaged checkpoints (truncated or
  bit-flipped .index/.data files, which fail their CRC checks) are renamed to
  `*.damaged-<time>` and a warning names each; the state file is rewritten to
  list the intact checkpoints, the newest of which will be restored.

  Args:
    directory: The run's `ckpt/` directory.

  Returns:
    The prefix of the newest intact checkpoint, or None if there are no
    checkpoints at all.

  Raises:
    errors.RunDirError: If checkpoint files exist but none is intact (nothing
      is renamed then), so training never silently starts over a run.
  """
  # Absolute: tf.train.get_checkpoint_state joins a relative directory onto
  # the paths it returns, which would then seem to point outside it.
  directory = os.path.abspath(directory)
  found = found_checkpoints(directory)
  state_problem = _state_problem(directory)
  if not found:
    if state_problem or os.path.exists(os.path.join(directory, "checkpoint")):
      raise errors.RunDirError(
          f"{os.path.join(directory, 'checkpoint')} exists but no ckpt-N.index "
          f"file is in {directory}; refusing to start over a run whose "
          "checkpoints are missing (move the directory away to start afresh)")
    return None
  damaged = {prefix: verify_checkpoint(prefix) for prefix in found}
  intact = [prefix for prefix in found if damaged[prefix] is None]
  if not intact:
    newest = found[-1]
    raise errors.RunDirError(
        f"no intact checkpoint in {directory}: {newest}: {damaged[newest]}")
  newest = intact[-1]
  state = None if state_problem else tf.train.get_checkpoint_state(directory)
  state_newest = None
  state_listed = []
  has_timestamps = False
  if state is not None:
    state_newest = os.path.join(directory,
                                os.path.basename(state.model_checkpoint_path))
    state_listed = [os.path.join(directory, os.path.basename(p))
                    for p in state.all_model_checkpoint_paths]
    has_timestamps = len(state.all_model_checkpoint_timestamps) == len(
        state_listed)
  if state_problem:
    state_file = os.path.join(directory, "checkpoint")
    kept = _set_aside(state_file)
    logging.warning("%s is damaged (%s); set it aside as %s and using the "
                    "newest intact checkpoint, %s", state_file, state_problem,
                    kept, newest)
  for prefix in found:
    if damaged[prefix] is not None:
      for name in os.listdir(directory):
        if name.startswith(os.path.basename(prefix) + "."):
          _set_aside(os.path.join(directory, name))
      logging.warning("checkpoint %s is damaged (%s); set its files aside as "
                      "*.damaged-* and falling back to %s", prefix,
                      damaged[prefix], newest)
  # The state file must list every intact checkpoint with its time, or
  # tf.train.CheckpointManager never deletes the unlisted or untimed ones
  # and they pile up past --keep_checkpoints.
  if state_problem or state_newest != newest or len(intact) != len(found) \
     or state_listed != intact or not has_timestamps:
    _write_checkpoint_state(directory, newest, intact)
  return newest


def _write_checkpoint_state(directory, newest, intact):
  """Rewrites `directory`/checkpoint to name `newest` and keep `intact`.

  Written here, atomically, rather than with TF1's deprecated
  `update_checkpoint_state`, whose deprecation notice would land in every
  resumed run's log. Paths are relative, as `tf.train.CheckpointManager`
  writes them, and each has its time (its index file's), which the manager
  needs to delete it when it rotates past `max_to_keep`.
  """
  times = [min(os.path.getmtime(p + ".index"), time.time()) for p in intact]
  lines = [f"model_checkpoint_path: \"{os.path.basename(newest)}\""]
  lines += [f"all_model_checkpoint_paths: \"{os.path.basename(p)}\""
            for p in intact]
  lines += [f"all_model_checkpoint_timestamps: {t!r}" for t in times]
  # The manager deletes only checkpoints newer than this.
  lines.append(f"last_preserved_timestamp: {min(times) - 1.0!r}")
  path = os.path.join(directory, "checkpoint")
  try:
    with files.atomic_open(path, "w") as f:
      f.write("\n".join(lines) + "\n")
  except OSError as e:
    raise write_error(path, e) from None


def newest_intact_checkpoint(directory, exclude=()):
  """Like `recover_checkpoints` but read-only: changes nothing on disk.

  A checkpoint whose files vanish while it is read (a live trainer's
  CheckpointManager rotated it away) is passed over quietly.

  Args:
    directory: A `ckpt/` directory.
    exclude: Prefixes not to consider (already found gone).

  Raises:
    errors.RunDirError: If there is no intact checkpoint.
  """
  found = [p for p in found_checkpoints(directory) if p not in exclude]
  if not found:
    raise errors.RunDirError(f"no checkpoints in {directory}")
  for prefix in reversed(found):
    problem = verify_checkpoint(prefix)
    if problem is None:
      if prefix != found[-1]:
        logging.warning("newest checkpoint %s is damaged; using %s",
                        found[-1], prefix)
      return prefix
    if _rotated_away(prefix):
      logging.info("checkpoint %s was deleted while being read (the run is "
                   "training); trying the next newest", prefix)
      continue
    logging.warning("checkpoint %s is damaged: %s", prefix, problem)
  raise errors.RunDirError(f"no intact checkpoint in {directory}")


def _rotated_away(prefix):
  """Whether a checkpoint's index or data files are gone."""
  directory, base = os.path.split(prefix)
  try:
    names = os.listdir(directory)
  except OSError:
    return True
  return f"{base}.index" not in names or not any(
      n.startswith(f"{base}.data-") for n in names)


def load_config(run_dir):
  """Reads RUN_DIR/config.json (see `config.load`)."""
  if not os.path.isdir(run_dir):
    raise errors.RunDirError(f"{run_dir}: no such run directory")
  return config_lib.load(config_path(run_dir))


def save_config(run_dir, config):
  """Writes RUN_DIR/config.json atomically, unless it already holds `config`.

  Raises:
    errors.RunDirError: If it cannot be written, naming it and the cause.
  """
  path = config_path(run_dir)
  try:
    if config_lib.load(path).to_dict() == config.to_dict():
      return
  except errors.RunDirError:
    pass  # Missing or damaged: written anew.
  try:
    config_lib.save(config, path)
  except OSError as e:
    raise write_error(path, e) from None


def restore_model(run_dir, checkpoint=None):
  """Rebuilds a run's model and loads its weights.

  Args:
    run_dir: A tfvae run directory.
    checkpoint: A checkpoint prefix; default the newest intact one.

  Returns:
    (config, model, step): the run's Config, the restored model, and the
    training step the checkpoint was taken at.

  Raises:
    errors.RunDirError: If the run has no usable checkpoint, or the
      checkpoint does not fit the run's config.
  """
  config, model, step, _ = restore_checkpoint(run_dir, checkpoint)
  return config, model, step


def restore_checkpoint(run_dir, checkpoint=None):
  """`restore_model`, also returning the checkpoint prefix restored.

  Without `checkpoint`, a run that is training may rotate its newest
  checkpoint away between its choice and its restoring; the next newest
  intact one is then restored.

  Returns:
    (config, model, step, checkpoint).
  """
  config = load_config(run_dir)
  if checkpoint is not None:
    if not os.path.exists(checkpoint + ".index"):
      raise errors.RunDirError(f"{checkpoint}: no such checkpoint (expected "
                               f"{checkpoint}.index)")
    return (config, *_restore_into_model(config, run_dir, checkpoint),
            checkpoint)
  gone = []
  while True:
    chosen = newest_intact_checkpoint(ckpt_dir(run_dir), exclude=gone)
    try:
      return (config, *_restore_into_model(config, run_dir, chosen), chosen)
    except errors.RunDirError:
      if not _rotated_away(chosen):
        raise
      logging.info("checkpoint %s was deleted while being restored (the run "
                   "is training); trying the next newest", chosen)
      gone.append(chosen)


def _restore_into_model(config, run_dir, checkpoint):
  """(model, step): the config's model with `checkpoint`'s weights."""
  model = kinds.build_model(config)
  step = tf.Variable(0, dtype=tf.int64, name="step")
  ckpt = tf.train.Checkpoint(model=model, step=step)
  try:
    status = ckpt.restore(checkpoint)
    status.assert_existing_objects_matched()
    status.expect_partial()
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    raise errors.RunDirError(
        f"{checkpoint} does not fit the model of {config_path(run_dir)}: "
        f"{_first_line(e)}") from None
  return model, int(step.numpy())
