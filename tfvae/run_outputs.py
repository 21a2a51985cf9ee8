"""What a training run writes into its run directory besides checkpoints.

  metrics.jsonl      one JSON record per finished epoch (`append_metrics`);
                     on resuming, records past the restored step are dropped
                     (`rewrite_metrics`, atomic)
  summaries/train/   TensorBoard scalars of training (`SummaryWriters`)
  summaries/eval/    TensorBoard scalars of evaluation and the pictures
  pictures/          PNGs of samples and reconstructions (`write_pictures`)
  summaries/eval/plugins/org_tensorflow_tensorboard_projector/
                     TensorBoard projector files of the test split's latent
                     embeddings, at the end of training (`write_projector`)

The layout itself (the paths) is `runs`'.
"""
import errno
import json
import os
import time

import numpy as np
import tensorflow as tf

from tfvae import errors
from tfvae import files
from tfvae import images as images_lib
from tfvae import input_pipeline
from tfvae import models
from tfvae import projector
from tfvae import runs

# Prior samples drawn per picture of an unconditional model.
NUM_PICTURE_SAMPLES = 64
# Rows of the sample picture of a conditional model: one per class.
_SAMPLES_PER_CLASS = 8
_NUM_RECONSTRUCTIONS = 16
# Test images whose posterior means the projector shows.
NUM_PROJECTOR_POINTS = 1000


def read_metrics(run_dir):
  """The records of RUN_DIR/metrics.jsonl, oldest first ([] if none).

  A line cut short by a kill mid-write is skipped (`repair_metrics` removes
  it from the file).
  """
  return _read_metrics(run_dir)[0]


def _read_metrics(run_dir):
  """(records, whether the file holds anything but whole records)."""
  path = runs.metrics_path(run_dir)
  if not os.path.exists(path):
    return [], False
  records = []
  torn = False
  try:
    with open(path) as f:
      text = f.read()
  except (OSError, UnicodeDecodeError) as e:
    raise errors.RunDirError(f"cannot read {path}: "
                             f"{getattr(e, 'strerror', None) or e}") from None
  for line in text.splitlines():
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except ValueError:
      torn = True
      continue
    if isinstance(record, dict):
      records.append(record)
    else:
      torn = True
  return records, torn or bool(text and not text.endswith("\n"))


def repair_metrics(run_dir, step):
  """Makes RUN_DIR/metrics.jsonl hold whole records up to `step` only.

  Drops a torn line (a kill mid-append: the next record would otherwise be
  appended onto it) and the records of epochs past `step` (the checkpoint
  resumed from), rewriting the file atomically if anything changed.

  Returns:
    The records kept, oldest first.
  """
  records, torn = _read_metrics(run_dir)
  kept = [r for r in records if r.get("step", 0) <= step]
  if torn or len(kept) != len(records):
    rewrite_metrics(run_dir, kept)
  return kept


def rewrite_metrics(run_dir, records):
  """Replaces RUN_DIR/metrics.jsonl by `records`, atomically."""
  path = runs.metrics_path(run_dir)
  try:
    with files.atomic_open(path, "w") as f:
      for r in records:
        f.write(json.dumps(r) + "\n")
  except OSError as e:
    raise runs.write_error(path, e) from None


def append_metrics(run_dir, record):
  """Appends one epoch's record (a JSON-able dict) to RUN_DIR/metrics.jsonl.

  If the write fails (a full disk), the file is cut back to its former
  length, so no part of the record is left in it.

  Raises:
    errors.RunDirError: If the record cannot be written, naming the file
      and the cause.
  """
  path = runs.metrics_path(run_dir)
  line = (json.dumps(record) + "\n").encode()
  try:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
  except OSError as e:
    raise runs.write_error(path, e) from None
  try:
    size = os.fstat(fd).st_size
    try:
      written = os.write(fd, line)
      if written != len(line):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
      os.fsync(fd)
    except OSError as e:
      try:
        os.ftruncate(fd, size)
      except OSError:
        pass
      raise runs.write_error(path, e) from None
  finally:
    os.close(fd)


def epoch_means(sums, steps, seconds, metric_names, batch_size):
  """The training figures of an epoch's record from its summed figures.

  Args:
    sums: [1 + len(metric_names)] sums over the epoch's steps of the loss
      and each metric's batch mean.
    steps: The steps summed.
    seconds: Their training time.
    metric_names: The objective's metric names.
    batch_size: The global batch.

  Returns:
    ({"train_loss": ..., "train_<metric>": ...}, examples/s), or
    (None, None) if no steps are known.
  """
  if not steps:
    return None, None
  mean = sums / steps
  train = {"train_loss": float(mean[0])}
  train.update({f"train_{name}": float(value) for name, value in
                zip(metric_names, mean[1:])})
  speed = steps * batch_size / seconds if seconds else None
  return train, speed


def epoch_record(epoch, step, train, test, speed):
  """The metrics.jsonl record of an epoch.

  Args:
    epoch: The epoch number, from 1.
    step: The training step at its end.
    train: {"train_loss": ..., "train_<metric>": ...}, or None when the
      epoch's training figures were lost (a run killed before evaluating).
    test: {"test_<metric>": ...}.
    speed: Training examples per second, or None.
  """
  return {"epoch": epoch, "step": step, **(train or {}), **test,
          "examples_per_sec": speed, "wall_time": time.time()}


class SummaryWriters:
  """The TensorBoard writers of a run: summaries/train and summaries/eval.

  Args:
    run_dir: The run directory.
  """

  def __init__(self, run_dir):
    self.train = tf.summary.create_file_writer(
        runs.summaries_dir(run_dir, "train"))
    self.eval = tf.summary.create_file_writer(
        runs.summaries_dir(run_dir, "eval"))

  def write_loss(self, step, loss):
    """The running mean training loss, at a progress report."""
    with self.train.as_default(step=step):
      tf.summary.scalar("loss", loss)

  def write_train(self, step, train, speed):
    """An epoch's training means {name: value} and examples per second."""
    with self.train.as_default(step=step):
      for name, value in train.items():
        tf.summary.scalar(name, value)
      tf.summary.scalar("examples_per_sec", speed)
    self.train.flush()

  def write_eval(self, step, test, sample_grid, recon_grid):
    """Evaluation means {name: value} and the pictures (uint8 grids
    [H, W, C]; `sample_grid` None for models that cannot sample)."""
    with self.eval.as_default(step=step):
      for name, value in test.items():
        tf.summary.scalar(name, value)
      if sample_grid is not None:
        tf.summary.image("samples",
                         sample_grid[None].astype(np.float32) / 255.)
      tf.summary.image("reconstructions",
                       recon_grid[None].astype(np.float32) / 255.)
    self.eval.flush()


def write_pictures(run_dir, model, test_split, seed, epoch):
  """Writes samples and reconstructions of epoch `epoch` as PNGs.

  Autoencoders cannot sample (sample_grid is then None); a CVAE's samples
  have one row per class.

  Args:
    run_dir: The run directory.
    model: The model being trained.
    test_split: The test `data.Split` as training sees it; 16 of its images,
      spread evenly over it (`images.spread`), are reconstructed.
    seed: The run's seed, which fixes the prior samples.
    epoch: The epoch number, in the file names.

  Returns:
    (sample_grid, recon_grid): uint8 [H, W, C] grids, or None for samples.
  """
  chosen = images_lib.spread(len(test_split.images), _NUM_RECONSTRUCTIONS)
  originals = input_pipeline.scale(test_split.images[chosen]).numpy()
  recon = models.reconstruction_means(
      model, originals, test_split.labels[chosen]).numpy()
  pictures = runs.pictures_dir(run_dir)
  sample_grid = None
  if models.can_generate(model):
    per_row = _SAMPLES_PER_CLASS if models.is_conditional(model) else \
        NUM_PICTURE_SAMPLES
    samples, columns = models.sample_means(model, per_row, seed)
    sample_grid = images_lib.grid(samples.numpy(), columns=columns)
    _write_png(os.path.join(pictures, f"samples_epoch_{epoch:03d}.png"),
               sample_grid)
  recon_grid = images_lib.grid(np.concatenate([originals, recon]),
                               columns=_NUM_RECONSTRUCTIONS)
  _write_png(os.path.join(pictures, f"reconstructions_epoch_{epoch:03d}.png"),
             recon_grid)
  return sample_grid, recon_grid


def _write_png(path, grid):
  try:
    images_lib.write_png(path, grid)
  except OSError as e:
    raise runs.write_error(path, e) from None


def projector_dir(run_dir):
  """Where training writes the projector files: the eval run's assets."""
  return os.path.join(runs.summaries_dir(run_dir, "eval"),
                      projector.ASSETS_DIR)


def write_projector(run_dir, model, test_split, class_names=None,
                    count=NUM_PROJECTOR_POINTS):
  """Writes the latent embeddings of the first `count` test images for
  TensorBoard's projector (`projector.write`) into `projector_dir`.

  Returns:
    The projector config's path.
  """
  images = test_split.images[:count]
  labels = None if test_split.labels is None else test_split.labels[:count]
  means = projector.posterior_means(
      model, input_pipeline.scale(images).numpy(), labels)
  return projector.write(projector_dir(run_dir), means, images, labels,
                         class_names)
