"""Keras 2 (tf_keras) VAEs saved the ways Keras users saved them.

The classic Keras example VAE (`examples/variational_autoencoder.py`): an
encoder `Model(inputs, [z_mean, z_log_var, z])` whose z comes from a `Lambda`
sampling layer, a decoder `Model(latent_inputs, outputs)`, and the VAE
`Model(inputs, decoder(encoder(inputs)[2]))` with the ELBO as `add_loss`.
Written with `model.save("vae.h5")` (config and weights),
`model.save_weights("weights.h5")` (weights only) or as a Keras SavedModel,
after a few training steps on random data so that no weight keeps its
initial value.

  python -m tests.keras_fixtures --out=/tmp/keras_vae
"""
import os

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf
import tf_keras as keras


def _sampling(args):
  z_mean, z_log_var = args
  eps = keras.backend.random_normal(shape=tf.shape(z_mean))
  return z_mean + keras.backend.exp(0.5 * z_log_var) * eps


def mlp_vae(pixels=784, hidden=(256,), latent=2, activations=None):
  """The example's MLP VAE: (vae, encoder, decoder) Keras models.

  Args:
    pixels: Input width.
    hidden: Hidden widths of the encoder (the decoder mirrors them).
    latent: Width of z.
    activations: Per hidden layer activation names; default all relu.
  """
  activations = activations or ["relu"] * len(hidden)
  inputs = keras.Input(shape=(pixels,), name="encoder_input")
  x = inputs
  for i, (units, act) in enumerate(zip(hidden, activations)):
    x = keras.layers.Dense(units, activation=act, name=f"enc_{i}")(x)
  z_mean = keras.layers.Dense(latent, name="z_mean")(x)
  z_log_var = keras.layers.Dense(latent, name="z_log_var")(x)
  z = keras.layers.Lambda(_sampling, output_shape=(latent,), name="z")(
      [z_mean, z_log_var])
  encoder = keras.Model(inputs, [z_mean, z_log_var, z], name="encoder")
  latent_inputs = keras.Input(shape=(latent,), name="z_sampling")
  x = latent_inputs
  for i, (units, act) in enumerate(zip(reversed(hidden),
                                       reversed(activations))):
    x = keras.layers.Dense(units, activation=act, name=f"dec_{i}")(x)
  outputs = keras.layers.Dense(pixels, activation="sigmoid",
                               name="decoder_output")(x)
  decoder = keras.Model(latent_inputs, outputs, name="decoder")
  outputs = decoder(encoder(inputs)[2])
  vae = keras.Model(inputs, outputs, name="vae_mlp")
  reconstruction = keras.losses.binary_crossentropy(inputs, outputs) * pixels
  kl = -0.5 * keras.backend.sum(
      1 + z_log_var - keras.backend.square(z_mean)
      - keras.backend.exp(z_log_var), axis=-1)
  vae.add_loss(keras.backend.mean(reconstruction + kl))
  vae.compile(optimizer="adam")
  return vae, encoder, decoder


def conv_vae(latent=2):
  """The classic Keras conv VAE (Chollet's book): (vae, encoder, decoder).

  conv 32, conv 64 stride 2, conv 64, conv 64, flatten, dense 32, z_mean,
  z_log_var, a sampling Lambda; dense to 14x14x64, reshape, transposed conv
  32 stride 2, conv 1 sigmoid. The encoder is a Model of (z_mean,
  z_log_var, z) for `encoder(x)`.
  """
  inputs = keras.Input(shape=(28, 28, 1), name="input_img")
  x = inputs
  for i, (filters, stride) in enumerate(((32, 1), (64, 2), (64, 1),
                                         (64, 1))):
    x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu",
                            strides=stride, name=f"conv_{i}")(x)
  x = keras.layers.Flatten()(x)
  x = keras.layers.Dense(32, activation="relu", name="dense")(x)
  z_mean = keras.layers.Dense(latent, name="z_mean")(x)
  z_log_var = keras.layers.Dense(latent, name="z_log_var")(x)
  z = keras.layers.Lambda(_sampling, name="z")([z_mean, z_log_var])
  encoder = keras.Model(inputs, [z_mean, z_log_var, z], name="encoder")
  decoder_input = keras.Input(shape=(latent,), name="decoder_input")
  x = keras.layers.Dense(14 * 14 * 64, activation="relu",
                         name="dec_dense")(decoder_input)
  x = keras.layers.Reshape((14, 14, 64))(x)
  x = keras.layers.Conv2DTranspose(32, 3, padding="same", activation="relu",
                                   strides=2, name="dec_up")(x)
  x = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid",
                          name="dec_out")(x)
  decoder = keras.Model(decoder_input, x, name="decoder")
  outputs = decoder(encoder(inputs)[2])
  vae = keras.Model(inputs, outputs, name="vae_conv")
  flat_in = keras.layers.Flatten()(inputs)
  flat_out = keras.layers.Flatten()(outputs)
  reconstruction = keras.losses.binary_crossentropy(flat_in, flat_out) * 784
  kl = -0.5 * keras.backend.sum(
      1 + z_log_var - keras.backend.square(z_mean)
      - keras.backend.exp(z_log_var), axis=-1)
  vae.add_loss(keras.backend.mean(reconstruction + kl))
  vae.compile(optimizer="adam")
  return vae, encoder, decoder


def write_fixture(directory, how="model", hidden=(256,), activations=None,
                  steps=3, seed=3, network="mlp"):
  """Trains the MLP VAE a few steps and saves it; returns the file.

  Args:
    directory: Created if missing.
    how: "model" (`model.save`, vae.h5), "savedmodel" (`model.save(DIR,
      save_format="tf")`, vae_savedmodel/) or "weights" (`save_weights`,
      weights.h5).
    hidden: Hidden widths.
    activations: Per hidden layer activations.
    steps: Training steps on random data.
    seed: Seed of the weights and data.
    network: "mlp" (`mlp_vae`) or "conv" (`conv_vae`, hidden and
      activations unused).

  Returns:
    (the file, the trained Keras VAE). A weights-only save also writes
    `vae.json`, the model's `to_json()`.
  """
  os.makedirs(directory, exist_ok=True)
  keras.utils.set_random_seed(seed)
  if network == "conv":
    vae, _, _ = conv_vae()
    shape = (64, 28, 28, 1)
  else:
    vae, _, _ = mlp_vae(hidden=hidden, activations=activations)
    shape = (64, 784)
  data = np.random.RandomState(seed).uniform(size=shape).astype(np.float32)
  vae.fit(data, epochs=steps, batch_size=64, verbose=0)
  if how == "model":
    path = os.path.join(directory, "vae.h5")
    vae.save(path)
  elif how == "savedmodel":
    path = os.path.join(directory, "vae_savedmodel")
    vae.save(path, save_format="tf")
  else:
    path = os.path.join(directory, "weights.h5")
    vae.save_weights(path)
    with open(os.path.join(directory, "vae.json"), "w") as f:
      f.write(vae.to_json())
  return path, vae


def _sampling_log_sigma(args):
  z_mean, z_log_sigma = args
  eps = keras.backend.random_normal(shape=tf.shape(z_mean))
  return z_mean + keras.backend.exp(z_log_sigma) * eps


class Sampling(keras.layers.Layer):
  """The keras.io example's sampling layer: a class of the user's own,
  which a migration must never need (or run)."""

  def call(self, inputs):
    z_mean, z_log_var = inputs
    eps = tf.random.normal(shape=tf.shape(z_mean))
    return z_mean + tf.exp(0.5 * z_log_var) * eps


def _random_images(seed, shape):
  return np.random.RandomState(seed).uniform(size=shape).astype(np.float32)


def blog_vae(directory, pixels=784, hidden=8, latent=2, steps=3, seed=5):
  """The 2016 Keras blog VAE, trained a few steps and `model.save`d.

  One model: Dense relu, z_mean and z_log_sigma heads (unnamed Dense
  layers; a log scale, z = mean + exp(r) * eps), a sampling Lambda, the
  decoder's layers called on z directly (no decoder model); the KL as
  add_loss with exp(2 r), the reconstruction as the compiled loss, RMSprop.

  Returns:
    (vae.h5, stats model x -> [z_mean, z_log_sigma], generator z -> mean).
  """
  os.makedirs(directory, exist_ok=True)
  keras.utils.set_random_seed(seed)
  x = keras.Input(shape=(pixels,))
  h = keras.layers.Dense(hidden, activation="relu")(x)
  z_mean = keras.layers.Dense(latent)(h)
  z_log_sigma = keras.layers.Dense(latent)(h)
  z = keras.layers.Lambda(_sampling_log_sigma)([z_mean, z_log_sigma])
  decoder_h = keras.layers.Dense(hidden, activation="relu")
  decoder_mean = keras.layers.Dense(pixels, activation="sigmoid")
  vae = keras.Model(x, decoder_mean(decoder_h(z)))
  vae.add_loss(keras.backend.mean(-0.5 * keras.backend.sum(
      1 + 2 * z_log_sigma - keras.backend.square(z_mean)
      - keras.backend.exp(2 * z_log_sigma), axis=-1)))
  vae.compile(optimizer="rmsprop", loss="binary_crossentropy")
  data = _random_images(seed, (32, pixels))
  vae.fit(data, data, epochs=steps, batch_size=32, verbose=0)
  path = os.path.join(directory, "vae.h5")
  vae.save(path)
  z_in = keras.Input(shape=(latent,))
  generator = keras.Model(z_in, decoder_mean(decoder_h(z_in)))
  return path, keras.Model(x, [z_mean, z_log_sigma]), generator


class SubclassedVAE(keras.Model):
  """keras.io's `VAE(keras.Model)`: encoder and decoder as attributes, its
  own training step; `save(DIR)` stores no configuration for it."""

  def __init__(self, encoder, decoder, **kwargs):
    super().__init__(**kwargs)
    self.encoder = encoder
    self.decoder = decoder

  def call(self, inputs):
    return self.decoder(self.encoder(inputs)[2])

  def train_step(self, data):
    with tf.GradientTape() as tape:
      z_mean, z_log_var, z = self.encoder(data)
      mean = self.decoder(z)
      loss = tf.reduce_mean(
          -tf.reduce_sum(data * tf.math.log(mean + 1e-7) + (1 - data)
                         * tf.math.log(1 - mean + 1e-7), axis=1)
          - 0.5 * tf.reduce_sum(1 + z_log_var - tf.square(z_mean)
                                - tf.exp(z_log_var), axis=1))
    grads = tape.gradient(loss, self.trainable_weights)
    self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
    return {"loss": loss}


def split_vae(directory, pixels=784, hidden=8, latent=2, steps=2, seed=6,
              conv_decoder=False, subclassed=False):
  """keras.io's way: a `Sampling` layer class, encoder and decoder saved
  apart (`encoder.save("encoder.h5")`, `decoder.save("decoder.h5")`), or
  (`subclassed`) the `SubclassedVAE` saved as a SavedModel, `vae/`.

  Both models name their hidden layer "hidden". A conv decoder is dense to
  14x14x4, reshape, Conv2DTranspose(3, stride 2), Conv2DTranspose(1,
  sigmoid): a stride-1 transposed convolution as the output layer.

  Returns:
    (encoder.h5, decoder.h5, encoder model, decoder model); (vae/, None,
    ...) if `subclassed`.
  """
  os.makedirs(directory, exist_ok=True)
  keras.utils.set_random_seed(seed)
  inputs = keras.Input(shape=(pixels,))
  h = keras.layers.Dense(hidden, activation="relu", name="hidden")(inputs)
  z_mean = keras.layers.Dense(latent, name="z_mean")(h)
  z_log_var = keras.layers.Dense(latent, name="z_log_var")(h)
  z = Sampling()([z_mean, z_log_var])
  encoder = keras.Model(inputs, [z_mean, z_log_var, z], name="encoder")
  latent_inputs = keras.Input(shape=(latent,))
  if conv_decoder:
    x = keras.layers.Dense(14 * 14 * 4, activation="relu",
                           name="hidden")(latent_inputs)
    x = keras.layers.Reshape((14, 14, 4))(x)
    x = keras.layers.Conv2DTranspose(3, 3, strides=2, padding="same",
                                     activation="relu")(x)
    out = keras.layers.Conv2DTranspose(1, 3, padding="same",
                                       activation="sigmoid")(x)
    out = keras.layers.Reshape((pixels,))(out)
  else:
    x = keras.layers.Dense(hidden, activation="relu",
                           name="hidden")(latent_inputs)
    out = keras.layers.Dense(pixels, activation="sigmoid")(x)
  decoder = keras.Model(latent_inputs, out, name="decoder")
  data = _random_images(seed, (32, pixels))
  if subclassed:
    vae = SubclassedVAE(encoder, decoder)
    vae.compile(optimizer="adam")
    vae.fit(data, epochs=steps, batch_size=32, verbose=0)
    vae(data[:1])
    path = os.path.join(directory, "vae")
    vae.save(path, save_format="tf")
    return path, None, encoder, decoder
  vae = keras.Model(inputs, decoder(z))
  vae.add_loss(keras.backend.mean(keras.backend.sum(
      -0.5 * (1 + z_log_var - keras.backend.square(z_mean)
              - keras.backend.exp(z_log_var)), axis=-1)))
  vae.compile(optimizer="adam", loss="binary_crossentropy")
  vae.fit(data, data, epochs=steps, batch_size=32, verbose=0)
  paths = [os.path.join(directory, f"{n}.h5") for n in ("encoder",
                                                          "decoder")]
  encoder.save(paths[0])
  decoder.save(paths[1])
  return (*paths, encoder, decoder)


def gaussian_vae(directory, pixels=784, hidden=8, latent=2, steps=3,
                 seed=7):
  """The example MLP VAE with its --mse loss (784 * mean squared error)
  and an encoder of Dense (linear) -> BatchNormalization -> Activation relu
  -> Dropout; `model.save`d.

  Returns:
    (vae.h5, encoder model x -> [z_mean, z_log_var, z], decoder model).
  """
  os.makedirs(directory, exist_ok=True)
  keras.utils.set_random_seed(seed)
  inputs = keras.Input(shape=(pixels,))
  x = keras.layers.Dense(hidden)(inputs)
  x = keras.layers.BatchNormalization(momentum=0.5)(x)
  x = keras.layers.Activation("relu")(x)
  x = keras.layers.Dropout(0.3)(x)
  z_mean = keras.layers.Dense(latent, name="z_mean")(x)
  z_log_var = keras.layers.Dense(latent, name="z_log_var")(x)
  z = keras.layers.Lambda(_sampling, name="z")([z_mean, z_log_var])
  encoder = keras.Model(inputs, [z_mean, z_log_var, z], name="encoder")
  latent_inputs = keras.Input(shape=(latent,))
  x = keras.layers.Dense(hidden, activation="relu")(latent_inputs)
  out = keras.layers.Dense(pixels, activation="sigmoid")(x)
  decoder = keras.Model(latent_inputs, out, name="decoder")
  outputs = decoder(encoder(inputs)[2])
  vae = keras.Model(inputs, outputs)
  reconstruction = keras.losses.mse(inputs, outputs) * pixels
  kl = -0.5 * keras.backend.sum(
      1 + z_log_var - keras.backend.square(z_mean)
      - keras.backend.exp(z_log_var), axis=-1)
  vae.add_loss(keras.backend.mean(reconstruction + kl))
  vae.compile(optimizer="adam")
  vae.fit(_random_images(seed, (32, pixels)), epochs=steps, batch_size=32,
          verbose=0)
  path = os.path.join(directory, "vae.h5")
  vae.save(path)
  return path, encoder, decoder


def conv_stack_vae(path, side=8, latent=2, steps=2, seed=7):
  """A small conv VAE unlike the classic one, saved with `model.save(path)`.

  Encoder: Conv2D(3, kernel 4, stride 2, relu), Conv2D(4, 3, elu), flatten,
  Dense(6, tanh), z_mean, z_log_var, the sampling Lambda. Decoder: Dense to
  (side / 4)^2 x 3 (relu), reshape, Conv2DTranspose(4, kernel 4, stride 2,
  relu), Conv2D(3, kernel 2, softplus), Conv2DTranspose(2, 3, stride 2,
  elu), Conv2DTranspose(1, kernel 4, stride 1, sigmoid). Trained `steps`
  steps with RMSprop(rho=0.8, epsilon=1e-5) on random images.

  Returns:
    (vae, encoder, decoder) Keras models.
  """
  keras.utils.set_random_seed(seed)
  inputs = keras.Input(shape=(side, side, 1), name="encoder_input")
  x = keras.layers.Conv2D(3, 4, strides=2, padding="same",
                          activation="relu")(inputs)
  x = keras.layers.Conv2D(4, 3, padding="same", activation="elu")(x)
  x = keras.layers.Flatten()(x)
  x = keras.layers.Dense(6, activation="tanh")(x)
  z_mean = keras.layers.Dense(latent, name="z_mean")(x)
  z_log_var = keras.layers.Dense(latent, name="z_log_var")(x)
  z = keras.layers.Lambda(_sampling, output_shape=(latent,), name="z")(
      [z_mean, z_log_var])
  encoder = keras.Model(inputs, [z_mean, z_log_var, z], name="encoder")
  latent_inputs = keras.Input(shape=(latent,), name="z_sampling")
  quarter = side // 4
  x = keras.layers.Dense(quarter * quarter * 3,
                         activation="relu")(latent_inputs)
  x = keras.layers.Reshape((quarter, quarter, 3))(x)
  x = keras.layers.Conv2DTranspose(4, 4, strides=2, padding="same",
                                   activation="relu")(x)
  x = keras.layers.Conv2D(3, 2, padding="same", activation="softplus")(x)
  x = keras.layers.Conv2DTranspose(2, 3, strides=2, padding="same",
                                   activation="elu")(x)
  outputs = keras.layers.Conv2DTranspose(1, 4, padding="same",
                                         activation="sigmoid",
                                         name="decoder_output")(x)
  decoder = keras.Model(latent_inputs, outputs, name="decoder")
  outputs = decoder(encoder(inputs)[2])
  vae = keras.Model(inputs, outputs, name="vae_conv_stack")
  reconstruction = keras.backend.sum(
      keras.losses.binary_crossentropy(inputs, outputs), axis=[1, 2])
  kl = -0.5 * keras.backend.sum(
      1 + z_log_var - keras.backend.square(z_mean)
      - keras.backend.exp(z_log_var), axis=-1)
  vae.add_loss(keras.backend.mean(reconstruction + kl))
  vae.compile(optimizer=keras.optimizers.RMSprop(rho=0.8, epsilon=1e-5))
  data = _random_images(seed, (16, side, side, 1))
  vae.fit(data, epochs=steps, batch_size=8, verbose=0)
  vae.save(path)
  return vae, encoder, decoder


def _define_flags():
  """The program's flags, defined only when it runs as a program (tests
  import this module beside programs with flags of the same names)."""
  flags.DEFINE_string("out", None, "Directory to write into.")
  flags.DEFINE_enum("how", "model", ["model", "weights", "savedmodel"],
                    "model.save to HDF5, save_weights, or a SavedModel.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  print(write_fixture(flags.FLAGS.out, flags.FLAGS.how)[0])


if __name__ == "__main__":
  _define_flags()
  app.run(main)
