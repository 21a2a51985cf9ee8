"""Tests for tfvae.data and tools/download_data.py."""
import gzip
import hashlib
import os
import re
import subprocess
import sys
import tempfile
from unittest import mock

from absl import flags
from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tfvae import data
from tfvae import download
from tfvae import errors
from tfvae import idx
from tfvae import input_pipeline

# Under pytest nobody parses absl flags, which get_temp_dir() needs.
if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_HAVE_DEBIAN_FASHION_MNIST = os.path.isdir(data.DEBIAN_FASHION_MNIST_DIR)


def _arrays(num, height=28, width=28, seed=0):
  """Random uint8 images [num, height, width] and uint8 labels [num]."""
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, size=(num, height, width), dtype=np.uint8)
  labels = rng.integers(0, 10, size=(num,), dtype=np.uint8)
  return images, labels


def _write_set(directory, num_train=20, num_test=8, height=28, width=28,
               gz=True, dotted=False, seed=0):
  """Writes four IDX files; returns ((train images, labels), (test ...))."""
  os.makedirs(directory, exist_ok=True)
  train = _arrays(num_train, height, width, seed)
  test = _arrays(num_test, height, width, seed + 1)
  suffix = ".gz" if gz else ""
  for prefix, (images, labels) in (("train", train), ("t10k", test)):
    sep = "." if dotted else "-"
    idx.write_idx(os.path.join(directory, f"{prefix}-images{sep}idx3-ubyte"
                                f"{suffix}"), images)
    idx.write_idx(os.path.join(directory, f"{prefix}-labels{sep}idx1-ubyte"
                                f"{suffix}"), labels)
  return train, test


def _clean_env(home):
  """Environment with an empty HOME and no $TFVAE_DATA_DIR."""
  env = {k: v for k, v in os.environ.items() if k != "TFVAE_DATA_DIR"}
  env["HOME"] = home
  return env


def _split(num, seed=0):
  images, labels = _arrays(num, 4, 3, seed)
  return data.Split(images[..., np.newaxis], np.arange(num, dtype=np.int64))


def _labels(dataset):
  return np.concatenate([np.zeros([0], np.int64)] +
                        [b["label"].numpy() for b in dataset])


class IdxTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.product(gz=[False, True], shape=[(20, 28, 28), (8, 8, 6)],
                         dtype=[np.uint8, np.int32, np.float32])
  def test_round_trip(self, gz, shape, dtype):
    array = np.random.default_rng(0).integers(0, 200, size=shape).astype(dtype)
    path = os.path.join(self.get_temp_dir(), "x-idx3-ubyte" + (".gz" if gz
                                                               else ""))
    idx.write_idx(path, array)
    got = idx.read_idx(path)
    self.assertEqual(got.dtype, array.dtype)
    self.assertAllEqual(got, array)
    with open(path, "rb") as f:
      self.assertEqual(f.read(2) == b"\x1f\x8b", gz)

  def test_labels_keep_raw_shape(self):
    path = os.path.join(self.get_temp_dir(), "labels")
    idx.write_idx(path, np.arange(7, dtype=np.uint8))
    self.assertEqual(idx.read_idx(path).shape, (7,))

  def test_header_is_standard(self):
    path = os.path.join(self.get_temp_dir(), "images")
    idx.write_idx(path, np.zeros([2, 3, 4], np.uint8))
    with open(path, "rb") as f:
      self.assertEqual(f.read(16), bytes.fromhex(
          "00000803" "00000002" "00000003" "00000004"))


class LoadTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.home = self.create_tempdir().full_path
    self.enter_context(mock.patch.dict(os.environ, _clean_env(self.home),
                                       clear=True))
    self.enter_context(mock.patch.object(
        data, "DEBIAN_FASHION_MNIST_DIR",
        os.path.join(self.home, "no-debian")))

  @parameterized.named_parameters(
      ("gz", dict(gz=True)),
      ("plain", dict(gz=False)),
      ("dotted", dict(dotted=True)),
      ("small_images", dict(height=8, width=6)),
  )
  def test_load_idx_directory(self, kwargs):
    directory = self.create_tempdir().full_path
    (x_train, y_train), (x_test, y_test) = _write_set(directory, **kwargs)
    dataset = data.load("fashion_mnist", data_dir=directory)
    self.assertEqual(dataset.name, "fashion_mnist")
    self.assertEqual(dataset.source, directory)
    self.assertEqual(dataset.image_shape, x_train.shape[1:] + (1,))
    self.assertEqual(dataset.train.images.dtype, np.uint8)
    self.assertEqual(dataset.train.labels.dtype, np.int64)
    self.assertAllEqual(dataset.train.images[..., 0], x_train)
    self.assertAllEqual(dataset.train.labels, y_train)
    self.assertAllEqual(dataset.test.images[..., 0], x_test)
    self.assertAllEqual(dataset.split("test").labels, y_test)
    self.assertLen(dataset.class_names, 10)
    self.assertEqual(dataset.class_names[9], "Ankle boot")

  def test_load_npz(self):
    directory = self.create_tempdir().full_path
    (x_train, y_train), (x_test, y_test) = _arrays(12), _arrays(5, seed=3)
    path = os.path.join(directory, "mnist.npz")
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test,
             y_test=y_test)
    dataset = data.load("mnist", data_dir=directory)
    self.assertEqual(dataset.source, path)
    self.assertEqual(dataset.train.images.shape, (12, 28, 28, 1))
    self.assertAllEqual(dataset.train.images[..., 0], x_train)
    self.assertAllEqual(dataset.test.labels, y_test)
    self.assertEqual(dataset.class_names, tuple("0123456789"))

  def test_load_from_subdirectory(self):
    directory = self.create_tempdir().full_path
    _write_set(os.path.join(directory, "fashion-mnist"), num_train=11)
    dataset = data.load("fashion_mnist", data_dir=directory)
    self.assertEqual(dataset.source, os.path.join(directory, "fashion-mnist"))
    self.assertLen(dataset.train.labels, 11)

  def test_data_dir_beats_env_and_env_beats_keras_cache(self):
    explicit = self.create_tempdir().full_path
    from_env = self.create_tempdir().full_path
    keras_dir = os.path.join(self.home, ".keras", "datasets", "fashion-mnist")
    _write_set(explicit, num_train=11)
    _write_set(from_env, num_train=12)
    _write_set(keras_dir, num_train=13)
    self.assertLen(data.load("fashion_mnist").train.labels, 13)
    with mock.patch.dict(os.environ, {"TFVAE_DATA_DIR": from_env}):
      self.assertLen(data.load("fashion_mnist").train.labels, 12)
      dataset = data.load("fashion_mnist", data_dir=explicit)
      self.assertLen(dataset.train.labels, 11)
      self.assertEqual(dataset.source, explicit)

  def test_empty_data_dir_falls_through(self):
    keras_dir = os.path.join(self.home, ".keras", "datasets", "fashion-mnist")
    _write_set(keras_dir, num_train=13)
    dataset = data.load("fashion_mnist",
                        data_dir=self.create_tempdir().full_path)
    self.assertEqual(dataset.source, keras_dir)

  def test_search_paths_order(self):
    keras = os.path.join(self.home, ".keras", "datasets")
    with mock.patch.dict(os.environ, {"TFVAE_DATA_DIR": "/env"}):
      paths = data.search_paths("fashion_mnist", data_dir="/mine")
    self.assertEqual(paths, [
        "/mine", "/mine/fashion_mnist", "/mine/fashion-mnist",
        "/env", "/env/fashion_mnist", "/env/fashion-mnist",
        keras, keras + "/fashion_mnist", keras + "/fashion-mnist",
        data.DEBIAN_FASHION_MNIST_DIR])
    self.assertEqual(data.search_paths("mnist"), [keras, keras + "/mnist"])

  @parameterized.parameters(
      ("fashion_mnist", "apt-get install dataset-fashion-mnist"),
      ("mnist", "tfvae-download-data --dataset=mnist"),
  )
  def test_missing_data_names_every_place(self, name, hint):
    with mock.patch.dict(os.environ, {"TFVAE_DATA_DIR": "/env/dir"}):
      places = data.search_paths(name, data_dir="/my/dir")
      with self.assertRaises(errors.DataError) as caught:
        data.load(name, data_dir="/my/dir")
    message = str(caught.exception)
    self.assertNotIn("\n", message)
    self.assertIn(name, message)
    self.assertIn(hint, message)
    self.assertIn(f"--dataset={name}", message)
    for place in places:
      self.assertIn(place, message)

  def test_incomplete_data_dir_names_missing_files(self):
    directory = self.create_tempdir().full_path
    _write_set(directory)
    os.remove(os.path.join(directory, "t10k-labels-idx1-ubyte.gz"))
    with self.assertRaisesRegex(errors.DataError,
                                f"{re.escape(directory)}.*t10k-labels"):
      data.load("fashion_mnist", data_dir=directory)

  def test_incomplete_default_location_reported(self):
    keras_dir = os.path.join(self.home, ".keras", "datasets", "mnist")
    _write_set(keras_dir)
    os.remove(os.path.join(keras_dir, "train-images-idx3-ubyte.gz"))
    with self.assertRaisesRegex(
        errors.DataError,
        f"not found.*incomplete.*{re.escape(keras_dir)}.*train-images"):
      data.load("mnist")

  @parameterized.named_parameters(
      ("truncated", "train-images-idx3-ubyte", "truncated: expected"),
      ("over_long", "train-images-idx3-ubyte", "over-long"),
      ("bad_magic", "t10k-images-idx3-ubyte", "bad magic number"),
      ("corrupt_gzip", "train-labels-idx1-ubyte.gz", "not a valid gzip"),
      ("count_mismatch", "t10k-labels-idx1-ubyte", "has 8 images but"),
      ("label_range", "train-labels-idx1-ubyte", r"labels must be in 0\.\.9"),
      ("labels_as_images", "train-images-idx3-ubyte", "not an IDX image file"),
  )
  def test_malformed_file_names_file(self, filename, pattern):
    directory = self.create_tempdir().full_path
    _write_set(directory, gz=filename.endswith(".gz"))
    path = os.path.join(directory, filename)
    with open(path, "rb") as f:
      raw = f.read()
    test_name = self._testMethodName
    if "truncated" in test_name:
      raw = raw[:-5]
    elif "over_long" in test_name:
      raw += b"\0"
    elif "bad_magic" in test_name:
      raw = b"\x12\x34" + raw[2:]
    elif "corrupt_gzip" in test_name:
      raw = raw[:10] + b"garbage" * 5
    elif "count_mismatch" in test_name:
      idx.write_idx(path, np.zeros([7], np.uint8))
    elif "label_range" in test_name:
      idx.write_idx(path, np.full([20], 10, np.uint8))
    elif "labels_as_images" in test_name:
      idx.write_idx(path, np.zeros([20], np.uint8))
    if not any(k in test_name for k in ("count", "range", "as_images")):
      with open(path, "wb") as f:
        f.write(raw)
    with self.assertRaises(errors.DataError) as caught:
      data.load("fashion_mnist", data_dir=directory)
    message = str(caught.exception)
    self.assertIn(path, message)
    self.assertRegex(message, pattern)
    self.assertNotIn("\n", message)

  def test_truncated_message_counts_bytes(self):
    path = os.path.join(self.get_temp_dir(), "t-idx1-ubyte")
    idx.write_idx(path, np.zeros([10], np.uint8))
    with open(path, "r+b") as f:
      f.truncate(8 + 6)
    with self.assertRaisesRegex(
        errors.DataError,
        f"^{re.escape(path)}: truncated: expected 10 bytes of data, found 6$"):
      idx.read_idx(path)

  def test_unknown_names(self):
    with self.assertRaisesRegex(errors.DataError, "fashion_mnist, mnist"):
      data.load("cifar10")
    directory = self.create_tempdir().full_path
    _write_set(directory)
    dataset = data.load("fashion_mnist", data_dir=directory)
    with self.assertRaisesRegex(errors.DataError, "train, test"):
      dataset.split("valid")


class PixelTest(tf.test.TestCase):

  def test_scale(self):
    images = np.array([[0, 51, 255]], np.uint8)
    for value in (images, tf.constant(images)):
      scaled = input_pipeline.scale(value)
      self.assertEqual(scaled.dtype, tf.float32)
      self.assertAllClose(scaled, [[0.0, 0.2, 1.0]])

  def test_static_binarize(self):
    images = np.random.default_rng(1).integers(0, 256, size=(200, 28, 28, 1),
                                               dtype=np.uint8)
    first = input_pipeline.static_binarize(images, seed=7)
    self.assertEqual(first.dtype, np.uint8)
    self.assertEqual(first.shape, images.shape)
    self.assertAllEqual(first, input_pipeline.static_binarize(images, seed=7))
    self.assertNotAllEqual(first,
                           input_pipeline.static_binarize(images, seed=8))
    self.assertSetEqual(set(np.unique(first)), {0, 255})
    self.assertAllClose(first.mean() / 255, images.mean() / 255, atol=0.01)
    extremes = np.array([0, 255] * 500, np.uint8)
    self.assertAllEqual(input_pipeline.static_binarize(extremes, seed=0),
                        extremes)

  def test_binarize(self):
    x = tf.random.stateless_uniform([100, 28, 28, 1], seed=[1, 2])
    noise = tf.random.stateless_uniform([100, 28, 28, 1], seed=[3, 4])
    binary = input_pipeline.binarize(x, noise)
    self.assertEqual(binary.dtype, tf.float32)
    self.assertAllInSet(binary, [0.0, 1.0])
    self.assertAllEqual(binary, tf.cast(noise < x, tf.float32))
    self.assertAllClose(tf.reduce_mean(binary), tf.reduce_mean(x), atol=0.01)


class PipelineTest(tf.test.TestCase):

  def test_train_dataset_format_and_drop_remainder(self):
    split = _split(23)
    self.assertEqual(input_pipeline.steps_per_epoch(split, 5), 4)
    batches = list(input_pipeline.train_dataset(split, 5, seed=1, epoch=0))
    self.assertLen(batches, 4)
    for batch in batches:
      self.assertEqual(set(batch), {"image", "label"})
      self.assertEqual(batch["image"].dtype, tf.uint8)
      self.assertEqual(batch["image"].shape, (5, 4, 3, 1))
      self.assertEqual(batch["label"].dtype, tf.int64)
    labels = np.concatenate([b["label"].numpy() for b in batches])
    self.assertLen(set(labels), 20)
    for batch in batches:  # images travel with their labels
      self.assertAllEqual(batch["image"], split.images[batch["label"]])

  def test_train_dataset_is_deterministic_per_epoch(self):
    split = _split(64)
    order = _labels(input_pipeline.train_dataset(split, 8, seed=3, epoch=2))
    self.assertAllEqual(order, _labels(
        input_pipeline.train_dataset(split, 8, seed=3, epoch=2)))
    tf.random.set_seed(12345)  # tf.data's own shuffle would change with this
    self.assertAllEqual(order, _labels(
        input_pipeline.train_dataset(split, 8, seed=3, epoch=2)))
    self.assertNotAllEqual(
        order, _labels(input_pipeline.train_dataset(split, 8, seed=3, epoch=3)))
    self.assertNotAllEqual(
        order, _labels(input_pipeline.train_dataset(split, 8, seed=4, epoch=2)))
    self.assertNotAllEqual(order, np.arange(64))
    # One pass over the data set repeats the same order (no reshuffle).
    dataset = input_pipeline.train_dataset(split, 8, seed=3, epoch=2)
    self.assertAllEqual(_labels(dataset), _labels(dataset))

  def test_skip_batches_resumes_mid_epoch(self):
    split = _split(50)
    full = _labels(input_pipeline.train_dataset(split, 6, seed=0, epoch=5))
    self.assertLen(full, 48)
    for skip in (0, 3, 8):
      resumed = _labels(input_pipeline.train_dataset(split, 6, seed=0, epoch=5,
                                                     skip_batches=skip))
      self.assertAllEqual(resumed, full[skip * 6:])
    with self.assertRaises(errors.DataError):
      input_pipeline.train_dataset(split, 6, seed=0, epoch=5, skip_batches=9)

  def test_bad_batch_size(self):
    with self.assertRaisesRegex(errors.DataError, "exceeds"):
      input_pipeline.train_dataset(_split(5), 6, seed=0, epoch=0)
    with self.assertRaisesRegex(errors.DataError, "positive"):
      input_pipeline.eval_dataset(_split(5), 0)

  def test_eval_dataset_keeps_remainder_in_order(self):
    split = _split(23)
    batches = list(input_pipeline.eval_dataset(split, 5))
    self.assertEqual([len(b["label"]) for b in batches], [5, 5, 5, 5, 3])
    self.assertAllEqual(np.concatenate([b["label"] for b in batches]),
                        np.arange(23))
    self.assertAllEqual(np.concatenate([b["image"] for b in batches]),
                        split.images)


def _sha256_of(path):
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


class DownloadTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.mirror = self.create_tempdir().full_path
    _write_set(self.mirror)
    self.base_url = "file://" + self.mirror + "/"
    self.checksums = {f: _sha256_of(os.path.join(self.mirror, f))
                      for f in download.FILENAMES}

  def test_download_verifies_and_loads(self):
    dest = os.path.join(self.create_tempdir().full_path, "new")
    calls = []
    got = download.download("mnist", dest, base_url=self.base_url,
                            checksums=self.checksums,
                            progress=lambda *args: calls.append(args))
    self.assertEqual(got, dest)
    self.assertCountEqual(os.listdir(dest), download.FILENAMES)
    for filename in download.FILENAMES:
      self.assertEqual(_sha256_of(os.path.join(dest, filename)),
                       self.checksums[filename])
    done = {name: (done, total) for name, done, total in calls}
    self.assertCountEqual(done, download.FILENAMES)
    for filename, (bytes_done, total) in done.items():
      size = os.path.getsize(os.path.join(dest, filename))
      self.assertEqual((bytes_done, total), (size, size))
    self.assertLen(data.load("mnist", data_dir=dest).train.labels, 20)
    # Verified files already there are not fetched again.
    calls.clear()
    download.download("mnist", dest, base_url=self.base_url,
                      checksums=self.checksums,
                      progress=lambda *a: calls.append(a))
    self.assertEmpty(calls)

  def test_wrong_checksum_leaves_nothing(self):
    dest = self.create_tempdir().full_path
    checksums = dict(self.checksums)
    bad = "0" * 64
    checksums["train-images-idx3-ubyte.gz"] = bad
    with self.assertRaises(errors.DataError) as caught:
      download.download("mnist", dest, base_url=self.base_url,
                        checksums=checksums)
    message = str(caught.exception)
    self.assertIn("train-images-idx3-ubyte.gz", message)
    self.assertIn(bad, message)
    self.assertIn(self.checksums["train-images-idx3-ubyte.gz"], message)
    self.assertEmpty(os.listdir(dest))

  def test_default_table_rejects_other_files(self):
    dest = self.create_tempdir().full_path
    with self.assertRaisesRegex(errors.DataError, "SHA-256 mismatch"):
      download.download("mnist", dest, base_url=self.base_url)
    self.assertEmpty(os.listdir(dest))

  def test_refuses_without_known_digest(self):
    with self.assertRaisesRegex(errors.DataError, "no SHA-256 known"):
      download.download("mnist", self.create_tempdir().full_path,
                        base_url=self.base_url, checksums={})

  def test_missing_url(self):
    with self.assertRaisesRegex(errors.DataError, "download failed"):
      download.download("mnist", self.create_tempdir().full_path,
                        base_url="file:///nonexistent/dir/",
                        checksums=self.checksums)

  def test_tables_are_well_formed(self):
    for name in data.DATASET_NAMES:
      self.assertCountEqual(download.SHA256[name], download.FILENAMES)
      for digests in download.SHA256[name].values():
        for digest in digests:
          self.assertRegex(digest, "^[0-9a-f]{64}$")


@absltest.skipUnless(_HAVE_DEBIAN_FASHION_MNIST,
                     "needs Debian's dataset-fashion-mnist package")
class RealFashionMnistTest(tf.test.TestCase):

  def test_load_from_debian_package(self):
    home = self.create_tempdir().full_path
    with mock.patch.dict(os.environ, _clean_env(home), clear=True):
      dataset = data.load("fashion_mnist")
    self.assertEqual(dataset.source, data.DEBIAN_FASHION_MNIST_DIR)
    self.assertEqual(dataset.train.images.shape, (60000, 28, 28, 1))
    self.assertEqual(dataset.test.images.shape, (10000, 28, 28, 1))
    self.assertEqual(dataset.image_shape, (28, 28, 1))
    for split in (dataset.train, dataset.test):
      self.assertEqual(split.images.dtype, np.uint8)
      self.assertAllEqual(np.unique(split.labels), np.arange(10))
      self.assertAllEqual(np.bincount(split.labels),
                          [len(split.labels) // 10] * 10)
    self.assertEqual(input_pipeline.steps_per_epoch(dataset.train, 128), 468)

  def test_default_table_accepts_debian_copies(self):
    dest = self.create_tempdir().full_path
    download.download("fashion_mnist", dest,
                      base_url="file://" + data.DEBIAN_FASHION_MNIST_DIR)
    self.assertCountEqual(os.listdir(dest), download.FILENAMES)
    with gzip.open(os.path.join(dest, "t10k-labels-idx1-ubyte.gz")) as f:
      self.assertEqual(f.read(4), b"\x00\x00\x08\x01")


def _run_tool(*args, home):
  env = _clean_env(home)
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  return subprocess.Popen(
      [sys.executable, "-m", "tools.download_data", *args], cwd=_REPO_ROOT,
      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class DownloadToolTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._tmp = tempfile.TemporaryDirectory()
    cls.home = cls._tmp.name
    cls.mirror = os.path.join(cls.home, "mirror")
    _write_set(cls.mirror)
    cls.dest = os.path.join(cls.home, "dest")
    # TensorFlow takes seconds to import: start the programs together.
    processes = {
        "help": _run_tool("--help", home=cls.home),
        "bad_flag": _run_tool("--dataset=cifar10", home=cls.home),
        "bad_checksum": _run_tool(
            "--dataset=mnist", f"--base_url=file://{cls.mirror}/",
            f"--data_dir={cls.dest}", home=cls.home),
    }
    cls.results = {}
    for name, process in processes.items():
      stdout, stderr = process.communicate(timeout=120)
      cls.results[name] = (process.returncode, stdout, stderr)

  @classmethod
  def tearDownClass(cls):
    cls._tmp.cleanup()
    super().tearDownClass()

  def test_help_documents_every_flag(self):
    _, stdout, stderr = self.results["help"]  # absl's --help exits 1
    self.assertNotIn("Traceback", stderr)
    for flag, words in (("--dataset", "fashion_mnist|mnist"),
                        ("--data_dir", "Directory to write"),
                        ("--base_url", "file:///")):
      self.assertIn(flag, stdout)
      self.assertIn(words, " ".join(stdout.split()))

  def test_bad_flag_value_fails_cleanly(self):
    returncode, _, stderr = self.results["bad_flag"]
    self.assertNotEqual(returncode, 0)
    self.assertNotIn("Traceback", stderr)
    error_lines = [l for l in stderr.splitlines() if "--dataset=cifar10" in l]
    self.assertLen(error_lines, 1, stderr)

  def test_bad_checksum_fails_with_one_line(self):
    returncode, _, stderr = self.results["bad_checksum"]
    self.assertEqual(returncode, 1, stderr)
    self.assertNotIn("Traceback", stderr)
    error_lines = [l for l in stderr.splitlines()
                   if re.match(r"^\S+: error: ", l)]
    self.assertLen(error_lines, 1, stderr)
    self.assertIn("SHA-256 mismatch for train-images-idx3-ubyte.gz",
                  error_lines[0])
    self.assertEqual(os.listdir(self.dest), [])


if __name__ == "__main__":
  tf.test.main()
