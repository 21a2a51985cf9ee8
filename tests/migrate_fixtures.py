"""Writes TF1-style VAE checkpoints like the ones users bring to tfvae.

The graphs follow the seed-003 story: `tf.compat.v1` graph mode, unnamed
`tf.Variable`s (`Variable`, `Variable_1`, ...) with Glorot-style
`random_normal` initial values, an encoder, the sampler
`z = mean + exp(log_var / 2) * eps`, a decoder, the reconstruction in the
`recon` collection, an optimizer's `minimize` (so slot variables exist) and a
`tf.compat.v1.train.Saver` (`model.index`, `model.data-00000-of-00001`,
`checkpoint`, `model.meta`). Each fixture also records in `expected.npz` what
the TF1 session's decoder gives for fixed latent points, fed straight into the
latent tensor.

Usable from tests (`write_fixture(directory, **options)`) and as a script:

  python -m tests.migrate_fixtures --out=/tmp/vae_tf1 --hidden_size=512
"""
import dataclasses
import json
import os

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

v1 = tf.compat.v1

_ACTIVATIONS = {"tanh": tf.nn.tanh, "relu": tf.nn.relu,
                "sigmoid": tf.nn.sigmoid, "elu": tf.nn.elu,
                "softplus": tf.nn.softplus, "leaky_relu": tf.nn.leaky_relu}
# How the posterior's scale is computed from the encoder's raw output r.
POSTERIORS = ("log_variance", "sqrt_exp", "softplus_std", "normal", "abs")


@dataclasses.dataclass(frozen=True)
class FixtureOptions:
  """How the TF1 graph of a fixture is built.

  Attributes:
    image_size: Side of the square single-channel images (pixels = side**2).
    hidden_size: Width of the encoder's hidden layer (and the decoder's).
    decoder_hidden_size: Width of the mlp decoder's hidden layer when it
      differs from the encoder's (None: `hidden_size`).
    latent_size: Width of z.
    activation: Hidden activation: "tanh", "relu" or "sigmoid".
    shuffled: Create the variables in a shuffled order, so `Variable_k` no
      longer follows the layer order.
    scoped: Create the variables with `tf.compat.v1.get_variable` under
      `variable_scope`s (`encoder/hidden/weights`, ...).
    decoder: "mlp" (dense-dense) or "conv" (dense -> reshape ->
      conv2d_transpose -> conv2d).
    likelihood: "bernoulli" (sigmoid output) or "gaussian" (the output is
      the mean, no squashing).
    optimizer: "rmsprop" or "adam".
    unsafe_op: None, "write_file" or "py_func": puts such an op on the decode
      path (as a control dependency or a pass-through).
    resource_variables: Use resource variables instead of TF1 ref variables.
    steps: Training steps on random data.
    seed: Graph-level random seed.
    untrained_twin: Also create, last, a variable of the decoder output
      matrix's shape that no op reads: it keeps its initial values and gets no
      optimizer slots (the twin a plausible wrong mapping picks).
    posterior: One of `POSTERIORS`: z = mean + exp(r / 2) * eps
      (log_variance), mean + sqrt(exp(r)) * eps (sqrt_exp), mean +
      (softplus(r) + 1e-6) * eps (softplus_std), or
      tf.distributions.Normal(mean, exp(r)).sample() (normal), or
      mean + |r| * eps (abs, a scale tfvae has no counterpart of).
    split_head: One encoder output layer [h, 2 * latent] split into mean and
      r, instead of two.
    more_activations: Activations of further hidden layers (width
      `hidden_size`) after the first, in the encoder and, mirrored, the
      decoder (mlp only).
    global_step: Create a global step the optimizer counts.
    channels: Channels of the images; above 1 the input placeholder is
      [B, side, side, channels], flattened for the mlp encoder and decoder.
  """
  image_size: int = 8
  hidden_size: int = 16
  decoder_hidden_size: int = None
  latent_size: int = 2
  activation: str = "tanh"
  shuffled: bool = False
  scoped: bool = False
  decoder: str = "mlp"
  likelihood: str = "bernoulli"
  optimizer: str = "rmsprop"
  unsafe_op: str = None
  resource_variables: bool = False
  steps: int = 3
  seed: int = 7
  untrained_twin: bool = False
  posterior: str = "log_variance"
  split_head: bool = False
  more_activations: tuple = ()
  global_step: bool = False
  channels: int = 1


def _parameter_shapes(opts):
  """Returns [(scope, name, shape)] in the seed's creation order."""
  pixels = opts.image_size ** 2 * opts.channels
  h, k = opts.hidden_size, opts.latent_size
  d = opts.decoder_hidden_size or h
  shapes = [("encoder/hidden", "weights", [pixels, h])]
  if opts.split_head:
    shapes += [("encoder/mean", "weights", [h, 2 * k])]
  else:
    shapes += [("encoder/mean", "weights", [h, k]),
               ("encoder/log_var", "weights", [h, k])]
  if opts.decoder == "mlp":
    shapes += [("decoder/hidden", "weights", [k, d]),
               ("decoder/out", "weights", [d, pixels])]
  else:
    side = opts.image_size // 2
    shapes += [("decoder/hidden", "weights", [k, side * side * 4]),
               ("decoder/deconv", "filters", [3, 3, 4, 4]),
               ("decoder/out", "filters", [3, 3, 4, 1])]
  shapes += [("encoder/hidden", "biases", [h])]
  if opts.split_head:
    shapes += [("encoder/mean", "biases", [2 * k])]
  else:
    shapes += [("encoder/mean", "biases", [k]),
               ("encoder/log_var", "biases", [k])]
  if opts.decoder == "mlp":
    shapes += [("decoder/hidden", "biases", [d]),
               ("decoder/out", "biases", [pixels])]
  else:
    side = opts.image_size // 2
    shapes += [("decoder/hidden", "biases", [side * side * 4]),
               ("decoder/deconv", "biases", [4]),
               ("decoder/out", "biases", [1])]
  for i, _ in enumerate(opts.more_activations):
    shapes += [(f"encoder/hidden_{i + 2}", "weights", [h, h]),
               (f"encoder/hidden_{i + 2}", "biases", [h]),
               (f"decoder/hidden_{i + 2}", "weights", [d, d]),
               (f"decoder/hidden_{i + 2}", "biases", [d])]
  return shapes


def _glorot_normal(shape):
  return v1.random_normal(shape=shape,
                          stddev=1. / tf.sqrt(shape[0] / 2.0))


def _make_parameters(opts):
  """Creates the variables; returns {(scope, name): variable}."""
  order = list(range(len(_parameter_shapes(opts))))
  if opts.shuffled:
    np.random.RandomState(opts.seed).shuffle(order)
  shapes = _parameter_shapes(opts)
  params = {}
  for i in order:
    scope, name, shape = shapes[i]
    if opts.scoped:
      with v1.variable_scope(scope, use_resource=opts.resource_variables):
        params[(scope, name)] = v1.get_variable(
            name, shape=shape,
            initializer=v1.random_normal_initializer(
                stddev=1. / np.sqrt(shape[0] / 2.0)))
    else:
      params[(scope, name)] = v1.Variable(
          _glorot_normal(shape), use_resource=opts.resource_variables)
  return params


def _decoder(z, p, opts, act, directory):
  """Returns the decoder output [B, pixels] (mlp) or [B, H, W, 1] (conv)."""
  h = act(tf.matmul(z, p[("decoder/hidden", "weights")])
          + p[("decoder/hidden", "biases")])
  for i, name in reversed(list(enumerate(opts.more_activations))):
    scope = f"decoder/hidden_{i + 2}"
    h = _ACTIVATIONS[name](tf.matmul(h, p[(scope, "weights")])
                           + p[(scope, "biases")])
  if opts.decoder == "mlp":
    logits = (tf.matmul(h, p[("decoder/out", "weights")])
              + p[("decoder/out", "biases")])
  else:
    side = opts.image_size // 2
    grid = tf.reshape(h, [-1, side, side, 4])
    out_shape = tf.stack([tf.shape(grid)[0], opts.image_size,
                          opts.image_size, 4])
    up = act(tf.nn.conv2d_transpose(grid, p[("decoder/deconv", "filters")],
                                    out_shape, strides=[1, 2, 2, 1],
                                    padding="SAME")
             + p[("decoder/deconv", "biases")])
    logits = (tf.nn.conv2d(up, p[("decoder/out", "filters")],
                           strides=[1, 1, 1, 1], padding="SAME")
              + p[("decoder/out", "biases")])
  if opts.unsafe_op == "write_file":
    log_path = os.path.join(directory, "decode_log.txt")
    write = tf.io.write_file(log_path,
                             tf.strings.as_string(tf.reduce_sum(logits)))
    with tf.control_dependencies([write]):
      logits = tf.identity(logits)
  elif opts.unsafe_op == "py_func":
    logits = v1.py_func(lambda a: a, [logits], tf.float32, stateful=False)
    logits.set_shape([None] * (2 if opts.decoder == "mlp" else 4))
  if opts.likelihood == "bernoulli":
    return tf.nn.sigmoid(logits)
  return logits


def latent_points(latent_size, count=5, seed=0):
  """Fixed latent points [count + 1, latent_size] (float32) for comparisons.

  The last point has every coordinate 3: seed 003 draws its picture from
  z = [3, 3].
  """
  points = np.random.RandomState(seed).normal(size=(count, latent_size))
  return np.concatenate([points, np.full((1, latent_size), 3.)]).astype(
      np.float32)


def write_fixture(directory, **options):
  """Builds, trains and saves one TF1 VAE graph under `directory`.

  Args:
    directory: Created if missing; receives `model.*`, `checkpoint` and
      `expected.npz` (`z` [N, latent_size], `output` as the graph gives it,
      `latent_tensor`, `output_tensor`, `weights` (the model variable names)).
    **options: Fields of `FixtureOptions`.

  Returns:
    The checkpoint prefix `directory/model`.
  """
  opts = FixtureOptions(**options)
  os.makedirs(directory, exist_ok=True)
  act = _ACTIVATIONS[opts.activation]
  pixels = opts.image_size ** 2 * opts.channels
  with tf.Graph().as_default() as graph:
    v1.set_random_seed(opts.seed)
    image_dims = [opts.image_size, opts.image_size, opts.channels]
    x_in = v1.placeholder(tf.float32, [None] + (
        image_dims if opts.channels > 1 else [pixels]), name="x")
    x = tf.reshape(x_in, [-1, pixels]) if opts.channels > 1 else x_in
    p = _make_parameters(opts)
    hidden = act(tf.matmul(x, p[("encoder/hidden", "weights")])
                 + p[("encoder/hidden", "biases")])
    for i, name in enumerate(opts.more_activations):
      scope = f"encoder/hidden_{i + 2}"
      hidden = _ACTIVATIONS[name](tf.matmul(hidden, p[(scope, "weights")])
                                  + p[(scope, "biases")])
    if opts.split_head:
      z_mean, z_log_var = tf.split(
          tf.matmul(hidden, p[("encoder/mean", "weights")])
          + p[("encoder/mean", "biases")], 2, axis=1)
    else:
      z_mean = (tf.matmul(hidden, p[("encoder/mean", "weights")])
                + p[("encoder/mean", "biases")])
      z_log_var = (tf.matmul(hidden, p[("encoder/log_var", "weights")])
                   + p[("encoder/log_var", "biases")])
    if opts.posterior == "normal":
      scale = tf.exp(z_log_var)
      posterior = v1.distributions.Normal(loc=z_mean, scale=scale)
      z = posterior.sample()
      eps = [op for op in graph.get_operations()
             if op.type == "RandomStandardNormal"][-1].outputs[0]
      # log sigma^2 of this posterior, for the loss below.
      z_log_var = 2.0 * z_log_var
    else:
      eps = v1.random_normal(tf.shape(z_log_var), dtype=tf.float32, mean=0.,
                             stddev=1.0, name="epsilon")
      if opts.posterior == "log_variance":
        scale = tf.exp(z_log_var / 2)
      elif opts.posterior == "sqrt_exp":
        scale = tf.sqrt(tf.exp(z_log_var))
      elif opts.posterior == "abs":
        scale = tf.abs(z_log_var)
        z_log_var = 2.0 * tf.math.log(scale)
      else:
        scale = tf.nn.softplus(z_log_var) + 1e-6
        z_log_var = 2.0 * tf.math.log(scale)
      z = z_mean + scale * eps
    out = _decoder(z, p, opts, act, directory)
    if opts.untrained_twin:
      twin_shape = p[("decoder/out", "weights" if opts.decoder == "mlp"
                      else "filters")].shape
      v1.Variable(_glorot_normal(twin_shape.as_list()),
                  use_resource=opts.resource_variables)
    v1.add_to_collection("recon", out)
    flat_out = tf.reshape(out, [-1, pixels])
    if opts.likelihood == "bernoulli":
      distortion = -tf.reduce_sum(
          x * tf.math.log(1e-10 + flat_out)
          + (1 - x) * tf.math.log(1e-10 + 1 - flat_out), 1)
    else:
      distortion = tf.reduce_sum(tf.square(x - flat_out), 1)
    rate = -0.5 * tf.reduce_sum(
        1 + z_log_var - tf.square(z_mean) - tf.exp(z_log_var), 1)
    per_example_loss = distortion + rate
    loss = tf.reduce_mean(per_example_loss)
    if opts.optimizer == "rmsprop":
      optimizer = v1.train.RMSPropOptimizer(learning_rate=1e-3)
    else:
      optimizer = v1.train.AdamOptimizer(learning_rate=1e-3)
    step = v1.train.get_or_create_global_step() if opts.global_step else None
    train_op = optimizer.minimize(loss, global_step=step)
    saver = v1.train.Saver()
    data = np.random.RandomState(opts.seed).uniform(
        size=[8] + x_in.shape.as_list()[1:]).astype(np.float32)
    points = latent_points(opts.latent_size)
    with v1.Session(graph=graph) as sess:
      sess.run(v1.global_variables_initializer())
      for _ in range(opts.steps):
        sess.run(train_op, {x_in: data})
      prefix = saver.save(sess, os.path.join(directory, "model"))
      expected = sess.run(out, {z: points})
    weights = [v.op.name for v in v1.trainable_variables()]
  np.savez(os.path.join(directory, "expected.npz"), z=points,
           output=expected, latent_tensor=z.name, output_tensor=out.name,
           weights=np.array(weights), input_tensor=x_in.name,
           noise_tensor=eps.name, loc_tensor=z_mean.name,
           scale_tensor=scale.name, loss_tensor=per_example_loss.name)
  with open(os.path.join(directory, "options.json"), "w") as f:
    json.dump(dataclasses.asdict(opts), f, indent=1)
  return prefix


def _define_flags():
  """The flags of `python -m tests.migrate_fixtures`, defined only when it
  runs as a program: tests import this module beside programs that define
  flags of the same names."""
  flags.DEFINE_string("out", None, "Directory to write the fixture into.")
  flags.DEFINE_integer("image_size", 28, "Side of the square images.")
  flags.DEFINE_integer("hidden_size", 512, "Hidden layer width.")
  flags.DEFINE_integer("decoder_hidden_size", None,
                       "Decoder hidden width if not --hidden_size.")
  flags.DEFINE_integer("latent_size", 2, "Width of z.")
  flags.DEFINE_enum("activation", "tanh", list(_ACTIVATIONS),
                    "Hidden activation.")
  flags.DEFINE_bool("shuffled", False, "Create variables in a shuffled order.")
  flags.DEFINE_bool("scoped", False,
                    "Use get_variable under variable_scope names.")
  flags.DEFINE_enum("decoder", "mlp", ["mlp", "conv"], "Decoder architecture.")
  flags.DEFINE_enum("likelihood", "bernoulli", ["bernoulli", "gaussian"],
                    "Bernoulli (sigmoid output) or Gaussian (mean output).")
  flags.DEFINE_enum("optimizer", "rmsprop", ["rmsprop", "adam"], "Optimizer.")
  flags.DEFINE_enum("unsafe_op", None, ["write_file", "py_func"],
                    "Put an unsafe op on the decode path.")
  flags.DEFINE_integer("steps", 3, "Training steps on random data.")
  flags.DEFINE_integer("seed", 7, "Random seed.")
  flags.DEFINE_enum("posterior", "log_variance", list(POSTERIORS),
                    "How the posterior's scale is computed.")
  flags.DEFINE_bool("global_step", False, "Count steps in a global step.")

def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS.out:
    raise app.UsageError("--out is required")
  f = flags.FLAGS
  prefix = write_fixture(
      f.out, image_size=f.image_size, hidden_size=f.hidden_size,
      decoder_hidden_size=f.decoder_hidden_size,
      latent_size=f.latent_size, activation=f.activation, shuffled=f.shuffled,
      scoped=f.scoped, decoder=f.decoder, likelihood=f.likelihood,
      optimizer=f.optimizer, unsafe_op=f.unsafe_op, steps=f.steps,
      seed=f.seed, posterior=f.posterior, global_step=f.global_step)
  print(prefix)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
