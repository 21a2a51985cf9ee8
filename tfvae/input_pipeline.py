"""The input pipeline: pixels as the model sees them, and batches of a split.

Images are stored as uint8 0..255; the model sees float32 in [0, 1]
(`scale`), optionally binarised, statically once per split
(`static_binarize`, with the fixed seeds of `rng.BINARIZATION_SEEDS`) or
dynamically at every step (`binarize`, with the step's noise).
`prepared_split` is the data policy training and evaluation share;
`train_dataset` and `eval_dataset` wrap a split in a `tf.data.Dataset`.
"""
import numpy as np
import tensorflow as tf

from tfvae import config as config_lib
from tfvae import data
from tfvae import errors
from tfvae import rng

# The choices of --binarize (stated with the field in `config`).
BINARIZATIONS = config_lib.BINARIZATIONS


def prepared_split(dataset, split, binarize):
  """The images of a split as training and evaluation see them.

  Args:
    dataset: A `data.Dataset`.
    split: "train" or "test".
    binarize: "none", "static" or "dynamic". The test split of a binarised
      run is binarised once with a fixed seed (the standard protocol);
      dynamic binarisation of the training split happens in the step.

  Returns:
    A `data.Split` with uint8 images.
  """
  the_split = dataset.split(split)
  if binarize == "none" or (binarize == "dynamic" and split == "train"):
    return the_split
  if hasattr(the_split.images, "epoch"):
    raise errors.DataError(
        f"--binarize={binarize}: the {split} images of {dataset.source} "
        "are streamed from disk (more than --cache_mb); binarise them "
        "dynamically or raise --cache_mb")
  seed = rng.BINARIZATION_SEEDS[split]
  return data.Split(static_binarize(the_split.images, seed),
                    the_split.labels)


# ----------------------------------------------------------------------------
# Pixels.


def scale(images):
  """Maps uint8 images [..., H, W, C] to float32 in [0, 1] (x / 255)."""
  return tf.cast(tf.convert_to_tensor(images), tf.float32) / 255.0


def static_binarize(images, seed):
  """Binarises images once, reproducibly (the "static" binarised MNIST).

  Pixel p becomes 255 with probability p / 255 and 0 otherwise.

  Args:
    images: uint8 array, any shape, e.g. [N, H, W, C].
    seed: int; the same seed gives the same result.

  Returns:
    A uint8 array shaped like `images` holding only 0 and 255.
  """
  images = np.asarray(images)
  if images.dtype != np.uint8:
    raise errors.DataError(
        f"static_binarize needs uint8 images, got {images.dtype}")
  # r is uniform on 0..254, so P(r < p) = p / 255 exactly.
  r = rng.binarization_thresholds(seed, images.shape)
  return np.where(r < images, np.uint8(255), np.uint8(0))


def binarize(x, noise):
  """Dynamic binarisation: float32 (noise < x) as 0. / 1.

  Args:
    x: float intensities in [0, 1], any shape, e.g. [B, H, W, C].
    noise: Uniform [0, 1) noise of the same shape (drawn statelessly by the
      caller, so that steps are reproducible).

  Returns:
    float32 tensor shaped like `x`; each entry is 1 with probability x.
  """
  x = tf.convert_to_tensor(x, tf.float32)
  noise = tf.convert_to_tensor(noise, tf.float32)
  return tf.cast(noise < x, tf.float32)


# ----------------------------------------------------------------------------
# Batching.


def _check_batch_size(split, batch_size):
  if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
    raise errors.DataError(f"batch_size must be a positive int, got "
                           f"{batch_size!r}")
  if batch_size > len(split.labels):
    raise errors.DataError(
        f"batch_size {batch_size} exceeds the {len(split.labels)} examples in "
        "the split, so an epoch would have no full batch")


def steps_per_epoch(split, batch_size):
  """The number of full batches in one epoch: N // batch_size."""
  if batch_size < 1:
    raise errors.DataError(f"batch_size must be positive, got {batch_size}")
  return len(split.labels) // batch_size


def train_dataset(split, batch_size, seed, epoch, skip_batches=0):
  """One shuffled epoch of full training batches.

  The order is `rng.epoch_order(seed, epoch, N)`, so it depends on (seed,
  epoch) only: not on the process, nor on `tf.random.set_seed` (which
  changes what tf.data's own shuffle does).

  Args:
    split: The `Split` to draw from, N examples.
    batch_size: Examples per batch, B; the last N % B examples are dropped.
    seed: int seed of the run.
    epoch: int epoch number; each epoch has its own order.
    skip_batches: Leading batches of the epoch to leave out, to resume
      mid-epoch exactly where a run stopped.

  Returns:
    A `tf.data.Dataset` of dicts {"image": uint8 [B, H, W, C], "label": int64
    [B]}, steps_per_epoch(split, batch_size) - skip_batches elements.

  Raises:
    errors.DataError: Bad batch_size or skip_batches.
  """
  _check_batch_size(split, batch_size)
  num_batches = steps_per_epoch(split, batch_size)
  if not 0 <= skip_batches <= num_batches:
    raise errors.DataError(
        f"skip_batches must be in 0..{num_batches} (batches per epoch), got "
        f"{skip_batches}")
  order = rng.epoch_order(seed, epoch, len(split.labels))
  # Skipping at the index level is the same as dataset.skip(), but the
  # skipped images are never copied.
  order = order[skip_batches * batch_size:num_batches * batch_size]
  if hasattr(split.images, "epoch"):
    return _streamed_epoch(split, order, batch_size, seed, epoch,
                           skip_batches * batch_size)
  dataset = tf.data.Dataset.from_tensor_slices({
      "image": split.images[order],
      "label": split.labels[order].astype(np.int64),
  })
  dataset = dataset.batch(batch_size, drop_remainder=True)
  return dataset.prefetch(tf.data.AUTOTUNE)


def _streamed_epoch(split, order, batch_size, seed, epoch, skipped):
  """`train_dataset` of a split whose images are streamed from disk
  (`image_sources.StreamedImages`): the images of files come in `order`;
  those of TFRecords in the stream's seeded shuffle, with the labels
  that go with them."""
  streamed = split.images
  labels = split.labels.astype(np.int64)
  if streamed.listing.files is not None:
    images = streamed.epoch(order)
    dataset = tf.data.Dataset.zip(
        {"image": images, "label": tf.data.Dataset.from_tensor_slices(
            labels[order])})
  else:
    # Records cannot be read by index: the epoch's (seed, epoch) order
    # is a seeded shuffle of every record, skipped into on resume.
    positions = tf.data.Dataset.from_tensor_slices(
        np.arange(len(labels), dtype=np.int64))
    shuffle_seed = int(rng.shuffle_seed(seed, epoch)) % 2**31
    positions = positions.shuffle(streamed.shuffle_buffer, seed=shuffle_seed,
                                  reshuffle_each_iteration=False)
    images = streamed.epoch(np.arange(len(labels)), seed=shuffle_seed)
    dataset = tf.data.Dataset.zip({
        "image": images,
        "label": positions.map(lambda i: tf.gather(labels, i))})
    dataset = dataset.skip(skipped).take(len(order))
  dataset = dataset.batch(batch_size, drop_remainder=True)
  return dataset.prefetch(tf.data.AUTOTUNE)


def eval_dataset(split, batch_size):
  """The split in its stored order, in batches; the last may be smaller.

  Args:
    split: The `Split` to read, N examples.
    batch_size: Examples per batch, B.

  Returns:
    A `tf.data.Dataset` of dicts {"image": uint8 [b, H, W, C], "label": int64
    [b]}, b = B except for the last batch; ceil(N / B) elements.
  """
  if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
    raise errors.DataError(f"batch_size must be a positive int, got "
                           f"{batch_size!r}")
  dataset = tf.data.Dataset.from_tensor_slices({
      "image": split.images,
      "label": split.labels.astype(np.int64, copy=False),
  })
  return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
