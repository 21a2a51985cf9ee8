"""Faults of issue 18 in configs, flags and resumes: each gets one line."""
import json
import os

from absl.testing import absltest
from absl.testing import parameterized

from tfvae import config as config_lib
from tfvae import errors


def _write_config(directory, **changes):
  """Writes a default config.json with `changes` into `directory`."""
  d = config_lib.Config(image_shape=(28, 28, 1)).to_dict()
  d.update(changes)
  path = os.path.join(directory, "config.json")
  with open(path, "w") as f:
    json.dump(d, f)
  return path


class HandEditedConfigTest(parameterized.TestCase):

  @parameterized.parameters(
      ("latent_dim", "2", 'latent_dim: expected an integer, found "2"'),
      ("batch_size", None, "batch_size: expected an integer, found null"),
      ("learning_rate", "fast",
       'learning_rate: expected a number, found "fast"'),
      ("seed", "abc", 'seed: expected an integer, found "abc"'),
      ("hidden_sizes", "512",
       'hidden_sizes: expected a list of integers, found "512"'),
      ("hidden_sizes", [512.5],
       "hidden_sizes: expected a list of integers, found [512.5]"),
      ("latent_dim", 2.5, "latent_dim: expected an integer, found 2.5"),
      ("jit", "yes", 'jit: expected true or false, found "yes"'),
      ("image_shape", [28, 28],
       "image_shape: expected a list of 3 integers or null, found [28, 28]"),
      ("data_dir", 7, "data_dir: expected a string or null, found 7"),
      ("model", "gan", "model='gan': choose one of vae, iwae"),
      ("activation", "step", "activation: unknown activation 'step'"),
      ("learning_rate", float("inf"), "learning_rate=inf: must be finite"),
      ("beta", float("nan"), "beta=nan: must be finite"),
      ("seed", 2**64, "seed=18446744073709551616: must fit in a signed "
       "64-bit integer"),
      ("log_every_steps", 0, "log_every_steps=0: must be positive"),
  )
  def test_load_names_the_file_the_field_and_the_expected_type(
      self, field, value, message):
    path = _write_config(self.create_tempdir().full_path, **{field: value})
    with self.assertRaises(errors.RunDirError) as raised:
      config_lib.load(path)
    text = str(raised.exception)
    self.assertStartsWith(text, f"{path}: {message}")
    self.assertNotIn("\n", text)

  def test_a_good_config_loads_with_its_types(self):
    path = _write_config(self.create_tempdir().full_path, hidden_sizes=[8, 4],
                         learning_rate=1)
    config = config_lib.load(path)
    self.assertEqual(config.hidden_sizes, (8, 4))
    self.assertEqual(config.image_shape, (28, 28, 1))
    self.assertIsInstance(config.learning_rate, float)

  def test_from_dict_refuses_a_string_for_a_list(self):
    # Before: "512" became the widths (5, 1, 2).
    with self.assertRaisesRegex(config_lib.FieldTypeError, "^hidden_sizes:"):
      config_lib.Config.from_dict({"hidden_sizes": "512"})

  def test_save_writes_standard_json(self):
    path = os.path.join(self.create_tempdir().full_path, "config.json")
    with self.assertRaises(ValueError):
      config_lib.save(config_lib.Config(learning_rate=float("inf")), path)
    self.assertFalse(os.path.exists(path))


class FlagValuesTest(parameterized.TestCase):

  @parameterized.parameters(
      ("log_every_steps", 0, "--log_every_steps=0: must be positive"),
      ("log_every_steps", -5, "--log_every_steps=-5: must be positive"),
      ("cpu_devices", -1, "--cpu_devices=-1: must not be negative"),
      ("seed", 2**63, "--seed=9223372036854775808: must fit in a signed "
       "64-bit integer"),
      ("learning_rate", float("inf"), "--learning_rate=inf: must be finite"),
      ("gaussian_scale", float("nan"), "--gaussian_scale=nan: must be "
       "finite"),
  )
  def test_validate_refuses(self, field, value, message):
    with self.assertRaises(errors.TfvaeError) as raised:
      config_lib.Config(**{field: value}).validate()
    self.assertEqual(str(raised.exception), message)

  def test_the_int64_extremes_are_valid_seeds(self):
    config_lib.Config(seed=2**63 - 1).validate()
    config_lib.Config(seed=-2**63).validate()


class EffectiveValuesTest(absltest.TestCase):

  def test_an_explicit_default_activation_is_no_difference(self):
    saved = config_lib.Config(network="mlp", activation=None)
    self.assertEqual(saved.replace(activation="tanh").differences(saved), [])
    self.assertEqual(saved.replace(activation="relu").differences(saved),
                     ["activation"])
    conv = saved.replace(network="conv")
    self.assertEqual(conv.replace(activation="relu").differences(conv), [])


if __name__ == "__main__":
  absltest.main()
