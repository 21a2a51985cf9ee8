"""Tests of `config`: each field's help, choices and check, stated once."""
from absl.testing import absltest
from absl.testing import parameterized

from tfvae import config as config_lib
from tfvae import errors
from tfvae import kinds


class ValidateTest(parameterized.TestCase):

  def test_defaults_are_valid(self):
    config_lib.Config().validate()

  @parameterized.parameters(
      ("dataset", "cifar", "--dataset='cifar': choose one of fashion_mnist, "
       "mnist"),
      ("model", "gan", "--model='gan': choose one of vae, iwae, cvae, ae, "
       "denoising_ae, sparse_ae, contractive_ae"),
      ("network", "rnn", "--network='rnn': choose mlp or conv"),
      ("latent_dim", 0, "--latent_dim=0: must be positive"),
      ("hidden_sizes", (8, 0), "--hidden_sizes=(8, 0): widths must be "
       "positive"),
      ("binarize", "yes", "--binarize='yes': choose one of none, static, "
       "dynamic"),
      ("batch_size", 0, "--batch_size=0: must be positive"),
      ("epochs", -1, "--epochs=-1: must not be negative"),
      ("learning_rate", 0.0, "--learning_rate=0.0: must be positive"),
      ("optimizer", "sgd", "--optimizer='sgd': choose one of adam, rmsprop"),
      ("strategy", "tpu", "--strategy='tpu': choose one of default, "
       "mirrored, multi_worker"),
      ("beta", -1.0, "--beta=-1.0: must not be negative"),
      ("gaussian_scale", 0.0, "--gaussian_scale=0.0: must be positive"),
      ("steps_per_call", 0, "--steps_per_call=0: must be positive"),
      ("save_every_steps", 0, "--save_every_steps=0: must be positive"),
      ("keep_checkpoints", 0, "--keep_checkpoints=0: must be positive"),
      ("clip_norm", -1.0, "--clip_norm=-1.0: must not be negative"),
      ("free_bits", -1.0, "--free_bits=-1.0: must not be negative"),
      ("num_importance_samples", 0, "--num_importance_samples=0: must be "
       "positive"),
      ("num_classes", 0, "--num_classes=0: must be positive"),
      ("sparsity_penalty", "l2", "--sparsity_penalty='l2': choose kl or l1"),
      ("sparsity_weight", -0.5, "--sparsity_weight=-0.5: must not be "
       "negative"),
      ("sparsity_target", 1.0, "--sparsity_target=1.0: must be in (0, 1)"),
      ("contractive_weight", -0.1, "--contractive_weight=-0.1: must not be "
       "negative"),
      ("likelihood", "poisson", "--likelihood: unknown likelihood "
       "'poisson'; choose one of bernoulli, continuous_bernoulli, gaussian, "
       "gaussian_learned, gaussian_identity, gaussian_log_variance, "
       "gaussian_log_variance_identity"),
      ("activation", "step", "--activation: unknown activation 'step'; "
       "choose one of elu, gelu, leaky_relu, relu, selu, sigmoid, softplus, "
       "swish, tanh"),
  )
  def test_bad_value_message(self, field, value, message):
    config = config_lib.Config(**{field: value})
    with self.assertRaises(errors.TfvaeError) as raised:
      config.validate()
    self.assertEqual(str(raised.exception), message)

  @parameterized.parameters(("kl_schedule", "linear:"),
                            ("noise", "gaussian"))
  def test_bad_spec_names_the_flag(self, field, value):
    with self.assertRaisesRegex(errors.TfvaeError, f"--{field}="):
      config_lib.Config(**{field: value}).validate()

  @parameterized.parameters(
      # The first bad field named is the one earlier versions checked first.
      ({"batch_size": 0, "gaussian_scale": 0.0}, "--batch_size"),
      ({"gaussian_scale": 0.0, "steps_per_call": 0}, "--gaussian_scale"),
      ({"binarize": "x", "beta": -1.0}, "--binarize"),
      ({"clip_norm": -1.0, "free_bits": -1.0}, "--clip_norm"),
      ({"strategy": "x", "beta": -1.0}, "--strategy"),
      # The likelihood, activation and spec checks come after all the others.
      ({"likelihood": "x", "contractive_weight": -1.0}, "--contractive_weight"),
      ({"activation": "x", "likelihood": "y"}, "--likelihood"),
      ({"noise": "x", "kl_schedule": "y", "activation": "z"}, "--activation"),
      ({"noise": "x", "kl_schedule": "y"}, "--kl_schedule"),
  )
  def test_checks_run_in_the_order_of_earlier_versions(self, fields, flag):
    with self.assertRaisesRegex(errors.TfvaeError, f"^{flag}[=:]"):
      config_lib.Config(**fields).validate()


class FieldsTest(absltest.TestCase):

  def test_every_field_is_documented(self):
    for field in config_lib.fields():
      self.assertGreater(len(field.help), 10, field.name)

  def test_choices_come_from_the_kinds(self):
    by_name = {field.name: field for field in config_lib.fields()}
    self.assertEqual(by_name["model"].choices, kinds.names())
    self.assertEqual(by_name["likelihood"].choices, kinds.likelihood_names())
    for name in kinds.names():
      self.assertIn(f"{name} ({kinds.get(name).description})",
                    by_name["model"].help)

  def test_types_and_defaults_match_the_dataclass(self):
    config = config_lib.Config()
    for field in config_lib.fields():
      self.assertEqual(getattr(config, field.name), field.default, field.name)
      if field.default is not None:
        self.assertIsInstance(field.default, field.type, field.name)

  def test_resumable_fields(self):
    self.assertEqual(
        config_lib.RESUMABLE_FIELDS,
        {"epochs", "data_dir", "save_every_steps", "keep_checkpoints", "jit",
         "strategy", "steps_per_call", "log_every_steps", "cpu_devices",
         "data", "test_data"})

  def test_only_data_and_migrated_architecture_have_no_flag(self):
    # The migrated architecture fields are read from a TF1 or Keras graph by
    # tfvae-migrate (issue 14), not chosen by hand.
    self.assertEqual(
        [f.name for f in config_lib.fields() if not f.on_command_line],
        ["optimizer_rho", "optimizer_epsilon", "image_shape",
         "decoder_hidden_sizes", "encoder_activations", "decoder_activations",
         "decoder_conv_channels", "encoder_conv_layers",
         "decoder_conv_layers", "posterior_scale", "posterior_scale_floor"])

  def test_differences_ignore_resumable_fields(self):
    a = config_lib.Config()
    b = a.replace(epochs=20, jit=True, latent_dim=3, beta=2.0)
    self.assertEqual(a.differences(b), ["beta", "latent_dim"])
    self.assertEqual(a.differences(b, ignore=()),
                     ["beta", "epochs", "jit", "latent_dim"])


class TrainFlagsTest(absltest.TestCase):

  def test_train_defines_a_flag_per_field(self):
    from tools import train  # pylint: disable=g-import-not-at-top
    for field in config_lib.fields():
      if not field.on_command_line:
        continue
      flag = train.FLAGS[field.name]
      self.assertTrue(flag.help.endswith(field.help), field.name)
      expected = (list(map(str, field.default)) if field.type is tuple
                  else field.default)
      self.assertEqual(flag.default, expected, field.name)


if __name__ == "__main__":
  absltest.main()
