"""IDX files, the format of the MNIST distributions: reading and writing.

An IDX file is a big-endian header (two zero bytes, a type byte, the number
of dimensions, then each dimension as a uint32) followed by the array's
bytes. MNIST and Fashion-MNIST ship images as uint8 [N, 28, 28] and labels
as uint8 [N], gzipped.
"""
import gzip
import struct
import zlib

import numpy as np

from tfvae import errors

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
