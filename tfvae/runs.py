"""Run directories: their layout, their checkpoints, and rebuilding models.

  RUN_DIR/
    config.json        the run's `config.Config` (written by tfvae-train)
    ckpt/              tf.train.Checkpoint files: checkpoint, ckpt-N.index,
                       ckpt-N.data-00000-of-00001
    metrics.jsonl      one JSON object per finished epoch
    summaries/train/   TensorBoard event files (train scalars)
    summaries/eval/    TensorBoard event files (test scalars, sample images)
    pictures/          PNGs written during training

See WORKSPACE.md for which program reads and writes what.
"""
import os
import re
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
  if state is not None:
    state_newest = os.path.join(directory,
                                os.path.basename(state.model_checkpoint_path))
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
  if state_problem or state_newest != newest or len(intact) != len(found):
    _write_checkpoint_state(directory, newest, intact)
  return newest


def _write_checkpoint_state(directory, newest, intact):
  """Rewrites `directory`/checkpoint to name `newest` and keep `intact`.

  Written here, atomically, rather than with TF1's deprecated
  `update_checkpoint_state`, whose deprecation notice would land in every
  resumed run's log. Paths are relative, as `tf.train.CheckpointManager`
  writes them.
  """
  lines = [f"model_checkpoint_path: \"{os.path.basename(newest)}\""]
  lines += [f"all_model_checkpoint_paths: \"{os.path.basename(p)}\""
            for p in intact]
  with files.atomic_open(os.path.join(directory, "checkpoint"), "w") as f:
    f.write("\n".join(lines) + "\n")


def newest_intact_checkpoint(directory):
  """Like `recover_checkpoints` but read-only: changes nothing on disk.

  Raises:
    errors.RunDirError: If there is no intact checkpoint.
  """
  found = found_checkpoints(directory)
  if not found:
    raise errors.RunDirError(f"no checkpoints in {directory}")
  for prefix in reversed(found):
    problem = verify_checkpoint(prefix)
    if problem is None:
      if prefix != found[-1]:
        logging.warning("newest checkpoint %s is damaged; using %s",
                        found[-1], prefix)
      return prefix
    logging.warning("checkpoint %s is damaged: %s", prefix, problem)
  raise errors.RunDirError(f"no intact checkpoint in {directory}")


def load_config(run_dir):
  """Reads RUN_DIR/config.json (see `config.load`)."""
  if not os.path.isdir(run_dir):
    raise errors.RunDirError(f"{run_dir}: no such run directory")
  return config_lib.load(config_path(run_dir))


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
  config = load_config(run_dir)
  if checkpoint is None:
    checkpoint = newest_intact_checkpoint(ckpt_dir(run_dir))
  elif not os.path.exists(checkpoint + ".index"):
    raise errors.RunDirError(f"{checkpoint}: no such checkpoint (expected "
                             f"{checkpoint}.index)")
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
  return config, model, int(step.numpy())
