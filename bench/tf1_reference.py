"""The MLP VAE written as TF1 graph code: the "before" picture of seed 003.

A `tf.compat.v1` graph with placeholders and `Variable`s, one `Session.run`
of the train op per step with the batch fed through `feed_dict`, RMSProp from
`tf.compat.v1.train`: how the model was trained before tfvae, written the way
a careful TF1 user would write it (one run call per step, no extra fetches).

The model is tfvae's MLP VAE exactly (784-512-2 tanh, q(z | x) with softplus
scales, Bernoulli p(x | z) by logits, analytic KL), so that the benchmark
compares mechanisms, not models. The sampler's noise is
`tf.random.normal` in the graph unless the caller feeds `epsilon`, which is
how the loss is checked against tfvae's on the same weights and noise.
"""
import numpy as np
import tensorflow as tf

v1 = tf.compat.v1

# As in tfvae.models: keeps the posterior scale away from zero.
_MIN_POSTERIOR_SCALE = 1e-5


def _dense(name, fan_in, fan_out):
  limit = np.sqrt(6.0 / (fan_in + fan_out))
  w = v1.Variable(v1.random_uniform([fan_in, fan_out], -limit, limit),
                  name=f"{name}_w")
  b = v1.Variable(v1.zeros([fan_out]), name=f"{name}_b")
  return w, b


class Tf1MlpVae:
  """The TF1 graph, its session and its train/loss/decode ops.

  Args:
    input_size: Pixels per image (784).
    hidden_size: Hidden width (512).
    latent_size: Width of z (2).
    learning_rate: RMSProp step size.
  """

  def __init__(self, input_size=784, hidden_size=512, latent_size=2,
               learning_rate=1e-3):
    self.graph = tf.Graph()
    self.latent_size = latent_size
    with self.graph.as_default():
      self.x = v1.placeholder(tf.float32, [None, input_size], name="x")
      self.weights = [
          *_dense("encoder_h1", input_size, hidden_size),
          *_dense("encoder_out", hidden_size, 2 * latent_size),
          *_dense("decoder_h1", latent_size, hidden_size),
          *_dense("decoder_out", hidden_size, input_size),
      ]
      ew1, eb1, ew2, eb2, dw1, db1, dw2, db2 = self.weights
      h = tf.tanh(tf.matmul(self.x, ew1) + eb1)
      loc, raw_scale = tf.split(tf.matmul(h, ew2) + eb2, 2, axis=1)
      scale = tf.nn.softplus(raw_scale) + _MIN_POSTERIOR_SCALE
      self.epsilon = v1.placeholder_with_default(
          v1.random_normal(tf.shape(loc)), [None, latent_size],
          name="epsilon")
      z = loc + scale * self.epsilon

      def decode(latent):
        hidden = tf.tanh(tf.matmul(latent, dw1) + db1)
        return tf.matmul(hidden, dw2) + db2

      logits = decode(z)
      distortion = tf.reduce_sum(
          tf.nn.sigmoid_cross_entropy_with_logits(labels=self.x,
                                                  logits=logits), axis=1)
      rate = 0.5 * tf.reduce_sum(
          tf.square(loc) + tf.square(scale) - 1.0 - 2.0 * tf.math.log(scale),
          axis=1)
      self.loss = tf.reduce_mean(distortion + rate)
      self.optimizer = v1.train.RMSPropOptimizer(learning_rate)
      self.train_op = self.optimizer.minimize(self.loss)
      self.z = v1.placeholder(tf.float32, [None, latent_size], name="z")
      self.decoded_mean = tf.sigmoid(decode(self.z))
      self._assign_inputs = [v1.placeholder(w.dtype, w.shape)
                             for w in self.weights]
      self._assign = tf.group(*[w.assign(p) for w, p in
                                zip(self.weights, self._assign_inputs)])
      init = v1.global_variables_initializer()
    self.session = v1.Session(graph=self.graph)
    self.session.run(init)

  def set_weights(self, arrays):
    """Loads [enc w1, b1, w2, b2, dec w1, b1, w2, b2] (NumPy arrays)."""
    self.session.run(self._assign, dict(zip(self._assign_inputs, arrays)))

  def train_step(self, batch):
    """One RMSProp step on float32 images [B, 784] in [0, 1]."""
    self.session.run(self.train_op, feed_dict={self.x: batch})

  def compute_loss(self, batch, epsilon=None):
    """The mean -ELBO of `batch` (noise `epsilon` [B, latent] if given)."""
    feed = {self.x: batch}
    if epsilon is not None:
      feed[self.epsilon] = epsilon
    return self.session.run(self.loss, feed)

  def decode(self, z):
    """Pixel means [N, 784] of latent points z [N, latent]."""
    return self.session.run(self.decoded_mean, feed_dict={self.z: z})

  def close(self):
    self.session.close()


class SavedModelSession:
  """A SavedModel loaded into a TF1 session, run by its signature's names.

  How TF1-style clients run an export (and, from C++, TF Serving): one
  `Session.run` feeding the signature's input tensor, no eager runtime.

  Args:
    path: A SavedModel directory (tag "serve").
    signature: The signature to run.
    input_key, output_key: Its input and output names.
  """

  def __init__(self, path, signature="serving_default", input_key="z",
               output_key="mean"):
    self.graph = tf.Graph()
    self.session = v1.Session(graph=self.graph)
    with self.graph.as_default():
      meta = v1.saved_model.loader.load(self.session, ["serve"], path)
    signature_def = meta.signature_def[signature]
    self.input = signature_def.inputs[input_key].name
    self.output = signature_def.outputs[output_key].name

  def run(self, value):
    """The output [B, ...] for the input `value` (NumPy)."""
    return self.session.run(self.output, {self.input: value})

  def make_callable(self):
    """`Session.make_callable` of the same fetch and feed."""
    return self.session.make_callable(
        self.graph.get_tensor_by_name(self.output),
        [self.graph.get_tensor_by_name(self.input)])

  def close(self):
    self.session.close()
