"""The contenders the suite times: tfvae's real Trainer and its references.

Each contender trains or decodes the same model on the same data from the
same initial weights (tfvae's, copied across): `TfvaeTraining` drives
tfvae's `training.Trainer` and `train_step.TrainStep` as `Trainer.train`
does, `Tf1Training` the TF1 session version, `KerasTraining` tf_keras'
`fit`; `WorkerProcess` runs `TfvaeTraining` in a process of its own.
"""
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from bench import keras_reference
from bench import tf1_reference
from tfvae import config as config_lib
from tfvae import kinds
from tfvae import launch
from tfvae import likelihoods
from tfvae import training

tfd = tfp.distributions

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATENT_SIZE = 2
LEARNING_RATE = 1e-3
SEED = 0


def float_images(split):
  """A split's images as float32 [N, H, W, C] in [0, 1], as Keras and TF1
  users prepare them."""
  return split.images.astype(np.float32) / 255.0


class TfvaeTraining:
  """tfvae's `Trainer` and its step on a data set, driven as `Trainer.train`
  drives them.

  Args:
    dataset: A `data.Dataset`.
    network: "mlp" or "conv".
    batch_size: Examples per step.
    hidden_size: MLP hidden width.
    data_on_device: Passed to the Trainer (None: its default).
    former: Implementations to put back as they were before the fused
      ones, for the mechanism rows: "optimizer" (tf_keras' RMSprop, one op
      per element-wise step of the update) and/or "likelihood" (TFP's
      Bernoulli log-prob, two softplus passes). Built into the Trainer in
      place of tfvae's.
    **overrides: Config fields to change (steps_per_call, jit).
  """

  def __init__(self, dataset, network, batch_size, hidden_size,
               data_on_device=None, former=(), **overrides):
    config = config_lib.Config(
        network=network, batch_size=batch_size, hidden_sizes=(hidden_size,),
        latent_dim=LATENT_SIZE, optimizer="rmsprop",
        learning_rate=LEARNING_RATE, seed=SEED,
        image_shape=dataset.image_shape, **overrides)
    self.config = config
    strategy = tf.distribute.get_strategy()
    self.model = launch.build_model(config, strategy)
    if "likelihood" in former:
      self.model.decoder.likelihood = TfpBernoulli()
    with strategy.scope():
      if "optimizer" in former:
        optimizer = tf_keras.optimizers.RMSprop(LEARNING_RATE,
                                                jit_compile=False)
      else:
        optimizer = launch.make_optimizer(config)
    self.trainer = training.Trainer(
        config, tempfile.mkdtemp(prefix="tfvae-bench-"), dataset, strategy,
        self.model, kinds.build_objective(config), optimizer,
        data_on_device=data_on_device)
    self.train_step = self.trainer.train_step
    self._epoch, self._into = 0, 0
    self._runner = self.train_step.runner(0, 0)

  def run(self, num_steps):
    """Runs `num_steps` steps, across epochs; returns summed [loss, ...]."""
    per_call = self.config.steps_per_call
    per_epoch = self.trainer.steps_per_epoch
    sums = 0.0
    while num_steps > 0:
      if self._into == per_epoch:
        self._epoch, self._into = self._epoch + 1, 0
        self._runner = self.train_step.runner(self._epoch, 0)
      num = min(per_call, num_steps, per_epoch - self._into)
      sums = sums + self._runner(num).numpy()
      self._into += num
      num_steps -= num
    return sums

  def examples_per_sec(self, num_steps):
    """Times `num_steps` steps; credits the steps the step counter shows
    (`timed_steps`), not the steps asked for."""
    before = int(self.train_step.step)
    start = time.perf_counter()
    self.run(num_steps)
    seconds = time.perf_counter() - start
    self.timed_steps = int(self.train_step.step) - before
    return self.timed_steps * self.config.batch_size / seconds


class TfpBernoulli(likelihoods.Bernoulli):
  """tfvae's Bernoulli likelihood as it was: TFP's own log-prob."""

  def distribution(self, params):
    return tfd.Independent(tfd.Bernoulli(logits=params, dtype=tf.float32),
                           reinterpreted_batch_ndims=3)


def mlp_weights(model):
  """A tfvae MLP VAE's weights in the TF1 reference's order (NumPy)."""
  return [v.numpy() for net in (model.encoder.net, model.decoder.net)
          for layer in net.layers for v in (layer.w, layer.b)]


class Tf1Training:
  """The TF1 session version, fed batch by batch as `next_batch` would."""

  def __init__(self, images, batch_size, hidden_size, weights):
    self.batch_size = batch_size
    self.images = images.reshape(len(images), -1)
    self.reference = tf1_reference.Tf1MlpVae(
        self.images.shape[1], hidden_size, LATENT_SIZE, LEARNING_RATE)
    self.reference.set_weights(weights)
    self._rng = np.random.default_rng(SEED)
    self._epoch_images = self.images[self._rng.permutation(len(self.images))]
    self._position = 0
    self.steps_run = 0

  def run(self, num_steps):
    for _ in range(num_steps):
      if self._position + self.batch_size > len(self._epoch_images):
        self._epoch_images = self.images[
            self._rng.permutation(len(self.images))]
        self._position = 0
      self.reference.train_step(
          self._epoch_images[self._position:self._position + self.batch_size])
      self._position += self.batch_size
      self.steps_run += 1

  def examples_per_sec(self, num_steps):
    """Times `num_steps` steps; credits the session runs counted
    (`timed_steps`)."""
    before = self.steps_run
    start = time.perf_counter()
    self.run(num_steps)
    seconds = time.perf_counter() - start
    self.timed_steps = self.steps_run - before
    return self.timed_steps * self.batch_size / seconds


class _BatchClock(tf_keras.callbacks.Callback):
  """Counts the batches `fit` runs and notes the time at the end of batch
  `start - 1` and of the last batch."""

  def __init__(self, start):
    super().__init__()
    self._supports_tf_logs = True  # No conversion of the logs per batch.
    self.start = start
    self.first = self.last = None
    self.batches = 0

  def on_train_batch_end(self, batch, logs=None):
    self.last = time.perf_counter()
    self.batches += 1
    if batch == self.start - 1:
      self.first = self.last


class KerasTraining:
  """The tf_keras version, trained with `fit` on NumPy arrays.

  `policy` is the Keras dtype policy its layers are built under
  ("mixed_bfloat16" for Keras' own mixed precision).

  `fit` runs its warm-up batches and the timed ones in one call, on whole
  batches of a slice of the images; when the images hold fewer batches than
  asked, it runs fewer, and only the batches the clock saw after the
  warm-up are credited (`timed_steps`).
  """

  def __init__(self, images, network, batch_size, hidden_size, model,
               warmup_steps, policy="float32"):
    if warmup_steps < 1:
      raise ValueError("the clock starts at the end of a warm-up batch: "
                       f"warmup_steps must be >= 1, got {warmup_steps}")
    self.images = images
    self.batch_size = batch_size
    self.warmup_steps = warmup_steps
    self.vae, self.generator = keras_reference.build(
        network, images.shape[1:], LATENT_SIZE, hidden_size, LEARNING_RATE,
        policy=policy)
    keras_reference.copy_weights_from_tfvae(self.vae, model)

  def examples_per_sec(self, num_steps):
    total = min(self.warmup_steps + num_steps,
                len(self.images) // self.batch_size)
    if total <= self.warmup_steps:
      raise ValueError(
          f"{len(self.images)} images hold {total} batches of "
          f"{self.batch_size}: none left to time after {self.warmup_steps} "
          "warm-up batches")
    clock = _BatchClock(self.warmup_steps)
    start = np.random.default_rng(num_steps).integers(
        0, len(self.images) - total * self.batch_size + 1)
    self.vae.fit(self.images[start:start + total * self.batch_size],
                 batch_size=self.batch_size, epochs=1, shuffle=True,
                 verbose=0, callbacks=[clock])
    self.timed_steps = clock.batches - self.warmup_steps
    return self.timed_steps * self.batch_size / (clock.last - clock.first)


class WorkerProcess:
  """tfvae's MLP step in a `bench.worker` process with its own settings.

  Args:
    images_path: .npy file of the uint8 training images.
    batch_size: Examples per step.
    hidden_size: MLP hidden width.
    environment: Variables to set in the worker's environment.
    **flags: `bench.worker` flags (inter_op_threads, intra_op_threads).
  """

  def __init__(self, images_path, batch_size, hidden_size, environment=None,
               **flags):
    command = [sys.executable, "-m", "bench.worker",
               f"--images={images_path}", f"--batch_size={batch_size}",
               f"--hidden_size={hidden_size}"]
    command += [f"--{name}={value}" for name, value in flags.items()]
    self._stderr = tempfile.TemporaryFile(mode="w+")
    self._process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=self._stderr, text=True, cwd=_ROOT,
        env={**os.environ, **(environment or {})})

  def _read(self):
    line = self._process.stdout.readline()
    if not line:
      self._stderr.seek(0)
      tail = self._stderr.read().strip().splitlines()[-1:] or ["no output"]
      raise RuntimeError(f"bench.worker exited: {tail[0]}")
    return line.strip()

  def wait_ready(self):
    if self._read() != "ready":
      raise RuntimeError("bench.worker did not start")

  def examples_per_sec(self, num_steps):
    self._process.stdin.write(f"{num_steps}\n")
    self._process.stdin.flush()
    return float(self._read())

  def close(self):
    self._process.stdin.close()
    self._process.wait(timeout=60)
    self._stderr.close()
