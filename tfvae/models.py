"""Variational autoencoders as `tf.Module`s whose parts are distributions.

  prior            p(z)      = N(0, I)
  approx_posterior q(z | x)  = N(mu(x), diag(sigma(x)^2))   (the encoder)
  likelihood       p(x | z)  = a pixel-wise distribution     (the decoder)
"""
import math

import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import likelihoods as likelihoods_lib
from tfvae import nets

tfd = tfp.distributions

# Keeps the posterior scale away from zero, where log q(z | x) and the KL blow
# up; softplus alone can underflow to exactly 0 for very negative inputs.
_MIN_POSTERIOR_SCALE = 1e-5


def flatten(images):
  """Reshapes images [B, H, W, C] to [B, H * W * C]."""
  return tf.reshape(images, [tf.shape(images)[0], -1])


class GaussianEncoder(tf.Module):
  """Maps images to the approximate posterior q(z | x), a diagonal Normal.

  Args:
    image_shape: (H, W, C) of the input images.
    latent_size: Dimension of z.
    network: "mlp" or "conv".
    hidden_sizes: Hidden widths (mlp only).
    activation: Hidden activation name.
    name: Module name.
  """

  def __init__(self, image_shape, latent_size, network="mlp",
               hidden_sizes=(512,), activation="tanh", name=None):
    super().__init__(name=name)
    self.image_shape = tuple(image_shape)
    self.latent_size = latent_size
    self._network = network
    with self.name_scope:
      if network == "mlp":
        self.net = nets.MLP(math.prod(image_shape),
                            [*hidden_sizes, 2 * latent_size], activation,
                            name="mlp")
      elif network == "conv":
        self.net = nets.ConvEncoderNet(image_shape, 2 * latent_size,
                                       activation, name="conv")
      else:
        raise ValueError(f"unknown network {network!r}; choose mlp or conv")

  @tf.Module.with_name_scope
  def __call__(self, images):
    """Returns q(z | x): batch shape [B], event shape [latent_size].

    Args:
      images: float32 [B, H, W, C] in [0, 1].
    """
    inputs = flatten(images) if self._network == "mlp" else images
    loc, raw_scale = tf.split(self.net(inputs), 2, axis=-1)
    return tfd.MultivariateNormalDiag(
        loc=loc, scale_diag=tf.nn.softplus(raw_scale) + _MIN_POSTERIOR_SCALE)


class Decoder(tf.Module):
  """Maps latent points to the likelihood p(x | z).

  Args:
    latent_size: Dimension of z.
    image_shape: (H, W, C) of the images.
    likelihood: A `likelihoods` object (e.g. `likelihoods.Bernoulli()`).
    network: "mlp" or "conv".
    hidden_sizes: Hidden widths (mlp only), from z upwards.
    activation: Hidden activation name.
    name: Module name.
  """

  def __init__(self, latent_size, image_shape, likelihood, network="mlp",
               hidden_sizes=(512,), activation="tanh", name=None):
    super().__init__(name=name)
    self.latent_size = latent_size
    self.image_shape = tuple(image_shape)
    self.likelihood = likelihood
    height, width, channels = image_shape
    self._param_shape = (height, width, channels * likelihood.num_params)
    with self.name_scope:
      if network == "mlp":
        self.net = nets.MLP(latent_size,
                            [*hidden_sizes, math.prod(self._param_shape)],
                            activation, name="mlp")
      elif network == "conv":
        self.net = nets.ConvDecoderNet(latent_size, image_shape,
                                       self._param_shape[-1], activation,
                                       name="conv")
      else:
        raise ValueError(f"unknown network {network!r}; choose mlp or conv")

  @tf.Module.with_name_scope
  def params(self, z):
    """Returns the raw likelihood parameters [B, H, W, C * num_params]."""
    return tf.reshape(self.net(z), [-1, *self._param_shape])

  def __call__(self, z):
    """Returns p(x | z): batch shape [B], event shape [H, W, C].

    Args:
      z: float32 [B, latent_size].
    """
    return self.likelihood.distribution(self.params(z))

  def outputs(self, z):
    """Returns the named tensors of p(x | z): "mean" and its parameters."""
    return self.likelihood.outputs(self.params(z))


class VAE(tf.Module):
  """A variational autoencoder with a Gaussian encoder and a N(0, I) prior.

  Args:
    image_shape: (H, W, C) of the images.
    latent_size: Dimension of z.
    network: "mlp" or "conv" (encoder and decoder alike).
    hidden_sizes: MLP hidden widths of the encoder; the decoder uses them in
      reverse order.
    activation: Hidden activation name.
    likelihood: A likelihood name (see `likelihoods.NAMES`) or object.
    gaussian_scale: Pixel scale of the fixed-scale Gaussian likelihood.
    name: Module name.
  """

  def __init__(self, image_shape, latent_size=2, network="mlp",
               hidden_sizes=(512,), activation="tanh", likelihood="bernoulli",
               gaussian_scale=0.1, name=None):
    super().__init__(name=name)
    self.image_shape = tuple(int(d) for d in image_shape)
    self.latent_size = int(latent_size)
    if isinstance(likelihood, str):
      likelihood = likelihoods_lib.get(likelihood, gaussian_scale)
    with self.name_scope:
      self.encoder = GaussianEncoder(self.image_shape, self.latent_size,
                                     network, hidden_sizes, activation,
                                     name="encoder")
      self.decoder = Decoder(self.latent_size, self.image_shape, likelihood,
                             network, tuple(reversed(hidden_sizes)),
                             activation, name="decoder")

  def prior(self):
    """Returns p(z) = N(0, I) with event shape [latent_size]."""
    return tfd.MultivariateNormalDiag(loc=tf.zeros([self.latent_size]))

  def approx_posterior(self, images):
    """Returns q(z | x) for images [B, H, W, C] (see `GaussianEncoder`)."""
    return self.encoder(images)

  def likelihood(self, z):
    """Returns p(x | z) for z [B, latent_size] (see `Decoder`)."""
    return self.decoder(z)


MODEL_KINDS = ("vae",)


def build_model(config):
  """Builds the model a `config.Config` (with `image_shape` set) describes."""
  if config.image_shape is None:
    raise ValueError("config.image_shape must be set (from the data set)")
  if config.model == "vae":
    return VAE(config.image_shape, config.latent_dim, config.network,
               config.hidden_sizes, config.hidden_activation,
               config.likelihood, config.gaussian_scale, name="vae")
  raise ValueError(f"unknown model {config.model!r}; choose one of "
                   f"{', '.join(MODEL_KINDS)}")
