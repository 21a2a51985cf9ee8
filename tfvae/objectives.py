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

from tfvae import errors

tfd = tfp.distributions

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
  if _is_diagonal_normal(approx_posterior):
    # The same affine map as the bijector's, without its operator calls.
    return (approx_posterior.loc
            + approx_posterior.scale.diag_part() * noise)
  return approx_posterior.bijector.forward(noise)


def _is_diagonal_normal(distribution):
  return (isinstance(distribution, tfd.MultivariateNormalDiag)
          and distribution.loc is not None)


def diagonal_normal_kl(q, p):
  """KL(q || p) of two diagonal Normals, summed over the event [..., D].

  KL = sum_j log(s_pj / s_qj) + (s_qj^2 + (m_qj - m_pj)^2) / (2 s_pj^2)
       - 1/2,
  TFP's analytic KL of `MultivariateNormalDiag`s written per coordinate: it
  takes a few element-wise ops where the general linear-operator form takes
  dozens, which counts inside a small model's training step.
  """
  q_scale = q.scale.diag_part()
  p_scale = p.scale.diag_part()
  ratio = q_scale / p_scale
  gap = (q.loc - p.loc) / p_scale
  return tf.reduce_sum(
      0.5 * (tf.square(ratio) + tf.square(gap) - 1.0) - tf.math.log(ratio),
      axis=-1)


def rate(approx_posterior, prior, z):
  """KL(q || p) per example: analytic when TFP has it, else Monte Carlo.

  Args:
    approx_posterior: q(z | x), batch shape [B].
    prior: p(z).
    z: Samples of q [B, D], used only for the Monte Carlo estimate
      log q(z) - log p(z).
  """
  if _is_diagonal_normal(approx_posterior) and _is_diagonal_normal(prior):
    return diagonal_normal_kl(approx_posterior, prior)
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


def chunked_log_px(model, images, num_samples, chunk_size, noise_fn,
                   log_likelihood=None):
  """log (1/k) sum_i w_i per example, k = `num_samples`, in one compiled loop.

  The encoder runs once for the batch; the k samples are decoded in chunks
  of `chunk_size`, each one batched call of the decoder on [chunk * B]
  latent points (large matmuls), so memory is bounded by chunk_size * B
  decoded images whatever k is. Each chunk's log weights (float32) are
  reduced to their max m_c and sum_i exp(a_i - m_c); the running
  log-sum-exp over chunks is kept in float64, so nothing is exponentiated
  unshifted and k = 5000 loses no precision.

  Args:
    model: A VAE (`prior()`, `approx_posterior(x)`, `likelihood(z)`,
      `latent_size`).
    images: float32 [B, H, W, C].
    num_samples: int32 scalar, k >= 1.
    chunk_size: int32 scalar, samples decoded at once, >= 1.
    noise_fn: fn(start, count) -> standard-Normal noise [count, B, D] of
      samples start..start+count-1 (so the estimate does not depend on the
      chunk size).
    log_likelihood: Optional fn(z [c, B, D], images [B, H, W, C]) -> log
      p(x | z) [c, B]; default `model.likelihood` of the c * B points, scored
      against the images tiled c times.

  Returns:
    float64 [B], the importance-weighted estimate of log p(x).
  """
  if log_likelihood is None:
    def log_likelihood(z, x):
      count = tf.shape(z)[0]
      flat_z = tf.reshape(z, [-1, model.latent_size])
      return tf.reshape(model.likelihood(flat_z).log_prob(
          tf.tile(x, [count, 1, 1, 1])), [count, -1])
  approx_posterior = model.approx_posterior(images)
  prior = model.prior()
  batch = tf.shape(images)[0]
  num_samples = tf.cast(num_samples, tf.int32)
  chunk_size = tf.cast(chunk_size, tf.int32)
  num_chunks = (num_samples + chunk_size - 1) // chunk_size

  def body(i, running_max, running_sum):
    start = i * chunk_size
    count = tf.minimum(chunk_size, num_samples - start)
    z = reparameterize(approx_posterior, noise_fn(start, count))
    log_w = (log_likelihood(z, images) + prior.log_prob(z)
             - approx_posterior.log_prob(z))
    chunk_max = tf.reduce_max(log_w, axis=0)
    chunk_sum = tf.reduce_sum(tf.exp(log_w - chunk_max), axis=0)
    chunk_max = tf.cast(chunk_max, tf.float64)
    new_max = tf.maximum(running_max, chunk_max)
    running_sum = (running_sum * tf.exp(running_max - new_max)
                   + tf.cast(chunk_sum, tf.float64)
                   * tf.exp(chunk_max - new_max))
    return i + 1, new_max, running_sum

  # A finite start (not -inf), so that no inf is ever subtracted from inf.
  start_max = tf.fill([batch], tf.constant(-1e300, tf.float64))
  _, running_max, running_sum = tf.while_loop(
      lambda i, *_: i < num_chunks, body,
      (tf.constant(0), start_max, tf.zeros([batch], tf.float64)))
  return (running_max + tf.math.log(running_sum)
          - tf.math.log(tf.cast(num_samples, tf.float64)))


def iwae_bound(model, images, num_samples, seed=None, noise=None):
  """The importance-weighted bound with k = `num_samples`, per example [B].

  log (1/k) sum_i w_i is computed with logsumexp, never by exponentiating
  the weights.
  """
  log_w = log_importance_weights(model, images, num_samples, seed, noise)
  return tf.reduce_logsumexp(log_w, axis=0) - math.log(num_samples)


class Objective:
  """What a model is trained on: a per-example loss and named metrics.

  Subclasses set `metric_names` and implement `__call__`; those that need
  the batch's class labels set `uses_labels` and take a `labels` argument.
  """
  metric_names = ()
  uses_labels = False

  def __call__(self, model, images, noise, step=None, labels=None):
    """Returns (loss [B], {name: [B] for name in metric_names}).

    Args:
      model: The model being trained.
      images: float32 [B, H, W, C], the (binarised) training targets.
      noise: An `rng.ExampleNoise` for this batch.
      step: The training step (int64 scalar Tensor), for schedules.
      labels: int64 [B] class labels of the batch (used by conditional
        models only).
    """
    raise NotImplementedError


KL_SCHEDULES = ("constant", "linear", "cyclical")


class KlSchedule:
  """The weight w(t) in [0, 1] of the rate at training step t.

    constant      w(t) = 1
    linear:N      w(t) = min(1, t / N)            (KL annealing / warm-up)
    cyclical:P    w(t) = min(1, 2 (t mod P) / P)  (Fu et al., 2019: each
                  period ramps up over its first half, then holds 1)

  The loss is distortion + beta * w(t) * rate. w is a pure function of the
  step, which every checkpoint holds, so a resumed run continues the
  schedule exactly where it stopped.

  Args:
    kind: One of `KL_SCHEDULES`.
    steps: N or P (ignored for "constant").
  """

  def __init__(self, kind="constant", steps=0):
    if kind not in KL_SCHEDULES:
      raise errors.TfvaeError(
          f"--kl_schedule={kind}: choose constant, linear:STEPS or "
          "cyclical:PERIOD")
    if kind != "constant" and (int(steps) != steps or steps <= 0):
      raise errors.TfvaeError(
          f"--kl_schedule={kind}:{steps}: the number of steps must be a "
          "positive integer")
    self.kind = kind
    self.steps = int(steps)

  @classmethod
  def parse(cls, spec):
    """Parses "constant", "linear:STEPS" or "cyclical:PERIOD".

    Raises:
      errors.TfvaeError: naming --kl_schedule, if `spec` is malformed.
    """
    kind, sep, steps = str(spec).partition(":")
    if kind == "constant" and not sep:
      return cls("constant")
    try:
      value = int(steps)
    except ValueError:
      value = None
    if kind not in ("linear", "cyclical") or value is None:
      raise errors.TfvaeError(
          f"--kl_schedule={spec}: expected constant, linear:STEPS or "
          "cyclical:PERIOD with a positive integer")
    return cls(kind, value)

  def __str__(self):
    return self.kind if self.kind == "constant" else f"{self.kind}:{self.steps}"

  def weight(self, step):
    """w(step) as a float32 scalar Tensor (1 when `step` is None)."""
    if self.kind == "constant" or step is None:
      return tf.constant(1.0)
    t = tf.cast(step, tf.float32)
    if self.kind == "linear":
      return tf.minimum(1.0, t / self.steps)
    phase = tf.cast(tf.math.floormod(tf.cast(step, tf.int64), self.steps),
                    tf.float32)
    return tf.minimum(1.0, 2.0 * phase / self.steps)


def rate_per_dimension(approx_posterior):
  """KL(q(z_j | x) || N(0, 1)) per example and latent dimension, [B, D].

  For a diagonal Normal q with mean m and scale s:
  0.5 (m^2 + s^2 - 1) - log s. It sums to the analytic rate.
  """
  return tfd.kl_divergence(
      tfd.Normal(approx_posterior.mean(), approx_posterior.stddev()),
      tfd.Normal(0.0, 1.0))


class LabelledModel:
  """Presents a conditional model with fixed labels as an unconditional one,
  so that `elbo`, `log_importance_weights` and friends apply to it unchanged.

  Args:
    model: A conditional model (`approx_posterior(x, labels)`,
      `likelihood(z, labels)`, `prior()`, `latent_size`).
    labels: int64 [B], the label of each image.
    num_samples: How many stacked copies of the batch the likelihood sees
      (k of `log_importance_weights`; 1 for `elbo`).
  """

  def __init__(self, model, labels, num_samples=1):
    self._model = model
    self._labels = labels
    self._likelihood_labels = tf.tile(labels, [num_samples])
    self.latent_size = model.latent_size

  def prior(self):
    """p(z) of the wrapped model."""
    return self._model.prior()

  def approx_posterior(self, images):
    """q(z | x, y) for images [B, H, W, C] with the fixed labels [B]."""
    return self._model.approx_posterior(images, self._labels)

  def likelihood(self, z):
    """p(x | z, y) for z [k * B, latent_size], the labels tiled k times."""
    return self._model.likelihood(z, self._likelihood_labels)


class ElboObjective(Objective):
  """Minimises distortion + beta * w(step) * rate, i.e. -ELBO when beta = 1.

  With free bits lambda > 0 the rate term of the loss becomes
  sum_j max(lambda, KL_j), KL_j the rate of latent dimension j (Kingma et
  al., 2016), taken per example so that an example's loss does not depend
  on the rest of its batch; the reported rate stays the true KL.

  Args:
    beta: Weight of the rate term.
    kl_schedule: A `KlSchedule` (default constant).
    free_bits: lambda, nats per latent dimension (0 disables).
    conditional: Whether the model takes labels (a CVAE).
  """
  metric_names = ("elbo", "rate", "distortion")

  def __init__(self, beta=1.0, kl_schedule=None, free_bits=0.0,
               conditional=False):
    self.beta = float(beta)
    self.kl_schedule = kl_schedule or KlSchedule()
    self.free_bits = float(free_bits)
    self.conditional = conditional
    self.uses_labels = conditional
    if self.kl_schedule.kind != "constant":
      self.metric_names = ElboObjective.metric_names + ("kl_weight",)

  def __call__(self, model, images, noise, step=None, labels=None):
    if self.conditional:
      model = LabelledModel(model, labels)
    approx_posterior = model.approx_posterior(images)
    z = reparameterize(approx_posterior, noise.normal([model.latent_size]))
    the_rate = rate(approx_posterior, model.prior(), z)
    distortion = -model.likelihood(z).log_prob(images)
    penalised_rate = the_rate
    if self.free_bits > 0:
      penalised_rate = tf.reduce_sum(
          tf.maximum(self.free_bits, rate_per_dimension(approx_posterior)),
          axis=-1)
    kl_weight = self.kl_schedule.weight(step)
    loss = distortion + self.beta * kl_weight * penalised_rate
    metrics = {"elbo": -(distortion + the_rate), "rate": the_rate,
               "distortion": distortion}
    if "kl_weight" in self.metric_names:
      metrics["kl_weight"] = tf.fill(tf.shape(distortion), kl_weight)
    return loss, metrics


class IwaeObjective(Objective):
  """Maximises the importance-weighted bound iwae_k (Burda et al., 2015).

  Metrics: iwae_bound (iwae_k) and elbo (the mean of the k log weights, an
  estimate of the ELBO from the same samples).

  Args:
    num_samples: k.
  """
  metric_names = ("iwae_bound", "elbo")

  def __init__(self, num_samples):
    self.num_samples = int(num_samples)

  def __call__(self, model, images, noise, step=None, labels=None):
    # Drawn [B, k, D] so that rng.ExampleNoise slices examples, then [k, B, D].
    eps = tf.transpose(noise.normal([self.num_samples, model.latent_size]),
                       [1, 0, 2])
    log_w = log_importance_weights(model, images, self.num_samples,
                                   noise=eps)
    bound = tf.reduce_logsumexp(log_w, axis=0) - math.log(self.num_samples)
    return -bound, {"iwae_bound": bound,
                    "elbo": tf.reduce_mean(log_w, axis=0)}

