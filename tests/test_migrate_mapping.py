"""Tests of mapping graph-less TF1 checkpoints into native decoders."""
import dataclasses
import json
import os
import re
import shutil
from unittest import mock

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tests import migrate_fixtures
from tests.test_migrate_surgery import _assert_matches_tf1
from tests.test_migrate_surgery import _decode
from tests.test_migrate_surgery import _fixture
from tests.test_migrate_surgery import _versions
from tfvae import errors
from tfvae import migrate
from tfvae.migrate import mapping
from tfvae.migrate import reader
from tfvae.migrate import reference


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
    migrate_fixtures.write_fixture(directory, **options)
  else:
    shutil.copytree(_fixture(name), directory)
  os.remove(os.path.join(directory, "model.meta"))
  return directory


class ShapeMatchingTest(tf.test.TestCase):

  def test_unique_shapes(self):
    assignment, used, unused = mapping.match_by_shape(
        [("decoder/w", (2, 8)), ("decoder/b", (8,))],
        {"Variable_3": (2, 8), "Variable_8": (8,), "Variable": (16, 8)})
    self.assertEqual(assignment,
                     {"decoder/w": "Variable_3", "decoder/b": "Variable_8"})
    self.assertEqual(used, ["Variable_3", "Variable_8"])
    self.assertEqual(unused, ["Variable"])

  def test_ties_are_errors_listing_candidates(self):
    with self.assertRaisesRegex(errors.TfvaeError,
                                "Variable_1, Variable_2"):
      mapping.match_by_shape([("mean/w", (8, 2))],
                            [("Variable_1", (8, 2)), ("Variable_2", (8, 2))])

  def test_missing_shape(self):
    with self.assertRaisesRegex(errors.TfvaeError, r"\[3, 3\] of conv"):
      mapping.match_by_shape([("conv", (3, 3))], {"Variable": (2, 2)})


class MappedCheckpointTest(tf.test.TestCase, parameterized.TestCase):

  def test_map_by_name_decodes_like_the_tf1_session(self):
    directory = _without_meta(self, "relu")
    export_dir = os.path.join(self.get_temp_dir(), "export")
    spec = dataclasses.replace(_SMALL_SPEC, activation="relu")
    path = migrate.build_generator(directory, export_dir, decoder_spec=spec,
                                  variable_map=_SMALL_MAP)
    _assert_matches_tf1(self, path, directory)
    self.assertEqual(migrate.device_pins(path), [])
    with open(os.path.join(path, "assets.extra", migrate.publish.SOURCE_RECORD)) as f:
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
    path = migrate.build_generator(directory, export_dir, no_meta=True,
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
      path = migrate.build_generator(directory, export_dir, decoder_spec=spec)
    _assert_matches_tf1(self, path, directory)
    # Every checkpoint variable is listed as used or unused.
    report = reader.inspect(directory)
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
      migrate.build_generator(directory, export_dir)
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
      migrate.build_generator(directory, export_dir, decoder_spec=_SMALL_SPEC,
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
      migrate.build_generator(directory, export_dir)  # 28x28, 512: seed 003
    self.assertEqual(_versions(export_dir), [])

  def test_numpy_check_mismatch_is_not_published(self):
    directory = _without_meta(self, "relu")
    export_dir = os.path.join(self.get_temp_dir(), "export")
    real = reference.decode
    with mock.patch.object(reference, "decode",
                           lambda *a: real(*a) + 1e-3):
      with self.assertRaisesRegex(errors.TfvaeError,
                                  "differs from the same weights computed"):
        migrate.build_generator(
            directory, export_dir, variable_map=_SMALL_MAP,
            decoder_spec=dataclasses.replace(_SMALL_SPEC, activation="relu"))
    self.assertEqual(_versions(export_dir), [])

  def test_conv_decoder(self):
    directory = _without_meta(self, "conv")
    export_dir = os.path.join(self.get_temp_dir(), "export")
    spec = mapping.DecoderSpec(network="conv", image_shape=(8, 8, 1),
                               conv_channels=(4, 4))
    path = migrate.build_generator(directory, export_dir, decoder_spec=spec)
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
      self.assertAllClose(reference.decode(spec, weights, z),
                          decoder.outputs(tf.constant(z))["mean"],
                          atol=1e-5, rtol=1e-5)

if __name__ == "__main__":
  tf.test.main()
