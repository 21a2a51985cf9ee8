"""TF1 VAE checkpoints in the styles of 2016-2018 tutorials and books.

Unlike `migrate_fixtures` (one tutorial's graph, the reconstruction in a
collection), these graphs are written the way people wrote them, with no
collection naming the decoder: raw `tf.Variable` dicts with a static-batch
sampler, `get_variable` under `variable_scope`s, `tf.layers` with dropout and a
second, generation-only decoder path built with `reuse=True`,
`tf.distributions`, `placeholder_with_default` training switches, and every
TF1 optimizer. Each style is small (8x8 images, a few training steps).

Each fixture directory holds `model.*`, `checkpoint` and `expected.npz`:
`z` [n, latent_size] fixed latent points, `output` what the TF1 session's
decoder gives for them, run at the session's own batch size n (the sampler's
static batch, or 6 for a dynamic batch), `latent_tensor` and `output_tensor`
(the names a user would have had to pass).

`tf.compat.v1.layers` needs Keras 2, so this runs as its own program with
TF_USE_LEGACY_KERAS=1 (`write_all` starts it):

  TF_USE_LEGACY_KERAS=1 python -m tests.wild_fixtures OUT_DIR [STYLE ...]
"""
import os
import subprocess
import sys

import numpy as np

PIXELS = 64  # 8x8 single-channel images.
HIDDEN = 16
# The styles a test may ask for; "keras_bn_momentum" is the one the finder
# was not designed around.
STYLES = ("metzen_adam_static", "scoped_momentum", "layers_dropout_two_paths",
          "distributions_gd_resource", "switch_conv_rmsprop_static",
          "keras_bn_momentum")
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_all(out_dir, styles=STYLES):
  """Writes fixtures in a fresh process (Keras 2 for `tf.layers`).

  Args:
    out_dir: Receives one directory per style.
    styles: Names from `STYLES`.

  Returns:
    {style: directory}.

  Raises:
    RuntimeError: With the program's stderr if it fails.
  """
  env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
  result = subprocess.run(
      [sys.executable, "-m", "tests.wild_fixtures", out_dir, *styles],
      cwd=_REPO, env=env, capture_output=True, text=True, timeout=600,
      check=False)
  if result.returncode != 0:
    raise RuntimeError(result.stderr[-4000:])
  return {s: os.path.join(out_dir, s) for s in styles}


def latent_points(count, latent_size, seed=0):
  """Fixed latent points [count, latent_size] (float32)."""
  return np.random.RandomState(seed).normal(
      size=(count, latent_size)).astype(np.float32)


# ---------------------------------------------------------------------------
# The graphs (imported only when run as a program, with Keras 2).


def _build(style, tf, v1):
  """Builds one style's graph in the default graph.

  Returns:
    dict with x, loss, z (the latent tensor to feed), out (decoder output),
    batch (static batch or None), feeds_train, feeds_infer (dicts), optimizer.
  """
  latent = 2
  act = tf.nn.softplus
  if style == "metzen_adam_static":
    # Metzen's 2015 notebook: dicts of tf.Variables, eps drawn with a static
    # (batch_size, n_z) shape, Adam.
    batch = 10
    x = v1.placeholder(tf.float32, [None, PIXELS])

    def xavier(fan_in, fan_out):
      low = -np.sqrt(6.0 / (fan_in + fan_out))
      return v1.random_uniform((fan_in, fan_out), minval=low, maxval=-low)

    w = {"recog": {"h1": tf.Variable(xavier(PIXELS, HIDDEN)),
                   "out_mean": tf.Variable(xavier(HIDDEN, latent)),
                   "out_log_sigma": tf.Variable(xavier(HIDDEN, latent))},
         "gener": {"h1": tf.Variable(xavier(latent, HIDDEN)),
                   "out_mean": tf.Variable(xavier(HIDDEN, PIXELS))}}
    b = {"recog": {"b1": tf.Variable(tf.zeros([HIDDEN])),
                   "out_mean": tf.Variable(tf.zeros([latent])),
                   "out_log_sigma": tf.Variable(tf.zeros([latent]))},
         "gener": {"b1": tf.Variable(tf.zeros([HIDDEN])),
                   "out_mean": tf.Variable(tf.zeros([PIXELS]))}}
    h = act(tf.add(tf.matmul(x, w["recog"]["h1"]), b["recog"]["b1"]))
    z_mean = tf.add(tf.matmul(h, w["recog"]["out_mean"]),
                    b["recog"]["out_mean"])
    z_log_sigma_sq = tf.add(tf.matmul(h, w["recog"]["out_log_sigma"]),
                            b["recog"]["out_log_sigma"])
    eps = v1.random_normal((batch, latent), 0, 1, dtype=tf.float32)
    z = tf.add(z_mean, tf.multiply(tf.sqrt(tf.exp(z_log_sigma_sq)), eps))
    g = act(tf.add(tf.matmul(z, w["gener"]["h1"]), b["gener"]["b1"]))
    out = tf.nn.sigmoid(tf.add(tf.matmul(g, w["gener"]["out_mean"]),
                               b["gener"]["out_mean"]))
    recon = -tf.reduce_sum(x * tf.math.log(1e-10 + out)
                           + (1 - x) * tf.math.log(1e-10 + 1 - out), 1)
    kl = -0.5 * tf.reduce_sum(1 + z_log_sigma_sq - tf.square(z_mean)
                              - tf.exp(z_log_sigma_sq), 1)
    return dict(x=x, loss=tf.reduce_mean(recon + kl), z=z, out=out,
                batch=batch, feeds_train={}, feeds_infer={},
                optimizer=v1.train.AdamOptimizer(1e-3))

  if style == "scoped_momentum":
    x = v1.placeholder(tf.float32, [None, PIXELS], name="x")

    def dense(inputs, size, scope):
      with v1.variable_scope(scope):
        weights = v1.get_variable(
            "weights", [inputs.shape[-1], size],
            initializer=v1.truncated_normal_initializer(stddev=0.1))
        biases = v1.get_variable("biases", [size],
                                 initializer=v1.constant_initializer(0.0))
        return tf.matmul(inputs, weights) + biases

    with v1.variable_scope("encoder"):
      h = tf.nn.relu(dense(x, HIDDEN, "fc1"))
      mu = dense(h, latent, "mu")
      log_var = dense(h, latent, "log_var")
    eps = v1.random_normal(tf.shape(mu))
    z = mu + tf.exp(0.5 * log_var) * eps
    with v1.variable_scope("decoder"):
      g = tf.nn.relu(dense(z, HIDDEN, "fc1"))
      logits = dense(g, PIXELS, "logits")
      out = tf.nn.sigmoid(logits)
    recon = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(
        labels=x, logits=logits), 1)
    kl = -0.5 * tf.reduce_sum(1 + log_var - mu ** 2 - tf.exp(log_var), 1)
    return dict(x=x, loss=tf.reduce_mean(recon + kl), z=z, out=out,
                batch=None, feeds_train={}, feeds_infer={},
                optimizer=v1.train.MomentumOptimizer(1e-3, 0.9))

  if style == "layers_dropout_two_paths":
    x = v1.placeholder(tf.float32, [None, PIXELS], name="x")
    keep_prob = v1.placeholder(tf.float32, name="keep_prob")
    z_in = v1.placeholder(tf.float32, [None, latent], name="z")

    def decoder(z, keep, reuse):
      with v1.variable_scope("decoder", reuse=reuse):
        h = v1.layers.dense(z, HIDDEN, tf.nn.elu, name="fc1")
        h = v1.nn.dropout(h, keep)
        return tf.sigmoid(v1.layers.dense(h, PIXELS, name="logits"))

    with v1.variable_scope("encoder"):
      h = v1.layers.dense(x, HIDDEN, tf.nn.elu, name="fc1")
      h = v1.nn.dropout(h, keep_prob)
      mu = v1.layers.dense(h, latent, name="mu")
      log_sigma = v1.layers.dense(h, latent, name="log_sigma")
    eps = v1.random_normal(tf.shape(mu), name="eps")
    z = mu + tf.exp(log_sigma) * eps
    out_train = decoder(z, keep_prob, reuse=False)
    out = decoder(z_in, 1.0, reuse=True)
    recon = -tf.reduce_sum(x * tf.math.log(1e-8 + out_train)
                           + (1 - x) * tf.math.log(1e-8 + 1 - out_train), 1)
    kl = 0.5 * tf.reduce_sum(tf.square(mu) + tf.exp(2 * log_sigma)
                             - 2 * log_sigma - 1, 1)
    return dict(x=x, loss=tf.reduce_mean(recon + kl), z=z_in, out=out,
                batch=None, feeds_train={keep_prob: 0.9}, feeds_infer={},
                optimizer=v1.train.AdagradOptimizer(1e-2))

  if style == "distributions_gd_resource":
    x = v1.placeholder(tf.float32, [None, PIXELS], name="x")
    tfd = v1.distributions
    with v1.variable_scope("encoder", use_resource=True):
      h = tf.nn.relu(tf.matmul(x, v1.get_variable("w1", [PIXELS, HIDDEN]))
                     + v1.get_variable("b1", [HIDDEN]))
      loc = (tf.matmul(h, v1.get_variable("w_loc", [HIDDEN, latent]))
             + v1.get_variable("b_loc", [latent]))
      scale = tf.nn.softplus(
          tf.matmul(h, v1.get_variable("w_scale", [HIDDEN, latent]))
          + v1.get_variable("b_scale", [latent])) + 1e-4
      posterior = tfd.Normal(loc=loc, scale=scale)
      z = posterior.sample()
    with v1.variable_scope("decoder", use_resource=True):
      g = tf.nn.relu(tf.matmul(z, v1.get_variable("w1", [latent, HIDDEN]))
                     + v1.get_variable("b1", [HIDDEN]))
      logits = (tf.matmul(g, v1.get_variable("w_out", [HIDDEN, PIXELS]))
                + v1.get_variable("b_out", [PIXELS]))
      likelihood = tfd.Bernoulli(logits=logits)
      out = likelihood.mean()
    prior = tfd.Normal(loc=tf.zeros_like(loc), scale=tf.ones_like(scale))
    rate = tf.reduce_sum(tfd.kl_divergence(posterior, prior), 1)
    distortion = -tf.reduce_sum(likelihood.log_prob(x), 1)
    return dict(x=x, loss=tf.reduce_mean(distortion + rate), z=z, out=out,
                batch=None, feeds_train={}, feeds_infer={},
                optimizer=v1.train.GradientDescentOptimizer(1e-2))

  if style == "switch_conv_rmsprop_static":
    batch = 6
    x = v1.placeholder(tf.float32, [batch, PIXELS], name="x")
    training = v1.placeholder_with_default(False, (), name="is_training")
    h = v1.layers.dense(x, HIDDEN, tf.nn.relu, name="enc_fc")
    h = v1.layers.dropout(h, 0.3, training=training)
    mu = v1.layers.dense(h, latent, name="enc_mu")
    log_var = v1.layers.dense(h, latent, name="enc_log_var")
    eps = v1.random_normal([batch, latent])
    z = mu + tf.exp(log_var / 2) * eps
    g = v1.layers.dense(z, 4 * 4 * 8, tf.nn.relu, name="dec_fc")
    g = v1.layers.dropout(g, 0.3, training=training)
    g = tf.reshape(g, [batch, 4, 4, 8])
    g = v1.layers.conv2d_transpose(g, 4, 3, strides=2, padding="same",
                                   activation=tf.nn.relu, name="dec_up")
    logits = v1.layers.conv2d(g, 1, 3, padding="same", name="dec_out")
    out = tf.sigmoid(logits)
    flat = tf.reshape(logits, [batch, PIXELS])
    recon = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(
        labels=x, logits=flat), 1)
    kl = -0.5 * tf.reduce_sum(1 + log_var - mu ** 2 - tf.exp(log_var), 1)
    return dict(x=x, loss=tf.reduce_mean(recon + kl), z=z, out=out,
                batch=batch, feeds_train={training: True}, feeds_infer={},
                optimizer=v1.train.RMSPropOptimizer(1e-3))

  if style == "keras_bn_momentum":
    # Keras layers called in graph mode, batch norm driven by a learning-phase
    # switch, Momentum with the batch-norm updates as control dependencies.
    import tf_keras  # pylint: disable=g-import-not-at-top
    layers = tf_keras.layers
    x = v1.placeholder(tf.float32, [None, PIXELS], name="x")
    training = v1.placeholder_with_default(False, (), name="training")
    h = layers.Dense(HIDDEN, activation="relu")(x)
    mu = layers.Dense(latent)(h)
    log_var = layers.Dense(latent)(h)
    z = mu + tf.exp(log_var / 2) * v1.random_normal(tf.shape(mu))
    g = layers.Dense(HIDDEN)(z)
    g = layers.BatchNormalization()(g, training=training)
    g = layers.Activation("relu")(g)
    out = layers.Dense(PIXELS, activation="sigmoid")(g)
    recon = -tf.reduce_sum(x * tf.math.log(1e-7 + out)
                           + (1 - x) * tf.math.log(1e-7 + 1 - out), 1)
    kl = -0.5 * tf.reduce_sum(1 + log_var - mu ** 2 - tf.exp(log_var), 1)
    return dict(x=x, loss=tf.reduce_mean(recon + kl), z=z, out=out,
                batch=None, feeds_train={training: True}, feeds_infer={},
                optimizer=v1.train.MomentumOptimizer(1e-2, 0.9))
  raise ValueError(f"unknown style {style}")


def _write(style, directory):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  v1 = tf.compat.v1
  os.makedirs(directory, exist_ok=True)
  with tf.Graph().as_default() as graph:
    v1.set_random_seed(3)
    built = _build(style, tf, v1)
    update_ops = v1.get_collection(v1.GraphKeys.UPDATE_OPS)
    with tf.control_dependencies(update_ops):
      train_op = built["optimizer"].minimize(built["loss"])
    saver = v1.train.Saver()
    batch = built["batch"]
    n = batch or 6
    data = np.random.RandomState(1).uniform(
        size=(batch or 8, PIXELS)).astype(np.float32)
    latent_size = int(built["z"].shape[-1])
    points = latent_points(n, latent_size)
    with v1.Session(graph=graph) as sess:
      sess.run(v1.global_variables_initializer())
      for _ in range(3):
        sess.run(train_op, {built["x"]: data, **built["feeds_train"]})
      prefix = saver.save(sess, os.path.join(directory, "model"))
      expected = sess.run(built["out"], {built["z"]: points,
                                         **built["feeds_infer"]})
  np.savez(os.path.join(directory, "expected.npz"), z=points, output=expected,
           latent_tensor=built["z"].name, output_tensor=built["out"].name)
  return prefix


def main(argv):
  out_dir, styles = argv[1], argv[2:] or STYLES
  for style in styles:
    print(_write(style, os.path.join(out_dir, style)))


if __name__ == "__main__":
  main(sys.argv)
