"""c_kerasio_conv: a tf_keras VAE in a circulating tutorial style (users' code, kept as written)."""
# Tutorial: keras.io 'Variational AutoEncoder' (fchollet, 2020): a VAE(keras.Model) subclass with its
# own train_step, a Sampling layer class, conv 32/64 s2 + dense 16 encoder, conv-transpose decoder.
# Saves: vae.encoder.save('encoder.h5'), vae.decoder.save('decoder.h5'), vae.save_weights('vae_weights.h5'),
# encoder.save('encoder_savedmodel', save_format='tf').
# Usage: python train.py --out=DIR [--steps=100] [--data_dir=...]; writes reference.json (the Keras
# model's own mean per-example -ELBO over the 10,000 test images, 1 posterior sample) into DIR.
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np
import tensorflow as tf
import tf_keras as keras
from tf_keras import layers
import common
args = common.parse_args(default_steps=100)

here = args.out

class Sampling(layers.Layer):
  """Uses (z_mean, z_log_var) to sample z, the vector encoding a digit."""
  def call(self, inputs):
    z_mean, z_log_var = inputs
    batch = tf.shape(z_mean)[0]
    dim = tf.shape(z_mean)[1]
    epsilon = tf.random.normal(shape=(batch, dim))
    return z_mean + tf.exp(0.5 * z_log_var) * epsilon

latent_dim = 2
encoder_inputs = keras.Input(shape=(28, 28, 1))
x = layers.Conv2D(32, 3, activation="relu", strides=2, padding="same")(encoder_inputs)
x = layers.Conv2D(64, 3, activation="relu", strides=2, padding="same")(x)
x = layers.Flatten()(x)
x = layers.Dense(16, activation="relu")(x)
z_mean = layers.Dense(latent_dim, name="z_mean")(x)
z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
z = Sampling()([z_mean, z_log_var])
encoder = keras.Model(encoder_inputs, [z_mean, z_log_var, z], name="encoder")
latent_inputs = keras.Input(shape=(latent_dim,))
x = layers.Dense(7 * 7 * 64, activation="relu")(latent_inputs)
x = layers.Reshape((7, 7, 64))(x)
x = layers.Conv2DTranspose(64, 3, activation="relu", strides=2, padding="same")(x)
x = layers.Conv2DTranspose(32, 3, activation="relu", strides=2, padding="same")(x)
decoder_outputs = layers.Conv2DTranspose(1, 3, activation="sigmoid", padding="same")(x)
decoder = keras.Model(latent_inputs, decoder_outputs, name="decoder")

class VAE(keras.Model):
  def __init__(self, encoder, decoder, **kwargs):
    super().__init__(**kwargs)
    self.encoder = encoder
    self.decoder = decoder
  def train_step(self, data):
    with tf.GradientTape() as tape:
      z_mean, z_log_var, z = self.encoder(data)
      reconstruction = self.decoder(z)
      reconstruction_loss = tf.reduce_mean(tf.reduce_sum(
          keras.losses.binary_crossentropy(data, reconstruction), axis=(1, 2)))
      kl_loss = -0.5 * (1 + z_log_var - tf.square(z_mean) - tf.exp(z_log_var))
      kl_loss = tf.reduce_mean(tf.reduce_sum(kl_loss, axis=1))
      total_loss = reconstruction_loss + kl_loss
    grads = tape.gradient(total_loss, self.trainable_weights)
    self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
    return {"loss": total_loss}

x_train, x_test = common.load(args.data_dir)
x_train = np.expand_dims(x_train, -1); x_test = np.expand_dims(x_test, -1)
vae = VAE(encoder, decoder)
vae.compile(optimizer=keras.optimizers.Adam())
x_train, epochs = common.schedule(x_train, 128, args.steps)
vae.fit(x_train, epochs=epochs, batch_size=128, verbose=2)
vae.encoder.save(os.path.join(here, "encoder.h5"))
vae.decoder.save(os.path.join(here, "decoder.h5"))
vae.save_weights(os.path.join(here, "vae_weights.h5"))
encoder.save(os.path.join(here, "encoder_savedmodel"), save_format="tf")
common.reference(here, x_test, lambda b: encoder.predict(b, verbose=0)[:2],
                 lambda z: decoder.predict(z, verbose=0))
