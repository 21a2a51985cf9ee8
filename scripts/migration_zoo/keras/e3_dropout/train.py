"""e3_dropout: a tf_keras VAE in a circulating tutorial style (users' code, kept as written)."""
# Tutorial: keras/examples/variational_autoencoder.py as people modified it: Dropout(0.2) after the
# encoder's hidden layer.
# Saves: vae.save_weights('vae_mlp_mnist.h5'), vae.to_json() -> vae.json, vae.save('vae_mlp.h5').
# Usage: python train.py --out=DIR [--steps=938] [--data_dir=...]; writes reference.json (the Keras
# model's own mean per-example -ELBO over the 10,000 test images, 1 posterior sample) into DIR.
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np
from tf_keras.layers import Lambda, Input, Dense, Dropout
from tf_keras.models import Model
from tf_keras.losses import mse, binary_crossentropy
from tf_keras import backend as K
import common
args = common.parse_args(default_steps=938)

here = args.out

def sampling(args):
  z_mean, z_log_var = args
  batch = K.shape(z_mean)[0]
  dim = K.int_shape(z_mean)[1]
  epsilon = K.random_normal(shape=(batch, dim))
  return z_mean + K.exp(0.5 * z_log_var) * epsilon

x_train, x_test = common.load(args.data_dir)
original_dim = 784
x_train = x_train.reshape(-1, 784); x_test = x_test.reshape(-1, 784)
input_shape = (original_dim, ); intermediate_dim = 512; batch_size = 128; latent_dim = 2
inputs = Input(shape=input_shape, name='encoder_input')
x = Dense(intermediate_dim, activation='relu')(inputs)
x = Dropout(0.2)(x)
z_mean = Dense(latent_dim, name='z_mean')(x)
z_log_var = Dense(latent_dim, name='z_log_var')(x)
z = Lambda(sampling, output_shape=(latent_dim,), name='z')([z_mean, z_log_var])
encoder = Model(inputs, [z_mean, z_log_var, z], name='encoder')
latent_inputs = Input(shape=(latent_dim,), name='z_sampling')
x = Dense(intermediate_dim, activation='relu')(latent_inputs)
outputs = Dense(original_dim, activation='sigmoid')(x)
decoder = Model(latent_inputs, outputs, name='decoder')
outputs = decoder(encoder(inputs)[2])
vae = Model(inputs, outputs, name='vae_mlp')
reconstruction_loss = binary_crossentropy(inputs, outputs) * original_dim
kl_loss = 1 + z_log_var - K.square(z_mean) - K.exp(z_log_var)
kl_loss = K.sum(kl_loss, axis=-1) * -0.5
vae.add_loss(K.mean(reconstruction_loss + kl_loss))
vae.compile(optimizer='adam')
x_train, epochs = common.schedule(x_train, batch_size, args.steps)
vae.fit(x_train, epochs=epochs, batch_size=batch_size, verbose=2)
vae.save_weights(os.path.join(here, 'vae_mlp_mnist.h5'))
with open(os.path.join(here, "vae.json"), "w") as f:
  f.write(vae.to_json())
vae.save(os.path.join(here, 'vae_mlp.h5'))
common.reference(here, x_test, lambda b: encoder.predict(b, verbose=0)[:2],
                 lambda z: decoder.predict(z, verbose=0))
