"""Variational autoencoders as `tf.Module`s whose parts are distributions.

  prior            p(z)      = N(0, I)
  approx_posterior q(z | x)  = N(mu(x), diag(sigma(x)^2))   (the encoder)
  likelihood       p(x | z)  = a pixel-wise distribution     (the decoder)
"""
import math

import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import errors
from tfvae import likelihoods as likelihoods_lib
from tfvae import nets
from tfvae import precision
from tfvae import rng

tfd = tfp.distributions

# Keeps the posterior scale away from zero, where log q(z | x) and the KL blow
# up; softplus alone can underflow to exactly 0 for very negative inputs.
_MIN_POSTERIOR_SCALE = 1e-5

# How the encoder's second half of outputs r becomes the posterior scale
# (before the floor is added): softplus(r) is tfvae's own; log_variance
# (exp(r / 2), TF1 tutorials' `z_log_var`) and log_scale (exp(r)) are the
# parametrisations migrated TF1 and Keras VAEs were trained with.
POSTERIOR_SCALES = {
    "softplus": tf.nn.softplus,
    "log_variance": lambda raw: tf.exp(0.5 * raw),
    "log_scale": tf.exp,
}


def flatten(images):
  """Reshapes images [B, H, W, C] to [B, H * W * C]."""
  return tf.reshape(images, [tf.shape(images)[0], -1])


class GaussianEncoder(tf.Module):
  """Maps images to the approximate posterior q(z | x), a diagonal Normal.

  Args:
    image_shape: (H, W, C) of the input images.
    latent_size: Dimension of z.
    network: "mlp" or "conv": the architecture built, and the input `net`
      takes (flattened pixels or images).
    hidden_sizes: Hidden widths (mlp only).
    activation: Hidden activation name.
    name: Module name.
    conv_channels: Channels of the stride-2 convolutions (conv only, see
      `nets.encoder_net`); empty: the classic conv net.
    net: A network to use instead of building one (see `nets.encoder_net`
      for what it maps); its variables keep the names it was built with.
    posterior_scale: How the net's second half r of outputs becomes the
      scale: a name of `POSTERIOR_SCALES`.
    scale_floor: Added to the scale (keeps it away from 0).
  """

  def __init__(self, image_shape, latent_size, network="mlp",
               hidden_sizes=(512,), activation="tanh", name=None, net=None,
               conv_channels=(), posterior_scale="softplus",
               scale_floor=_MIN_POSTERIOR_SCALE):
    super().__init__(name=name)
    self.image_shape = tuple(image_shape)
    self.latent_size = latent_size
    self._network = network
    self._scale_of = POSTERIOR_SCALES[posterior_scale]
    self._scale_floor = scale_floor
    with self.name_scope:
      if net is None:
        net = nets.encoder_net(network, image_shape, 2 * latent_size,
                               hidden_sizes, activation,
                               conv_channels=conv_channels)
      self.net = net

  @tf.Module.with_name_scope
  def __call__(self, images):
    """Returns q(z | x): batch shape [B], event shape [latent_size].

    Args:
      images: float32 [B, H, W, C] in [0, 1].
    """
    inputs = flatten(images) if self._network == "mlp" else images
    loc, raw_scale = tf.split(precision.run(self.net, inputs), 2,
                               axis=-1)
    return tfd.MultivariateNormalDiag(
        loc=loc, scale_diag=self._scale_of(raw_scale) + self._scale_floor)


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
    conv_channels: Channels of the stride-2 convolutions (conv only, see
      `nets.encoder_net`); empty: the classic conv net.
    net: A network to use instead of building one: z [B, latent_size] to
      H * W * C * num_params numbers per example (see `nets.decoder_net`).
      Its variables keep the names it was built with, so a caller that
      wants the built-in names ("decoder/conv/...") builds it under
      `tf.name_scope(name)`.
  """

  def __init__(self, latent_size, image_shape, likelihood, network="mlp",
               hidden_sizes=(512,), activation="tanh", name=None, net=None,
               conv_channels=()):
    super().__init__(name=name)
    self.latent_size = latent_size
    self.image_shape = tuple(image_shape)
    self.likelihood = likelihood
    height, width, channels = image_shape
    self._param_shape = (height, width, channels * likelihood.num_params)
    with self.name_scope:
      if net is None:
        net = nets.decoder_net(network, latent_size, self._param_shape,
                               hidden_sizes, activation,
                               conv_channels=conv_channels)
      self.net = net

  @tf.Module.with_name_scope
  def params(self, z):
    """Returns the raw likelihood parameters [B, H, W, C * num_params]."""
    return tf.reshape(precision.run(self.net, z), [-1, *self._param_shape])

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
    conv_channels: Channels of the stride-2 convolutions (conv only, see
      `nets.encoder_net`); empty: the classic conv net.
    decoder_hidden_sizes: MLP hidden widths of the decoder from z upwards;
      None: `hidden_sizes` reversed.
    encoder_activations: One activation name per encoder hidden layer (mlp);
      None: `activation` for all.
    decoder_activations: The same for the decoder, from z upwards.
    posterior_scale: See `GaussianEncoder`.
    posterior_scale_floor: See `GaussianEncoder`'s `scale_floor`.
    encoder_conv_layers: A `nets.parse_conv_layers` text: the encoder is
      that chain of convolutions (a migrated TF1 conv encoder); None: as
      `network` says.
    decoder_conv_layers: The same for the decoder (dense first); None: as
      `network` says, or an MLP under `encoder_conv_layers`.
    decoder_conv_channels: (channels after the dense layer, after the
      transposed convolution) of a `nets.ConvDecoderNet` decoder under an
      mlp encoder; None: the decoder follows `network`.
  """

  def __init__(self, image_shape, latent_size=2, network="mlp",
               hidden_sizes=(512,), activation="tanh", likelihood="bernoulli",
               gaussian_scale=0.1, name=None, conv_channels=(),
               decoder_hidden_sizes=None, encoder_activations=None,
               decoder_activations=None, posterior_scale="softplus",
               posterior_scale_floor=_MIN_POSTERIOR_SCALE,
               decoder_conv_channels=None, encoder_conv_layers=None,
               decoder_conv_layers=None):
    super().__init__(name=name)
    self.image_shape = tuple(int(d) for d in image_shape)
    self.latent_size = int(latent_size)
    if isinstance(likelihood, str):
      likelihood = likelihoods_lib.get(likelihood, gaussian_scale)
    if decoder_hidden_sizes is None:
      decoder_hidden_sizes = tuple(reversed(hidden_sizes))
    with self.name_scope:
      net = None
      if encoder_conv_layers:
        with tf.name_scope("encoder"):
          net = nets.conv_stack_encoder(
              self.image_shape, 2 * self.latent_size,
              nets.parse_conv_layers(encoder_conv_layers))
      self.encoder = GaussianEncoder(self.image_shape, self.latent_size,
                                     network, hidden_sizes,
                                     encoder_activations or activation,
                                     name="encoder", net=net,
                                     conv_channels=conv_channels,
                                     posterior_scale=posterior_scale,
                                     scale_floor=posterior_scale_floor)
      net = None
      if decoder_conv_layers:
        with tf.name_scope("decoder"):
          net = nets.ConvStackDecoderNet(
              self.latent_size, self.image_shape,
              self.image_shape[-1] * likelihood.num_params,
              layers=nets.parse_conv_layers(decoder_conv_layers), name="conv")
      elif encoder_conv_layers:
        with tf.name_scope("decoder"):
          net = nets.MLP(self.latent_size,
                         [*decoder_hidden_sizes,
                          math.prod(self.image_shape) * likelihood.num_params],
                         decoder_activations or activation, name="mlp")
      if decoder_conv_channels is not None and net is None:
        channels = self.image_shape[-1]
        with tf.name_scope("decoder"):
          net = nets.ConvDecoderNet(
              self.latent_size, self.image_shape,
              channels * likelihood.num_params,
              (decoder_activations or [activation])[0],
              *decoder_conv_channels, name="conv")
      self.decoder = Decoder(self.latent_size, self.image_shape, likelihood,
                             network, tuple(decoder_hidden_sizes),
                             decoder_activations or activation,
                             name="decoder", net=net,
                             conv_channels=conv_channels)

  def prior(self):
    """Returns p(z) = N(0, I) with event shape [latent_size]."""
    return tfd.MultivariateNormalDiag(loc=tf.zeros([self.latent_size]))

  def approx_posterior(self, images):
    """Returns q(z | x) for images [B, H, W, C] (see `GaussianEncoder`)."""
    return self.encoder(images)

  def likelihood(self, z):
    """Returns p(x | z) for z [B, latent_size] (see `Decoder`)."""
    return self.decoder(z)


def one_hot_labels(labels, num_classes, dtype=tf.float32):
  """One-hot codes [B, K] of class labels [B], checked to lie in [0, K).

  tf.one_hot alone would turn a label out of range into a zero vector, and
  the model would silently draw from no class.

  Raises:
    tf.errors.InvalidArgumentError: naming the tensor `label`, if a label is
      out of range.
  """
  labels = tf.convert_to_tensor(labels)
  tf.debugging.assert_non_negative(
      labels, message="label must be a class index >= 0")
  tf.debugging.assert_less(
      labels, tf.cast(num_classes, labels.dtype),
      message=f"label must be a class index < {num_classes}")
  return tf.one_hot(labels, num_classes, dtype=dtype)


class ConditionalGaussianEncoder(tf.Module):
  """Maps images and class labels to q(z | x, y), a diagonal Normal.

  The one-hot label is appended to the flattened pixels (mlp) or, broadcast
  over the image, to its channels (conv).

  Args:
    image_shape: (H, W, C) of the input images.
    num_classes: Number of classes K.
    latent_size: Dimension of z.
    network: "mlp" or "conv".
    hidden_sizes: Hidden widths (mlp only).
    activation: Hidden activation name.
    name: Module name.
    conv_channels: Channels of the stride-2 convolutions (conv only, see
      `nets.encoder_net`); empty: the classic conv net.
  """

  def __init__(self, image_shape, num_classes, latent_size, network="mlp",
               hidden_sizes=(512,), activation="tanh", name=None,
               conv_channels=()):
    super().__init__(name=name)
    self.image_shape = tuple(image_shape)
    self.num_classes = num_classes
    self.latent_size = latent_size
    self._network = network
    with self.name_scope:
      self.net = nets.encoder_net(network, image_shape, 2 * latent_size,
                                  hidden_sizes, activation,
                                  condition_size=num_classes,
                                  conv_channels=conv_channels)

  @tf.Module.with_name_scope
  def __call__(self, images, labels):
    """Returns q(z | x, y): batch shape [B], event shape [latent_size].

    Args:
      images: float32 [B, H, W, C] in [0, 1].
      labels: int [B] class indices in [0, K).
    """
    one_hot = one_hot_labels(labels, self.num_classes, images.dtype)
    if self._network == "mlp":
      inputs = tf.concat([flatten(images), one_hot], axis=-1)
    else:
      planes = tf.ones_like(images[..., :1]) * one_hot[:, None, None, :]
      inputs = tf.concat([images, planes], axis=-1)
    loc, raw_scale = tf.split(precision.run(self.net, inputs), 2,
                               axis=-1)
    return tfd.MultivariateNormalDiag(
        loc=loc, scale_diag=tf.nn.softplus(raw_scale) + _MIN_POSTERIOR_SCALE)


class ConditionalDecoder(tf.Module):
  """Maps latent points and class labels to p(x | z, y).

  A `Decoder` whose input is [z, one_hot(y)].

  Args:
    latent_size: Dimension of z.
    num_classes: Number of classes K.
    image_shape: (H, W, C) of the images.
    likelihood: A `likelihoods` object.
    network: "mlp" or "conv".
    hidden_sizes: Hidden widths (mlp only), from z upwards.
    activation: Hidden activation name.
    name: Module name.
    conv_channels: Channels of the stride-2 convolutions (conv only, see
      `nets.encoder_net`); empty: the classic conv net.
  """

  def __init__(self, latent_size, num_classes, image_shape, likelihood,
               network="mlp", hidden_sizes=(512,), activation="tanh",
               name=None, conv_channels=()):
    super().__init__(name=name)
    self.latent_size = latent_size
    self.num_classes = num_classes
    self.image_shape = tuple(image_shape)
    self.likelihood = likelihood
    with self.name_scope:
      self.body = Decoder(latent_size + num_classes, image_shape, likelihood,
                          network, hidden_sizes, activation, name="body",
                          conv_channels=conv_channels)

  @tf.Module.with_name_scope
  def params(self, z, labels):
    """Returns the raw likelihood parameters [B, H, W, C * num_params]."""
    one_hot = one_hot_labels(labels, self.num_classes, z.dtype)
    return self.body.params(tf.concat([z, one_hot], axis=-1))

  def __call__(self, z, labels):
    """Returns p(x | z, y): batch shape [B], event shape [H, W, C].

    Args:
      z: float32 [B, latent_size].
      labels: int [B] class indices in [0, K).
    """
    return self.likelihood.distribution(self.params(z, labels))

  def outputs(self, z, labels):
    """Returns the named tensors of p(x | z, y): "mean" and its parameters."""
    return self.likelihood.outputs(self.params(z, labels))


class CVAE(tf.Module):
  """A conditional VAE on class labels (Sohn et al., 2015).

  prior p(z) = N(0, I), encoder q(z | x, y), decoder p(x | z, y); the ELBO
  bounds log p(x | y). Drawing z ~ p(z) and decoding with label y draws an
  image of class y.

  Args:
    image_shape: (H, W, C) of the images.
    num_classes: Number of classes K.
    latent_size: Dimension of z.
    network: "mlp" or "conv".
    hidden_sizes: MLP hidden widths of the encoder (decoder reversed).
    activation: Hidden activation name.
    likelihood: A likelihood name or object.
    gaussian_scale: Pixel scale of the fixed-scale Gaussian likelihood.
    name: Module name.
    conv_channels: Channels of the stride-2 convolutions (conv only, see
      `nets.encoder_net`); empty: the classic conv net.
  """

  def __init__(self, image_shape, num_classes=10, latent_size=2,
               network="mlp", hidden_sizes=(512,), activation="tanh",
               likelihood="bernoulli", gaussian_scale=0.1, name=None,
               conv_channels=()):
    super().__init__(name=name)
    self.image_shape = tuple(int(d) for d in image_shape)
    self.num_classes = int(num_classes)
    self.latent_size = int(latent_size)
    if isinstance(likelihood, str):
      likelihood = likelihoods_lib.get(likelihood, gaussian_scale)
    with self.name_scope:
      self.encoder = ConditionalGaussianEncoder(
          self.image_shape, self.num_classes, self.latent_size, network,
          hidden_sizes, activation, name="encoder",
          conv_channels=conv_channels)
      self.decoder = ConditionalDecoder(
          self.latent_size, self.num_classes, self.image_shape, likelihood,
          network, tuple(reversed(hidden_sizes)), activation, name="decoder",
          conv_channels=conv_channels)

  def prior(self):
    """Returns p(z) = N(0, I) with event shape [latent_size]."""
    return tfd.MultivariateNormalDiag(loc=tf.zeros([self.latent_size]))

  def approx_posterior(self, images, labels):
    """Returns q(z | x, y) for images [B, H, W, C] and labels [B]."""
    return self.encoder(images, labels)

  def likelihood(self, z, labels):
    """Returns p(x | z, y) for z [B, latent_size] and labels [B]."""
    return self.decoder(z, labels)


def is_conditional(model):
  """Whether `model` takes class labels (a `CVAE`)."""
  return isinstance(model, CVAE)


def can_generate(model):
  """Whether `model` has a prior to sample (autoencoders do not)."""
  return getattr(model, "generative", True)


def reconstruction_means(model, images, labels=None):
  """Reconstructions of images by any tfvae model, [B, H, W, C].

  VAEs decode the posterior mean, CVAEs the posterior mean with the image's
  label, autoencoders their code.

  Args:
    model: A model built by `kinds.build_model`.
    images: float32 [B, H, W, C] in [0, 1].
    labels: int [B] class labels (conditional models only).
  """
  images = tf.convert_to_tensor(images, tf.float32)
  if hasattr(model, "reconstruct"):
    return model.reconstruct(images)
  if is_conditional(model):
    labels = tf.convert_to_tensor(labels)
    return model.decoder.outputs(model.approx_posterior(images, labels).mean(),
                                 labels)["mean"]
  return model.decoder.outputs(model.approx_posterior(images).mean())["mean"]


def sample_means(model, num, seed):
  """Decoded prior samples for pictures: (means [N, H, W, C], columns).

  A CVAE gives one row per class, the same `num` latent points in every row
  (so a column keeps its style and changes its class); other VAEs give `num`
  samples in rows of 8.

  Args:
    model: A generative model (see `can_generate`).
    num: Samples (per class for a CVAE).
    seed: int seed of the latent points.

  Raises:
    errors.TfvaeError: If the model cannot generate.
  """
  if not can_generate(model):
    model.prior()  # Raises a TfvaeError that names the model kind.
  z = rng.picture_latents(seed, num, model.latent_size)
  if is_conditional(model):
    labels = tf.repeat(tf.range(model.num_classes), num)
    z = tf.tile(z, [model.num_classes, 1])
    return model.decoder.outputs(z, labels)["mean"], num
  return model.decoder.outputs(z)["mean"], 8


def class_label(spec, class_names, flag="--label"):
  """Reads a class label given as an index ("7") or a name ("Sneaker").

  Args:
    spec: The user's text (or int).
    class_names: The data set's class names, indexed by label.
    flag: The flag named in errors.

  Returns:
    The int label in [0, len(class_names)).

  Raises:
    errors.TfvaeError: If `spec` is neither a valid index nor a class name
      (names compare case-insensitively).
  """
  text = str(spec).strip()
  if text.lstrip("-").isdigit():
    label = int(text)
    if 0 <= label < len(class_names):
      return label
  else:
    by_name = {name.lower(): i for i, name in enumerate(class_names)}
    if text.lower() in by_name:
      return by_name[text.lower()]
  choices = ", ".join(f"{i}={name}" for i, name in enumerate(class_names))
  raise errors.TfvaeError(f"{flag}={spec}: not a class of this data set; "
                          f"choose one of {choices}")
