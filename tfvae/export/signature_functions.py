"""The exported signatures of each model kind and part, as `tf.function`s.

`export_module(model, part)` wraps a model in a `tf.Module` whose functions
are the exported signatures (see README "Exported signatures"):

  kind                      part       signatures
  vae, iwae                 full       decode, generate, encode,
                                       encode_sample, reconstruct, elbo,
                                       log_importance_weights
  vae, iwae                 generator  decode, generate
  cvae                      either     those of a vae, each with an extra
                                       int64 input `label` [None]
  ae, denoising_ae,         full       encode (-> "code"), decode (code ->
  sparse_ae, contractive_ae            "mean", ...), reconstruct

plus serving_default in `signatures(module)`: for part generator the image
mean alone (`serving_function`), else = decode. A cvae's functions
are the vae's, run on the model seen through the given labels: the same
code path draws the same noise, so a label changes nothing but what the
model is conditioned on.
"""
import collections

import numpy as np
import tensorflow as tf

from tfvae import errors
from tfvae import models
from tfvae import objectives
from tfvae import precision
from tfvae import rng
from tfvae.export import compute_weights

PARTS = ("full", "generator")
# The signatures of each part, besides serving_default (= decode).
PART_SIGNATURES = {
    "full": ("decode", "generate", "encode", "encode_sample", "reconstruct",
             "elbo", "log_importance_weights"),
    "generator": ("decode", "generate"),
}
# What a deterministic autoencoder exports (part full only).
AUTOENCODER_SIGNATURES = ("decode", "encode", "reconstruct")
DEFAULT_SIGNATURE = "serving_default"
# The most samples one call of a signature may decode: the seeds of
# `generate`, num_samples * batch of `log_importance_weights`. An export may
# serve requests nobody vetted, and a few bytes of request (a scalar
# num_samples) would otherwise make it allocate without bound; each sample
# holds the decoder's activations (some thousand floats for an MLP, some
# 25,000 for the conv net), so a call stays within a few GB. Enforced inside
# the exported graph, so it holds wherever the SavedModel is served;
# evaluation's chunks (chunk_size * batch_size, 5 * 10^4 by default) stay
# below.
MAX_SAMPLES_PER_CALL = 2**16

Capabilities = collections.namedtuple("Capabilities",
                                      ["can_generate", "conditional"])


def capabilities(model):
  """What the kind of an in-process `model` can do, decided in one place.

  Returns:
    `Capabilities(can_generate, conditional)`: whether it has a prior to
    sample (autoencoders do not) and whether it takes class labels (cvae).
  """
  return Capabilities(can_generate=bool(models.can_generate(model)),
                      conditional=bool(models.is_conditional(model)))


def refuse_generation(kind, advice="export --part=full and use its decode"):
  """The error for asking a deterministic autoencoder to generate."""
  return errors.TfvaeError(
      f"model {kind} is a deterministic autoencoder: it cannot generate (it "
      f"has no prior over its codes); use decode on codes ({advice})")


def check_part(part):
  """Raises a one-line error unless `part` is one of `PARTS`."""
  if part not in PARTS:
    raise errors.TfvaeError(
        f"--part={part}: choose one of {', '.join(PARTS)}")


def generator_functions(decode_fn, latent_size, label_spec=None):
  """Builds the `decode` and `generate` signature functions of a generator.

  Every tfvae export that can generate (native models, TF1 graphs rebuilt by
  graph surgery, mapped TF1 checkpoints) shares this contract:

    decode(z: float32 [None, latent_size]) -> dict with at least
      "mean": float32 [None, H, W, C], pixel means (probabilities for
      Bernoulli decoders), plus the likelihood's parameters where known.
    generate(seed: int64 [None]) -> {"images": float32 [None, H, W, C],
      "z": float32 [None, latent_size]}: z ~ N(0, I) drawn per seed entry
      (see `rng.prior_latents`) and decoded to its mean; at most
      `MAX_SAMPLES_PER_CALL` seeds, else InvalidArgumentError naming it.

  Args:
    decode_fn: Python callable z -> dict of Tensors, with "mean"; with
      `label_spec`, (z, label) -> dict.
    latent_size: Width of z.
    label_spec: Optional `tf.TensorSpec` of a last `label` input of both
      functions (conditional models); a seed keeps its z across labels.

  Returns:
    (decode, generate): two `tf.function`s with input signatures.
  """
  labels = [] if label_spec is None else [label_spec]

  @tf.function(input_signature=[
      tf.TensorSpec([None, latent_size], tf.float32, name="z"), *labels])
  def decode(z, label=None):
    return dict(_call(decode_fn, z, label))

  @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="seed"),
                                *labels])
  def generate(seed, label=None):
    seed = _within_cap(seed, tf.size(seed, out_type=tf.int64),
                       "generate: the batch of seeds")
    z = rng.prior_latents(seed, latent_size)
    return {"images": _call(decode_fn, z, label)["mean"], "z": z}

  return decode, generate


def serving_function(decode_fn, latent_size, label_spec=None,
                     jit_compile=False):
  """A generator's lean serving_default: z -> {"mean"} alone.

  TF Serving clients that want images call it (it is the signature a
  request without a name gets); `decode` keeps returning the likelihood's
  parameters too. With the mean as the only output nothing else of the
  decoder's last layer has to be materialised or sent. When `decode_fn` is
  a native `models.Decoder`'s `outputs`, the mean is taken before the
  reshape to images (`_mean_before_reshape`), so that it fuses into the
  last matmul.

  Args:
    decode_fn, latent_size, label_spec: As for `generator_functions`.
    jit_compile: Whether XLA compiles the function (saved with it).

  Returns:
    A `tf.function` (z float32 [None, latent_size][, label]) -> {"mean":
    float32 [None, H, W, C]}.
  """
  labels = [] if label_spec is None else [label_spec]
  if label_spec is None:
    # A native decoder's `outputs`: its mean, computed before the reshape.
    decode_fn = (_mean_before_reshape(getattr(decode_fn, "__self__", None))
                 or decode_fn)

  @tf.function(input_signature=[
      tf.TensorSpec([None, latent_size], tf.float32, name="z"), *labels],
               jit_compile=jit_compile or None)
  def serve(z, label=None):
    return {"mean": _call(decode_fn, z, label)["mean"]}

  return serve


def _mean_before_reshape(decoder):
  """A lean z -> {"mean"} of `decoder` that reshapes last, or None.

  A `models.Decoder` reshapes its network's output to [B, H, W, C * k]
  before its likelihood turns it into the mean; between an MLP's last
  MatMul + BiasAdd and the mean's sigmoid that Reshape keeps grappler from
  fusing the three into one kernel (the TF1 graph, which reshapes nothing,
  gets the fused kernel). With one parameter per pixel the likelihood's
  outputs are element-wise, so the mean of the flat output reshaped is the
  same numbers, and the sigmoid fuses into the matmul.

  Returns:
    A callable z [B, D] -> {"mean": [B, H, W, C]}, or None where this does
    not apply (a conditional decoder, k > 1, no `.net`).
  """
  likelihood = getattr(decoder, "likelihood", None)
  net = getattr(decoder, "net", None)
  if (not isinstance(decoder, models.Decoder) or net is None
      or getattr(likelihood, "num_params", None) != 1):
    return None
  image_shape = [int(d) for d in decoder.image_shape]

  def mean(z):
    flat = precision.run(net, z)
    return {"mean": tf.reshape(likelihood.outputs(flat)["mean"],
                               [-1, *image_shape])}

  return mean


def _within_cap(value, samples, what):
  """`value`, after an assertion that `samples` <= MAX_SAMPLES_PER_CALL.

  The message names the cap; the assertion runs before anything that
  depends on `value`, so a refused call allocates nothing for its samples.
  """
  check = tf.debugging.assert_less_equal(
      samples, tf.constant(MAX_SAMPLES_PER_CALL, tf.int64),
      message=f"{what} exceeds MAX_SAMPLES_PER_CALL = {MAX_SAMPLES_PER_CALL} "
      "samples per call (tfvae's cap on what one request may allocate); "
      "split the request")
  with tf.control_dependencies([check]):
    return tf.identity(value)


def _call(fn, value, label):
  """fn(value), or fn(value, label) for a conditional model."""
  return fn(value) if label is None else fn(value, label)


def _require(model, part, needs):
  missing = [name for name in needs if not hasattr(model, name)]
  if missing:
    raise errors.TfvaeError(
        f"--part={part}: a {type(model).__name__} model has no "
        f"{', '.join(missing)}, which the {part} export needs "
        f"(signatures: {', '.join(PART_SIGNATURES[part])})")


def _check_standard_normal_prior(model):
  """`generate` draws z from N(0, I); refuses models with another prior."""
  prior = model.prior()
  try:
    mean, stddev = prior.mean().numpy(), prior.stddev().numpy()
  except (NotImplementedError, AttributeError):
    mean = stddev = None
  if (mean is None or mean.shape != (model.latent_size,)
      or not np.allclose(mean, 0.0) or not np.allclose(stddev, 1.0)):
    raise errors.TfvaeError(
        f"the prior of this {type(model).__name__} is not N(0, I); the "
        "generate signature only samples a standard-Normal prior")


def export_module(model, part="full", dtype="float32"):
  """Wraps `model` in a `tf.Module` whose functions are plain-tensor signatures.

  Signatures (B is the batch, [H, W, C] = model.image_shape,
  D = model.latent_size; all float32 unless stated):

    decode(z [B, D]) -> "mean" [B, H, W, C] and the likelihood's parameters
      ("logits", or "loc" and "scale"), from `model.decoder.outputs`.
    generate(seed int64 [B]) -> "images" [B, H, W, C], "z" [B, D]: one
      prior sample per seed entry (`rng.prior_latents`), decoded to its mean;
      B <= MAX_SAMPLES_PER_CALL, else InvalidArgumentError naming the cap.
    encode(x [B, H, W, C]) -> "loc", "scale" [B, D] of q(z | x).
    encode_sample(x [B, H, W, C], seed int64 [B] or [1]) -> "z", "loc",
      "scale" [B, D]: z = loc + scale * eps, eps = per_example_normal(seed,
      [D], POSTERIOR_STREAM), one draw per entry; a single seed is used for
      every image (each image's result still depends on it and the image
      alone).
    reconstruct(x [B, H, W, C]) -> "mean" [B, H, W, C]: the decoder's mean
      at the posterior mean.
    elbo(x [B, H, W, C], seed int64 [B] or [1]) -> "elbo", "rate",
      "distortion" [B] (nats), with the same z as encode_sample for the
      same seeds.
    log_importance_weights(x [B, H, W, C], seed int64 [], num_samples int32
      []) -> "log_weights" [num_samples, B]: log p(x, z_i) - log q(z_i | x)
      with z_i = loc + scale * eps_i, eps = stateless_normal([num_samples,
      B, D], seed=[seed, IMPORTANCE_STREAM]); num_samples * B <=
      MAX_SAMPLES_PER_CALL, else InvalidArgumentError naming the cap.

  A `models.CVAE` gets the same signatures with a last int64 input `label`
  [B] (class indices in [0, num_classes); out-of-range labels raise
  InvalidArgumentError naming `label`). A deterministic
  `autoencoders.Autoencoder` gets encode, decode and reconstruct only: see
  `_autoencoder_module`.

  Args:
    model: A model with `decoder` (with `outputs(z)`), `latent_size`,
      `image_shape` and `prior()`, and for part "full" also
      `approx_posterior(x)` and `likelihood(z)` (a `models.VAE`); or a
      `models.CVAE`; or an `autoencoders.Autoencoder`.
    part: "full" (every signature above) or "generator" (decode and generate
      only; the module then holds the decoder's variables alone).

  Returns:
    A `tf.Module` with one `tf.function` attribute per signature of the
    part; pass it to `signatures` for `tf.saved_model.save`.

  Raises:
    errors.TfvaeError: If `part` is unknown or the model lacks what it needs
      (an autoencoder has no generator part).
  """
  check_part(part)
  can_generate, conditional = capabilities(model)
  if not can_generate:
    return _autoencoder_module(model, part, dtype)
  _require(model, part, ("decoder", "latent_size", "image_shape", "prior"))
  if part == "full":
    _require(model, part, ("approx_posterior", "likelihood"))
  _check_standard_normal_prior(model)
  label_spec = (tf.TensorSpec([None], tf.int64, name="label") if conditional
                else None)
  module = _holder(model, part)
  # The generator part copies the decoder alone: no encoder weight may
  # reach its SavedModel.
  if part == "generator":
    decoder, weights = compute_weights.lowered_copy(model.decoder, dtype)
  else:
    model, weights = compute_weights.lowered_copy(model, dtype)
    decoder = model.decoder
  if weights:
    setattr(module, compute_weights.COMPUTE_WEIGHTS, weights)
  module.decode, module.generate = generator_functions(
      decoder.outputs, int(model.latent_size), label_spec)
  if part == "generator":
    module.serve = serving_function(decoder.outputs, int(model.latent_size),
                                    label_spec)
  if part == "full":
    for name, function in _posterior_functions(model, label_spec).items():
      setattr(module, name, function)
  return module


def _posterior_functions(model, label_spec):
  """encode, encode_sample, reconstruct, elbo, log_importance_weights.

  Each body is written once for an unconditional model; a conditional one
  is seen through its labels (`objectives.LabelledModel`), whose `label`
  input comes last.
  """
  latent_size = int(model.latent_size)
  labels = [] if label_spec is None else [label_spec]
  image_spec = tf.TensorSpec([None, *model.image_shape], tf.float32,
                             name="x")
  seeds_spec = tf.TensorSpec([None], tf.int64, name="seed")

  def seen(label, num_samples=1):
    """The model as an unconditional one (itself when it takes no label)."""
    if label is None:
      return model
    return objectives.LabelledModel(model, label, num_samples)

  def posterior_sample(x, seed, label):
    approx_posterior = seen(label).approx_posterior(x)
    seed = _broadcast_seeds(seed, tf.shape(x)[0])
    noise = rng.per_example_normal(seed, [latent_size], rng.POSTERIOR_STREAM)
    return approx_posterior, noise

  @tf.function(input_signature=[image_spec, *labels])
  def encode(x, label=None):
    approx_posterior = seen(label).approx_posterior(x)
    return {"loc": approx_posterior.mean(),
            "scale": approx_posterior.stddev()}

  @tf.function(input_signature=[image_spec, seeds_spec, *labels])
  def encode_sample(x, seed, label=None):
    approx_posterior, noise = posterior_sample(x, seed, label)
    return {"z": objectives.reparameterize(approx_posterior, noise),
            "loc": approx_posterior.mean(),
            "scale": approx_posterior.stddev()}

  @tf.function(input_signature=[image_spec, *labels])
  def reconstruct(x, label=None):
    z = seen(label).approx_posterior(x).mean()
    return {"mean": _call(model.decoder.outputs, z, label)["mean"]}

  @tf.function(input_signature=[image_spec, seeds_spec, *labels])
  def elbo(x, seed, label=None):
    _, noise = posterior_sample(x, seed, label)
    bound = objectives.elbo(seen(label), x, noise=noise)
    return {"elbo": bound.elbo, "rate": bound.rate,
            "distortion": bound.distortion}

  @tf.function(input_signature=[
      image_spec, tf.TensorSpec([], tf.int64, name="seed"),
      tf.TensorSpec([], tf.int32, name="num_samples"), *labels])
  def log_importance_weights(x, seed, num_samples, label=None):
    num_samples, noise = _importance_noise(x, seed, num_samples, latent_size)
    # Each of the num_samples copies of x keeps its label.
    return {"log_weights": objectives.log_importance_weights(
        seen(label, num_samples), x, num_samples, noise=noise)}

  return {"encode": encode, "encode_sample": encode_sample,
          "reconstruct": reconstruct, "elbo": elbo,
          "log_importance_weights": log_importance_weights}


def _autoencoder_module(model, part, dtype="float32"):
  """The signatures of a deterministic autoencoder (part "full" only).

    encode(x [B, H, W, C]) -> "code" [B, D], the code h = f(x).
    decode(code [B, D]) -> "mean" [B, H, W, C] and the likelihood's
      parameters ("logits", or "loc" and "scale"), from `model.decode`.
    reconstruct(x [B, H, W, C]) -> "mean" [B, H, W, C], the decoder's mean
      at f(x).

  Raises:
    errors.TfvaeError: For part "generator": an autoencoder cannot generate.
  """
  if part != "full":
    raise refuse_generation(getattr(model, "kind", type(model).__name__))
  module = tf.Module(name=f"tfvae_{part}")
  module.model = model
  model, weights = compute_weights.lowered_copy(model, dtype)
  if weights:
    setattr(module, compute_weights.COMPUTE_WEIGHTS, weights)
  image_spec = tf.TensorSpec([None, *model.image_shape], tf.float32,
                             name="x")

  @tf.function(input_signature=[
      tf.TensorSpec([None, model.latent_size], tf.float32, name="code")])
  def decode(code):
    return dict(model.decode(code))

  @tf.function(input_signature=[image_spec])
  def encode(x):
    return {"code": model.encode(x)}

  @tf.function(input_signature=[image_spec])
  def reconstruct(x):
    return {"mean": model.reconstruct(x)}

  module.decode, module.encode, module.reconstruct = decode, encode, reconstruct
  return module


def _broadcast_seeds(seed, batch):
  """seed int64 [B] or [1] -> [B], checked."""
  seeds = tf.shape(seed)[0]
  check = tf.debugging.assert_equal(
      tf.logical_or(tf.equal(seeds, batch), tf.equal(seeds, 1)), True,
      message="seed must have one entry per image of x, or one for all")
  with tf.control_dependencies([check]):
    return tf.broadcast_to(seed, [batch])


def _holder(model, part):
  """The tf.Module an export saves: the decoder alone for the generator
  part (so no encoder variables are written), else the whole model."""
  module = tf.Module(name=f"tfvae_{part}")
  if part == "generator":
    module.decoder = model.decoder
  else:
    module.model = model
  return module


def _importance_noise(x, seed, num_samples, latent_size):
  """Checks num_samples > 0; draws the eps [num_samples, B, D] of the
  `log_importance_weights` signature from (seed, IMPORTANCE_STREAM)."""
  check = tf.debugging.assert_positive(
      num_samples, message="num_samples must be positive")
  with tf.control_dependencies([check]):
    num_samples = tf.identity(num_samples)
  num_samples = _within_cap(
      num_samples, tf.cast(num_samples, tf.int64) * tf.cast(
          tf.shape(x, out_type=tf.int64)[0], tf.int64),
      "log_importance_weights: num_samples * batch")
  noise = rng.batch_importance_noise(seed, num_samples, tf.shape(x)[0],
                                     latent_size)
  return num_samples, noise


def signatures(module):
  """The signature map of an `export_module`: its functions + serving_default.

  Returns:
    dict signature name -> `tf.function`, in the order of `PART_SIGNATURES`,
    with serving_default = the generator part's lean `serving_function`
    (the mean alone), else decode.
  """
  names = [name for name in PART_SIGNATURES["full"] if hasattr(module, name)]
  found = {DEFAULT_SIGNATURE: getattr(module, "serve", module.decode)}
  found.update((name, getattr(module, name)) for name in names)
  return found
