"""a_blog2016: a tf_keras VAE in a circulating tutorial style (users' code, kept as written)."""
# Tutorial: F. Chollet, 'Building Autoencoders in Keras' (blog, 2016): graph mode, a loss function
# closing over z_mean and z_log_sigma (exp(z_log_sigma) is the scale: log sigma, not log variance), rmsprop.
# Saves: vae.save_weights('vae_weights.h5') + vae.to_json() -> vae.json, and vae.save('vae_model.h5').
# Usage: python train.py --out=DIR [--steps=1200] [--data_dir=...]; writes reference.json (the Keras
# model's own mean per-example -ELBO over the 10,000 test images, 1 posterior sample) into DIR.
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np
import tensorflow as tf
from tf_keras.layers import Input, Dense, Lambda
from tf_keras.models import Model
from tf_keras import backend as K
from tf_keras import losses as objectives
tf.compat.v1.disable_eager_execution()  # the 2016 loss closes over z_mean (graph mode, as people ran it)
import common
args = common.parse_args(default_steps=1200)

here = args.out
batch_size, original_dim, latent_dim, intermediate_dim = 100, 784, 2, 256
epsilon_std = 1.0

x = Input(batch_shape=(batch_size, original_dim))
h = Dense(intermediate_dim, activation='relu')(x)
z_mean = Dense(latent_dim)(h)
z_log_sigma = Dense(latent_dim)(h)

def sampling(args):
  z_mean, z_log_sigma = args
  epsilon = K.random_normal(shape=(batch_size, latent_dim), mean=0., stddev=epsilon_std)
  return z_mean + K.exp(z_log_sigma) * epsilon

z = Lambda(sampling, output_shape=(latent_dim,))([z_mean, z_log_sigma])
decoder_h = Dense(intermediate_dim, activation='relu')
decoder_mean = Dense(original_dim, activation='sigmoid')
h_decoded = decoder_h(z)
x_decoded_mean = decoder_mean(h_decoded)
vae = Model(x, x_decoded_mean)
encoder = Model(x, z_mean)
decoder_input = Input(shape=(latent_dim,))
generator = Model(decoder_input, decoder_mean(decoder_h(decoder_input)))

def vae_loss(x, x_decoded_mean):
  xent_loss = original_dim * objectives.binary_crossentropy(x, x_decoded_mean)
  kl_loss = -0.5 * K.mean(1 + 2 * z_log_sigma - K.square(z_mean) - K.exp(2 * z_log_sigma), axis=-1)
  return xent_loss + kl_loss

vae.compile(optimizer='rmsprop', loss=vae_loss)
x_train, x_test = common.load(args.data_dir)
x_train = x_train.reshape(-1, 784); x_test = x_test.reshape(-1, 784)
x_train, epochs = common.schedule(x_train, batch_size, args.steps)
vae.fit(x_train, x_train, shuffle=True, epochs=epochs, batch_size=batch_size, verbose=2)
vae.save_weights(os.path.join(here, "vae_weights.h5"))
with open(os.path.join(here, "vae.json"), "w") as f:
  f.write(vae.to_json())
vae.save(os.path.join(here, "vae_model.h5"))
stats = Model(x, [z_mean, z_log_sigma])
common.reference(here, x_test, lambda b: stats.predict(b, batch_size=100, verbose=0),
                 lambda z: generator.predict(z, verbose=0), scale="log_scale")
