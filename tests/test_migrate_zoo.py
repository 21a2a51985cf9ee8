"""tfvae-migrate on TF1 VAE styles the older fixtures do not write.

Each test builds a tiny TF1 graph in the style of a circulating tutorial
(raw variables, no tf.layers, so no Keras is needed), trains it two steps
on real Fashion-MNIST, migrates it with `full_model.migrate_model`,
restores the run as every tfvae program does and compares it with its own
TF1 session, run here on test images with fixed noise.
"""
import os
import shutil
import tempfile

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tests import util
from tfvae import input_pipeline
from tfvae import launch
from tfvae import objectives
from tfvae import runs
from tfvae.migrate import anatomy
from tfvae.migrate import full_model

v1 = tf.compat.v1
_LATENT = 2


def _var(name, shape):
  return v1.get_variable(name, shape,
                         initializer=v1.glorot_uniform_initializer())


def _bias(name, size):
  # Random biases, so that a bias read into the wrong place shows.
  return v1.get_variable(
      name, [size], initializer=v1.random_normal_initializer(stddev=0.1))


def _conv_style(x):
  """Conv encoder (4x4/2 leaky_relu, 3x3/1 VALID elu, flatten, dense relu)
  and decoder (dense, 4x4/2 VALID transposed relu, 3x3/1 conv tanh, 3x3/2
  transposed linear), a sigmoid_cross_entropy_with_logits loss."""
  h = tf.reshape(x, [-1, 28, 28, 1])
  h = tf.nn.leaky_relu(tf.nn.conv2d(h, _var("e0", [4, 4, 1, 3]), 2, "SAME")
                       + _bias("eb0", 3))
  h = tf.nn.elu(tf.nn.bias_add(
      tf.nn.conv2d(h, _var("e1", [3, 3, 3, 4]), [1, 1, 1, 1], "VALID"),
      _bias("eb1", 4)))
  h = tf.reshape(h, [-1, 12 * 12 * 4])
  h = tf.nn.relu(tf.matmul(h, _var("f0", [576, 8])) + _bias("fb0", 8))
  loc = tf.matmul(h, _var("wm", [8, _LATENT])) + _bias("bm", _LATENT)
  log_var = tf.matmul(h, _var("wv", [8, _LATENT])) + _bias("bv", _LATENT)
  scale = tf.exp(0.5 * log_var)
  eps = tf.random.normal(tf.shape(loc))
  z = loc + scale * eps
  g = tf.nn.relu(tf.matmul(z, _var("d0", [_LATENT, 6 * 6 * 4]))
                 + _bias("db0", 144))
  g = tf.reshape(g, [-1, 6, 6, 4])
  batch = tf.shape(g)[0]
  g = tf.nn.relu(tf.nn.conv2d_transpose(
      g, _var("d1", [4, 4, 3, 4]), tf.stack([batch, 14, 14, 3]), 2, "VALID")
                 + _bias("db1", 3))
  g = tf.tanh(tf.nn.conv2d(g, _var("d2", [3, 3, 3, 2]), 1, "SAME")
              + _bias("db2", 2))
  logits = tf.nn.conv2d_transpose(
      g, _var("d3", [3, 3, 1, 2]), tf.stack([batch, 28, 28, 1]), 2,
      "SAME") + _bias("db3", 1)
  output = tf.sigmoid(logits)
  target = tf.reshape(x, [-1, 28, 28, 1])
  per_example = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(
      labels=target, logits=logits), [1, 2, 3]) - 0.5 * tf.reduce_sum(
          1 + log_var - tf.square(loc) - tf.exp(log_var), 1)
  loss = tf.reduce_mean(per_example)
  train = v1.train.AdamOptimizer(1e-3).minimize(loss)
  return dict(feeds={}, loc=loc, scale=scale, eps=eps, output=output,
              loss=per_example, train=train)


def _denoising_style(x):
  """hwalsuklee's tensorflow-mnist-VAE: one encoder output sliced in mean
  and 1e-6 + softplus std, dropout on a keep_prob placeholder, a clipped
  sigmoid, a separate target placeholder, loss -(likelihood - KL)."""
  target = v1.placeholder(tf.float32, [None, 784], name="target_img")
  keep_prob = v1.placeholder(tf.float32, name="keep_prob")
  h = tf.nn.elu(tf.matmul(x, _var("w0", [784, 16])) + _bias("b0", 16))
  h = tf.nn.dropout(h, rate=1 - keep_prob)
  params = tf.matmul(h, _var("wo", [16, 2 * _LATENT])) + _bias("bo",
                                                               2 * _LATENT)
  loc = params[:, :_LATENT]
  scale = 1e-6 + tf.nn.softplus(params[:, _LATENT:])
  eps = tf.random.normal(tf.shape(loc), 0, 1, dtype=tf.float32)
  z = loc + scale * eps
  g = tf.tanh(tf.matmul(z, _var("v0", [_LATENT, 16])) + _bias("c0", 16))
  g = tf.nn.dropout(g, rate=1 - keep_prob)
  y = tf.sigmoid(tf.matmul(g, _var("vo", [16, 784])) + _bias("co", 784))
  y = tf.clip_by_value(y, 1e-8, 1 - 1e-8)
  likelihood = tf.reduce_sum(target * tf.math.log(y)
                             + (1 - target) * tf.math.log(1 - y), 1)
  kl = 0.5 * tf.reduce_sum(tf.square(loc) + tf.square(scale)
                           - tf.math.log(1e-8 + tf.square(scale)) - 1, 1)
  loss = -(tf.reduce_mean(likelihood) - tf.reduce_mean(kl))
  train = v1.train.AdamOptimizer(1e-3).minimize(loss)
  return dict(feeds={keep_prob: 1.0}, train_feeds={keep_prob: 0.9},
              targets=[target], loc=loc, scale=scale, eps=eps, output=y,
              loss=kl - likelihood, train=train)


def _distributions_style(x):
  """tf.distributions: Normal(loc, softplus) posterior, q.sample(),
  Bernoulli(logits) likelihood, kl_divergence, loss -mean(elbo), RMSProp
  with decay 0.8, epsilon 1e-6 and a global step."""
  tfd = v1.distributions
  h = tf.nn.relu(tf.matmul(x, _var("w0", [784, 16])) + _bias("b0", 16))
  loc = tf.matmul(h, _var("wm", [16, _LATENT])) + _bias("bm", _LATENT)
  scale = tf.nn.softplus(tf.matmul(h, _var("ws", [16, _LATENT]))
                         + _bias("bs", _LATENT))
  posterior = tfd.Normal(loc, scale)
  z = posterior.sample()
  g = tf.nn.relu(tf.matmul(z, _var("v0", [_LATENT, 16])) + _bias("c0", 16))
  logits = tf.matmul(g, _var("vo", [16, 784])) + _bias("co", 784)
  likelihood = tfd.Bernoulli(logits=logits)
  elbo = (tf.reduce_sum(likelihood.log_prob(x), 1) - tf.reduce_sum(
      tfd.kl_divergence(posterior, tfd.Normal(0.0, 1.0)), 1))
  loss = -tf.reduce_mean(elbo)
  step = v1.train.get_or_create_global_step()
  train = v1.train.RMSPropOptimizer(1e-3, decay=0.8, epsilon=1e-6).minimize(
      loss, global_step=step)
  eps = [op.outputs[0] for op in v1.get_default_graph().get_operations()
         if op.type == "RandomStandardNormal" and "sample" in op.name][0]
  return dict(feeds={}, loc=loc, scale=scale, eps=eps,
              output=likelihood.probs, loss=-elbo, train=train)


def _learned_variance_style(x, variant="exp"):
  """A Gaussian decoder with two heads on one layer, mean and per-pixel
  log-variance v. `variant`: "exp", a sigmoid mean and the loss
  0.5 * sum(log 2pi + v + (x - mean)^2 / exp(v)); "normal", an unsquashed
  mean and tf.distributions.Normal(mean, exp(0.5 * v)); "softplus", v taken
  through softplus (refused)."""
  h = tf.nn.relu(tf.matmul(x, _var("w0", [784, 16])) + _bias("b0", 16))
  loc = tf.matmul(h, _var("wm", [16, _LATENT])) + _bias("bm", _LATENT)
  log_var = tf.matmul(h, _var("wv", [16, _LATENT])) + _bias("bv", _LATENT)
  scale = tf.exp(0.5 * log_var)
  eps = tf.random.normal(tf.shape(loc))
  z = loc + scale * eps
  g = tf.nn.relu(tf.matmul(z, _var("v0", [_LATENT, 16])) + _bias("c0", 16))
  mean = tf.matmul(g, _var("vm", [16, 784])) + _bias("cm", 784)
  x_log_var = tf.matmul(g, _var("vv", [16, 784])) + _bias("cv", 784)
  kl = -0.5 * tf.reduce_sum(1 + log_var - tf.square(loc) - tf.exp(log_var),
                            1)
  if variant == "normal":
    distortion = -tf.reduce_sum(v1.distributions.Normal(
        mean, tf.exp(0.5 * x_log_var)).log_prob(x), 1)
  else:
    mean = tf.sigmoid(mean)
    if variant == "softplus":
      x_log_var = tf.nn.softplus(x_log_var)
    distortion = 0.5 * tf.reduce_sum(
        np.log(2 * np.pi) + x_log_var
        + tf.square(x - mean) / tf.exp(x_log_var), 1)
  per_example = distortion + kl
  train = v1.train.GradientDescentOptimizer(1e-4).minimize(
      tf.reduce_mean(per_example))
  return dict(feeds={}, loc=loc, scale=scale, eps=eps, output=mean,
              loss=per_example, train=train, log_variance=x_log_var)


def _logits_style(x):
  """The TF tutorials' CVAE written as a TF1 graph: one encoder output cut
  by tf.split into mean and log-variance, a decoder giving logits with no
  sigmoid anywhere in the graph (the loss, sigmoid_cross_entropy_with_logits,
  applies it), the KL by hand."""
  h = tf.nn.relu(tf.matmul(x, _var("w0", [784, 16])) + _bias("b0", 16))
  params = tf.matmul(h, _var("wo", [16, 2 * _LATENT])) + _bias("bo",
                                                               2 * _LATENT)
  loc, log_var = tf.split(params, num_or_size_splits=2, axis=1)
  scale = tf.exp(log_var * .5)
  eps = tf.random.normal(shape=tf.shape(loc))
  z = eps * scale + loc
  g = tf.nn.relu(tf.matmul(z, _var("v0", [_LATENT, 16])) + _bias("c0", 16))
  logits = tf.matmul(g, _var("vo", [16, 784])) + _bias("co", 784)
  per_example = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(
      logits=logits, labels=x), axis=1) + 0.5 * tf.reduce_sum(
          tf.exp(log_var) + tf.square(loc) - 1. - log_var, axis=1)
  train = v1.train.AdamOptimizer(1e-3).minimize(tf.reduce_mean(per_example))
  return dict(feeds={}, loc=loc, scale=scale, eps=eps, output=logits,
              loss=per_example, train=train)


_STYLES = {"conv": _conv_style, "denoising": _denoising_style,
           "distributions": _distributions_style, "logits": _logits_style,
           "learned_variance": _learned_variance_style,
           "learned_variance_normal": lambda x: _learned_variance_style(
               x, "normal"),
           "learned_variance_softplus": lambda x: _learned_variance_style(
               x, "softplus")}


class MigrateZooTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp(prefix="tfvae_migrate_zoo_")
    cls.data_dir = util.write_small_idx_dir(os.path.join(cls.root, "data"),
                                            num_train=64, num_test=32)
    cls.images = input_pipeline.scale(
        util.small_fashion_mnist(64, 32).test.images).numpy()

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()

  def _write(self, style):
    """Trains `style` two steps, saves it; returns (dir, tensor names)."""
    directory = os.path.join(self.get_temp_dir(), style)
    flat = self.images.reshape(-1, 784)
    with tf.Graph().as_default():
      v1.set_random_seed(3)
      x = v1.placeholder(tf.float32, [None, 784], name="x")
      parts = _STYLES[style](x)
      with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        for _ in range(2):
          feeds = {x: flat[:16]}
          feeds.update(parts.get("train_feeds", parts["feeds"]))
          feeds.update({t: flat[:16] for t in parts.get("targets", ())})
          sess.run(parts["train"], feeds)
        v1.train.Saver().save(sess, os.path.join(directory, "model"))
    names = {k: parts[k].name for k in ("loc", "scale", "eps", "output",
                                        "loss")}
    names["x"] = x.name
    if "log_variance" in parts:
      names["log_variance"] = parts["log_variance"].name
    names["feeds"] = {t.name: v for t, v in parts["feeds"].items()}
    names["targets"] = [t.name for t in parts.get("targets", ())]
    return directory, names

  def _tf1(self, directory, names, images, noise,
           keys=("loc", "scale", "output", "loss")):
    """The graph's tensors `keys` (default loc, scale, output and
    per-example loss), run here."""
    flat = images.reshape(len(images), -1)
    with tf.Graph().as_default() as graph:
      saver = v1.train.import_meta_graph(os.path.join(directory,
                                                      "model.meta"))
      eps = graph.get_tensor_by_name(names["eps"])
      feeds = {names["x"]: flat,
               names["eps"]: noise.reshape([1] * (eps.shape.rank - 2)
                                           + list(noise.shape))}
      feeds.update(names["feeds"])
      feeds.update({t: flat for t in names["targets"]})
      with v1.Session(graph=graph) as sess:
        saver.restore(sess, os.path.join(directory, "model"))
        return sess.run([names[k] for k in keys], feeds)

  @parameterized.named_parameters(("conv", "conv"), ("denoising", "denoising"),
                                  ("distributions", "distributions"),
                                  ("logits", "logits"))
  def test_migrated_run_agrees_with_the_tf1_session(self, style):
    directory, names = self._write(style)
    run_dir = os.path.join(self.get_temp_dir(), style + "_run")
    full_model.migrate_model(directory, run_dir, data_dir=self.data_dir,
                             verify_images=8)
    config, model, _ = runs.restore_model(run_dir)
    images = self.images[16:28]
    noise = np.random.RandomState(7).normal(
        size=(12, _LATENT)).astype(np.float32)
    loc, scale, output, loss = self._tf1(directory, names, images, noise)
    if style == "logits":
      # The graph's decoder ends in logits; its means are their sigmoid.
      self.assertEqual(config.likelihood, "bernoulli")
      output = 1 / (1 + np.exp(-output.astype(np.float64)))
    posterior = model.approx_posterior(tf.constant(images))
    self.assertAllClose(posterior.loc, loc, atol=1e-5, rtol=0)
    self.assertAllClose(posterior.scale.diag_part(), scale, atol=1e-5,
                        rtol=0)
    z = objectives.reparameterize(posterior, tf.constant(noise))
    mean = model.decoder.outputs(z)["mean"].numpy().reshape(12, -1)
    self.assertAllClose(mean, output.reshape(12, -1), atol=1e-5, rtol=0)
    native_loss = -objectives.elbo(model, tf.constant(images),
                                   noise=noise).elbo
    self.assertAllClose(native_loss, loss, atol=0, rtol=1e-5)
    if style == "conv":
      self.assertEqual(config.encoder_conv_layers,
                       "conv:3:4:2:leaky_relu,conv:4:3:1:elu:valid,"
                       "dense:8:relu")
      self.assertEqual(
          config.decoder_conv_layers,
          "dense:6x6x4:relu,conv_transpose:3:4:2:relu:valid,"
          "conv:2:3:1:tanh,"
          "conv_transpose:1:3:2:linear")
    if style == "distributions":
      optimizer = launch.make_optimizer(config)
      self.assertEqual(config.optimizer, "rmsprop")
      self.assertAllClose(optimizer.rho, 0.8)
      self.assertAllClose(optimizer.epsilon, 1e-6)

  @parameterized.named_parameters(
      ("exp_sigmoid", "learned_variance", "gaussian_log_variance"),
      ("normal_identity", "learned_variance_normal",
       "gaussian_log_variance_identity"))
  def test_learned_variance_decoder_agrees_with_the_tf1_session(
      self, style, likelihood):
    directory, names = self._write(style)
    run_dir = os.path.join(self.get_temp_dir(), style + "_run")
    full_model.migrate_model(directory, run_dir, data_dir=self.data_dir,
                             verify_images=8)
    config, model, _ = runs.restore_model(run_dir)
    self.assertEqual(config.likelihood, likelihood)
    images = self.images[16:28]
    noise = np.random.RandomState(7).normal(
        size=(12, _LATENT)).astype(np.float32)
    loc, scale, output, log_variance, loss = self._tf1(
        directory, names, images, noise,
        ("loc", "scale", "output", "log_variance", "loss"))
    posterior = model.approx_posterior(tf.constant(images))
    self.assertAllClose(posterior.loc, loc, atol=1e-5, rtol=0)
    self.assertAllClose(posterior.scale.diag_part(), scale, atol=1e-5,
                        rtol=0)
    z = objectives.reparameterize(posterior, tf.constant(noise))
    outputs = model.decoder.outputs(z)
    self.assertAllClose(outputs["loc"].numpy().reshape(12, -1), output,
                        atol=1e-5, rtol=0)
    self.assertAllClose(outputs["scale"].numpy().reshape(12, -1),
                        np.exp(0.5 * log_variance.astype(np.float64)),
                        atol=1e-5, rtol=0)
    native_loss = -objectives.elbo(model, tf.constant(images),
                                   noise=noise).elbo
    self.assertAllClose(native_loss, loss, atol=0, rtol=1e-5)

  def test_log_variance_head_through_softplus_is_refused_naming_it(self):
    directory, _ = self._write("learned_variance_softplus")
    with self.assertRaisesRegex(
        anatomy.UnsupportedGraphError,
        r"^\S*Softplus\S* \(Softplus\) activates the decoder's "
        r"log-variance head[^\n]*$"):
      full_model.migrate_model(directory,
                               os.path.join(self.get_temp_dir(), "lv_run"),
                               data_dir=self.data_dir)


if __name__ == "__main__":
  tf.test.main()
