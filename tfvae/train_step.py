"""The compiled training step: several optimiser steps per call, any strategy.

Randomness is stateless. The noise of training step s (the sample of z and, for
dynamic binarisation, the binarisation of the batch) is drawn from the seed
pair (seed, s) (`rng.ExampleNoise`), and the order of epoch e from (seed, e)
(`rng.epoch_order`), so the whole random state of a run is (seed, step): a
resumed run draws exactly what the uninterrupted run would have drawn, and a
run on any number of replicas draws what a run on one draws.

`TrainStep` holds the step counter and the compiled functions only; it reads
and writes no file (the run loop, `training.Trainer`, does).
"""
import numpy as np
import tensorflow as tf

from tfvae import errors
from tfvae import input_pipeline
from tfvae import precision
from tfvae import rng

# The error message `check_numerics` raises on a NaN or infinite loss; the run
# loop recognises it to stop with `errors.NonFiniteLossError`.
NON_FINITE_LOSS = "non-finite training loss"


class TrainStep:
  """A model's compiled training and evaluation steps under a strategy.

  Args:
    model: The model (a `tf.Module`), its variables created under
      `strategy.scope()`.
    objective: An objective of `objectives` (`objective(model, x, noise,
      step, [labels=])` -> (per-example loss [B], {metric: [B]})).
    optimizer: A tf_keras optimizer created under `strategy.scope()`; a
      `tf_keras.mixed_precision.LossScaleOptimizer` (mixed_float16) has the
      loss scaled before differentiation and the gradients unscaled after,
      and skips the steps whose gradients overflow.
    strategy: A `tf.distribute.Strategy`.
    batch_size: The global batch B, a multiple of the replicas.
    image_shape: (H, W, C) of one image.
    seed: The run's seed.
    binarize: "dynamic" to binarise each batch with the step's noise; any
      other value leaves the pixels as they come.
    jit: Compile the loss and gradients with XLA.
    train_split: The training `data.Split` as training sees it
      (`input_pipeline.prepared_split`), N examples.
    epoch_input: `fn(epoch, skip_batches)` -> the distributed tf.data input
      of an epoch's batches after its first `skip_batches`; default the
      single-machine order (`input_pipeline.train_dataset`).
    data_on_device: Keep the training split on the device and gather each
      batch inside the compiled step (see `runner`); single replica only.
      None (the default): when the strategy has a single replica, the faster
      setting measured (BENCHMARKS.md); results are the same.

  Raises:
    errors.TfvaeError: `data_on_device` with several replicas.
  """

  def __init__(self, model, objective, optimizer, strategy, *, batch_size,
               image_shape, seed, binarize, jit, train_split,
               epoch_input=None, data_on_device=None):
    self.model = model
    self.objective = objective
    self.optimizer = optimizer
    self.strategy = strategy
    self.batch_size = batch_size
    self.image_shape = tuple(image_shape)
    self.seed = seed
    self.binarize = binarize
    self.jit = jit
    self.train_split = train_split
    self._epoch_input = epoch_input or self._single_machine_epoch
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    replicas = strategy.num_replicas_in_sync
    if data_on_device is None:
      # Streamed images (image_sources.StreamedImages) stay on disk.
      data_on_device = replicas == 1 and isinstance(train_split.images,
                                                    np.ndarray)
    if data_on_device and replicas != 1:
      raise errors.TfvaeError(
          f"data_on_device needs a single replica; the strategy has "
          f"{replicas}")
    self.data_on_device = data_on_device
    if data_on_device:
      # identity runs on the default device (the GPU, if any), so the split
      # is copied there once, not at every call of the step.
      self._train_images = tf.identity(tf.constant(train_split.images))
      self._train_labels = tf.identity(tf.constant(
          train_split.labels.astype(np.int64)))
    if jit:
      recorder = rng.RecordedNoise()
      images = tf.zeros([1, *self.image_shape], tf.uint8)
      # An eager pass on one example tells which noise the step draws.
      self._loss_and_grads(images, recorder, tf.zeros([1], tf.int64))
      self._draws = recorder.draws
      self._compiled = tf.function(
          lambda images, drawn, labels, scale: self._loss_and_grads(
              images, rng.ReplayedNoise(drawn), labels, scale),
          jit_compile=True)
    self.steps_from_iterator = tf.function(self._steps_from_iterator)
    self.steps_on_device = tf.function(self._steps_on_device)
    self.eval_batch = tf.function(self._eval_batch)

  @property
  def num_sums(self):
    """Length of the step's summed figures: 1 + len(metric_names)."""
    return 1 + len(self.objective.metric_names)

  # Inside the compiled functions.

  def _labels_arg(self, labels):
    """The class labels, for objectives of conditional models only."""
    return {"labels": labels} if self.objective.uses_labels else {}

  def _loss_and_grads(self, images, noise, labels=None, loss_scale=None):
    """Loss, [loss, *metric means] and gradients on this replica's batch.

    With a `loss_scale` S the gradients are those of S * loss (the caller
    divides them by S): small gradients of a float16 network then stay above
    float16's smallest number; an overflow shows as an inf or NaN gradient.
    """
    x = input_pipeline.scale(images)
    if self.binarize == "dynamic":
      x = input_pipeline.binarize(x, noise.uniform(self.image_shape))
    variables = self.model.trainable_variables
    with tf.GradientTape() as tape:
      per_example_loss, metrics = self.objective(
          self.model, x, noise, self.step, **self._labels_arg(labels))
      # Sum over this replica's examples / global batch: the all-reduce (a
      # sum) of the replicas' gradients is then the gradient of the mean.
      loss = tf.reduce_sum(per_example_loss) / self.batch_size
      scaled = loss if loss_scale is None else loss * loss_scale
    grads = tape.gradient(scaled, variables)
    sums = tf.stack([loss] + [
        tf.reduce_sum(metrics[name]) / self.batch_size
        for name in self.objective.metric_names])
    return loss, sums, grads

  def _replica_step(self, images, step_seed, labels=None):
    """One step on this replica's slice of the global batch."""
    ctx = tf.distribute.get_replica_context()
    local = tf.shape(images)[0]
    start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * local
    noise = rng.ExampleNoise(step_seed, self.batch_size, start, local)
    scaled = precision.is_loss_scaled(self.optimizer)
    # The scale S as a tensor, so that the XLA-compiled part takes it as an
    # input; the gradients of S * loss are divided by S below.
    loss_scale = (self.optimizer.get_scaled_loss(tf.constant(1.0)) if scaled
                  else None)
    if self.jit:
      # XLA implements stateless random ops with other bits than TF's
      # kernels: the noise is drawn outside the compiled part so that --jit
      # trains on the same noise as a run without it.
      drawn = [getattr(noise, kind)(shape) for kind, shape in self._draws]
      loss, sums, grads = self._compiled(images, drawn, labels, loss_scale)
    else:
      loss, sums, grads = self._loss_and_grads(images, noise, labels,
                                               loss_scale)
    if scaled:
      grads = self.optimizer.get_unscaled_gradients(grads)
    checked = tf.debugging.check_numerics(loss, NON_FINITE_LOSS)
    with tf.control_dependencies([checked]):
      self.optimizer.apply_gradients(
          zip(grads, self.model.trainable_variables))
    return sums

  def _one_step(self, images, labels):
    step_seed = tf.stack([tf.constant(self.seed, tf.int64), self.step])
    per_replica = self.strategy.run(self._replica_step,
                                    args=(images, step_seed, labels))
    self.step.assign_add(1)
    return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica,
                                axis=None)

  def _steps_from_iterator(self, iterator, num_steps):
    """Runs `num_steps` steps on a distributed iterator's batches.

    Args:
      iterator: Of {"image": uint8 [B, H, W, C], "label": int64 [B]}, per
        replica.
      num_steps: int32 scalar.

    Returns:
      float32 [num_sums], the summed [loss, *metrics] of the steps.
    """
    sums = tf.zeros([self.num_sums])
    for _ in tf.range(num_steps):
      batch = next(iterator)
      sums += self._one_step(batch["image"], batch["label"])
    return sums

  def _steps_on_device(self, order, first_batch, num_steps):
    """Runs `num_steps` steps on batches `first_batch`... of `order`.

    Args:
      order: int32 [N], the epoch's permutation of the training split.
      first_batch: int32 scalar, the epoch's batch to start from.
      num_steps: int32 scalar.

    Returns:
      float32 [num_sums], the summed [loss, *metrics] of the steps.
    """
    sums = tf.zeros([self.num_sums])
    for i in tf.range(num_steps):
      start = (first_batch + i) * self.batch_size
      indices = tf.slice(order, [start], [self.batch_size])
      sums += self._one_step(tf.gather(self._train_images, indices),
                             tf.gather(self._train_labels, indices))
    return sums

  def _eval_batch(self, images, labels, seed):
    """Sums [len(metric_names)] of the metrics over a batch (fixed noise).

    Args:
      images: uint8 [b, H, W, C].
      labels: int64 [b].
      seed: int64 [2], the batch's noise seed (`rng.eval_seed`).
    """
    noise = rng.ExampleNoise(seed, tf.shape(images)[0])
    _, metrics = self.objective(self.model, input_pipeline.scale(images),
                                noise, self.step, **self._labels_arg(labels))
    return tf.stack([tf.reduce_sum(metrics[name])
                     for name in self.objective.metric_names])

  # Driving from Python.

  def epoch_order(self, epoch_index):
    """The permutation [N] of the training split that epoch `epoch_index`
    visits, as `input_pipeline.train_dataset` draws it."""
    return rng.epoch_order(self.seed, epoch_index,
                           len(self.train_split.labels))

  def _single_machine_epoch(self, epoch, skip_batches):
    dataset = input_pipeline.train_dataset(
        self.train_split, self.batch_size, self.seed, epoch,
        skip_batches=skip_batches)
    return self.strategy.experimental_distribute_dataset(dataset)

  def runner(self, epoch_index, into_epoch):
    """Returns `run(num_steps) -> summed [loss, *metrics]` for one epoch.

    Batches come in the order of `input_pipeline.train_dataset(train_split,
    batch_size, seed, epoch_index, skip_batches=into_epoch)`: the first call
    runs that epoch's batch `into_epoch` onwards. With `data_on_device` the
    training split lives on the device as one tensor and each step gathers
    its batch by the epoch's permuted indices inside the compiled loop, with
    no tf.data hop per step; otherwise a distributed tf.data iterator
    (`epoch_input`) feeds the replicas.
    """
    if self.data_on_device:
      order = tf.constant(self.epoch_order(epoch_index), tf.int32)
      position = [into_epoch]

      def run_on_device(num_steps):
        sums = self.steps_on_device(order, tf.constant(position[0]),
                                    tf.constant(num_steps))
        position[0] += num_steps
        return sums

      return run_on_device
    iterator = iter(self._epoch_input(epoch_index, into_epoch))
    return lambda num_steps: self.steps_from_iterator(iterator,
                                                      tf.constant(num_steps))

  def evaluate(self, split, batch_size=500):
    """Means of the objective's metrics over `split`, as {"test_<name>": x}.

    The noise of batch i is fixed by (seed, i) (`rng.eval_seed`), so the
    figures are reproducible.
    """
    totals = np.zeros(len(self.objective.metric_names))
    count = 0
    for i, batch in enumerate(input_pipeline.eval_dataset(split, batch_size)):
      totals += self.eval_batch(batch["image"], batch["label"],
                                rng.eval_seed(self.seed, i)).numpy()
      count += int(batch["image"].shape[0])
    return {f"test_{name}": float(total / max(count, 1))
            for name, total in zip(self.objective.metric_names, totals)}
