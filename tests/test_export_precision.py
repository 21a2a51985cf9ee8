"""Exports and generators computing in bfloat16 or float16 (--dtype)."""
import json
import os
import shutil
import tempfile

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import tfvae
from tfvae import errors
from tfvae import export
from tfvae import launch
from tfvae import precision
from tfvae import runs
from tfvae.migrate import build
from tests import util


def _op_dtypes(saved_model_dir, op_type):
  """The dtypes (attr T) of a SavedModel's `op_type` nodes, functions too."""
  loaded = tf.saved_model.load(saved_model_dir)
  graph_def = loaded.signatures["decode"].graph.as_graph_def()
  nodes = list(graph_def.node)
  for function in graph_def.library.function:
    nodes.extend(function.node_def)
  return {tf.as_dtype(n.attr["T"].type).name for n in nodes
          if n.op == op_type}


def _op_count(saved_model_dir, signature, op_type):
  """How many `op_type` nodes a signature's graph and its functions hold."""
  graph_def = tf.saved_model.load(saved_model_dir).signatures[
      signature].graph.as_graph_def()
  nodes = list(graph_def.node)
  for function in graph_def.library.function:
    nodes.extend(function.node_def)
  return sum(n.op == op_type for n in nodes)


def _sigmoid_inputs(saved_model_dir, signature):
  """The op types feeding the Sigmoid nodes of a signature's functions."""
  graph_def = tf.saved_model.load(saved_model_dir).signatures[
      signature].graph.as_graph_def()
  found = set()
  for function in graph_def.library.function:
    ops = {n.name: n.op for n in function.node_def}
    for node in function.node_def:
      if node.op == "Sigmoid":
        found.add(ops[node.input[0].split(":")[0]])
  return found


class ExportDtypeTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp(prefix="tfvae-test-")
    cls.run_dir = os.path.join(cls.root, "run")
    config = tfvae.Config(epochs=1, batch_size=32, hidden_sizes=(32,),
                          latent_dim=2, save_every_steps=10**6,
                          log_every_steps=10**6)
    launch.run(config, cls.run_dir,
               dataset=util.small_fashion_mnist(num_train=256, num_test=64))
    _, cls.model, _ = runs.restore_model(cls.run_dir)
    cls.z = np.random.default_rng(3).standard_normal([16, 2]).astype(
        np.float32)
    cls.want = {k: v.numpy() for k, v in cls.model.decoder.outputs(
        tf.constant(cls.z)).items()}

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()

  def _check_close(self, got, dtype):
    tolerance = precision.EXPORT_TOLERANCES[dtype]
    for key, want in self.want.items():
      self.assertEqual(got[key].dtype, tf.float32)
      relative = np.max(np.abs(got[key].numpy() - want) / (1 + np.abs(want)))
      self.assertLessEqual(relative, tolerance, key)
      # Low precision for real: not the float32 numbers.
      self.assertGreater(relative, 1e-6, key)

  @parameterized.named_parameters(("bfloat16", "bfloat16"),
                                  ("float16", "float16"))
  def test_export_computes_in_dtype_within_its_tolerance(self, dtype):
    path = export.export_run(self.run_dir,
                             os.path.join(self.root, f"export_{dtype}"),
                             part="generator", dtype=dtype)
    loaded = tf.saved_model.load(path).signatures
    self._check_close(loaded["decode"](z=tf.constant(self.z)), dtype)
    self.assertEqual(dict(loaded["decode"].structured_input_signature[1])[
        "z"].dtype, tf.float32)
    self.assertIn(dtype, _op_dtypes(path, "MatMul"))
    self.assertNotIn("float32", _op_dtypes(path, "MatMul"))
    self.assertEqual(export.read_metadata(path)["dtype"], dtype)
    # The weights are held in the dtype: the only casts left are z's in and
    # the output's back to float32, not one per weight per call.
    self.assertEqual(_op_count(path, "serving_default", "Cast"), 2)
    # The SavedModel's checkpoint keeps the float32 decoder as it is, plus
    # the low-precision copies the signatures read.
    reader = tf.train.load_checkpoint(os.path.join(path, "variables",
                                                   "variables"))
    dtypes = reader.get_variable_to_dtype_map()
    float32 = [reader.get_tensor(k) for k, v in dtypes.items()
               if k.startswith("decoder/") and v == tf.float32]
    weights = [v.numpy() for v in self.model.decoder.net.variables]
    self.assertLen(float32, len(weights))
    for weight in weights:
      self.assertLen([w for w in float32 if w.shape == weight.shape
                      and np.array_equal(w, weight)], 1)
    self.assertLen([k for k, v in dtypes.items() if v == tf.as_dtype(dtype)],
                   len(weights))
    # The in-process model is left computing in float32.
    self.assertAllEqual(self.model.decoder.outputs(tf.constant(self.z))[
        "mean"], self.want["mean"])

  def test_generator_serving_default_is_the_mean_alone(self):
    path = export.export_run(self.run_dir,
                             os.path.join(self.root, "export_serving"),
                             part="generator")
    loaded = tf.saved_model.load(path).signatures
    served = loaded["serving_default"](z=tf.constant(self.z))
    self.assertEqual(list(served), ["mean"])
    self.assertAllClose(served["mean"], self.want["mean"], atol=1e-6)
    # The sigmoid reads the last layer's bias add, not a Reshape of it, so
    # that grappler can fuse MatMul + BiasAdd + Sigmoid (as in TF1).
    self.assertEqual(_sigmoid_inputs(path, "serving_default"), {"AddV2"})
    self.assertCountEqual(loaded["decode"](z=tf.constant(self.z)),
                          ["mean", "logits"])
    # A full export's serving_default stays decode.
    full = export.export_module(self.model, "full")
    self.assertIs(export.signatures(full)["serving_default"], full.decode)

  def test_built_generator_in_bfloat16(self):
    path = build.build_generator(self.run_dir,
                                 os.path.join(self.root, "generator"),
                                 dtype="bfloat16")
    loaded = tf.saved_model.load(path).signatures
    self._check_close(loaded["decode"](z=tf.constant(self.z)), "bfloat16")
    served = loaded["serving_default"](z=tf.constant(self.z))
    self.assertEqual(list(served), ["mean"])
    self.assertIn("bfloat16", _op_dtypes(path, "MatMul"))
    # As tfvae-export's: the weights are held in bfloat16, no per-call casts.
    self.assertEqual(_op_count(path, "serving_default", "Cast"), 2)
    with open(os.path.join(path, "assets.extra", "tfvae_source.json")) as f:
      self.assertEqual(json.load(f)["dtype"], "bfloat16")

  def test_unknown_dtype_is_a_one_line_error(self):
    with self.assertRaisesRegex(errors.TfvaeError, r"^--dtype=int8: choose"):
      export.export_run(self.run_dir, os.path.join(self.root, "bad"),
                        dtype="int8")
    with self.assertRaisesRegex(errors.TfvaeError, r"^--dtype=int8: choose"):
      build.build_generator(self.run_dir, os.path.join(self.root, "bad2"),
                            dtype="int8")


if __name__ == "__main__":
  tf.test.main()
