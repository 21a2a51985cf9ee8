"""Deterministic autoencoders: plain, denoising, sparse and contractive.

  code            h = f(x)                    (the encoder, [B, code_size])
  likelihood      p(x | h)                    (the decoder, as in the VAE)
  distortion      -log p(x | f(x))            (nats; BCE for Bernoulli pixels)

The four kinds share one model, `Autoencoder`, and differ in what they are
trained on (see the `*Objective` classes):

  ae              distortion
  denoising_ae    -log p(x | f(c(x))), c a random corruption of the batch,
                  applied in training only; the target is the clean x
  sparse_ae       distortion + w * S(h): S = sum_j KL(rho || rho_hat_j), rho_hat
                  the batch mean of the sigmoid code, or S = sum_j |h_j| (L1)
  contractive_ae  distortion + w * ||J_f(x)||_F^2, the squared Frobenius norm
                  of the encoder Jacobian (Rifai et al., 2011), computed exactly
                  with `tf.GradientTape.batch_jacobian`

An autoencoder has no prior, so it cannot generate: `prior()` raises a
`TfvaeError` saying so.
"""
import math

import numpy as np
import tensorflow as tf

from tfvae import errors
from tfvae import likelihoods as likelihoods_lib
from tfvae import models
from tfvae import nets
from tfvae import objectives
from tfvae import precision
from tfvae import rng

CODE_ACTIVATIONS = ("linear", "sigmoid")
CORRUPTIONS = ("salt_and_pepper", "gaussian", "masking")
SPARSITY_PENALTIES = ("kl", "l1")
# A sigmoid unit counts as active on an example when its activation exceeds
# this: it is then more "on" than "off".
ACTIVE_THRESHOLD = 0.5
# Keeps log(rho_hat) and log(1 - rho_hat) finite when the mean activation of a
# unit saturates.
_RHO_HAT_FLOOR = 1e-6
# PSNR of a perfect reconstruction would be infinite; MSE is floored here
# (100 dB for unit peak).
_MSE_FLOOR = 1e-10


class Corruption:
  """A random corruption of images in [0, 1], for denoising.

  Kinds (`level` is the parameter after the colon in `--noise`):
    salt_and_pepper:p  each pixel, with probability p, is replaced by 0 or 1
                       (equally likely).
    gaussian:s         x + s * N(0, 1), clipped to [0, 1].
    masking:p          each pixel, with probability p, is set to 0.

  Args:
    kind: One of `CORRUPTIONS`.
    level: The probability p (in [0, 1]) or the standard deviation s (>= 0).
  """

  def __init__(self, kind, level, spec=None):
    spec = spec or f"{kind}:{level}"
    if kind not in CORRUPTIONS:
      raise errors.TfvaeError(
          f"--noise={spec}: unknown corruption {kind!r}; choose one "
          f"of {', '.join(CORRUPTIONS)}")
    level = float(level)
    if not math.isfinite(level) or level < 0 or (
        kind != "gaussian" and level > 1):
      raise errors.TfvaeError(
          f"--noise={spec}: the level must be "
          f"{'a probability in [0, 1]' if kind != 'gaussian' else '>= 0'}")
    self.kind = kind
    self.level = level

  @classmethod
  def parse(cls, spec):
    """Parses "KIND:LEVEL", e.g. "salt_and_pepper:0.1".

    Raises:
      errors.TfvaeError: naming --noise, if `spec` is malformed.
    """
    kind, sep, level = str(spec).partition(":")
    try:
      value = float(level)
    except ValueError:
      value = None
    if not sep or value is None:
      raise errors.TfvaeError(
          f"--noise={spec}: expected KIND:LEVEL with KIND one of "
          f"{', '.join(CORRUPTIONS)}, e.g. salt_and_pepper:0.1")
    return cls(kind, value, spec)

  def __str__(self):
    return f"{self.kind}:{self.level:g}"

  def __call__(self, x, noise):
    """Corrupts x [B, H, W, C] in [0, 1].

    Args:
      x: float32 [B, H, W, C].
      noise: An `rng.ExampleNoise` for this batch.

    Returns:
      float32 [B, H, W, C] in [0, 1].
    """
    shape = x.shape[1:]
    if self.kind == "salt_and_pepper":
      hit = noise.uniform(shape) < self.level
      salt = tf.cast(noise.uniform(shape) < 0.5, x.dtype)
      return tf.where(hit, salt, x)
    if self.kind == "gaussian":
      return tf.clip_by_value(x + self.level * noise.normal(shape), 0., 1.)
    keep = tf.cast(noise.uniform(shape) >= self.level, x.dtype)
    return x * keep


def corrupt(images, corruption, seed):
  """Corrupts a whole array reproducibly (for tools and evaluation).

  Args:
    images: float [N, H, W, C] in [0, 1].
    corruption: A `Corruption` or its "KIND:LEVEL" spec.
    seed: int; the same seed gives the same corruption.

  Returns:
    float32 numpy [N, H, W, C].
  """
  if not isinstance(corruption, Corruption):
    corruption = Corruption.parse(corruption)
  x = tf.convert_to_tensor(np.asarray(images, np.float32))
  noise = rng.ExampleNoise(tf.constant([seed, 0], tf.int64),
                                  int(x.shape[0]))
  return corruption(x, noise).numpy()


def psnr(reference, images):
  """Peak signal-to-noise ratio per image, in dB, for pixels in [0, 1].

  PSNR = 10 log10(1 / MSE), MSE over the pixels of one image.

  Args:
    reference: float [N, H, W, C], the clean images.
    images: float [N, H, W, C], the images judged.

  Returns:
    float64 numpy [N].
  """
  reference = np.asarray(reference, np.float64)
  images = np.asarray(images, np.float64)
  mse = np.mean((reference - images) ** 2,
                axis=tuple(range(1, reference.ndim)))
  return 10.0 * np.log10(1.0 / np.maximum(mse, _MSE_FLOOR))


class CodeEncoder(tf.Module):
  """Maps images to a deterministic code h = f(x).

  Args:
    image_shape: (H, W, C) of the input images.
    code_size: Width of the code.
    network: "mlp" or "conv".
    hidden_sizes: Hidden widths (mlp only).
    activation: Hidden activation name.
    code_activation: "linear" or "sigmoid" (codes in (0, 1), as the KL
      sparsity penalty needs).
    name: Module name.
    conv_channels: Channels of the stride-2 convolutions (conv only, see
      `nets.encoder_net`); empty: the classic conv net.
  """

  def __init__(self, image_shape, code_size, network="mlp",
               hidden_sizes=(512,), activation="tanh",
               code_activation="linear", name=None, conv_channels=()):
    super().__init__(name=name)
    if code_activation not in CODE_ACTIVATIONS:
      raise ValueError(f"unknown code activation {code_activation!r}; "
                       f"choose one of {', '.join(CODE_ACTIVATIONS)}")
    self.image_shape = tuple(image_shape)
    self.code_size = code_size
    self.code_activation = code_activation
    self._network = network
    with self.name_scope:
      self.net = nets.encoder_net(network, image_shape, code_size,
                                  hidden_sizes, activation,
                                  conv_channels=conv_channels)

  @tf.Module.with_name_scope
  def __call__(self, images):
    """Returns the code [B, code_size] of images [B, H, W, C] in [0, 1]."""
    inputs = models.flatten(images) if self._network == "mlp" else images
    code = precision.run(self.net, inputs)
    if self.code_activation == "sigmoid":
      code = tf.sigmoid(code)
    return code


class Autoencoder(tf.Module):
  """A deterministic autoencoder: code h = f(x), decoder p(x | h).

  Args:
    image_shape: (H, W, C) of the images.
    code_size: Width of the code (`latent_size`).
    network: "mlp" or "conv" (encoder and decoder alike).
    hidden_sizes: MLP hidden widths of the encoder; the decoder uses them in
      reverse order.
    activation: Hidden activation name.
    likelihood: A likelihood name (see `likelihoods.NAMES`) or object.
    gaussian_scale: Pixel scale of the fixed-scale Gaussian likelihood.
    code_activation: "linear" or "sigmoid".
    kind: The model kind this autoencoder is trained as (see
      `kinds.names()`), used in messages.
    name: Module name.
    conv_channels: Channels of the stride-2 convolutions (conv only, see
      `nets.encoder_net`); empty: the classic conv net.
  """
  # No prior: tools that sample (pictures, `generate`) check this.
  generative = False

  def __init__(self, image_shape, code_size=32, network="mlp",
               hidden_sizes=(512,), activation="tanh", likelihood="bernoulli",
               gaussian_scale=0.1, code_activation="linear", kind="ae",
               name=None, conv_channels=()):
    super().__init__(name=name)
    self.image_shape = tuple(int(d) for d in image_shape)
    self.latent_size = int(code_size)
    self.kind = kind
    if isinstance(likelihood, str):
      likelihood = likelihoods_lib.get(likelihood, gaussian_scale)
    with self.name_scope:
      self.encoder = CodeEncoder(self.image_shape, self.latent_size, network,
                                 hidden_sizes, activation, code_activation,
                                 name="encoder", conv_channels=conv_channels)
      self.decoder = models.Decoder(self.latent_size, self.image_shape,
                                    likelihood, network,
                                    tuple(reversed(hidden_sizes)), activation,
                                    name="decoder",
                                    conv_channels=conv_channels)

  def encode(self, images):
    """Returns the code [B, latent_size] of images [B, H, W, C]."""
    return self.encoder(images)

  def likelihood(self, code):
    """Returns p(x | h) for codes [B, latent_size] (see `models.Decoder`)."""
    return self.decoder(code)

  def decode(self, code):
    """Returns the named tensors of p(x | h): "mean" [B, H, W, C] and the
    likelihood's parameters."""
    return self.decoder.outputs(code)

  def reconstruct(self, images):
    """Returns the mean of p(x | f(x)) [B, H, W, C] for images [B, H, W, C]."""
    return self.decoder.outputs(self.encode(images))["mean"]

  def prior(self):
    """An autoencoder has none.

    Raises:
      errors.TfvaeError: always; only VAEs can generate.
    """
    raise errors.TfvaeError(
        f"model {self.kind} is a deterministic autoencoder with no prior "
        "over its codes, so it cannot generate samples; use encode, decode "
        "or reconstruct, or train a vae, iwae or cvae to generate")


# Objectives.


def _distortion(model, inputs, targets):
  """-log p(targets | f(inputs)) [B] and the reconstruction mean."""
  params = model.decoder.params(model.encode(inputs))
  likelihood = model.decoder.likelihood
  distortion = -likelihood.distribution(params).log_prob(targets)
  return distortion, likelihood.outputs(params)["mean"]


def _psnr(reference, images):
  """Per-example PSNR [B] in dB (tensor version of `psnr`)."""
  mse = tf.reduce_mean(tf.math.squared_difference(reference, images),
                       axis=[1, 2, 3])
  return -10.0 * tf.math.log(tf.maximum(mse, _MSE_FLOOR)) / math.log(10.0)


class ReconstructionObjective(objectives.Objective):
  """Minimises the distortion -log p(x | f(x)) (the plain autoencoder)."""
  metric_names = ("distortion",)

  def __call__(self, model, images, noise, step=None, labels=None):
    distortion, _ = _distortion(model, images, images)
    return distortion, {"distortion": distortion}


class DenoisingObjective(objectives.Objective):
  """Minimises -log p(x | f(c(x))): reconstruct the clean x from c(x).

  Metrics: distortion (against the clean x), psnr_noisy (c(x) against x) and
  psnr_denoised (the reconstruction mean against x), in dB.

  Args:
    corruption: A `Corruption`.
  """
  metric_names = ("distortion", "psnr_noisy", "psnr_denoised")

  def __init__(self, corruption):
    self.corruption = corruption

  def __call__(self, model, images, noise, step=None, labels=None):
    corrupted = self.corruption(images, noise)
    distortion, mean = _distortion(model, corrupted, images)
    return distortion, {"distortion": distortion,
                        "psnr_noisy": _psnr(images, corrupted),
                        "psnr_denoised": _psnr(images, mean)}


def sparsity_kl(target, mean_activation):
  """sum_j KL(Bernoulli(target) || Bernoulli(mean_activation_j)).

  Args:
    target: rho in (0, 1).
    mean_activation: rho_hat [L], mean activations in [0, 1].

  Returns:
    A float32 scalar.
  """
  rho_hat = tf.clip_by_value(mean_activation, _RHO_HAT_FLOOR,
                             1.0 - _RHO_HAT_FLOOR)
  rho = tf.constant(target, tf.float32)
  return tf.reduce_sum(rho * tf.math.log(rho / rho_hat)
                       + (1. - rho) * tf.math.log((1. - rho) / (1. - rho_hat)))


class SparseObjective(objectives.Objective):
  """Minimises distortion + weight * sparsity penalty on the code.

  penalty "kl": sum_j KL(target || rho_hat_j) with rho_hat_j the mean
  activation of code unit j over the (replica's) batch, the sparse
  autoencoder of Ng's lecture notes; every example of the batch carries it.
  penalty "l1": sum_j |h_j(x)| per example.

  Metrics: distortion, sparsity_penalty (unweighted), active_fraction (the
  fraction of code units above `ACTIVE_THRESHOLD` on an example) and
  mean_activation.

  Args:
    weight: Weight of the penalty.
    target: The target mean activation rho (kl only), in (0, 1).
    penalty: "kl" or "l1".
  """
  metric_names = ("distortion", "sparsity_penalty", "active_fraction",
                  "mean_activation")

  def __init__(self, weight, target=0.05, penalty="kl"):
    if penalty not in SPARSITY_PENALTIES:
      raise ValueError(f"unknown sparsity penalty {penalty!r}; choose one of "
                       f"{', '.join(SPARSITY_PENALTIES)}")
    self.weight = float(weight)
    self.target = float(target)
    self.penalty = penalty

  def __call__(self, model, images, noise, step=None, labels=None):
    code = model.encode(images)
    params = model.decoder.params(code)
    distortion = -model.decoder.likelihood.distribution(params).log_prob(
        images)
    if self.penalty == "kl":
      batch_penalty = sparsity_kl(self.target, tf.reduce_mean(code, axis=0))
      penalty = tf.fill(tf.shape(distortion), batch_penalty)
    else:
      penalty = tf.reduce_sum(tf.abs(code), axis=-1)
    active = tf.reduce_mean(tf.cast(code > ACTIVE_THRESHOLD, tf.float32),
                            axis=-1)
    return distortion + self.weight * penalty, {
        "distortion": distortion, "sparsity_penalty": penalty,
        "active_fraction": active,
        "mean_activation": tf.reduce_mean(code, axis=-1)}


def encoder_jacobian(model, images):
  """The Jacobian of the code with respect to the pixels, per example.

  Args:
    model: An `Autoencoder`.
    images: float32 [B, H, W, C].

  Returns:
    (code [B, L], jacobian [B, L, H, W, C]) with jacobian[b, l] = d code[b, l]
    / d images[b].
  """
  with tf.GradientTape() as tape:
    tape.watch(images)
    code = model.encode(images)
  return code, tape.batch_jacobian(code, images)


class ContractiveObjective(objectives.Objective):
  """Minimises distortion + weight * ||J_f(x)||_F^2.

  Metrics: distortion and jacobian_frobenius_sq (||J_f(x)||_F^2, unweighted).

  Args:
    weight: Weight of the penalty.
  """
  metric_names = ("distortion", "jacobian_frobenius_sq")

  def __init__(self, weight):
    self.weight = float(weight)

  def __call__(self, model, images, noise, step=None, labels=None):
    code, jacobian = encoder_jacobian(model, images)
    frobenius_sq = tf.reduce_sum(tf.square(jacobian), axis=[1, 2, 3, 4])
    params = model.decoder.params(code)
    distortion = -model.decoder.likelihood.distribution(params).log_prob(
        images)
    return distortion + self.weight * frobenius_sq, {
        "distortion": distortion, "jacobian_frobenius_sq": frobenius_sq}


def denoise(model, images, batch_size=500, labels=None):
  """Reconstructs images in batches (the denoiser's output).

  Args:
    model: A model with reconstructions (see `models.reconstruction_means`).
    images: float [N, H, W, C] in [0, 1], e.g. noisy images.
    batch_size: Images per batch.
    labels: int [N] class labels (conditional models only).

  Returns:
    float32 numpy [N, H, W, C].
  """
  images = np.asarray(images, np.float32)
  out = []
  for start in range(0, len(images), batch_size):
    batch_labels = None if labels is None else labels[start:start + batch_size]
    out.append(models.reconstruction_means(
        model, images[start:start + batch_size], batch_labels).numpy())
  if not out:
    return np.zeros_like(images)
  return np.concatenate(out)

