"""Variational bounds on log p(x), per example.

  rate       = KL(q(z | x) || p(z))          (nats)
  distortion = -E_q[log p(x | z)]            (nats)
  elbo       = -(distortion + rate)  <=  log p(x)

  iwae_k     = E[log (1/k) sum_i p(x, z_i) / q(z_i | x)],  z_i ~ q(z | x)
             with elbo = iwae_1 <= iwae_k <= iwae_{k+1} <= log p(x)
             (Burda et al., 2015).
"""
import math
from typing import NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

# Stateless draws name their algorithm: the default ("auto_select") lets the
# device or XLA choose, and then a CPU, a GPU and a jit-compiled step would
# draw different noise from the same seed.
RNG_ALG = "philox"


class Bound(NamedTuple):
  """Per-example terms of the ELBO, each float32 [B]."""
  elbo: tf.Tensor
  rate: tf.Tensor
  distortion: tf.Tensor


def reparameterize(approx_posterior, noise):
  """Maps standard-Normal noise [..., B, D] to samples of q(z | x).

  For a location-scale posterior this is z = loc + scale * noise, the
  reparameterisation that lets gradients flow through the sample. Taking the
  noise from the caller (rather than a seed) lets a distributed step draw
  the noise of the whole global batch and give each replica its slice, so
  the result does not depend on the number of replicas.
  """
  return approx_posterior.bijector.forward(noise)


def rate(approx_posterior, prior, z):
  """KL(q || p) per example: analytic when TFP has it, else Monte Carlo.

  Args:
    approx_posterior: q(z | x), batch shape [B].
    prior: p(z).
    z: Samples of q [B, D], used only for the Monte Carlo estimate
      log q(z) - log p(z).
  """
  try:
    return tfd.kl_divergence(approx_posterior, prior)
  except NotImplementedError:
    return approx_posterior.log_prob(z) - prior.log_prob(z)


def elbo(model, images, seed=None, noise=None):
  """The evidence lower bound of `model` on `images`, one sample of z each.

  Args:
    model: A VAE (`approx_posterior`, `prior`, `likelihood`).
    images: float32 [B, H, W, C], the targets x.
    seed: Stateless seed (int Tensor [2]) for the sample of z.
    noise: Alternatively, standard-Normal noise [B, D] (see
      `reparameterize`).

  Returns:
    A `Bound` of float32 [B] tensors.
  """
  approx_posterior = model.approx_posterior(images)
  if noise is None:
    z = approx_posterior.sample(seed=seed)
  else:
    z = reparameterize(approx_posterior, noise)
  the_rate = rate(approx_posterior, model.prior(), z)
  distortion = -model.likelihood(z).log_prob(images)
  return Bound(elbo=-(distortion + the_rate), rate=the_rate,
               distortion=distortion)


def log_importance_weights(model, images, num_samples, seed=None, noise=None):
  """log w_i = log p(x | z_i) + log p(z_i) - log q(z_i | x), z_i ~ q(z | x).

  Args:
    model: A VAE.
    images: float32 [B, H, W, C].
    num_samples: k, the number of z per example.
    seed: Stateless seed (int Tensor [2]).
    noise: Alternatively, standard-Normal noise [k, B, D].

  Returns:
    float32 [k, B].
  """
  approx_posterior = model.approx_posterior(images)
  if noise is None:
    z = approx_posterior.sample(num_samples, seed=seed)
  else:
    z = reparameterize(approx_posterior, noise)
  batch = tf.shape(images)[0]
  flat_z = tf.reshape(z, [-1, model.latent_size])
  tiled = tf.tile(images, [num_samples, 1, 1, 1])
  log_likelihood = tf.reshape(model.likelihood(flat_z).log_prob(tiled),
                              [num_samples, batch])
  return (log_likelihood + model.prior().log_prob(z)
          - approx_posterior.log_prob(z))


def iwae_bound(model, images, num_samples, seed=None, noise=None):
  """The importance-weighted bound with k = `num_samples`, per example [B].

  log (1/k) sum_i w_i is computed with logsumexp, never by exponentiating
  the weights.
  """
  log_w = log_importance_weights(model, images, num_samples, seed, noise)
  return tf.reduce_logsumexp(log_w, axis=0) - math.log(num_samples)


class ExampleNoise:
  """Stateless noise for the examples of one batch, whatever the replicas.

  Each draw is made for the whole global batch from a seed and sliced to this
  replica's examples, so example i receives the same noise with one replica
  or many (latent widths and images are small next to the step's matmuls).

  Args:
    seed: int Tensor [2], the batch's stateless seed.
    global_batch: Examples in the global batch.
    start: Index of this replica's first example in the global batch.
    local: Examples on this replica.
  """

  def __init__(self, seed, global_batch, start=0, local=None):
    self._seed = tf.cast(seed, tf.int64)
    self._global_batch = global_batch
    self._start = start
    self._local = global_batch if local is None else local
    self._draws = 0

  def _next_seed(self):
    self._draws += 1
    return tf.random.experimental.stateless_fold_in(self._seed, self._draws)

  def _slice(self, noise):
    return noise[self._start:self._start + self._local]

  def normal(self, shape):
    """Standard-Normal noise [local, *shape]."""
    return self._slice(tf.random.stateless_normal(
        [self._global_batch, *shape], self._next_seed(), alg=RNG_ALG))

  def uniform(self, shape):
    """U(0, 1) noise [local, *shape]."""
    return self._slice(tf.random.stateless_uniform(
        [self._global_batch, *shape], self._next_seed(), alg=RNG_ALG))


class RecordedNoise:
  """Stands in for `ExampleNoise` and records which draws are made.

  `draws` lists (kind, shape) per call, kind being "normal" or "uniform".
  """

  def __init__(self):
    self.draws = []

  def normal(self, shape):
    self.draws.append(("normal", list(shape)))
    return tf.zeros([1, *shape])

  def uniform(self, shape):
    self.draws.append(("uniform", list(shape)))
    return tf.fill([1, *shape], 0.5)


class ReplayedNoise:
  """Stands in for `ExampleNoise`, handing out tensors drawn beforehand.

  Args:
    drawn: The tensors, in the order `RecordedNoise` recorded the draws.
  """

  def __init__(self, drawn):
    self._drawn = list(drawn)

  def _next(self):
    if not self._drawn:
      raise ValueError("the objective drew more noise than was recorded")
    return self._drawn.pop(0)

  def normal(self, shape):
    del shape
    return self._next()

  def uniform(self, shape):
    del shape
    return self._next()


class Objective:
  """What a model is trained on: a per-example loss and named metrics.

  Subclasses set `metric_names` and implement `__call__`.
  """
  metric_names = ()

  def __call__(self, model, images, noise, step=None):
    """Returns (loss [B], {name: [B] for name in metric_names}).

    Args:
      model: The model being trained.
      images: float32 [B, H, W, C], the (binarised) training targets.
      noise: An `ExampleNoise` for this batch.
      step: The training step (int64 scalar Tensor), for schedules.
    """
    raise NotImplementedError


class ElboObjective(Objective):
  """Minimises distortion + beta * rate, i.e. -ELBO when beta = 1.

  Args:
    beta: Weight of the rate term.
  """
  metric_names = ("elbo", "rate", "distortion")

  def __init__(self, beta=1.0):
    self.beta = float(beta)

  def __call__(self, model, images, noise, step=None):
    bound = elbo(model, images, noise=noise.normal([model.latent_size]))
    loss = bound.distortion + self.beta * bound.rate
    return loss, {"elbo": bound.elbo, "rate": bound.rate,
                  "distortion": bound.distortion}


def for_config(config):
  """The training objective of a `config.Config`'s model kind."""
  if config.model == "vae":
    return ElboObjective(config.beta)
  raise ValueError(f"no objective for model {config.model!r}")
