"""Denoising with a trained model: corrupt, clean, measure, picture.

The work behind `tfvae-denoise`. Quality is the peak signal-to-noise ratio
against the clean originals, PSNR = 10 log10(1 / MSE) dB per image (pixels
in [0, 1]), averaged over the images.
"""

from absl import logging
import numpy as np

from tfvae import autoencoders
from tfvae import errors
from tfvae import files
from tfvae import image_sources
from tfvae import images as images_lib
from tfvae import input_pipeline
from tfvae import trained


def report(model, clean, corruption, seed=0, labels=None, batch_size=500):
  """Corrupts clean images, denoises them, and measures both against them.

  Args:
    model: A model with reconstructions (see `models.reconstruction_means`).
    clean: float [N, H, W, C] in [0, 1].
    corruption: An `autoencoders.Corruption` or its "KIND:LEVEL" spec.
    seed: Seed of the corruption.
    labels: int [N] (conditional models only).
    batch_size: Images per batch.

  Returns:
    A dict: "noisy" and "cleaned" float32 [N, H, W, C]; "psnr_noisy" and
    "psnr_cleaned", the mean per-image PSNR (dB) against `clean`.
  """
  noisy = autoencoders.corrupt(clean, corruption, seed)
  cleaned = autoencoders.denoise(model, noisy, batch_size, labels)
  return {"noisy": noisy, "cleaned": cleaned,
          "psnr_noisy": float(np.mean(autoencoders.psnr(clean, noisy))),
          "psnr_cleaned": float(np.mean(autoencoders.psnr(clean, cleaned)))}


def side_by_side(rows, num=8):
  """A picture with one row of `num` images per array (noisy, cleaned, ...).

  Args:
    rows: Sequence of float [N, H, W, C] arrays in [0, 1].
    num: Images per row (the first `num`).

  Returns:
    uint8 [len(rows) * (H + 1) - 1, num * (W + 1) - 1, C] (`images.grid`).
  """
  num = min(num, *(len(r) for r in rows))
  return images_lib.grid(np.concatenate([np.asarray(r[:num]) for r in rows]),
                         columns=num)


def load_images(path, image_shape, flag="--input"):
  """Reads images for denoising from a .npy file.

  Args:
    path: A .npy of [N, H, W] or [N, H, W, C]; uint8 0..255 or float in
      [0, 1].
    image_shape: The model's (H, W, C).
    flag: The flag named in errors.

  Returns:
    float32 [N, H, W, C] in [0, 1].

  Raises:
    errors.TfvaeError: naming `flag` and the file, if it is unreadable or
      does not hold such images.
  """
  try:
    array = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise errors.TfvaeError(f"{flag}={path}: cannot read a .npy array: "
                            f"{str(e).splitlines()[0]}") from None
  if array.ndim == len(image_shape) and image_shape[-1] == 1:
    array = array[..., None]
  if array.ndim != len(image_shape) + 1 or \
     tuple(array.shape[1:]) != tuple(image_shape) or len(array) == 0:
    raise errors.TfvaeError(
        f"{flag}={path}: expected images [N, {', '.join(map(str, image_shape))}]"
        f" for this model, got shape {list(array.shape)}")
  if array.dtype == np.uint8:
    return array.astype(np.float32) / 255.0
  if not np.issubdtype(array.dtype, np.floating):
    raise errors.TfvaeError(f"{flag}={path}: expected uint8 or float pixels, "
                            f"got {array.dtype}")
  array = array.astype(np.float32)
  if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
    raise errors.TfvaeError(f"{flag}={path}: float pixels must be finite and "
                            "in [0, 1]")
  return array


def _save_npy(path, array):
  with files.atomic_open(path) as f:
    np.save(f, array)


def run(run_dir, out, noise="salt_and_pepper:0.1", seed=0, input_path=None,
        reference_path=None, data_dir=None, num=8, batch_size=500,
        checkpoint=None, cleaned_npy=None):
  """Denoises the corrupted test split (or `input_path`); writes the picture.

  Args:
    run_dir: The trained model's run directory.
    out: Path of the PNG (rows: noisy, cleaned, original when known).
    noise: Corruption of the test split ("KIND:LEVEL"), used without
      `input_path`.
    seed: Seed of the corruption.
    input_path: Optional .npy of noisy images (see `load_images`).
    reference_path: Optional .npy of their clean originals.
    data_dir: Where to look for the data set first.
    num: Images per picture row.
    batch_size: Images denoised per batch.
    checkpoint: Optional checkpoint prefix.
    cleaned_npy: Optional path for the cleaned images as .npy.

  Returns:
    A dict with "count" and "what" (the images judged) and, when originals
    are known, "psnr_noisy" and "psnr_cleaned" (mean dB per image).
  """
  corruption = None
  if input_path is None:
    corruption = autoencoders.Corruption.parse(noise)
  opened = trained.open_model(run_dir, checkpoint)
  if opened.module is None:
    raise errors.TfvaeError(
        f"--model={run_dir}: denoising needs a run directory (config.json "
        "and ckpt/), not an export")
  config, model = opened.config, opened.module
  logging.info("Loaded %s (%s) at step %d from %s.", config.model,
               config.network, opened.step, run_dir)
  image_shape = tuple(config.image_shape)
  labels = None
  if input_path is None:
    dataset = image_sources.load_for(config, data_dir)
    split = input_pipeline.prepared_split(dataset, "test", config.binarize)
    clean = input_pipeline.scale(split.images).numpy()
    labels = split.labels
    if tuple(clean.shape[1:]) != image_shape:
      raise errors.TfvaeError(
          f"{dataset.source} holds images of shape {clean.shape[1:]}, but "
          f"{run_dir} was trained on {image_shape}")
    logging.info("Denoising %d test images corrupted with %s.", len(clean),
                 corruption)
    result = report(model, clean, corruption, seed, labels, batch_size)
    result.update(count=len(clean), what=f"{config.dataset} test split, "
                  f"{corruption}")
    rows = [result["noisy"], result["cleaned"], clean]
  else:
    if opened.conditional:
      raise errors.TfvaeError(
          f"--input: {run_dir} holds a cvae, which needs class labels; "
          "denoise the test split with --noise instead")
    noisy = load_images(input_path, image_shape)
    logging.info("Denoising %d images from %s.", len(noisy), input_path)
    cleaned = autoencoders.denoise(model, noisy, batch_size)
    result = {"noisy": noisy, "cleaned": cleaned, "count": len(noisy),
              "what": input_path}
    rows = [noisy, cleaned]
    if reference_path is not None:
      clean = load_images(reference_path, image_shape, "--reference")
      if clean.shape != noisy.shape:
        raise errors.TfvaeError(
            f"--reference={reference_path}: shape {list(clean.shape)} differs "
            f"from --input's {list(noisy.shape)}")
      result["psnr_noisy"] = float(np.mean(autoencoders.psnr(clean, noisy)))
      result["psnr_cleaned"] = float(np.mean(autoencoders.psnr(clean,
                                                               cleaned)))
      rows.append(clean)
  images_lib.write_png(out, side_by_side(rows, num))
  if cleaned_npy:
    _save_npy(cleaned_npy, result["cleaned"])
  return result
