"""Leftovers of exports that died are removed by the next export."""
import os

import tensorflow as tf

from tfvae import export


def _module():
  module = tf.Module()
  module.scale = tf.Variable(2.0)
  module.double = tf.function(
      lambda x: {"y": module.scale * x},
      input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
  return module


class ExportLeftoversTest(tf.test.TestCase):

  def test_a_dead_exports_temporary_version_is_removed_by_the_next(self):
    export_dir = self.create_tempdir().full_path
    dead = os.path.join(export_dir, ".tmp-1-k2j4h5")
    os.makedirs(os.path.join(dead, "variables"))
    with open(os.path.join(dead, "saved_model.pb"), "wb") as f:
      f.write(b"half")
    # Names that are not tfvae's temporary versions stay.
    other = os.path.join(export_dir, ".tmp-notours")
    os.makedirs(other)
    module = _module()
    path = export.publish(module, export_dir,
                          signatures={"serving_default": module.double})
    self.assertEqual(sorted(os.listdir(export_dir)), [".tmp-notours", "1"])
    self.assertEqual(path, os.path.join(export_dir, "1"))
    loaded = tf.saved_model.load(path)
    self.assertAllClose(
        loaded.signatures["serving_default"](x=tf.constant([1.5]))["y"],
        [3.0])


if __name__ == "__main__":
  tf.test.main()
