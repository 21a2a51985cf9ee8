"""Tests for tfvae.export (with its warmup), tfvae.generation and their tools.

One tiny run is trained and exported (through the real `tfvae-export`) once
for the whole module; the programs that only read it (an isolated Python, the
real `saved_model_cli`, `tfvae-generate`, failing CLIs) start in the
background as soon as it exists and are collected by the tests that check
them.
"""
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap

from absl import flags
from absl.testing import parameterized
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from tfvae import config as config_lib
from tfvae import data
from tfvae import errors
from tfvae import export
from tfvae import generation
from tfvae import images as images_lib
from tfvae import kinds
from tfvae import launch
from tfvae import models
from tfvae import runs
from tfvae import trained
from tfvae.export import warmup
from tests import util

if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_FULL = ("serving_default", "decode", "generate", "encode", "encode_sample",
         "reconstruct", "elbo", "log_importance_weights")
_LATENT = 2
_IMAGE = (28, 28, 1)

# The signature contract: name -> ({input: (dtype, shape)},
# {output: (dtype, shape)}); None is a free dimension, "k" num_samples.
_CONTRACT = {
    "decode": ({"z": (tf.float32, [None, _LATENT])},
               {"mean": (tf.float32, [None, *_IMAGE]),
                "logits": (tf.float32, [None, *_IMAGE])}),
    "generate": ({"seed": (tf.int64, [None])},
                 {"images": (tf.float32, [None, *_IMAGE]),
                  "z": (tf.float32, [None, _LATENT])}),
    "encode": ({"x": (tf.float32, [None, *_IMAGE])},
               {"loc": (tf.float32, [None, _LATENT]),
                "scale": (tf.float32, [None, _LATENT])}),
    "encode_sample": ({"x": (tf.float32, [None, *_IMAGE]),
                       "seed": (tf.int64, [None])},
                      {"z": (tf.float32, [None, _LATENT]),
                       "loc": (tf.float32, [None, _LATENT]),
                       "scale": (tf.float32, [None, _LATENT])}),
    "reconstruct": ({"x": (tf.float32, [None, *_IMAGE])},
                    {"mean": (tf.float32, [None, *_IMAGE])}),
    "elbo": ({"x": (tf.float32, [None, *_IMAGE]), "seed": (tf.int64, [None])},
             {"elbo": (tf.float32, [None]), "rate": (tf.float32, [None]),
              "distortion": (tf.float32, [None])}),
    "log_importance_weights": (
        {"x": (tf.float32, [None, *_IMAGE]), "seed": (tf.int64, []),
         "num_samples": (tf.int32, [])},
        {"log_weights": (tf.float32, [None, None])}),
}
_CONTRACT["serving_default"] = _CONTRACT["decode"]


def _child_env():
  env = dict(os.environ)
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # Let tools/quiet_start choose.
  return env


class _Background:
  """A program started now and collected later: (returncode, out, err)."""

  def __init__(self, args, cwd=_REPO_ROOT, env=None):
    self._process = subprocess.Popen(
        args, cwd=cwd, env=env or _child_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    self._result = None

  def result(self):
    if self._result is None:
      out, err = self._process.communicate(timeout=300)
      self._result = (self._process.returncode, out, err)
    return self._result


def _tool(name, *args):
  return [sys.executable, "-m", f"tools.{name}", *args]


# Run by a Python that cannot import tfvae or tools: -I drops PYTHONPATH,
# user site-packages and the script's directory; the rest removes the
# development install's path entries and refuses the two packages outright.
_ISOLATED_LOADER = textwrap.dedent("""\
    import importlib.abc, os, sys

    class Refuse(importlib.abc.MetaPathFinder):
      def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tfvae", "tools"):
          raise ImportError("refused: " + name)
        return None

    sys.path = [p for p in sys.path if p and not os.path.isdir(
        os.path.join(p, "tfvae"))]
    sys.meta_path.insert(0, Refuse())
    for package in ("tfvae", "tools"):
      try:
        __import__(package)
      except ImportError:
        pass
      else:
        raise SystemExit("could import " + package)
    import numpy as np
    import tensorflow as tf
    model_dir, inputs_path, outputs_path = sys.argv[1:]
    loaded = tf.saved_model.load(model_dir)
    inputs = np.load(inputs_path)
    outputs = {}
    for name in sorted(loaded.signatures):
      feed = {k.split("/")[1]: tf.constant(inputs[k]) for k in inputs.files
              if k.split("/")[0] == name}
      for key, value in loaded.signatures[name](**feed).items():
        outputs[name + "/" + key] = value.numpy()
    np.savez(outputs_path, **outputs)
    print("signatures:", ",".join(sorted(loaded.signatures)))
    """)


def _train_tiny_run(run_dir):
  full = data.load("fashion_mnist")
  small = data.Dataset(
      name="fashion_mnist",
      train=data.Split(full.train.images[:256], full.train.labels[:256]),
      test=data.Split(full.test.images[:64], full.test.labels[:64]),
      class_names=full.class_names, source="first 256 training images")
  launch.run(config_lib.Config(
      epochs=1, batch_size=32, hidden_sizes=(32,), latent_dim=_LATENT,
      save_every_steps=10**6, log_every_steps=10**6), run_dir, dataset=small)
  return small




class ExportTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp(prefix="tfvae-export-test-")
    cls.run_dir = os.path.join(cls.root, "fm_mlp")
    cls.dataset = _train_tiny_run(cls.run_dir)
    cls.export_dir = os.path.join(cls.root, "exports", "fm_mlp")
    result = subprocess.run(
        _tool("export", f"--run_dir={cls.run_dir}",
              f"--export_dir={cls.export_dir}"),
        cwd=_REPO_ROOT, env=_child_env(), capture_output=True, text=True,
        timeout=300, check=False)
    cls.export_result = result
    cls.saved_model = os.path.join(cls.export_dir, "1")
    if result.returncode != 0:
      raise AssertionError(f"tfvae-export failed: {result.stderr[-2000:]}")
    cls.x = (cls.dataset.test.images[:5].astype(np.float32) / 255.0)
    cls.inputs = {
        "decode": {"z": np.array([[3, 3], [0, 0], [-1.5, 0.5]], np.float32)},
        "generate": {"seed": np.array([0, 1, 2**40 + 7], np.int64)},
        "encode": {"x": cls.x},
        "encode_sample": {"x": cls.x,
                          "seed": np.arange(5, dtype=np.int64) + 11},
        "reconstruct": {"x": cls.x},
        "elbo": {"x": cls.x, "seed": np.arange(5, dtype=np.int64) + 11},
        "log_importance_weights": {"x": cls.x, "seed": np.array(3, np.int64),
                                   "num_samples": np.array(4, np.int32)},
    }
    cls.inputs["serving_default"] = cls.inputs["decode"]
    inputs_path = os.path.join(cls.root, "inputs.npz")
    np.savez(inputs_path, **{f"{name}/{key}": value
                             for name, feed in cls.inputs.items()
                             for key, value in feed.items()})
    loader = os.path.join(cls.root, "isolated_loader.py")
    with open(loader, "w") as f:
      f.write(_ISOLATED_LOADER)
    elsewhere = os.path.join(cls.root, "elsewhere")
    os.makedirs(elsewhere)
    cls.isolated_outputs = os.path.join(cls.root, "isolated_outputs.npz")
    cli_out = os.path.join(cls.root, "cli_run")
    cls.cli_out = cli_out
    cls.samples_png = os.path.join(cls.root, "pictures", "samples.png")
    cls.samples_npy = os.path.join(cls.root, "pictures", "samples.npy")
    cls.empty_run = os.path.join(cls.root, "empty_run")
    os.makedirs(runs.ckpt_dir(cls.empty_run))
    shutil.copy(runs.config_path(cls.run_dir),
                runs.config_path(cls.empty_run))
    cls.refused_export_dir = os.path.join(cls.root, "refused_exports")
    cls.bad_png = os.path.join(cls.root, "bad", "wide.png")
    cls.background = {
        "isolated": _Background(
            [sys.executable, "-I", loader, cls.saved_model, inputs_path,
             cls.isolated_outputs], cwd=elsewhere),
        "cli_show": _Background(
            ["saved_model_cli", "show", "--dir", cls.saved_model, "--all"],
            cwd=elsewhere),
        "cli_run": _Background(
            ["saved_model_cli", "run", "--dir", cls.saved_model, "--tag_set",
             "serve", "--signature_def", "decode", "--input_exprs",
             "z=[[3.0,3.0],[0.0,0.0]]", "--outdir", cli_out], cwd=elsewhere),
        "generate": _Background(_tool(
            "generate", f"--model={cls.export_dir}", "--num=6", "--seed=3",
            f"--out={cls.samples_png}", f"--out_npy={cls.samples_npy}")),
        "generate_wide_z": _Background(_tool(
            "generate", f"--model={cls.export_dir}", "--z=3,3,3",
            f"--out={cls.bad_png}")),
        "export_no_checkpoint": _Background(_tool(
            "export", f"--run_dir={cls.empty_run}",
            f"--export_dir={cls.refused_export_dir}")),
    }
    _, cls.model, _ = runs.restore_model(cls.run_dir)
    cls.module = export.export_module(cls.model)
    cls.loaded = tf.saved_model.load(cls.saved_model)

  @classmethod
  def tearDownClass(cls):
    for program in cls.background.values():
      program.result()
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()

  def _expected(self, name):
    """Outputs of signature `name` from the in-process model."""
    function = export.signatures(self.module)[name]
    return {k: v.numpy() for k, v in function(**self.inputs[name]).items()}

  def _loaded_outputs(self, name):
    outputs = self.loaded.signatures[name](
        **{k: tf.constant(v) for k, v in self.inputs[name].items()})
    return {k: v.numpy() for k, v in outputs.items()}

  # The export itself.

  def test_evaluation_reads_the_run_config_from_the_export(self):
    loaded = trained.open_for_scoring(self.saved_model)
    self.assertIsNotNone(loaded.config)
    self.assertEqual(loaded.config.to_dict(),
                     runs.load_config(self.run_dir).to_dict())

  def test_cli_writes_version_one_in_serving_layout(self):
    self.assertEqual(self.export_result.stdout.strip(), self.saved_model)
    self.assertEqual(sorted(os.listdir(self.export_dir)), ["1"])
    for name in ("saved_model.pb", "variables/variables.index",
                 "assets.extra/tf_serving_warmup_requests",
                 "assets.extra/tfvae_export.json"):
      self.assertTrue(os.path.isfile(os.path.join(self.saved_model, name)),
                      name)
    mode = os.stat(self.saved_model).st_mode
    self.assertTrue(mode & stat.S_IROTH and mode & stat.S_IXOTH,
                    "a server running as another user must read the export")
    with open(os.path.join(self.saved_model, "assets.extra",
                           "tfvae_export.json")) as f:
      info = json.load(f)
    self.assertEqual(info["part"], "full")
    self.assertEqual(info["signatures"], list(_FULL))
    self.assertEqual(info["latent_size"], _LATENT)
    self.assertEqual(info["checkpoint"], runs.newest_intact_checkpoint(
        runs.ckpt_dir(self.run_dir)))

  def test_signatures_follow_the_contract(self):
    self.assertCountEqual(self.loaded.signatures.keys(), _FULL)
    for name, (inputs, outputs) in _CONTRACT.items():
      function = self.loaded.signatures[name]
      specs = function.structured_input_signature[1]
      self.assertEqual(
          {k: (s.dtype, s.shape.as_list()) for k, s in specs.items()},
          inputs, name)
      got = {k: (s.dtype, s.shape.as_list())
             for k, s in function.structured_outputs.items()}
      self.assertEqual(got, outputs, name)

  def test_next_export_is_version_two_and_never_overwrites(self):
    export_dir = os.path.join(self.root, "versions")
    shutil.copytree(self.saved_model, os.path.join(export_dir, "1"))
    before = os.path.getmtime(os.path.join(export_dir, "1", "saved_model.pb"))
    with self.assertRaisesRegex(errors.TfvaeError, "never overwrites"):
      export.export_model(self.model, export_dir, part="generator", version=1)
    path = export.export_model(self.model, export_dir, part="generator")
    self.assertEqual(path, os.path.join(export_dir, "2"))
    self.assertEqual(
        os.path.getmtime(os.path.join(export_dir, "1", "saved_model.pb")),
        before)

  # Each signature against the in-process model and independent numbers.

  @parameterized.parameters(*_FULL)
  def test_round_trip_matches_in_process_model(self, name):
    got = self._loaded_outputs(name)
    expected = self._expected(name)
    self.assertEqual(sorted(got), sorted(expected))
    for key in expected:
      self.assertAllClose(got[key], expected[key], rtol=1e-5, atol=1e-5,
                          msg=f"{name}/{key}")

  def test_decode_gives_probabilities_and_logits(self):
    z = self.inputs["decode"]["z"]
    got = self._loaded_outputs("decode")
    logits = self.model.likelihood(z).distribution.logits.numpy()
    self.assertAllClose(got["logits"], logits, atol=1e-5)
    self.assertAllClose(got["mean"], 1 / (1 + np.exp(-logits)), atol=1e-5)
    self.assertAllClose(self._loaded_outputs("serving_default")["mean"],
                        got["mean"])

  def test_generate_is_stateless_per_seed(self):
    seeds = self.inputs["generate"]["seed"]
    got = self._loaded_outputs("generate")
    for i, seed in enumerate(seeds):
      z = tf.random.stateless_normal([_LATENT], seed=[seed, 0],
                                     alg="philox").numpy()
      self.assertAllClose(got["z"][i], z)
    self.assertAllClose(got["images"],
                        self.model.decoder(got["z"]).mean().numpy(), atol=1e-5)
    alone = self.loaded.signatures["generate"](
        seed=tf.constant(seeds[::-1].copy()))
    self.assertAllClose(alone["images"].numpy(), got["images"][::-1])
    self.assertGreater(np.abs(got["images"][0] - got["images"][1]).max(),
                       1e-3)

  def test_encode_and_encode_sample(self):
    x, seeds = self.inputs["encode_sample"]["x"], \
        self.inputs["encode_sample"]["seed"]
    posterior = self.model.approx_posterior(x)
    encoded = self._loaded_outputs("encode")
    self.assertAllClose(encoded["loc"], posterior.mean().numpy(), atol=1e-5)
    self.assertAllClose(encoded["scale"], posterior.stddev().numpy(),
                        atol=1e-5)
    sample = self._loaded_outputs("encode_sample")
    noise = np.stack([tf.random.stateless_normal([_LATENT], seed=[s, 1],
                                                 alg="philox")
                      for s in seeds])
    self.assertAllClose(sample["z"], encoded["loc"] + encoded["scale"] * noise,
                        atol=1e-5)

  def test_one_seed_serves_every_image(self):
    x = self.inputs["elbo"]["x"]
    together = self.loaded.signatures["elbo"](
        x=tf.constant(x), seed=tf.constant([9], tf.int64))
    for i in (0, 3):
      alone = self.loaded.signatures["elbo"](
          x=tf.constant(x[i:i + 1]), seed=tf.constant([9], tf.int64))
      self.assertAllClose(together["elbo"][i], alone["elbo"][0], rtol=1e-5)
    broadcast = self.loaded.signatures["encode_sample"](
        x=tf.constant(x), seed=tf.constant([9], tf.int64))
    per_image = self.loaded.signatures["encode_sample"](
        x=tf.constant(x), seed=tf.constant([9] * len(x), tf.int64))
    self.assertAllClose(broadcast["z"], per_image["z"])
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                "one entry per image"):
      self.loaded.signatures["elbo"](x=tf.constant(x),
                                     seed=tf.constant([1, 2], tf.int64))

  def test_reconstruct_decodes_the_posterior_mean(self):
    loc = self._loaded_outputs("encode")["loc"]
    self.assertAllClose(
        self._loaded_outputs("reconstruct")["mean"],
        self.loaded.signatures["decode"](z=tf.constant(loc))["mean"].numpy(),
        atol=1e-6)

  def test_elbo_matches_a_numpy_computation(self):
    x = self.inputs["elbo"]["x"]
    encoded = self._loaded_outputs("encode")
    z = self._loaded_outputs("encode_sample")["z"]
    logits = self.loaded.signatures["decode"](z=tf.constant(z))["logits"]
    loc, scale = (encoded[k].astype(np.float64) for k in ("loc", "scale"))
    rate = np.sum(0.5 * (loc**2 + scale**2 - 1) - np.log(scale), axis=-1)
    distortion = util.bce(logits.numpy(), x)
    got = self._loaded_outputs("elbo")
    self.assertAllClose(got["rate"], rate, rtol=1e-4)
    self.assertAllClose(got["distortion"], distortion, rtol=1e-4)
    self.assertAllClose(got["elbo"], -(rate + distortion), rtol=1e-4)

  def test_log_importance_weights_match_a_numpy_computation(self):
    x = self.inputs["log_importance_weights"]["x"]
    k, seed = 4, 3
    encoded = self._loaded_outputs("encode")
    noise = tf.random.stateless_normal([k, len(x), _LATENT],
                                       seed=[seed, 2], alg="philox").numpy()
    z = encoded["loc"] + encoded["scale"] * noise
    logits = self.loaded.signatures["decode"](
        z=tf.constant(z.reshape(-1, _LATENT)))["logits"].numpy()
    log_likelihood = -util.bce(logits, np.tile(x, [k, 1, 1, 1])).reshape(k, -1)
    expected = (log_likelihood + util.log_normal(z, 0.0, 1.0)
                - util.log_normal(z, encoded["loc"], encoded["scale"]))
    got = self._loaded_outputs("log_importance_weights")["log_weights"]
    self.assertEqual(got.shape, (k, len(x)))
    self.assertAllClose(got, expected, rtol=1e-4)
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                "num_samples must be positive"):
      self.loaded.signatures["log_importance_weights"](
          x=tf.constant(x), seed=tf.constant(seed, tf.int64),
          num_samples=tf.constant(-2))

  # Who else loads it.

  def test_python_without_tfvae_calls_every_signature(self):
    returncode, out, err = self.background["isolated"].result()
    self.assertEqual(returncode, 0, err[-3000:])
    self.assertIn("signatures: " + ",".join(sorted(_FULL)), out)
    got = np.load(self.isolated_outputs)
    for name in _FULL:
      for key, value in self._expected(name).items():
        self.assertAllClose(got[f"{name}/{key}"], value, rtol=1e-5, atol=1e-5,
                            msg=f"{name}/{key}")

  def test_tf1_session_feeds_and_fetches_signature_tensors(self):
    expected = {name: self._expected(name) for name in _FULL}
    with tf.Graph().as_default() as graph:
      with tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(
            session, [export.SERVING_TAG], self.saved_model)
        self.assertCountEqual(
            set(meta_graph.signature_def) - {"__saved_model_init_op"}, _FULL)
        for name in _FULL:
          signature = meta_graph.signature_def[name]
          feed = {signature.inputs[k].name: v
                  for k, v in self.inputs[name].items()}
          fetch = {k: info.name for k, info in signature.outputs.items()}
          got = session.run(fetch, feed_dict=feed)
          for key, value in expected[name].items():
            self.assertAllClose(got[key], value, rtol=1e-5, atol=1e-5,
                                msg=f"{name}/{key}")

  def test_saved_model_cli_show_lists_every_signature(self):
    returncode, out, err = self.background["cli_show"].result()
    self.assertEqual(returncode, 0, err[-3000:])
    for name in _FULL:
      self.assertIn(f"signature_def['{name}']:", out)
    self.assertRegex(out, r"inputs\['z'\] tensor_info:\s+dtype: DT_FLOAT\s+"
                     r"shape: \(-1, 2\)")
    self.assertRegex(out, r"inputs\['seed'\] tensor_info:\s+dtype: DT_INT64\s+"
                     r"shape: \(-1\)")

  def test_saved_model_cli_runs_decode(self):
    returncode, _, err = self.background["cli_run"].result()
    self.assertEqual(returncode, 0, err[-3000:])
    expected = self.module.decode(
        z=tf.constant([[3.0, 3.0], [0.0, 0.0]]))
    for key in ("mean", "logits"):
      got = np.load(os.path.join(self.cli_out, f"{key}.npy"))
      self.assertAllClose(got, expected[key].numpy(), atol=1e-5)

  def test_warmup_records_parse_and_replay(self):
    path = warmup.path(self.saved_model)
    records = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
    names = []
    for record in records:
      log = prediction_log_pb2.PredictionLog.FromString(record)
      request = log.predict_log.request
      self.assertEqual(request.model_spec.name, "fm_mlp")
      name = request.model_spec.signature_name
      names.append(name)
      inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
      got = self.loaded.signatures[name](
          **{k: tf.constant(v) for k, v in inputs.items()})
      want = export.signatures(self.module)[name](**inputs)
      for key in want:
        self.assertAllClose(got[key], want[key], rtol=1e-5, atol=1e-5)
      # The hand encoder (used without tensorflow-serving-api) agrees.
      by_hand = prediction_log_pb2.PredictionLog.FromString(
          warmup.encode(name, inputs, "fm_mlp", by_hand=True))
      self.assertEqual(by_hand, log)
      hand_name, hand_inputs = warmup.decode(record, by_hand=True)
      self.assertEqual(hand_name, name)
      self.assertEqual(sorted(hand_inputs), sorted(inputs))
      for key in inputs:
        self.assertAllEqual(hand_inputs[key], inputs[key])
    self.assertEqual(names, list(_FULL))
    self.assertEqual(export.replay_warmup(self.loaded, self.saved_model,
                                          export.signatures(self.module)),
                     len(_FULL))

  def test_replay_notices_a_changed_model(self):
    changed = export.export_module(kinds.build_model(
        config_lib.load(runs.config_path(self.run_dir))))
    with self.assertRaisesRegex(errors.TfvaeError, "differs from the "
                                "in-process model"):
      export.replay_warmup(self.loaded, self.saved_model,
                           export.signatures(changed))

  def test_no_device_pins(self):
    self.assertEqual(export.device_pins(self.saved_model), [])
    # Everything pinned in the whole file is TensorFlow's checkpoint saver.
    from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
    with open(os.path.join(self.saved_model, "saved_model.pb"), "rb") as f:
      meta_graph = saved_model_pb2.SavedModel.FromString(
          f.read()).meta_graphs[0]
    graph = meta_graph.graph_def
    saver_inputs = {name for node in graph.node
                    if node.name == meta_graph.saver_def.save_tensor_name
                    .split(":")[0] for name in node.input}
    for node in graph.node:
      if node.device:
        self.assertIn(node.name, saver_inputs)
    for function in graph.library.function:
      if any(node.device for node in function.node_def):
        self.assertRegex(function.signature.name,
                         r"^__inference__traced_(save|restore)_\d+$")
    # The check finds pins where there are some.
    module = tf.Module()
    module.v = tf.Variable(1.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def pinned(x):
      with tf.device("/device:CPU:0"):
        return {"y": x * module.v}

    module.pinned = pinned
    path = os.path.join(self.root, "pinned")
    tf.saved_model.save(module, path, signatures={"pinned": pinned})
    self.assertNotEmpty(export.device_pins(path))

  # Parts and capabilities.

  def test_generator_part_holds_no_encoder(self):
    export_dir = os.path.join(self.root, "generator_exports")
    path = export.export_run(self.run_dir, export_dir, part="generator")
    variables = [name for name, _ in tf.train.list_variables(
        os.path.join(path, "variables", "variables"))]
    self.assertNotEmpty([v for v in variables if "decoder" in v])
    self.assertEmpty([v for v in variables if "encoder" in v])
    loaded = tf.saved_model.load(path)
    self.assertCountEqual(loaded.signatures.keys(),
                          ["serving_default", "decode", "generate"])
    for name in ("decode", "generate"):
      got = loaded.signatures[name](
          **{k: tf.constant(v) for k, v in self.inputs[name].items()})
      for key, value in self._expected(name).items():
        self.assertAllClose(got[key], value, atol=1e-5)
    self.assertEqual(export.device_pins(path), [])
    self.assertEqual([name for name, _ in warmup.read(path)],
                     ["serving_default", "decode", "generate"])

  @parameterized.named_parameters(
      ("gaussian_learned_mlp", "gaussian_learned", "mlp",
       ("mean", "loc", "scale")),
      ("continuous_bernoulli_conv", "continuous_bernoulli", "conv",
       ("mean", "logits")))
  def test_decode_outputs_follow_the_likelihood(self, likelihood, network,
                                                keys):
    model = models.VAE(_IMAGE, 3, network, hidden_sizes=(16,),
                       likelihood=likelihood, name="vae")
    path = export.export_model(model, os.path.join(self.root, likelihood),
                               part="generator")
    decode = tf.saved_model.load(path).signatures["decode"]
    z = tf.random.stateless_normal([4, 3], seed=[5, 6])
    got = decode(z=z)
    self.assertCountEqual(got.keys(), keys)
    distribution = model.likelihood(z).distribution
    self.assertAllClose(got["mean"], distribution.mean(), atol=1e-5)
    if "scale" in keys:
      self.assertAllClose(got["scale"], distribution.stddev(), atol=1e-5)
    else:
      self.assertAllClose(got["logits"], distribution.logits, atol=1e-5)

  def test_unsupported_parts_are_refused(self):

    class DecoderOnly(tf.Module):  # Like a future deterministic autoencoder.

      def __init__(self, model):
        super().__init__()
        self.decoder = model.decoder
        self.latent_size = model.latent_size
        self.image_shape = model.image_shape

    no_prior = DecoderOnly(self.model)
    for part in export.PARTS:
      with self.assertRaisesRegex(errors.TfvaeError,
                                  f"--part={part}: .* has no prior"):
        export.export_module(no_prior, part)
    no_encoder = DecoderOnly(self.model)
    no_encoder.prior = self.model.prior
    module = export.export_module(no_encoder, "generator")
    self.assertAllClose(module.decode(z=tf.zeros([1, _LATENT]))["mean"],
                        self.model.decoder(tf.zeros([1, _LATENT])).mean())
    with self.assertRaisesRegex(errors.TfvaeError,
                                "--part=full: .* has no approx_posterior"):
      export.export_module(no_encoder, "full")
    with self.assertRaisesRegex(errors.TfvaeError, "--part=encoder: choose"):
      export.export_module(self.model, "encoder")

  # Atomicity and bad input.

  def test_failed_export_leaves_no_version(self):
    export_dir = os.path.join(self.root, "failing")

    def refuse(loaded, path):
      self.assertTrue(os.path.isfile(warmup.path(path)))
      self.assertIn("decode", loaded.signatures)
      raise errors.TfvaeError("refused on purpose")

    with self.assertRaisesRegex(errors.TfvaeError, "refused on purpose"):
      export.export_run(self.run_dir, export_dir, part="generator",
                        verify=refuse)
    self.assertEqual(os.listdir(export_dir), [])

  def test_checkpoint_that_does_not_fit_the_config(self):
    run_dir = os.path.join(self.root, "misfit")
    shutil.copytree(self.run_dir, run_dir)
    config = config_lib.load(runs.config_path(run_dir))
    config_lib.save(config.replace(latent_dim=3), runs.config_path(run_dir))
    export_dir = os.path.join(self.root, "misfit_exports")
    with self.assertRaisesRegex(errors.RunDirError, "does not fit"):
      export.export_run(run_dir, export_dir)
    with self.assertRaisesRegex(errors.RunDirError, "no such checkpoint"):
      export.export_run(self.run_dir, export_dir, checkpoint="ckpt-999")
    self.assertFalse(os.path.exists(export_dir))

  def test_cli_refuses_a_run_without_checkpoints(self):
    returncode, _, err = self.background["export_no_checkpoint"].result()
    self.assertEqual(returncode, 1)
    error_lines = [l for l in err.splitlines() if "error:" in l]
    self.assertLen(error_lines, 1, err)
    self.assertIn("no checkpoints in", error_lines[0])
    self.assertIn(self.empty_run, error_lines[0])
    self.assertFalse(os.path.exists(self.refused_export_dir))

  # Generating.

  def test_generate_cli_writes_png_and_npy(self):
    returncode, _, err = self.background["generate"].result()
    self.assertEqual(returncode, 0, err[-3000:])
    pictures = np.load(self.samples_npy)
    seeds = 3 * 2**32 + np.arange(6)
    expected = self.module.generate(seed=tf.constant(seeds, tf.int64))
    self.assertAllClose(pictures, expected["images"].numpy(), atol=1e-5)
    with open(self.samples_png, "rb") as f:
      png = tf.io.decode_png(f.read()).numpy()
    self.assertAllEqual(png, images_lib.grid(pictures))

  def test_generate_cli_refuses_wrong_width_z(self):
    returncode, _, err = self.background["generate_wide_z"].result()
    self.assertEqual(returncode, 1)
    error_lines = [l for l in err.splitlines() if "error:" in l]
    self.assertLen(error_lines, 1, err)
    self.assertIn("--z=3,3,3: point 1 has 3 coordinates, but the model's "
                  "latent space has 2", error_lines[0])
    self.assertFalse(os.path.exists(os.path.dirname(self.bad_png)))

  @parameterized.named_parameters(("export_dir", "exports"),
                                  ("version_dir", "version"),
                                  ("run_dir", "run"))
  def test_generator_opens_any_model_path(self, kind):
    path = {"exports": self.export_dir, "version": self.saved_model,
            "run": self.run_dir}[kind]
    generator = generation.load(path)
    self.assertEqual(generator.latent_size, _LATENT)
    z = generation.parse_points("3,3;0,0", generator.latent_size)
    self.assertAllClose(z, [[3, 3], [0, 0]])
    self.assertAllClose(generator.decode(z),
                        self.model.decoder(z).mean().numpy(), atol=1e-5)
    grid = generation.manifold_grid(4, generator.latent_size)
    self.assertAllClose(grid[0], [-3, 3])
    self.assertAllClose(grid[3], [3, 3])
    self.assertAllClose(grid[-1], [3, -3])
    pictures, z = generator.generate([7, 8])
    self.assertEqual(pictures.shape, (2, *_IMAGE))
    self.assertAllClose(z[0], tf.random.stateless_normal([2], seed=[7, 0],
                                                         alg="philox"))

  def test_export_dir_picks_its_highest_version(self):
    export_dir = os.path.join(self.root, "two_versions")
    shutil.copytree(self.saved_model, os.path.join(export_dir, "3"))
    shutil.copytree(self.saved_model, os.path.join(export_dir, "12"))
    os.makedirs(os.path.join(export_dir, "40"))  # Not a SavedModel.
    self.assertEqual(export.find_saved_model(export_dir),
                     os.path.join(export_dir, "12"))

  def test_generation_bad_input(self):
    with self.assertRaisesRegex(errors.TfvaeError, "--num=0: must be"):
      generation.sample_seeds(0, 0)
    with self.assertRaisesRegex(errors.TfvaeError, "--num=10001: must be"):
      generation.sample_seeds(0, generation.MAX_IMAGES + 1)
    with self.assertRaisesRegex(errors.TfvaeError, "point 2 .* not"):
      generation.parse_points("1,2;a,b", 2)
    with self.assertRaisesRegex(errors.TfvaeError, "--grid needs a 2-D"):
      generation.manifold_grid(10, 3)
    points = os.path.join(self.root, "points.npy")
    np.save(points, np.zeros([4, 3], np.float32))
    with self.assertRaisesRegex(errors.TfvaeError,
                                "points.npy: points have 3 coordinates"):
      generation.load_points(points, 2)
    with self.assertRaisesRegex(errors.TfvaeError, "no such file"):
      generation.load(os.path.join(self.root, "missing"))
    with self.assertRaisesRegex(errors.TfvaeError, "not a SavedModel"):
      generation.load(os.path.join(self.root, "elsewhere"))
    broken = os.path.join(self.root, "broken_model")
    os.makedirs(broken)
    with open(os.path.join(broken, "saved_model.pb"), "wb") as f:
      f.write(b"not a protocol buffer")
    with self.assertRaisesRegex(errors.TfvaeError, "could not be loaded"):
      generation.load(broken)


if __name__ == "__main__":
  tf.test.main()
