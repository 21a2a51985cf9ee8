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
naming it, or, with `skip_bad=True`, left out and counted in the log.

Size and channels: every image is brought to `image_size` (H, W) by
scaling it, keeping its aspect ratio, until it covers H x W (area
averaging when shrinking, bilinear when enlarging) and cutting the centre
H x W out; images already H x W are kept as they are. Without
`image_size`, all images must have the same size (that size is used);
otherwise it is an error that says so. `channels` 1 or 3 converts grey to
colour (the grey repeated) and colour to grey (ITU-R 601 luma); alpha is
dropped. Without `channels`, the data's: 3 if any image is colour, else 1.

The test split is the `test_source`'s images when given (same size and
channels as the training images, its folder's classes must be the same),
or else the `test_fraction` of the examples chosen by the fixed seed
`TEST_SPLIT_SEED`, not by the run's seed: runs with other seeds on the
same data are tested on the same images.
"""
import glob
import json
import os
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
  try:
    if listing.files is not None:
      encoded = tf.io.read_file(listing.files[index])
    else:
      shard, _, k = name.rpartition(" record ")
      record = next(iter(tf.data.TFRecordDataset(shard).skip(int(k))))
      encoded, _ = _parse_example(record)
    _decode(encoded)
  except (tf.errors.OpError, ValueError) as e:
    message = getattr(e, "message", str(e))
    return message.strip().splitlines()[0]
  return "unreadable"


def decode_all(listing, skip_bad=False):
  """Decodes every image of a file or TFRecord listing, in parallel.

  Returns:
    (images, labels, indices): a list of uint8 arrays [h, w, c] in the
    listing's order, int64 labels [N] (-1 where the source has none) and
    the int64 indices [N] in the listing of the images returned, the bad
    images left out when `skip_bad`.

  Raises:
    errors.DataError: An image could not be read or decoded (and not
      `skip_bad`), naming its file; a TFRecord shard is damaged.
  """
  dataset = encoded_dataset(listing).map(
      lambda i, encoded, y: (i, _decode(encoded), y),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  dataset = dataset.ignore_errors()
  indices, images, labels = [], [], []
  try:
    for i, image, y in dataset.as_numpy_iterator():
      indices.append(int(i))
      images.append(image)
      labels.append(int(y))
  except tf.errors.OpError as e:
    raise errors.DataError(
        f"--data={listing.source}: damaged TFRecord data: "
        f"{e.message.strip().splitlines()[0]}") from None
  total = len(listing.files) if listing.files is not None else None
  if total is None:
    total = sum(1 for _ in tf.data.TFRecordDataset(listing.shards))
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
  if not images:
    raise errors.DataError(f"--data={listing.source}: holds no readable "
                           "images")
  return images, np.asarray(labels, np.int64), np.asarray(indices, np.int64)


# ----------------------------------------------------------------------------
# Size and channels.


def drop_alpha(image):
  """uint8 [h, w, c] without an alpha channel (c = 2 or 4)."""
  if image.shape[-1] in (2, 4):
    return image[..., :-1]
  return image


def convert_channels(image, channels):
  """uint8 [h, w, 1 or 3] as [h, w, `channels`] (see the module docstring)."""
  have = image.shape[-1]
  if have == channels:
    return image
  if channels == 3:
    return np.repeat(image, 3, axis=-1)
  luma = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
  return np.round(luma)[..., np.newaxis].astype(np.uint8)


def fit_size(image, size):
  """uint8 [h, w, c] scaled to cover `size` (H, W) and centre-cropped to it.

  Returns:
    uint8 [H, W, c]; the image itself when it is H x W already.
  """
  height, width = image.shape[:2]
  target_h, target_w = size
  if (height, width) == (target_h, target_w):
    return image
  scale = max(target_h / height, target_w / width)
  new_h = max(target_h, round(height * scale))
  new_w = max(target_w, round(width * scale))
  method = "area" if scale < 1 else "bilinear"
  resized = tf.image.resize(image, (new_h, new_w), method=method,
                            antialias=scale < 1).numpy()
  top, left = (new_h - target_h) // 2, (new_w - target_w) // 2
  resized = resized[top:top + target_h, left:left + target_w]
  return np.clip(np.round(resized), 0, 255).astype(np.uint8)


def target_shape(parts, image_size=None, channels=None, where="--data"):
  """The (H, W, C) images are brought to (see the module docstring).

  Args:
    parts: Sequences of images (the splits), each a list of uint8 arrays
      [h, w, c] or one array [N, h, w, c].
    image_size: (H, W), or None/() for the images' own size.
    channels: 1 or 3, or None/0 for the images'.
    where: The source, for errors.

  Raises:
    errors.DataError: Images of several sizes and no `image_size`.
  """
  sizes, depths = set(), set()
  for images in parts:
    if isinstance(images, np.ndarray):
      sizes.add(tuple(images.shape[1:3]))
      depths.add(images.shape[3])
    else:
      sizes.update(tuple(image.shape[:2]) for image in images)
      depths.update(image.shape[-1] for image in images)
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


def conform(images, shape):
  """uint8 images (a list of [h, w, c] or one array [N, h, w, c]) as one
  array [N, H, W, C] of `shape` (H, W, C)."""
  if isinstance(images, np.ndarray) and images.shape[1:] == tuple(shape):
    return images
  out = np.empty((len(images), *shape), np.uint8)
  for i, image in enumerate(images):
    image = convert_channels(drop_alpha(image), shape[2])
    out[i] = fit_size(image, shape[:2])
  return out


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


def _read(listing, skip_bad):
  """(images, labels or None) of a listing: arrays or decoded images."""
  if listing.arrays is not None:
    return listing.arrays, listing.labels
  images, labels, _ = decode_all(listing, skip_bad)
  if listing.files is not None:
    # Skipped images are missing from `labels` as from `images`.
    return images, (labels if listing.labels is not None else None)
  if (labels < 0).all():
    return images, None
  if (labels < 0).any():
    raise errors.DataError(f"--data={listing.source}: some examples have a "
                           f"\"{LABEL_KEY}\" and some not")
  return images, labels


def _split(images, labels):
  if labels is None:
    labels = np.zeros(len(images), np.int64)
  return data.Split(images=images, labels=labels)


def load(source, test_source=None, test_fraction=0.1, image_size=None,
         channels=None, skip_bad=False):
  """Loads the user's images into memory as a `data.Dataset`.

  Args:
    source: The --data path (see the module docstring).
    test_source: The --test_data path, or None to hold out `test_fraction`.
    test_fraction: Share of `source` held out as the test split, in (0, 1).
    image_size: (H, W) to bring every image to, or None/() for their own.
    channels: 1 or 3, or None/0 for the data's.
    skip_bad: Leave out (and count) images that cannot be read.

  Returns:
    A `data.Dataset` named after `source`, splits of uint8 images
    [N, H, W, C] and int64 labels [N] (0 for unlabelled data, whose
    class_names are `UNLABELLED`).

  Raises:
    errors.DataError: One line naming the file, line or flag at fault.
  """
  listing = list_source(source)
  if isinstance(listing, tuple):
    if test_source:
      raise errors.DataError(
          f"--test_data={test_source}: {source} has a test split of its own "
          "(x_test)")
    (train, train_labels), (test, test_labels) = (_read(part, skip_bad)
                                                  for part in listing)
    class_names = listing[0].class_names
    if test_labels is not None and test_labels.size:
      count = max(len(class_names or ()), int(test_labels.max()) + 1)
      class_names = tuple(str(i) for i in range(count))
  else:
    images, labels = _read(listing, skip_bad)
    class_names = listing.class_names
    if labels is not None and class_names is None:
      class_names = tuple(str(i) for i in range(int(labels.max()) + 1))
    if test_source:
      train, train_labels = images, labels
      test_listing = list_source(test_source)
      if isinstance(test_listing, tuple):
        test_listing = test_listing[1]
      test, test_labels = _read(test_listing, skip_bad)
      if (labels is None) != (test_labels is None):
        raise errors.DataError(
            f"--test_data={test_source}: "
            f"{'has' if test_labels is not None else 'lacks'} labels but "
            f"--data={source} {'does not' if labels is None else 'does'}")
      if test_labels is not None and test_listing.class_names and \
         listing.class_names:
        # Folders name their classes: a test folder may lack some.
        unknown = sorted(set(test_listing.class_names) - set(class_names))
        if unknown:
          raise errors.DataError(
              f"--test_data={test_source}: classes {', '.join(unknown)} are "
              f"not among those of --data={source} ({', '.join(class_names)})")
        index = np.array([class_names.index(name)
                          for name in test_listing.class_names], np.int64)
        test_labels = index[test_labels]
    else:
      train_index, test_index = held_out(len(images), test_fraction)
      if isinstance(images, np.ndarray):
        train, test = images[train_index], images[test_index]
      else:
        train = [images[i] for i in train_index]
        test = [images[i] for i in test_index]
      train_labels = None if labels is None else labels[train_index]
      test_labels = None if labels is None else labels[test_index]
  shape = target_shape((train, test), image_size, channels,
                       f"--data={source}")
  train, test = conform(train, shape), conform(test, shape)
  if train_labels is None:
    class_names = UNLABELLED
  name = os.path.basename(os.path.normpath(source)) or source
  logging.info("Loaded %s: %d train, %d test images of %s, %s.", source,
               len(train), len(test), shape,
               "unlabelled" if class_names == UNLABELLED else
               f"{len(class_names)} classes")
  return data.Dataset(name=name, train=_split(train, train_labels),
                      test=_split(test, test_labels),
                      class_names=tuple(class_names), source=source)


def load_for(config, data_dir=None):
  """The data set a run's `config` trained on: its --data images (with its
  --test_data, --test_fraction, --image_size, --channels and
  --skip_bad_images) or its named --dataset."""
  if getattr(config, "data", None):
    return load(config.data, config.test_data, config.test_fraction,
                config.image_size, config.channels, config.skip_bad_images)
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
    _, labels, indices = decode_all(listing, skip_bad)
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
