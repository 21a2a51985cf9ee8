"""How fast a training step could possibly be: the kernel floor of a model.

Some targets of issue 17 ask tfvae's step to beat a reference by a factor
(the conv VAE's mixed_bfloat16 step 1.3x tf_keras' own mixed_bfloat16 `fit`,
the MLP's mixed_bfloat16 step 1.5x tfvae float32, the MLP's float32 step
1.5x the TF1 session). Every implementation of these models runs the same
matmul and convolution kernels (oneDNN's, through TensorFlow), so the
targets are reachable only if the rest of the step is a large enough share
of the reference's time. `KernelFloor` measures that directly: it is the
step reduced to the work no implementation can leave out, namely

  - every matmul and convolution of the model, forward and both gradients
    (weights and inputs), in the compute dtype, with the float32 weights
    cast to it where it is not float32;
  - the Bernoulli log-likelihood of the pixels and its gradient, in float32
    (the precision the issue asks the likelihood to keep);
  - the fused RMSProp update of every weight, float32 weights and slots;

and nothing else: no biases, activations, reparameterised sample or KL,
no data pipeline (one fixed batch), so the floor is faster than any real
step of the model. Timed side by side with a reference, reference / floor
is the most any implementation built on these kernels can gain over that
reference (`ceiling` rows). When that is below a target, the target cannot
be reached on this machine's kernels; the rows print the proof.

The second floor (`activations=True`, rows "... + biases, activations")
adds the model's biases and activations (tanh for the MLP, ReLU for the
conv VAE, in the compute dtype), which every implementation of the model
computes too: a tighter ceiling, still above any real step (no sample, KL,
metrics or data pipeline).
"""
import math
import time

from absl import logging
import numpy as np
import tensorflow as tf

from bench import contenders as contenders_lib
from bench import timing
from tfvae import nets
from tfvae import optimizers

Row = timing.Row
LATENT_SIZE = contenders_lib.LATENT_SIZE


def _glorot(shape, fan_in, fan_out):
  return tf.Variable(nets.glorot_uniform(shape, fan_in, fan_out))


class KernelFloor:
  """A model's matmuls/convolutions, its Bernoulli log-likelihood and the
  RMSProp update, and nothing else, run as tfvae runs its steps (many steps
  per compiled call).

  Args:
    network: "mlp" (784-hidden-2 and back) or "conv" (tfvae's conv VAE:
      convs 32, 64/2, 64, 64, dense 32, heads; dense, transposed conv 32/2,
      conv out; 3x3 kernels, SAME).
    images: float32 [N, H, W, C] in [0, 1]; the first `batch_size` are the
      batch of every step.
    batch_size: Examples per step.
    hidden_size: The MLP's hidden width.
    compute_dtype: "float32" or "bfloat16" (matmuls and convolutions).
    activations: Add the model's biases and activations.
  """

  def __init__(self, network, images, batch_size, hidden_size,
               compute_dtype="float32", activations=False):
    self.batch_size = batch_size
    self._activations = activations
    self._dtype = tf.as_dtype(compute_dtype)
    self._x = tf.constant(images[:batch_size])
    height, width, channels = images.shape[1:]
    self._shape = (height, width, channels)
    self._network = network
    if network == "mlp":
      pixels = height * width * channels
      sizes = [(pixels, hidden_size), (hidden_size, 2 * LATENT_SIZE),
               (LATENT_SIZE, hidden_size), (hidden_size, pixels)]
      self._weights = [_glorot([a, b], a, b) for a, b in sizes]
    else:
      half_h, half_w = math.ceil(height / 2), math.ceil(width / 2)
      self._half = (half_h, half_w)
      convs = [(channels, 32), (32, 64), (64, 64), (64, 64)]
      self._weights = [_glorot([3, 3, a, b], 9 * a, 9 * b) for a, b in convs]
      flat = half_h * half_w * 64
      self._weights += [
          _glorot([flat, 32], flat, 32),
          _glorot([32, 2 * LATENT_SIZE], 32, 2 * LATENT_SIZE),
          _glorot([LATENT_SIZE, flat], LATENT_SIZE, flat),
          # conv2d_transpose's filter is [k, k, out, in].
          _glorot([3, 3, 32, 64], 9 * 64, 9 * 32),
          _glorot([3, 3, 32, channels], 9 * 32, 9 * channels)]
    self._kernels = len(self._weights)
    if activations:
      self._weights += [tf.Variable(tf.zeros(v.shape[-1:] if i != 7 else
                                             v.shape[-2:-1]))
                        for i, v in enumerate(self._weights)]
    self._optimizer = optimizers.RMSProp(contenders_lib.LEARNING_RATE)
    self._optimizer.build(self._weights)
    self._steps = tf.function(self._run_steps)

  def _logits(self, x):
    w = [tf.cast(v, self._dtype) for v in self._weights]
    x = tf.cast(x, self._dtype)
    if self._activations:
      kernels = self._kernels
      act = tf.tanh if self._network == "mlp" else tf.nn.relu

      def layer(i, y, activate=True):
        # As tfvae's layers: BiasAdd after a convolution, + after a matmul.
        y = (tf.nn.bias_add(y, w[kernels + i]) if y.shape.rank == 4
             else y + w[kernels + i])
        return act(y) if activate else y
    else:

      def layer(i, y, activate=True):
        del i, activate
        return y

    if self._network == "mlp":
      h = layer(0, tf.reshape(x, [self.batch_size, -1]) @ w[0])
      z = layer(1, h @ w[1], False)[:, :LATENT_SIZE]
      h = layer(2, z @ w[2])
      return tf.reshape(layer(3, h @ w[3], False), [-1, *self._shape])
    h = x
    for i, stride in enumerate((1, 2, 1, 1)):
      h = layer(i, tf.nn.conv2d(h, w[i], stride, "SAME"))
    h = layer(4, tf.reshape(h, [self.batch_size, -1]) @ w[4])
    z = layer(5, h @ w[5], False)[:, :LATENT_SIZE]
    h = tf.reshape(layer(6, z @ w[6]), [-1, *self._half, 64])
    h = layer(7, tf.nn.conv2d_transpose(
        h, w[7], [self.batch_size, *self._shape[:2], 32], 2, "SAME"))
    return layer(8, tf.nn.conv2d(h, w[8], 1, "SAME"), False)

  def _run_steps(self, num_steps):
    total = tf.constant(0.0)
    for _ in tf.range(num_steps):
      with tf.GradientTape() as tape:
        logits = tf.cast(self._logits(self._x), tf.float32)
        log_px = tf.reduce_sum(self._x * logits - tf.nn.softplus(logits))
        loss = -log_px / self.batch_size
      grads = tape.gradient(loss, self._weights)
      self._optimizer.apply_gradients(zip(grads, self._weights))
      total += loss
    return total

  def run(self, num_steps):
    """Runs `num_steps` steps in one compiled call; returns the sum of
    their losses, -log p(x | z) per example, each before its update."""
    loss = float(self._steps(tf.constant(num_steps)).numpy())
    if not np.isfinite(loss):
      raise FloatingPointError(f"kernel floor {self._network}: loss {loss}")
    return loss

  def examples_per_sec(self, num_steps):
    """Times `num_steps` steps in one compiled call."""
    start = time.perf_counter()
    self.run(num_steps)
    seconds = time.perf_counter() - start
    return num_steps * self.batch_size / seconds


def _case(name, floors, reference, reference_name, tfvae, steps,
          repetitions):
  """Times both floors, the reference and tfvae side by side; returns the
  two ceiling rows and tfvae's share of the tighter floor."""
  kernels, model = floors
  racers = {"kernels": kernels, "model": model, reference_name: reference,
            "tfvae": tfvae}
  for floor in floors:
    floor.examples_per_sec(2)
  medians = timing.alternate(
      {n: (lambda r=r: r.examples_per_sec(steps)) for n, r in racers.items()},
      repetitions)
  note = ("tfvae = the floor: {}; ratio = the most any step on these "
          "kernels can gain")
  return [
      Row.compare(f"ceiling {name} vs {reference_name}", medians["kernels"],
                  medians[reference_name], "examples/s", reference_name,
                  note=note.format("matmuls/convs, likelihood, RMSProp")),
      Row.compare(f"ceiling {name} + biases, activations vs "
                  f"{reference_name}", medians["model"],
                  medians[reference_name], "examples/s", reference_name,
                  note=note.format("the same + biases, activations")),
      Row.compare(f"floor share {name}", medians["tfvae"], medians["model"],
                  "examples/s", "floor + biases, activations",
                  note="tfvae's real step / the tighter floor"),
  ]


def _floors(network, images, batch, hidden, dtype="float32"):
  return tuple(KernelFloor(network, images, batch, hidden, dtype, activations)
               for activations in (False, True))


def run(dataset, settings):
  """Yields the ceiling rows of the issue-17 targets that are not met."""
  images = contenders_lib.float_images(dataset.train)
  repetitions = settings.repetitions
  hidden = settings.hidden_size
  small, large = settings.mlp_batches[0], settings.mlp_batches[-1]

  logging.info("kernel floor: mlp b%d float32 vs the TF1 session", small)
  steps = max(1, settings.mlp_examples // small)
  tfvae = contenders_lib.TfvaeTraining(dataset, "mlp", small, hidden)
  tfvae.run(min(steps, 2 * tfvae.config.steps_per_call))
  tf1 = contenders_lib.Tf1Training(images, small, hidden,
                                   contenders_lib.mlp_weights(tfvae.model))
  tf1.run(2)
  yield from _case(f"mlp b{small} float32",
                   _floors("mlp", images, small, hidden), tf1, "tf1 session",
                   tfvae, steps, repetitions)
  tf1.reference.close()

  logging.info("kernel floor: mlp b%d bfloat16 vs tfvae float32", large)
  steps = max(1, settings.mlp_examples // large)
  float32 = contenders_lib.TfvaeTraining(dataset, "mlp", large, hidden)
  mixed = contenders_lib.TfvaeTraining(dataset, "mlp", large, hidden,
                                       precision="mixed_bfloat16")
  for racer in (float32, mixed):
    racer.run(min(steps, 2 * racer.config.steps_per_call))
  yield from _case(f"mlp b{large} mixed_bfloat16",
                   _floors("mlp", images, large, hidden, "bfloat16"),
                   float32, "tfvae float32", mixed, steps, repetitions)

  if settings.conv:
    batch = settings.conv_batches[-1]
    logging.info("kernel floor: conv b%d bfloat16 vs keras fit "
                 "mixed_bfloat16", batch)
    steps = max(1, min(settings.conv_examples // batch,
                       len(images) // batch - settings.warmup_steps - 1))
    mixed = contenders_lib.TfvaeTraining(dataset, "conv", batch, hidden,
                                         precision="mixed_bfloat16")
    mixed.run(min(steps, 2 * mixed.config.steps_per_call))
    keras = contenders_lib.KerasTraining(
        images, "conv", batch, hidden, mixed.model, settings.warmup_steps,
        policy="mixed_bfloat16")
    keras.examples_per_sec(1)
    yield from _case(f"conv b{batch} mixed_bfloat16",
                     _floors("conv", images, batch, hidden, "bfloat16"),
                     keras, "keras fit mixed_bfloat16", mixed, steps,
                     repetitions)
