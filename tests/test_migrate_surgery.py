"""Tests of graph surgery: generators cut out of TF1 graphs, bad inputs."""
import functools
import os
import re
import shutil
import tempfile
from unittest import mock

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tests import migrate_fixtures
from tfvae import errors
from tfvae import migrate
from tfvae.migrate import reader

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_FIXTURES = tempfile.mkdtemp(prefix="tfvae-migrate-fixtures-")

# The seed-003 model (784-512-2, tanh, RMSProp) and small variations of it.
_VARIATIONS = {
    "seed003": dict(image_size=28, hidden_size=512),
    "relu": dict(activation="relu"),
    "sigmoid": dict(activation="sigmoid"),
    "shuffled": dict(shuffled=True),
    "latent5": dict(latent_size=5),
    "scoped": dict(scoped=True),
    "scoped_resource": dict(scoped=True, resource_variables=True),
    "conv": dict(decoder="conv"),
    "gaussian": dict(likelihood="gaussian"),
    "adam": dict(optimizer="adam"),
    "conv_scoped_adam_latent5": dict(decoder="conv", scoped=True,
                                     optimizer="adam", latent_size=5),
}


@functools.lru_cache(maxsize=None)
def _fixture(name):
  """Writes (once) and returns the directory of a named fixture."""
  if name == "write_file":
    options = dict(unsafe_op="write_file")
  elif name == "py_func":
    options = dict(unsafe_op="py_func")
  elif name == "hidden32":
    options = dict(hidden_size=32)
  else:
    options = _VARIATIONS[name]
  directory = os.path.join(_FIXTURES, name)
  migrate_fixtures.write_fixture(directory, **options)
  return directory


def _copy(test, name):
  """A private copy of a fixture that a test may damage."""
  directory = os.path.join(test.get_temp_dir(), name + "-copy")
  shutil.rmtree(directory, ignore_errors=True)
  shutil.copytree(_fixture(name), directory)
  return directory


def _versions(export_dir):
  if not os.path.isdir(export_dir):
    return []
  return [n for n in os.listdir(export_dir) if n.isdigit()]


def _decode(path, z):
  return tf.saved_model.load(path).signatures["decode"](z=tf.constant(z))


def _assert_matches_tf1(test, path, directory):
  expected = np.load(os.path.join(directory, "expected.npz"))
  got = _decode(path, expected["z"])["mean"].numpy()
  test.assertAllClose(got.reshape(expected["output"].shape),
                      expected["output"], atol=1e-5, rtol=0)

class GraphSurgeryTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(*[(k, k) for k in _VARIATIONS])
  def test_generator_decodes_like_the_tf1_session(self, name):
    directory = _fixture(name)
    export_dir = os.path.join(self.get_temp_dir(), "export-" + name)
    path = migrate.build_generator(directory, export_dir)
    self.assertEqual(path, os.path.join(export_dir, "1"))
    self.assertEqual(migrate.device_pins(path), [])
    expected = np.load(os.path.join(directory, "expected.npz"))
    loaded = tf.saved_model.load(path)
    got = loaded.signatures["decode"](z=tf.constant(expected["z"]))["mean"]
    self.assertEqual(got.shape.rank, 4)
    self.assertAllClose(np.reshape(got, expected["output"].shape),
                        expected["output"], atol=1e-5, rtol=0)
    generate = loaded.signatures["generate"]
    first = generate(seed=tf.constant([3, 4], tf.int64))["images"]
    again = generate(seed=tf.constant([3, 4], tf.int64))["images"]
    other = generate(seed=tf.constant([5, 6], tf.int64))["images"]
    self.assertAllEqual(first, again)
    self.assertGreater(float(tf.reduce_max(tf.abs(first - other))), 0.)

  def test_seed003_graph_ends_are_found(self):
    meta = migrate.MetaGraph(os.path.join(_fixture("seed003"), "model.meta"))
    expected = np.load(os.path.join(_fixture("seed003"), "expected.npz"))
    latent, output = migrate.find_ends(meta)
    self.assertEqual(latent.name, str(expected["latent_tensor"]))
    self.assertEqual(output.name, str(expected["output_tensor"]))
    report = meta.report()
    self.assertEqual(report["collections"]["recon"], [output.name])
    self.assertEqual([p["name"] for p in report["placeholders"]], ["x:0"])
    self.assertIn("RandomStandardNormal",
                  {r["type"] for r in report["random_ops"]})
    self.assertEqual(report["unsafe_ops"], [])
    self.assertGreater(report["saver_file_ops"], 0)

  @parameterized.named_parameters(("bernoulli", "relu"),
                                  ("gaussian", "gaussian"), ("conv", "conv"))
  def test_output_found_without_a_collection(self, name):
    directory = os.path.join(self.get_temp_dir(), name)
    shutil.copytree(_fixture(name), directory)
    meta_path = os.path.join(directory, "model.meta")
    with tf.Graph().as_default() as graph:
      tf.compat.v1.train.import_meta_graph(meta_path)
      graph.clear_collection("recon")
      tf.compat.v1.train.export_meta_graph(meta_path)
    expected = np.load(os.path.join(directory, "expected.npz"))
    latent, output = migrate.find_ends(migrate.MetaGraph(meta_path))
    self.assertEqual(latent.name, str(expected["latent_tensor"]))
    self.assertEqual(output.name, str(expected["output_tensor"]))

  def test_explicit_ends_and_image_shape(self):
    directory = _fixture("gaussian")
    expected = np.load(os.path.join(directory, "expected.npz"))
    export_dir = os.path.join(self.get_temp_dir(), "export")
    path = migrate.build_generator(
        directory + "/model", export_dir, version=7,
        latent_tensor=str(expected["latent_tensor"]),
        output_collection="recon", image_shape="4,16,1", device="cpu")
    self.assertEqual(os.path.basename(path), "7")
    got = tf.saved_model.load(path).signatures["decode"](
        z=tf.constant(expected["z"]))["mean"]
    self.assertEqual(got.shape[1:], (4, 16, 1))
    # The TF1 session's output at the same z, pixel for pixel.
    self.assertAllClose(got.numpy().reshape(expected["output"].shape),
                        expected["output"], atol=1e-5, rtol=0)

  def test_device_auto_is_cpu_without_gpu_and_gpu_is_refused(self):
    if tf.config.list_physical_devices("GPU"):
      self.skipTest("a GPU is present")
    self.assertEqual(migrate.resolve_device("auto"), "/CPU:0")
    export_dir = os.path.join(self.get_temp_dir(), "export")
    with self.assertRaisesRegex(errors.TfvaeError, "--device=gpu"):
      migrate.build_generator(_fixture("relu"), export_dir, device="gpu")
    self.assertEqual(_versions(export_dir), [])

  def test_write_file_on_decode_path_is_refused_unless_allowed(self):
    directory = _fixture("write_file")
    export_dir = os.path.join(self.get_temp_dir(), "export")
    with self.assertRaisesRegex(errors.TfvaeError, r"WriteFile.*allow_unsafe"):
      migrate.build_generator(directory, export_dir)
    self.assertEqual(_versions(export_dir), [])
    path = migrate.build_generator(directory, export_dir,
                                  allow_unsafe_ops=True)
    self.assertEqual(_versions(export_dir), ["1"])
    expected = np.load(os.path.join(directory, "expected.npz"))
    got = tf.saved_model.load(path).signatures["decode"](
        z=tf.constant(expected["z"]))["mean"]
    self.assertAllClose(np.reshape(got, expected["output"].shape),
                        expected["output"], atol=1e-5, rtol=0)

  def test_py_func_on_decode_path_is_refused(self):
    export_dir = os.path.join(self.get_temp_dir(), "export")
    with self.assertRaisesRegex(errors.TfvaeError, "PyFunc"):
      migrate.build_generator(_fixture("py_func"), export_dir)
    self.assertEqual(_versions(export_dir), [])


class BadInputTest(tf.test.TestCase, parameterized.TestCase):

  def _assert_refused(self, pattern, checkpoint, **kwargs):
    export_dir = os.path.join(self.get_temp_dir(), "export")
    with self.assertRaisesRegex(errors.TfvaeError, pattern) as caught:
      migrate.build_generator(checkpoint, export_dir, **kwargs)
    self.assertNotIn("\n", str(caught.exception))
    self.assertEqual(_versions(export_dir), [])

  def test_missing_prefix(self):
    missing = os.path.join(self.get_temp_dir(), "nowhere", "model")
    self._assert_refused(re.escape(missing + ".index"), missing)

  def test_truncated_index(self):
    directory = _copy(self, "relu")
    with open(os.path.join(directory, "model.index"), "r+b") as f:
      f.truncate(40)
    self._assert_refused(re.escape(directory + "/model.index"), directory)

  def test_truncated_data(self):
    directory = _copy(self, "relu")
    data = os.path.join(directory, "model.data-00000-of-00001")
    with open(data, "r+b") as f:
      f.truncate(os.path.getsize(data) // 2)
    self._assert_refused(re.escape(data), directory)
    with self.assertRaisesRegex(errors.TfvaeError, re.escape(data)):
      reader.verify(directory)

  def test_missing_data(self):
    directory = _copy(self, "relu")
    data = os.path.join(directory, "model.data-00000-of-00001")
    os.remove(data)
    self._assert_refused(re.escape(data), directory)

  def test_unknown_latent_tensor(self):
    self._assert_refused("no_such_tensor:0", _fixture("relu"),
                         latent_tensor="no_such_tensor:0")

  def test_unknown_output_tensor(self):
    self._assert_refused("Missing:0", _fixture("relu"),
                         output_tensor="Missing")

  def test_unknown_output_collection(self):
    self._assert_refused("'nothing'", _fixture("relu"),
                         output_collection="nothing")

  def test_meta_graph_with_other_shapes(self):
    other_meta = os.path.join(_fixture("hidden32"), "model.meta")
    self._assert_refused(r"variable Variable\S* has shape", _fixture("relu"),
                         meta_graph=other_meta)

  def test_meta_graph_with_other_variables(self):
    other_meta = os.path.join(_fixture("scoped"), "model.meta")
    self._assert_refused(r"variable decoder/\S+ .* is not in checkpoint",
                         _fixture("relu"), meta_graph=other_meta)

  def test_missing_meta_graph_file(self):
    missing = os.path.join(self.get_temp_dir(), "other.meta")
    self._assert_refused(re.escape(missing), _fixture("relu"),
                         meta_graph=missing)

  def test_checkpoint_without_graph_needs_its_architecture(self):
    # Without the .meta the default architecture (seed 003's 784-512-2) is
    # mapped, which does not fit this 64-16-2 checkpoint.
    directory = _copy(self, "relu")
    os.remove(os.path.join(directory, "model.meta"))
    self._assert_refused(r"shape \[2, 512\] of decoder/mlp/linear_0/w",
                         directory)

  def test_meta_graph_and_no_meta_conflict(self):
    self._assert_refused("--meta_graph or --no_meta", _fixture("relu"),
                         meta_graph=_fixture("relu") + "/model.meta",
                         no_meta=True)

  def test_ambiguous_output_lists_candidates(self):
    directory = _copy(self, "relu")
    meta_path = os.path.join(directory, "model.meta")
    with tf.Graph().as_default() as graph:
      tf.compat.v1.train.import_meta_graph(meta_path)
      logits = graph.get_tensor_by_name("Sigmoid:0").op.inputs[0]
      tf.compat.v1.add_to_collection("logits", logits)
      tf.compat.v1.train.export_meta_graph(meta_path)
    self._assert_refused(r"several decoder output candidates: .*Sigmoid:0",
                         directory)

  def test_latent_that_does_not_cut_the_graph(self):
    self._assert_refused("still depends on random op", _fixture("relu"),
                         latent_tensor="Variable_3/read:0")

  def test_latent_that_leaves_the_encoder_input_upstream(self):
    self._assert_refused("placeholder x:0", _fixture("relu"),
                         latent_tensor="epsilon:0")

  def test_verification_mismatch_is_not_published(self):
    real = migrate.surgery.tf1_decode

    def off_by_a_little(*args):
      return real(*args) + 1e-3

    with mock.patch.object(migrate.surgery, "tf1_decode", off_by_a_little):
      self._assert_refused("differs from the TF1 graph .*model.meta",
                           _fixture("relu"))

  def test_existing_version_is_not_overwritten(self):
    export_dir = os.path.join(self.get_temp_dir(), "export")
    migrate.build_generator(_fixture("relu"), export_dir)
    with self.assertRaisesRegex(errors.TfvaeError, "already exists"):
      migrate.build_generator(_fixture("relu"), export_dir, version=1)

if __name__ == "__main__":
  tf.test.main()
