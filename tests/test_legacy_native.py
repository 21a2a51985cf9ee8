"""Tests of generators built from run directories and mapped TF1 checkpoints.

The TF1 fixtures are shared with test_legacy (written once per process).
"""
import dataclasses
import json
import os
import re
import shutil
from unittest import mock

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tests import legacy_fixtures
from tests import util
from tests.test_legacy import _fixture
from tests.test_legacy import _run_tool
from tests.test_legacy import _versions
import tfvae
from tfvae import checkpoints
from tfvae import errors
from tfvae import images
from tfvae import launch
from tfvae import legacy
from tfvae import mapping
from tfvae import runs

# The decoder weights of the small fixtures (8x8 images, 16 hidden units,
# z of width 2), in the seed's creation order: Variable_3 and Variable_4 are
# the decoder's matrices, Variable_8 and Variable_9 its biases.
_SMALL_MAP = {
    "decoder/mlp/linear_0/w": "Variable_3",
    "decoder/mlp/linear_0/b": "Variable_8",
    "decoder/mlp/linear_1/w": "Variable_4",
    "decoder/mlp/linear_1/b": "Variable_9",
}
_SMALL_SPEC = mapping.DecoderSpec(latent_size=2, image_shape=(8, 8, 1),
                                  hidden_sizes=(16,))


def _without_meta(test, name, **options):
  """A private copy of a fixture (written with `options`) minus its .meta."""
  directory = os.path.join(test.get_temp_dir(), name + "-nometa")
  shutil.rmtree(directory, ignore_errors=True)
  if options:
    legacy_fixtures.write_fixture(directory, **options)
  else:
    shutil.copytree(_fixture(name), directory)
  os.remove(os.path.join(directory, "model.meta"))
  return directory


def _decode(path, z):
  return tf.saved_model.load(path).signatures["decode"](z=tf.constant(z))


def _assert_matches_tf1(test, path, directory):
  expected = np.load(os.path.join(directory, "expected.npz"))
  got = _decode(path, expected["z"])["mean"].numpy()
  test.assertAllClose(got.reshape(expected["output"].shape),
                      expected["output"], atol=1e-5, rtol=0)


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
    z = legacy_fixtures.latent_points(2)
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
    with open(os.path.join(path, "assets.extra", legacy.SOURCE_RECORD)) as f:
      self.assertEqual(json.load(f)["run_dir"], os.path.abspath(self.run_dir))

  def test_run_dir_gives_its_decoder(self):
    export_dir = os.path.join(self.get_temp_dir(), "export")
    path = legacy.build_generator(self.run_dir, export_dir)
    self.assertEqual(path, os.path.join(export_dir, "1"))
    self.assertEqual(legacy.device_pins(path), [])
    self._assert_is_the_runs_decoder(path)
    generated = tf.saved_model.load(path).signatures["generate"](
        seed=tf.constant([1, 2], tf.int64))
    self.assertEqual(generated["images"].shape, (2, 28, 28, 1))

  def test_tf2_checkpoint_in_the_run(self):
    prefix = runs.newest_intact_checkpoint(runs.ckpt_dir(self.run_dir))
    self.assertEqual(checkpoints.resolve(prefix).kind,
                     checkpoints.SOURCE_TF2_CHECKPOINT)
    export_dir = os.path.join(self.get_temp_dir(), "export")
    path = legacy.build_generator(prefix, export_dir, version=4)
    self.assertEqual(os.path.basename(path), "4")
    self._assert_is_the_runs_decoder(path, prefix)

  def test_tf2_checkpoint_outside_a_run_is_refused(self):
    ckpt = tf.train.Checkpoint(w=tf.Variable(tf.ones([2, 3])))
    prefix = ckpt.save(os.path.join(self.get_temp_dir(), "tf2", "ckpt"))
    export_dir = os.path.join(self.get_temp_dir(), "export")
    with self.assertRaisesRegex(errors.TfvaeError,
                                re.escape(prefix) + ".*config.json"):
      legacy.build_generator(prefix, export_dir)
    self.assertEqual(_versions(export_dir), [])

  def test_run_dir_without_a_usable_config_is_refused(self):
    run_dir = os.path.join(self.get_temp_dir(), "bad-run")
    shutil.copytree(self.run_dir, run_dir)
    with open(runs.config_path(run_dir), "w") as f:
      f.write("{}")
    export_dir = os.path.join(self.get_temp_dir(), "export")
    with self.assertRaisesRegex(errors.TfvaeError,
                                re.escape(runs.config_path(run_dir))) as c:
      legacy.build_generator(run_dir, export_dir)
    self.assertNotIn("\n", str(c.exception))
    self.assertEqual(_versions(export_dir), [])

  def test_reloaded_mismatch_is_not_published(self):
    export_dir = os.path.join(self.get_temp_dir(), "export")
    real = legacy.DecoderGenerator.__init__

    def perturbed(module, decoder, name=None):
      real(module, decoder, name)
      decode_fn = lambda z: {k: v + 1e-3 for k, v in decoder.outputs(z).items()}
      module.decode, module.generate = tfvae.export.generator_functions(
          decode_fn, decoder.latent_size)

    with mock.patch.object(legacy.DecoderGenerator, "__init__", perturbed):
      with self.assertRaisesRegex(errors.TfvaeError,
                                  "differs from the decoder of run"):
        legacy.build_generator(self.run_dir, export_dir)
    self.assertEqual(_versions(export_dir), [])


class MappedCheckpointTest(tf.test.TestCase, parameterized.TestCase):

  def test_map_by_name_decodes_like_the_tf1_session(self):
    directory = _without_meta(self, "relu")
    export_dir = os.path.join(self.get_temp_dir(), "export")
    spec = dataclasses.replace(_SMALL_SPEC, activation="relu")
    path = legacy.build_generator(directory, export_dir, decoder_spec=spec,
                                  variable_map=_SMALL_MAP)
    _assert_matches_tf1(self, path, directory)
    self.assertEqual(legacy.device_pins(path), [])
    with open(os.path.join(path, "assets.extra", legacy.SOURCE_RECORD)) as f:
      record = json.load(f)
    self.assertEqual(record["mapping"], _SMALL_MAP)
    self.assertEqual(record["unused_weights"],
                     ["Variable", "Variable_1", "Variable_2", "Variable_5",
                      "Variable_6", "Variable_7"])
    self.assertLen(record["unused_optimizer_state"], 20)

  def test_meta_ignored_with_no_meta_and_gaussian_mean(self):
    directory = _fixture("gaussian")
    export_dir = os.path.join(self.get_temp_dir(), "export")
    spec = dataclasses.replace(_SMALL_SPEC, likelihood="gaussian",
                               gaussian_scale=0.5)
    path = legacy.build_generator(directory, export_dir, no_meta=True,
                                  decoder_spec=spec, variable_map=_SMALL_MAP)
    _assert_matches_tf1(self, path, directory)
    expected = np.load(os.path.join(directory, "expected.npz"))
    outputs = _decode(path, expected["z"])
    self.assertAllEqual(outputs["scale"], tf.fill(outputs["mean"].shape, 0.5))

  def test_unique_shapes_match_automatically(self):
    # Decoder hidden width 12, encoder 16: every decoder shape is unique.
    directory = _without_meta(self, "asymmetric", decoder_hidden_size=12,
                              shuffled=True, activation="sigmoid")
    export_dir = os.path.join(self.get_temp_dir(), "export")
    spec = dataclasses.replace(_SMALL_SPEC, hidden_sizes=(12,),
                               activation="sigmoid")
    with self.assertLogs("absl", level="INFO") as logs:
      path = legacy.build_generator(directory, export_dir, decoder_spec=spec)
    _assert_matches_tf1(self, path, directory)
    # Every checkpoint variable is listed as used or unused.
    report = checkpoints.inspect(directory)
    text = "\n".join(logs.output)
    used = re.findall(r"Used: (\S+) .* -> (\S+) \(by shape\)", text)
    self.assertLen(used, 4)
    unused = re.findall(r"Unused: (\S+) ", text)
    state = re.search(r"Unused optimizer slots and bookkeeping \(\d+\): (.*)",
                      text).group(1).split(", ")
    self.assertCountEqual([name for name, _ in used] + unused + state,
                          [v.name for v in report.variables])

  def test_seed003_shapes_are_ambiguous(self):
    directory = _without_meta(self, "seed003")
    export_dir = os.path.join(self.get_temp_dir(), "export")
    with self.assertRaises(errors.TfvaeError) as caught:
      legacy.build_generator(directory, export_dir)
    message = str(caught.exception)
    self.assertNotIn("\n", message)
    self.assertRegex(message, r"decoder/mlp/linear_0/b \[512\] could be any "
                     r"of Variable_5, Variable_8")
    self.assertIn("decoder/mlp/linear_0/w=Variable_3", message)
    self.assertIn("--map", message)
    self.assertEqual(_versions(export_dir), [])

  def test_map_file(self):
    directory = _without_meta(self, "relu")
    map_file = os.path.join(self.get_temp_dir(), "map.json")
    with open(map_file, "w") as f:
      json.dump({k + ":0": v for k, v in _SMALL_MAP.items()}, f)
    self.assertEqual(mapping.read_mapping_file(map_file), _SMALL_MAP)
    entries = [",".join(f"{k}={v}" for k, v in list(_SMALL_MAP.items())[:2]),
               *[f"{k}={v}" for k, v in list(_SMALL_MAP.items())[2:]]]
    self.assertEqual(mapping.parse_mapping(entries), _SMALL_MAP)

  @parameterized.named_parameters(
      ("unassigned", {"decoder/mlp/linear_1/b": None},
       r"decoder weight decoder/mlp/linear_1/b \[64\] is not mapped"),
      ("missing_variable", {"decoder/mlp/linear_1/b": "Variable_42"},
       r"variable Variable_42 \(mapped to decoder/mlp/linear_1/b\) is not in "
       r"checkpoint"),
      ("shape", {"decoder/mlp/linear_0/w": "Variable_4"},
       r"variable Variable_4 has shape \[16, 64\] but decoder weight "
       r"decoder/mlp/linear_0/w needs \[2, 16\]"),
      ("twice", {"decoder/mlp/linear_1/b": "Variable_8"},
       "Variable_8 is mapped to both"),
      ("unknown_weight", {"decoder/mlp/linear_2/w": "Variable"},
       "names decoder/mlp/linear_2/w, which is not a weight"))
  def test_bad_mapping_is_one_line(self, change, pattern):
    directory = _without_meta(self, "relu")
    variable_map = dict(_SMALL_MAP, **change)
    variable_map = {k: v for k, v in variable_map.items() if v}
    export_dir = os.path.join(self.get_temp_dir(), "export")
    with self.assertRaisesRegex(errors.TfvaeError, pattern) as caught:
      legacy.build_generator(directory, export_dir, decoder_spec=_SMALL_SPEC,
                             variable_map=variable_map)
    self.assertNotIn("\n", str(caught.exception))
    self.assertEqual(_versions(export_dir), [])

  def test_wrong_architecture_names_the_shape(self):
    directory = _without_meta(self, "relu")
    export_dir = os.path.join(self.get_temp_dir(), "export")
    with self.assertRaisesRegex(
        errors.TfvaeError,
        r"no checkpoint variable has the shape \[2, 512\] of "
        r"decoder/mlp/linear_0/w"):
      legacy.build_generator(directory, export_dir)  # 28x28, 512: seed 003
    self.assertEqual(_versions(export_dir), [])

  def test_numpy_check_mismatch_is_not_published(self):
    directory = _without_meta(self, "relu")
    export_dir = os.path.join(self.get_temp_dir(), "export")
    real = mapping.reference_decode
    with mock.patch.object(mapping, "reference_decode",
                           lambda *a: real(*a) + 1e-3):
      with self.assertRaisesRegex(errors.TfvaeError,
                                  "differs from the same weights computed"):
        legacy.build_generator(
            directory, export_dir, variable_map=_SMALL_MAP,
            decoder_spec=dataclasses.replace(_SMALL_SPEC, activation="relu"))
    self.assertEqual(_versions(export_dir), [])

  def test_conv_decoder(self):
    directory = _without_meta(self, "conv")
    export_dir = os.path.join(self.get_temp_dir(), "export")
    spec = mapping.DecoderSpec(network="conv", image_shape=(8, 8, 1),
                               conv_channels=(4, 4))
    path = legacy.build_generator(directory, export_dir, decoder_spec=spec)
    _assert_matches_tf1(self, path, directory)

  @parameterized.parameters("tanh", "relu", "sigmoid", "elu", "softplus",
                            "leaky_relu", "gelu", "swish")
  def test_numpy_reference_is_the_native_decoder(self, activation):
    for network in mapping.NETWORKS:
      spec = mapping.DecoderSpec(network=network, latent_size=3,
                                 image_shape=(7, 6, 2), hidden_sizes=(5, 4),
                                 activation=activation, conv_channels=(3, 2))
      decoder = mapping.build_decoder(spec)
      self.assertEqual([n for n, _ in mapping.decoder_weights(decoder, spec)],
                       mapping.weight_names(spec))
      weights = {}
      for i, variable in enumerate(decoder.trainable_variables):
        variable.assign(tf.random.stateless_normal(variable.shape, [i, 1]))
        weights[mapping.variable_key(variable)] = variable.numpy()
      z = np.random.RandomState(0).normal(size=(4, 3)).astype(np.float32)
      self.assertAllClose(mapping.reference_decode(spec, weights, z),
                          decoder.outputs(tf.constant(z))["mean"],
                          atol=1e-5, rtol=1e-5)


class Seed003Test(tf.test.TestCase):
  """The issue's "done when": z = [3, 3] through a graph found unaided."""

  def test_z_3_3_draws_the_tf1_picture(self):
    directory = _fixture("seed003")
    expected = np.load(os.path.join(directory, "expected.npz"))
    self.assertAllEqual(expected["z"][-1], [3., 3.])
    tf1_picture = expected["output"][-1].reshape(28, 28, 1)
    export_dir = os.path.join(self.get_temp_dir(), "export")
    path = legacy.build_generator(directory, export_dir)
    got = _decode(path, np.array([[3., 3.]], np.float32))["mean"].numpy()
    self.assertAllClose(got[0], tf1_picture, atol=1e-5, rtol=0)
    png = images.write_png(os.path.join(self.get_temp_dir(), "z33.png"),
                           images.grid(got))
    drawn = tf.io.decode_png(tf.io.read_file(png)).numpy()
    # Within rounding of the 8-bit grey levels TF1's pixels would get.
    self.assertAllClose(drawn, np.clip(tf1_picture, 0, 1) * 255, atol=0.51,
                        rtol=0)


class CliTest(tf.test.TestCase):

  def test_build_generator_cli_with_map(self):
    directory = _without_meta(self, "relu")
    export_dir = os.path.join(self.get_temp_dir(), "export")
    items = [f"{k}={v}" for k, v in _SMALL_MAP.items()]
    result = _run_tool(
        "tools.build_generator", f"--checkpoint={directory}/model",
        f"--export_dir={export_dir}", "--hidden_sizes=16",
        "--image_shape=8,8,1", "--activation=relu",
        "--map=" + ",".join(items[:3]), "--map", items[3])
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertEqual(result.stdout.strip(), os.path.join(export_dir, "1"))
    _assert_matches_tf1(self, os.path.join(export_dir, "1"), directory)
    for name, slot in [("Variable_3", "decoder/mlp/linear_0/w"),
                       ("Variable_9", "decoder/mlp/linear_1/b")]:
      self.assertRegex(result.stderr, rf"Used: {name} .* -> {slot} \(by name")
    self.assertRegex(result.stderr, r"Unused: Variable_5 \[16\]")


if __name__ == "__main__":
  tf.test.main()
