"""Tests of reading checkpoints tfvae did not write: TF1 and TF2."""
import os

from absl.testing import parameterized
import tensorflow as tf

from tests.test_migrate_surgery import _fixture
from tfvae import errors
from tfvae.migrate import reader


class CheckpointTest(tf.test.TestCase, parameterized.TestCase):

  def test_seed003_weights_and_rmsprop_slots(self):
    report = reader.verify(_fixture("seed003"))
    self.assertEqual(report.format, reader.TF1_FORMAT)
    self.assertEqual(report.source.kind, reader.SOURCE_TF1_PREFIX)
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
    report = reader.inspect(os.path.join(_fixture("adam"), "model.index"))
    kinds = {v.name: (v.kind, v.optimizer) for v in report.variables}
    self.assertEqual(kinds["beta1_power"],
                     (reader.BOOKKEEPING, "Adam"))
    self.assertEqual(kinds["Variable_4/Adam_1"], (reader.SLOT, "Adam"))
    self.assertLen(report.weights(), 10)

  def test_state_file_directory_and_prefix_agree(self):
    directory = _fixture("relu")
    self.assertEqual(reader.resolve(directory).prefix,
                     reader.resolve(directory + "/model.meta").prefix)
    self.assertEqual(reader.resolve(directory).meta_graph,
                     directory + "/model.meta")

  def test_tf2_checkpoint(self):
    ckpt = tf.train.Checkpoint(step=tf.Variable(42, dtype=tf.int64),
                               w=tf.Variable(tf.ones([2, 3])))
    ckpt.save(os.path.join(self.get_temp_dir(), "ckpt"))
    report = reader.inspect(self.get_temp_dir())
    self.assertEqual(report.format, reader.TF2_FORMAT)
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
    report = reader.inspect(prefix)
    self.assertEqual(report.step, 17)
    self.assertEqual([v.name for v in report.weights()], ["Variable"])

  def test_state_file_naming_missing_checkpoint(self):
    directory = self.get_temp_dir()
    with open(os.path.join(directory, "checkpoint"), "w") as f:
      f.write('model_checkpoint_path: "gone"\n')
    with self.assertRaisesRegex(errors.TfvaeError, "gone"):
      reader.resolve(directory)

if __name__ == "__main__":
  tf.test.main()
