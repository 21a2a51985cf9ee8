"""Generators found unaided in TF1 VAE graphs written in the wild styles.

The fixtures (`tests/wild_fixtures.py`) record what each TF1 session decodes
fixed latent points to at its own batch size; the published generators must
give the same at that batch size, 1 and 7, found without any tensor names.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tests import wild_fixtures
from tfvae import errors
from tfvae import migrate

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_FIXTURES = {}

# style -> (the latent and output names a user had to pass before).
_STYLES = {
    "metzen_adam_static": ("Add_3:0", "Sigmoid:0"),
    "scoped_momentum": ("add:0", "decoder/Sigmoid:0"),
    "layers_dropout_two_paths": ("z:0", "decoder_1/Sigmoid:0"),
    "distributions_gd_resource": ("encoder/Normal/sample/Reshape:0",
                                  "decoder/Bernoulli/mean/Identity:0"),
    "switch_conv_rmsprop_static": ("add:0", "Sigmoid:0"),
    "keras_bn_momentum": ("add:0", "dense_4/Sigmoid:0"),
}

# A Python that cannot import tfvae or tools loads every export and decodes.
_ISOLATED = textwrap.dedent("""\
    import importlib.abc, json, os, sys

    class Refuse(importlib.abc.MetaPathFinder):
      def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tfvae", "tools", "tests"):
          raise ImportError("refused: " + name)
        return None

    sys.path = [p for p in sys.path if p and not os.path.isdir(
        os.path.join(p, "tfvae"))]
    sys.meta_path.insert(0, Refuse())
    import numpy as np
    import tensorflow as tf
    diffs = {}
    for name, (export, fixture) in json.loads(sys.argv[1]).items():
      expected = np.load(os.path.join(fixture, "expected.npz"))
      got = tf.saved_model.load(export).signatures["decode"](
          z=tf.constant(expected["z"]))["mean"].numpy()
      diffs[name] = float(np.max(np.abs(
          got.reshape(expected["output"].shape) - expected["output"])))
    print(json.dumps(diffs))
    """)


def setUpModule():
  out = tempfile.mkdtemp(prefix="tfvae-wild-fixtures-")
  _FIXTURES.update(wild_fixtures.write_all(out, list(_STYLES)))


def _expected(name):
  return np.load(os.path.join(_FIXTURES[name], "expected.npz"))


def _versions(export_dir):
  if not os.path.isdir(export_dir):
    return []
  return [n for n in os.listdir(export_dir) if n.isdigit()]


class WildGraphTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.exports = {}
    cls.export_root = tempfile.mkdtemp(prefix="tfvae-wild-exports-")

  def _build(self, name, **kwargs):
    """Builds (once per set of flags) a generator from a fixture."""
    key = (name, tuple(sorted(kwargs.items())))
    if key in self.exports:
      return self.exports[key]
    export_dir = os.path.join(self.export_root, f"{name}-{len(self.exports)}")
    shutil.rmtree(export_dir, ignore_errors=True)
    self.exports[key] = migrate.build_generator(_FIXTURES[name], export_dir,
                                                **kwargs)
    return self.exports[key]

  @parameterized.named_parameters(*[(k, k) for k in _STYLES])
  def test_found_unaided_and_matches_at_n_1_and_7(self, name):
    meta = migrate.MetaGraph(os.path.join(_FIXTURES[name], "model.meta"))
    latent, output = migrate.find_ends(meta)
    self.assertEqual((latent.name, output.name), _STYLES[name])
    expected = _expected(name)
    self.assertEqual(str(expected["latent_tensor"]), latent.name)
    self.assertEqual(str(expected["output_tensor"]), output.name)
    path = self._build(name)
    decode = tf.saved_model.load(path).signatures["decode"]
    z, want = expected["z"], expected["output"]
    n = len(z)
    # 7 points: the session's batch plus its first point again (n < 7), or
    # its first 7 (n >= 7); each row decodes on its own.
    rows = [i % n for i in range(7)]
    for points, rows_wanted in [(z, want), (z[:1], want[:1]),
                                (z[rows], want[rows])]:
      got = decode(z=tf.constant(points))["mean"].numpy()
      self.assertEqual(got.shape[0], len(points))
      self.assertAllClose(got.reshape(rows_wanted.shape), rows_wanted,
                          atol=1e-5, rtol=0)

  def test_exports_load_without_tfvae(self):
    jobs = {k: (self._build(k), _FIXTURES[k]) for k in _STYLES}
    result = subprocess.run(
        [sys.executable, "-I", "-c", _ISOLATED, json.dumps(jobs)],
        capture_output=True, text=True, timeout=300, check=False,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    diffs = json.loads(result.stdout.strip().splitlines()[-1])
    self.assertEqual(sorted(diffs), sorted(_STYLES))
    for name, diff in diffs.items():
      self.assertLessEqual(diff, 1e-5, name)

  def test_training_path_with_keep_prob_fed_one(self):
    # The sampler path of the two-path graph runs dropout with keep_prob
    # fed 1.0: it decodes like the generation path the session recorded.
    meta = migrate.MetaGraph(
        os.path.join(_FIXTURES["layers_dropout_two_paths"], "model.meta"))
    self.assertEqual({t.name: v for t, v in meta.inference_feeds().items()},
                     {"keep_prob:0": 1.0})
    latent, output = migrate.find_ends(meta, latent_tensor="add:0")
    self.assertEqual(output.name, "decoder/Sigmoid:0")
    path = self._build("layers_dropout_two_paths", latent_tensor="add:0")
    expected = _expected("layers_dropout_two_paths")
    got = tf.saved_model.load(path).signatures["decode"](
        z=tf.constant(expected["z"]))["mean"].numpy()
    self.assertAllClose(got.reshape(expected["output"].shape),
                        expected["output"], atol=1e-5, rtol=0)

  def test_switch_is_fed_false(self):
    meta = migrate.MetaGraph(os.path.join(
        _FIXTURES["switch_conv_rmsprop_static"], "model.meta"))
    self.assertEqual({t.name: v for t, v in meta.inference_feeds().items()},
                     {"is_training:0": False})

  def test_ambiguity_lists_ranked_pairs_with_flags(self):
    directory = os.path.join(self.get_temp_dir(), "two-outputs")
    shutil.rmtree(directory, ignore_errors=True)
    shutil.copytree(_FIXTURES["metzen_adam_static"], directory)
    meta_path = os.path.join(directory, "model.meta")
    with tf.Graph().as_default() as graph:
      tf.compat.v1.train.import_meta_graph(meta_path)
      logits = graph.get_tensor_by_name("Sigmoid:0").op.inputs[0]
      logits_name = logits.name
      tf.compat.v1.add_to_collection("logits", logits)
      tf.compat.v1.add_to_collection(
          "probs", graph.get_tensor_by_name("Sigmoid:0"))
      tf.compat.v1.train.export_meta_graph(meta_path)
    export_dir = os.path.join(self.get_temp_dir(), "export")
    with self.assertRaises(errors.TfvaeError) as caught:
      migrate.build_generator(directory, export_dir)
    message = str(caught.exception)
    self.assertNotIn("\n", message)
    self.assertEqual(_versions(export_dir), [])
    self.assertRegex(message, r"several decoder output candidates: \(1\) ")
    picks = re.findall(r"--latent_tensor=(\S+) --output_tensor=([^\s;]+)",
                       message)
    self.assertEqual(sorted(picks),
                     sorted([("Add_3:0", "Sigmoid:0"),
                             ("Add_3:0", logits_name)]))
    self.assertRegex(message, r"Sigmoid:0 \[10, 64\] from Add_3:0 \[10, 2\]")
    report = migrate.MetaGraph(meta_path).report()
    self.assertEqual(
        [(c["latent"], c["output"]) for c in report["generator_candidates"]],
        picks)
    # The flags the message gives pick that generator.
    path = migrate.build_generator(directory, export_dir,
                                   latent_tensor="Add_3:0",
                                   output_tensor="Sigmoid:0")
    expected = _expected("metzen_adam_static")
    got = tf.saved_model.load(path).signatures["decode"](
        z=tf.constant(expected["z"]))["mean"].numpy()
    self.assertAllClose(got.reshape(expected["output"].shape),
                        expected["output"], atol=1e-5, rtol=0)

  def test_inspect_shows_the_pairs(self):
    env = dict(os.environ, PYTHONPATH=_REPO, TF_CPP_MIN_LOG_LEVEL="2")
    prefix = os.path.join(_FIXTURES["layers_dropout_two_paths"], "model")
    result = subprocess.run(
        [sys.executable, "-m", "tools.inspect_checkpoint", prefix, "--json"],
        cwd=_REPO, env=env, capture_output=True, text=True, timeout=300,
        check=False)
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    meta = json.loads(result.stdout)["meta_graph"]
    pairs = [(c["latent"], c["output"], c["latent_kind"])
             for c in meta["generator_candidates"]]
    self.assertEqual(pairs[0], ("z:0", "decoder_1/Sigmoid:0",
                                "latent placeholder"))
    self.assertIn(("add:0", "decoder/Sigmoid:0", "sampler"), pairs)
    self.assertNotIn("dropout", " ".join(
        t["name"] for t in meta["latent_candidates"]))
    self.assertEqual(meta["inference_feeds"], {"keep_prob:0": 1.0})


if __name__ == "__main__":
  tf.test.main()
