"""Fetching a data set's IDX files, each verified by its SHA-256.

`download` writes each file through a temporary file that is renamed into
place only once its digest matches a known one, so a failed or tampered
download never leaves a file that `data.load` would read.
"""
import hashlib
import os
import secrets
import urllib.error
import urllib.request

from absl import logging

from tfvae import data
from tfvae import errors

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
  data.check_name(name)
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
