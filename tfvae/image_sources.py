"""The user's own images: folders, list files, arrays and TFRecord shards.

`load` reads one of these sources (the --data flag) into a `data.Dataset`
of two `data.Split`s held in memory, as the named data sets are:

  FOLDER/CLASS/*.png   a directory with one subdirectory per class; labels
                       are the subdirectory names' indices, names sorted
  FOLDER/*.jpg         a directory of images, no labels
  FILE.txt             a list file: one "path label" or "path" per line,
                       paths relative to the file; blank lines and lines
                       starting with "#" are skipped
  FILE.npz             arrays "images" ([N, H, W(, C)], uint8, or float in
                       [0, 1]) and optionally "labels" ([N] ints), or
                       Keras' x_train, y_train, x_test, y_test
  FILE.npy             an images array as above, no labels
  PREFIX               TFRecord shards PREFIX-*-of-* of tf.train.Examples
                       with "image/encoded" (PNG, JPEG, ... bytes) and
                       optionally "image/class/label" (int64), as
                       `write_tfrecords` (tfvae-make-tfrecords) writes them

Images may be PNG, JPEG, BMP or GIF (its first frame). They are decoded by
one tf.data pipeline with parallel decoding (AUTOTUNE) in the stored order.
An image that cannot be read or decoded is a one-line `errors.DataError`
naming it, or, with `skip_bad=True`, left out and counted in the log; either
way before training starts, never mid-epoch.

Memory: the training images are held in memory when, decoded at their final
size, they fit `cache_mb`; otherwise the split's images are a
`StreamedImages`, decoded from disk by tf.data every epoch with bounded
memory (files by index, in the (seed, epoch) order of
`input_pipeline.train_dataset`; TFRecords in a seeded shuffle, split between
multi-worker workers by file). The first pass that checks every image keeps
at most `cache_mb` of them.

Size and channels: every image is brought to `image_size` (H, W) by
scaling it, keeping its aspect ratio, until it covers H x W (area
averaging when shrinking, bilinear when enlarging) and cutting the centre
H x W out; images already H x W are kept as they are. Without
`image_size`, all images must have the same size (that size is used);
otherwise it is an error that says so. `channels` 1 or 3 converts grey to
colour (the grey repeated) and colour to grey (ITU-R 601 luma); alpha is
dropped. Without `channels`, the data's: 3 if any image is colour, else 1.

The test split is the `test_source`'s images when given (same size and
channels as the training images; a test folder's classes are matched to the
training folder's by name),
or else the `test_fraction` of the examples chosen by the fixed seed
`TEST_SPLIT_SEED`, not by the run's seed: runs with other seeds on the
same data are tested on the same images.
"""
import glob
import json
import os
import re
import zipfile
import zlib

from absl import logging
import numpy as np
import tensorflow as tf

from tfvae import data
from tfvae import errors
from tfvae import files

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
# The held-out test split of a source without one: the same for every run.
TEST_SPLIT_SEED = 1234
# The features of a TFRecord example.
IMAGE_KEY = "image/encoded"
LABEL_KEY = "image/class/label"
# PREFIX.json beside TFRecord shards: class names and counts.
TFRECORD_INFO_SUFFIX = ".json"
UNLABELLED = ("unlabelled",)


class Listing:
  """The encoded images of a source, before decoding.

  Attributes:
    source: The path the user gave.
    names: The name of each example for messages: its file (or
      "SHARD record K"), [N] strings.
    labels: int64 [N], or None when the source has no labels.
    class_names: Names of the labels, or None.
    files: The files, [N] paths (file sources), or None.
    shards: The TFRecord shard files (TFRecord sources), or None.
    arrays: uint8 [N, H, W, C] images (array sources), or None.
  """

  def __init__(self, source, names, labels=None, class_names=None,
               files=None, shards=None, arrays=None):
    self.source = source
    self.names = list(names)
    self.labels = labels
    self.class_names = class_names
    self.files = files
    self.shards = shards
    self.arrays = arrays


def kind_of(path):
  """Which kind of source `path` is: "folder", "list", "npz", "npy" or
  "tfrecord".

  Raises:
    errors.DataError: Nothing is at `path`.
  """
  if os.path.isdir(path):
    return "folder"
  if os.path.isfile(path):
    lower = path.lower()
    if lower.endswith(".npz"):
      return "npz"
    if lower.endswith(".npy"):
      return "npy"
    if lower.endswith((".tfrecord", ".tfrecords")):
      return "tfrecord"
    return "list"
  if tfrecord_shards(path):
    return "tfrecord"
  raise errors.DataError(
      f"--data={path}: no such file, directory or TFRecord shards "
      f"{path}-*-of-*")


def tfrecord_shards(path):
  """The TFRecord files `path` names, sorted: the shards PATH-*-of-*, a
  glob pattern's matches, or the file itself."""
  if os.path.isfile(path):
    return [path]
  found = sorted(glob.glob(glob.escape(path) + "-*-of-*"))
  found = [f for f in found if not f.endswith(TFRECORD_INFO_SUFFIX)]
  if not found and any(c in path for c in "*?["):
    found = sorted(glob.glob(path))
  return found


def _is_image(name):
  return name.lower().endswith(IMAGE_EXTENSIONS)


def _list_folder(path):
  entries = sorted(os.listdir(path))
  subdirs = [e for e in entries if os.path.isdir(os.path.join(path, e))
             and not e.startswith(".")]
  flat = [e for e in entries if _is_image(e)
          and os.path.isfile(os.path.join(path, e))]
  if subdirs and not flat:
    files, labels = [], []
    for label, subdir in enumerate(subdirs):
      directory = os.path.join(path, subdir)
      for root, dirs, names in os.walk(directory):
        dirs.sort()
        files.extend(os.path.join(root, n) for n in sorted(names)
                     if _is_image(n))
        labels.extend([label] * (len(files) - len(labels)))
    if not files:
      raise errors.DataError(
          f"--data={path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in its "
          "class subdirectories")
    return Listing(path, files, np.asarray(labels, np.int64),
                   tuple(subdirs), files=files)
  if not flat:
    raise errors.DataError(
        f"--data={path}: no images ({', '.join(IMAGE_EXTENSIONS)}) and no "
        "class subdirectories in it")
  if subdirs:
    logging.warning("%s: images at the top level, so its subdirectories "
                    "(%s) are not read as classes.", path, ", ".join(subdirs))
  files = [os.path.join(path, e) for e in flat]
  return Listing(path, files, files=files)


def _list_file(path):
  base = os.path.dirname(os.path.abspath(path))
  files, labels, numbers = [], [], []
  try:
    with open(path, encoding="utf-8") as f:
      lines = f.read().splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise errors.DataError(f"--data={path}: not a readable list file "
                           f"({e})") from None
  for number, line in enumerate(lines, 1):
    line = line.strip()
    if not line or line.startswith("#"):
      continue
    parts = line.rsplit(None, 1)
    label = None
    if len(parts) == 2:
      try:
        label = int(parts[1])
      except ValueError:
        raise errors.DataError(
            f"{path}:{number}: expected \"path label\" with an integer "
            f"label, found {line!r}") from None
      if label < 0:
        raise errors.DataError(f"{path}:{number}: label {label} is negative")
    files.append(os.path.join(base, parts[0]))
    labels.append(label)
    numbers.append(number)
  if not files:
    raise errors.DataError(f"--data={path}: lists no images")
  labelled = [label is not None for label in labels]
  if any(labelled) and not all(labelled):
    number = numbers[labelled.index(not labelled[0])]
    raise errors.DataError(
        f"{path}:{number}: some lines have a label and some not; give every "
        "image a label or none")
  if not all(labelled):
    return Listing(path, files, files=files)
  labels = np.asarray(labels, np.int64)
  class_names = tuple(str(i) for i in range(int(labels.max()) + 1))
  return Listing(path, files, labels, class_names, files=files)


def _as_uint8(images, where):
  """Array images [N, H, W(, C)] uint8 or float in [0, 1] as uint8 NHWC."""
  images = np.asarray(images)
  if images.ndim == 3:
    images = images[..., np.newaxis]
  if images.ndim != 4 or images.shape[-1] not in (1, 2, 3, 4):
    raise errors.DataError(
        f"{where}: expected images [N, H, W] or [N, H, W, C] with C in "
        f"1..4, found shape {list(images.shape)}")
  if images.dtype == np.uint8:
    return images
  if np.issubdtype(images.dtype, np.floating):
    if images.size and (not np.isfinite(images).all() or images.min() < 0
                        or images.max() > 1):
      raise errors.DataError(
          f"{where}: float images must be in [0, 1], found values in "
          f"{images.min()}..{images.max()}")
    return np.round(images * 255).astype(np.uint8)
  raise errors.DataError(f"{where}: images must be uint8 or float in "
                         f"[0, 1], found {images.dtype}")


def _as_labels(labels, count, where):
  labels = np.asarray(labels)
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or \
     len(labels) != count:
    raise errors.DataError(
        f"{where}: expected {count} integer labels [N], found "
        f"{labels.dtype} {list(labels.shape)}")
  if labels.size and labels.min() < 0:
    raise errors.DataError(f"{where}: labels must not be negative")
  return labels.astype(np.int64)


def _read_arrays(path, kind):
  """{name: array} of an .npz, {"images": array} of an .npy."""
  try:
    if kind == "npy":
      return {"images": np.load(path, allow_pickle=False)}
    with np.load(path, allow_pickle=False) as npz:
      return {key: npz[key] for key in npz.files}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
    raise errors.DataError(f"--data={path}: not a readable .{kind} file "
                           f"({e})") from None


def _array_listing(path, images, labels, where):
  images = _as_uint8(images, where)
  names = [f"{path} image {i}" for i in range(len(images))]
  if labels is None:
    return Listing(path, names, arrays=images)
  labels = _as_labels(labels, len(images), f"{path} labels")
  class_names = tuple(str(i) for i in range(int(labels.max()) + 1)) \
      if labels.size else ()
  return Listing(path, names, labels, class_names, arrays=images)


def _tfrecord_info(path):
  """The class names PREFIX.json records (written by `write_tfrecords`)."""
  try:
    with open(path + TFRECORD_INFO_SUFFIX) as f:
      info = json.load(f)
  except (OSError, ValueError):
    return None
  names = info.get("class_names") if isinstance(info, dict) else None
  return tuple(str(n) for n in names) if isinstance(names, list) else None


def list_source(path):
  """Lists the examples of the source at `path` (see the module docstring).

  Returns:
    A `Listing`; a .npz with x_train/x_test gives (train, test) Listings.

  Raises:
    errors.DataError: No such source, or one malformed (naming the file and
      line or array at fault).
  """
  kind = kind_of(path)
  if kind == "folder":
    return _list_folder(path)
  if kind == "list":
    return _list_file(path)
  if kind in ("npz", "npy"):
    arrays = _read_arrays(path, kind)
    if "x_train" in arrays and "x_test" in arrays:
      return tuple(
          _array_listing(path, arrays[f"x_{split}"], arrays.get(f"y_{split}"),
                         f"{path}:x_{split}") for split in ("train", "test"))
    images = arrays.get("images", arrays.get("x"))
    if images is None:
      raise errors.DataError(
          f"--data={path}: no array \"images\" (or \"x\", or x_train and "
          f"x_test); it holds {', '.join(sorted(arrays)) or 'nothing'}")
    return _array_listing(path, images, arrays.get("labels", arrays.get("y")),
                          f"{path}:images")
  shards = tfrecord_shards(path)
  return Listing(path, [], shards=shards, class_names=_tfrecord_info(path))


def class_names_of(path):
  """The class names of the source at `path` without decoding any image:
  a folder's subdirectory names, a TFRecord prefix's recorded names;
  None where the labels are bare numbers or the source is gone."""
  try:
    kind = kind_of(path)
  except errors.DataError:
    return None
  if kind == "folder":
    try:
      return _list_folder(path).class_names
    except errors.DataError:
      return None
  if kind == "tfrecord":
    return _tfrecord_info(path)
  return None


# ----------------------------------------------------------------------------
# Decoding.


def _decode(encoded):
  """Encoded PNG/JPEG/BMP/GIF bytes -> uint8 [h, w, c], c in 1..4."""
  # JPEG with the accurate integer DCT: decode_image's default is the fast
  # one, off by up to ~20 grey levels from libjpeg's reference decoding.
  return tf.cond(
      tf.io.is_jpeg(encoded),
      lambda: tf.io.decode_jpeg(encoded, dct_method="INTEGER_ACCURATE"),
      lambda: tf.io.decode_image(encoded, channels=0, expand_animations=False,
                                 dtype=tf.uint8))


def _parse_example(record):
  parsed = tf.io.parse_single_example(record, {
      IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
      LABEL_KEY: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
  })
  return parsed[IMAGE_KEY], parsed[LABEL_KEY]


def encoded_dataset(listing):
  """A tf.data.Dataset of (index, encoded bytes, label) of a file or
  TFRecord `listing`, in its order; label -1 where there is none."""
  if listing.files is not None:
    labels = listing.labels if listing.labels is not None else \
        np.full(len(listing.files), -1, np.int64)
    dataset = tf.data.Dataset.from_tensor_slices(
        (np.arange(len(listing.files), dtype=np.int64), listing.files, labels))
    return dataset.map(lambda i, f, y: (i, tf.io.read_file(f), y),
                       num_parallel_calls=tf.data.AUTOTUNE)
  records = tf.data.TFRecordDataset(listing.shards)
  return records.enumerate().map(
      lambda i, r: (i, *_parse_example(r)), num_parallel_calls=tf.data.AUTOTUNE)


def _first_line(error):
  """The first line of a TensorFlow error, without its decoration
  ({{function_node ...}}, [Op:DecodeImage], name:)."""
  message = getattr(error, "message", str(error)).strip().splitlines()[0]
  message = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:\w+\]|\s*name:\s*$", "",
                   message)
  return message.strip() or "unreadable"


def _count_records(listing):
  """The number of records in a listing's shards.

  Raises:
    errors.DataError: A shard is damaged (naming it).
  """
  total = 0
  for shard in listing.shards:
    try:
      total += sum(1 for _ in tf.data.TFRecordDataset(shard))
    except tf.errors.OpError as e:
      raise errors.DataError(
          f"{shard}: damaged TFRecord file ({_first_line(e)})") from None
  return total


def _record_names(listing, wanted):
  """{index: "SHARD record K"} of the TFRecord examples `wanted`."""
  names, index = {}, 0
  for shard in listing.shards:
    for k, _ in enumerate(tf.data.TFRecordDataset(shard)):
      if index in wanted:
        names[index] = f"{shard} record {k}"
      index += 1
  return names


def _why_bad(listing, index, name):
  """The first line of the error reading example `index` gives."""
  if listing.files is not None and not os.path.isfile(listing.files[index]):
    return "no such file"
  try:
    if listing.files is not None:
      encoded = tf.io.read_file(listing.files[index])
    else:
      shard, _, k = name.rpartition(" record ")
      record = next(iter(tf.data.TFRecordDataset(shard).skip(int(k))))
      encoded, _ = _parse_example(record)
    _decode(encoded)
  except (tf.errors.OpError, ValueError) as e:
    return _first_line(e)
  return "unreadable"


def decode_all(listing, skip_bad=False, keep_bytes=None):
  """Decodes every image of a file or TFRecord listing, in parallel.

  Args:
    listing: A file or TFRecord `Listing`.
    skip_bad: Leave out images that cannot be read instead of failing.
    keep_bytes: Keep the decoded images only while they take at most this
      many bytes (None: always); past it they are dropped, and only their
      shapes kept, so that memory stays bounded.

  Returns:
    (images, labels, indices, shapes): a list of uint8 arrays [h, w, c] in
    the listing's order (None when they outgrew `keep_bytes`), int64 labels
    [N] (-1 where the source has none), the int64 indices [N] in the
    listing of the images read and their shapes, int64 [N, 3], the bad
    images left out when `skip_bad`.

  Raises:
    errors.DataError: An image could not be read or decoded (and not
      `skip_bad`), naming its file; a TFRecord shard is damaged.
  """
  dataset = encoded_dataset(listing).map(
      lambda i, encoded, y: (i, _decode(encoded), y),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  dataset = dataset.ignore_errors()
  indices, images, labels, shapes = [], [], [], []
  kept = 0
  try:
    for i, image, y in dataset.as_numpy_iterator():
      indices.append(int(i))
      labels.append(int(y))
      shapes.append(image.shape)
      if images is not None:
        kept += image.nbytes
        if keep_bytes is not None and kept > keep_bytes:
          images = None
        else:
          images.append(image)
  except tf.errors.OpError as e:
    raise errors.DataError(
        f"--data={listing.source}: damaged TFRecord data: "
        f"{_first_line(e)}") from None
  total = len(listing.files) if listing.files is not None else None
  if total is None:
    total = _count_records(listing)
  if len(indices) < total:
    missing = sorted(set(range(total)) - set(indices))
    if listing.files is not None:
      names = {i: listing.files[i] for i in missing}
    else:
      names = _record_names(listing, set(missing))
    if not skip_bad:
      first = missing[0]
      raise errors.DataError(
          f"{names[first]}: not a readable image "
          f"({_why_bad(listing, first, names[first])})"
          + (f"; {len(missing) - 1} more bad image(s)" if len(missing) > 1
             else "") + "; pass --skip_bad_images to leave them out")
    logging.warning("Skipped %d bad image(s) of %s (--skip_bad_images), "
                    "the first: %s.", len(missing), listing.source,
                    names[missing[0]])
  if not indices:
    raise errors.DataError(f"--data={listing.source}: holds no readable "
                           "images")
  return (images, np.asarray(labels, np.int64),
          np.asarray(indices, np.int64), np.asarray(shapes, np.int64))


# ----------------------------------------------------------------------------
# Size and channels.


def conform_tensor(image, shape):
  """uint8 [h, w, c] (c in 1..4) as uint8 `shape` (H, W, C): the alpha
  dropped, grey repeated to colour or colour to ITU-R 601 luma, scaled to
  cover H x W keeping the aspect ratio (area averaging when shrinking,
  bilinear when enlarging) and centre-cropped; an H x W image is kept.

  Graph-friendly (tf.data maps it); the cached and the streamed pipelines
  both use it, so they give the same pixels.
  """
  image = tf.convert_to_tensor(image, tf.uint8)
  target_h, target_w, channels = (int(d) for d in shape)
  depth = tf.shape(image)[-1]
  image = tf.cond(tf.logical_or(depth == 2, depth == 4),
                  lambda: image[..., :-1], lambda: image)
  if channels == 3:
    image = tf.cond(tf.shape(image)[-1] == 1,
                    lambda: tf.tile(image, [1, 1, 3]), lambda: image)
  else:
    luma = tf.constant([0.299, 0.587, 0.114], tf.float32)
    image = tf.cond(
        tf.shape(image)[-1] == 3,
        lambda: tf.cast(tf.round(tf.reduce_sum(
            tf.cast(image, tf.float32) * luma, -1, keepdims=True)), tf.uint8),
        lambda: image)
  height, width = tf.shape(image)[0], tf.shape(image)[1]

  def fit():
    h, w = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    scale = tf.maximum(target_h / h, target_w / w)
    new_h = tf.maximum(target_h, tf.cast(tf.round(h * scale), tf.int32))
    new_w = tf.maximum(target_w, tf.cast(tf.round(w * scale), tf.int32))
    resized = tf.cond(
        scale < 1,
        lambda: tf.image.resize(image, [new_h, new_w], "area",
                                antialias=True),
        lambda: tf.image.resize(image, [new_h, new_w], "bilinear"))
    top, left = (new_h - target_h) // 2, (new_w - target_w) // 2
    resized = resized[top:top + target_h, left:left + target_w]
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

  same = tf.logical_and(tf.equal(height, target_h), tf.equal(width, target_w))
  image = tf.cond(same, lambda: image, fit)
  return tf.ensure_shape(image, [target_h, target_w, channels])


def convert_channels(image, channels):
  """uint8 [h, w, 1 or 3] as [h, w, `channels`] (see `conform_tensor`)."""
  return conform_tensor(image, (*image.shape[:2], channels)).numpy()


def fit_size(image, size):
  """uint8 [h, w, c] scaled to cover `size` (H, W) and centre-cropped to it
  (see `conform_tensor`); the image itself when it is H x W already."""
  if tuple(image.shape[:2]) == tuple(size):
    return image
  return conform_tensor(image, (*size, image.shape[-1])).numpy()


def target_shape(shapes, image_size=None, channels=None, where="--data"):
  """The (H, W, C) images are brought to (see the module docstring).

  Args:
    shapes: The images' shapes, int [N, 3] (h, w, c).
    image_size: (H, W), or None/() for the images' own size.
    channels: 1 or 3, or None/0 for the data's.
    where: The source, for errors.

  Raises:
    errors.DataError: Images of several sizes and no `image_size`.
  """
  shapes = np.asarray(shapes).reshape(-1, 3)
  sizes = {tuple(int(d) for d in hw) for hw in np.unique(shapes[:, :2],
                                                         axis=0)}
  depths = set(np.unique(shapes[:, 2]).tolist())
  if image_size:
    size = tuple(int(s) for s in image_size)
  elif len(sizes) == 1:
    size = sizes.pop()
  else:
    examples = ", ".join(f"{h}x{w}" for h, w in sorted(sizes)[:3])
    raise errors.DataError(
        f"{where}: the images have {len(sizes)} different sizes ({examples}"
        f"{', ...' if len(sizes) > 3 else ''}); pass --image_size=H,W to "
        "bring them all to one (scaled to cover it, centre-cropped)")
  if not channels:
    channels = 3 if depths & {3, 4} else 1
  return (*size, int(channels))


def _shapes_of(images):
  if isinstance(images, np.ndarray):
    return np.tile(images.shape[1:], (len(images), 1))
  return np.asarray([image.shape for image in images], np.int64)


def conform(images, shape):
  """uint8 images (a list of [h, w, c] or one array [N, h, w, c]) as one
  array [N, H, W, C] of `shape` (H, W, C)."""
  if isinstance(images, np.ndarray) and images.shape[1:] == tuple(shape):
    return images
  out = np.empty((len(images), *shape), np.uint8)
  for i, image in enumerate(images):
    out[i] = conform_tensor(image, shape).numpy() \
        if tuple(image.shape) != tuple(shape) else image
  return out


class StreamedImages:
  """Training images too many to hold: decoded from disk as they are read.

  Stands where a split's uint8 array [N, H, W, C] would (`data.Split`):
  it has `shape`, `dtype`, `len()`, slicing (decodes those images) and
  `epoch`, the tf.data pipeline training reads.

  Args:
    listing: The file or TFRecord `Listing` of the source.
    indices: int64 [N]: the listing's examples in this split, in order.
    shape: (H, W, C) the images are brought to.
    exact: Whether every image is stored at `shape` already (then they are
      only decoded, not converted: faster).
  """

  dtype = np.dtype(np.uint8)
  # Records of streamed TFRecords are shuffled in a buffer of this many.
  shuffle_buffer = 1024

  def __init__(self, listing, indices, shape, exact=False):
    self.listing = listing
    self.indices = np.asarray(indices, np.int64)
    self.shape = (len(self.indices), *shape)
    self.ndim = 4
    self.exact = exact
    self._shard_counts = None

  def __len__(self):
    return len(self.indices)

  def _decoded(self, dataset):
    shape = self.shape[1:]
    if self.exact:
      convert = lambda image: tf.ensure_shape(image, shape)
    else:
      convert = lambda image: conform_tensor(image, shape)
    return dataset.map(lambda encoded: convert(_decode(encoded)),
                       num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=True)

  def _encoded_by_position(self, positions):
    """Encoded images at `positions` (into this split), in that order:
    files are read by index; TFRecords are scanned in order (positions
    must then be ascending)."""
    if self.listing.files is not None:
      files = np.asarray(self.listing.files)[self.indices[positions]]
      return tf.data.Dataset.from_tensor_slices(files).map(
          tf.io.read_file, num_parallel_calls=tf.data.AUTOTUNE)
    wanted = np.zeros(int(self.indices.max()) + 1, bool)
    wanted[self.indices[positions]] = True
    wanted = tf.constant(wanted)
    records = tf.data.TFRecordDataset(self.listing.shards).enumerate()
    records = records.take(len(wanted)).filter(
        lambda i, record: tf.gather(wanted, i))
    return records.map(lambda i, record: _parse_example(record)[0],
                       num_parallel_calls=tf.data.AUTOTUNE)

  def epoch(self, order, seed=None):
    """tf.data.Dataset of uint8 [H, W, C] images: for files, the images at
    `order` (positions into this split) in that order; for TFRecords, the
    images at `order` in a (seed)-shuffled order of shards and a seeded
    shuffle buffer (records cannot be read by index)."""
    order = np.asarray(order, np.int64)
    if self.listing.files is not None:
      return self._decoded(self._encoded_by_position(order))
    encoded = self._encoded_by_position(np.sort(order))
    if seed is not None:
      encoded = encoded.shuffle(self.shuffle_buffer, seed=seed,
                                reshuffle_each_iteration=False)
    return self._decoded(encoded)

  def worker_examples(self, labels, worker, num_workers, seed):
    """A worker's share of streamed TFRecords, split by file.

    Args:
      labels: int64 [N] labels of this split.
      worker: This worker's index, 0 <= worker < num_workers.
      num_workers: Workers reading the split.
      seed: Seed of the shuffle of the worker's records.

    Returns:
      A tf.data.Dataset of (uint8 [H, W, C] image, int64 label): the
      split's records in shards worker, worker + num_workers, ..., in a
      seeded shuffle, repeated forever (the caller takes what it needs).

    Raises:
      errors.DataError: Fewer shards than workers.
    """
    shards = list(self.listing.shards)
    if len(shards) < num_workers:
      raise errors.DataError(
          f"--data={self.listing.source}: {len(shards)} TFRecord shard(s) "
          f"for {num_workers} workers; write at least one shard per worker "
          "(tfvae-make-tfrecords --shards)")
    if self._shard_counts is None:
      self._shard_counts = [sum(1 for _ in tf.data.TFRecordDataset(shard))
                            for shard in shards]
    offsets = np.concatenate([[0], np.cumsum(self._shard_counts)[:-1]])
    mine = list(range(worker, len(shards), num_workers))
    position_of = np.full(int(np.sum(self._shard_counts)), -1, np.int64)
    position_of[self.indices] = np.arange(len(self.indices))
    position_of = tf.constant(position_of)
    labels = tf.constant(np.asarray(labels, np.int64))
    files = tf.data.Dataset.from_tensor_slices(
        (np.asarray(shards)[mine], offsets[mine].astype(np.int64)))
    records = files.flat_map(
        lambda shard, offset: tf.data.TFRecordDataset(shard).enumerate().map(
            lambda k, record: (offset + k, record)))
    records = records.filter(
        lambda i, record: tf.gather(position_of, i) >= 0)
    examples = records.map(
        lambda i, record: (_parse_example(record)[0],
                           tf.gather(labels, tf.gather(position_of, i))),
        num_parallel_calls=tf.data.AUTOTUNE)
    examples = examples.shuffle(self.shuffle_buffer, seed=seed,
                                reshuffle_each_iteration=False).repeat()
    shape = self.shape[1:]
    convert = ((lambda image: tf.ensure_shape(image, shape)) if self.exact
               else (lambda image: conform_tensor(image, shape)))
    return examples.map(lambda encoded, label: (convert(_decode(encoded)),
                                                label),
                        num_parallel_calls=tf.data.AUTOTUNE)

  def __getitem__(self, key):
    positions = np.arange(len(self))[key]
    if np.ndim(positions) == 0:
      return self[np.array([positions])][0]
    if self.listing.shards is not None and np.any(np.diff(positions) < 0):
      raise ValueError("streamed TFRecord images are read in order only")
    images = list(self.epoch(positions).as_numpy_iterator())
    return np.stack(images) if images else np.zeros((0, *self.shape[1:]),
                                                    np.uint8)

  def __array__(self, dtype=None, copy=None):
    del copy
    array = self[:]
    return array if dtype is None else array.astype(dtype)

  def update_digest(self, digest):
    """Adds the images to a hashlib digest as `data.fingerprint` hashes an
    array, one image at a time (bounded memory)."""
    digest.update(f"{self.dtype.str}{self.shape}".encode())
    for image in self.epoch(np.arange(len(self))).as_numpy_iterator():
      digest.update(np.ascontiguousarray(image).data)


# ----------------------------------------------------------------------------
# Whole data sets.


def held_out(count, fraction):
  """(train indices, test indices) of `count` examples, the test split the
  `fraction` chosen by `TEST_SPLIT_SEED`, each in ascending order.

  Raises:
    errors.DataError: Too few examples for both splits.
  """
  num_test = int(round(count * fraction))
  if num_test < 1 or num_test >= count:
    raise errors.DataError(
        f"--test_fraction={fraction}: of {count} images that leaves "
        f"{num_test} for testing and {count - num_test} for training; both "
        "need at least one (or pass --test_data)")
  order = np.random.default_rng(TEST_SPLIT_SEED).permutation(count)
  return np.sort(order[num_test:]), np.sort(order[:num_test])


class _Read:
  """A source as read: images (list, array, or None when they did not fit
  the cache), labels (or None), listing indices and shapes [N, 3]."""

  def __init__(self, listing, images, labels, indices, shapes):
    self.listing = listing
    self.images = images
    self.labels = labels
    self.indices = indices
    self.shapes = shapes

  def take(self, positions):
    images = self.images
    if isinstance(images, np.ndarray):
      images = images[positions]
    elif images is not None:
      images = [images[i] for i in positions]
    return _Read(self.listing, images,
                 None if self.labels is None else self.labels[positions],
                 self.indices[positions], self.shapes[positions])

  def __len__(self):
    return len(self.indices)


def _read(listing, skip_bad, keep_bytes=None):
  """A `_Read` of a listing: its arrays, or its decoded images."""
  if listing.arrays is not None:
    count = len(listing.arrays)
    return _Read(listing, listing.arrays, listing.labels,
                 np.arange(count, dtype=np.int64),
                 _shapes_of(listing.arrays))
  images, labels, indices, shapes = decode_all(listing, skip_bad, keep_bytes)
  if listing.files is not None:
    # Skipped images are missing from `labels` as from `images`.
    labels = labels if listing.labels is not None else None
  elif (labels < 0).all():
    labels = None
  elif (labels < 0).any():
    raise errors.DataError(f"--data={listing.source}: some examples have a "
                           f"\"{LABEL_KEY}\" and some not")
  return _Read(listing, images, labels, indices, shapes)


def _materialise(part, shape, budget_bytes):
  """A split's images as an array [N, H, W, C], or `StreamedImages` when
  they take more than `budget_bytes`."""
  if part.images is not None:
    return conform(part.images, shape)
  streamed = StreamedImages(part.listing, part.indices, shape,
                            exact=bool((part.shapes == shape).all()))
  if len(part) * int(np.prod(shape)) > budget_bytes:
    return streamed
  return streamed[:]


def _split(images, labels):
  if labels is None:
    labels = np.zeros(len(images), np.int64)
  return data.Split(images=images, labels=labels)


DEFAULT_CACHE_MB = 1024


def load(source, test_source=None, test_fraction=0.1, image_size=None,
         channels=None, skip_bad=False, cache_mb=DEFAULT_CACHE_MB):
  """Loads the user's images as a `data.Dataset`.

  The training images are held in memory when, decoded at their final
  size, they take at most `cache_mb` MiB; otherwise they are streamed:
  the split's images are a `StreamedImages`, decoded from disk each epoch
  by a parallel tf.data pipeline with bounded memory. The test split is
  always held in memory.

  Args:
    source: The --data path (see the module docstring).
    test_source: The --test_data path, or None to hold out `test_fraction`.
    test_fraction: Share of `source` held out as the test split, in (0, 1).
    image_size: (H, W) to bring every image to, or None/() for their own.
    channels: 1 or 3, or None/0 for the data's.
    skip_bad: Leave out (and count) images that cannot be read.
    cache_mb: The memory budget of decoded training images, MiB.

  Returns:
    A `data.Dataset` named after `source`, splits of uint8 images
    [N, H, W, C] and int64 labels [N] (0 for unlabelled data, whose
    class_names are `UNLABELLED`).

  Raises:
    errors.DataError: One line naming the file, line or flag at fault.
  """
  budget = int(cache_mb * 2**20)
  listing = list_source(source)
  if isinstance(listing, tuple):
    if test_source:
      raise errors.DataError(
          f"--test_data={test_source}: {source} has a test split of its own "
          "(x_test)")
    train, test = (_read(part, skip_bad) for part in listing)
    class_names = listing[0].class_names
    if test.labels is not None and test.labels.size:
      count = max(len(class_names or ()), int(test.labels.max()) + 1)
      class_names = tuple(str(i) for i in range(count))
  else:
    read = _read(listing, skip_bad, keep_bytes=budget)
    class_names = listing.class_names
    if read.labels is not None and class_names is None:
      class_names = tuple(str(i) for i in range(int(read.labels.max()) + 1))
    if test_source:
      train = read
      test_listing = list_source(test_source)
      if isinstance(test_listing, tuple):
        test_listing = test_listing[1]
      test = _read(test_listing, skip_bad)
      if (read.labels is None) != (test.labels is None):
        raise errors.DataError(
            f"--test_data={test_source}: "
            f"{'has' if test.labels is not None else 'lacks'} labels but "
            f"--data={source} {'does not' if read.labels is None else 'does'}")
      if test.labels is not None and test_listing.class_names and \
         listing.class_names:
        # Folders name their classes: a test folder may lack some.
        unknown = sorted(set(test_listing.class_names) - set(class_names))
        if unknown:
          raise errors.DataError(
              f"--test_data={test_source}: classes {', '.join(unknown)} are "
              f"not among those of --data={source} ({', '.join(class_names)})")
        index = np.array([class_names.index(name)
                          for name in test_listing.class_names], np.int64)
        test.labels = index[test.labels]
    else:
      train_index, test_index = held_out(len(read), test_fraction)
      train, test = read.take(train_index), read.take(test_index)
  shape = target_shape(np.concatenate([train.shapes, test.shapes]),
                       image_size, channels, f"--data={source}")
  train_images = _materialise(train, shape, budget)
  test_images = _materialise(test, shape, float("inf"))
  class_names = UNLABELLED if train.labels is None else class_names
  name = os.path.basename(os.path.normpath(source)) or source
  logging.info("Loaded %s: %d train, %d test images of %s, %s; training "
               "images %s.", source, len(train_images), len(test_images),
               shape, "unlabelled" if class_names == UNLABELLED else
               f"{len(class_names)} classes",
               "streamed from disk" if isinstance(train_images,
                                                  StreamedImages)
               else "held in memory")
  return data.Dataset(name=name, train=_split(train_images, train.labels),
                      test=_split(test_images, test.labels),
                      class_names=tuple(class_names), source=source)


def load_for(config, data_dir=None):
  """The data set a run's `config` trained on: its --data images (with its
  --test_data, --test_fraction, --image_size, --channels,
  --skip_bad_images and --cache_mb) or its named --dataset."""
  if getattr(config, "data", None):
    return load(config.data, config.test_data, config.test_fraction,
                config.image_size, config.channels, config.skip_bad_images,
                config.cache_mb)
  return data.load(config.dataset, data_dir or config.data_dir)


# ----------------------------------------------------------------------------
# Writing TFRecords.


def _example(encoded, label):
  feature = {IMAGE_KEY: tf.train.Feature(
      bytes_list=tf.train.BytesList(value=[encoded]))}
  if label is not None and label >= 0:
    feature[LABEL_KEY] = tf.train.Feature(
        int64_list=tf.train.Int64List(value=[int(label)]))
  return tf.train.Example(features=tf.train.Features(feature=feature))


def shard_name(prefix, index, count):
  """PREFIX-0000i-of-0000n, the name of shard `index` of `count`."""
  return f"{prefix}-{index:05d}-of-{count:05d}"


def write_tfrecords(source, prefix, num_shards=1, skip_bad=False):
  """Writes the images of `source` as TFRecord shards PREFIX-*-of-*.

  Images from files keep their encoded bytes (decoding gives the same
  pixels); images from arrays are stored as PNG. Example k of the source
  lands in shard floor(k * num_shards / N), so reading the shards in order
  gives the source's order, and a run on the shards is the run on the
  source. Every image is decoded once to check it. PREFIX.json records the
  class names and counts. Each shard is written under a temporary name and
  renamed.

  Args:
    source: A --data path (see the module docstring).
    prefix: Path prefix of the shards.
    num_shards: Number of shards, >= 1 (at most one per image).
    skip_bad: Leave out unreadable images instead of failing.

  Returns:
    The shard paths written.

  Raises:
    errors.DataError: A bad source or image, or bad `num_shards`.
  """
  listing = list_source(source)
  if isinstance(listing, tuple):
    raise errors.DataError(
        f"--data={source}: has a train and a test split (x_train, x_test); "
        "write each to its own .npz or folder first")
  if listing.arrays is not None:
    labels = listing.labels
    encoded = [tf.io.encode_png(image).numpy() for image in listing.arrays]
  else:
    _, labels, indices, _ = decode_all(listing, skip_bad, keep_bytes=0)
    if listing.files is not None:
      encoded = [tf.io.read_file(listing.files[i]).numpy() for i in indices]
      labels = labels if listing.labels is not None else None
    else:
      labels = None if (labels < 0).all() else labels
      wanted = set(indices.tolist())
      encoded = [bytes(image) for i, (image, _) in enumerate(
          tf.data.TFRecordDataset(listing.shards).map(_parse_example)
          .as_numpy_iterator()) if i in wanted]
  count = len(encoded)
  if not 1 <= num_shards <= count:
    raise errors.DataError(f"--shards={num_shards}: must be between 1 and "
                           f"the {count} images")
  directory = os.path.dirname(os.path.abspath(prefix))
  os.makedirs(directory, exist_ok=True)
  paths = []
  for shard in range(num_shards):
    path = shard_name(prefix, shard, num_shards)
    start, stop = shard * count // num_shards, (shard + 1) * count // num_shards
    temporary = f"{path}.tmp-{os.getpid()}"
    with tf.io.TFRecordWriter(temporary) as writer:
      for k in range(start, stop):
        label = None if labels is None else int(labels[k])
        writer.write(_example(encoded[k], label).SerializeToString())
    os.replace(temporary, path)
    paths.append(path)
  info = {"source": source, "images": count, "shards": num_shards,
          "class_names": (list(listing.class_names)
                          if labels is not None and listing.class_names
                          else None)}
  with files.atomic_open(prefix + TFRECORD_INFO_SUFFIX, "w") as f:
    f.write(json.dumps(info, indent=2) + "\n")
  logging.info("Wrote %d images of %s to %d shard(s) %s-*-of-%05d.", count,
               source, num_shards, prefix, num_shards)
  return paths
