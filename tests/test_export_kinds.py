"""Exports of the other model kinds: deterministic autoencoders and the CVAE.

An autoencoder exports encode (-> code), decode (code -> mean, logits) and
reconstruct, and refuses to generate; a CVAE exports every VAE signature
with an extra int64 `label` input, and `tfvae-generate --label=NAME` draws
that class. Each signature is checked against the in-process model, the
bounds against numpy computations, and the warmup file is replayed.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

from absl import flags
from absl.testing import parameterized
import numpy as np
import PIL.Image
import tensorflow as tf

from tfvae import autoencoders
from tfvae import config as config_lib
from tfvae import data
from tfvae import errors
from tfvae import export
from tfvae import generation
from tfvae import input_pipeline
from tfvae import launch
from tfvae import plots
from tfvae import trained
from tfvae import runs
from tfvae.export import warmup
from tests import util

if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()

_LATENT = 2
_SNEAKER = 7




def _per_seed_normal(seeds, stream, width=_LATENT):
  """Row i: stateless_normal([width], seed=[seeds[i], stream], philox), the
  documented contract of the exports' per-example draws."""
  return np.stack([tf.random.stateless_normal(
      [width], seed=tf.constant([int(s), stream], tf.int64),
      alg="philox").numpy() for s in np.asarray(seeds)])


def _test_images(count=4):
  return input_pipeline.scale(util.fashion_mnist().test.images[:count])


def _child_env():
  env = dict(os.environ)
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # Let tools/quiet_start choose.
  return env


def _start_tool(name, *args):
  return subprocess.Popen(
      [sys.executable, "-m", f"tools.{name}", *args], cwd=util.REPO,
      env=_child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True)


def _finish(process):
  out, err = process.communicate(timeout=300)
  return process.returncode, out, err


class AutoencoderExportTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(("ae", "mlp"), ("contractive_ae", "conv"))
  def test_round_trip_of_every_signature(self, kind, network):
    model = autoencoders.Autoencoder((28, 28, 1), 3, network,
                                     hidden_sizes=(16,), kind=kind)
    path = export.export_model(model, self.create_tempdir().full_path)
    loaded = tf.saved_model.load(path)
    self.assertCountEqual(loaded.signatures, ("serving_default", "decode",
                                              "encode", "reconstruct"))
    x = _test_images()
    code = model.encode(x)
    self.assertAllClose(loaded.signatures["encode"](x=x)["code"], code)
    for name in ("decode", "serving_default"):
      decoded = loaded.signatures[name](code=code)
      self.assertCountEqual(decoded, ("mean", "logits"))
      self.assertAllClose(decoded["mean"], model.decode(code)["mean"])
      self.assertAllClose(decoded["logits"], model.decode(code)["logits"])
      # The mean is the sigmoid of the logits: no activation left to apply.
      self.assertAllClose(decoded["mean"], tf.sigmoid(decoded["logits"]))
    self.assertAllClose(loaded.signatures["reconstruct"](x=x)["mean"],
                        model.reconstruct(x))
    # The warmup requests name signatures that exist and replay.
    requests = warmup.read(path)
    self.assertCountEqual([name for name, _ in requests],
                          ("serving_default", "decode", "encode",
                           "reconstruct"))
    self.assertEqual(export.replay_warmup(loaded, path), 4)

  def test_generator_part_is_refused_and_nothing_is_written(self):
    model = autoencoders.Autoencoder((28, 28, 1), 3, hidden_sizes=(16,),
                                     kind="sparse_ae")
    export_dir = self.create_tempdir().full_path
    with self.assertRaisesRegex(
        errors.TfvaeError, "model sparse_ae is a deterministic autoencoder: "
        "it cannot generate.*use decode on codes"):
      export.export_model(model, export_dir, part="generator")
    self.assertEqual(os.listdir(export_dir), [])

  def test_generator_decodes_codes_and_refuses_to_sample(self):
    model = autoencoders.Autoencoder((28, 28, 1), 2, hidden_sizes=(16,),
                                     kind="denoising_ae")
    export_dir = self.create_tempdir().full_path
    export.export_model(model, export_dir, metadata={"model": "denoising_ae"})
    generator = generation.load(export_dir)
    self.assertFalse(generator.conditional)
    codes = np.array([[3.0, 3.0], [0.0, -1.0]], np.float32)
    self.assertAllClose(generator.decode(codes), model.decode(codes)["mean"])
    with self.assertRaisesRegex(errors.TfvaeError,
                                "model denoising_ae is a deterministic "
                                "autoencoder: it cannot generate"):
      generator.generate([0, 1])
    with self.assertRaisesRegex(errors.TfvaeError, "not a conditional"):
      generator.label("7")


class ConditionalExportTest(tf.test.TestCase):
  """One tiny cvae run, exported by `export_run`, shared by the tests."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp(prefix="tfvae-export-kinds-")
    cls.run_dir = os.path.join(cls.root, "fm_cvae")
    launch.run(config_lib.Config(
        model="cvae", epochs=1, batch_size=32, hidden_sizes=(32,),
        latent_dim=_LATENT, save_every_steps=10**6, log_every_steps=10**6),
               cls.run_dir, dataset=util.small_fashion_mnist(256, 64))
    cls.export_dir = os.path.join(cls.root, "exports", "fm_cvae")
    cls.path = export.export_run(cls.run_dir, cls.export_dir)
    cls.samples_png = os.path.join(cls.root, "sneakers.png")
    cls.samples_npy = os.path.join(cls.root, "sneakers.npy")
    # The CLIs only read the export: started now, collected by the tests.
    cls.by_name = _start_tool(
        "generate", f"--model={cls.export_dir}", "--label=Sneaker",
        "--num=6", "--seed=3", f"--out={cls.samples_png}",
        f"--out_npy={cls.samples_npy}")
    cls.no_label = _start_tool(
        "generate", f"--model={cls.export_dir}",
        f"--out={os.path.join(cls.root, 'never.png')}")
    cls.classes_png = os.path.join(cls.root, "classes.png")
    cls.classes = _start_tool(
        "plot", f"--model={cls.export_dir}", "--kind=classes", "--count=3",
        "--seed=2", f"--out={cls.classes_png}")
    cls.grid = _start_tool(
        "generate", f"--model={cls.export_dir}", "--label=1", "--grid=3",
        f"--out={os.path.join(cls.root, 'grid.png')}")

  @classmethod
  def tearDownClass(cls):
    for process in (cls.by_name, cls.no_label, cls.grid,
                    cls.classes):
      if process.poll() is None:
        process.kill()
        process.communicate()
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()

  def setUp(self):
    super().setUp()
    _, self.model, _ = runs.restore_model(self.run_dir)
    self.loaded = tf.saved_model.load(self.path).signatures
    self.x = _test_images()
    self.label = tf.constant([_SNEAKER, 0, 3, _SNEAKER], tf.int64)

  def test_evaluation_refuses_a_cvae_clearly(self):
    for path in (self.run_dir, self.export_dir):
      with self.assertRaisesRegex(errors.TfvaeError,
                                  "holds a cvae model; evaluation"):
        trained.open_for_scoring(path)

  def test_signatures_all_take_a_label(self):
    self.assertCountEqual(self.loaded, (
        "serving_default", "decode", "generate", "encode", "encode_sample",
        "reconstruct", "elbo", "log_importance_weights"))
    for name, signature in self.loaded.items():
      spec = signature.structured_input_signature[1]["label"]
      self.assertEqual((spec.dtype, spec.shape.as_list()), (tf.int64, [None]),
                       name)

  def test_encode_decode_generate_reconstruct_match_the_model(self):
    q = self.model.approx_posterior(self.x, self.label)
    encoded = self.loaded["encode"](x=self.x, label=self.label)
    self.assertAllClose(encoded["loc"], q.mean())
    self.assertAllClose(encoded["scale"], q.stddev())
    z = q.mean()
    decoded = self.loaded["decode"](z=z, label=self.label)
    expected = self.model.decoder.outputs(z, self.label)
    self.assertAllClose(decoded["mean"], expected["mean"])
    self.assertAllClose(decoded["logits"], expected["logits"])
    self.assertAllClose(
        self.loaded["reconstruct"](x=self.x, label=self.label)["mean"],
        expected["mean"])
    seed = tf.constant([5, 5, 9, 9], tf.int64)
    label = tf.constant([_SNEAKER, 1, _SNEAKER, _SNEAKER], tf.int64)
    generated = self.loaded["generate"](seed=seed, label=label)
    want_z = _per_seed_normal([5, 5, 9, 9], stream=0)
    self.assertAllClose(generated["z"], want_z, rtol=1e-6, atol=1e-7)
    self.assertAllClose(generated["images"],
                        self.model.decoder.outputs(want_z, label)["mean"],
                        rtol=1e-5, atol=1e-6)
    # Same seed, other class: the same z, another image.
    self.assertNotAllClose(generated["images"][0], generated["images"][1])
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                "label must be a class index"):
      self.loaded["generate"](seed=seed, label=tf.constant([10, 0, 0, 0],
                                                           tf.int64))

  def test_elbo_and_encode_sample_match_numpy(self):
    seed = tf.constant([11, 12, 13, 14], tf.int64)
    sampled = self.loaded["encode_sample"](x=self.x, seed=seed,
                                           label=self.label)
    eps = _per_seed_normal([11, 12, 13, 14], stream=1)
    loc, scale = sampled["loc"].numpy(), sampled["scale"].numpy()
    z = loc + scale * eps
    self.assertAllClose(sampled["z"], z, atol=1e-5)
    bound = self.loaded["elbo"](x=self.x, seed=seed, label=self.label)
    logits = self.model.decoder.outputs(tf.constant(z), self.label)["logits"]
    distortion = util.bce(logits, self.x)
    rate = np.sum(0.5 * (loc.astype(np.float64) ** 2 + scale ** 2 - 1.0)
                  - np.log(scale), axis=-1)
    self.assertAllClose(bound["distortion"], distortion, rtol=1e-4)
    self.assertAllClose(bound["rate"], rate, rtol=1e-4, atol=1e-5)
    self.assertAllClose(bound["elbo"], -(distortion + rate), rtol=1e-4)
    # The label matters: another class gives another distortion.
    other = self.loaded["elbo"](x=self.x, seed=seed,
                                label=tf.constant([1, 1, 1, 1], tf.int64))
    self.assertNotAllClose(other["distortion"], bound["distortion"])

  def test_log_importance_weights_match_numpy(self):
    num_samples = 3
    got = self.loaded["log_importance_weights"](
        x=self.x, seed=tf.constant(4, tf.int64),
        num_samples=tf.constant(num_samples, tf.int32),
        label=self.label)["log_weights"].numpy()
    self.assertEqual(got.shape, (num_samples, len(self.x)))
    eps = tf.random.stateless_normal(
        [num_samples, len(self.x), _LATENT],
        seed=tf.constant([4, 2], tf.int64),  # the importance stream
        alg="philox").numpy()
    q = self.model.approx_posterior(self.x, self.label)
    loc, scale = q.mean().numpy(), q.stddev().numpy()
    for i in range(num_samples):
      z = loc + scale * eps[i]
      logits = self.model.decoder.outputs(tf.constant(z, tf.float32),
                                          self.label)["logits"]
      expected = (-util.bce(logits, self.x)
                  + util.log_normal(z, np.zeros_like(z), np.ones_like(z))
                  - util.log_normal(z, loc, scale))
      self.assertAllClose(got[i], expected, rtol=1e-4, atol=1e-3)

  def test_provenance_names_the_classes_and_warmup_replays(self):
    with open(os.path.join(self.path, warmup.ASSETS_EXTRA,
                           export.METADATA_FILE)) as f:
      info = json.load(f)
    self.assertEqual(info["model"], "cvae")
    self.assertTrue(info["conditional"])
    self.assertEqual(info["class_names"],
                     list(data.CLASS_NAMES["fashion_mnist"]))
    requests = warmup.read(self.path)
    self.assertLen(requests, 8)
    for name, inputs in requests:
      self.assertIn("label", inputs, name)
      self.assertEqual(inputs["label"].dtype, np.int64)
    loaded = tf.saved_model.load(self.path)
    self.assertEqual(export.replay_warmup(loaded, self.path), 8)

  def test_generator_part_takes_labels_and_holds_no_encoder(self):
    # Its own export directory: the CLIs above read the highest version.
    path = export.export_run(self.run_dir,
                             os.path.join(self.root, "exports", "generator"),
                             part="generator")
    variables = [name for name, _ in tf.train.list_variables(
        os.path.join(path, "variables", "variables"))]
    self.assertNotEmpty([v for v in variables if "decoder" in v])
    self.assertEmpty([v for v in variables if "encoder" in v])
    loaded = tf.saved_model.load(path).signatures
    self.assertCountEqual(loaded, ("serving_default", "decode", "generate"))
    seed = tf.constant([1, 2], tf.int64)
    label = tf.constant([_SNEAKER, 2], tf.int64)
    self.assertAllClose(loaded["generate"](seed=seed, label=label)["images"],
                        self.loaded["generate"](seed=seed,
                                                label=label)["images"])

  def test_generate_cli_draws_the_named_class(self):
    returncode, _, err = _finish(self.by_name)
    self.assertEqual(returncode, 0, err[-2000:])
    picture = tf.io.decode_png(tf.io.read_file(self.samples_png)).numpy()
    self.assertEqual(picture.ndim, 3)
    drawn = np.load(self.samples_npy)
    # --seed=3 --num=6: prior seeds 3 * 2**32 + 0..5.
    z = _per_seed_normal(3 * 2**32 + np.arange(6), stream=0)
    expected = self.model.decoder.outputs(
        z, tf.fill([6], tf.constant(_SNEAKER, tf.int64)))["mean"].numpy()
    self.assertAllClose(drawn, expected, rtol=1e-5, atol=1e-6)
    # The picture: the six in rows of ceil(sqrt(6)) = 3, 1-pixel white gaps.
    tiles = np.ones((2 * 29 - 1, 3 * 29 - 1))
    for i in range(6):
      r, c = divmod(i, 3)
      tiles[r * 29:r * 29 + 28, c * 29:c * 29 + 28] = expected[i, ..., 0]
    self.assertEqual(picture.shape, (2 * 29 - 1, 3 * 29 - 1, 1))
    self.assertLessEqual(
        np.max(np.abs(picture[..., 0] - np.round(tiles * 255))), 1)

  def test_generate_cli_grid_with_a_label(self):
    returncode, _, err = _finish(self.grid)
    self.assertEqual(returncode, 0, err[-2000:])
    picture = tf.io.decode_png(tf.io.read_file(
        os.path.join(self.root, "grid.png"))).numpy()
    self.assertEqual(picture.shape, (3 * 29 - 1, 3 * 29 - 1, 1))
    # --grid=3 decodes z = (x_c, y_r) over [-3, 3]: x rightwards, y downwards,
    # all with label 1.
    axis = np.linspace(-3, 3, 3)
    z = np.array([(x, y) for y in axis[::-1] for x in axis], np.float32)
    means = self.model.decoder.outputs(
        z, tf.fill([9], tf.constant(1, tf.int64)))["mean"].numpy()
    tiles = np.ones((3 * 29 - 1, 3 * 29 - 1))
    for i in range(9):
      r, c = divmod(i, 3)
      tiles[r * 29:r * 29 + 28, c * 29:c * 29 + 28] = means[i, ..., 0]
    self.assertLessEqual(
        np.max(np.abs(picture[..., 0].astype(np.float64)
                      - np.round(tiles * 255))), 1)

  def test_generate_cli_without_label_is_one_line_error(self):
    returncode, out, err = _finish(self.no_label)
    self.assertEqual(returncode, 1)
    self.assertEqual(out, "")
    lines = err.strip().splitlines()
    self.assertLen(lines, 1, err)
    self.assertRegex(lines[0], "conditional model.*--label.*Sneaker")
    self.assertFalse(os.path.exists(os.path.join(self.root, "never.png")))

  def test_plot_cli_draws_one_row_per_class(self):
    returncode, _, err = _finish(self.classes)
    self.assertEqual(returncode, 0, err[-2000:])
    picture = np.asarray(PIL.Image.open(self.classes_png).convert("L"))
    # The tiles, pixel for pixel (2 x 2 blocks), below the title band and
    # right of the class names.
    # pylint: disable=protected-access
    top = plots._TITLE_PIXELS
    left = plots._MARGIN_PIXELS + plots._ROW_LABEL_PIXELS
    # pylint: enable=protected-access
    z = _per_seed_normal(np.arange(3) + 2 * 3, stream=0)
    for label in range(10):
      expected = self.model.decoder.outputs(
          z, tf.fill([3], tf.constant(label, tf.int64)))["mean"].numpy()
      for column in range(3):
        y, x = top + label * 58, left + column * 58
        tile = picture[y:y + 56:2, x:x + 56:2].astype(np.float64)
        self.assertAllClose(tile, np.round(expected[column, ..., 0] * 255),
                            atol=1.01, msg=f"class {label}, column {column}")
    # The class names are drawn left of the rows.
    self.assertLess(picture[top:, :left].min(), 128)

  def test_classes_plot_refuses_unconditional_models(self):
    model = autoencoders.Autoencoder((28, 28, 1), 2, hidden_sizes=(16,))
    generator = generation.load(export.export_model(
        model, self.create_tempdir().full_path))
    with self.assertRaisesRegex(errors.TfvaeError, "--kind=classes: .* not a "
                                "conditional model"):
      plots.classes(generator)

  def test_label_names_and_indices(self):
    generator = generation.load(self.path)
    self.assertTrue(generator.conditional)
    self.assertEqual(generator.label("sneaker"), _SNEAKER)
    self.assertEqual(generator.label("7"), _SNEAKER)
    with self.assertRaisesRegex(errors.TfvaeError, "--label=Boot: not a "
                                "class.*7=Sneaker"):
      generator.label("Boot")
    with self.assertRaisesRegex(errors.TfvaeError, "--label"):
      generator.generate([0])


if __name__ == "__main__":
  tf.test.main()
