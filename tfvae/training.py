"""Training: a compiled, distribution-ready step, checkpoints and metrics.

Randomness is stateless. The noise of training step s (the sample of z and, for
dynamic binarisation, the binarisation of the batch) is drawn from the seed
pair (seed, s), and the order of epoch e from (seed, e), so the run's whole
random state is (seed, step): it is in every checkpoint, and a resumed run
draws exactly what the uninterrupted run would have drawn.
"""
import json
import os
import time

from absl import logging
import numpy as np
import tensorflow as tf

from tfvae import config as config_lib
from tfvae import data
from tfvae import errors
from tfvae import files
from tfvae import images as images_lib
from tfvae import kinds
from tfvae import models
from tfvae import optimizers
from tfvae import rng
from tfvae import runs

STRATEGIES = ("default", "mirrored", "multi_worker")
OPTIMIZERS = ("adam", "rmsprop")
BINARIZATIONS = ("none", "static", "dynamic")
_NUM_PICTURE_SAMPLES = 64


def configure_cpu_devices(count):
  """Splits the CPU into `count` logical devices (for mirrored training).

  Must run before TensorFlow initialises its devices.
  """
  if count <= 1:
    return
  cpus = tf.config.list_physical_devices("CPU")
  try:
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
  except RuntimeError as e:
    raise errors.TfvaeError(f"--cpu_devices={count}: {e}") from None


def make_strategy(name):
  """Returns the `tf.distribute.Strategy` called `name` (see STRATEGIES).

  "mirrored" uses every GPU, or, without GPUs, every logical CPU device;
  "multi_worker" is the cluster's strategy, started by `distribute.start`.
  """
  if name == "multi_worker":
    from tfvae import distribute  # pylint: disable=g-import-not-at-top
    return distribute.multi_worker_strategy()
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    if tf.config.list_logical_devices("GPU"):
      return tf.distribute.MirroredStrategy()
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=cpus)
  raise errors.TfvaeError(f"--strategy={name}: choose one of "
                          f"{', '.join(STRATEGIES)}")


def make_optimizer(config):
  """Builds the optimizer the config names (tf_keras, for tf.distribute),
  with fused per-variable updates (`optimizers`)."""
  clip = config.clip_norm if config.clip_norm > 0 else None
  if config.optimizer == "adam":
    return optimizers.Adam(config.learning_rate, global_clipnorm=clip)
  if config.optimizer == "rmsprop":
    return optimizers.RMSProp(config.learning_rate, global_clipnorm=clip)
  raise errors.TfvaeError(f"--optimizer={config.optimizer}: choose one of "
                          f"{', '.join(OPTIMIZERS)}")


def prepared_split(dataset, split, binarize):
  """The images of a split as training and evaluation see them.

  Args:
    dataset: A `data.Dataset`.
    split: "train" or "test".
    binarize: "none", "static" or "dynamic". The test split of a binarised
      run is binarised once with a fixed seed (the standard protocol);
      dynamic binarisation of the training split happens in the step.

  Returns:
    A `data.Split` with uint8 images.
  """
  the_split = dataset.split(split)
  if binarize == "none" or (binarize == "dynamic" and split == "train"):
    return the_split
  seed = rng.BINARIZATION_SEEDS[split]
  return data.Split(data.static_binarize(the_split.images, seed),
                    the_split.labels)


def validate(config):
  """Checks a config's values; raises TfvaeError naming the flag."""
  config.validate()


def resolve_config(run_dir, requested, explicit=None):
  """Merges the requested config with a run directory's saved one.

  Args:
    run_dir: The run directory.
    requested: The `Config` asked for (flags).
    explicit: Names of the fields the user set explicitly (flags given on
      the command line); the others take the saved run's values. None means
      every field was set explicitly.

  Returns:
    The config to train with.

  Raises:
    errors.RunDirError: If an explicitly set field that defines the model,
      data or optimisation differs from the saved run's, naming each.
  """
  path = runs.config_path(run_dir)
  if not os.path.exists(path):
    found = runs.found_checkpoints(runs.ckpt_dir(run_dir))
    if found:
      raise errors.RunDirError(
          f"{run_dir} has checkpoints but no {runs.CONFIG}; refusing to guess "
          "what they were trained with")
    return requested
  saved = config_lib.load(path)
  if explicit is None:
    explicit = {f for f in requested.to_dict() if f != "image_shape"}
  merged = saved.replace(**{f: getattr(requested, f) for f in explicit
                            if hasattr(saved, f)})
  differing = [f for f in merged.differences(saved) if f != "image_shape"]
  if differing:
    details = ", ".join(f"--{f}={_flag_value(getattr(merged, f))} (run has "
                        f"{_flag_value(getattr(saved, f))})"
                        for f in differing)
    raise errors.RunDirError(
        f"{run_dir} was trained with other settings: {details}; use a new "
        "--run_dir or drop these flags to resume")
  return merged


def _flag_value(value):
  if isinstance(value, (tuple, list)):
    return ",".join(str(v) for v in value)
  return value


class Trainer:
  """Trains a model of a config on a data set, in a run directory.

  Args:
    config: A validated `config.Config` with `image_shape` set.
    run_dir: Where checkpoints, summaries, metrics and pictures go.
    dataset: A `data.Dataset`.
    strategy: A `tf.distribute.Strategy`.
    data_on_device: Keep the training split on the device and gather each
      batch inside the compiled step (see `step_runner`); single replica
      only. None (the default): when the strategy has a single replica, the
      faster setting measured (BENCHMARKS.md); results are the same.
  """

  def __init__(self, config, run_dir, dataset, strategy, data_on_device=None):
    self.config = config
    self.run_dir = run_dir
    self.dataset = dataset
    self.strategy = strategy
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
      raise errors.TfvaeError(
          f"--batch_size={config.batch_size} must be a multiple of the "
          f"{replicas} replicas")
    self.train_split = prepared_split(dataset, "train", config.binarize)
    self.test_split = prepared_split(dataset, "test", config.binarize)
    self.steps_per_epoch = data.steps_per_epoch(self.train_split,
                                                config.batch_size)
    if self.steps_per_epoch == 0:
      raise errors.TfvaeError(
          f"--batch_size={config.batch_size} is larger than the "
          f"{len(self.train_split.labels)} training examples")
    tf.random.set_seed(config.seed)
    with strategy.scope():
      self.model = kinds.build_model(config)
      self.optimizer = make_optimizer(config)
      self.optimizer.build(self.model.trainable_variables)
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    self.checkpoint = tf.train.Checkpoint(
        model=self.model, optimizer=self.optimizer, step=self.step,
        epoch=self.epoch)
    self.objective = kinds.build_objective(config)
    if data_on_device is None:
      data_on_device = strategy.num_replicas_in_sync == 1
    if data_on_device and strategy.num_replicas_in_sync != 1:
      raise errors.TfvaeError(
          "data_on_device needs a single replica; the strategy has "
          f"{strategy.num_replicas_in_sync}")
    self.data_on_device = data_on_device
    if data_on_device:
      # identity runs on the default device (the GPU, if any), so the split
      # is copied there once, not at every call of the step.
      self._train_images = tf.identity(tf.constant(self.train_split.images))
      self._train_labels = tf.identity(tf.constant(
          self.train_split.labels.astype(np.int64)))
    self._train_steps = self._make_train_steps()
    self._eval_batch = self._make_eval_batch()

  # The compiled edge.

  def _labels_arg(self, labels):
    """The class labels, for objectives of conditional models only."""
    return {"labels": labels} if self.objective.uses_labels else {}

  def _loss_and_grads(self, images, noise, labels=None):
    """Loss, [loss, *metric means] and gradients on this replica's batch."""
    global_batch = self.config.batch_size
    x = data.scale(images)
    if self.config.binarize == "dynamic":
      x = data.binarize(x, noise.uniform(self.config.image_shape))
    variables = self.model.trainable_variables
    with tf.GradientTape() as tape:
      per_example_loss, metrics = self.objective(
          self.model, x, noise, self.step, **self._labels_arg(labels))
      # Sum over this replica's examples / global batch: the all-reduce (a
      # sum) of the replicas' gradients is then the gradient of the mean.
      loss = tf.reduce_sum(per_example_loss) / global_batch
    grads = tape.gradient(loss, variables)
    sums = tf.stack([loss] + [
        tf.reduce_sum(metrics[name]) / global_batch
        for name in self.objective.metric_names])
    return loss, sums, grads

  def _replica_step(self, images, step_seed, labels=None):
    """One step on this replica's slice of the global batch."""
    ctx = tf.distribute.get_replica_context()
    local = tf.shape(images)[0]
    start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * local
    noise = rng.ExampleNoise(step_seed, self.config.batch_size, start,
                                    local)
    if self.config.jit:
      # XLA implements stateless random ops with other bits than TF's
      # kernels: the noise is drawn outside the compiled part so that --jit
      # trains on the same noise as a run without it.
      drawn = [getattr(noise, kind)(shape) for kind, shape in self._draws]
      loss, sums, grads = self._compiled(images, drawn, labels)
    else:
      loss, sums, grads = self._loss_and_grads(images, noise, labels)
    checked = tf.debugging.check_numerics(loss, "non-finite training loss")
    with tf.control_dependencies([checked]):
      self.optimizer.apply_gradients(
          zip(grads, self.model.trainable_variables))
    return sums

  def _make_train_steps(self):
    if self.config.jit:
      recorder = rng.RecordedNoise()
      images = tf.zeros([1, *self.config.image_shape], tf.uint8)
      # An eager pass on one example tells which noise the step draws.
      self._loss_and_grads(images, recorder, tf.zeros([1], tf.int64))
      self._draws = recorder.draws
      self._compiled = tf.function(
          lambda images, drawn, labels: self._loss_and_grads(
              images, rng.ReplayedNoise(drawn), labels),
          jit_compile=True)
    seed = tf.constant(self.config.seed, tf.int64)
    num_sums = 1 + len(self.objective.metric_names)

    def one_step(images, labels):
      step_seed = tf.stack([seed, self.step])
      per_replica = self.strategy.run(self._replica_step,
                                      args=(images, step_seed, labels))
      self.step.assign_add(1)
      return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica,
                                  axis=None)

    @tf.function
    def train_steps(iterator, num_steps):
      """Runs `num_steps` steps; returns the summed [loss, *metrics]."""
      sums = tf.zeros([num_sums])
      for _ in tf.range(num_steps):
        batch = next(iterator)
        sums += one_step(batch["image"], batch["label"])
      return sums

    batch_size = self.config.batch_size

    @tf.function
    def train_steps_on_device(order, first_batch, num_steps):
      """Runs `num_steps` steps on batches `first_batch`... of `order`.

      Args:
        order: int32 [N], the epoch's permutation of the training split.
        first_batch: int32 scalar, the epoch's batch to start from.
        num_steps: int32 scalar.

      Returns:
        The summed [loss, *metrics].
      """
      sums = tf.zeros([num_sums])
      for i in tf.range(num_steps):
        start = (first_batch + i) * batch_size
        indices = tf.slice(order, [start], [batch_size])
        sums += one_step(tf.gather(self._train_images, indices),
                         tf.gather(self._train_labels, indices))
      return sums

    self._train_steps_on_device = train_steps_on_device
    return train_steps

  def step_runner(self, epoch_index, into_epoch):
    """Returns `run(num_steps) -> summed [loss, *metrics]` for one epoch.

    Batches come in the order of `data.train_dataset(train_split,
    batch_size, seed, epoch_index, skip_batches=into_epoch)`: the first call
    runs that epoch's batch `into_epoch` onwards. With `data_on_device` (the
    default for one replica) the training split lives on the device as one
    tensor and each step gathers its batch by the epoch's permuted indices
    inside the compiled loop, with no tf.data hop per step; otherwise a
    distributed tf.data iterator feeds the replicas.
    """
    if self.data_on_device:
      order = tf.constant(self.epoch_order(epoch_index), tf.int32)
      position = [into_epoch]

      def run_on_device(num_steps):
        sums = self._train_steps_on_device(order, tf.constant(position[0]),
                                           tf.constant(num_steps))
        position[0] += num_steps
        return sums

      return run_on_device
    iterator = iter(self._epoch_input(epoch_index, into_epoch))
    return lambda num_steps: self._train_steps(iterator,
                                               tf.constant(num_steps))

  def epoch_order(self, epoch_index):
    """The permutation [N] of the training split that epoch `epoch_index`
    visits, as `data.train_dataset` draws it."""
    return rng.epoch_order(self.config.seed, epoch_index,
                           len(self.train_split.labels))

  def _make_eval_batch(self):

    @tf.function
    def eval_batch(images, labels, seed):
      """Sums of the objective's metrics over a batch (fixed noise)."""
      noise = rng.ExampleNoise(seed, tf.shape(images)[0])
      _, metrics = self.objective(self.model, data.scale(images), noise,
                                  self.step, **self._labels_arg(labels))
      return tf.stack([tf.reduce_sum(metrics[name])
                       for name in self.objective.metric_names])

    return eval_batch

  # Python-side driving.

  def evaluate(self, batch_size=500):
    """Test-split means of the objective's metrics (e.g. test_elbo, nats).

    The noise is fixed by the run's seed, so the figures are reproducible.
    """
    totals = np.zeros(len(self.objective.metric_names))
    count = 0
    for i, batch in enumerate(data.eval_dataset(self.test_split, batch_size)):
      seed = rng.eval_seed(self.config.seed, i)
      totals += self._eval_batch(batch["image"], batch["label"],
                                 seed).numpy()
      count += int(batch["image"].shape[0])
    return {f"test_{name}": float(total / max(count, 1))
            for name, total in zip(self.objective.metric_names, totals)}

  def _epoch_input(self, epoch, skip_batches):
    """The distributed batches of epoch `epoch` after its first few."""
    dataset = data.train_dataset(self.train_split, self.config.batch_size,
                                 self.config.seed, epoch,
                                 skip_batches=skip_batches)
    return self.strategy.experimental_distribute_dataset(dataset)

  def _restore(self):
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
    return manager.save(checkpoint_number=int(self.step))

  def _write_pictures(self, epoch):
    """Writes samples and reconstructions as PNGs and image summaries.

    Autoencoders cannot sample (sample_grid is then None); a CVAE's samples
    have one row per class.
    """
    originals = data.scale(self.test_split.images[:16]).numpy()
    recon = models.reconstruction_means(
        self.model, originals, self.test_split.labels[:16]).numpy()
    pictures = runs.pictures_dir(self.run_dir)
    sample_grid = None
    if models.can_generate(self.model):
      per_row = 8 if models.is_conditional(self.model) else \
          _NUM_PICTURE_SAMPLES
      samples, columns = models.sample_means(self.model, per_row,
                                             self.config.seed)
      sample_grid = images_lib.grid(samples.numpy(), columns=columns)
      images_lib.write_png(
          os.path.join(pictures, f"samples_epoch_{epoch:03d}.png"),
          sample_grid)
    recon_grid = images_lib.grid(np.concatenate([originals, recon]),
                                 columns=16)
    images_lib.write_png(
        os.path.join(pictures, f"reconstructions_epoch_{epoch:03d}.png"),
        recon_grid)
    return sample_grid, recon_grid

  def train(self):
    """Trains up to `config.epochs` epochs, resuming from checkpoints.

    Returns:
      The list of per-epoch metric records written in this call.

    Raises:
      errors.NonFiniteLossError: If the loss becomes NaN or infinite; the
        newest checkpoint is then the last good one.
    """
    config = self.config
    ckpt_directory = runs.ckpt_dir(self.run_dir)
    restored = self._restore()
    manager = tf.train.CheckpointManager(
        self.checkpoint, ckpt_directory, max_to_keep=config.keep_checkpoints,
        checkpoint_name=runs.CKPT_PREFIX)
    step = int(self.step)
    records = _read_metrics(self.run_dir)
    if restored:
      logging.info("Resumed from %s at step %d (epoch %d, %d/%d steps into "
                   "it).", restored, step, step // self.steps_per_epoch + 1,
                   step % self.steps_per_epoch, self.steps_per_epoch)
      kept = [r for r in records if r.get("step", 0) <= step]
      if len(kept) != len(records):
        _write_metrics(self.run_dir, kept)
        records = kept
    else:
      logging.info("Starting a new run in %s.", self.run_dir)
    total_steps = config.epochs * self.steps_per_epoch
    train_writer = tf.summary.create_file_writer(
        runs.summaries_dir(self.run_dir, "train"))
    eval_writer = tf.summary.create_file_writer(
        runs.summaries_dir(self.run_dir, "eval"))
    written = []
    done_epochs = {r.get("epoch") for r in records}
    # A run killed between an epoch's last checkpoint and its evaluation.
    if step and step % self.steps_per_epoch == 0 and \
       step // self.steps_per_epoch not in done_epochs and step <= total_steps:
      written.append(self._finish_epoch(step // self.steps_per_epoch, None,
                                        None, eval_writer))
    if step >= total_steps:
      logging.info("Already trained %d of %d epochs; nothing to do (raise "
                   "--epochs to train on).", step // self.steps_per_epoch,
                   config.epochs)
      return written
    last_saved = step
    while step < total_steps:
      epoch_index = step // self.steps_per_epoch
      into_epoch = step % self.steps_per_epoch
      run_steps = self.step_runner(epoch_index, into_epoch)
      sums = np.zeros(1 + len(self.objective.metric_names))
      steps_this_epoch = 0
      train_seconds = 0.0
      epoch_end = (epoch_index + 1) * self.steps_per_epoch
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
          if "non-finite training loss" not in str(e):
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
          with train_writer.as_default(step=step):
            tf.summary.scalar("loss", sums[0] / steps_this_epoch)
        if step // config.save_every_steps > last_saved // \
           config.save_every_steps and step != epoch_end:
          self._save(manager)
          last_saved = step
      self._save(manager)
      last_saved = step
      mean = sums / steps_this_epoch
      train = {"train_loss": float(mean[0])}
      train.update({f"train_{name}": float(value) for name, value in
                    zip(self.objective.metric_names, mean[1:])})
      speed = steps_this_epoch * config.batch_size / train_seconds
      with train_writer.as_default(step=step):
        for name, value in train.items():
          tf.summary.scalar(name, value)
        tf.summary.scalar("examples_per_sec", speed)
      train_writer.flush()
      written.append(self._finish_epoch(epoch_index + 1, train, speed,
                                        eval_writer))
    return written

  def _finish_epoch(self, epoch, train, speed, eval_writer):
    """Evaluates, writes pictures and appends the epoch's metrics record."""
    step = int(self.step)
    test = self.evaluate()
    sample_grid, recon_grid = self._write_pictures(epoch)
    with eval_writer.as_default(step=step):
      for name, value in test.items():
        tf.summary.scalar(name, value)
      if sample_grid is not None:
        tf.summary.image("samples",
                         sample_grid[None].astype(np.float32) / 255.)
      tf.summary.image("reconstructions",
                       recon_grid[None].astype(np.float32) / 255.)
    eval_writer.flush()
    record = {"epoch": epoch, "step": step, **(train or {}), **test,
              "examples_per_sec": speed, "wall_time": time.time()}
    with open(runs.metrics_path(self.run_dir), "a") as f:
      f.write(json.dumps(record) + "\n")
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


def _read_metrics(run_dir):
  path = runs.metrics_path(run_dir)
  if not os.path.exists(path):
    return []
  records = []
  with open(path) as f:
    for line in f:
      line = line.strip()
      if line:
        try:
          records.append(json.loads(line))
        except ValueError:
          # A line cut short by a kill mid-write; the epoch is re-evaluated.
          continue
  return records


def _write_metrics(run_dir, records):
  with files.atomic_open(runs.metrics_path(run_dir), "w") as f:
    for r in records:
      f.write(json.dumps(r) + "\n")


def run(config, run_dir, explicit=None, dataset=None):
  """Trains (or resumes) the run `config` describes in `run_dir`.

  Args:
    config: The requested `config.Config`.
    run_dir: The run directory (created if missing).
    explicit: Fields set explicitly by the user (see `resolve_config`).
    dataset: A `data.Dataset` to use instead of loading `config.dataset`.

  Returns:
    (trainer, records): the Trainer and the metric records of this call.
  """
  config = resolve_config(run_dir, config, explicit)
  validate(config)
  if dataset is None:
    dataset = data.load(config.dataset, config.data_dir)
  if config.image_shape is not None and \
     tuple(config.image_shape) != tuple(dataset.image_shape):
    raise errors.RunDirError(
        f"{run_dir} was trained on images of shape {config.image_shape}, "
        f"but {dataset.source} holds {dataset.image_shape}")
  config = config.replace(image_shape=tuple(dataset.image_shape))
  if config.model == "cvae" and config.num_classes != len(dataset.class_names):
    raise errors.TfvaeError(
        f"--num_classes={config.num_classes}: {dataset.source} has "
        f"{len(dataset.class_names)} classes")
  strategy = make_strategy(config.strategy)
  if config.strategy == "multi_worker":
    # distribute builds on this module; it writes the run directory on the
    # chief only.
    from tfvae import distribute  # pylint: disable=g-import-not-at-top
    return distribute.run(config, run_dir, dataset, strategy)
  trainer = Trainer(config, run_dir, dataset, strategy)
  os.makedirs(run_dir, exist_ok=True)
  config_lib.save(config, runs.config_path(run_dir))
  logging.info("Training %s (%s, latent %d, %s) on %s from %s: %d steps per "
               "epoch, %d replica(s).", config.model, config.network,
               config.latent_dim, config.likelihood, config.dataset,
               dataset.source, trainer.steps_per_epoch,
               strategy.num_replicas_in_sync)
  return trainer, trainer.train()

