"""Hostile TF1 graphs: ops that touch files hidden where a top-level check
does not look are refused before anything of the graph runs."""
import os

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tfvae import errors
from tfvae import migrate

_LATENT, _PIXELS = 2, 16


def _write_graph(directory, hide, target):
  """A TF1 decoder z -> sigmoid(z W + b) whose output passes through `hide`.

  Args:
    directory: Where the checkpoint and `.meta` go.
    hide: "function" (a WriteFile inside a tf.function called on the path),
      "cond" (inside a tf.cond branch, v2 control flow), "print_to_file"
      (a PrintV2 to a file the output waits for) or "dataset" (a
      DatasetToTFRecord writer the output waits for).
    target: The file the hostile op would write.

  Returns:
    The checkpoint prefix.
  """
  graph = tf.Graph()
  with graph.as_default():
    v1 = tf.compat.v1
    v1.enable_control_flow_v2()
    z = v1.placeholder(tf.float32, [None, _LATENT], name="z")
    w = v1.get_variable("w", [_LATENT, _PIXELS],
                        initializer=v1.glorot_uniform_initializer(seed=1))
    b = v1.get_variable("b", [_PIXELS], initializer=v1.zeros_initializer())
    mean = tf.sigmoid(tf.matmul(z, w) + b)

    if hide == "function":

      @tf.function
      def passthrough(x):
        tf.io.write_file(target, "written")
        return tf.identity(x)

      out = passthrough(mean)
    elif hide == "cond":

      def write_then_pass():
        with tf.control_dependencies([tf.io.write_file(target, "written")]):
          return tf.identity(mean)

      out = tf.cond(tf.constant(True), write_then_pass,
                    lambda: tf.identity(mean))
    elif hide == "print_to_file":
      printed = tf.print("decoded", output_stream=f"file://{target}")
      with tf.control_dependencies([printed]):
        out = tf.identity(mean)
    else:
      records = tf.data.Dataset.from_tensors(tf.constant("x"))
      written = tf.raw_ops.DatasetToTFRecord(
          input_dataset=tf.data.experimental.to_variant(records),
          filename=target, compression_type="")
      with tf.control_dependencies([written]):
        out = tf.identity(mean)
    out = tf.identity(out, name="images")
    saver = v1.train.Saver()
    with v1.Session(graph=graph) as sess:
      sess.run(v1.global_variables_initializer())
      prefix = saver.save(sess, os.path.join(directory, "model"))
  return prefix


class HostileGraphTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ("write_file_in_a_function_body", "function", "WriteFile"),
      ("write_file_in_a_cond_branch", "cond", "WriteFile"),
      ("print_to_a_file", "print_to_file", "PrintV2"),
      ("dataset_writer", "dataset", "DatasetToTFRecord"))
  def test_refused_before_anything_runs(self, hide, op_type):
    directory = self.create_tempdir().full_path
    target = os.path.join(self.create_tempdir().full_path, "touched")
    prefix = _write_graph(directory, hide, target)
    export_dir = os.path.join(self.create_tempdir().full_path, "export")
    with self.assertRaisesRegex(
        errors.TfvaeError, rf"{op_type}.*refusing.*--allow_unsafe_ops"):
      migrate.build_generator(prefix, export_dir, latent_tensor="z:0",
                              output_tensor="images:0")
    # Nothing of the graph ran (not even the verification against the TF1
    # session), and nothing was published.
    self.assertFalse(os.path.exists(target))
    self.assertFalse(os.path.exists(export_dir) and os.listdir(export_dir))

  @parameterized.named_parameters(
      ("function", "function", "WriteFile"),
      ("cond", "cond", "WriteFile"),
      ("print_to_file", "print_to_file", "PrintV2"))
  def test_inspect_reports_the_hidden_op(self, hide, op_type):
    directory = self.create_tempdir().full_path
    target = os.path.join(self.create_tempdir().full_path, "touched")
    _write_graph(directory, hide, target)
    meta = migrate.MetaGraph(os.path.join(directory, "model.meta"))
    found = meta.unsafe_ops()
    self.assertIn(op_type, [f.type for f in found])
    self.assertFalse(os.path.exists(target))

  def test_a_clean_graph_passes_the_allow_list(self):
    graph = tf.Graph()
    with graph.as_default():
      z = tf.compat.v1.placeholder(tf.float32, [None, _LATENT], name="z")
      w = tf.compat.v1.get_variable("w", [_LATENT, _PIXELS])
      out = tf.identity(tf.sigmoid(tf.matmul(z, w)), name="images")
      saver = tf.compat.v1.train.Saver()
      with tf.compat.v1.Session(graph=graph) as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        directory = self.create_tempdir().full_path
        prefix = saver.save(sess, os.path.join(directory, "model"))
        expected = sess.run(out, {z: np.ones([3, _LATENT], np.float32)})
    meta = migrate.MetaGraph(prefix + ".meta")
    path = migrate.DecodePath(meta, meta.tensor("z:0"),
                              meta.tensor("images:0"))
    self.assertEqual(path.unsafe_ops(), [])
    export_dir = os.path.join(self.create_tempdir().full_path, "export")
    version = migrate.build_generator(prefix, export_dir,
                                      latent_tensor="z:0",
                                      output_tensor="images:0",
                                      image_shape="4,4,1")
    got = tf.saved_model.load(version).signatures["decode"](
        z=tf.ones([3, _LATENT]))["mean"]
    self.assertAllClose(np.reshape(got, expected.shape), expected, atol=1e-6)


if __name__ == "__main__":
  tf.test.main()
