"""Tests of the importance-weighted NLL estimate and the evaluation metrics.

The estimator is checked against a linear-Gaussian model, whose marginal
log p(x) is known in closed form:

  p(z) = N(0, I),  p(x | z) = N(W z + b, s^2 I)  =>  p(x) = N(b, W W^T + s^2 I)
"""
import math

from absl.testing import parameterized
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import config as config_lib
from tfvae import errors
from tfvae import evaluation
from tfvae import kinds
from tfvae import objectives
from tfvae import precision
from tfvae import presets
from tfvae import rng
from tfvae import trained
from tests import util

tfd = tfp.distributions

_LATENT = 2
_PIXELS = 4
_NOISE_SCALE = 0.3
# The approximate posterior's scale is this times the exact one's (diagonal):
# the ELBO and the small-k bounds are then strictly below log p(x).
_INFLATION = 1.6


class LinearGaussian(tf.Module):
  """p(z) = N(0, I), p(x | z) = N(W z + b, s^2 I); images [B, 1, 1, P].

  Its approximate posterior has the exact posterior's mean but an inflated,
  diagonal scale, so it is not the true posterior.
  """

  def __init__(self, weights, bias, noise_scale, name=None):
    super().__init__(name=name)
    self.latent_size = weights.shape[1]
    self.image_shape = (1, 1, weights.shape[0])
    self.weights = np.asarray(weights, np.float64)
    self.bias = np.asarray(bias, np.float64)
    self.noise_scale = float(noise_scale)
    precision = (np.eye(self.latent_size)
                 + self.weights.T @ self.weights / noise_scale**2)
    self._posterior_cov = np.linalg.inv(precision)
    self._w = tf.constant(weights, tf.float32)
    self._b = tf.constant(bias, tf.float32)

  def prior(self):
    return tfd.MultivariateNormalDiag(loc=tf.zeros([self.latent_size]))

  def approx_posterior(self, images):
    x = tf.reshape(images, [-1, self.image_shape[-1]]) - self._b
    gain = tf.constant(self._posterior_cov @ self.weights.T
                       / self.noise_scale**2, tf.float32)
    loc = tf.matmul(x, gain, transpose_b=True)
    scale = tf.constant(_INFLATION * np.sqrt(np.diag(self._posterior_cov)),
                        tf.float32)
    return tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale + 0 * loc)

  def likelihood(self, z):
    loc = tf.matmul(z, self._w, transpose_b=True) + self._b
    return tfd.Independent(
        tfd.Normal(tf.reshape(loc, [-1, *self.image_shape]),
                   self.noise_scale), reinterpreted_batch_ndims=3)

  def true_log_px(self, images):
    """Closed-form log p(x) in float64 numpy, [B]."""
    x = np.asarray(images, np.float64).reshape(len(images), -1) - self.bias
    cov = (self.weights @ self.weights.T
           + self.noise_scale**2 * np.eye(len(self.bias)))
    _, logdet = np.linalg.slogdet(cov)
    mahalanobis = np.einsum("bi,bi->b", x, np.linalg.solve(cov, x.T).T)
    return -0.5 * (len(self.bias) * math.log(2 * math.pi) + logdet
                   + mahalanobis)


def _linear_gaussian(dead_dimension=False):
  rng = np.random.default_rng(3)
  weights = rng.normal(scale=0.15, size=(_PIXELS, _LATENT)).astype(np.float32)
  if dead_dimension:
    weights[:, 1] = 0.0
  bias = np.full([_PIXELS], 0.5, np.float32)
  return LinearGaussian(weights, bias, _NOISE_SCALE)


def _images(model, count, seed=0):
  """uint8 images drawn from the model's p(x), clipped to 0..255."""
  rng = np.random.default_rng(seed)
  z = rng.normal(size=(count, model.latent_size))
  x = z @ model.weights.T + model.bias + model.noise_scale * rng.normal(
      size=(count, _PIXELS))
  pixels = np.clip(np.round(x * 255), 0, 255).astype(np.uint8)
  return pixels.reshape(count, 1, 1, _PIXELS)


class ChunkedLogMeanExpTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(1, 3, 10, 64)
  def test_matches_logsumexp_of_all_values(self, chunk):
    values = np.random.default_rng(0).normal(scale=300.0, size=(64, 5))
    values[:, 0] -= 1e4
    expected = (np.logaddexp.reduce(values, axis=0) - math.log(64))
    accumulator = evaluation.ChunkedLogMeanExp(5)
    for start in range(0, 64, chunk):
      accumulator.add(values[start:start + chunk])
    self.assertAllClose(expected, accumulator.result(), rtol=1e-12)


class ImportanceWeightedEstimateTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.model = _linear_gaussian()
    self.pixels = _images(self.model, 40)
    self.x = self.pixels.astype(np.float32) / 255.0
    self.truth = self.model.true_log_px(self.x)
    self.native = trained.NativeModel(self.model)

  def _estimate(self, k, chunk, seed=0):
    return evaluation.iwae_in_chunks(
        lambda start, c: self.native.log_weights(self.x, seed, 0, start, c),
        k, chunk, len(self.x))

  def test_converges_to_closed_form_log_px_as_k_grows(self):
    gaps = []
    for k in (1, 10, 100, 1000):
      gaps.append(float(np.mean(self.truth - self._estimate(k, 250))))
    # Each bound is below the truth on average and the gap shrinks with k.
    for gap in gaps:
      self.assertGreater(gap, -0.02)
    for smaller_k, larger_k in zip(gaps, gaps[1:]):
      self.assertLess(larger_k, smaller_k + 0.01)
    self.assertGreater(gaps[0], 0.1)  # the posterior is not exact
    self.assertLess(abs(gaps[-1]), 0.02)

  def test_elbo_below_estimate_below_truth(self):
    draws = 50
    tiled = tf.tile(tf.constant(self.x), [draws, 1, 1, 1])
    mean_elbo = float(tf.reduce_mean(objectives.elbo(
        self.model, tiled, noise=tf.random.stateless_normal(
            [draws * len(self.x), _LATENT], [1, 2])).elbo))
    estimate = float(np.mean(self._estimate(100, 100)))
    self.assertLess(mean_elbo, estimate)
    self.assertLess(estimate, float(np.mean(self.truth)) + 0.01)

  def test_chunked_equals_unchunked_for_the_same_noise(self):
    k = 20
    chunked = self._estimate(k, 7)
    whole = self._estimate(k, k)
    noise = rng.importance_noise(0, 0, 0, k, len(self.x), _LATENT)
    direct = objectives.iwae_bound(self.model, tf.constant(self.x), k,
                                   noise=noise).numpy()
    self.assertAllClose(whole, chunked, atol=1e-5)
    self.assertAllClose(direct, chunked, atol=1e-4)

  def test_seed_changes_the_noise(self):
    self.assertNotAllClose(self._estimate(5, 5, seed=0),
                           self._estimate(5, 5, seed=1))


class OneCallEstimateTest(tf.test.TestCase, parameterized.TestCase):
  """`NativeModel.log_px`: the encoder once, every chunk in one call."""

  def test_equals_the_chunked_log_weights_and_converges(self):
    model = _linear_gaussian()
    x = _images(model, 40).astype(np.float32) / 255.0
    native = trained.NativeModel(model)
    for k, chunk in ((20, 7), (20, 20), (1, 5)):
      chunked = evaluation.iwae_in_chunks(
          lambda start, c: native.log_weights(x, 3, 2, start, c), k, chunk,
          len(x))
      self.assertAllClose(native.log_px(x, 3, 2, k, chunk), chunked,
                          atol=1e-5)
    gap = model.true_log_px(x) - native.log_px(x, 0, 0, 1000, 300)
    self.assertLess(abs(float(np.mean(gap))), 0.02)

  def _vae(self, network):
    config = config_lib.Config(network=network, latent_dim=3,
                               hidden_sizes=(16,), image_shape=(28, 28, 1))
    tf.random.set_seed(1)
    model = kinds.build_model(config)
    # Larger weights than at initialisation: the posteriors spread, and
    # the samples' weights differ by many nats.
    for v in model.trainable_variables:
      v.assign(v * 3.0 + 0.01)
    images = util.small_fashion_mnist(64, 8).test.images
    return model, images.astype(np.float32) / 255.0

  @parameterized.named_parameters(("mlp", "mlp"), ("conv", "conv"))
  def test_bernoulli_vae_estimate_matches_numpy(self, network):
    model, x = self._vae(network)
    k, seed, batch_index = 9, 5, 1
    got = trained.NativeModel(model).log_px(x, seed, batch_index, k, 4)
    q = model.approx_posterior(x)
    loc, scale = q.mean().numpy(), q.stddev().numpy()
    eps = rng.importance_noise(seed, batch_index, 0, k, len(x), 3).numpy()
    z = loc + scale * eps
    logits = model.decoder.params(z.reshape(-1, 3).astype(np.float32))
    log_w = (-util.bce(logits, np.tile(x, [k, 1, 1, 1])).reshape(k, -1)
             + util.log_normal(z, 0.0, 1.0) - util.log_normal(z, loc, scale))
    want = np.logaddexp.reduce(log_w, axis=0) - math.log(k)
    self.assertAllClose(got, want, rtol=1e-5, atol=1e-3)

  def test_bfloat16_estimate_is_close_to_float32(self):
    model, x = self._vae("mlp")
    want = trained.NativeModel(model).log_px(x, 0, 0, 50, 25)
    precision.set_compute_dtype(model, "bfloat16")
    got = trained.NativeModel(model).log_px(x, 0, 0, 50, 25)
    self.assertAllClose(got, want, rtol=2e-3)
    self.assertNotAllClose(got, want, rtol=1e-6, atol=0)


class EvaluateTest(tf.test.TestCase):

  def test_metrics_of_a_model_with_a_dead_dimension(self):
    model = _linear_gaussian(dead_dimension=True)
    pixels = _images(model, 60, seed=1)
    images = evaluation.Images(pixels, None, None, "linear-Gaussian draws")
    metrics = evaluation.evaluate(trained.NativeModel(model), images,
                                  num_importance_samples=500, chunk_size=64,
                                  batch_size=25, seed=0)
    truth = model.true_log_px(pixels.astype(np.float64) / 255.0)
    self.assertEqual(metrics["num_examples"], 60)
    self.assertAllClose(-np.mean(truth), metrics["nll"], atol=0.03)
    self.assertAllClose(metrics["nll"] / (_PIXELS * math.log(2)),
                        metrics["nll_bits_per_dim"])
    self.assertLess(metrics["elbo"], metrics["iwae_log_px"])
    # Dimension 1 does not reach x: its posterior mean is 0 for every x.
    self.assertEqual(metrics["active_units"], 1)
    self.assertLess(metrics["active_unit_variance"][1], 1e-10)
    self.assertGreater(metrics["active_unit_variance"][0],
                       evaluation.ACTIVE_UNIT_THRESHOLD)
    self.assertEqual(metrics["active_unit_threshold"], 0.01)
    # The per-dimension KLs add up to the rate, which TFP computes itself.
    self.assertAllClose(sum(metrics["kl_per_dimension"]), metrics["rate"],
                        rtol=1e-4)
    self.assertIn("nll", evaluation.format_table(metrics))

  def test_kl_per_dimension_matches_tfp(self):
    rng = np.random.default_rng(0)
    loc = rng.normal(size=(5, 3))
    scale = rng.uniform(0.1, 2.0, size=(5, 3))
    expected = tfd.kl_divergence(
        tfd.Normal(tf.constant(loc), tf.constant(scale)),
        tfd.Normal(tf.constant(0.0, tf.float64), 1.0)).numpy()
    self.assertAllClose(expected, evaluation.kl_per_dimension(loc, scale))

  def test_reconstruction_errors(self):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(3, 2, 2, 1)).astype(np.float32)
    logits = rng.normal(scale=4.0, size=(3, 2, 2, 1)).astype(np.float32)
    mean = tf.sigmoid(logits).numpy()
    expected_bce = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(
        labels=x, logits=logits), axis=[1, 2, 3]).numpy()
    mse, bce = evaluation.reconstruction_errors(
        x, {"mean": mean, "logits": logits})
    self.assertAllClose(np.mean((x - mean)**2, axis=(1, 2, 3)), mse)
    self.assertAllClose(expected_bce, bce, rtol=1e-5)
    _, bce_from_mean = evaluation.reconstruction_errors(x, {"mean": mean})
    self.assertAllClose(expected_bce, bce_from_mean, rtol=1e-4)

  def test_bad_sizes_are_one_line_errors(self):
    model = trained.NativeModel(_linear_gaussian())
    images = evaluation.Images(_images(model.model, 4), None, None, "x")
    for flag in ("num_importance_samples", "chunk_size", "batch_size"):
      kwargs = {flag: 0}
      with self.assertRaisesRegex(errors.TfvaeError,
                                  f"^--{flag}=0: must be at least 1$"):
        evaluation.evaluate(model, images, **kwargs)

  def test_images_of_another_shape_are_refused(self):
    model = trained.NativeModel(_linear_gaussian())
    images = evaluation.Images(np.zeros([2, 28, 28, 1], np.uint8), None,
                               None, "mnist test")
    with self.assertRaisesRegex(errors.TfvaeError, "do not fit the model"):
      evaluation.evaluate(model, images, 2)


class PresetTest(tf.test.TestCase):

  def test_iwae_preset_is_burda_et_al_table_1(self):
    config = config_lib.Config(**presets.get("iwae_mnist_1layer"))
    self.assertEqual(config.hidden_sizes, (200, 200))
    self.assertEqual(config.hidden_activation, "tanh")
    self.assertEqual(config.latent_dim, 50)
    self.assertEqual(config.likelihood, "bernoulli")
    self.assertEqual(config.binarize, "dynamic")
    self.assertEqual(config.dataset, "mnist")

  def test_explicit_flags_override_the_preset(self):
    defaults = config_lib.Config().to_dict()
    fields, explicit = presets.apply(
        "iwae_mnist_1layer", {**defaults, "dataset": "fashion_mnist",
                              "latent_dim": 3}, {"dataset", "latent_dim"})
    config = config_lib.Config(**fields)
    self.assertEqual(config.dataset, "fashion_mnist")
    self.assertEqual(config.latent_dim, 3)
    self.assertEqual(config.hidden_sizes, (200, 200))
    self.assertEqual(config.binarize, "dynamic")
    self.assertEqual(config.batch_size, 20)
    self.assertIn("hidden_sizes", explicit)
    self.assertEqual(presets.apply(None, defaults, set()), (defaults, set()))


if __name__ == "__main__":
  tf.test.main()
