"""Tests of tfvae.objectives: the KL, the ELBO and the importance bound."""
from absl.testing import parameterized
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import models
from tfvae import objectives
from tfvae import rng
from tests import util

tfd = tfp.distributions


def _model(seed=0, latent=2):
  tf.random.set_seed(seed)
  return models.VAE((6, 6, 1), latent_size=latent, hidden_sizes=(16,))


def _posterior(model, x):
  """(loc, scale) [B, D] of q(z | x), float64, from the encoder's outputs."""
  out = model.encoder.net(tf.reshape(x, [len(x), -1])).numpy()
  loc, raw_scale = np.split(out.astype(np.float64), 2, axis=-1)
  return loc, np.logaddexp(0, raw_scale) + 1e-5


def _log_weights(model, x, eps):
  """log p(x | z) + log p(z) - log q(z | x) [k, B] for eps [k, B, D], and
  log p(x | z) [k, B], in float64 numpy."""
  loc, scale = _posterior(model, x)
  z = loc + scale * eps
  k, b, d = eps.shape
  logits = model.decoder.net(tf.constant(z.reshape(k * b, d),
                                         tf.float32)).numpy()
  x_tiled = np.tile(np.reshape(x, [b, -1]), [k, 1])
  log_likelihood = -util.bce(logits, x_tiled).reshape(k, b)
  return (log_likelihood + util.log_normal(z, 0.0, 1.0)
          - util.log_normal(z, loc, scale)), log_likelihood


def _kl(loc, scale):
  return 0.5 * np.sum(scale**2 + loc**2 - 1 - 2 * np.log(scale), -1)


class ObjectiveTest(tf.test.TestCase, parameterized.TestCase):

  def test_analytic_kl_matches_monte_carlo(self):
    model = _model()
    x = tf.random.stateless_uniform([4, 6, 6, 1], [1, 1])
    q = model.approx_posterior(x)
    analytic = objectives.rate(q, model.prior(), None)
    loc, scale = _posterior(model, x)
    self.assertAllClose(analytic, _kl(loc, scale), rtol=1e-5)
    # log q(z) - log p(z) averaged over 200000 float64 draws of z ~ q.
    z = loc + scale * np.random.default_rng(3).standard_normal(
        (200_000, *loc.shape))
    log_ratio = (util.log_normal(z, loc, scale)
                 - util.log_normal(z, 0.0, 1.0))
    standard_error = log_ratio.std(axis=0) / np.sqrt(len(z))
    gap = np.abs(log_ratio.mean(axis=0) - analytic)
    self.assertTrue(np.all(gap <= 5 * standard_error), (gap, standard_error))

  def test_diagonal_normal_kl_against_float64_and_tfp(self):
    rng = np.random.default_rng(7)
    m_q, m_p = rng.normal(size=(5, 3)), rng.normal(size=3)
    s_q, s_p = np.exp(rng.normal(size=(5, 3))), np.exp(rng.normal(size=3))
    q = tfd.MultivariateNormalDiag(m_q.astype(np.float32),
                                   s_q.astype(np.float32))
    for loc, scale in ((np.zeros(3), np.ones(3)), (m_p, s_p)):
      p = (tfd.MultivariateNormalDiag(tf.zeros([3]))
           if not loc.any() else
           tfd.MultivariateNormalDiag(loc.astype(np.float32),
                                      scale.astype(np.float32)))
      want = np.sum(np.log(scale / s_q)
                    + (s_q**2 + (m_q - loc)**2) / (2 * scale**2) - 0.5, -1)
      got = objectives.rate(q, p, None)
      self.assertAllClose(got, want, rtol=1e-5)
      self.assertAllClose(got, tfd.kl_divergence(q, p), rtol=1e-5)

  def test_reparameterize_is_the_posteriors_affine_map(self):
    q = _model().approx_posterior(
        tf.random.stateless_uniform([4, 6, 6, 1], [2, 2]))
    noise = tf.random.stateless_normal([3, 4, 2], [5, 6])
    want = q.mean().numpy() + q.stddev().numpy() * noise.numpy()
    self.assertAllClose(objectives.reparameterize(q, noise), want,
                        rtol=1e-6)
    self.assertAllClose(objectives.reparameterize(q, noise),
                        q.bijector.forward(noise), rtol=1e-6)

  def test_monte_carlo_rate_when_kl_is_unknown(self):
    loc = np.array([[0.5, -1.0, 0.0], [2.0, 0.1, -0.3]])
    q = tfd.Independent(tfd.Logistic(loc.astype(np.float32), 0.7), 1)
    p = tfd.MultivariateNormalDiag(tf.zeros([3]))
    z = q.sample(seed=[1, 2])
    # log Logistic(z | m, s) = -u - 2 log(1 + exp(-u)) - log s, u = (z-m)/s.
    u = (z.numpy().astype(np.float64) - loc) / 0.7
    log_q = np.sum(-u - 2 * np.logaddexp(0, -u) - np.log(0.7), -1)
    want = log_q - util.log_normal(z.numpy(), 0.0, 1.0)
    self.assertAllClose(objectives.rate(q, p, z), want, rtol=1e-5)

  def test_elbo_terms_add_up_and_match_manual_computation(self):
    model = _model()
    x = tf.cast(tf.random.stateless_uniform([3, 6, 6, 1], [5, 6]) > 0.5,
                tf.float32)
    noise = tf.random.stateless_normal([3, 2], [7, 8])
    bound = objectives.elbo(model, x, noise=noise)
    self.assertAllClose(bound.elbo, -(bound.rate + bound.distortion))
    q = model.approx_posterior(x)
    z = q.mean() + q.stddev() * noise
    logits = model.decoder.params(z).numpy()
    xs = x.numpy()
    log_lik = np.sum(xs * -np.log1p(np.exp(-logits)) +
                     (1 - xs) * -np.log1p(np.exp(logits)), axis=(1, 2, 3))
    self.assertAllClose(bound.distortion, -log_lik, rtol=1e-5)

  def test_iwae_bound_matches_float64_log_mean_exp(self):
    model = _model(seed=2)
    x = tf.cast(tf.random.stateless_uniform([6, 6, 6, 1], [9, 9]) > 0.5,
                tf.float32)
    noise = tf.random.stateless_normal([50, 6, 2], [4, 4])
    log_w, _ = _log_weights(model, x.numpy(), noise.numpy())
    self.assertAllClose(
        objectives.log_importance_weights(model, x, 50, noise=noise), log_w,
        rtol=1e-5)
    peak = log_w.max(axis=0)
    want = peak + np.log(np.mean(np.exp(log_w - peak), axis=0))
    self.assertAllClose(objectives.iwae_bound(model, x, 50, noise=noise),
                        want, rtol=1e-5)

  def test_iwae_1_converges_to_the_analytic_elbo(self):
    model = _model(seed=3)
    x = tf.random.stateless_uniform([5, 6, 6, 1], [1, 2])
    draws = 4000
    noise = tf.random.stateless_normal([draws, 5, 2], [3, 3])
    iwae_1 = np.stack([
        objectives.iwae_bound(model, x, 1, noise=noise[i:i + 1]).numpy()
        for i in range(0, draws, 400)])  # a few single draws, as called
    log_w, log_likelihood = _log_weights(model, x.numpy(), noise.numpy())
    self.assertAllClose(iwae_1, log_w[::400], rtol=1e-5)
    # The analytic ELBO: E_q[log p(x | z)] - KL, the expectation over the
    # same draws; iwae_1 = log w averages to it as the draws grow.
    loc, scale = _posterior(model, x.numpy())
    elbo = log_likelihood.mean(axis=0) - _kl(loc, scale)
    standard_error = (log_w - log_likelihood).std(axis=0) / np.sqrt(draws)
    gap = np.abs(log_w.mean(axis=0) - elbo)
    self.assertTrue(np.all(gap <= 5 * standard_error), (gap, standard_error))
    # objectives.elbo with one of these draws: its analytic rate.
    bound = objectives.elbo(model, x, noise=noise[0])
    self.assertAllClose(bound.rate, _kl(loc, scale), rtol=1e-5)
    self.assertAllClose(bound.distortion, -log_likelihood[0], rtol=1e-5)

  def test_example_noise_does_not_depend_on_replicas(self):
    seed = tf.constant([4, 2], tf.int64)
    whole = rng.ExampleNoise(seed, 6)
    want_normal, want_uniform = whole.normal([3]), whole.uniform([2, 2])
    parts_normal, parts_uniform = [], []
    for start in (0, 2, 4):
      part = rng.ExampleNoise(seed, 6, start, 2)
      parts_normal.append(part.normal([3]))
      parts_uniform.append(part.uniform([2, 2]))
    self.assertAllEqual(tf.concat(parts_normal, 0), want_normal)
    self.assertAllEqual(tf.concat(parts_uniform, 0), want_uniform)
    self.assertNotAllClose(want_normal[:2], want_normal[2:4])


if __name__ == "__main__":
  tf.test.main()
