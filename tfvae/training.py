"""The training run loop: resume, epochs, checkpoints, evaluation, progress.

`Trainer` drives a `train_step.TrainStep` over epochs in a run directory. It
takes the model, objective and optimizer its caller built (`launch` builds
them from a config; the benchmarks build their own), so whoever drives it
drives the real thing.

Exact resume: a checkpoint holds the weights, the optimizer's slots and the
step, which with the seed is the run's whole random state (see
`train_step`), so a run killed at any point and resumed ends with the weights
of the uninterrupted run.
"""
import os
import time

from absl import logging
import numpy as np
import tensorflow as tf

from tfvae import errors
from tfvae import input_pipeline
from tfvae import run_outputs
from tfvae import runs
from tfvae import train_step as train_step_lib


class Trainer:
  """Trains a model of a config on a data set, in a run directory.

  Args:
    config: A validated `config.Config` with `image_shape` set.
    run_dir: Where checkpoints, summaries, metrics and pictures go.
    dataset: A `data.Dataset`.
    strategy: A `tf.distribute.Strategy`.
    model: The model to train, built under `strategy.scope()`.
    objective: Its training objective (`kinds.build_objective(config)`).
    optimizer: A tf_keras optimizer created under `strategy.scope()`; its
      slots are built here if they are not yet.
    data_on_device: See `train_step.TrainStep`.

  Raises:
    errors.TfvaeError: If the batch does not split over the replicas or is
      larger than the training split.
  """

  def __init__(self, config, run_dir, dataset, strategy, model, objective,
               optimizer, data_on_device=None):
    self.config = config
    self.run_dir = run_dir
    self.dataset = dataset
    self.strategy = strategy
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
      raise errors.TfvaeError(
          f"--batch_size={config.batch_size} must be a multiple of the "
          f"{replicas} replicas")
    self.train_split = input_pipeline.prepared_split(dataset, "train",
                                                     config.binarize)
    self.test_split = input_pipeline.prepared_split(dataset, "test",
                                                    config.binarize)
    self.steps_per_epoch = input_pipeline.steps_per_epoch(self.train_split,
                                                          config.batch_size)
    if self.steps_per_epoch == 0:
      raise errors.TfvaeError(
          f"--batch_size={config.batch_size} is larger than the "
          f"{len(self.train_split.labels)} training examples")
    self.model = model
    self.objective = objective
    self.optimizer = optimizer
    with strategy.scope():
      optimizer.build(model.trainable_variables)
    self.train_step = train_step_lib.TrainStep(
        model, objective, optimizer, strategy, batch_size=config.batch_size,
        image_shape=config.image_shape, seed=config.seed,
        binarize=config.binarize, jit=config.jit,
        train_split=self.train_split, epoch_input=self._epoch_input,
        data_on_device=data_on_device)
    self.step = self.train_step.step
    self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    self.checkpoint = tf.train.Checkpoint(
        model=model, optimizer=optimizer, step=self.step, epoch=self.epoch)

  def evaluate(self, batch_size=500):
    """Test-split means of the objective's metrics (e.g. test_elbo, nats)."""
    return self.train_step.evaluate(self.test_split, batch_size)

  def _epoch_input(self, epoch, skip_batches):
    """The distributed batches of epoch `epoch` after its first few."""
    dataset = input_pipeline.train_dataset(
        self.train_split, self.config.batch_size, self.config.seed, epoch,
        skip_batches=skip_batches)
    return self.strategy.experimental_distribute_dataset(dataset)

  def _restore(self):
    """Restores the newest intact checkpoint; returns its prefix or None."""
    newest = runs.recover_checkpoints(runs.ckpt_dir(self.run_dir))
    if newest is None:
      return None
    status = self.checkpoint.restore(newest)
    try:
      status.assert_existing_objects_matched()
    except AssertionError as e:
      raise errors.RunDirError(
          f"{newest} does not fit this run's model: "
          f"{str(e).splitlines()[0]}") from None
    return newest

  def _save(self, manager):
    for v in self.model.variables:
      if not np.all(np.isfinite(v.numpy())):
        raise errors.NonFiniteLossError(
            f"variable {v.name} is not finite at step {int(self.step)}; "
            "not saving a checkpoint")
    self.epoch.assign(int(self.step) // self.steps_per_epoch)
    saved = manager.save(checkpoint_number=int(self.step))
    _pause_for_tests(int(self.step))
    return saved

  def _resume(self):
    """Restores the run's state; returns the metric records up to its step."""
    restored = self._restore()
    step = int(self.step)
    records = run_outputs.read_metrics(self.run_dir)
    if restored:
      logging.info("Resumed from %s at step %d (epoch %d, %d/%d steps into "
                   "it).", restored, step, step // self.steps_per_epoch + 1,
                   step % self.steps_per_epoch, self.steps_per_epoch)
      kept = [r for r in records if r.get("step", 0) <= step]
      if len(kept) != len(records):
        run_outputs.rewrite_metrics(self.run_dir, kept)
        records = kept
    else:
      logging.info("Starting a new run in %s.", self.run_dir)
    return records

  def train(self):
    """Trains up to `config.epochs` epochs, resuming from checkpoints.

    Returns:
      The list of per-epoch metric records written in this call.

    Raises:
      errors.NonFiniteLossError: If the loss becomes NaN or infinite; the
        newest checkpoint is then the last good one.
    """
    config = self.config
    records = self._resume()
    manager = tf.train.CheckpointManager(
        self.checkpoint, runs.ckpt_dir(self.run_dir),
        max_to_keep=config.keep_checkpoints, checkpoint_name=runs.CKPT_PREFIX)
    step = int(self.step)
    per_epoch = self.steps_per_epoch
    total_steps = config.epochs * per_epoch
    writers = run_outputs.SummaryWriters(self.run_dir)
    written = []
    done_epochs = {r.get("epoch") for r in records}
    # A run killed between an epoch's last checkpoint and its evaluation.
    if step and step % per_epoch == 0 and \
       step // per_epoch not in done_epochs and step <= total_steps:
      written.append(self._finish_epoch(step // per_epoch, None, None,
                                        writers))
    if step >= total_steps:
      logging.info("Already trained %d of %d epochs; nothing to do (raise "
                   "--epochs to train on).", step // per_epoch, config.epochs)
      return written
    while step < total_steps:
      epoch_index = step // per_epoch
      train, speed = self._train_epoch(epoch_index, manager, writers)
      step = int(self.step)
      written.append(self._finish_epoch(epoch_index + 1, train, speed,
                                        writers))
    return written

  def _train_epoch(self, epoch_index, manager, writers):
    """Trains the rest of epoch `epoch_index`, saving on the way and at its
    end; returns ({"train_loss": ..., "train_<metric>": ...}, examples/s)."""
    config = self.config
    step = int(self.step)
    epoch_end = (epoch_index + 1) * self.steps_per_epoch
    run_steps = self.train_step.runner(epoch_index,
                                       step % self.steps_per_epoch)
    sums = np.zeros(self.train_step.num_sums)
    steps_this_epoch = 0
    train_seconds = 0.0
    last_saved = step
    while step < epoch_end:
      # A call never runs past a save point, so checkpoints land on every
      # multiple of --save_every_steps whatever --steps_per_call is.
      next_save = (step // config.save_every_steps + 1) * \
          config.save_every_steps
      num = min(config.steps_per_call, epoch_end - step, next_save - step)
      start = time.perf_counter()
      try:
        sums += run_steps(num).numpy()
      except tf.errors.InvalidArgumentError as e:
        if train_step_lib.NON_FINITE_LOSS not in str(e):
          raise
        raise errors.NonFiniteLossError(
            f"training loss became NaN or infinite within steps "
            f"{step + 1}-{step + num}; "
            f"stopped; newest checkpoint is the last good one: "
            f"{manager.latest_checkpoint or 'none written yet'}") from None
      train_seconds += time.perf_counter() - start
      step = int(self.step)
      steps_this_epoch += num
      if step % config.log_every_steps < num or step == epoch_end:
        _log_progress(epoch_index, config.epochs, step, epoch_end,
                      self.steps_per_epoch, sums / steps_this_epoch,
                      steps_this_epoch * config.batch_size / train_seconds)
        writers.write_loss(step, sums[0] / steps_this_epoch)
      if step // config.save_every_steps > last_saved // \
         config.save_every_steps and step != epoch_end:
        self._save(manager)
        last_saved = step
    self._save(manager)
    mean = sums / steps_this_epoch
    train = {"train_loss": float(mean[0])}
    train.update({f"train_{name}": float(value) for name, value in
                  zip(self.objective.metric_names, mean[1:])})
    speed = steps_this_epoch * config.batch_size / train_seconds
    writers.write_train(step, train, speed)
    return train, speed

  def _finish_epoch(self, epoch, train, speed, writers):
    """Evaluates, writes pictures and appends the epoch's metrics record."""
    step = int(self.step)
    test = self.evaluate()
    sample_grid, recon_grid = run_outputs.write_pictures(
        self.run_dir, self.model, self.test_split, self.config.seed, epoch)
    writers.write_eval(step, test, sample_grid, recon_grid)
    record = run_outputs.epoch_record(epoch, step, train, test, speed)
    run_outputs.append_metrics(self.run_dir, record)
    logging.info("epoch %d: %s", epoch, ", ".join(
        f"{name} {value:.3f}" for name, value in test.items()))
    return record


def _log_progress(epoch_index, epochs, step, epoch_end, steps_per_epoch,
                  mean, speed):
  done = steps_per_epoch - (epoch_end - step)
  width = 20
  filled = int(width * done / steps_per_epoch)
  bar = "#" * filled + "." * (width - filled)
  logging.info("epoch %d/%d [%s] %3d%% step %d  loss %.2f  %.0f examples/s",
               epoch_index + 1, epochs, bar, 100 * done // steps_per_epoch,
               step, mean[0], speed)


def _pause_for_tests(step):
  """Test hook: with TFVAE_TEST_PAUSE_AT_STEP=N set, once ckpt-N is saved,
  writes the file named by TFVAE_TEST_PAUSE_MARKER and sleeps, so that a test
  kills the run at a known point rather than racing it."""
  if os.environ.get("TFVAE_TEST_PAUSE_AT_STEP") == str(step):
    with open(os.environ["TFVAE_TEST_PAUSE_MARKER"], "w") as f:
      f.write(str(step))
    time.sleep(3600)
