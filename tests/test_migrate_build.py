"""Tests of generators built from tfvae run directories, and of seed 003.

The TF1 fixtures are shared with test_migrate_surgery (written once per
process).
"""
import json
import os
import re
import shutil
from unittest import mock

import numpy as np
import tensorflow as tf

from tests import migrate_fixtures
from tests import util
from tests.test_migrate_surgery import _decode
from tests.test_migrate_surgery import _fixture
from tests.test_migrate_surgery import _versions
import tfvae
from tfvae import errors
from tfvae import images
from tfvae import migrate
from tfvae import runs
from tfvae import launch
from tfvae.migrate import reader


class RunDirTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.run_dir = os.path.join(tf.compat.v1.test.get_temp_dir(), "run")
    config = tfvae.Config(epochs=1, batch_size=32, hidden_sizes=(32,),
                          latent_dim=2, save_every_steps=10**6,
                          log_every_steps=10**6)
    launch.run(config, cls.run_dir,
                 dataset=util.small_fashion_mnist(num_train=64, num_test=32))

  def _assert_is_the_runs_decoder(self, path, checkpoint=None):
    _, model, _ = runs.restore_model(self.run_dir, checkpoint)
    z = migrate_fixtures.latent_points(2)
    expected = model.decoder.outputs(tf.constant(z))
    got = _decode(path, z)
    self.assertEqual(sorted(got), sorted(expected))
    for key in expected:
      self.assertAllClose(got[key], expected[key], atol=1e-6, rtol=0)
    # Only the decoder is saved: its weights, none of the encoder's.
    saved = [name for name, _ in tf.train.list_variables(
        os.path.join(path, "variables", "variables"))
             if name.endswith("VARIABLE_VALUE")]
    self.assertLen(saved, len(model.decoder.trainable_variables))
    self.assertTrue(all(name.startswith("decoder/") for name in saved), saved)
    with open(os.path.join(path, "assets.extra", migrate.publish.SOURCE_RECORD)) as f:
      self.assertEqual(json.load(f)["run_dir"], os.path.abspath(self.run_dir))

  def test_run_dir_gives_its_decoder(self):
    export_dir = os.path.join(self.get_temp_dir(), "export")
    path = migrate.build_generator(self.run_dir, export_dir)
    self.assertEqual(path, os.path.join(export_dir, "1"))
    self.assertEqual(migrate.device_pins(path), [])
    self._assert_is_the_runs_decoder(path)
    generated = tf.saved_model.load(path).signatures["generate"](
        seed=tf.constant([1, 2], tf.int64))
    self.assertEqual(generated["images"].shape, (2, 28, 28, 1))

  def test_tf2_checkpoint_in_the_run(self):
    prefix = runs.newest_intact_checkpoint(runs.ckpt_dir(self.run_dir))
    self.assertEqual(reader.resolve(prefix).kind,
                     reader.SOURCE_TF2_CHECKPOINT)
    export_dir = os.path.join(self.get_temp_dir(), "export")
    path = migrate.build_generator(prefix, export_dir, version=4)
    self.assertEqual(os.path.basename(path), "4")
    self._assert_is_the_runs_decoder(path, prefix)

  def test_tf2_checkpoint_outside_a_run_is_refused(self):
    ckpt = tf.train.Checkpoint(w=tf.Variable(tf.ones([2, 3])))
    prefix = ckpt.save(os.path.join(self.get_temp_dir(), "tf2", "ckpt"))
    export_dir = os.path.join(self.get_temp_dir(), "export")
    with self.assertRaisesRegex(errors.TfvaeError,
                                re.escape(prefix) + ".*config.json"):
      migrate.build_generator(prefix, export_dir)
    self.assertEqual(_versions(export_dir), [])

  def test_run_dir_without_a_usable_config_is_refused(self):
    run_dir = os.path.join(self.get_temp_dir(), "bad-run")
    shutil.copytree(self.run_dir, run_dir)
    with open(runs.config_path(run_dir), "w") as f:
      f.write("{}")
    export_dir = os.path.join(self.get_temp_dir(), "export")
    with self.assertRaisesRegex(errors.TfvaeError,
                                re.escape(runs.config_path(run_dir))) as c:
      migrate.build_generator(run_dir, export_dir)
    self.assertNotIn("\n", str(c.exception))
    self.assertEqual(_versions(export_dir), [])

  def test_reloaded_mismatch_is_not_published(self):
    export_dir = os.path.join(self.get_temp_dir(), "export")
    real = migrate.DecoderGenerator.__init__

    def perturbed(module, decoder, name=None):
      real(module, decoder, name)
      decode_fn = lambda z: {k: v + 1e-3 for k, v in decoder.outputs(z).items()}
      module.decode, module.generate = tfvae.export.generator_functions(
          decode_fn, decoder.latent_size)

    with mock.patch.object(migrate.DecoderGenerator, "__init__", perturbed):
      with self.assertRaisesRegex(errors.TfvaeError,
                                  "differs from the decoder of run"):
        migrate.build_generator(self.run_dir, export_dir)
    self.assertEqual(_versions(export_dir), [])


class Seed003Test(tf.test.TestCase):
  """The issue's "done when": z = [3, 3] through a graph found unaided."""

  def test_z_3_3_draws_the_tf1_picture(self):
    directory = _fixture("seed003")
    expected = np.load(os.path.join(directory, "expected.npz"))
    self.assertAllEqual(expected["z"][-1], [3., 3.])
    tf1_picture = expected["output"][-1].reshape(28, 28, 1)
    export_dir = os.path.join(self.get_temp_dir(), "export")
    path = migrate.build_generator(directory, export_dir)
    got = _decode(path, np.array([[3., 3.]], np.float32))["mean"].numpy()
    self.assertAllClose(got[0], tf1_picture, atol=1e-5, rtol=0)
    png = images.write_png(os.path.join(self.get_temp_dir(), "z33.png"),
                           images.grid(got))
    drawn = tf.io.decode_png(tf.io.read_file(png)).numpy()
    # Within rounding of the 8-bit grey levels TF1's pixels would get.
    self.assertAllClose(drawn, np.clip(tf1_picture, 0, 1) * 255, atol=0.51,
                        rtol=0)

if __name__ == "__main__":
  tf.test.main()
