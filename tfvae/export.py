"""Writing SavedModels in TF Serving's versioned layout, atomically.

An export directory holds one sub-directory per version, named by a positive
integer (`EXPORT_DIR/<version>/saved_model.pb` + `variables/`), which is the
layout TF Serving watches. A version is written under a temporary name in the
same parent, loaded back and verified, and only then renamed into place, so a
failed export never leaves a numeric directory behind and an existing version
is never overwritten.
"""
import os
import re
import shutil
import tempfile

import tensorflow as tf

from tfvae import errors

_VERSION_RE = re.compile(r"^[0-9]+$")


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
    os.rename(tmp_path, final_path)
  except BaseException:
    shutil.rmtree(tmp_path, ignore_errors=True)
    raise
  return final_path


def prior_latents(seed, latent_size):
  """Draws one standard-Normal latent point per seed, statelessly.

  Args:
    seed: int64 Tensor [N]; entry i determines row i alone, so the same seed
      gives the same point in any batch, process or reloaded SavedModel.
    latent_size: Width of z.

  Returns:
    float32 Tensor [N, latent_size].
  """
  seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)

  def one(s):
    # Named algorithm: the same seed gives the same point on CPU, GPU or XLA.
    return tf.random.stateless_normal([latent_size], seed=tf.stack([s, 0]),
                                      alg="philox")

  return tf.map_fn(one, seed, fn_output_signature=tf.TensorSpec(
      [latent_size], tf.float32))


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
    z = prior_latents(seed, latent_size)
    return {"images": decode_fn(z)["mean"], "z": z}

  return decode, generate
