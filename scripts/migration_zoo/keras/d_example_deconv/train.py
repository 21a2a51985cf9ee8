"""d_example_deconv: a tf_keras VAE in a circulating tutorial style (users' code, kept as written)."""
# Tutorial: keras/examples/variational_autoencoder_deconv.py (Keras 2.2): conv 32/64 s2 + dense 16
# encoder, Conv2DTranspose decoder, Lambda sampling, add_loss, rmsprop.
# Saves: vae.save_weights('vae_cnn_mnist.h5'), vae.save('vae_cnn.h5').
# Usage: python train.py --out=DIR [--steps=100] [--data_dir=...]; writes reference.json (the Keras
# model's own mean per-example -ELBO over the 10,000 test images, 1 posterior sample) into DIR.
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np
from tf_keras.layers import Dense, Input, Conv2D, Flatten, Lambda, Reshape, Conv2DTranspose
from tf_keras.models import Model
from tf_keras.losses import binary_crossentropy
from tf_keras import backend as K
import common
args = common.parse_args(default_steps=100)

here = args.out

def sampling(args):
  z_mean, z_log_var = args
  batch = K.shape(z_mean)[0]
  dim = K.int_shape(z_mean)[1]
  epsilon = K.random_normal(shape=(batch, dim))
  return z_mean + K.exp(0.5 * z_log_var) * epsilon

x_train, x_test = common.load(args.data_dir)
image_size = 28
x_train = np.reshape(x_train, [-1, image_size, image_size, 1])
x_test = np.reshape(x_test, [-1, image_size, image_size, 1])
input_shape = (image_size, image_size, 1)
batch_size = 128; kernel_size = 3; filters = 16; latent_dim = 2
inputs = Input(shape=input_shape, name='encoder_input')
x = inputs
for i in range(2):
  filters *= 2
  x = Conv2D(filters=filters, kernel_size=kernel_size, activation='relu', strides=2, padding='same')(x)
shape = K.int_shape(x)
x = Flatten()(x)
x = Dense(16, activation='relu')(x)
z_mean = Dense(latent_dim, name='z_mean')(x)
z_log_var = Dense(latent_dim, name='z_log_var')(x)
z = Lambda(sampling, output_shape=(latent_dim,), name='z')([z_mean, z_log_var])
encoder = Model(inputs, [z_mean, z_log_var, z], name='encoder')
latent_inputs = Input(shape=(latent_dim,), name='z_sampling')
x = Dense(shape[1] * shape[2] * shape[3], activation='relu')(latent_inputs)
x = Reshape((shape[1], shape[2], shape[3]))(x)
for i in range(2):
  x = Conv2DTranspose(filters=filters, kernel_size=kernel_size, activation='relu', strides=2, padding='same')(x)
  filters //= 2
outputs = Conv2DTranspose(filters=1, kernel_size=kernel_size, activation='sigmoid', padding='same', name='decoder_output')(x)
decoder = Model(latent_inputs, outputs, name='decoder')
outputs = decoder(encoder(inputs)[2])
vae = Model(inputs, outputs, name='vae')
reconstruction_loss = binary_crossentropy(K.flatten(inputs), K.flatten(outputs))
reconstruction_loss *= image_size * image_size
kl_loss = 1 + z_log_var - K.square(z_mean) - K.exp(z_log_var)
kl_loss = K.sum(kl_loss, axis=-1) * -0.5
vae.add_loss(K.mean(reconstruction_loss + kl_loss))
vae.compile(optimizer='rmsprop')
x_train, epochs = common.schedule(x_train, batch_size, args.steps)
vae.fit(x_train, epochs=epochs, batch_size=batch_size, verbose=2)
vae.save_weights(os.path.join(here, 'vae_cnn_mnist.h5'))
vae.save(os.path.join(here, 'vae_cnn.h5'))
common.reference(here, x_test, lambda b: encoder.predict(b, verbose=0)[:2],
                 lambda z: decoder.predict(z, verbose=0))
