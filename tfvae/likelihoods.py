"""Decoder likelihoods p(x | z): how decoder outputs become a distribution.

A likelihood turns the decoder network's raw output map [B, H, W, C * k]
(k = `num_params` numbers per pixel) into a `tfd.Distribution` whose event is an
image [H, W, C], and into the named tensors an export hands to clients.

Each likelihood class registers itself under its `name` (see `register`);
`get` builds one by name. The names are also listed, without TensorFlow, in
`kinds.likelihood_names()` for the --likelihood flag; tests/test_kinds.py
checks that the two lists agree.
"""
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

# name -> likelihood class, in the order the classes are defined.
_REGISTRY = {}


def _image(base):
  """Treats the last three (H, W, C) dimensions of `base` as one event."""
  return tfd.Independent(base, reinterpreted_batch_ndims=3)


class BernoulliByLogits(tfd.Bernoulli):
  """`tfd.Bernoulli` whose log-density is one softplus of the logits.

  log p(x) = x * log(sigmoid(l)) + (1 - x) * log(1 - sigmoid(l))
           = x * l - softplus(l),
  an identity for every x, so it is the same function as TFP's, which takes
  two softplus passes and two masked products; its gradient in l is
  sigmoid(l) - x. Pixels are many, so the likelihood's element-wise passes
  are a visible share of a small model's training step (BENCHMARKS.md).
  """

  def _log_prob(self, event):
    logits = self._logits_parameter_no_checks()
    event = tf.cast(event, logits.dtype)
    return event * logits - tf.nn.softplus(logits)


class Likelihood:
  """How a decoder's raw output map [B, H, W, C * num_params] becomes p(x | z).

  Subclasses set `name` and `num_params` and implement `distribution` and
  `outputs`; `register` makes them available to `get`.
  """
  name = None
  num_params = 1

  @classmethod
  def create(cls, gaussian_scale=0.1):
    """Builds the likelihood from a config's likelihood options.

    Args:
      gaussian_scale: The fixed pixel scale (used by `Gaussian` only).
    """
    del gaussian_scale  # Only the fixed-scale Gaussian has options.
    return cls()

  def distribution(self, params):
    """Returns p(x | z) with batch shape [B] and event shape [H, W, C].

    Args:
      params: float32 [B, H, W, C * num_params], the decoder's output.
    """
    raise NotImplementedError

  def outputs(self, params):
    """Returns the named tensors of p(x | z): "mean" [B, H, W, C] and the
    parameters an export hands to clients (each [B, H, W, C])."""
    raise NotImplementedError


def register(cls):
  """Class decorator: makes the `Likelihood` subclass `cls` known to `get`.

  Raises:
    ValueError: If a likelihood of the same name is registered already.
  """
  if cls.name in _REGISTRY:
    raise ValueError(f"likelihood {cls.name!r} is registered already")
  _REGISTRY[cls.name] = cls
  return cls


@register
class Bernoulli(Likelihood):
  """Independent Bernoulli pixels parameterised by logits.

  log p(x | z) is computed from logits (sigmoid cross-entropy), never as
  log(p + eps). For grey-level x in [0, 1] it is the usual binary
  cross-entropy, which is not a normalised density over [0, 1]; use
  `ContinuousBernoulli` for a proper one.
  """
  name = "bernoulli"
  num_params = 1

  def distribution(self, params):
    """Returns p(x | z) with batch shape [B] and event shape [H, W, C]."""
    return _image(BernoulliByLogits(logits=params, dtype=tf.float32))

  def outputs(self, params):
    """Returns {"mean": probabilities, "logits": logits}, each [B, H, W, C]."""
    return {"mean": tf.sigmoid(params), "logits": params}


@register
class ContinuousBernoulli(Likelihood):
  """Continuous Bernoulli pixels (Loaiza-Ganem & Cunningham, 2019).

  A normalised density on [0, 1] for grey-level images; its mean is not
  sigmoid(logits), which is why exports return `mean` explicitly.
  """
  name = "continuous_bernoulli"
  num_params = 1

  def distribution(self, params):
    return _image(tfd.ContinuousBernoulli(logits=params))

  def outputs(self, params):
    return {"mean": tfd.ContinuousBernoulli(logits=params).mean(),
            "logits": params}


@register
class Gaussian(Likelihood):
  """Gaussian pixels with a fixed scale: -log p(x | z) is a scaled L2 loss.

  The pixel mean is sigmoid(output) so that it stays in the pixel range
  [0, 1] (`mean_activation="identity"` leaves it unconstrained).

  Args:
    scale: The fixed standard deviation of every pixel.
    mean_activation: "sigmoid" or "identity".
  """
  name = "gaussian"
  num_params = 1

  def __init__(self, scale=0.1, mean_activation="sigmoid"):
    if scale <= 0:
      raise ValueError(f"gaussian scale must be positive, got {scale}")
    self.scale = float(scale)
    self._mean_fn = _mean_activation(mean_activation)

  @classmethod
  def create(cls, gaussian_scale=0.1):
    return cls(scale=gaussian_scale)

  def distribution(self, params):
    return _image(tfd.Normal(loc=self._mean_fn(params), scale=self.scale))

  def outputs(self, params):
    loc = self._mean_fn(params)
    return {"mean": loc, "loc": loc, "scale": tf.fill(tf.shape(loc),
                                                      self.scale)}


@register
class GaussianLearned(Likelihood):
  """Gaussian pixels whose per-pixel scale the decoder predicts.

  The decoder emits two numbers per pixel: the mean (through sigmoid, as in
  `Gaussian`) and a raw scale mapped by softplus plus a floor. The floor keeps
  the density bounded: 8-bit pixels sit on a grid of step 1/255, and a scale
  far below it would be rewarded without limit for matching constant pixels
  (image borders) exactly.

  Args:
    min_scale: Floor on the predicted standard deviation.
    mean_activation: "sigmoid" or "identity".
  """
  name = "gaussian_learned"
  num_params = 2

  def __init__(self, min_scale=0.01, mean_activation="sigmoid"):
    self.min_scale = float(min_scale)
    self._mean_fn = _mean_activation(mean_activation)

  def _loc_scale(self, params):
    raw_loc, raw_scale = tf.split(params, 2, axis=-1)
    return (self._mean_fn(raw_loc),
            tf.nn.softplus(raw_scale) + self.min_scale)

  def distribution(self, params):
    loc, scale = self._loc_scale(params)
    return _image(tfd.Normal(loc=loc, scale=scale))

  def outputs(self, params):
    loc, scale = self._loc_scale(params)
    return {"mean": loc, "loc": loc, "scale": scale}


@register
class GaussianIdentity(Gaussian):
  """A fixed-scale Gaussian whose mean is the decoder's output itself.

  What a TF1 or Keras decoder with no squashing output and a squared-error
  loss computed (tfvae-migrate); the mean is not kept in [0, 1].
  """
  name = "gaussian_identity"

  @classmethod
  def create(cls, gaussian_scale=0.1):
    return cls(scale=gaussian_scale, mean_activation="identity")


@register
class GaussianLogVariance(Likelihood):
  """Gaussian pixels with a per-pixel log-variance the decoder predicts.

  The decoder emits two numbers per pixel, [r1 | r2] along the channels:
  loc = sigmoid(r1) and log-variance v = clip(r2, MIN_LOG_VARIANCE,
  MAX_LOG_VARIANCE), scale = exp(v / 2), so that

    -log p(x | z) = 0.5 * sum(log(2 pi) + v + (x - loc)^2 / exp(v)),

  the "Gaussian decoder with learned variance" of TF1 tutorials, whose two
  heads (mean, linear log-variance) tfvae-migrate maps here. The clip keeps
  the density finite and its gradient bounded: without it a pixel matched
  exactly (a constant image border) drives v to -inf and -log p to -inf.
  [-15, 15] is scale in [5.5e-4, 1.8e3]: a scale below 1/255 (v = -11.1),
  the grid of 8-bit pixels, is already past any meaningful fit, and TF1
  graphs trained with the unclipped loss keep v well inside it (the zoo's
  Fashion-MNIST example: v in [-4.6, 1.4]), so a migrated graph computes
  what its TF1 loss does (verification checks that on real images). Longer
  training does reach the clip on constant pixels (image borders), where
  each then gives at most 0.5 * (15 - log(2 pi)) = 6.58 nats.

  Args:
    mean_activation: "sigmoid" or "identity" (`GaussianLogVarianceIdentity`).
  """
  name = "gaussian_log_variance"
  num_params = 2
  MIN_LOG_VARIANCE = -15.0
  MAX_LOG_VARIANCE = 15.0

  def __init__(self, mean_activation="sigmoid"):
    self.mean_activation = mean_activation
    self._mean_fn = _mean_activation(mean_activation)

  def _loc_log_variance(self, params):
    raw_loc, raw_log_variance = tf.split(params, 2, axis=-1)
    log_variance = tf.clip_by_value(raw_log_variance, self.MIN_LOG_VARIANCE,
                                    self.MAX_LOG_VARIANCE)
    return self._mean_fn(raw_loc), log_variance

  def distribution(self, params):
    """Returns p(x | z) with batch shape [B] and event shape [H, W, C]."""
    loc, log_variance = self._loc_log_variance(params)
    return _image(tfd.Normal(loc=loc, scale=tf.exp(0.5 * log_variance)))

  def outputs(self, params):
    """Returns {"mean", "loc", "scale"}, each [B, H, W, C]."""
    loc, log_variance = self._loc_log_variance(params)
    return {"mean": loc, "loc": loc, "scale": tf.exp(0.5 * log_variance)}


@register
class GaussianLogVarianceIdentity(GaussianLogVariance):
  """`GaussianLogVariance` whose mean is the decoder's r1 itself (a TF1
  mean head with no squashing activation); not kept in [0, 1]."""
  name = "gaussian_log_variance_identity"

  def __init__(self, mean_activation="identity"):
    super().__init__(mean_activation)


def _mean_activation(name):
  if name == "sigmoid":
    return tf.sigmoid
  if name == "identity":
    return tf.identity
  raise ValueError(f"mean_activation must be 'sigmoid' or 'identity', "
                   f"got {name!r}")


# The registered names, in registration order.
NAMES = tuple(_REGISTRY)


def get(name, gaussian_scale=0.1):
  """Returns the likelihood called `name` (one of `NAMES`).

  Args:
    name: A registered likelihood name.
    gaussian_scale: The pixel scale of the fixed-scale Gaussian.

  Raises:
    ValueError: If no likelihood is registered under `name`.
  """
  try:
    cls = _REGISTRY[name]
  except KeyError:
    raise ValueError(f"unknown likelihood {name!r}; choose one of "
                     f"{', '.join(_REGISTRY)}") from None
  return cls.create(gaussian_scale)
