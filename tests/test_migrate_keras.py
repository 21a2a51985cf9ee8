"""tfvae-migrate on Keras 2 VAEs: HDF5 read with h5py, Lambda never loaded.

The Keras example's MLP VAE is written by tf_keras here (`keras_fixtures`),
saved with `model.save` and with `save_weights` (+ `to_json`) in HDF5 and as
a Keras SavedModel directory, migrated, and
the restored run compared with the Keras model itself on real test images.
So are the other ways Keras VAEs circulated: the 2016 blog's one-model VAE
(log-sigma heads, no decoder model, RMSprop), keras.io's `Sampling` class
with encoder and decoder saved apart (an MLP decoder, a conv one ending
in a stride-1 Conv2DTranspose, and the subclassed VAE as a SavedModel), and the example's squared-error loss with
BatchNormalization, Activation and Dropout layers in the encoder; Keras
optimizer state is compared with the HDF5 file's own arrays.
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
from tfvae import launch
from tfvae import objectives
from tfvae import runs
from tfvae.migrate import full_model
from tfvae.migrate import keras_h5
from tfvae.migrate import keras_optimizer


class MigrateKerasTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp(prefix="tfvae_migrate_keras_")
    cls.files = {}
    cls.models = {}
    for name, how, hidden, activations, network in (
        ("model", "model", (256,), None, "mlp"),
        ("weights", "weights", (32, 16, 8), ["tanh", "elu", "selu"], "mlp"),
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

  def test_adam_state_and_learning_rate_are_carried(self):
    path = self.files["model"]  # Adam, 3 steps, model.save.
    run_dir = os.path.join(self.get_temp_dir(), "adam")
    result = full_model.migrate_model(path, run_dir,
                                      with_optimizer_state=True)
    self.assertEqual(result.config.optimizer, "adam")
    self.assertAllClose(result.config.learning_rate, 1e-3)
    self.assertEqual(result.step, 3)
    model, optimizer = _restored_optimizer(run_dir)
    self.assertEqual(int(optimizer.iterations), 3)
    for slot, attribute in (("m", "_momentums"), ("v", "_velocities")):
      arrays, _ = _h5_slots(path, slot)
      heads = model.encoder.net.layers[1]
      self.assertAllEqual(_slot(optimizer, attribute, heads.w),
                          np.concatenate([arrays["z_mean/kernel"],
                                          arrays["z_log_var/kernel"]], 1))
      self.assertAllEqual(
          _slot(optimizer, attribute, model.decoder.net.layers[1].b),
          arrays["decoder_output/bias"])

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


def _restored_optimizer(run_dir):
  """The run's model and its optimizer, restored from its checkpoint."""
  config, model, _ = runs.restore_model(run_dir)
  optimizer = launch.make_optimizer(config)
  optimizer.build(model.trainable_variables)
  tf.train.Checkpoint(model=model, optimizer=optimizer).restore(
      tf.train.latest_checkpoint(os.path.join(run_dir, "ckpt"))
  ).expect_partial()
  return model, optimizer


def _slot(optimizer, attribute, variable):
  index = optimizer._index_dict[optimizer._var_key(variable)]  # pylint: disable=protected-access
  return getattr(optimizer, attribute)[index].numpy()


def _h5_slots(path, slot):
  """{layer/kernel: array} of one optimizer slot, read with h5py alone."""
  found = {}
  with h5py.File(path, "r") as f:
    def collect(name, item):
      parts = name.split(":")[0].split("/")
      if isinstance(item, h5py.Dataset) and parts[1:2] == [slot]:
        found[f"{parts[-2]}/{parts[-1]}"] = np.asarray(item)
    f["optimizer_weights"].visititems(collect)
    step = int(np.asarray(f["optimizer_weights"]["iteration:0"]))
  return found, step


class MigrateKerasStylesTest(tf.test.TestCase, parameterized.TestCase):
  """The other ways Keras VAEs were written and saved."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp(prefix="tfvae_migrate_keras_styles_")
    cls.images = input_pipeline.scale(
        util.fashion_mnist().test.images[300:308]).numpy()
    cls.flat = cls.images.reshape(8, -1)
    cls.noise = np.random.RandomState(4).normal(size=(8, 2)).astype(
        np.float32)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()

  def _check_model(self, run_dir, z_mean, scale, decode):
    """The run's posterior and decoded mean against the Keras models'."""
    _, model, _ = runs.restore_model(run_dir)
    posterior = model.approx_posterior(tf.constant(self.images))
    self.assertAllClose(posterior.loc, z_mean, atol=1e-5, rtol=0)
    self.assertAllClose(posterior.scale.diag_part(), scale, atol=1e-5,
                        rtol=0)
    z = objectives.reparameterize(posterior, tf.constant(self.noise))
    self.assertAllClose(
        tf.reshape(model.decoder.outputs(z)["mean"], [8, -1]),
        np.reshape(decode(z_mean + scale * self.noise), [8, -1]),
        atol=1e-5, rtol=0)
    return model

  def test_blog_one_model_vae_with_its_rmsprop_state(self):
    path, stats, generator = keras_fixtures.blog_vae(
        os.path.join(self.root, "blog"))
    run_dir = os.path.join(self.get_temp_dir(), "blog_run")
    result = full_model.migrate_model(path, run_dir,
                                      with_optimizer_state=True)
    # Unnamed heads: the log scale is read off the add_loss KL's exp(2 r).
    self.assertEqual(result.config.posterior_scale, "log_scale")
    self.assertEqual(result.config.optimizer, "rmsprop")
    z_mean, z_log_sigma = [a.numpy() for a in stats(self.flat)]
    self._check_model(run_dir, z_mean, np.exp(z_log_sigma),
                      lambda z: generator(z).numpy())
    model, optimizer = _restored_optimizer(run_dir)
    rms, step = _h5_slots(path, "velocity")
    self.assertEqual(int(optimizer.iterations), step)
    self.assertEqual(step, 3)
    encoder, decoder = model.encoder.net.layers, model.decoder.net.layers
    pairs = [(encoder[0].w, rms["dense/kernel"]),
             (encoder[1].w, np.concatenate([rms["dense_1/kernel"],
                                            rms["dense_2/kernel"]], 1)),
             (encoder[1].b, np.concatenate([rms["dense_1/bias"],
                                            rms["dense_2/bias"]])),
             (decoder[0].w, rms["dense_3/kernel"]),
             (decoder[1].b, rms["dense_4/bias"])]
    for variable, expected in pairs:
      self.assertAllEqual(_slot(optimizer, "_velocities", variable),
                          expected)

  @parameterized.named_parameters(
      ("mlp_as_a_directory", False, False),
      ("conv_transpose_output", True, False),
      ("subclassed_vae_savedmodel", False, True))
  def test_encoder_and_decoder_saved_apart(self, conv_decoder, subclassed):
    name = f"split_{conv_decoder}_{subclassed}"
    encoder_path, decoder_path, encoder, decoder = keras_fixtures.split_vae(
        os.path.join(self.root, name), conv_decoder=conv_decoder,
        subclassed=subclassed)
    run_dir = os.path.join(self.get_temp_dir(), name)
    if conv_decoder:
      result = full_model.migrate_model(encoder_path, run_dir,
                                        decoder=decoder_path)
      self.assertEqual(result.config.decoder_conv_channels, (4, 3))
    elif subclassed:
      result = full_model.migrate_model(encoder_path, run_dir)
    else:
      result = full_model.migrate_model(os.path.dirname(encoder_path),
                                        run_dir)
    self.assertLess(max(result.agreement.values()), 1e-5)
    z_mean, z_log_var, _ = [a.numpy() for a in encoder(self.flat)]
    self._check_model(run_dir, z_mean, np.exp(0.5 * z_log_var),
                      lambda z: decoder(z).numpy())

  def test_conv_vae_of_any_kernels_strides_and_dense_layers(self):
    # 8x8 images; kernels 4 and 2, a Dense hidden layer, a Conv2D between
    # transposed ones and a stride-1 Conv2DTranspose (kernel 4) output.
    root = os.path.join(self.root, "conv_stack")
    os.makedirs(root)
    path = os.path.join(root, "vae.h5")
    _, encoder, decoder = keras_fixtures.conv_stack_vae(path)
    images = tf.image.resize(self.images, [8, 8]).numpy()
    data = {}
    for name in ("data", "test_data"):
      data[name] = os.path.join(root, f"{name}.npy")
      np.save(data[name], images)
    run_dir = os.path.join(root, "run")
    result = full_model.migrate_model(path, run_dir, data_fields=data)
    self.assertLess(max(result.agreement.values()), 1e-5)
    self.assertEqual(result.config.encoder_conv_layers,
                     "conv:3:4:2:relu,conv:4:3:1:elu,dense:6:tanh")
    self.assertEqual(
        result.config.decoder_conv_layers,
        "dense:2x2x3:relu,conv_transpose:4:4:2:relu,conv:3:2:1:softplus,"
        "conv_transpose:2:3:2:elu,conv_transpose:1:4:1:linear")
    self.assertAllClose(
        [result.config.optimizer_rho, result.config.optimizer_epsilon],
        [0.8, 1e-5], rtol=1e-6, atol=0)
    _, model, _ = runs.restore_model(run_dir)
    z_mean, z_log_var, _ = encoder.predict(images, verbose=0)
    posterior = model.approx_posterior(tf.constant(images))
    self.assertAllClose(posterior.loc, z_mean, atol=1e-5, rtol=0)
    self.assertAllClose(posterior.scale.diag_part(), np.exp(0.5 * z_log_var),
                        atol=1e-5, rtol=0)
    noise = np.random.RandomState(3).normal(size=(8, 2)).astype(np.float32)
    z = objectives.reparameterize(posterior, tf.constant(noise))
    self.assertAllClose(
        model.decoder.outputs(z)["mean"],
        decoder.predict(z_mean + np.exp(0.5 * z_log_var) * noise, verbose=0),
        atol=1e-5, rtol=0)

  def test_legacy_optimizer_weight_names_are_read(self):
    # Graph-mode (legacy) tf_keras optimizers name their slots
    # training/RMSprop/LAYER/kernel/rms:0 and the step training/RMSprop/iter.
    path = os.path.join(self.get_temp_dir(), "legacy.h5")
    rms = np.arange(6, dtype=np.float32).reshape(3, 2)
    with h5py.File(path, "w") as f:
      f.attrs["training_config"] = json.dumps({"optimizer_config": {
          "class_name": "RMSprop", "config": {
              "name": "RMSprop", "learning_rate": 0.01, "rho": 0.8,
              "epsilon": 1e-7, "momentum": 0.0, "centered": False}}})
      group = f.create_group("optimizer_weights")
      group["training/RMSprop/dense/kernel/rms:0"] = rms
      group["training/RMSprop/dense/bias/rms:0"] = rms[0]
      group["training/RMSprop/iter:0"] = np.int64(17)
    optimizer = keras_optimizer.read_optimizer(path, {"dense/kernel",
                                                      "dense/bias"})
    fields, lines = keras_optimizer.config_fields(optimizer)
    self.assertEqual(fields, {"optimizer": "rmsprop",
                              "learning_rate": np.float32(0.01),
                              "optimizer_rho": 0.8,
                              "optimizer_epsilon": 1e-7})
    self.assertIn("rho=0.8 -> optimizer_rho", " ".join(lines))
    slots = keras_optimizer.slots_for(
        optimizer, {"w": ["dense/kernel"], "b": ["dense/bias"]}, {})
    self.assertEqual(slots["iterations"], 17)
    self.assertAllEqual(slots["slots"][("_velocities", "w")], rms)
    self.assertAllEqual(slots["slots"][("_velocities", "b")], rms[0])

  def test_squared_error_loss_batchnorm_and_dropout(self):
    path, encoder, decoder = keras_fixtures.gaussian_vae(
        os.path.join(self.root, "gaussian"))
    run_dir = os.path.join(self.get_temp_dir(), "gaussian")
    result = full_model.migrate_model(path, run_dir)
    # 784 * mean((x - m)^2) = sum (x - m)^2 / (2 s^2) with s^2 = 1/2.
    self.assertEqual(result.config.likelihood, "gaussian")
    self.assertAllClose(result.config.gaussian_scale, np.sqrt(0.5))
    z_mean, z_log_var, _ = [a.numpy() for a in encoder(self.flat,
                                                       training=False)]
    model = self._check_model(run_dir, z_mean, np.exp(0.5 * z_log_var),
                              lambda z: decoder(z).numpy())
    # The run's loss is the Keras loss plus log N's constant.
    keras_mean = decoder(z_mean + np.exp(0.5 * z_log_var) * self.noise)
    distortion = np.sum((self.flat - keras_mean.numpy()) ** 2, 1) + (
        392 * np.log(np.pi))
    kl = -0.5 * np.sum(1 + z_log_var - z_mean ** 2 - np.exp(z_log_var), 1)
    self.assertAllClose(
        -objectives.elbo(model, tf.constant(self.images),
                         noise=self.noise).elbo, distortion + kl,
        rtol=1e-5, atol=1e-3)
    with self.assertRaisesRegex(keras_h5.KerasModelError,
                                r"batch_normalization folded"):
      full_model.migrate_model(path, os.path.join(self.get_temp_dir(), "x"),
                               with_optimizer_state=True)


if __name__ == "__main__":
  tf.test.main()
