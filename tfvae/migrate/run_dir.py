"""Writing a migrated model as a tfvae run directory, all or nothing.

The run directory holds what `training.Trainer` writes and restores:
`config.json` and, in `ckpt/`, a `tf.train.Checkpoint` of `model`,
`optimizer` (built, with its slots), `step` (the TF1 `global_step`), `epoch`
and `epoch_progress`; beside them `migration.json` records where the model
came from and how well it was verified. Everything is written into a
temporary directory beside the target and renamed into place at the end, so
a failed migration leaves nothing.

With the optimizer's state, TF1 RMSProp's mean square `ms` and Adam's `m`
and `v` go into tf_keras' slots (`rms`; `m`, `v`), and Adam's bias
correction is carried by `iterations` (TF1 keeps it as `beta1_power` =
beta1^(t + 1) after t steps).
"""
import json
import math
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from tfvae import config as config_lib
from tfvae import errors
from tfvae import files
from tfvae import image_sources
from tfvae import input_pipeline
from tfvae import kinds
from tfvae import launch
from tfvae import runs
from tfvae.migrate import reader

# The `config.Config` fields (tfvae-train's flags) that train on the user's own
# images instead of --dataset; tfvae-migrate takes them too and verifies on
# the test split they give.
DATA_FIELDS = ("data", "test_data", "image_size", "channels")
# RUN_DIR/migration.json: provenance and verification of a migrated run.
MIGRATION_RECORD = "migration.json"
# The TF1 slot suffix of each tf_keras slot list, per optimizer.
_SLOT_SUFFIXES = {
    "rmsprop": {"_velocities": "RMSProp"},
    "adam": {"_momentums": "Adam", "_velocities": "Adam_1"},
}


def tf1_slots(report, source, optimizer, used, beta1=0.9):
  """The TF1 optimizer's state in native terms.

  Args:
    report: The checkpoint's `reader.CheckpointReport`.
    source: Its `reader.Source`.
    optimizer: "rmsprop" or "adam" (the run's), or None.
    used: {native variable name: [checkpoint names]} (`load_weights`).
    beta1: Adam's beta1 (from the graph), to read its step off
      `beta1_power`.

  Returns:
    {"slots": {(list attribute, native variable name): array},
     "iterations": int or None}.

  Raises:
    errors.TfvaeError: If the optimizer has no tfvae counterpart or a slot
      is missing.
  """
  if optimizer not in _SLOT_SUFFIXES:
    raise errors.TfvaeError(
        f"--with_optimizer_state: checkpoint {source.prefix} was trained "
        f"with {', '.join(report.optimizers) or 'no optimizer tfvae knows'}; "
        "only RMSProp and Adam have tfvae counterparts")
  names = {v.name for v in report.variables}
  wanted = []
  for native, sources in used.items():
    for attribute, suffix in _SLOT_SUFFIXES[optimizer].items():
      wanted.append((attribute, native, [
          None if s is None else f"{s}/{suffix}" for s in sources]))
  needed = sorted({n for _, _, parts in wanted for n in parts if n})
  missing = [n for n in needed if n not in names]
  if missing:
    raise errors.TfvaeError(
        f"--with_optimizer_state: checkpoint {source.prefix} lacks the "
        f"optimizer slots {', '.join(missing[:4])}")
  values = reader.read_all(source, needed)
  slots = {}
  for attribute, native, parts in wanted:
    if len(parts) == 1:
      slots[(attribute, native)] = values[parts[0]] if parts[0] else None
    else:
      arrays = [values[p] for p in parts if p]
      slots[(attribute, native)] = (np.concatenate(arrays, -1)
                                    if len(arrays) == len(parts) else None)
  iterations = None
  if optimizer == "adam":
    powers = [v.name for v in report.variables
              if v.name.split("/")[-1] == "beta1_power"]
    if powers:
      power = float(reader.read_all(source, powers[:1])[powers[0]])
      iterations = max(int(round(math.log(power) / math.log(beta1))) - 1, 0)
  return {"slots": slots, "iterations": iterations}


def _set_slots(optimizer, model, slots):
  """Assigns `tf1_slots`' arrays to a built tf_keras optimizer."""
  by_name = {v.name: v for v in model.trainable_variables}
  for (attribute, native), value in slots["slots"].items():
    if value is None:
      continue
    variable = by_name[native]
    index = optimizer._index_dict[optimizer._var_key(variable)]  # pylint: disable=protected-access
    getattr(optimizer, attribute)[index].assign(
        np.asarray(value, np.float32).reshape(variable.shape))
  if slots.get("iterations") is not None:
    optimizer.iterations.assign(slots["iterations"])


def verification_batch(config, batch, exact=False):
  """The first test images of the data a migrated run trains on.

  Args:
    config: The run's `config.Config`: `image_shape` is the graph's, and
      `data` (with `DATA_FIELDS`) or `dataset` names the data.
    batch: Images wanted; fewer if the test split is smaller.
    exact: The graph's batch is fixed at `batch`: fewer is an error.

  Returns:
    (images float32 [N, H, W, C] in [0, 1], the `data.Dataset`), loaded as
    tfvae-train loads the run's data (`image_sources.load_for`).

  Raises:
    errors.TfvaeError: If the data's images have another shape than the
      graph's, naming both, or too few test images.
  """
  loaded = image_sources.load_for(config)
  where = (f"--data={config.data}" if config.data
           else f"--dataset={config.dataset}")
  if tuple(loaded.image_shape) != tuple(config.image_shape):
    hint = (" (--image_size and --channels bring images to another shape)"
            if config.data else "")
    raise errors.TfvaeError(
        f"the graph takes images {list(config.image_shape)} but {where} has "
        f"{list(loaded.image_shape)}{hint}")
  images = loaded.test.images[:batch]
  if not len(images) or (exact and len(images) < batch):  # pylint: disable=g-explicit-length-test
    needs = (f"the graph's batch is fixed at {batch}" if exact
             else "the verification needs one")
    raise errors.DataError(
        f"{where}: its test split holds {len(loaded.test.images)} images; "
        f"{needs}")
  return input_pipeline.scale(images).numpy(), loaded


def check_target(run_dir):
  """Raises `errors.RunDirError` unless `run_dir` is free (absent or empty)."""
  if os.path.isdir(run_dir):
    if os.listdir(run_dir):
      raise errors.RunDirError(
          f"--run_dir={run_dir} exists and is not empty; migrate into a new "
          "directory")
  elif os.path.exists(run_dir):
    raise errors.RunDirError(f"--run_dir={run_dir} is a file")


def write_run_dir(run_dir, config, model, step, provenance, slots=None,
                  steps_per_epoch=1):
  """Writes a run directory holding `model` at `step`, atomically.

  Args:
    run_dir: The directory; must not exist, or be empty.
    config: The run's `config.Config` (`image_shape` set).
    model: The native model, built from `config`, weights loaded.
    step: The training step to record.
    provenance: JSON-friendly dict written to `migration.json`.
    slots: `tf1_slots`' result, or None/empty for fresh optimizer state.
    steps_per_epoch: Of the run's data, for the `epoch` variable.

  Raises:
    errors.RunDirError: If `run_dir` is not free or cannot be written.
  """
  check_target(run_dir)
  parent = os.path.dirname(os.path.abspath(run_dir))
  os.makedirs(parent, exist_ok=True)
  temp = tempfile.mkdtemp(
      prefix=f".tmp-migrate-{os.path.basename(os.path.abspath(run_dir))}-",
      dir=parent)
  try:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp, 0o777 & ~umask)  # mkdtemp's is 0700.
    config_lib.save(config, os.path.join(temp, runs.CONFIG))
    optimizer = launch.make_optimizer(config)
    optimizer.build(model.trainable_variables)
    if slots:
      _set_slots(optimizer, model, slots)
    num_sums = 1 + len(kinds.build_objective(config).metric_names)
    checkpoint = tf.train.Checkpoint(
        model=model, optimizer=optimizer,
        step=tf.Variable(step, dtype=tf.int64, trainable=False, name="step"),
        epoch=tf.Variable(step // steps_per_epoch, dtype=tf.int64,
                          trainable=False, name="epoch"),
        epoch_progress=tf.Variable(tf.zeros([num_sums + 2], tf.float64),
                                   trainable=False, name="epoch_progress"))
    manager = tf.train.CheckpointManager(
        checkpoint, os.path.join(temp, runs.CKPT),
        max_to_keep=config.keep_checkpoints,
        checkpoint_name=runs.CKPT_PREFIX)
    manager.save(checkpoint_number=step)
    with files.atomic_open(os.path.join(temp, MIGRATION_RECORD), "w") as f:
      f.write(json.dumps(provenance, indent=2, sort_keys=True,
                         default=str) + "\n")
    if os.path.isdir(run_dir):
      os.rmdir(run_dir)
    os.rename(temp, run_dir)
  except OSError as e:
    shutil.rmtree(temp, ignore_errors=True)
    raise runs.write_error(run_dir, e) from None
  except BaseException:
    shutil.rmtree(temp, ignore_errors=True)
    raise
