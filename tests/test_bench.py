"""Tests of the benchmark suite: the references compute tfvae's loss, the
step's feeds agree, and `python -m bench` runs and prints every row."""
import json
import os
import subprocess
import sys

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from bench import ceilings
from bench import contenders
from bench import flops as flops_lib
from bench import keras_reference
from bench import suite
from bench import tf1_reference
from tfvae import config as config_lib
from tfvae import data
from tfvae import input_pipeline
from tfvae import launch
from tfvae import models
from tfvae import objectives
from tfvae import optimizers

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SHAPE = (28, 28, 1)


class _FixedNoise:
  """Stands in for `objectives.ExampleNoise` with given Normal noise."""

  def __init__(self, epsilon):
    self._epsilon = tf.constant(epsilon)

  def normal(self, shape):
    del shape
    return self._epsilon


def _batch(size, seed=0):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, size=(size, *_SHAPE)).astype(np.float32)
  return images / 255.0, rng.standard_normal((size, 2)).astype(np.float32)


def _tfvae_loss(model, images, epsilon):
  loss, _ = objectives.ElboObjective()(model, tf.constant(images),
                                       _FixedNoise(epsilon))
  return float(tf.reduce_mean(loss))


def _numpy_mlp_loss(weights, images, epsilon):
  """The MLP VAE's mean -ELBO written out in NumPy (float64)."""
  ew1, eb1, ew2, eb2, dw1, db1, dw2, db2 = [w.astype(np.float64)
                                            for w in weights]
  x = images.reshape(len(images), -1).astype(np.float64)
  loc, raw = np.split(np.tanh(x @ ew1 + eb1) @ ew2 + eb2, 2, axis=1)
  scale = np.logaddexp(0.0, raw) + 1e-5
  z = loc + scale * epsilon
  logits = np.tanh(z @ dw1 + db1) @ dw2 + db2
  # -log Bernoulli(x | sigmoid(l)) = softplus(l) - x * l
  distortion = np.sum(np.logaddexp(0.0, logits) - x * logits, axis=1)
  rate = 0.5 * np.sum(loc**2 + scale**2 - 1 - 2 * np.log(scale), axis=1)
  return np.mean(distortion + rate)


def _small_dataset(n=96):
  rng = np.random.default_rng(3)
  images = rng.integers(0, 256, size=(n, *_SHAPE), dtype=np.uint8)
  split = data.Split(images, np.zeros(n, np.int64))
  return data.Dataset(name="fashion_mnist", train=split, test=split,
                      class_names=tuple(str(i) for i in range(10)),
                      source="test")


class ReferenceLossTest(tf.test.TestCase, parameterized.TestCase):

  def test_tf1_session_computes_tfvaes_loss(self):
    tf.random.set_seed(1)
    model = models.VAE(_SHAPE, 2, "mlp", (32,))
    images, epsilon = _batch(8)
    weights = contenders.mlp_weights(model)
    reference = tf1_reference.Tf1MlpVae(784, 32, 2)
    reference.set_weights(weights)
    got = reference.compute_loss(images.reshape(8, -1), epsilon)
    reference.close()
    expected = _numpy_mlp_loss(weights, images, epsilon)
    self.assertAllClose(expected, _tfvae_loss(model, images, epsilon),
                        rtol=1e-5)
    self.assertAllClose(expected, got, rtol=1e-5)

  @parameterized.named_parameters(("mlp", "mlp"), ("conv", "conv"))
  def test_keras_model_computes_tfvaes_loss(self, network):
    tf.random.set_seed(2)
    model = models.VAE(_SHAPE, 2, network, (32,),
                       "tanh" if network == "mlp" else "relu")
    vae, generator = keras_reference.build(network, _SHAPE, 2, 32)
    keras_reference.copy_weights_from_tfvae(vae, model)
    images, epsilon = _batch(4)
    self.assertAllClose(_tfvae_loss(model, images, epsilon),
                        float(vae.negative_elbo(images, epsilon)), rtol=1e-5)
    self.assertAllClose(model.decoder.outputs(epsilon)["mean"],
                        generator(epsilon), atol=1e-6)

  def test_keras_copy_refuses_other_shapes(self):
    model = models.VAE(_SHAPE, 2, "mlp", (32,))
    vae, _ = keras_reference.build("mlp", _SHAPE, 2, 16)
    with self.assertRaisesRegex(ValueError, "differ in shape"):
      keras_reference.copy_weights_from_tfvae(vae, model)


class FlopsTest(tf.test.TestCase):

  def test_mlp_count(self):
    layers = flops_lib.mlp_vae_layers(_SHAPE, (512,), 2)
    forward = 784 * 512 + 512 * 4 + 2 * 512 + 512 * 784
    # Weight gradients of all layers, input gradients of all but the first.
    self.assertEqual(2 * (forward + forward + forward - 784 * 512),
                     flops_lib.training_flops(layers))
    self.assertEqual(2 * forward, flops_lib.forward_flops(layers))

  def test_conv_count_matches_the_models_weights(self):
    """MACs per layer = kernel entries x output positions (input positions
    for the transposed conv), from the model's actual weights."""
    model = models.VAE(_SHAPE, 2, "conv", activation="relu")
    kernels = [v for net in (model.encoder.net, model.decoder.net)
               for v in keras_reference._ordered_variables(net)[::2]]  # pylint: disable=protected-access
    positions = [784, 196, 196, 196, 1, 1, 1, 196, 784]
    expected = [int(np.prod(k.shape)) * p for k, p in zip(kernels, positions)]
    layers = flops_lib.conv_vae_layers(_SHAPE, 2)
    self.assertEqual(expected, [l.macs for l in layers])
    self.assertEqual([False] + [True] * 8, [l.input_grad for l in layers])


class TrainingFeedTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(("one_per_call", 1), ("four_per_call", 4))
  def test_device_feed_equals_tf_data_feed(self, steps_per_call):
    """Same batches, same noise: the two feeds train identically, across
    an epoch boundary (6 steps per epoch here)."""
    dataset = _small_dataset()
    losses, weights = {}, {}
    for on_device, spc in ((False, 1), (True, steps_per_call)):
      tf.random.set_seed(0)
      contender = contenders.TfvaeTraining(dataset, "mlp", 16, 8,
                                           data_on_device=on_device,
                                           steps_per_call=spc)
      self.assertEqual(on_device, contender.train_step.data_on_device)
      losses[on_device] = [contender.run(n) for n in (4, 5)]
      weights[on_device] = [v.numpy() for v in contender.model.variables]
      self.assertEqual(9, int(contender.trainer.step))
    self.assertAllClose(losses[False], losses[True], rtol=1e-6)
    for a, b in zip(weights[False], weights[True]):
      self.assertAllClose(a, b, rtol=1e-6, atol=1e-7)

  def test_fused_update_and_log_prob_train_as_the_former_ones(self):
    """The mechanism rows' baseline (tf_keras' RMSprop ops, TFP's log-prob)
    and the fused defaults take the same steps, up to rounding."""
    dataset = _small_dataset()
    losses, weights = {}, {}
    for former in ((), ("optimizer", "likelihood")):
      tf.random.set_seed(0)
      contender = contenders.TfvaeTraining(dataset, "mlp", 16, 8,
                                           former=former, steps_per_call=3)
      uses_fused = isinstance(contender.trainer.optimizer,
                              optimizers.RMSProp)
      self.assertEqual(not former, uses_fused)
      losses[former] = [contender.run(n) for n in (4, 5)]
      weights[former] = [v.numpy() for v in contender.model.variables]
    first, second = list(losses)
    self.assertAllClose(losses[first], losses[second], rtol=1e-5)
    for a, b in zip(weights[first], weights[second]):
      self.assertAllClose(a, b, rtol=1e-4, atol=1e-5)

  def test_device_runner_starts_mid_epoch_at_the_data_sets_batch(self):
    dataset = _small_dataset()
    contender = contenders.TfvaeTraining(dataset, "mlp", 16, 8)
    train_step = contender.train_step
    order = train_step.epoch_order(2)
    expected = input_pipeline.train_dataset(train_step.train_split, 16, 0, 2,
                                            skip_batches=3)
    first = next(iter(expected))["image"].numpy()
    self.assertAllEqual(dataset.train.images[order[48:64]], first)

  def test_resumed_run_equals_uninterrupted_run(self):
    dataset = _small_dataset()
    config = config_lib.Config(epochs=2, batch_size=16, hidden_sizes=(8,),
                               save_every_steps=4, log_every_steps=10**6)
    straight = os.path.join(self.get_temp_dir(), "straight")
    resumed = os.path.join(self.get_temp_dir(), "resumed")
    _, records = launch.run(config, straight, dataset=dataset)
    launch.run(config.replace(epochs=1), resumed, dataset=dataset)
    _, more = launch.run(config, resumed, dataset=dataset)
    self.assertEqual(records[-1]["step"], more[-1]["step"])
    self.assertAllClose(records[-1]["train_loss"], more[-1]["train_loss"],
                        rtol=1e-6)
    self.assertAllClose(records[-1]["test_elbo"], more[-1]["test_elbo"],
                        rtol=1e-6)

  def test_defaults_use_the_fast_feed(self):
    config = config_lib.Config()
    self.assertGreater(config.steps_per_call, 1)
    self.assertFalse(config.jit)  # XLA changes the rounding of results.
    contender = contenders.TfvaeTraining(_small_dataset(), "mlp", 16, 8)
    self.assertTrue(contender.train_step.data_on_device)


class CreditedWorkTest(tf.test.TestCase):
  """Every contender of every row does the work it is credited with,
  counted independently of the contender's own bookkeeping."""

  def test_training_contenders_credit_the_steps_they_ran(self):
    dataset = _small_dataset()  # 96 images: 6 batches of 16 per epoch
    images = contenders.float_images(dataset.train)
    ours = contenders.TfvaeTraining(dataset, "mlp", 16, 8)
    tf1 = contenders.Tf1Training(images, 16, 8, contenders.mlp_weights(
        ours.model))
    tf1_calls = []
    original = tf1.reference.train_step
    tf1.reference.train_step = lambda b: (tf1_calls.append(len(b)),
                                          original(b))
    keras = contenders.KerasTraining(images, "mlp", 16, 8, ours.model,
                                     warmup_steps=2)
    # Training rows: 10 steps asked, across an epoch boundary.
    before = int(ours.trainer.optimizer.iterations)
    self.assertGreater(ours.examples_per_sec(10), 0)
    self.assertEqual(ours.timed_steps, 10)
    self.assertEqual(int(ours.trainer.optimizer.iterations) - before, 10)
    self.assertGreater(tf1.examples_per_sec(10), 0)
    self.assertEqual(tf1.timed_steps, 10)
    self.assertEqual(tf1_calls, [16] * 10)
    tf1.reference.close()
    # fit gets the 6 batches the images hold: 2 warm-up, 4 timed, and is
    # credited with 4, not 10.
    before = int(keras.vae.optimizer.iterations)
    self.assertGreater(keras.examples_per_sec(10), 0)
    self.assertEqual(int(keras.vae.optimizer.iterations) - before, 6)
    self.assertEqual(keras.timed_steps, 4)
    before = int(keras.vae.optimizer.iterations)
    keras.examples_per_sec(3)
    self.assertEqual(int(keras.vae.optimizer.iterations) - before, 5)
    self.assertEqual(keras.timed_steps, 3)

  def test_mechanism_variants_credit_the_steps_they_ran(self):
    dataset = _small_dataset()
    for options in (dict(data_on_device=False, steps_per_call=1,
                         former=("optimizer", "likelihood")),
                    dict(data_on_device=False, steps_per_call=4),
                    dict(data_on_device=True, steps_per_call=4),
                    dict(data_on_device=True, steps_per_call=4, jit=True)):
      contender = contenders.TfvaeTraining(dataset, "mlp", 16, 8, **options)
      contender.run(2)
      before = int(contender.trainer.optimizer.iterations)
      contender.examples_per_sec(9)
      self.assertEqual(contender.timed_steps, 9, options)
      self.assertEqual(
          int(contender.trainer.optimizer.iterations) - before, 9, options)

  def test_keras_needs_a_batch_to_time(self):
    images = contenders.float_images(_small_dataset(32).train)
    model = models.VAE(_SHAPE, 2, "mlp", (8,))
    keras = contenders.KerasTraining(images, "mlp", 16, 8, model,
                                     warmup_steps=2)
    with self.assertRaisesRegex(ValueError, "none left to time"):
      keras.examples_per_sec(5)

  def test_decode_contenders_decode_every_row_of_z(self):
    dataset = _small_dataset()
    model = models.VAE(_SHAPE, 2, "mlp", (8,))
    settings = suite.Settings(hidden_size=8)
    make, close = suite.decode_contenders(model, dataset, settings)
    z = np.random.default_rng(4).standard_normal([5, 2]).astype(np.float32)
    weights = [w.astype(np.float64) for w in contenders.mlp_weights(model)]
    _, _, _, _, dw1, db1, dw2, db2 = weights
    logits = np.tanh(z.astype(np.float64) @ dw1 + db1) @ dw2 + db2
    want = (1 / (1 + np.exp(-logits))).reshape(5, -1)
    calls = make(z, 5)
    self.assertCountEqual(calls, ("tfvae", "tf1 session", "keras model",
                                  "keras predict", "identity signature"))
    for name, call in calls.items():
      got = np.asarray(call())
      if name == "identity signature":
        self.assertAllEqual(got, z)
      else:
        self.assertAllClose(got.reshape(5, -1), want, rtol=1e-5, atol=1e-6,
                            msg=name)
    close()

  def test_device_feed_gathers_every_batch_of_the_step(self):
    small = _small_dataset()
    split = data.Split(small.train.images, np.arange(96) % 10)
    dataset = data.Dataset(name="fashion_mnist", train=split, test=split,
                           class_names=small.class_names, source="test")
    contender = contenders.TfvaeTraining(dataset, "mlp", 16, 8)
    feed = suite.device_feed(contender)
    order = np.random.default_rng(
        (contenders.SEED * 1_000_003) % 2**63).permutation(96)
    for batches in (1, 4, 6):
      seen = order[:16 * batches]
      want = (int(np.sum(dataset.train.images[seen], dtype=np.int64))
              + int(np.sum(dataset.train.labels[seen])))
      self.assertEqual(feed(batches), want)
    with self.assertRaisesRegex(ValueError, "does not keep the data"):
      suite.device_feed(contenders.TfvaeTraining(dataset, "mlp", 16, 8,
                                                 data_on_device=False))


class KernelFloorTest(tf.test.TestCase, parameterized.TestCase):
  """The floor computes what it claims: the model's matmuls (and biases and
  tanh) and the Bernoulli log-likelihood, against NumPy in float64."""

  @parameterized.parameters(False, True)
  def test_mlp_floor_loss_is_the_numpy_negative_log_likelihood(
      self, activations):
    images = np.random.default_rng(0).random([6, 4, 4, 1]).astype(np.float32)
    floor = ceilings.KernelFloor("mlp", images, 4, 8, activations=activations)
    w = [v.numpy().astype(np.float64) for v in floor._weights]  # pylint: disable=protected-access
    x = images[:4].reshape(4, -1).astype(np.float64)
    act = np.tanh if activations else (lambda y: y)
    bias = ((lambda i, y: y + w[4 + i]) if activations
            else (lambda i, y: y))
    h = act(bias(0, x @ w[0]))
    z = bias(1, h @ w[1])[:, :contenders.LATENT_SIZE]
    logits = bias(3, act(bias(2, z @ w[2])) @ w[3])
    log_px = np.sum(x * logits - np.logaddexp(0.0, logits)) / 4
    self.assertAllClose(-log_px, floor.run(1), rtol=1e-5)
    # The update moved every weight matrix (RMSProp's first step moves a
    # weight with a gradient by about 3 times the learning rate).
    for before, after in zip(w, floor._weights):  # pylint: disable=protected-access
      self.assertGreater(np.abs(after.numpy() - before).max(), 1e-3)

  def test_conv_floor_runs_in_bfloat16_close_to_float32(self):
    images = np.random.default_rng(1).random([3, 8, 8, 1]).astype(np.float32)
    losses = [ceilings.KernelFloor("conv", images, 2, 8, dtype,
                                   activations=True).run(1)
              for dtype in ("float32", "bfloat16")]
    self.assertAllClose(losses[0], losses[1], rtol=2e-2)


class BenchCliTest(tf.test.TestCase):

  def test_tiny_suite_prints_every_row_as_json(self):
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--json",
         "--train_examples=128"], cwd=_ROOT, capture_output=True, text=True,
        timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    self.assertEqual(0, result.returncode, result.stderr[-2000:])
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    names = [r["name"] for r in rows]
    for expected in ("train mlp b16 vs tf1 session",
                     "train mlp b16 vs keras fit",
                     "train conv b8 vs keras fit",
                     "decode b1 median vs tf1 session",
                     "decode b1 p99 vs keras predict",
                     "decode b1 median vs keras model",
                     "decode b8 vs keras model",
                     "decode b8 vs tf1 session",
                     "input pipeline b16 vs training step",
                     "train mlp b16 mixed_bfloat16 vs tfvae float32",
                     "train conv b8 mixed_bfloat16 vs keras fit float32",
                     "train conv b8 mixed_bfloat16 vs keras fit "
                     "mixed_bfloat16",
                     "generator serving_default float32 b1 median vs tf1 "
                     "session",
                     "generator serving_default bfloat16 b8 vs tf1 session",
                     "generator float32 in tf1 session b1 median vs tf1 "
                     "session",
                     "evaluate k=10 test split bfloat16 vs 10 min target",
                     "evaluate k=10 bfloat16 vs float32",
                     "evaluate k=10 float32 vs former chunked path",
                     "ceiling mlp b16 float32 vs tf1 session",
                     "ceiling mlp b16 float32 + biases, activations vs tf1 "
                     "session",
                     "ceiling mlp b16 mixed_bfloat16 vs tfvae float32",
                     "floor share mlp b16 mixed_bfloat16",
                     "ceiling conv b8 mixed_bfloat16 + biases, activations "
                     "vs keras fit mixed_bfloat16"):
      self.assertIn(expected, names)
    self.assertTrue(any(n.startswith("flops mlp b16 (") for n in names))
    self.assertTrue(any(n.startswith("mechanism ") for n in names))
    self.assertIn("decode b1 median vs identity signature", names)
    self.assertIn("setting mlp b16: oneDNN off", names)
    for row in rows:
      self.assertContainsSubset({"name", "tfvae", "reference", "unit",
                                 "ratio"}, row)
      self.assertGreater(row["tfvae"], 0)
      self.assertGreater(row["reference"], 0)
      # Times and memory are better lower, rates higher.
      lower_is_better = row["unit"] in ("ms", "MiB")
      want = (row["reference"] / row["tfvae"] if lower_is_better
              else row["tfvae"] / row["reference"])
      self.assertAllClose(want, row["ratio"], rtol=1e-6)


if __name__ == "__main__":
  tf.test.main()
