"""MNIST-like image data sets: their names, where their files are, loading.

Fashion-MNIST and MNIST are small enough to hold in memory, so `load` reads a
whole data set into NumPy arrays (a `Dataset` of two `Split`s); the input
pipeline (`input_pipeline`) batches them and `download` fetches them. Files
are looked for in a fixed list of places (see `search_paths`); every problem
with them is raised as `errors.DataError`, one line that names the file and
what is wrong.
"""
import dataclasses
import hashlib
import os
import zipfile
import zlib
from typing import NamedTuple

from absl import logging
import numpy as np

from tfvae import errors
from tfvae import idx

DATASET_NAMES = ("fashion_mnist", "mnist")

CLASS_NAMES = {
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    "mnist": tuple(str(digit) for digit in range(10)),
}

DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

# Subdirectory of ~/.keras/datasets where Keras (and `download` by default)
# keeps each data set's IDX files.
KERAS_SUBDIRS = {"fashion_mnist": "fashion-mnist", "mnist": "mnist"}

_NPZ_NAMES = {
    "fashion_mnist": ("fashion_mnist.npz", "fashion-mnist.npz"),
    "mnist": ("mnist.npz",),
}

# Role -> IDX file name stems; each may end in ".gz".
_IDX_STEMS = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}

_NUM_CLASSES = 10
_SPLIT_NAMES = ("train", "test")


class Split(NamedTuple):
  """One split of a data set, held in memory.

  Attributes:
    images: uint8 [N, H, W, C] pixel intensities 0..255 (C = 1 for MNIST).
    labels: int64 [N] class indices 0..9.
  """
  images: np.ndarray
  labels: np.ndarray


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A loaded data set.

  Attributes:
    name: One of `DATASET_NAMES`.
    train: The training split.
    test: The test split.
    class_names: The 10 human-readable class names, indexed by label.
    source: The directory or file the data was loaded from.
  """
  name: str
  train: Split
  test: Split
  class_names: tuple
  source: str

  @property
  def image_shape(self):
    """The shape (H, W, C) of one image."""
    return tuple(self.train.images.shape[1:])

  def split(self, name):
    """Returns the split called `name` ("train" or "test").

    Raises:
      errors.DataError: `name` is not a split.
    """
    if name not in _SPLIT_NAMES:
      raise errors.DataError(
          f"{self.name} has no split {name!r}; valid splits: "
          f"{', '.join(_SPLIT_NAMES)}")
    return getattr(self, name)


def fingerprint(dataset):
  """The SHA-256 (hex) of a data set's arrays, as tfvae read them.

  It names the data, not its files: the same images and labels give the
  same fingerprint from IDX files, their .gz or an .npz.
  """
  digest = hashlib.sha256()
  for split in (dataset.train, dataset.test):
    for array in split:
      if hasattr(array, "update_digest"):  # images streamed from disk
        array.update_digest(digest)
        continue
      array = np.ascontiguousarray(array)
      digest.update(f"{array.dtype.str}{array.shape}".encode())
      digest.update(array.data)
  return digest.hexdigest()


def check_name(name):
  """Raises errors.DataError unless `name` is one of `DATASET_NAMES`."""
  if name not in DATASET_NAMES:
    raise errors.DataError(
        f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}")


# ----------------------------------------------------------------------------
# Finding and loading.


def _bases(name, data_dir):
  """Returns [(base directory, is_explicit)] in search order."""
  bases = []
  if data_dir:
    bases.append((os.path.expanduser(data_dir), True))
  env_dir = os.environ.get("TFVAE_DATA_DIR")
  if env_dir:
    bases.append((os.path.expanduser(env_dir), True))
  bases.append((os.path.join(os.path.expanduser("~"), ".keras", "datasets"),
                False))
  return bases


def _locations(name, data_dir):
  """Returns [(directory, is_explicit)] in search order, without repeats."""
  subdirs = [name, KERAS_SUBDIRS[name]]
  locations = []
  for base, explicit in _bases(name, data_dir):
    locations.append((base, explicit))
    locations.extend((os.path.join(base, sub), explicit) for sub in subdirs)
  if name == "fashion_mnist":
    locations.append((DEBIAN_FASHION_MNIST_DIR, False))
  seen = set()
  unique = []
  for directory, explicit in locations:
    key = os.path.normpath(directory)
    if key not in seen:
      seen.add(key)
      unique.append((directory, explicit))
  return unique


def search_paths(name, data_dir=None):
  """Returns the directories `load` looks in, in order.

  These are `data_dir` (if given), $TFVAE_DATA_DIR (if set) and
  ~/.keras/datasets, each followed by its subdirectories `<name>/` and (for
  Fashion-MNIST) `fashion-mnist/`, then, for Fashion-MNIST, Debian's
  /usr/share/datasets/fashion-mnist.

  Args:
    name: One of `DATASET_NAMES`.
    data_dir: Optional directory to look in first.

  Raises:
    errors.DataError: Unknown `name`.
  """
  check_name(name)
  return [directory for directory, _ in _locations(name, data_dir)]


def _find_files(directory, name):
  """Looks for a data set's files in one directory.

  Returns:
    ("npz", path), ("idx", {role: path}) for a complete set, ("partial",
    [missing file names]) when only some IDX files are there, or (None, None).
  """
  if not os.path.isdir(directory):
    return None, None
  for npz_name in _NPZ_NAMES[name]:
    path = os.path.join(directory, npz_name)
    if os.path.isfile(path):
      return "npz", path
  found, missing = {}, []
  for role, stems in _IDX_STEMS.items():
    for stem in stems:
      for candidate in (stem, stem + ".gz"):
        path = os.path.join(directory, candidate)
        if role not in found and os.path.isfile(path):
          found[role] = path
    if role not in found:
      missing.append(stems[0] + "[.gz]")
  if not found:
    return None, None
  if missing:
    return "partial", missing
  return "idx", found


def _idx_split(images_path, labels_path):
  images = idx.read_idx(images_path)
  labels = idx.read_idx(labels_path)
  if images.ndim != 3 or images.dtype != np.uint8:
    raise errors.DataError(
        f"{images_path}: not an IDX image file: expected uint8 images "
        f"[N, H, W] (magic 0x00000803), found {images.dtype} "
        f"{list(images.shape)}")
  if labels.ndim != 1:
    raise errors.DataError(
        f"{labels_path}: not an IDX label file: expected labels [N] "
        f"(magic 0x00000801), found shape {list(labels.shape)}")
  return _make_split(images[..., np.newaxis], labels, images_path, labels_path)


def _make_split(images, labels, images_source, labels_source):
  """Validates and converts one split; sources name the files in errors."""
  if images.shape[0] != labels.shape[0]:
    raise errors.DataError(
        f"{images_source} has {images.shape[0]} images but {labels_source} "
        f"has {labels.shape[0]} labels")
  if labels.size and (labels.min() < 0 or labels.max() >= _NUM_CLASSES):
    raise errors.DataError(
        f"{labels_source}: labels must be in 0..{_NUM_CLASSES - 1}, found "
        f"values in {labels.min()}..{labels.max()}")
  return Split(images=np.asarray(images, np.uint8),
               labels=np.asarray(labels).astype(np.int64))


def _npz_splits(path):
  try:
    with np.load(path, allow_pickle=False) as npz:
      missing = [key for key in ("x_train", "y_train", "x_test", "y_test")
                 if key not in npz.files]
      if missing:
        raise errors.DataError(
            f"{path}: missing array(s) {', '.join(missing)} (expected x_train, "
            "y_train, x_test, y_test)")
      arrays = {key: npz[key] for key in npz.files}
  except errors.DataError:
    raise
  except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
    raise errors.DataError(f"{path}: not a readable .npz file ({e})") from None
  splits = []
  for prefix in ("train", "test"):
    images, labels = arrays["x_" + prefix], arrays["y_" + prefix]
    if images.ndim == 3:
      images = images[..., np.newaxis]
    if images.ndim != 4 or images.dtype != np.uint8:
      raise errors.DataError(
          f"{path}: x_{prefix} must be uint8 [N, H, W] or [N, H, W, C], found "
          f"{images.dtype} {list(images.shape)}")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
      raise errors.DataError(
          f"{path}: y_{prefix} must be integer [N], found {labels.dtype} "
          f"{list(labels.shape)}")
    splits.append(_make_split(images, labels, f"{path}:x_{prefix}",
                              f"{path}:y_{prefix}"))
  return splits


def _how_to_get(name):
  if name == "fashion_mnist":
    return ("install it with `apt-get install dataset-fashion-mnist` (Debian) "
            "or `tfvae-download-data --dataset=fashion_mnist`, or pass "
            "--data_dir / set $TFVAE_DATA_DIR to a directory holding it")
  return ("get it with `tfvae-download-data --dataset=mnist` or put mnist.npz "
          "in ~/.keras/datasets, or pass --data_dir / set $TFVAE_DATA_DIR to a "
          "directory holding it")


def load(name, data_dir=None):
  """Loads a whole data set into memory.

  Looks in `search_paths(name, data_dir)` in order; the first directory with a
  complete set of files wins. A complete set is either the four IDX files
  (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
  t10k-labels-idx1-ubyte, each optionally ".gz", also spelt
  "train-images.idx3-ubyte") or Keras's npz cache (mnist.npz; for
  Fashion-MNIST fashion_mnist.npz) with arrays x_train, y_train, x_test,
  y_test.

  Args:
    name: "fashion_mnist" or "mnist".
    data_dir: Optional directory to look in first (also its subdirectories
      `<name>/` and, for Fashion-MNIST, `fashion-mnist/`).

  Returns:
    A `Dataset` whose splits hold uint8 images [N, H, W, 1] and int64 labels
    [N]; for the real data sets H = W = 28, N = 60000 (train), 10000 (test).

  Raises:
    errors.DataError: Unknown name; no complete set of files anywhere; some
      but not all files in `data_dir` or $TFVAE_DATA_DIR; malformed files.
  """
  check_name(name)
  # A directory the user named is where they mean the data to come from:
  # looking elsewhere would train on data they did not ask for.
  locations = _locations(name, data_dir)
  for named, given in (("--data_dir", data_dir),
                       ("$TFVAE_DATA_DIR", os.environ.get("TFVAE_DATA_DIR"))):
    if given and not os.path.isdir(os.path.expanduser(given)):
      raise errors.DataError(
          f"{named}={given}: no such directory ({name} data is looked for "
          f"in {', '.join(d for d, _ in locations)}); {_how_to_get(name)}")
  incomplete = []
  for directory, explicit in locations:
    kind, found = _find_files(directory, name)
    if kind == "partial":
      if explicit:
        raise errors.DataError(
            f"{directory}: incomplete {name} data: missing "
            f"{', '.join(found)}")
      incomplete.append(f"{directory} (missing {', '.join(found)})")
      continue
    if kind is None:
      continue
    if kind == "npz":
      train, test = _npz_splits(found)
      source = found
    else:
      train = _idx_split(found["train_images"], found["train_labels"])
      test = _idx_split(found["test_images"], found["test_labels"])
      source = directory
    if train.images.shape[1:] != test.images.shape[1:]:
      raise errors.DataError(
          f"{source}: train images are {list(train.images.shape[1:])} but test "
          f"images are {list(test.images.shape[1:])}")
    logging.info("Loaded %s from %s: %d train, %d test images of %s.", name,
                 source, len(train.labels), len(test.labels),
                 train.images.shape[1:])
    return Dataset(name=name, train=train, test=test,
                   class_names=CLASS_NAMES[name], source=source)
  skipped = ""
  if incomplete:
    skipped = f"; incomplete, skipped: {'; '.join(incomplete)}"
  raise errors.DataError(
      f"{name} data not found; looked in: "
      f"{', '.join(d for d, _ in locations)}{skipped}; {_how_to_get(name)}")
