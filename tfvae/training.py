"""The training run loop: resume, epochs, checkpoints, evaluation, progress.

`Trainer` drives a `train_step.TrainStep` over epochs in a run directory. It
takes the model, objective and optimizer its caller built (`launch` builds
them from a config; the benchmarks build their own), so whoever drives it
drives the real thing.

Exact resume: a checkpoint holds the weights, the optimizer's slots and the
step, which with the seed is the run's whole random state (see
`train_step`), so a run killed at any point and resumed ends with the weights
of the uninterrupted run. It also holds the epoch's running sums of the
training figures (`epoch_progress`), so the epoch's metrics record of a
resumed run equals the uninterrupted run's (but for its speed and time).

Stopping: after `stop_on_signals`, SIGINT and SIGTERM stop training at the
next step boundary (between compiled calls) with a checkpoint saved there
and `Interrupted` raised.
"""
import os
import signal
import sys
import time

from absl import logging
import numpy as np
import tensorflow as tf

from tfvae import errors
from tfvae import input_pipeline
from tfvae import run_outputs
from tfvae import runs
from tfvae import train_step as train_step_lib


class Interrupted(errors.TfvaeError):
  """Training stopped on a signal, after saving a checkpoint.

  Attributes:
    signum: The signal's number; programs exit with 128 + signum.
  """

  def __init__(self, message, signum):
    super().__init__(message)
    self.signum = signum


# The signal that asked training to stop, once `stop_on_signals` caught one.
_stop_signal = None


def stop_on_signals(signums=(signal.SIGINT, signal.SIGTERM)):
  """Makes these signals stop training cleanly instead of killing it.

  The first signal is noted, and the run loop saves a checkpoint at its next
  step boundary and raises `Interrupted`. A second one ends the process at
  once (status 128 + signal), for a run that does not get to a boundary;
  what it was writing then is repaired or removed on the next start.

  Must be called from the main thread.
  """

  def handle(signum, frame):
    del frame  # Unused.
    global _stop_signal
    name = signal.Signals(signum).name
    if _stop_signal is not None:
      sys.stderr.write(f"{os.path.basename(sys.argv[0])}: error: second "
                       f"{name}; stopped at once, without saving\n")
      sys.stderr.flush()
      os._exit(128 + signum)  # pylint: disable=protected-access
    _stop_signal = signum
    logging.warning("%s: stopping at the next step boundary after saving a "
                    "checkpoint (send it again to stop at once).", name)

  for signum in signums:
    signal.signal(signum, handle)


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
    # [summed loss and metrics of the epoch's steps so far, their number,
    # their training seconds]: what the epoch's record is computed from.
    self.epoch_progress = tf.Variable(
        tf.zeros([self.train_step.num_sums + 2], tf.float64),
        trainable=False, name="epoch_progress")
    self._progress_restored = False
    self._saved_step = None
    self.checkpoint = tf.train.Checkpoint(
        model=model, optimizer=optimizer, step=self.step, epoch=self.epoch,
        epoch_progress=self.epoch_progress)

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
    checkpoint = self.checkpoint
    self._progress_restored = any(
        name.startswith("epoch_progress/")
        for name, _ in tf.train.list_variables(newest))
    if not self._progress_restored:
      # Written before epoch_progress was: the resumed epoch's training
      # means will cover only its steps after the resume.
      checkpoint = tf.train.Checkpoint(
          model=self.model, optimizer=self.optimizer, step=self.step,
          epoch=self.epoch)
    status = checkpoint.restore(newest)
    try:
      status.assert_existing_objects_matched()
    except AssertionError as e:
      raise errors.RunDirError(
          f"{newest} does not fit this run's model: "
          f"{str(e).splitlines()[0]}") from None
    self._saved_step = int(self.step)
    return newest

  def _save(self, manager, progress):
    """Saves a checkpoint at the current step.

    Args:
      manager: The run's `tf.train.CheckpointManager`.
      progress: (sums, steps, seconds) of the epoch so far (`_progress`).

    Raises:
      errors.NonFiniteLossError: If a variable is not finite.
      errors.RunDirError: If the checkpoint cannot be written (disk full,
        read-only), naming it and the cause.
    """
    for v in self.model.variables:
      if not np.all(np.isfinite(v.numpy())):
        raise errors.NonFiniteLossError(
            f"variable {v.name} is not finite at step {int(self.step)}; "
            "not saving a checkpoint")
    step = int(self.step)
    self.epoch.assign(step // self.steps_per_epoch)
    sums, steps, seconds = progress
    self.epoch_progress.assign(np.concatenate([sums, [steps, seconds]]))
    try:
      saved = manager.save(checkpoint_number=step)
    except (tf.errors.OpError, OSError) as e:
      prefix = os.path.join(runs.ckpt_dir(self.run_dir),
                            f"{runs.CKPT_PREFIX}-{step}")
      runs.remove_failed_save(prefix)
      raise runs.write_error(prefix, e) from None
    self._saved_step = step
    _pause_for_tests(step)
    return saved

  def _progress(self, into_epoch):
    """(sums, steps, seconds) of the epoch's first `into_epoch` steps, from
    the restored checkpoint; zeros where it does not hold them."""
    progress = self.epoch_progress.numpy()
    if into_epoch and self._progress_restored and \
       int(progress[-2]) == into_epoch:
      return progress[:-2].copy(), into_epoch, float(progress[-1])
    return np.zeros(self.train_step.num_sums), 0, 0.0

  def _stop_if_asked(self, manager, progress):
    """Saves a checkpoint and raises `Interrupted` if a signal asked to."""
    if _stop_signal is None:
      return
    step = int(self.step)
    if step and self._saved_step != step:
      self._save(manager, progress)
    name = signal.Signals(_stop_signal).name
    saved = manager.latest_checkpoint
    raise Interrupted(
        f"stopped by {name} at step {step}; "
        + (f"newest checkpoint {saved}; rerun the same command to resume"
           if saved else "no checkpoint written yet"), _stop_signal)

  def _resume(self):
    """Restores the run's state; returns the metric records up to its step."""
    restored = self._restore()
    step = int(self.step)
    # Drops a torn last line and the records past the restored step.
    records = run_outputs.repair_metrics(
        self.run_dir, step if restored else float("inf"))
    if restored:
      logging.info("Resumed from %s at step %d (epoch %d, %d/%d steps into "
                   "it).", restored, step, step // self.steps_per_epoch + 1,
                   step % self.steps_per_epoch, self.steps_per_epoch)
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
    # Its training figures are in the checkpoint (epoch_progress).
    if step and step % per_epoch == 0 and \
       step // per_epoch not in done_epochs and step <= total_steps:
      train, speed = run_outputs.epoch_means(
          *self._progress(per_epoch), self.objective.metric_names,
          self.config.batch_size)
      written.append(self._finish_epoch(step // per_epoch, train, speed,
                                        writers))
    if step >= total_steps:
      logging.info("Already trained %d of %d epochs; nothing to do (raise "
                   "--epochs to train on).", step // per_epoch, config.epochs)
      return written
    while step < total_steps:
      epoch_index = step // per_epoch
      self._stop_if_asked(manager, self._progress(step % per_epoch))
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
    sums, steps_this_epoch, train_seconds = self._progress(
        step % self.steps_per_epoch)
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
      progress = (sums, steps_this_epoch, train_seconds)
      if step // config.save_every_steps > last_saved // \
         config.save_every_steps and step != epoch_end:
        self._save(manager, progress)
        last_saved = step
      if step != epoch_end:
        self._stop_if_asked(manager, progress)
    self._save(manager, (sums, steps_this_epoch, train_seconds))
    train, speed = run_outputs.epoch_means(
        sums, steps_this_epoch, train_seconds, self.objective.metric_names,
        self.config.batch_size)
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
    if epoch == self.config.epochs:
      run_outputs.write_projector(self.run_dir, self.model, self.test_split,
                                  self.dataset.class_names)
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
