"""Drawing and decoding images with an exported or trained generator.

A generator is anything with the `decode` and `generate` signatures of
`export.generator_functions`: a tfvae SavedModel (any part, or an export of a
migrated TF1 model), an export directory of versions, or a run directory
(whose newest checkpoint is restored in-process), as `trained.open_model`
opens them. A cvae's functions also
take class labels; a deterministic autoencoder's decode takes codes and it
cannot generate.
"""

import numpy as np
import tensorflow as tf

from tfvae import errors
from tfvae import export
from tfvae import files
from tfvae import models
from tfvae import trained

# More images than this in one call is almost surely a typo (64 MB of
# 28x28 floats already).
MAX_IMAGES = 10000
# Prior seed of image i of `sample_seeds(seed, n)`: seed * SEED_STRIDE + i, so
# different --seed values never share images.
SEED_STRIDE = 1 << 32
GRID_RADIUS = 3.0
# How to use a model that cannot generate (a deterministic autoencoder).
_DECODE_ONLY = "--z, --z_file or --grid"


class Generator:
  """The decode/generate pair of a model, from wherever it is stored.

  A conditional model (cvae) takes one class label per image in both; a
  deterministic autoencoder has decode only (its input is named "code") and
  refuses to generate.

  Attributes:
    source: The SavedModel or run directory the functions come from.
    latent_size: Width of z (or of the code).
    conditional: Whether decode and generate take class labels.
    class_names: Names of the labels (conditional models), or None.
    refusal: None if the model can generate, else the `TfvaeError` that
      `generate` raises.
  """

  def __init__(self, decode, generate, latent_size, source,
               conditional=False, class_names=None, refusal=None,
               z_input="z"):
    self._decode = decode
    self._generate = generate
    self.latent_size = int(latent_size)
    self.source = source
    self.conditional = conditional
    self.class_names = tuple(class_names) if class_names else None
    self.refusal = refusal
    self._z_input = z_input

  def _labels(self, labels, count):
    if not self.conditional:
      return {}
    if labels is None:
      raise errors.TfvaeError(
          f"{self.source} is a conditional model (cvae): give the class to "
          "draw with --label")
    labels = np.broadcast_to(np.asarray(labels, np.int64), [count])
    return {"label": tf.constant(labels)}

  def decode(self, z, labels=None):
    """Decodes points float [N, latent_size] to image means [N, H, W, C].

    Args:
      z: Latent points (codes of an autoencoder).
      labels: int class labels, [N] or one for all (conditional models).
    """
    z = np.asarray(z, np.float32)
    return self._decode(**{self._z_input: tf.constant(z)},
                        **self._labels(labels, len(z)))["mean"].numpy()

  def generate(self, seeds, labels=None):
    """Draws one prior sample per int64 seed [N]; returns (images, z)."""
    if self.refusal is not None:
      raise self.refusal
    seeds = np.asarray(seeds, np.int64)
    out = self._generate(seed=tf.constant(seeds),
                         **self._labels(labels, len(seeds)))
    return out["images"].numpy(), out["z"].numpy()

  def label(self, spec):
    """Reads --label (an index or a class name) for this model.

    Raises:
      errors.TfvaeError: If the model is not conditional or `spec` names no
        class of it.
    """
    if not self.conditional:
      raise errors.TfvaeError(
          f"--label={spec}: {self.source} is not a conditional model (only a "
          "cvae takes class labels)")
    return models.class_label(spec, self.class_names)


def from_trained(trained_model):
  """The `Generator` of a model opened by `trained.open_model`.

  A model in this process runs through the functions it would export, so
  a run and its export draw the same images.

  Raises:
    errors.TfvaeError: If an export lacks the decode signature, or a
      generative one the generate signature or a z input.
  """
  t = trained_model
  if t.module is not None:
    if not t.can_generate:
      module = export.export_module(t.module, "full")
      return Generator(module.decode, None, t.latent_size, t.location,
                       refusal=export.refuse_generation(t.module.kind,
                                                        _DECODE_ONLY),
                       z_input="code")
    module = export.export_module(t.module, "generator")
    return Generator(module.decode, module.generate, t.latent_size,
                     t.location, conditional=t.conditional,
                     class_names=t.class_names)
  signatures = t.signatures
  if "decode" not in signatures:
    raise errors.TfvaeError(
        f"--model={t.path}: {t.location} has no decode signature (it "
        f"has: {', '.join(sorted(signatures))})")
  inputs = signatures["decode"].structured_input_signature[1]
  if "code" in inputs and not t.can_generate:
    refusal = export.refuse_generation(t.kind or "autoencoder", _DECODE_ONLY)
    return Generator(signatures["decode"], None, t.latent_size, t.location,
                     refusal=refusal, z_input="code")
  if not t.can_generate or "z" not in inputs:
    raise errors.TfvaeError(
        f"--model={t.path}: {t.location} has no generate signature, or "
        f"its decode takes no z (signatures: "
        f"{', '.join(sorted(signatures))})")
  return Generator(signatures["decode"], signatures["generate"],
                   t.latent_size, t.location, conditional=t.conditional,
                   class_names=t.class_names)


def load(path):
  """Opens the generator that `path` names (see `trained.open_model`).

  Args:
    path: A SavedModel directory, an export directory (its highest version is
      used) or a tfvae run directory (its newest intact checkpoint).

  Returns:
    A `Generator`.

  Raises:
    errors.TfvaeError: If `path` is none of these, or lacks the decode or
      generate signature (a deterministic autoencoder needs decode only).
  """
  return from_trained(trained.open_model(path))


def check_count(num):
  """Raises unless 1 <= num <= MAX_IMAGES."""
  if not 1 <= num <= MAX_IMAGES:
    raise errors.TfvaeError(
        f"--num={num}: must be between 1 and {MAX_IMAGES}")


def sample_seeds(seed, num):
  """The prior seeds of `num` samples for a user's `seed`: int64 [num]."""
  check_count(num)
  if not 0 <= seed < 1 << 31:
    raise errors.TfvaeError(f"--seed={seed}: must be in [0, 2^31)")
  return seed * SEED_STRIDE + np.arange(num, dtype=np.int64)


def _check_points(points, latent_size, what):
  if points.ndim != 2 or points.shape[0] == 0:
    raise errors.TfvaeError(
        f"{what}: expected latent points [N, {latent_size}], got shape "
        f"{list(points.shape)}")
  if points.shape[1] != latent_size:
    raise errors.TfvaeError(
        f"{what}: points have {points.shape[1]} coordinates, but the model's "
        f"latent space has {latent_size}")
  check_count(points.shape[0])
  if not np.all(np.isfinite(points)):
    raise errors.TfvaeError(f"{what}: points must be finite numbers")
  return points.astype(np.float32)


def parse_points(text, latent_size):
  """Parses "z1,z2;z1,z2" (points separated by ';') into float32 [N, D].

  Raises:
    errors.TfvaeError: On malformed numbers or the wrong width.
  """
  rows = []
  for i, row in enumerate(text.split(";")):
    try:
      rows.append([float(v) for v in row.split(",")])
    except ValueError:
      raise errors.TfvaeError(
          f"--z={text}: point {i + 1} ({row.strip()!r}) is not "
          "comma-separated numbers") from None
    if len(rows[-1]) != latent_size:
      raise errors.TfvaeError(
          f"--z={text}: point {i + 1} has {len(rows[-1])} coordinates, but "
          f"the model's latent space has {latent_size}")
  return _check_points(np.array(rows, np.float64), latent_size, f"--z={text}")


def load_points(path, latent_size):
  """Reads latent points float [N, D] (or one point [D]) from a .npy file."""
  try:
    points = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise errors.TfvaeError(f"--z_file={path}: not a readable .npy file: "
                            f"{str(e).splitlines()[0]}") from None
  if not np.issubdtype(points.dtype, np.number):
    raise errors.TfvaeError(f"--z_file={path}: holds {points.dtype}, not "
                            "numbers")
  if points.ndim == 1:
    points = points[None]
  return _check_points(points.astype(np.float64), latent_size,
                       f"--z_file={path}")


def manifold_grid(size, latent_size, radius=GRID_RADIUS):
  """Latent points on a size x size grid over [-radius, radius]^2.

  Row r, column c of the picture decodes z = (x_c, y_r), x rising to the
  right and y falling downwards (as in a plot of the latent plane).

  Returns:
    float32 [size * size, 2], row-major.
  """
  if latent_size != 2:
    raise errors.TfvaeError(
        f"--grid needs a 2-D latent space; this model's has {latent_size} "
        "dimensions (use --z or --z_file)")
  if not 2 <= size <= 100:
    raise errors.TfvaeError(f"--grid={size}: must be between 2 and 100")
  axis = np.linspace(-radius, radius, size, dtype=np.float32)
  ys, xs = np.meshgrid(axis[::-1], axis, indexing="ij")
  return np.stack([xs.ravel(), ys.ravel()], axis=-1)


def save_npy(path, array):
  """Writes `array` to a .npy file atomically (temp + rename)."""
  with files.atomic_open(path) as f:
    np.save(f, np.asarray(array))
  return path
