"""Image grids and PNG files."""
import math

import numpy as np
import tensorflow as tf

from tfvae import files


def grid(images, columns=None, pad=1, pad_value=1.0):
  """Tiles images into one picture.

  Args:
    images: float [N, H, W, C] with values in [0, 1] (clipped otherwise).
    columns: Images per row; default ceil(sqrt(N)).
    pad: Pixels of padding between tiles.
    pad_value: Padding intensity in [0, 1].

  Returns:
    uint8 numpy array [rows * (H + pad) - pad, columns * (W + pad) - pad, C].
  """
  images = np.clip(np.asarray(images, dtype=np.float32), 0.0, 1.0)
  n, height, width, channels = images.shape
  columns = columns or max(1, math.ceil(math.sqrt(n)))
  rows = max(1, math.ceil(n / columns))
  out = np.full((rows * (height + pad) - pad, columns * (width + pad) - pad,
                 channels), pad_value, np.float32)
  for i in range(n):
    r, c = divmod(i, columns)
    out[r * (height + pad):r * (height + pad) + height,
        c * (width + pad):c * (width + pad) + width] = images[i]
  return np.round(out * 255).astype(np.uint8)


def spread(total, count):
  """Indices of `count` of `total` items spread evenly over them, ascending.

  The first items of a split read from class folders are often all of one
  class; items spread over the split show it as listed. The first index is
  0 and, for count > 1, the last is total - 1.

  Args:
    total: Number of items, >= 0.
    count: Number of indices wanted; min(count, total) are returned.

  Returns:
    int64 numpy array [min(count, total)] of distinct indices.
  """
  count = min(int(count), int(total))
  if count <= 0:
    return np.zeros([0], np.int64)
  # Steps of (total - 1) / (count - 1) >= 1, so the floors are distinct.
  return np.floor(np.linspace(0, total - 1, count)).astype(np.int64)


def write_png(path, picture):
  """Writes a uint8 [H, W, C] array as a PNG, atomically (temp + rename)."""
  picture = np.asarray(picture)
  if picture.ndim == 2:
    picture = picture[..., None]
  encoded = tf.io.encode_png(tf.convert_to_tensor(picture, tf.uint8)).numpy()
  with files.atomic_open(path) as f:
    f.write(encoded)
  return path
