"""A trained model, opened from a run directory or from an export.

`open_model(path)` is the one place that decides what a `--model=PATH`
names:

  a run directory (config.json)   the newest intact checkpoint (or the one
                                  given) is restored in-process
  a SavedModel version directory  loaded, used through its signatures
  an export directory             its highest numbered version, as above

and returns a `TrainedModel`: what evaluation, plots, generation and
denoising need to know of it (config, kind, latent size, image shape, class
names, whether it can generate, whether it is conditional) and, for scoring,
the same five methods whatever it came from (encode, decode, generate, elbo,
log_weights) through `NativeModel` or `ExportedModel`.

Random draws of scoring follow `rng`: a model in this process draws the noise
of importance sample i of batch b from (seed, b) folded with i; an export is
called with a seed derived from (seed, batch, chunk), so its estimate depends
on the chunk size through its noise only.
"""
import os

from absl import logging
import tensorflow as tf

from tfvae import config as config_lib
from tfvae import errors
from tfvae import export
from tfvae import kinds
from tfvae import objectives
from tfvae import precision
from tfvae import rng
from tfvae import runs

# Signatures an export needs for evaluation and plots (see `ExportedModel`).
EXPORT_SIGNATURES = ("encode", "decode", "generate", "reconstruct", "elbo",
                     "log_importance_weights")


def scored_kinds():
  """The kinds with an unconditional posterior and prior to score and plot
  with (`kinds.Kind.scored`)."""
  return tuple(name for name in kinds.names() if kinds.get(name).scored)


def is_scored(kind):
  """Whether evaluation and the scoring plots apply to models of `kind`."""
  return kind in scored_kinds()


class NativeModel:
  """A tfvae model in this process (e.g. restored from a run directory).

  Args:
    model: An object with `prior()`, `approx_posterior(x)`, `likelihood(z)`
      and `latent_size` (a `models.VAE`); `decoder.outputs(z)` is used for
      pictures when present.
    image_shape: (H, W, C); default `model.image_shape`.
    jit: Whether to compile the importance-sampling chunks with XLA.
  """

  def __init__(self, model, image_shape=None, jit=False):
    self.model = model
    self.latent_size = int(model.latent_size)
    self.image_shape = tuple(image_shape or model.image_shape)
    latent = self.latent_size

    # The compiled edge of evaluation: one chunk of importance samples.
    @tf.function(input_signature=[
        tf.TensorSpec([None, *self.image_shape], tf.float32),
        tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.int64),
        tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32)],
                 jit_compile=jit)
    def chunk_log_weights(images, seed, batch_index, start, count):
      noise = rng.importance_noise(seed, batch_index, start, count,
                                   tf.shape(images)[0], latent)
      return objectives.log_importance_weights(model, images, count,
                                               noise=noise)

    self._chunk_log_weights = chunk_log_weights
    log_likelihood = _fused_log_likelihood(model)

    # The fast path of evaluation: a batch's whole estimate in one call.
    @tf.function(input_signature=[
        tf.TensorSpec([None, *self.image_shape], tf.float32),
        tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.int64),
        tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32)],
                 jit_compile=jit)
    def batch_log_px(images, seed, batch_index, num_samples, chunk_size):
      batch = tf.shape(images)[0]
      return objectives.chunked_log_px(
          model, images, num_samples, chunk_size,
          lambda start, count: rng.importance_noise(
              seed, batch_index, start, count, batch, latent),
          log_likelihood)

    self._batch_log_px = batch_log_px

  def encode(self, images):
    """Posterior (loc, scale), each float32 numpy [B, D]."""
    q = self.model.approx_posterior(tf.convert_to_tensor(images, tf.float32))
    return q.mean().numpy(), q.stddev().numpy()

  def decode(self, z):
    """The decoder's named outputs ("mean", ...) as numpy [B, H, W, C]."""
    z = tf.convert_to_tensor(z, tf.float32)
    decoder = getattr(self.model, "decoder", None)
    if decoder is not None and hasattr(decoder, "outputs"):
      return {k: v.numpy() for k, v in decoder.outputs(z).items()}
    return {"mean": self.model.likelihood(z).mean().numpy()}

  def generate(self, seeds):
    """Images decoded from z ~ p(z), one per int64 seed: (images, z)."""
    z = rng.prior_latents(tf.constant(seeds, tf.int64), self.latent_size)
    return self.decode(z)["mean"], z.numpy()

  def elbo(self, images, seed, batch_index):
    """Per-example (elbo, rate, distortion), numpy [B] each."""
    images = tf.convert_to_tensor(images, tf.float32)
    noise = rng.normal([tf.shape(images)[0], self.latent_size],
                       rng.eval_seed(seed, batch_index))
    bound = objectives.elbo(self.model, images, noise=noise)
    return bound.elbo.numpy(), bound.rate.numpy(), bound.distortion.numpy()

  def log_px(self, images, seed, batch_index, num_samples, chunk_size):
    """The importance-weighted estimate of log p(x), float64 numpy [B].

    The encoder runs once, the k = `num_samples` samples are decoded
    `chunk_size` at a time inside one compiled call
    (`objectives.chunked_log_px`), with the noise of `log_weights`: the
    result is the log-mean-exp of `log_weights` over samples 0..k-1.
    """
    return self._batch_log_px(
        tf.convert_to_tensor(images, tf.float32), tf.constant(seed, tf.int64),
        tf.constant(batch_index, tf.int64),
        tf.constant(num_samples, tf.int32),
        tf.constant(chunk_size, tf.int32)).numpy()

  def log_weights(self, images, seed, batch_index, start, count):
    """Log importance weights of samples start..start+count-1: [count, B]."""
    return self._chunk_log_weights(
        tf.convert_to_tensor(images, tf.float32), tf.constant(seed, tf.int64),
        tf.constant(batch_index, tf.int64), tf.constant(start, tf.int32),
        tf.constant(count, tf.int32)).numpy()


def _fused_log_likelihood(model):
  """fn(z [c, B, D], x [B, H, W, C]) -> log p(x | z) [c, B] with the
  likelihood's element-wise passes (a softplus, products and a sum over the
  pixels of every decoded image, x broadcast over the c samples rather than
  copied) fused into one by XLA; the decoder itself runs through
  TensorFlow's kernels (oneDNN matmuls, bfloat16 where asked). None for a
  model whose decoder does not expose `params` and `likelihood`.
  """
  decoder = getattr(model, "decoder", None)
  likelihood = getattr(decoder, "likelihood", None)
  if not (hasattr(decoder, "params")
          and hasattr(likelihood, "distribution")):
    return None

  @tf.function(jit_compile=True)
  def log_prob(params, images):
    return likelihood.distribution(params).log_prob(images)

  def log_likelihood(z, images):
    count, batch = tf.shape(z)[0], tf.shape(z)[1]
    params = decoder.params(tf.reshape(z, [count * batch, -1]))
    params = tf.reshape(params, tf.concat([[count, batch],
                                           tf.shape(params)[1:]], 0))
    return log_prob(params, images)

  return log_likelihood


class ExportedModel:
  """A tfvae SavedModel export, used through its signatures only.

  The export's signatures (inputs are found by these names, else by dtype
  and rank, so other names work where that is unambiguous; a seed may be a
  scalar or [1]):

    encode(x float32 [None, H, W, C]) -> loc, scale [None, D]
    decode(z float32 [None, D]) -> mean [None, H, W, C] (+ logits or
      loc/scale)
    generate(seed int64 [None]) -> images, z
    reconstruct(x) -> mean
    elbo(x, seed int64) -> elbo, rate, distortion [None]
    log_importance_weights(x, seed int64 scalar, num_samples int32 scalar)
      -> log_weights [num_samples, None]

  Args:
    path: A version directory (with saved_model.pb) or the parent of numbered
      versions, of which the highest is taken.
    loaded: The SavedModel of `path` if already loaded.

  Raises:
    errors.TfvaeError: If there is no SavedModel or a signature is missing.
  """

  def __init__(self, path, loaded=None):
    self.path = _saved_model_dir(path)
    if loaded is None:
      try:
        loaded = tf.saved_model.load(self.path)
      except (OSError, ValueError, tf.errors.OpError) as e:
        raise errors.TfvaeError(
            f"{self.path}: cannot load the SavedModel: "
            f"{_first_line(e)}") from None
    missing = [n for n in EXPORT_SIGNATURES if n not in loaded.signatures]
    if missing:
      raise errors.TfvaeError(
          f"{self.path}: the export lacks the signature(s) "
          f"{', '.join(missing)} that evaluation needs (has: "
          f"{', '.join(sorted(loaded.signatures)) or 'none'}); re-export "
          "the run with a current tfvae-export")
    self._signatures = loaded.signatures
    x_spec = self._input(self._signatures["encode"], tf.float32, 4)
    z_spec = self._input(self._signatures["decode"], tf.float32, 2)
    self.image_shape = tuple(int(d) for d in x_spec.shape[1:])
    self.latent_size = int(z_spec.shape[1])

  def _input(self, signature, dtype, rank):
    """The spec of the input of `signature` with this dtype and rank."""
    for spec in signature.structured_input_signature[1].values():
      if spec.dtype == dtype and spec.shape.rank == rank:
        return spec
    raise errors.TfvaeError(
        f"{self.path}: a signature has no {dtype.name} input of rank {rank} "
        f"(inputs: {signature.structured_input_signature[1]})")

  def _call(self, name, **roles):
    """Calls signature `name`, matching tensors to its inputs.

    Each role (x, z, seed, num_samples) goes to the input of that name if
    there is one, else to the one remaining input of its dtype and rank; it
    is cast to the input's dtype, and a scalar seed fills a [1] input.
    """
    signature = self._signatures[name]
    specs = dict(signature.structured_input_signature[1])
    kwargs = {}
    # Inputs named like their role first, so that the others match by type
    # among the inputs left.
    for role, value in sorted(roles.items(), key=lambda r: r[0] not in specs):
      if role in specs:
        input_name = role
      else:
        candidates = [n for n, spec in specs.items()
                      if spec.dtype.is_floating == value.dtype.is_floating
                      and spec.shape.rank in (value.shape.rank,
                                              value.shape.rank + 1)]
        if len(candidates) != 1:
          raise errors.TfvaeError(
              f"{self.path}: cannot tell which input of signature {name} "
              f"takes the {role} (inputs: {_describe(specs)})")
        input_name = candidates[0]
      spec = specs.pop(input_name)
      value = tf.cast(value, spec.dtype)
      if spec.shape.rank == value.shape.rank + 1:
        value = value[None]
      kwargs[input_name] = value
    return signature(**kwargs)

  def _output(self, name, outputs, key):
    if key not in outputs:
      raise errors.TfvaeError(
          f"{self.path}: signature {name} has no output {key!r} (outputs: "
          f"{', '.join(sorted(outputs))})")
    return outputs[key].numpy()

  def encode(self, images):
    """Posterior (loc, scale), each float32 numpy [B, D]."""
    out = self._call("encode", x=tf.convert_to_tensor(images, tf.float32))
    return (self._output("encode", out, "loc"),
            self._output("encode", out, "scale"))

  def decode(self, z):
    """The decode signature's named outputs ("mean", ...) as numpy."""
    out = self._call("decode", z=tf.convert_to_tensor(z, tf.float32))
    self._output("decode", out, "mean")
    return {k: v.numpy() for k, v in out.items()}

  def generate(self, seeds):
    """Images decoded from z ~ p(z), one per int64 seed: (images, z)."""
    out = self._call("generate", seed=tf.constant(seeds, tf.int64))
    return (self._output("generate", out, "images"),
            self._output("generate", out, "z"))

  def elbo(self, images, seed, batch_index):
    """Per-example (elbo, rate, distortion), numpy [B] each."""
    out = self._call(
        "elbo", x=tf.convert_to_tensor(images, tf.float32),
        seed=tf.constant(rng.export_seed(
            seed, rng.EVAL_SEED_OFFSET + batch_index, 0), tf.int64))
    return tuple(self._output("elbo", out, k)
                 for k in ("elbo", "rate", "distortion"))

  def log_weights(self, images, seed, batch_index, start, count):
    """Log importance weights of samples start..start+count-1: [count, B]."""
    out = self._call(
        "log_importance_weights", x=tf.convert_to_tensor(images, tf.float32),
        seed=tf.constant(rng.export_seed(seed, batch_index, start), tf.int64),
        num_samples=tf.constant(count, tf.int32))
    return self._output("log_importance_weights", out, "log_weights")


def _describe(specs):
  return ", ".join(f"{n} {spec.dtype.name}{spec.shape}"
                   for n, spec in specs.items())


def _first_line(e):
  text = str(getattr(e, "message", None) or e).strip()
  return text.splitlines()[0] if text else type(e).__name__


def _saved_model_dir(path):
  """The SavedModel that `path` names (a version or an export directory).

  Raises:
    errors.TfvaeError: If `path` is missing, or is neither a run directory
      nor an export; one message serves every --model flag.
  """
  if not os.path.exists(path):
    raise errors.TfvaeError(f"--model={path}: no such file or directory")
  found = export.find_saved_model(path) if os.path.isdir(path) else None
  if found is None:
    raise errors.TfvaeError(
        f"--model={path}: neither a run directory (no config.json) nor an "
        "export: not a SavedModel (no saved_model.pb in it or in a numbered "
        "version directory)")
  return found


class TrainedModel:
  """A model opened by `open_model`, with what its users need to know.

  Attributes:
    path: The path it was opened from.
    location: The run directory or the SavedModel version directory.
    source: What was loaded, for messages and reports (the run with its
      step, or the version directory).
    run_dir: The run directory, or None for an export.
    saved_model_dir: The version directory, or None for a run.
    config: The run's `config.Config` (for an export, the one it records),
      or None.
    step: The restored training step, or None for an export.
    module: The model in this process (a `tf.Module`), or None for an export.
    signatures: The export's signatures, or None for a run.
    metadata: The export's provenance (`export.read_metadata`), or {}.
    kind: The model kind ("vae", "cvae", "ae", ...), or None if unknown.
    latent_size: Width of z (of the code, for an autoencoder).
    image_shape: (H, W, C), or None if an export does not say.
    can_generate: Whether it has a prior to sample.
    conditional: Whether it takes class labels.
    class_names: Names of the labels (conditional models), or None.
  """

  def __init__(self, path, **fields):
    self.path = path
    self.run_dir = self.saved_model_dir = self.config = self.step = None
    self.module = self.signatures = self.kind = self.image_shape = None
    self.class_names = None
    self.metadata = {}
    self.can_generate, self.conditional, self.latent_size = True, False, 0
    for name, value in fields.items():
      setattr(self, name, value)
    self.location = self.run_dir or self.saved_model_dir
    self.source = (f"{self.run_dir} (step {self.step})" if self.run_dir
                   else self.saved_model_dir)
    self._scoring = None

  def check_scored(self):
    """Raises unless evaluation and the scoring plots apply to this kind."""
    if self.kind is not None and not is_scored(self.kind):
      raise errors.TfvaeError(
          f"{self.path} holds a {self.kind} model; evaluation and these "
          f"plots need a VAE ({', '.join(scored_kinds())}); for a cvae use "
          "`tfvae-plot --kind=classes`, for autoencoders `tfvae-generate "
          "--z` and `tfvae-denoise`")

  def prepare_scoring(self, jit=False):
    """Builds the scoring interface (`model`) now, checking the kind.

    Args:
      jit: Compile a run's importance-sampling chunks with XLA (an export
        runs as exported).

    Raises:
      errors.TfvaeError: If the kind is not scored or an export lacks a
        signature scoring needs.
    """
    self.check_scored()
    if self.module is not None:
      self._scoring = NativeModel(self.module, self.image_shape, jit=jit)
    else:
      self._scoring = ExportedModel(self.saved_model_dir,
                                    _Loaded(self.signatures))
    return self._scoring

  @property
  def model(self):
    """The scoring interface: a `NativeModel` or an `ExportedModel`.

    Built on first use (see `prepare_scoring`), so that a model opened for
    generation never needs the signatures of scoring.
    """
    if self._scoring is None:
      self.prepare_scoring()
    return self._scoring

  def encode(self, images):
    """Posterior (loc, scale) of images float [B, H, W, C]: numpy [B, D]."""
    return self.model.encode(images)

  def decode(self, z):
    """The decoder's named outputs ("mean", ...) of z [B, D], as numpy."""
    return self.model.decode(z)

  def generate(self, seeds):
    """One prior sample per int64 seed [N], decoded: (images, z)."""
    return self.model.generate(seeds)

  def elbo(self, images, seed, batch_index):
    """Per-example (elbo, rate, distortion) of one batch, numpy [B] each."""
    return self.model.elbo(images, seed, batch_index)

  def log_weights(self, images, seed, batch_index, start, count):
    """Log importance weights of samples start..start+count-1: [count, B]."""
    return self.model.log_weights(images, seed, batch_index, start, count)

  def log_px(self, images, seed, batch_index, num_samples, chunk_size):
    """log p(x) estimated with k = `num_samples` in one call, float64 [B];
    None when the model offers only `log_weights` (an export)."""
    if not hasattr(self.model, "log_px"):
      return None
    return self.model.log_px(images, seed, batch_index, num_samples,
                             chunk_size)


class _Loaded:
  """Stands for a loaded SavedModel where only its signatures are kept."""

  def __init__(self, signatures):
    self.signatures = signatures


def open_model(path, checkpoint=None):
  """Opens the trained model that `path` names (see the module docstring).

  Args:
    path: A run directory, a SavedModel version directory or an export
      directory of numbered versions (the highest is used).
    checkpoint: For a run directory, a checkpoint prefix to restore instead
      of the newest intact one.

  Returns:
    A `TrainedModel`.

  Raises:
    errors.TfvaeError: One line, if `path` is none of these or cannot be
      loaded (`errors.RunDirError` for a run without a usable checkpoint).
  """
  if runs.is_run_dir(path):
    config, module, step = runs.restore_model(path, checkpoint)
    can_generate, conditional = export.capabilities(module)
    return TrainedModel(
        path, run_dir=path, config=config, step=step, module=module,
        kind=config.model, latent_size=int(module.latent_size),
        image_shape=tuple(config.image_shape), can_generate=can_generate,
        conditional=conditional,
        class_names=(export.run_class_names(config) if conditional
                     else None))
  saved_model_dir = _saved_model_dir(path)
  try:
    loaded = tf.saved_model.load(saved_model_dir)
  except Exception as e:  # pylint: disable=broad-except
    # A damaged saved_model.pb fails in protobuf, TF or Python alike.
    raise errors.TfvaeError(
        f"--model={path}: {saved_model_dir} could not be loaded: "
        f"{str(e).strip().splitlines()[0]}") from None
  return _from_export(path, saved_model_dir, loaded.signatures)


def _from_export(path, saved_model_dir, signatures):
  """The `TrainedModel` of a loaded export, told by its signatures."""
  try:
    metadata = export.read_metadata(saved_model_dir)
  except errors.TfvaeError as e:
    # Provenance only informs; the signatures alone define the export.
    logging.warning("ignoring %s", e)
    metadata = {}
  config = None
  if isinstance(metadata.get("config"), dict):
    try:
      config = config_lib.Config.from_dict(metadata["config"])
    except (ValueError, TypeError) as e:
      logging.warning("ignoring the config in %s: %s",
                      export.metadata_path(saved_model_dir), e)
  inputs = {}
  if "decode" in signatures:
    inputs = signatures["decode"].structured_input_signature[1]
  latent = inputs.get("z", inputs.get("code"))
  can_generate = "generate" in signatures
  conditional = "label" in inputs
  kind = metadata.get("model") or None
  class_names = None
  if conditional:
    class_names = tuple(metadata.get("class_names") or [
        str(i) for i in range(int(metadata.get("num_classes", 10)))])
  image_shape = metadata.get("image_shape")
  if "encode" in signatures:
    for spec in signatures["encode"].structured_input_signature[1].values():
      if spec.dtype == tf.float32 and spec.shape.rank == 4:
        image_shape = spec.shape[1:]
  return TrainedModel(
      path, saved_model_dir=saved_model_dir, config=config,
      signatures=signatures, metadata=metadata, kind=kind,
      latent_size=int(latent.shape[-1]) if latent is not None else 0,
      image_shape=(tuple(int(d) for d in image_shape) if image_shape
                   else None),
      can_generate=can_generate, conditional=conditional,
      class_names=class_names)


def open_for_scoring(path, jit=False, dtype="float32"):
  """Opens a model for evaluation and the scoring plots.

  An export made from a run records the run's config in its provenance
  file; it is used as the config here.

  Args:
    path: As for `open_model`.
    jit: Compile a run's importance-sampling chunks with XLA (exports run
      as exported).
    dtype: The compute dtype of a run's networks (`precision.DTYPES`):
      "bfloat16" speeds up the decoder's matmuls; the likelihood, the
      weights and their log-sum-exp stay float32 or wider.

  Returns:
    A `TrainedModel` whose `model` (and scoring methods) are ready.

  Raises:
    errors.TfvaeError: If `path` is neither a run nor an export, holds a
      model that is not a VAE (deterministic autoencoders and conditional
      VAEs have no unconditional posterior and prior to score and plot
      with), or an export lacks a signature that scoring needs.
  """
  if dtype not in precision.DTYPES:
    raise errors.TfvaeError(f"--dtype={dtype}: choose one of "
                            f"{', '.join(precision.DTYPES)}")
  trained = open_model(path)
  if trained.module is not None:
    precision.set_compute_dtype(trained.module, dtype)
  elif dtype != "float32":
    raise errors.TfvaeError(
        f"--dtype={dtype}: applies to run directories; {path} is an export, "
        "which computes in the dtype it was exported with (tfvae-export "
        "--dtype)")
  trained.prepare_scoring(jit)
  # Only here: the generate tool's errors must stay its only output line.
  if trained.run_dir:
    logging.info("Restored %s at step %d.", path, trained.step)
  else:
    logging.info("Loaded export %s.", trained.saved_model_dir)
  return trained
