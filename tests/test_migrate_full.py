"""tfvae-migrate: whole TF1 VAEs become tfvae runs that train, score and plot.

The TF1 fixtures (`migrate_fixtures`, 784-16-2 MLPs trained a few steps) are
written once per module. Each migrated run is restored the way every tfvae
program restores a run and compared with the TF1 session, run here on real
Fashion-MNIST test images and fixed noise through the tensors the fixture
recorded: the migration's own check is not trusted.
"""
import json
import os
import shutil
import tempfile
from unittest import mock

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tests import migrate_fixtures
from tests import util
from tests import wild_fixtures
from tfvae import errors
from tfvae import input_pipeline
from tfvae import kinds
from tfvae import launch
from tfvae import objectives
from tfvae import runs
from tfvae.migrate import anatomy
from tfvae.migrate import full_model
from tfvae.migrate import graph
from tfvae.migrate import reader
from tfvae.migrate import run_dir as run_dir_lib

v1 = tf.compat.v1

# name -> (fixture options, posterior_scale expected, floor expected).
_FIXTURES = {
    "seed_log_variance": (dict(global_step=True), "log_variance", 0.0),
    "sqrt_exp_adam": (dict(posterior="sqrt_exp", optimizer="adam",
                           global_step=True), "log_variance", 0.0),
    "softplus_split_head": (dict(posterior="softplus_std", split_head=True,
                                 activation="relu"), "softplus", 1e-6),
    "distributions_normal_layers": (
        dict(posterior="normal", more_activations=("elu", "leaky_relu")),
        "log_scale", 0.0),
    "gaussian_squared_error": (dict(likelihood="gaussian"), "log_variance",
                               0.0),
    "conv_decoder": (dict(decoder="conv", likelihood="gaussian", steps=1),
                     "log_variance", 0.0),
}
_NUM_TEST = 10000


def _tf1_values(directory, images, noise=None, passes=1):
  """The fixture's own tensors in a TF1 session: loc, scale, output, loss.

  With `noise` None the graph draws its own eps; the loss is then averaged
  over `passes` draws.
  """
  names = np.load(os.path.join(directory, "expected.npz"))
  fetch = [str(names[k]) for k in ("loc_tensor", "scale_tensor",
                                   "output_tensor", "loss_tensor")]
  feeds = {str(names["input_tensor"]): images.reshape(len(images), -1)}
  if noise is not None:
    eps = str(names["noise_tensor"])
    feeds[eps] = noise
  with tf.Graph().as_default() as graph:
    v1.set_random_seed(0)
    saver = v1.train.import_meta_graph(os.path.join(directory, "model.meta"))
    if noise is not None and graph.get_tensor_by_name(eps).shape.rank == 3:
      feeds[eps] = noise[None]
    with v1.Session(graph=graph) as sess:
      saver.restore(sess, os.path.join(directory, "model"))
      runs_ = [sess.run(fetch, feeds) for _ in range(passes)]
  values = runs_[0]
  values[3] = np.mean([r[3] for r in runs_], axis=0)
  return values


class MigrateFullTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp(prefix="tfvae_migrate_full_")
    cls.fixtures = {}
    for name, (options, _, _) in _FIXTURES.items():
      directory = os.path.join(cls.root, name)
      migrate_fixtures.write_fixture(directory, image_size=28,
                                     hidden_size=16, **options)
      cls.fixtures[name] = directory
    cls.small_data = util.write_small_idx_dir(
        os.path.join(cls.root, "small"), num_train=2048, num_test=1000)
    full = util.fashion_mnist()
    cls.test_images = input_pipeline.scale(
        full.test.images[:_NUM_TEST]).numpy()

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()

  def _run_dir(self, name):
    return os.path.join(self.get_temp_dir(), name)

  @parameterized.named_parameters(*[(n, n) for n in _FIXTURES])
  def test_migrated_run_agrees_with_the_tf1_session(self, name):
    run_dir = self._run_dir(name)
    result = full_model.migrate_model(self.fixtures[name], run_dir)
    _, scale, floor = _FIXTURES[name]
    self.assertEqual(result.config.posterior_scale, scale)
    self.assertAlmostEqual(result.config.posterior_scale_floor, floor)
    self.assertEqual(
        set(result.agreement),
        {"posterior mean", "posterior scale", "decoded output",
         "per-example loss"})
    options = _FIXTURES[name][0]
    self.assertEqual(result.step, 3 if options.get("global_step") else 0)
    # Restored as every program restores a run, checked against the TF1
    # session on 16 real test images with the same noise.
    config, model, step = runs.restore_model(run_dir)
    self.assertEqual(step, result.step)
    images = self.test_images[100:116]
    noise = np.random.RandomState(5).normal(size=(16, 2)).astype(np.float32)
    loc, tf1_scale, output, loss = _tf1_values(self.fixtures[name], images,
                                               noise)
    posterior = model.approx_posterior(tf.constant(images))
    self.assertAllClose(posterior.loc, loc, atol=1e-5, rtol=0)
    self.assertAllClose(posterior.scale.diag_part(), tf1_scale, atol=1e-5,
                        rtol=0)
    z = objectives.reparameterize(posterior, tf.constant(noise))
    mean = model.decoder.outputs(z)["mean"].numpy().reshape(16, -1)
    self.assertAllClose(mean, output.reshape(16, -1), atol=1e-5, rtol=0)
    native_loss = -objectives.elbo(model, tf.constant(images),
                                   noise=noise).elbo
    if options.get("likelihood") == "gaussian":
      # sum((x - mean)^2) is -log N(x | mean, 1/2) less 784/2 log(pi).
      self.assertEqual(config.likelihood, "gaussian_identity")
      self.assertAllClose(config.gaussian_scale, 0.5 ** 0.5)
      loss = loss + 392 * np.log(np.pi)
    self.assertAllClose(native_loss, loss, atol=0, rtol=1e-5)
    self.assertEqual(config.model, "vae")
    record = json.load(open(os.path.join(run_dir,
                                         run_dir_lib.MIGRATION_RECORD)))
    self.assertEqual(record["step"], result.step)

  def test_per_layer_activations_are_read(self):
    result = full_model.migrate_model(
        self.fixtures["distributions_normal_layers"], self._run_dir("layers"))
    self.assertEqual(result.config.hidden_sizes, (16, 16, 16))
    self.assertEqual(result.config.encoder_activations, "tanh,elu,leaky_relu")
    self.assertEqual(result.config.decoder_activations, "tanh,leaky_relu,elu")

  def test_cli_run_is_resumed_by_tfvae_train_and_improves(self):
    run_dir = self._run_dir("cli")
    done = util.run_tool("tools.migrate",
                         f"--checkpoint={self.fixtures['seed_log_variance']}",
                         f"--run_dir={run_dir}",
                         f"--data_dir={self.small_data}")
    self.assertEqual(done.returncode, 0, done.stderr[-2000:])
    self.assertIn("Verified per-example loss", done.stdout)
    self.assertIn(f"Wrote {run_dir} at step 3", done.stdout)
    # The ELBO before training, on the small test split, with fixed noise.
    _, model, _ = runs.restore_model(run_dir)
    small = util.small_fashion_mnist(2048, 1000)
    images = input_pipeline.scale(small.test.images)
    before = np.mean([
        objectives.elbo(model, images, seed=tf.constant([i, 0])).elbo
        for i in range(4)])
    trained = util.run_tool("tools.train", f"--run_dir={run_dir}",
                            "--epochs=1", f"--data_dir={self.small_data}")
    self.assertEqual(trained.returncode, 0, trained.stderr[-2000:])
    self.assertIn("Resumed from", trained.stderr)
    with open(runs.metrics_path(run_dir)) as f:
      records = [json.loads(line) for line in f]
    self.assertEqual([r["epoch"] for r in records], [1])
    # 32 steps of batch 64 from step 3: the epoch ends at step 32.
    self.assertEqual(records[0]["step"], 32)
    self.assertGreater(records[0]["test_elbo"], before + 10.0)

  def test_evaluate_is_within_half_a_nat_of_the_tf1_loss(self):
    directory = self.fixtures["seed_log_variance"]
    run_dir = self._run_dir("evaluate")
    full_model.migrate_model(directory, run_dir)
    out = os.path.join(self.get_temp_dir(), "metrics.json")
    done = util.run_tool("tools.evaluate", f"--model={run_dir}",
                         "--num_importance_samples=1", f"--out={out}")
    self.assertEqual(done.returncode, 0, done.stderr[-2000:])
    with open(out) as f:
      metrics = json.load(f)
    self.assertEqual(metrics["num_examples"], _NUM_TEST)
    *_, tf1_loss = _tf1_values(directory, self.test_images, passes=3)
    self.assertLess(abs(metrics["elbo"] + float(np.mean(tf1_loss))), 0.5)

  @parameterized.named_parameters(("rmsprop", "seed_log_variance"),
                                  ("adam", "sqrt_exp_adam"))
  def test_optimizer_state_is_carried_over(self, name):
    run_dir = self._run_dir(f"slots_{name}")
    result = full_model.migrate_model(self.fixtures[name], run_dir,
                                      with_optimizer_state=True)
    config, model, _ = runs.restore_model(run_dir)
    optimizer = launch.make_optimizer(config)
    optimizer.build(model.trainable_variables)
    tf.train.Checkpoint(optimizer=optimizer).restore(
        runs.newest_intact_checkpoint(runs.ckpt_dir(run_dir))).expect_partial()
    reader = tf.train.load_checkpoint(os.path.join(self.fixtures[name],
                                                   "model"))
    first = model.encoder.net.layers[0].w
    index = optimizer._index_dict[optimizer._var_key(first)]  # pylint: disable=protected-access
    # The fixture's first variable, `Variable`, is the encoder's first
    # weight.
    if result.config.optimizer == "rmsprop":
      self.assertAllClose(optimizer._velocities[index],  # pylint: disable=protected-access
                          reader.get_tensor("Variable/RMSProp"))
    else:
      self.assertAllClose(optimizer._momentums[index],  # pylint: disable=protected-access
                          reader.get_tensor("Variable/Adam"))
      self.assertAllClose(optimizer._velocities[index],  # pylint: disable=protected-access
                          reader.get_tensor("Variable/Adam_1"))
      self.assertEqual(int(optimizer.iterations), 3)

  def test_disagreement_names_the_tensor_and_writes_nothing(self):
    run_dir = self._run_dir("disagree")
    load = full_model.load_weights

    def off_by_a_little(model, anatomy_, values):
      used = load(model, anatomy_, values)
      model.encoder.net.layers[-1].b.assign_add(
          tf.fill(model.encoder.net.layers[-1].b.shape, 1e-3))
      return used

    with mock.patch.object(full_model, "load_weights", off_by_a_little):
      with self.assertRaisesRegex(errors.TfvaeError,
                                  r"posterior mean \(tensor add_\d+:0\)"):
        full_model.migrate_model(self.fixtures["seed_log_variance"], run_dir)
    self.assertFalse(os.path.exists(run_dir))
    self.assertEqual(
        [n for n in os.listdir(self.get_temp_dir()) if ".tmp-migrate" in n],
        [])

  def test_unsafe_op_is_refused_before_anything_runs(self):
    directory = os.path.join(self.get_temp_dir(), "unsafe")
    migrate_fixtures.write_fixture(directory, image_size=28, hidden_size=16,
                                   unsafe_op="write_file", steps=0)
    os.remove(os.path.join(directory, "decode_log.txt"))
    run_dir = self._run_dir("unsafe_run")
    with self.assertRaisesRegex(errors.TfvaeError, r"WriteFile"):
      full_model.migrate_model(directory, run_dir)
    self.assertFalse(os.path.exists(run_dir))
    self.assertFalse(os.path.exists(os.path.join(directory,
                                                 "decode_log.txt")))

  def test_conv_decoder_is_read(self):
    result = full_model.migrate_model(self.fixtures["conv_decoder"],
                                      self._run_dir("conv"))
    self.assertEqual(result.config.decoder_conv_channels, (4, 4))
    self.assertEqual(result.config.network, "mlp")

  def test_unknown_scale_names_the_op_and_the_generator_route(self):
    directory = os.path.join(self.get_temp_dir(), "abs")
    migrate_fixtures.write_fixture(directory, image_size=28, hidden_size=16,
                                   posterior="abs", steps=0)
    with self.assertRaisesRegex(anatomy.UnsupportedGraphError,
                                r"^Abs:0 \(Abs\) computes the posterior "
                                r"scale.*tfvae-build-generator"):
      full_model.migrate_model(directory, self._run_dir("abs_run"))

  def test_wild_styles_agree_with_their_tf1_sessions(self):
    # The tutorials' and books' 8x8 graphs (tests/wild_fixtures.py), checked
    # on real test images shrunk to 8x8 (Fashion-MNIST is 28x28, so they are
    # verified here, not written as runs).
    styles = ("metzen_adam_static", "scoped_momentum",
              "layers_dropout_two_paths", "distributions_gd_resource",
              "switch_conv_rmsprop_static")
    dirs = wild_fixtures.write_all(os.path.join(self.get_temp_dir(), "wild"),
                                   styles + ("keras_bn_momentum",))
    small = tf.image.resize(self.test_images[:100], [8, 8],
                            method="area").numpy()
    for style in styles:
      meta = graph.MetaGraph(os.path.join(dirs[style], "model.meta"))
      found = anatomy.read_anatomy(meta)
      batch = found.noise.shape.as_list()[-2] or 16
      config = full_model.config_for(found, "fashion_mnist", None, None,
                                     None, None)
      model = kinds.build_model(config)
      prefix = os.path.join(dirs[style], "model")
      full_model.load_weights(model, found,
                              reader.read_all(prefix, found.variables()))
      noise = np.random.RandomState(1).normal(
          size=(batch, config.latent_dim)).astype(np.float32)
      images = small[:batch]
      expected = full_model.tf1_reference(meta, prefix, found, images, noise)
      got = full_model.native_values(model, images, noise, True)
      quantities = [("posterior mean", ""), ("posterior scale", ""),
                    ("decoded output", ""), ("per-example loss", "")]
      with self.subTest(style=style):
        agreement = full_model.compare(quantities, expected, got, batch)
        self.assertLen(agreement, 4)
    with self.assertRaisesRegex(anatomy.UnsupportedGraphError,
                                "batch normalization"):
      anatomy.read_anatomy(graph.MetaGraph(
          os.path.join(dirs["keras_bn_momentum"], "model.meta")))

  def test_cli_refuses_a_non_empty_run_dir_in_one_line(self):
    run_dir = self._run_dir("taken")
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "notes.txt"), "w") as f:
      f.write("mine")
    done = util.run_tool("tools.migrate",
                         f"--checkpoint={self.fixtures['seed_log_variance']}",
                         f"--run_dir={run_dir}")
    self.assertEqual(done.returncode, 1)
    self.assertNotIn("Traceback", done.stderr)
    self.assertRegex(done.stderr.strip().splitlines()[-1],
                     r"^migrate.py: error: --run_dir=.*not empty")
    self.assertEqual(os.listdir(run_dir), ["notes.txt"])


if __name__ == "__main__":
  tf.test.main()
