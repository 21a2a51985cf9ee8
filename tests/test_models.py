"""Tests of tfvae.models and tfvae.likelihoods: distributions and shapes."""
from absl.testing import parameterized
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import likelihoods
from tfvae import models
from tfvae import nets

tfd = tfp.distributions


def _mean_and_log_prob(likelihood, params, x):
  """The mean [B, H, W, C] and log p(x) [B] of a likelihood's raw
  parameters, in float64 numpy."""
  x = np.asarray(x, np.float64)
  sigmoid = lambda a: 1 / (1 + np.exp(-a))
  if likelihood == "bernoulli":
    log_prob = -(np.logaddexp(0, -params) * x
                 + np.logaddexp(0, params) * (1 - x))
    mean = sigmoid(params)
  elif likelihood == "continuous_bernoulli":
    # With lambda = sigmoid(eta): mean = 1 / (1 - exp(-eta)) - 1 / eta and
    # the normaliser C = eta / tanh(eta / 2).
    mean = 1 / (1 - np.exp(-params)) - 1 / params
    log_prob = (np.log(params / np.tanh(params / 2))
                - np.logaddexp(0, -params) * x
                - np.logaddexp(0, params) * (1 - x))
  else:
    if likelihood == "gaussian":
      loc, scale = sigmoid(params), np.full_like(params, 0.1)
    elif likelihood == "gaussian_identity":
      loc, scale = params, np.full_like(params, 0.1)
    elif likelihood.startswith("gaussian_log_variance"):
      raw_loc, raw_log_variance = np.split(params, 2, axis=-1)
      loc = (raw_loc if likelihood.endswith("identity")
             else sigmoid(raw_loc))
      log_variance = np.clip(raw_log_variance, -15, 15)
      mean = loc
      log_prob = -0.5 * (np.log(2 * np.pi) + log_variance
                         + (x - loc) ** 2 / np.exp(log_variance))
      return mean, log_prob.reshape(len(x), -1).sum(-1)
    else:
      raw_loc, raw_scale = np.split(params, 2, axis=-1)
      loc, scale = sigmoid(raw_loc), np.logaddexp(0, raw_scale) + 0.01
    mean = loc
    log_prob = (-0.5 * ((x - loc) / scale) ** 2 - np.log(scale)
                - 0.5 * np.log(2 * np.pi))
  return mean, log_prob.reshape(len(x), -1).sum(-1)


class ModelTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.product(network=["mlp", "conv"],
                         likelihood=list(likelihoods.NAMES))
  def test_distribution_shapes(self, network, likelihood):
    model = models.VAE((28, 28, 1), latent_size=3, network=network,
                       hidden_sizes=(16,), likelihood=likelihood)
    x = tf.random.uniform([5, 28, 28, 1])
    q = model.approx_posterior(x)
    self.assertIsInstance(q, tfd.MultivariateNormalDiag)
    self.assertEqual(q.batch_shape, [5])
    self.assertEqual(q.event_shape, [3])
    self.assertEqual(model.prior().event_shape, [3])
    self.assertEqual(model.prior().batch_shape, [])
    p = model.likelihood(q.sample(seed=[1, 2]))
    self.assertEqual(p.batch_shape, [5])
    self.assertEqual(p.event_shape, [28, 28, 1])
    self.assertEqual(p.log_prob(x).shape, [5])
    self.assertTrue(np.all(np.isfinite(p.log_prob(x).numpy())))
    z = tf.random.stateless_normal([5, 3], [3, 4]) * 2
    outputs = model.decoder.outputs(z)
    self.assertEqual(outputs["mean"].shape, [5, 28, 28, 1])
    params = model.decoder.params(z).numpy().astype(np.float64)
    want_mean, want_log_prob = _mean_and_log_prob(likelihood, params,
                                                  x.numpy())
    self.assertAllClose(outputs["mean"], want_mean, rtol=1e-4, atol=1e-6)
    self.assertAllClose(model.likelihood(z).mean(), want_mean, rtol=1e-4,
                        atol=1e-6)
    self.assertAllClose(model.likelihood(z).log_prob(x), want_log_prob,
                        rtol=1e-4)

  def test_bernoulli_log_prob_is_binary_cross_entropy(self):
    logits = tf.random.normal([2, 4, 4, 1], seed=3)
    x = tf.random.uniform([2, 4, 4, 1], seed=4)
    got = likelihoods.Bernoulli().distribution(logits).log_prob(x)
    p = 1 / (1 + np.exp(-logits.numpy()))
    want = np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=(1, 2, 3))
    self.assertAllClose(got, want, rtol=1e-5)

  def test_bernoulli_log_prob_stays_finite_for_confident_logits(self):
    logits = tf.fill([1, 2, 2, 1], 200.0)
    x = tf.zeros([1, 2, 2, 1])
    lp = likelihoods.Bernoulli().distribution(logits).log_prob(x)
    self.assertAllClose(lp, [-800.0])

  def test_bernoulli_log_prob_and_gradient_match_float64_everywhere(self):
    rng = np.random.default_rng(5)
    logits = np.concatenate([rng.normal(size=60) * 4,
                             [-90., -30., -1e-3, 0., 1e-3, 30., 90.]])
    logits = logits.astype(np.float32).reshape(1, -1, 1, 1)
    x = rng.uniform(size=logits.shape).astype(np.float32)
    x.flat[-7:] = [0., 1., 0.5, 1., 0., 0., 1.]
    l64, x64 = logits.astype(np.float64), x.astype(np.float64)
    # log sigmoid(l) = -logaddexp(0, -l), log(1 - sigmoid(l)) = -logaddexp(0,
    # l): the textbook form, stable in float64.
    want = np.sum(-x64 * np.logaddexp(0, -l64)
                  - (1 - x64) * np.logaddexp(0, l64))
    want_grad = x64 - 1 / (1 + np.exp(-l64))
    logits_t = tf.constant(logits)
    with tf.GradientTape() as tape:
      tape.watch(logits_t)
      got = likelihoods.Bernoulli().distribution(logits_t).log_prob(x)
    self.assertAllClose(got, [want], rtol=1e-6)
    self.assertAllClose(tape.gradient(got, logits_t), want_grad, atol=1e-6)
    tfp_lp = tfd.Independent(tfd.Bernoulli(logits=logits_t, dtype=tf.float32),
                             3).log_prob(x)
    self.assertAllClose(got, tfp_lp, rtol=1e-6)

  def test_gaussian_learned_scale_has_floor(self):
    lik = likelihoods.GaussianLearned(min_scale=0.01)
    params = tf.concat([tf.zeros([1, 2, 2, 1]), tf.fill([1, 2, 2, 1], -1e4)],
                       -1)
    out = lik.outputs(params)
    self.assertAllClose(out["scale"], np.full([1, 2, 2, 1], 0.01))
    self.assertAllClose(out["mean"], np.full([1, 2, 2, 1], 0.5))

  @parameterized.named_parameters(
      ("sigmoid", "gaussian_log_variance", lambda a: 1 / (1 + np.exp(-a))),
      ("identity", "gaussian_log_variance_identity", lambda a: a))
  def test_gaussian_log_variance_matches_numpy(self, name, mean_fn):
    # r2 spans the clip: -40 and 30 fall outside [-15, 15].
    raw_loc = np.array([[-2.0, 0.3], [1.5, 4.0]])
    raw_log_variance = np.array([[-40.0, -3.0], [0.5, 30.0]])
    params = np.stack([raw_loc, raw_log_variance], -1)[None]  # [1, 2, 2, 2]
    x = np.array([[[[0.1], [0.6]], [[0.9], [0.0]]]])
    lik = likelihoods.get(name)
    got = lik.distribution(tf.constant(params, tf.float32)).log_prob(
        tf.constant(x, tf.float32))
    loc = mean_fn(raw_loc)
    v = np.clip(raw_log_variance, -15, 15)
    want = -0.5 * np.sum(np.log(2 * np.pi) + v
                         + (x[0, ..., 0] - loc) ** 2 / np.exp(v))
    self.assertAllClose(got, [want], rtol=1e-5)
    out = lik.outputs(tf.constant(params, tf.float32))
    self.assertAllClose(out["loc"][0, ..., 0], loc, rtol=1e-6)
    self.assertAllClose(out["mean"][0, ..., 0], loc, rtol=1e-6)
    self.assertAllClose(out["scale"][0, ..., 0], np.exp(0.5 * v), rtol=1e-5)

  def test_continuous_bernoulli_mean_is_not_sigmoid(self):
    out = likelihoods.ContinuousBernoulli().outputs(tf.fill([1, 1, 1, 1], 2.))
    lam = 1 / (1 + np.exp(-2.0))
    # Mean of CB(lam) = lam / (2 lam - 1) + 1 / (2 atanh(1 - 2 lam)).
    want = lam / (2 * lam - 1) + 1 / (2 * np.arctanh(1 - 2 * lam))
    self.assertAllClose(out["mean"], [[[[want]]]], rtol=1e-4)

  def test_posterior_scale_has_a_floor(self):
    model = models.VAE((4, 4, 1), latent_size=2, hidden_sizes=(8,))
    last = {tuple(v.shape): v for v in model.encoder.net.variables}
    # The output layer: loc and raw scale of 2 dimensions.
    kernel, bias = last[(8, 4)], last[(4,)]
    kernel.assign(tf.zeros_like(kernel))
    # softplus(-1e4) underflows to exactly 0 in float32.
    bias.assign([0.5, -0.5, -1e4, -1e4])
    q = model.approx_posterior(tf.random.uniform([3, 4, 4, 1]))
    self.assertAllEqual(q.stddev(), np.full([3, 2], np.float32(1e-5)))
    self.assertAllEqual(q.mean(), np.tile([[0.5, -0.5]], [3, 1]))
    want = -2 * np.log(1e-5) - np.log(2 * np.pi)  # log q at its mean
    self.assertAllClose(q.log_prob(q.mean()), np.full([3], want), rtol=1e-6)

  @parameterized.parameters("mlp", "conv")
  def test_variable_names_are_those_old_checkpoints_hold(self, network):
    model = models.VAE((4, 4, 1), latent_size=2, network=network,
                       hidden_sizes=(8,))
    if network == "mlp":
      layers = [f"{part}/mlp/linear_{i}" for part in ("encoder", "decoder")
                for i in range(2)]
    else:
      layers = [f"encoder/conv/{layer}" for layer in
                ("conv_0", "conv_1", "conv_2", "conv_3", "dense", "out")]
      layers += [f"decoder/conv/{layer}" for layer in
                 ("dense", "upsample", "out")]
    self.assertCountEqual([v.name for v in model.variables],
                          [f"vae/{layer}/{w}:0" for layer in layers
                           for w in "wb"])

  def test_decoder_is_built_around_a_given_net(self):
    with tf.name_scope("decoder"):
      net = nets.ConvDecoderNet(2, (8, 8, 1), 1, hidden_channels=16,
                                upsample_channels=8, name="conv")
    decoder = models.Decoder(2, (8, 8, 1), likelihoods.Bernoulli(), "conv",
                             name="decoder", net=net)
    self.assertIs(decoder.net, net)
    self.assertLen(decoder.variables, 6)
    self.assertTrue(all(v.name.startswith("decoder/conv/")
                        for v in decoder.variables))
    self.assertEqual(decoder.outputs(tf.zeros([3, 2]))["mean"].shape,
                     [3, 8, 8, 1])

  def test_likelihoods_are_built_by_registered_name(self):
    for name in likelihoods.NAMES:
      self.assertEqual(likelihoods.get(name).name, name)
    self.assertEqual(likelihoods.get("gaussian", gaussian_scale=0.3).scale,
                     0.3)
    with self.assertRaisesRegex(ValueError, "unknown likelihood 'nope'; "
                                "choose one of bernoulli, "):
      likelihoods.get("nope")

  def test_unknown_network(self):
    with self.assertRaisesRegex(ValueError, "unknown network"):
      models.VAE((4, 4, 1), network="rnn")


if __name__ == "__main__":
  tf.test.main()
