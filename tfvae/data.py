"""MNIST-like image data sets: finding, reading, downloading and batching.

Fashion-MNIST and MNIST are small enough to hold in memory, so `load` reads a
whole data set into NumPy arrays and `train_dataset` / `eval_dataset` wrap a
split in a `tf.data.Dataset`. Files are looked for in a fixed list of places
(see `search_paths`); every problem with them is raised as `errors.DataError`,
one line that names the file and what is wrong.
"""
import dataclasses
import gzip
import hashlib
import os
import secrets
import struct
import urllib.error
import urllib.request
import zipfile
import zlib
from typing import NamedTuple

from absl import logging
import numpy as np
import tensorflow as tf

from tfvae import errors
from tfvae import rng

DATASET_NAMES = ("fashion_mnist", "mnist")

CLASS_NAMES = {
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    "mnist": tuple(str(digit) for digit in range(10)),
}

DEFAULT_BASE_URLS = {
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/",
}

# The four files of a data set, in the order `download` fetches them.
FILENAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

# SHA-256 of the gzipped files; a file may have more than one accepted digest.
# Fashion-MNIST: the first digest is the file on the zalando mirror (as recorded
# by TensorFlow Datasets, url_checksums/fashion_mnist.txt), the second Debian's
# copy (package dataset-fashion-mnist). Debian's gzip headers lack the original
# file name (23-24 bytes shorter); the compressed data is the same.
# MNIST: TensorFlow Datasets, url_checksums/mnist.txt, for the cvdf mirror.
SHA256 = {
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": (
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"),
        "train-labels-idx1-ubyte.gz": (
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"),
        "t10k-images-idx3-ubyte.gz": (
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),
        "t10k-labels-idx1-ubyte.gz": (
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"),
    },
    "mnist": {
        "train-images-idx3-ubyte.gz": (
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",),
        "train-labels-idx1-ubyte.gz": (
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",),
        "t10k-images-idx3-ubyte.gz": (
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",),
        "t10k-labels-idx1-ubyte.gz": (
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",),
    },
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

# IDX type byte -> big-endian dtype.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_TYPE_BYTES = {dtype.newbyteorder(">"): code
                   for code, dtype in _IDX_DTYPES.items()}

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


def _check_name(name):
  if name not in DATASET_NAMES:
    raise errors.DataError(
        f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}")


# ----------------------------------------------------------------------------
# IDX files.


def read_idx(path):
  """Reads an IDX file (as used by MNIST), gzipped or not.

  Args:
    path: File name; gzip is detected from its content, not its name.

  Returns:
    A native-endian array in the file's own shape, e.g. uint8 [N, 28, 28] for
    an image file, uint8 [N] for a label file.

  Raises:
    errors.DataError: The file is missing, unreadable, not gzip although
      compressed, or not a well-formed IDX file (bad magic, unknown type,
      truncated or over-long data).
  """
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except OSError as e:
    raise errors.DataError(f"{path}: cannot read: {e.strerror or e}") from None
  if raw[:2] == b"\x1f\x8b" or path.endswith(".gz"):
    try:
      raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
      raise errors.DataError(
          f"{path}: not a valid gzip file ({e}); delete it and fetch it again"
      ) from None
  if len(raw) < 4:
    raise errors.DataError(
        f"{path}: not an IDX file: only {len(raw)} bytes, shorter than the "
        "4-byte magic number")
  magic = struct.unpack(">I", raw[:4])[0]
  zeros, type_byte, ndim = raw[:2], raw[2], raw[3]
  if zeros != b"\x00\x00" or type_byte not in _IDX_DTYPES or ndim == 0:
    raise errors.DataError(
        f"{path}: not an IDX file: bad magic number 0x{magic:08x} (expected "
        "0x00000803 for images or 0x00000801 for labels)")
  header_size = 4 + 4 * ndim
  if len(raw) < header_size:
    raise errors.DataError(
        f"{path}: truncated: header needs {header_size} bytes, found "
        f"{len(raw)}")
  shape = struct.unpack(f">{ndim}I", raw[4:header_size])
  dtype = _IDX_DTYPES[type_byte]
  expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  found = len(raw) - header_size
  if found != expected:
    raise errors.DataError(
        f"{path}: truncated: expected {expected} bytes of data, found {found}"
        if found < expected else
        f"{path}: over-long: expected {expected} bytes of data, found {found}")
  array = np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape)
  # A writable, native-endian copy: callers may modify what they load.
  return array.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path, array):
  """Writes `array` as an IDX file, gzipped if `path` ends in ".gz".

  Args:
    path: File name to (over)write.
    array: Any shape; dtype uint8, int8, int16, int32, float32 or float64.

  Raises:
    ValueError: The dtype has no IDX type code.
  """
  array = np.asarray(array)
  big_endian = array.dtype.newbyteorder(">")
  if big_endian not in _IDX_TYPE_BYTES:
    raise ValueError(f"IDX cannot store dtype {array.dtype}")
  header = struct.pack(">2xBB", _IDX_TYPE_BYTES[big_endian], array.ndim)
  header += struct.pack(f">{array.ndim}I", *array.shape)
  payload = header + np.ascontiguousarray(array, dtype=big_endian).tobytes()
  if path.endswith(".gz"):
    payload = gzip.compress(payload, mtime=0)
  with open(path, "wb") as f:
    f.write(payload)


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
  _check_name(name)
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
  images = read_idx(images_path)
  labels = read_idx(labels_path)
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
  _check_name(name)
  locations = _locations(name, data_dir)
  for base, explicit in _bases(name, data_dir):
    if explicit and not os.path.isdir(base):
      logging.warning("%s data directory %s does not exist; looking further.",
                      name, base)
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


# ----------------------------------------------------------------------------
# Downloading.


def _sha256(path):
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def _accepted_digests(value):
  if isinstance(value, str):
    value = (value,)
  return tuple(v.lower() for v in value)


def download(name, dest_dir, base_url=None, checksums=None, progress=None):
  """Downloads a data set's four gzipped IDX files into `dest_dir`.

  Each file is written to a temporary file in `dest_dir` and renamed to its
  final name only once its SHA-256 matches; a file already there with a
  matching digest is kept and not fetched again.

  Args:
    name: "fashion_mnist" or "mnist".
    dest_dir: Directory to write to; created if needed.
    base_url: URL prefix the file names are appended to; defaults to the
      canonical mirror (`DEFAULT_BASE_URLS`). file:// URLs work.
    checksums: Optional dict file name -> SHA-256 hex digest (or a tuple of
      accepted digests), replacing the built-in table `SHA256[name]`.
    progress: Optional callable(filename, bytes_done, bytes_total); called as
      data arrives. bytes_total is None when the server does not say.

  Returns:
    `dest_dir`.

  Raises:
    errors.DataError: Unknown name, no digest known for a file, a download
      failure, or a digest mismatch (the bad file is not kept).
  """
  _check_name(name)
  table = SHA256[name] if checksums is None else checksums
  base_url = base_url or DEFAULT_BASE_URLS[name]
  if not base_url.endswith("/"):
    base_url += "/"
  unknown = [f for f in FILENAMES if not table.get(f)]
  if unknown:
    raise errors.DataError(
        f"no SHA-256 known for {name} file(s) {', '.join(unknown)}; pass "
        "checksums={filename: sha256} to verify them")
  try:
    os.makedirs(dest_dir, exist_ok=True)
  except OSError as e:
    raise errors.DataError(
        f"{dest_dir}: cannot create directory: {e.strerror or e}") from None
  for filename in FILENAMES:
    accepted = _accepted_digests(table[filename])
    dest = os.path.join(dest_dir, filename)
    if os.path.isfile(dest) and _sha256(dest) in accepted:
      logging.info("%s is already present and verified.", dest)
      continue
    _fetch(base_url + filename, dest, accepted, progress)
  return dest_dir


def _fetch(url, dest, accepted, progress):
  """Downloads `url` to `dest` through a verified temporary file."""
  filename = os.path.basename(dest)
  # Not tempfile.mkstemp: its files are private (0600) whatever the umask.
  tmp_path = os.path.join(os.path.dirname(dest) or ".",
                          f".{filename}.{secrets.token_hex(4)}.part")
  try:
    digest = hashlib.sha256()
    try:
      with open(tmp_path, "xb") as out, urllib.request.urlopen(
          url, timeout=60) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        done = 0
        for chunk in iter(lambda: response.read(1 << 20), b""):
          out.write(chunk)
          digest.update(chunk)
          done += len(chunk)
          if progress is not None:
            progress(filename, done, total)
    except (urllib.error.URLError, OSError, ValueError) as e:
      reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
      raise errors.DataError(f"{url}: download failed: {reason}") from None
    got = digest.hexdigest()
    if got not in accepted:
      raise errors.DataError(
          f"{url}: SHA-256 mismatch for {filename}: expected "
          f"{' or '.join(accepted)}, got {got}; the file was not saved")
    os.replace(tmp_path, dest)
  finally:
    if os.path.exists(tmp_path):
      os.remove(tmp_path)


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

  The order is `rng.epoch_order(seed, epoch, N)`, so it depends on (seed, epoch) only: not on the process, nor on
  `tf.random.set_seed` (which changes what tf.data's own shuffle does).

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
  dataset = tf.data.Dataset.from_tensor_slices({
      "image": split.images[order],
      "label": split.labels[order].astype(np.int64),
  })
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
