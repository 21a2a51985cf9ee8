"""Writing SavedModels in TF Serving's versioned layout, atomically.

An export directory holds one sub-directory per version, named by a positive
integer (`EXPORT_DIR/<version>/saved_model.pb` + `variables/`), which is the
layout TF Serving watches. A version is written under a temporary name in the
same parent, loaded back and verified, and only then renamed into place, so a
failed export never leaves a numeric directory behind and an existing version
is never overwritten.

`export_module(model, part)` wraps a model in a `tf.Module` whose functions are
the exported signatures (decode, generate, encode, encode_sample,
reconstruct, elbo, log_importance_weights; see README "Exported
signatures"); `export_model` and `export_run` publish it with TF Serving
warmup requests, after replaying them through the reloaded SavedModel.

The model kind shapes the signatures: a VAE (vae, iwae) has all of them; a
conditional VAE (cvae) has the same ones, each with an extra int64 `label`
input [None]; a deterministic autoencoder (ae, denoising_ae, sparse_ae,
contractive_ae) has only encode (-> "code"), decode (code -> "mean" and the
likelihood's parameters) and reconstruct, and no generator part.
"""
import json
import os
import re
import shutil
import tempfile

from absl import logging
import numpy as np
import tensorflow as tf

from tfvae import data
from tfvae import errors
from tfvae import models
from tfvae import objectives
from tfvae import rng
from tfvae import runs
from tfvae import warmup

_VERSION_RE = re.compile(r"^[0-9]+$")

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
SERVING_TAG = "serve"
# Provenance of an export (run, checkpoint, step, part, shapes), next to the
# warmup file; TF Serving ignores it.
METADATA_FILE = "tfvae_export.json"



def existing_versions(export_dir):
  """Returns the sorted integer versions already under `export_dir`."""
  if not tf.io.gfile.isdir(export_dir):
    return []
  return sorted(
      int(name) for name in tf.io.gfile.listdir(export_dir)
      if _VERSION_RE.match(name.rstrip("/")) and int(name.rstrip("/")) > 0)


def next_version(export_dir):
  """Returns one above the highest version under `export_dir` (1 if none)."""
  versions = existing_versions(export_dir)
  return versions[-1] + 1 if versions else 1


def publish(module, export_dir, version=None, signatures=None, verify=None,
            options=None):
  """Saves `module` as `export_dir/<version>/`, atomically.

  Args:
    module: The `tf.Module` to save (its tf.functions and variables).
    export_dir: Parent directory of the versions; created if missing.
    version: Positive integer version, or None for `next_version(export_dir)`.
    signatures: Passed to `tf.saved_model.save`.
    verify: Optional `verify(loaded, path)` called on the reloaded SavedModel
      before it is renamed into place; it raises to refuse publication. It may
      also write extra files into `path` (such as `assets.extra/`).
    options: Optional `tf.saved_model.SaveOptions`.

  Returns:
    The path of the published version directory.

  Raises:
    errors.TfvaeError: If the version exists or is not positive, or if saving
      or verification fails; nothing is left under `export_dir` then.
  """
  if version is None:
    version = next_version(export_dir)
  version = int(version)
  if version <= 0:
    raise errors.TfvaeError(
        f"export version must be a positive integer, got {version}")
  final_path = os.path.join(export_dir, str(version))
  if tf.io.gfile.exists(final_path):
    raise errors.TfvaeError(
        f"{final_path} already exists; tfvae never overwrites an export "
        "version (pass another --version or leave it out)")
  os.makedirs(export_dir, exist_ok=True)
  tmp_path = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=export_dir)
  try:
    try:
      tf.saved_model.save(module, tmp_path, signatures=signatures,
                          options=options)
      loaded = tf.saved_model.load(tmp_path)
    except (tf.errors.OpError, ValueError, TypeError) as e:
      raise errors.TfvaeError(
          f"could not write the SavedModel for {final_path}: "
          f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    if verify is not None:
      verify(loaded, tmp_path)
    if tf.io.gfile.exists(final_path):
      raise errors.TfvaeError(
          f"{final_path} appeared while exporting; not overwriting it")
    # mkdtemp makes the directory private (0700); a version must be readable
    # by a server running as another user, like any directory made here.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o777 & ~umask)
    try:
      os.rename(tmp_path, final_path)
    except OSError as e:  # Another export took the version meanwhile.
      raise errors.TfvaeError(
          f"could not rename the export into {final_path}: {e.strerror}; "
          "not overwriting it") from None
  except BaseException:
    shutil.rmtree(tmp_path, ignore_errors=True)
    raise
  return final_path


def generator_functions(decode_fn, latent_size):
  """Builds the `decode` and `generate` signature functions of a generator.

  Every tfvae export that can generate (native models, TF1 graphs rebuilt by
  graph surgery, mapped TF1 checkpoints) shares this contract:

    decode(z: float32 [None, latent_size]) -> dict with at least
      "mean": float32 [None, H, W, C], pixel means (probabilities for
      Bernoulli decoders), plus the likelihood's parameters where known.
    generate(seed: int64 [None]) -> {"images": float32 [None, H, W, C],
      "z": float32 [None, latent_size]}: z ~ N(0, I) drawn per seed entry
      (see `prior_latents`) and decoded to its mean.

  Args:
    decode_fn: Python callable z -> dict of Tensors, with "mean".
    latent_size: Width of z.

  Returns:
    (decode, generate): two `tf.function`s with input signatures.
  """

  @tf.function(input_signature=[
      tf.TensorSpec([None, latent_size], tf.float32, name="z")])
  def decode(z):
    return dict(decode_fn(z))

  @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="seed")])
  def generate(seed):
    z = rng.prior_latents(seed, latent_size)
    return {"images": decode_fn(z)["mean"], "z": z}

  return decode, generate


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


def export_module(model, part="full"):
  """Wraps `model` in a `tf.Module` whose functions are plain-tensor signatures.

  Signatures (B is the batch, [H, W, C] = model.image_shape,
  D = model.latent_size; all float32 unless stated):

    decode(z [B, D]) -> "mean" [B, H, W, C] and the likelihood's parameters
      ("logits", or "loc" and "scale"), from `model.decoder.outputs`.
    generate(seed int64 [B]) -> "images" [B, H, W, C], "z" [B, D]: one
      prior sample per seed entry (`prior_latents`), decoded to its mean.
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
      B, D], seed=[seed, IMPORTANCE_STREAM]).

  A `models.CVAE` gets the same signatures with an extra int64 input
  `label` [B] (class indices; out-of-range labels fail): see
  `_conditional_module`. A deterministic `autoencoders.Autoencoder` gets
  encode, decode and reconstruct only: see `_autoencoder_module`.

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
  if part not in PARTS:
    raise errors.TfvaeError(
        f"--part={part}: choose one of {', '.join(PARTS)}")
  if not models.can_generate(model):
    return _autoencoder_module(model, part)
  if models.is_conditional(model):
    return _conditional_module(model, part)
  _require(model, part, ("decoder", "latent_size", "image_shape", "prior"))
  if part == "full":
    _require(model, part, ("approx_posterior", "likelihood"))
  _check_standard_normal_prior(model)
  latent_size = int(model.latent_size)
  decoder = model.decoder
  module = _holder(model, part)
  module.decode, module.generate = generator_functions(decoder.outputs,
                                                       latent_size)
  if part == "generator":
    return module

  image_spec = tf.TensorSpec([None, *model.image_shape], tf.float32,
                             name="x")
  seeds_spec = tf.TensorSpec([None], tf.int64, name="seed")

  def posterior_sample(x, seed):
    approx_posterior = model.approx_posterior(x)
    batch, seeds = tf.shape(x)[0], tf.shape(seed)[0]
    check = tf.debugging.assert_equal(
        tf.logical_or(tf.equal(seeds, batch), tf.equal(seeds, 1)), True,
        message="seed must have one entry per image of x, or one for all")
    with tf.control_dependencies([check]):
      seed = tf.broadcast_to(seed, [batch])
    noise = rng.per_example_normal(seed, [latent_size], rng.POSTERIOR_STREAM)
    return approx_posterior, noise

  @tf.function(input_signature=[image_spec])
  def encode(x):
    approx_posterior = model.approx_posterior(x)
    return {"loc": approx_posterior.mean(),
            "scale": approx_posterior.stddev()}

  @tf.function(input_signature=[image_spec, seeds_spec])
  def encode_sample(x, seed):
    approx_posterior, noise = posterior_sample(x, seed)
    return {"z": objectives.reparameterize(approx_posterior, noise),
            "loc": approx_posterior.mean(),
            "scale": approx_posterior.stddev()}

  @tf.function(input_signature=[image_spec])
  def reconstruct(x):
    z = model.approx_posterior(x).mean()
    return {"mean": decoder.outputs(z)["mean"]}

  @tf.function(input_signature=[image_spec, seeds_spec])
  def elbo(x, seed):
    _, noise = posterior_sample(x, seed)
    bound = objectives.elbo(model, x, noise=noise)
    return {"elbo": bound.elbo, "rate": bound.rate,
            "distortion": bound.distortion}

  @tf.function(input_signature=[
      image_spec, tf.TensorSpec([], tf.int64, name="seed"),
      tf.TensorSpec([], tf.int32, name="num_samples")])
  def log_importance_weights(x, seed, num_samples):
    num_samples, noise = _importance_noise(x, seed, num_samples, latent_size)
    return {"log_weights": objectives.log_importance_weights(
        model, x, num_samples, noise=noise)}

  module.encode = encode
  module.encode_sample = encode_sample
  module.reconstruct = reconstruct
  module.elbo = elbo
  module.log_importance_weights = log_importance_weights
  return module


def refuse_generation(kind, advice="export --part=full and use its decode"):
  """The error for asking a deterministic autoencoder to generate."""
  return errors.TfvaeError(
      f"model {kind} is a deterministic autoencoder: it cannot generate (it "
      f"has no prior over its codes); use decode on codes ({advice})")


def _autoencoder_module(model, part):
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


def _conditional_module(model, part):
  """The signatures of a `models.CVAE`: those of a VAE, each with `label`.

  label is int64 [B], class indices in [0, num_classes) (one per row of x,
  z or seed; out-of-range labels raise InvalidArgumentError naming
  `label`).

    decode(z [B, D], label) -> "mean" and the likelihood's parameters of
      p(x | z, y).
    generate(seed int64 [B], label) -> "images", "z": z = rng.prior_latents(seed)
      decoded with label y (so a seed keeps its z across labels).
    encode(x, label) -> "loc", "scale" of q(z | x, y).
    encode_sample(x, seed [B] or [1], label) -> "z", "loc", "scale".
    reconstruct(x, label) -> "mean" at the posterior mean.
    elbo(x, seed [B] or [1], label) -> "elbo", "rate", "distortion" [B] of
      log p(x | y).
    log_importance_weights(x, seed [], num_samples [], label) ->
      "log_weights" [num_samples, B].

  The noise of every random signature is drawn as for a VAE (see
  `export_module`).
  """
  _check_standard_normal_prior(model)
  latent_size = int(model.latent_size)
  decoder = model.decoder
  module = _holder(model, part)
  label_spec = tf.TensorSpec([None], tf.int64, name="label")
  seeds_spec = tf.TensorSpec([None], tf.int64, name="seed")

  @tf.function(input_signature=[
      tf.TensorSpec([None, latent_size], tf.float32, name="z"), label_spec])
  def decode(z, label):
    return dict(decoder.outputs(z, label))

  @tf.function(input_signature=[seeds_spec, label_spec])
  def generate(seed, label):
    z = rng.prior_latents(seed, latent_size)
    return {"images": decoder.outputs(z, label)["mean"], "z": z}

  module.decode, module.generate = decode, generate
  if part == "generator":
    return module

  image_spec = tf.TensorSpec([None, *model.image_shape], tf.float32,
                             name="x")
  # Presents the model with fixed labels as an unconditional one.
  labelled = objectives.LabelledModel

  def posterior_sample(x, seed, label):
    approx_posterior = model.approx_posterior(x, label)
    seed = _broadcast_seeds(seed, tf.shape(x)[0])
    noise = rng.per_example_normal(seed, [latent_size], rng.POSTERIOR_STREAM)
    return approx_posterior, noise

  @tf.function(input_signature=[image_spec, label_spec])
  def encode(x, label):
    approx_posterior = model.approx_posterior(x, label)
    return {"loc": approx_posterior.mean(),
            "scale": approx_posterior.stddev()}

  @tf.function(input_signature=[image_spec, seeds_spec, label_spec])
  def encode_sample(x, seed, label):
    approx_posterior, noise = posterior_sample(x, seed, label)
    return {"z": objectives.reparameterize(approx_posterior, noise),
            "loc": approx_posterior.mean(),
            "scale": approx_posterior.stddev()}

  @tf.function(input_signature=[image_spec, label_spec])
  def reconstruct(x, label):
    z = model.approx_posterior(x, label).mean()
    return {"mean": decoder.outputs(z, label)["mean"]}

  @tf.function(input_signature=[image_spec, seeds_spec, label_spec])
  def elbo(x, seed, label):
    _, noise = posterior_sample(x, seed, label)
    bound = objectives.elbo(labelled(model, label), x, noise=noise)
    return {"elbo": bound.elbo, "rate": bound.rate,
            "distortion": bound.distortion}

  @tf.function(input_signature=[
      image_spec, tf.TensorSpec([], tf.int64, name="seed"),
      tf.TensorSpec([], tf.int32, name="num_samples"), label_spec])
  def log_importance_weights(x, seed, num_samples, label):
    num_samples, noise = _importance_noise(x, seed, num_samples, latent_size)
    # Each of the num_samples copies of x keeps its label.
    return {"log_weights": objectives.log_importance_weights(
        objectives.LabelledModel(model, label, num_samples), x, num_samples,
        noise=noise)}

  module.encode = encode
  module.encode_sample = encode_sample
  module.reconstruct = reconstruct
  module.elbo = elbo
  module.log_importance_weights = log_importance_weights
  return module


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
  noise = rng.batch_importance_noise(seed, num_samples, tf.shape(x)[0],
                                     latent_size)
  return num_samples, noise


def signatures(module):
  """The signature map of an `export_module`: its functions + serving_default.

  Returns:
    dict signature name -> `tf.function`, in the order of `PART_SIGNATURES`,
    with serving_default = decode.
  """
  names = [name for name in PART_SIGNATURES["full"] if hasattr(module, name)]
  found = {DEFAULT_SIGNATURE: module.decode}
  found.update((name, getattr(module, name)) for name in names)
  return found


def example_inputs(function, batch=2, num_classes=2):
  """Small deterministic inputs for a signature function (for warmup).

  Args:
    function: A `tf.function` of `export_module` (with an input signature).
    batch: The batch size of the inputs.
    num_classes: Labels (the `label` input of a CVAE) are 0, 1, ... modulo
      this.

  Returns:
    dict input name -> numpy array.
  """
  rng = np.random.default_rng(0)
  inputs = {}
  for spec in function.input_signature:
    shape = [batch if d is None else d for d in spec.shape.as_list()]
    if spec.name == "x":
      value = rng.uniform(size=shape).astype(np.float32)
    elif spec.name in ("z", "code"):
      value = rng.standard_normal(shape).astype(np.float32)
    elif spec.name == "label":
      value = np.arange(batch, dtype=np.int64) % max(int(num_classes), 1)
    elif spec.name == "seed":
      value = (np.arange(batch, dtype=np.int64) if shape
               else np.array(0, np.int64))
    elif spec.name == "num_samples":
      value = np.array(batch, np.int32)
    else:
      raise ValueError(f"no example for input {spec.name!r}")
    inputs[spec.name] = value
  return inputs


def device_pins(saved_model_dir):
  """Nodes and variables of a SavedModel's signatures pinned to a device.

  Walks what the signatures run: the main-graph nodes their outputs depend
  on and every function those call. Left out is the checkpoint saver that
  `tf.saved_model.save` adds itself (SaveV2/RestoreV2 and their constants,
  which have CPU kernels only and which TensorFlow pins to the CPU).

  Returns:
    A list of "name (op): device" strings; empty when nothing the
    signatures run is pinned, so that TensorFlow (or TF Serving) places the
    model on whatever device it has.
  """
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
  with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
    saved_model = saved_model_pb2.SavedModel.FromString(f.read())
  pins = []
  for meta_graph in saved_model.meta_graphs:
    graph = meta_graph.graph_def
    by_name = {node.name: node for node in graph.node}
    functions = {f.signature.name: f for f in graph.library.function}
    wanted = [info.name for signature in meta_graph.signature_def.values()
              for info in [*signature.inputs.values(),
                           *signature.outputs.values()]]
    reached = set()
    while wanted:
      name = wanted.pop().lstrip("^").split(":")[0]
      if name in reached or name not in by_name:
        continue
      reached.add(name)
      wanted.extend(by_name[name].input)
    pending = [by_name[name] for name in reached]
    seen = set()
    while pending:
      node = pending.pop()
      if node.device:
        pins.append(f"{node.name} ({node.op}): {node.device}")
      called = [node.op] if node.op in functions else []
      for attr in node.attr.values():
        if attr.HasField("func"):
          called.append(attr.func.name)
        called.extend(f.name for f in attr.list.func)
      for name in called:
        if name in functions and name not in seen:
          seen.add(name)
          pending.extend(functions[name].node_def)
    for i, obj in enumerate(meta_graph.object_graph_def.nodes):
      if obj.WhichOneof("kind") == "variable" and obj.variable.device:
        pins.append(f"variable {obj.variable.name or i}: "
                    f"{obj.variable.device}")
  return pins


def _max_difference(a, b):
  a, b = np.asarray(a), np.asarray(b)
  if a.shape != b.shape:
    return np.inf
  if a.size == 0:
    return 0.0
  return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))
                      / (1.0 + np.abs(b.astype(np.float64)))))


def replay_warmup(loaded, saved_model_dir, expected_functions=None,
                  tolerance=1e-4):
  """Replays a SavedModel's warmup requests through its signatures.

  Args:
    loaded: The SavedModel, loaded with `tf.saved_model.load`.
    saved_model_dir: Its directory (holding assets.extra/).
    expected_functions: Optional dict signature name -> callable giving the
      expected outputs (the in-process model's functions).
    tolerance: Largest accepted |got - expected| / (1 + |expected|).

  Returns:
    The number of requests replayed.

  Raises:
    errors.TfvaeError: If a request names a missing signature, fails, or
      gives outputs different from the expected ones.
  """
  requests = warmup.read(saved_model_dir)
  for signature_name, inputs in requests:
    name = signature_name or DEFAULT_SIGNATURE
    if name not in loaded.signatures:
      raise errors.TfvaeError(
          f"{warmup.path(saved_model_dir)}: a request calls signature "
          f"{name!r}, which the SavedModel does not have")
    try:
      got = loaded.signatures[name](**{k: tf.constant(v)
                                       for k, v in inputs.items()})
    except (tf.errors.OpError, TypeError, ValueError) as e:
      raise errors.TfvaeError(
          f"{saved_model_dir}: warmup request for {name} failed: "
          f"{str(e).strip().splitlines()[0]}") from None
    if expected_functions is None:
      continue
    expected = expected_functions[name](**inputs)
    for key, value in expected.items():
      if key not in got:
        raise errors.TfvaeError(
            f"{saved_model_dir}: signature {name} lost output {key!r}")
      difference = _max_difference(got[key], value)
      if not difference <= tolerance:
        raise errors.TfvaeError(
            f"{saved_model_dir}: signature {name} output {key!r} differs "
            f"from the in-process model by {difference:.3g} after reloading")
  return len(requests)


def export_model(model, export_dir, part="full", version=None,
                 metadata=None, verify=None):
  """Publishes `model` as `export_dir/<version>/`, verified, atomically.

  The SavedModel holds `export_module(model, part)` with the signatures of
  `signatures`, `assets.extra/tf_serving_warmup_requests` (one request per
  signature) and `assets.extra/tfvae_export.json` (provenance). Before the
  version directory is renamed into place the export is loaded back, checked
  for device pins, and every warmup request is replayed and compared with
  the in-process model.

  Args:
    model: The model (see `export_module`).
    export_dir: Parent directory of the versions.
    part: "full" or "generator".
    version: Positive integer version; default one above the highest.
    metadata: Optional JSON-able dict added to the provenance file (for a
      CVAE, "class_names": the names of its labels, which
      `tfvae-generate --label=NAME` reads).
    verify: Optional extra `verify(loaded, path)` run last (see `publish`).

  Returns:
    The path of the published version directory.

  Raises:
    errors.TfvaeError: On any failure; no version directory is left then.
  """
  module = export_module(model, part)
  signature_map = signatures(module)
  model_name = os.path.basename(os.path.normpath(export_dir)) or "model"
  num_classes = int(getattr(model, "num_classes", 2))
  requests = [(name, example_inputs(function, num_classes=num_classes))
              for name, function in signature_map.items()]
  kind_info = {"generative": models.can_generate(model),
               "conditional": models.is_conditional(model)}
  if kind_info["conditional"]:
    kind_info["num_classes"] = num_classes

  def check(loaded, path):
    pins = device_pins(path)
    if pins:
      raise errors.TfvaeError(f"{path}: exported nodes are pinned to devices "
                              f"({pins[0]}, ...)")
    warmup.write(path, requests, model_name)
    count = replay_warmup(loaded, path, signature_map)
    logging.info("Replayed %d warmup requests (%s) through the reloaded "
                 "SavedModel.", count, ", ".join(signature_map))
    info = {
        "part": part,
        "signatures": list(signature_map),
        "latent_size": int(model.latent_size),
        "image_shape": [int(d) for d in model.image_shape],
        **kind_info,
        **(metadata or {}),
    }
    with open(os.path.join(path, warmup.ASSETS_EXTRA, METADATA_FILE),
              "w") as f:
      json.dump(info, f, indent=2, sort_keys=True)
      f.write("\n")
    if verify is not None:
      verify(loaded, path)

  return publish(module, export_dir, version, signatures=signature_map,
                 verify=check)


def export_run(run_dir, export_dir, checkpoint=None, version=None,
               part="full", verify=None):
  """Exports a run's checkpoint (default: its newest intact one).

  Args:
    run_dir: A tfvae run directory.
    export_dir: Parent directory of the versions.
    checkpoint: A checkpoint prefix, or the name of one in RUN_DIR/ckpt
      (such as "ckpt-1000"); default the newest intact checkpoint.
    version: Positive integer version; default one above the highest.
    part: "full" or "generator".
    verify: Optional extra check (see `publish`).

  Returns:
    The path of the published version directory.

  Raises:
    errors.TfvaeError: If the run has no usable checkpoint, the checkpoint
      does not fit the run's config, or the export fails.
  """
  if checkpoint is not None and not os.path.exists(checkpoint + ".index"):
    inside = os.path.join(runs.ckpt_dir(run_dir), checkpoint)
    if os.path.exists(inside + ".index"):
      checkpoint = inside
  if part not in PARTS:
    raise errors.TfvaeError(
        f"--part={part}: choose one of {', '.join(PARTS)}")
  if tf.io.gfile.exists(export_dir) and not tf.io.gfile.isdir(export_dir):
    raise errors.TfvaeError(f"--export_dir={export_dir} is not a directory")
  if checkpoint is None:
    runs.load_config(run_dir)
    checkpoint = runs.newest_intact_checkpoint(runs.ckpt_dir(run_dir))
  config, model, step = runs.restore_model(run_dir, checkpoint)
  logging.info("Exporting %s (step %d) of %s as part %s.", checkpoint, step,
               run_dir, part)
  metadata = {"run_dir": os.path.abspath(run_dir),
              "checkpoint": os.path.abspath(checkpoint), "step": step,
              "model": config.model, "config": config.to_dict()}
  if models.is_conditional(model):
    metadata["class_names"] = list(run_class_names(config))
  return export_model(model, export_dir, part, version, metadata, verify)


def run_class_names(config):
  """The names of a run's class labels: its data set's, or "0", "1", ...

  Returns:
    A tuple of `config.num_classes` strings.
  """
  names = tuple(data.CLASS_NAMES.get(config.dataset, ()))
  if len(names) != config.num_classes:
    names = tuple(str(i) for i in range(config.num_classes))
  return names


def read_metadata(saved_model_dir):
  """The provenance JSON of an export (`METADATA_FILE`), or {} if absent."""
  source = os.path.join(saved_model_dir, warmup.ASSETS_EXTRA, METADATA_FILE)
  if not os.path.isfile(source):
    return {}
  try:
    with open(source) as f:
      found = json.load(f)
  except (OSError, ValueError) as e:
    raise errors.TfvaeError(
        f"{source}: not a readable JSON file: {e}") from None
  return found if isinstance(found, dict) else {}


def find_saved_model(path):
  """The SavedModel directory that `path` names.

  Args:
    path: A SavedModel directory (with saved_model.pb) or an export
      directory of numbered versions (its highest version is taken).

  Returns:
    The SavedModel directory, or None if `path` is neither.
  """
  if os.path.isfile(os.path.join(path, "saved_model.pb")):
    return path
  for version in reversed(existing_versions(path)):
    candidate = os.path.join(path, str(version))
    if os.path.isfile(os.path.join(candidate, "saved_model.pb")):
      return candidate
  return None
