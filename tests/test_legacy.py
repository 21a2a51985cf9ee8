"""Tests of the TF1 migration toolkit: checkpoints, graph surgery, tools."""
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from unittest import mock

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tests import legacy_fixtures
from tfvae import checkpoints
from tfvae import errors
from tfvae import legacy

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_FIXTURES = tempfile.mkdtemp(prefix="tfvae-legacy-fixtures-")

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
  legacy_fixtures.write_fixture(directory, **options)
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


class GraphSurgeryTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(*[(k, k) for k in _VARIATIONS])
  def test_generator_decodes_like_the_tf1_session(self, name):
    directory = _fixture(name)
    export_dir = os.path.join(self.get_temp_dir(), "export-" + name)
    path = legacy.build_generator(directory, export_dir)
    self.assertEqual(path, os.path.join(export_dir, "1"))
    self.assertEqual(legacy.device_pins(path), [])
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
    meta = legacy.MetaGraph(os.path.join(_fixture("seed003"), "model.meta"))
    expected = np.load(os.path.join(_fixture("seed003"), "expected.npz"))
    latent, output = legacy.find_ends(meta)
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
    latent, output = legacy.find_ends(legacy.MetaGraph(meta_path))
    self.assertEqual(latent.name, str(expected["latent_tensor"]))
    self.assertEqual(output.name, str(expected["output_tensor"]))

  def test_explicit_ends_and_image_shape(self):
    directory = _fixture("gaussian")
    expected = np.load(os.path.join(directory, "expected.npz"))
    export_dir = os.path.join(self.get_temp_dir(), "export")
    path = legacy.build_generator(
        directory + "/model", export_dir, version=7,
        latent_tensor=str(expected["latent_tensor"]),
        output_collection="recon", image_shape="4,16,1", device="cpu")
    self.assertEqual(os.path.basename(path), "7")
    got = tf.saved_model.load(path).signatures["decode"](
        z=tf.constant(expected["z"]))["mean"]
    self.assertEqual(got.shape[1:], (4, 16, 1))

  def test_device_auto_is_cpu_without_gpu_and_gpu_is_refused(self):
    if tf.config.list_physical_devices("GPU"):
      self.skipTest("a GPU is present")
    self.assertEqual(legacy.resolve_device("auto"), "/CPU:0")
    export_dir = os.path.join(self.get_temp_dir(), "export")
    with self.assertRaisesRegex(errors.TfvaeError, "--device=gpu"):
      legacy.build_generator(_fixture("relu"), export_dir, device="gpu")
    self.assertEqual(_versions(export_dir), [])

  def test_write_file_on_decode_path_is_refused_unless_allowed(self):
    directory = _fixture("write_file")
    export_dir = os.path.join(self.get_temp_dir(), "export")
    with self.assertRaisesRegex(errors.TfvaeError, r"WriteFile.*allow_unsafe"):
      legacy.build_generator(directory, export_dir)
    self.assertEqual(_versions(export_dir), [])
    path = legacy.build_generator(directory, export_dir,
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
      legacy.build_generator(_fixture("py_func"), export_dir)
    self.assertEqual(_versions(export_dir), [])


class BadInputTest(tf.test.TestCase, parameterized.TestCase):

  def _assert_refused(self, pattern, checkpoint, **kwargs):
    export_dir = os.path.join(self.get_temp_dir(), "export")
    with self.assertRaisesRegex(errors.TfvaeError, pattern) as caught:
      legacy.build_generator(checkpoint, export_dir, **kwargs)
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
      checkpoints.verify(directory)

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
    real = legacy._tf1_decode  # pylint: disable=protected-access

    def off_by_a_little(*args):
      return real(*args) + 1e-3

    with mock.patch.object(legacy, "_tf1_decode", off_by_a_little):
      self._assert_refused("differs from the TF1 graph .*model.meta",
                           _fixture("relu"))

  def test_existing_version_is_not_overwritten(self):
    export_dir = os.path.join(self.get_temp_dir(), "export")
    legacy.build_generator(_fixture("relu"), export_dir)
    with self.assertRaisesRegex(errors.TfvaeError, "already exists"):
      legacy.build_generator(_fixture("relu"), export_dir, version=1)


class CheckpointTest(tf.test.TestCase, parameterized.TestCase):

  def test_seed003_weights_and_rmsprop_slots(self):
    report = checkpoints.verify(_fixture("seed003"))
    self.assertEqual(report.format, checkpoints.TF1_FORMAT)
    self.assertEqual(report.source.kind, checkpoints.SOURCE_TF1_PREFIX)
    self.assertEqual(
        sorted(v.name for v in report.weights()),
        sorted(["Variable"] + [f"Variable_{i}" for i in range(1, 10)]))
    slots = report.slots()
    self.assertLen(slots, 20)
    self.assertEqual({v.optimizer for v in slots}, {"RMSProp"})
    self.assertIn("Variable_3/RMSProp_1", {v.name for v in slots})
    self.assertEqual(report.optimizers, ("RMSProp",))
    self.assertIsNone(report.step)
    by_name = {v.name: v for v in report.variables}
    self.assertEqual(by_name["Variable"].shape, (784, 512))
    self.assertEqual(by_name["Variable"].size, 784 * 512)
    self.assertEqual(by_name["Variable"].dtype, "float32")

  def test_adam_slots_and_powers(self):
    report = checkpoints.inspect(os.path.join(_fixture("adam"), "model.index"))
    kinds = {v.name: (v.kind, v.optimizer) for v in report.variables}
    self.assertEqual(kinds["beta1_power"],
                     (checkpoints.BOOKKEEPING, "Adam"))
    self.assertEqual(kinds["Variable_4/Adam_1"], (checkpoints.SLOT, "Adam"))
    self.assertLen(report.weights(), 10)

  def test_state_file_directory_and_prefix_agree(self):
    directory = _fixture("relu")
    self.assertEqual(checkpoints.resolve(directory).prefix,
                     checkpoints.resolve(directory + "/model.meta").prefix)
    self.assertEqual(checkpoints.resolve(directory).meta_graph,
                     directory + "/model.meta")

  def test_tf2_checkpoint(self):
    ckpt = tf.train.Checkpoint(step=tf.Variable(42, dtype=tf.int64),
                               w=tf.Variable(tf.ones([2, 3])))
    ckpt.save(os.path.join(self.get_temp_dir(), "ckpt"))
    report = checkpoints.inspect(self.get_temp_dir())
    self.assertEqual(report.format, checkpoints.TF2_FORMAT)
    self.assertEqual(report.step, 42)
    self.assertEqual([v.name for v in report.weights()],
                     ["w/.ATTRIBUTES/VARIABLE_VALUE"])

  def test_tf1_global_step(self):
    prefix = os.path.join(self.get_temp_dir(), "gs", "model")
    with tf.Graph().as_default():
      step = tf.compat.v1.train.get_or_create_global_step()
      w = tf.compat.v1.Variable([1., 2.], use_resource=False)
      with tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        sess.run(step.assign(17))
        tf.compat.v1.train.Saver([step, w]).save(sess, prefix)
    report = checkpoints.inspect(prefix)
    self.assertEqual(report.step, 17)
    self.assertEqual([v.name for v in report.weights()], ["Variable"])

  def test_state_file_naming_missing_checkpoint(self):
    directory = self.get_temp_dir()
    with open(os.path.join(directory, "checkpoint"), "w") as f:
      f.write('model_checkpoint_path: "gone"\n')
    with self.assertRaisesRegex(errors.TfvaeError, "gone"):
      checkpoints.resolve(directory)


class ShapeMatchingTest(tf.test.TestCase):

  def test_unique_shapes(self):
    assignment, used, unused = legacy.match_by_shape(
        [("decoder/w", (2, 8)), ("decoder/b", (8,))],
        {"Variable_3": (2, 8), "Variable_8": (8,), "Variable": (16, 8)})
    self.assertEqual(assignment,
                     {"decoder/w": "Variable_3", "decoder/b": "Variable_8"})
    self.assertEqual(used, ["Variable_3", "Variable_8"])
    self.assertEqual(unused, ["Variable"])

  def test_ties_are_errors_listing_candidates(self):
    with self.assertRaisesRegex(errors.TfvaeError,
                                "Variable_1, Variable_2"):
      legacy.match_by_shape([("mean/w", (8, 2))],
                            [("Variable_1", (8, 2)), ("Variable_2", (8, 2))])

  def test_missing_shape(self):
    with self.assertRaisesRegex(errors.TfvaeError, r"\[3, 3\] of conv"):
      legacy.match_by_shape([("conv", (3, 3))], {"Variable": (2, 2)})


def _run_tool(module, *args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=_REPO)
  return subprocess.run([sys.executable, "-m", module, *args], cwd=_REPO,
                        env=env, capture_output=True, text=True, timeout=120,
                        check=False)


# TensorFlow's C++ runtime writes a few start-up lines that no flag silences.
_RUNTIME_LOG = re.compile(
    r"^([IWEF]\d{4} |WARNING: All log messages before absl::InitializeLog)")


def _error_lines(stderr):
  return [line for line in stderr.splitlines()
          if line.strip() and not _RUNTIME_LOG.match(line)]


class ToolsTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ("inspect", "tools.inspect_checkpoint", ["json", "verify", "meta_graph"]),
      ("extract", "tools.extract",
       ["out", "include_slots", "include", "exclude"]),
      ("build_generator", "tools.build_generator",
       ["checkpoint", "export_dir", "version", "meta_graph", "latent_tensor",
        "output_tensor", "output_collection", "image_shape", "device",
        "allow_unsafe_ops", "no_meta", "map", "map_file", "network",
        "latent_dim", "hidden_sizes", "conv_channels", "activation",
        "likelihood", "gaussian_scale"]))
  def test_help_lists_every_flag(self, module, flags):
    # absl's --help exits with status 1 by design.
    result = _run_tool(module, "--help")
    self.assertNotIn("Traceback", result.stderr)
    for flag in flags:
      self.assertRegex(result.stdout, rf"--(\[no\])?{flag}:")

  @parameterized.named_parameters(
      ("inspect", "tools.inspect_checkpoint", ["{missing}"]),
      ("extract", "tools.extract", ["{missing}", "--out={tmp}/w.npz"]),
      ("build_generator", "tools.build_generator",
       ["--checkpoint={missing}", "--export_dir={tmp}/export"]))
  def test_bad_input_is_one_line(self, module, args):
    tmp = self.get_temp_dir()
    missing = os.path.join(tmp, "missing", "model")
    result = _run_tool(module, *[a.format(missing=missing, tmp=tmp)
                                 for a in args])
    self.assertNotEqual(result.returncode, 0)
    self.assertNotIn("Traceback", result.stderr)
    lines = _error_lines(result.stderr)
    self.assertLen(lines, 1, result.stderr)
    self.assertIn(missing + ".index", lines[0])

  def test_inspect_json_and_table(self):
    import json  # pylint: disable=g-import-not-at-top
    result = _run_tool("tools.inspect_checkpoint", _fixture("relu"), "--json")
    self.assertEqual(result.returncode, 0, result.stderr)
    report = json.loads(result.stdout)
    self.assertEqual(report["format"], checkpoints.TF1_FORMAT)
    kinds = {v["name"]: v["kind"] for v in report["variables"]}
    self.assertEqual(kinds["Variable"], "weight")
    self.assertEqual(kinds["Variable/RMSProp"], "slot")
    self.assertEqual(report["meta_graph"]["latent_candidates"][0]["name"],
                     "add_3:0")
    table = _run_tool("tools.inspect_checkpoint", _fixture("relu"))
    self.assertEqual(table.returncode, 0, table.stderr)
    self.assertRegex(table.stdout, r"Variable/RMSProp_1\s+\[64, 16\]\s+"
                     r"float32\s+1024\s+slot \(RMSProp\)")
    self.assertIn("recon (1): Sigmoid:0", table.stdout)

  def test_extract_round_trip(self):
    out = os.path.join(self.get_temp_dir(), "sub", "weights.npz")
    result = _run_tool("tools.extract", _fixture("adam"), f"--out={out}",
                       "--exclude=_9$", "--exclude", "^Variable_8$,nothing")
    self.assertEqual(result.returncode, 0, result.stderr)
    reader = tf.train.load_checkpoint(os.path.join(_fixture("adam"), "model"))
    with np.load(out) as arrays:
      self.assertEqual(sorted(arrays.files),
                       ["Variable"] + [f"Variable_{i}" for i in range(1, 8)])
      for name in arrays.files:
        self.assertAllEqual(arrays[name], reader.get_tensor(name))
    self.assertEqual(os.listdir(os.path.dirname(out)), ["weights.npz"])
    with_slots = os.path.join(self.get_temp_dir(), "all.npz")
    result = _run_tool("tools.extract", _fixture("adam"),
                       f"--out={with_slots}", "--include_slots",
                       "--include=^Variable_3")
    self.assertEqual(result.returncode, 0, result.stderr)
    with np.load(with_slots) as arrays:
      self.assertEqual(sorted(arrays.files),
                       ["Variable_3", "Variable_3/Adam", "Variable_3/Adam_1"])

  def test_build_generator_cli(self):
    export_dir = os.path.join(self.get_temp_dir(), "export")
    result = _run_tool("tools.build_generator",
                       f"--checkpoint={_fixture('conv')}/model",
                       f"--export_dir={export_dir}", "--version=3")
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertEqual(_versions(export_dir), ["3"])
    refused = _run_tool("tools.build_generator",
                        f"--checkpoint={_fixture('write_file')}",
                        f"--export_dir={export_dir}")
    self.assertNotEqual(refused.returncode, 0)
    lines = _error_lines(refused.stderr)
    self.assertLen(lines, 1, refused.stderr)
    self.assertIn("WriteFile", lines[0])
    self.assertEqual(_versions(export_dir), ["3"])


if __name__ == "__main__":
  tf.test.main()
