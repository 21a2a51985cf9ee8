"""tfvae-migrate on Keras 2 VAEs: HDF5 read with h5py, Lambda never loaded.

The Keras example's MLP VAE is written by tf_keras here (`keras_fixtures`),
saved with `model.save` and with `save_weights` (+ `to_json`) in HDF5 and as
a Keras SavedModel directory, migrated, and
the restored run compared with the Keras model itself on real test images.
"""
import json
import os
import shutil
import tempfile

from absl.testing import parameterized
import h5py
import numpy as np
import tensorflow as tf

from tests import keras_fixtures
from tests import util
from tfvae import input_pipeline
from tfvae import objectives
from tfvae import runs
from tfvae.migrate import full_model
from tfvae.migrate import keras_h5


class MigrateKerasTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp(prefix="tfvae_migrate_keras_")
    cls.files = {}
    cls.models = {}
    for name, how, hidden, activations, network in (
        ("model", "model", (256,), None, "mlp"),
        ("weights", "weights", (32, 16), ["tanh", "elu"], "mlp"),
        ("savedmodel", "savedmodel", (24,), ["softplus"], "mlp"),
        ("conv", "model", None, None, "conv")):
      path, vae = keras_fixtures.write_fixture(
          os.path.join(cls.root, name), how, hidden=hidden,
          activations=activations, network=network,
          steps=1 if network == "conv" else 3)
      cls.files[name] = path
      cls.models[name] = vae
    cls.images = input_pipeline.scale(
        util.fashion_mnist().test.images[200:216]).numpy()

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()

  def _keras_config(self, how):
    return (os.path.join(self.root, how, "vae.json") if how == "weights"
            else None)

  @parameterized.named_parameters(("model_save", "model"),
                                  ("save_weights", "weights"),
                                  ("keras_savedmodel", "savedmodel"),
                                  ("classic_conv_vae", "conv"))
  def test_migrated_run_agrees_with_the_keras_model(self, how):
    run_dir = os.path.join(self.get_temp_dir(), how)
    result = full_model.migrate_model(self.files[how], run_dir,
                                      keras_config=self._keras_config(how))
    self.assertLess(max(result.agreement.values()), 1e-5)
    _, model, _ = runs.restore_model(run_dir)
    vae = self.models[how]
    encoder = vae.get_layer("encoder")
    decoder = vae.get_layer("decoder")
    flat = (self.images if how == "conv" else self.images.reshape(16, -1))
    z_mean, z_log_var, _ = encoder(flat)
    posterior = model.approx_posterior(tf.constant(self.images))
    self.assertAllClose(posterior.loc, z_mean, atol=1e-5, rtol=0)
    self.assertAllClose(posterior.scale.diag_part(),
                        np.exp(0.5 * z_log_var.numpy()), atol=1e-5, rtol=0)
    noise = np.random.RandomState(2).normal(size=(16, 2)).astype(np.float32)
    z = objectives.reparameterize(posterior, tf.constant(noise))
    self.assertAllClose(
        model.decoder.outputs(z)["mean"].numpy().reshape(16, -1),
        tf.reshape(decoder(z_mean + tf.exp(0.5 * z_log_var) * noise),
                   [16, -1]), atol=1e-5, rtol=0)
    if how == "conv":
      self.assertEqual(result.config.network, "conv")
      self.assertEqual(result.config.decoder_conv_channels, (64, 32))

  def test_weights_only_file_asks_for_the_configuration(self):
    with self.assertRaisesRegex(keras_h5.KerasModelError,
                                r"weights only.*--keras_config"):
      full_model.migrate_model(self.files["weights"],
                               os.path.join(self.get_temp_dir(), "none"))

  def test_the_lambda_function_is_never_loaded(self):
    # Replace the sampling Lambda's marshalled bytecode by bytes that no
    # Python could load: migrating works all the same.
    path = os.path.join(self.get_temp_dir(), "garbage_lambda.h5")
    shutil.copy(self.files["model"], path)
    with h5py.File(path, "r+") as f:
      config = json.loads(f.attrs["model_config"])
      found = []

      def scrub(model):
        for layer in model["config"]["layers"]:
          if layer["class_name"] == "Lambda":
            layer["config"]["function"] = ["bm90IGNvZGU=\n", None, None]
            found.append(layer["config"]["name"])
          if layer["class_name"] == "Functional":
            scrub(layer)

      scrub(config)
      self.assertEqual(found, ["z"])
      f.attrs["model_config"] = json.dumps(config)
    result = full_model.migrate_model(
        path, os.path.join(self.get_temp_dir(), "garbage_run"))
    self.assertLess(max(result.agreement.values()), 1e-5)
    self.assertEqual(result.config.posterior_scale, "log_variance")
    self.assertEqual(result.config.hidden_sizes, (256,))


if __name__ == "__main__":
  tf.test.main()
