"""Tests of the pictures, the export adapter and tfvae-evaluate/tfvae-plot.

One tiny Fashion-MNIST run is trained once for the whole module.
"""
import json
import os
import subprocess
import sys
import tempfile

from absl.testing import parameterized
import numpy as np
import PIL.Image
import tensorflow as tf

from tfvae import config as config_lib
from tfvae import data
from tfvae import errors
from tfvae import evaluation
from tfvae import export as export_lib
from tfvae import idx
from tfvae import images as images_lib
from tfvae import kinds
from tfvae import launch
from tfvae import objectives
from tfvae import plots
from tfvae import runs
from tfvae import trained
from tests import util

_RUN = {}


def setUpModule():
  full = data.load("fashion_mnist")
  dataset = data.Dataset(
      name="fashion_mnist",
      train=data.Split(full.train.images[:512], full.train.labels[:512]),
      test=data.Split(full.test.images[:200], full.test.labels[:200]),
      class_names=full.class_names, source="test slice")
  root = tempfile.mkdtemp(prefix="tfvae_plots_")
  run_dir = os.path.join(root, "run")
  launch.run(config_lib.Config(epochs=2, batch_size=32, hidden_sizes=(32,),
                                 latent_dim=2, save_every_steps=10**6,
                                 log_every_steps=10**6), run_dir,
             dataset=dataset)
  _RUN.update(root=root, run_dir=run_dir, dataset=dataset)


def _images():
  return evaluation.load_images("fashion_mnist", "test", "none",
                                dataset=_RUN["dataset"])


def _read_png(path):
  """The PNG as a float array [H, W] of grey levels 0..255."""
  with PIL.Image.open(path) as picture:
    self_format = picture.format
    grey = np.asarray(picture.convert("L"), np.float64)
  assert self_format == "PNG", self_format
  return grey


def _runs(flags):
  """Lengths of the runs of True in a 1-D boolean array."""
  lengths, current = [], 0
  for flag in flags:
    if flag:
      current += 1
    elif current:
      lengths.append(current)
      current = 0
  if current:
    lengths.append(current)
  return lengths


def _tiles(grey):
  """(rows, columns, tile height, tile width) of an image grid picture.

  Tiles are the blocks of non-white pixels below the title band, separated
  by white lines (Fashion-MNIST images have dark backgrounds).
  """
  body = grey[plots._TITLE_PIXELS:] < 250  # pylint: disable=protected-access
  row_runs = _runs(body.any(axis=1))
  column_runs = _runs(body.any(axis=0))
  return len(row_runs), len(column_runs), row_runs[0], column_runs[0]


def _foreign_export_module(model):
  """A tf.Module with the signatures of an export tfvae did not write: other
  input names and seed shapes, matched by `trained.ExportedModel`."""
  module = tf.Module()
  module.model = model
  shape = list(model.image_shape)
  latent = model.latent_size
  decode, generate = export_lib.generator_functions(model.decoder.outputs,
                                                    latent)

  @tf.function(input_signature=[
      tf.TensorSpec([None, *shape], tf.float32, name="x")])
  def encode(x):
    q = model.approx_posterior(x)
    return {"loc": q.mean(), "scale": q.stddev()}

  @tf.function(input_signature=[
      tf.TensorSpec([None, *shape], tf.float32, name="x")])
  def reconstruct(x):
    return {"mean": model.decoder.outputs(model.approx_posterior(x).mean())[
        "mean"]}

  # Another seed name: matched as the one integer input.
  @tf.function(input_signature=[
      tf.TensorSpec([None, *shape], tf.float32, name="x"),
      tf.TensorSpec([], tf.int64, name="random_seed")])
  def elbo(x, random_seed):
    images, seed = x, random_seed
    noise = tf.random.stateless_normal(
        [tf.shape(images)[0], latent],
        tf.stack([seed, tf.constant(0, tf.int64)]))
    bound = objectives.elbo(model, images, noise=noise)
    return bound._asdict()

  # A seed of shape [1] and another image name: matched by dtype and rank.
  @tf.function(input_signature=[
      tf.TensorSpec([None, *shape], tf.float32, name="images"),
      tf.TensorSpec([1], tf.int64, name="seed"),
      tf.TensorSpec([], tf.int32, name="num_samples")])
  def log_importance_weights(images, seed, num_samples):
    x = images
    seed = seed[0]
    noise = tf.random.stateless_normal(
        [num_samples, tf.shape(x)[0], latent],
        tf.stack([seed, tf.constant(1, tf.int64)]))
    return {"log_weights": objectives.log_importance_weights(
        model, x, num_samples, noise=noise)}

  signatures = {"encode": encode, "decode": decode, "generate": generate,
                "reconstruct": reconstruct, "elbo": elbo,
                "log_importance_weights": log_importance_weights}
  for name, function in signatures.items():
    setattr(module, name, function)
  return module, signatures


def _sigmoid(logits):
  return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))


def _decoded(vae, z):
  """Pixel means [N, 28, 28] of an MLP VAE's decoder at z, float64."""
  logits = vae.decoder.net(tf.constant(np.asarray(z), tf.float32)).numpy()
  return _sigmoid(logits).reshape(len(z), 28, 28)


def _codes(vae, images):
  """Posterior means [N, D] of uint8 images [N, 28, 28, 1], float64."""
  x = tf.constant(images.reshape(len(images), -1), tf.float32) / 255.0
  out = vae.encoder.net(x).numpy().astype(np.float64)
  return out[:, :out.shape[1] // 2]


def _prior_z(seeds, latent=2):
  """z of the prior draws of `seeds`: row i from (seeds[i], 0), philox."""
  return np.stack([tf.random.stateless_normal([latent], [int(s), 0],
                                              alg="philox").numpy()
                   for s in seeds])


def _expected_grid(tiles, columns, scale):
  """What `grid_figure` draws of tiles [N, H, W] in [0, 1]: 1-pixel white
  gaps, each pixel a scale x scale block, as grey levels 0..255."""
  n, height, width = tiles.shape
  rows = -(-n // columns)
  out = np.ones((rows * (height + 1) - 1, columns * (width + 1) - 1))
  for i, tile in enumerate(tiles):
    r, c = divmod(i, columns)
    out[r * (height + 1):r * (height + 1) + height,
        c * (width + 1):c * (width + 1) + width] = np.clip(tile, 0, 1)
  return np.kron(np.round(out * 255), np.ones((scale, scale)))


def _numpy_elbo(model, images, eps):
  """ELBO [B] of an MLP VAE on uint8 images with noise eps [B, D], in
  float64 numpy from the networks' outputs."""
  x = images.reshape(len(images), -1).astype(np.float64) / 255.0
  loc, raw_scale = np.split(model.encoder.net(
      tf.constant(x, tf.float32)).numpy().astype(np.float64), 2, axis=-1)
  scale = np.logaddexp(0, raw_scale) + 1e-5
  z = loc + scale * eps
  rate = np.sum(0.5 * (scale**2 + loc**2 - 1) - np.log(scale), axis=-1)
  logits = model.decoder.net(tf.constant(z, tf.float32)).numpy()
  return -(rate + util.bce(logits, x))


class PlotsTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    loaded = trained.open_for_scoring(_RUN["run_dir"])
    cls.loaded = loaded
    cls.model = loaded.model
    cls.vae = runs.restore_model(_RUN["run_dir"])[1]
    cls.images = _images()

  def _assert_grid(self, grey, tiles, columns, scale):
    """The picture's grid, at its place below the title, is `tiles`."""
    want = _expected_grid(tiles, columns, scale)
    top, left = plots._TITLE_PIXELS, plots._MARGIN_PIXELS  # pylint: disable=protected-access
    got = grey[top:top + want.shape[0], left:left + want.shape[1]]
    self.assertEqual(got.shape, want.shape)
    # float32 network outputs against float64: a grey level may round apart.
    self.assertLessEqual(np.max(np.abs(got - want)), 1.0)
    # Nothing else is drawn around the grid: the margin is white.
    self.assertTrue(np.all(grey[top:, :left] == 255))

  def _save(self, figure, name):
    path = os.path.join(self.get_temp_dir(), name + ".png")
    plots.save(figure, path)
    grey = _read_png(path)
    self.assertGreater(grey.std(), 1.0)
    self.assertLess(os.path.getsize(path), 400_000)
    return path, grey

  def test_manifold_has_the_grid_of_decoded_images(self):
    figure, dims = plots.manifold(self.model, None, grid_size=6)
    self.assertEqual(dims, (0, 1))
    _, grey = self._save(figure, "manifold")
    self.assertEqual(_tiles(grey), (6, 6, 28, 28))
    # Row r, column c decodes z = (x_c, y_r): x from -3 rightwards, y from
    # +3 downwards.
    values = np.linspace(-3, 3, 6)
    z = [(x, y) for y in values[::-1] for x in values]
    self._assert_grid(grey, _decoded(self.vae, z), columns=6, scale=1)

  def test_manifold_of_a_wider_latent_picks_the_most_varied_dims(self):
    config = self.loaded.config.replace(latent_dim=4)
    native = trained.NativeModel(kinds.build_model(config))
    means = plots.posterior_means(native, self.images)
    expected = tuple(np.argsort(-np.var(means, axis=0))[:2])
    figure, dims = plots.manifold(native, self.images, grid_size=4)
    self.assertEqual(dims, expected)
    title = figure.texts[0].get_text()
    self.assertIn(f"z[{expected[0]}] and z[{expected[1]}]", title)
    self.assertIn("highest variance", title)
    self._save(figure, "manifold4")

  def test_latent_scatter_has_a_legend_of_class_names(self):
    figure = plots.latent(self.model, self.images)
    self.assertLen(figure.axes, 1)
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    present = sorted(set(self.images.labels.tolist()))
    self.assertEqual(legend,
                     [self.images.class_names[c] for c in present])
    _, grey = self._save(figure, "latent")
    self.assertEqual(grey.shape, (600, 700))

  def test_latent_of_a_wider_latent_uses_pca(self):
    config = self.loaded.config.replace(latent_dim=5)
    native = trained.NativeModel(kinds.build_model(config))
    figure = plots.latent(native, self.images)
    self.assertIn("PC 1", figure.axes[0].get_xlabel())
    self._save(figure, "latent_pca")
    # The points, against the eigenvectors of the means' covariance (up to
    # each component's sign).
    means = _codes(native.model, self.images.images)
    centred = means - means.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred)
    top = eigenvectors[:, np.argsort(-eigenvalues)[:2]]
    want = centred @ top
    labels = self.images.labels
    for collection, label in zip(figure.axes[0].collections,
                                 np.unique(labels)):
      got = np.asarray(collection.get_offsets())
      self.assertEqual(got.shape, (np.sum(labels == label), 2))
      signs = np.sign(np.sum(got * want[labels == label], axis=0))
      self.assertAllClose(got, want[labels == label] * signs, rtol=1e-4,
                          atol=1e-5)
    explained = eigenvalues[np.argsort(-eigenvalues)[:2]] / np.sum(eigenvalues)
    self.assertIn(f"PC 1 ({explained[0]:.0%} of variance)",
                  figure.axes[0].get_xlabel())

  def test_latent_without_labels_is_refused(self):
    unlabelled = evaluation.Images(self.images.images, None, None,
                                   "images.idx")
    with self.assertRaisesRegex(errors.TfvaeError,
                                "^--kind=latent .* images.idx has no labels"):
      plots.latent(self.model, unlabelled)

  def test_reconstructions_show_originals_above_reconstructions(self):
    figure = plots.reconstructions(self.model, self.images, count=8)
    _, grey = self._save(figure, "reconstructions")
    self.assertEqual(_tiles(grey), (2, 8, 56, 56))
    # Drawn pixel for pixel at scale 2: the first tile is the first image.
    body = grey[plots._TITLE_PIXELS:]  # pylint: disable=protected-access
    top = np.argmax((body < 250).any(axis=1))
    left = np.argmax((body < 250).any(axis=0))
    tile = body[top:top + 56:2, left:left + 56:2]
    self.assertAllClose(self.images.images[0, :, :, 0], tile, atol=1.0)
    # The originals are spread over the split: the eighth (last) tile of
    # the top row, 8 * 29 - 1 grid pixels on, is the split's last image.
    last = body[top:top + 56:2, left + 7 * 58:left + 7 * 58 + 56:2]
    self.assertGreater(len(self.images.images), 8)
    self.assertAllClose(self.images.images[-1, :, :, 0], last, atol=1.0)

  def test_spread_indices_cover_the_items_evenly(self):
    self.assertAllEqual(images_lib.spread(10, 4), [0, 3, 6, 9])
    self.assertAllEqual(images_lib.spread(3, 16), [0, 1, 2])
    self.assertAllEqual(images_lib.spread(5, 1), [0])
    self.assertEmpty(images_lib.spread(0, 16))
    # A split listed class by class (10 classes of 37): 16 spread indices
    # show every class, the first 16 only the first.
    labels = np.repeat(np.arange(10), 37)
    self.assertLen(set(labels[images_lib.spread(len(labels), 16)]), 10)
    chosen = images_lib.spread(370, 16)
    self.assertTrue(np.all(np.diff(chosen) > 0))

  def test_samples(self):
    figure = plots.samples(self.model, count=16, seed=3)
    grey = self._save(figure, "samples")[1]
    self.assertEqual(_tiles(grey), (2, 8, 56, 56))
    # Seed 3 of 16 samples: prior draws of seeds 48..63.
    self._assert_grid(grey, _decoded(self.vae, _prior_z(range(48, 64))),
                      columns=8, scale=2)

  def test_interpolation_has_both_ends_and_the_steps(self):
    figure = plots.interpolation(self.model, self.images, steps=5,
                                 first=2, second=7)
    grey = self._save(figure, "interpolation")[1]
    self.assertEqual(_tiles(grey), (1, 7, 84, 84))
    # Both ends are the originals; between them, codes from image 2's to
    # image 7's in 5 steps, both codes included.
    ends = self.images.images[[2, 7], :, :, 0] / 255.0
    codes = _codes(self.vae, self.images.images[[2, 7]])
    t = np.linspace(0, 1, 5)[:, None]
    decoded = _decoded(self.vae, (1 - t) * codes[0] + t * codes[1])
    self._assert_grid(grey, np.concatenate([ends[:1], decoded, ends[1:]]),
                      columns=7, scale=3)
    with self.assertRaisesRegex(errors.TfvaeError, "has 200"):
      plots.interpolation(self.model, self.images, first=0, second=200)

  def test_curves_plot_the_runs_metrics_per_epoch(self):
    figure = plots.curves(_RUN["run_dir"])
    self.assertLen(figure.axes, 3)
    with open(runs.metrics_path(_RUN["run_dir"])) as f:
      records = [json.loads(line) for line in f]
    for axes, metric in zip(figure.axes, plots.CURVE_METRICS):
      lines = {line.get_label(): line for line in axes.get_lines()}
      self.assertEqual(sorted(lines), ["test", "train"])
      for split in ("train", "test"):
        xs, ys = lines[split].get_data()
        self.assertAllClose([1.0, 2.0], xs)
        self.assertAllClose([r[f"{split}_{metric}"] for r in records], ys,
                            rtol=1e-5)
    self._save(figure, "curves")

  def test_curves_need_a_run_directory(self):
    with self.assertRaisesRegex(errors.TfvaeError, "must be a run directory"):
      plots.curves(None)

  def test_anomaly_separates_noise_from_fashion_mnist(self):
    noise = evaluation.Images(plots.noise_images(100, (28, 28, 1), 0), None,
                              None, "uniform noise")
    figure, area = plots.anomaly(self.model, self.images, noise)
    self.assertGreater(area, 0.95)
    self.assertIn(f"AUROC of -ELBO as anomaly score: {area:.4f}",
                  figure.axes[0].get_title())
    self._save(figure, "anomaly")

  def test_unknown_kind_is_refused(self):
    with self.assertRaisesRegex(errors.TfvaeError,
                                "^--kind=histogram: unknown kind; choose"):
      plots.check_kind("histogram")


class AurocTest(tf.test.TestCase):

  def test_matches_pairwise_count_with_ties(self):
    rng = np.random.default_rng(0)
    for _ in range(5):
      negatives = rng.integers(0, 8, size=rng.integers(1, 40))
      positives = rng.integers(2, 10, size=rng.integers(1, 40))
      wins = (positives[:, None] > negatives[None, :]).sum()
      ties = (positives[:, None] == negatives[None, :]).sum()
      expected = (wins + 0.5 * ties) / (len(negatives) * len(positives))
      self.assertAllClose(expected, plots.auroc(negatives, positives))

  def test_perfect_and_reversed_separation(self):
    self.assertEqual(plots.auroc([0, 1], [2, 3]), 1.0)
    self.assertEqual(plots.auroc([2, 3], [0, 1]), 0.0)


class ExportedModelTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    config, model, _ = runs.restore_model(_RUN["run_dir"])
    cls.native = trained.NativeModel(model)
    cls.export_dir = os.path.join(_RUN["root"], "export")
    # Version 1: another model (latent 3); version 2: the run, as
    # tfvae-export writes it.
    export_lib.export_model(kinds.build_model(config.replace(latent_dim=3)),
                            cls.export_dir, version=1)
    export_lib.export_run(_RUN["run_dir"], cls.export_dir)
    cls.images = _images()

  def test_the_highest_version_is_loaded(self):
    self.assertEqual(export_lib.existing_versions(self.export_dir), [1, 2])
    exported = trained.ExportedModel(self.export_dir)
    self.assertEqual(exported.path, os.path.join(self.export_dir, "2"))
    self.assertEqual(exported.image_shape, (28, 28, 1))
    self.assertEqual(exported.latent_size, 2)

  def test_deterministic_signatures_agree_with_the_model(self):
    exported = trained.ExportedModel(self.export_dir)
    x = self.images.images[:10].astype(np.float32) / 255.0
    for got, expected in zip(exported.encode(x), self.native.encode(x)):
      self.assertAllClose(expected, got, rtol=1e-5, atol=1e-6)
    z = self.native.encode(x)[0]
    self.assertAllClose(self.native.decode(z)["mean"],
                        exported.decode(z)["mean"], rtol=1e-5, atol=1e-6)
    seeds = np.arange(4, dtype=np.int64)
    images, z = exported.generate(seeds)
    # Row i: z from (seed[i], stream 0), whatever the batch.
    want_z = np.stack([tf.random.stateless_normal([2], [s, 0], alg="philox")
                       for s in seeds])
    self.assertAllClose(want_z, z, rtol=1e-6, atol=1e-7)
    self.assertAllClose(self.native.decode(want_z)["mean"], images,
                        rtol=1e-5, atol=1e-6)
    self.assertEqual(exported.log_weights(x, 0, 0, 0, 7).shape, (7, 10))

  def test_evaluate_through_the_export_agrees_with_the_run(self):
    exported = trained.ExportedModel(self.export_dir)
    images = evaluation.Images(self.images.images[:100], None, None, "x")
    got = evaluation.evaluate(exported, images, num_importance_samples=20,
                              chunk_size=8, batch_size=50)
    expected = evaluation.evaluate(self.native, images,
                                   num_importance_samples=20, chunk_size=8,
                                   batch_size=50)
    for key in ("reconstruction_mse", "reconstruction_bce",
                "kl_per_dimension", "active_unit_variance", "active_units"):
      self.assertAllClose(expected[key], got[key], rtol=1e-4)
    # The rate is the analytic KL: no noise in it.
    self.assertAllClose(expected["rate"], got["rate"], rtol=1e-5)
    # The ELBO of each, from its own noise replayed independently: batch b
    # of 50 draws eps [50, 2] from (0, 2**20 + b) in the run's evaluation,
    # and one eps [2] for the whole batch from the seed pair
    # (0 * 1_000_003 + (2**20 + b) * 10_007, 1) through the export.
    model = self.native.model
    native_elbo, export_elbo = [], []
    for b in range(2):
      batch = images.images[50 * b:50 * (b + 1)]
      eps = tf.random.stateless_normal([50, 2], [0, 2**20 + b], alg="philox")
      native_elbo.append(_numpy_elbo(model, batch, eps.numpy()))
      eps = tf.random.stateless_normal([2], [(2**20 + b) * 10_007, 1],
                                       alg="philox")
      export_elbo.append(_numpy_elbo(model, batch, np.tile(eps, [50, 1])))
    self.assertAllClose(expected["elbo"], np.mean(native_elbo), rtol=1e-5)
    self.assertAllClose(got["elbo"], np.mean(export_elbo), rtol=1e-5)
    # Importance sampling with other noise: equal within Monte Carlo error.
    self.assertAllClose(expected["nll"], got["nll"], atol=3.0)
    self.assertLess(got["elbo"], got["iwae_log_px"])

  def test_a_foreign_export_is_used_through_its_signatures(self):
    _, model, _ = runs.restore_model(_RUN["run_dir"])
    module, signatures = _foreign_export_module(model)
    path = os.path.join(self.get_temp_dir(), "foreign", "1")
    tf.saved_model.save(module, path, signatures=signatures)
    exported = trained.ExportedModel(os.path.dirname(path))
    x = self.images.images[:10].astype(np.float32) / 255.0
    for got, expected in zip(exported.encode(x), self.native.encode(x)):
      self.assertAllClose(expected, got, rtol=1e-5, atol=1e-6)
    _, rate, _ = exported.elbo(x, 0, 0)
    self.assertAllClose(self.native.elbo(x, 0, 0)[1], rate, rtol=1e-5)
    self.assertEqual(exported.log_weights(x, 0, 0, 0, 7).shape, (7, 10))

  def test_a_foreign_export_missing_a_signature_is_named(self):
    _, model, _ = runs.restore_model(_RUN["run_dir"])
    module, signatures = _foreign_export_module(model)
    del signatures["log_importance_weights"]
    path = os.path.join(self.get_temp_dir(), "partial", "1")
    tf.saved_model.save(module, path, signatures=signatures)
    with self.assertRaisesRegex(errors.TfvaeError,
                                "lacks the signature\\(s\\) "
                                "log_importance_weights"):
      trained.ExportedModel(os.path.dirname(path))

  def test_neither_run_nor_export_is_refused(self):
    with self.assertRaisesRegex(errors.TfvaeError,
                                "neither a run directory"):
      trained.open_for_scoring(self.get_temp_dir())


class CommandLineTest(tf.test.TestCase):
  """Runs the programs once each, side by side (start-up dominates)."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = tempfile.mkdtemp(prefix="tfvae_cli_")
    cls.metrics_file = os.path.join(root, "metrics.json")
    cls.samples_file = os.path.join(root, "samples.png")
    images_file = os.path.join(root, "images.idx")
    idx.write_idx(images_file, _images().images[:10, :, :, 0])
    model = f"--model={_RUN['run_dir']}"
    commands = {
        "evaluate": ["evaluate", model, "--num_importance_samples=5",
                     "--max_examples=40", f"--out={cls.metrics_file}"],
        "plot": ["plot", model, "--kind=samples", "--count=4",
                 f"--out={cls.samples_file}"],
        "bad_k": ["evaluate", model, "--num_importance_samples=0"],
        "no_labels": ["plot", model, "--kind=latent",
                      f"--images={images_file}",
                      f"--out={os.path.join(root, 'latent.png')}"],
    }
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-m", f"tools.{tool}", *flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, (tool, *flags) in commands.items()}
    cls.results = {}
    for name, process in processes.items():
      stdout, stderr = process.communicate(timeout=300)
      cls.results[name] = (process.returncode, stdout, stderr)
    cls.root = root

  def test_evaluate_writes_metrics(self):
    returncode, stdout, stderr = self.results["evaluate"]
    self.assertEqual(returncode, 0, stderr[-3000:])
    with open(self.metrics_file) as f:
      metrics = json.load(f)
    self.assertEqual(metrics["num_examples"], 40)
    self.assertEqual(metrics["num_importance_samples"], 5)
    self.assertEqual(metrics["split"], "test")
    self.assertEqual(metrics["active_unit_threshold"], 0.01)
    self.assertLess(metrics["elbo"], metrics["iwae_log_px"])
    self.assertIn("nll_bits_per_dim", stdout)
    self.assertIn("40/40 examples", stderr)  # the progress line

  def test_plot_writes_a_png(self):
    returncode, _, stderr = self.results["plot"]
    self.assertEqual(returncode, 0, stderr[-3000:])
    grey = _read_png(self.samples_file)
    self.assertEqual(_tiles(grey)[:2], (2, 8))
    # --count=4: 16 prior samples of seeds 0..15, in rows of 8.
    vae = runs.restore_model(_RUN["run_dir"])[1]
    want = _expected_grid(_decoded(vae, _prior_z(range(16))), 8, 2)
    top, left = plots._TITLE_PIXELS, plots._MARGIN_PIXELS  # pylint: disable=protected-access
    got = grey[top:top + want.shape[0], left:left + want.shape[1]]
    self.assertLessEqual(np.max(np.abs(got - want)), 1.0)

  def test_bad_input_is_one_line(self):
    for name, tool, message in [
        ("bad_k", "evaluate",
         "--num_importance_samples=0: must be at least 1"),
        ("no_labels", "plot", "--kind=latent colours points by class, but "
         ".*images.idx has no labels"),
    ]:
      returncode, _, stderr = self.results[name]
      self.assertEqual(returncode, 1, stderr[-3000:])
      last = stderr.strip().splitlines()[-1]
      self.assertRegex(last, f"^{tool}.py: error: {message}")
    self.assertFalse(os.path.exists(os.path.join(self.root, "latent.png")))


class ValidationTest(tf.test.TestCase):

  def test_unknown_split_is_one_line(self):
    with self.assertRaisesRegex(errors.DataError,
                                "^--split=valid: no such split"):
      evaluation.load_images("fashion_mnist", "valid", "none",
                             dataset=_RUN["dataset"])


if __name__ == "__main__":
  tf.test.main()
