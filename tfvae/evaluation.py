"""Evaluating a trained model: bounds on log p(x), reconstructions, latents.

The numbers people compare VAEs by (Burda et al., 2015):

  elbo      mean over the split of E_q[log p(x | z)] - KL(q(z | x) || p(z))
  iwae_k    mean of log (1/k) sum_i p(x, z_i) / q(z_i | x), z_i ~ q(z | x),
            the importance-weighted estimate of log p(x); NLL = -iwae_k.
            elbo <= iwae_k <= iwae_{k+1} <= log p(x) in expectation.
  bits/dim  NLL / (H * W * C * ln 2)
  active units
            dimensions u with A_u = Cov_x(E_q[z_u | x]) > 0.01 (Burda et al.,
            section 5.2), the variance over the data of the posterior mean.

For k up to thousands the k samples of one batch do not fit in memory at
once, so they are drawn in chunks of `chunk_size` and the log-mean-exp is
accumulated chunk by chunk. A model in this process does it in one compiled
call per batch (`NativeModel.log_px`, `objectives.chunked_log_px`): the
encoder once, each chunk one decoder call on chunk_size * B latent points;
an export is called chunk by chunk (`ChunkedLogMeanExp`). For models built
in Python the noise of importance sample i of batch b is drawn from the
stateless seed (seed, b) folded with i, so the estimate does not depend on
the chunk size.

A model is evaluated through the five methods (encode, decode, generate,
elbo, log_weights) that `trained.open_model` offers for a run directory and
an export alike (`trained.NativeModel`, `trained.ExportedModel`), so the
evaluation and plotting code is written once.
"""
import dataclasses
import json
import math
import os
import time

from absl import logging
import numpy as np

from tfvae import data
from tfvae import errors
from tfvae import files
from tfvae import idx
from tfvae import image_sources
from tfvae import input_pipeline
from tfvae import rng

ACTIVE_UNIT_THRESHOLD = 0.01

# A clip keeping log(mean) finite in the binary cross-entropy of models whose
# decoder does not give logits.
_BCE_EPS = 1e-6


# ----------------------------------------------------------------------------
# Chunked importance sampling.


class ChunkedLogMeanExp:
  """A running log (1/k) sum_i exp(a_i) over chunks of a_i, per example.

  Holds m = max_i a_i and s = sum_i exp(a_i - m) for the chunks seen so far,
  so memory does not grow with k and nothing is exponentiated unshifted.

  Args:
    batch: Number of examples, B.
  """

  def __init__(self, batch):
    self._max = np.full([batch], -np.inf)
    self._sum = np.zeros([batch])
    self.count = 0

  def add(self, values):
    """Adds a chunk of values, float [c, B]."""
    values = np.asarray(values, np.float64)
    if values.shape[0] == 0:
      return
    new_max = np.maximum(self._max, values.max(axis=0))
    # exp(-inf - finite) is 0: the first chunk needs no special case.
    with np.errstate(invalid="ignore"):
      self._sum = (self._sum * np.exp(self._max - new_max)
                   + np.exp(values - new_max).sum(axis=0))
    self._max = new_max
    self.count += values.shape[0]

  def result(self):
    """log (1/k) sum_i exp(a_i) over all values added, float64 [B]."""
    if self.count == 0:
      raise ValueError("no values were added")
    return self._max + np.log(self._sum) - math.log(self.count)


def iwae_in_chunks(log_weights_fn, num_samples, chunk_size, batch):
  """log (1/k) sum_i w_i for k = num_samples, computed chunk by chunk.

  Args:
    log_weights_fn: `fn(start, count)` returning the log importance weights
      of samples start..start+count-1, float [count, B].
    num_samples: k.
    chunk_size: Samples per call of `log_weights_fn`.
    batch: B.

  Returns:
    float64 [B], the importance-weighted estimate of log p(x).
  """
  accumulator = ChunkedLogMeanExp(batch)
  for start in range(0, num_samples, chunk_size):
    count = min(chunk_size, num_samples - start)
    accumulator.add(log_weights_fn(start, count))
  return accumulator.result()


# ----------------------------------------------------------------------------
# Data.


@dataclasses.dataclass
class Images:
  """The images a model is evaluated or plotted on.

  Attributes:
    images: uint8 [N, H, W, C], as the model sees them (binarised to 0/255
      when the run was).
    labels: int64 [N], or None when the images have no labels.
    class_names: Names of the labels, or None.
    description: Where they came from, for messages and titles.
  """
  images: np.ndarray
  labels: np.ndarray | None
  class_names: tuple | None
  description: str


def load_images(dataset_name, split, binarize, data_dir=None, dataset=None,
                images_file=None, config=None):
  """Loads a split as training and evaluation see it.

  The test split of a binarised run is binarised once with the fixed seed
  training uses (`input_pipeline.prepared_split`), the standard protocol.

  Args:
    dataset_name: A data set name (see `data.DATASET_NAMES`).
    split: "train" or "test".
    binarize: The run's binarisation, "none", "static" or "dynamic".
    data_dir: Where to look for the data first.
    dataset: A loaded `data.Dataset` to use instead of loading one.
    images_file: An IDX or .npy file of uint8 images [N, H, W(, C)] to use
      instead of the data set (no labels).
    config: The run's `config.Config`: when it trained on --data, those
      images (`image_sources.load_for`) are loaded instead of
      `dataset_name`.

  Returns:
    An `Images`.
  """
  if binarize not in input_pipeline.BINARIZATIONS:
    raise errors.TfvaeError(f"--binarize={binarize}: choose one of "
                            f"{', '.join(input_pipeline.BINARIZATIONS)}")
  if images_file is not None:
    images = read_images_file(images_file)
    if binarize != "none":
      images = input_pipeline.static_binarize(images,
                                              rng.TEST_BINARIZATION_SEED)
    return Images(images, None, None, images_file)
  if split not in ("train", "test"):
    raise errors.DataError(f"--split={split}: no such split; choose train "
                           "or test")
  if dataset is None and config is not None and config.data:
    dataset = image_sources.load_for(config)
  if dataset is None:
    dataset = data.load(dataset_name, data_dir)
  prepared = input_pipeline.prepared_split(dataset, split, binarize)
  return Images(prepared.images, prepared.labels, tuple(dataset.class_names),
                f"{dataset.name} {split}")


def read_images_file(path):
  """Reads uint8 images [N, H, W, C] from an IDX or .npy file."""
  if not os.path.isfile(path):
    raise errors.DataError(f"{path}: no such file")
  if path.endswith(".npy"):
    try:
      images = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
      raise errors.DataError(f"{path}: not a .npy array: {e}") from None
  else:
    images = idx.read_idx(path)
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4 or images.dtype != np.uint8 or not len(images):
    raise errors.DataError(
        f"{path}: expected uint8 images [N, H, W] or [N, H, W, C], got "
        f"{images.dtype} {list(images.shape)}")
  return images


def check_image_shape(model, images):
  """Raises unless the images have the shape the model was trained on."""
  if tuple(images.images.shape[1:]) != tuple(model.image_shape):
    raise errors.TfvaeError(
        f"{images.description}: images of shape "
        f"{list(images.images.shape[1:])} do not fit the model's "
        f"{list(model.image_shape)}")


def batches(images, batch_size):
  """Yields (index, float32 [b, H, W, C] in [0, 1]) batches in order."""
  for index, start in enumerate(range(0, len(images), batch_size)):
    yield index, images[start:start + batch_size].astype(np.float32) / 255.0


# ----------------------------------------------------------------------------
# Metrics.


def kl_per_dimension(loc, scale):
  """KL(N(loc, scale^2) || N(0, 1)) per example and dimension, [B, D]."""
  loc = np.asarray(loc, np.float64)
  scale = np.asarray(scale, np.float64)
  return 0.5 * (loc**2 + scale**2 - 1.0) - np.log(scale)


def active_unit_variances(posterior_means):
  """A_u = Cov_x(E_q[z_u | x]) per dimension u: the variance over examples.

  Args:
    posterior_means: float [N, D].

  Returns:
    float64 [D].
  """
  return np.var(np.asarray(posterior_means, np.float64), axis=0)


def reconstruction_errors(images, outputs):
  """Per-example squared error and binary cross-entropy of reconstructions.

  Args:
    images: float [B, H, W, C] in [0, 1].
    outputs: The decoder's named outputs for the posterior means, with
      "mean" and, for Bernoulli-type decoders, "logits".

  Returns:
    (mse [B], the mean over pixels; bce [B] in nats, the sum over pixels of
    -x log p - (1 - x) log(1 - p) with p the reconstruction's mean).
  """
  x = np.asarray(images, np.float64).reshape(len(images), -1)
  mean = np.asarray(outputs["mean"], np.float64).reshape(len(images), -1)
  mse = np.mean((x - mean)**2, axis=1)
  if "logits" in outputs and not _is_continuous_bernoulli_mean(outputs):
    logits = np.asarray(outputs["logits"], np.float64).reshape(len(images),
                                                               -1)
    # -x log sigmoid(l) - (1 - x) log sigmoid(-l), from logits.
    bce = np.sum(np.maximum(logits, 0) - logits * x
                 + np.log1p(np.exp(-np.abs(logits))), axis=1)
  else:
    p = np.clip(mean, _BCE_EPS, 1 - _BCE_EPS)
    bce = -np.sum(x * np.log(p) + (1 - x) * np.log1p(-p), axis=1)
  return mse, bce


def _is_continuous_bernoulli_mean(outputs):
  """Whether "mean" is not sigmoid(logits) (a continuous Bernoulli)."""
  logits = np.asarray(outputs["logits"], np.float64)
  sigmoid = 0.5 * (1.0 + np.tanh(0.5 * logits))
  return not np.allclose(sigmoid, outputs["mean"],
                         atol=1e-4)


def evaluate(model, images, num_importance_samples=1000, chunk_size=100,
             batch_size=100, seed=0, log_every_seconds=10.0):
  """Evaluates a model on images: bounds, reconstructions, latent usage.

  Args:
    model: A `trained.TrainedModel` (or its `NativeModel` or
      `ExportedModel`).
    images: An `Images`.
    num_importance_samples: k of the importance-weighted estimate.
    chunk_size: Importance samples drawn at once (memory is proportional to
      chunk_size * batch_size images).
    batch_size: Examples per batch.
    seed: Seed of all sampling; the same seed gives the same figures.
    log_every_seconds: Interval of the progress lines.

  Returns:
    A dict of JSON-serialisable metrics (see `METRIC_DOCS`).

  Raises:
    errors.TfvaeError: For k, chunk or batch sizes below 1, or images that
      do not fit the model.
  """
  for flag, value in (("num_importance_samples", num_importance_samples),
                      ("chunk_size", chunk_size),
                      ("batch_size", batch_size)):
    if int(value) < 1:
      raise errors.TfvaeError(f"--{flag}={value}: must be at least 1")
  check_image_shape(model, images)
  pixels = images.images
  count = len(pixels)
  chunk_size = min(chunk_size, num_importance_samples)
  sums = {k: 0.0 for k in ("elbo", "rate", "distortion", "mse", "bce")}
  log_px = np.zeros(count)
  means = np.zeros([count, model.latent_size])
  kl_sum = np.zeros(model.latent_size)
  done = 0
  started = last_log = time.time()
  logging.info("Evaluating on %d examples of %s: k=%d importance samples in "
               "chunks of %d, batches of %d.", count, images.description,
               num_importance_samples, chunk_size, batch_size)
  for index, x in batches(pixels, batch_size):
    b = len(x)
    elbo, rate, distortion = model.elbo(x, seed, index)
    sums["elbo"] += float(np.sum(elbo, dtype=np.float64))
    sums["rate"] += float(np.sum(rate, dtype=np.float64))
    sums["distortion"] += float(np.sum(distortion, dtype=np.float64))
    loc, scale = model.encode(x)
    means[done:done + b] = loc
    kl_sum += kl_per_dimension(loc, scale).sum(axis=0)
    mse, bce = reconstruction_errors(x, model.decode(loc))
    sums["mse"] += float(mse.sum())
    sums["bce"] += float(bce.sum())
    estimate = (model.log_px(x, seed, index, num_importance_samples,
                             chunk_size)
                if hasattr(model, "log_px") else None)
    if estimate is None:
      estimate = iwae_in_chunks(
          lambda start, c, x=x, index=index: model.log_weights(
              x, seed, index, start, c),
          num_importance_samples, chunk_size, b)
    log_px[done:done + b] = estimate
    done += b
    now = time.time()
    if now - last_log >= log_every_seconds or done == count:
      last_log = now
      _log_progress(done, count, now - started)
  if not np.all(np.isfinite(log_px)):
    raise errors.TfvaeError(
        f"the importance-weighted estimate is not finite for "
        f"{int(np.sum(~np.isfinite(log_px)))} example(s) of "
        f"{images.description}")
  dims = math.prod(model.image_shape)
  nats_to_bits = 1.0 / (dims * math.log(2.0))
  variances = active_unit_variances(means)
  nll = -log_px
  mean_elbo = sums["elbo"] / count
  return {
      "num_examples": count,
      "num_importance_samples": int(num_importance_samples),
      "seed": int(seed),
      "elbo": mean_elbo,
      "rate": sums["rate"] / count,
      "distortion": sums["distortion"] / count,
      "elbo_bits_per_dim": -mean_elbo * nats_to_bits,
      "iwae_log_px": float(np.mean(log_px)),
      "nll": float(np.mean(nll)),
      "nll_stderr": float(np.std(nll, ddof=1) / math.sqrt(count))
                    if count > 1 else 0.0,
      "nll_bits_per_dim": float(np.mean(nll)) * nats_to_bits,
      "reconstruction_mse": sums["mse"] / count,
      "reconstruction_bce": sums["bce"] / count,
      "active_units": int(np.sum(variances > ACTIVE_UNIT_THRESHOLD)),
      "active_unit_threshold": ACTIVE_UNIT_THRESHOLD,
      "latent_size": int(model.latent_size),
      "active_unit_variance": [float(v) for v in variances],
      "kl_per_dimension": [float(v) for v in kl_sum / count],
  }


METRIC_DOCS = {
    "elbo": "mean ELBO (nats)",
    "rate": "mean KL(q(z|x) || p(z)) (nats)",
    "distortion": "mean -E_q[log p(x|z)] (nats)",
    "elbo_bits_per_dim": "-ELBO in bits per dimension",
    "iwae_log_px": "mean importance-weighted estimate of log p(x) (nats)",
    "nll": "-iwae_log_px, the NLL estimate (nats)",
    "nll_stderr": "standard error of the mean NLL over examples (nats)",
    "nll_bits_per_dim": "NLL in bits per dimension",
    "reconstruction_mse": "mean squared error per pixel of the "
                          "reconstruction from the posterior mean",
    "reconstruction_bce": "binary cross-entropy of that reconstruction, "
                          "summed over pixels (nats per image)",
    "active_units": "latent dims with Cov_x(E_q[z_u|x]) > "
                    "active_unit_threshold",
}


def _log_progress(done, total, seconds):
  width = 20
  filled = int(width * done / max(total, 1))
  bar = "#" * filled + "." * (width - filled)
  logging.info("evaluate [%s] %3d%% %d/%d examples, %.0f examples/s", bar,
               100 * done // max(total, 1), done, total,
               done / max(seconds, 1e-9))


def format_table(metrics):
  """The scalar metrics as an aligned two-column text table."""
  rows = [(k, v) for k, v in metrics.items() if not isinstance(v, list)]
  width = max(len(k) for k, _ in rows)
  lines = []
  for k, v in rows:
    value = f"{v:.4f}" if isinstance(v, float) else str(v)
    note = METRIC_DOCS.get(k, "")
    lines.append(f"{k:<{width}}  {value:>12}  {note}".rstrip())
  return "\n".join(lines)


def write_json(path, value):
  """Writes `value` as JSON to `path` atomically (temp file + rename)."""
  with files.atomic_open(path, "w") as f:
    json.dump(value, f, indent=2)
    f.write("\n")
  return path

