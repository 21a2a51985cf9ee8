"""Tests of tfvae.training and tfvae.runs: steps, checkpoints, resuming."""
import glob
import json
import os
import shutil
import subprocess
import sys
import textwrap

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import tfvae
from tfvae import errors
from tfvae import kinds
from tfvae import launch
from tfvae import objectives
from tfvae import runs
from tests import util

# 256 training images at batch 32: 8 steps per epoch.
_SMALL = dict(epochs=1, batch_size=32, hidden_sizes=(32,), latent_dim=2,
              save_every_steps=10**6, log_every_steps=10**6)


def _small_data():
  return util.small_fashion_mnist(num_train=256, num_test=64)


def _train(run_dir, **overrides):
  config = tfvae.Config(**{**_SMALL, **overrides})
  return launch.run(config, run_dir, dataset=_small_data())


def _weights(model):
  return [v.numpy() for v in model.trainable_variables]


def _metrics(run_dir):
  with open(runs.metrics_path(run_dir)) as f:
    return [json.loads(line) for line in f]


def _events(run_dir, which):
  """{tag: [(step, value)]} of RUN_DIR/summaries/WHICH, in order written.

  Scalars give their value, images their decoded pixels [H, W] (0..255).
  """
  events = {}
  paths = sorted(glob.glob(os.path.join(run_dir, "summaries", which,
                                        "events.*")))
  for path in paths:
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        array = tf.make_ndarray(value.tensor)
        if array.ndim:  # an image summary: width, height, PNG bytes
          array = tf.io.decode_png(array[2]).numpy()[..., 0].astype(
              np.float64)
        else:
          array = float(array)
        events.setdefault(value.tag, []).append((event.step, array))
  return events


def _sigmoid(logits):
  return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))


def _tiles(images, columns):
  """Images [N, H, W] in [0, 1] tiled with 1-pixel white gaps, as 0..255."""
  n, height, width = images.shape
  rows = -(-n // columns)
  out = np.ones((rows * (height + 1) - 1, columns * (width + 1) - 1))
  for i, image in enumerate(images):
    r, c = divmod(i, columns)
    out[r * (height + 1):r * (height + 1) + height,
        c * (width + 1):c * (width + 1) + width] = image
  return np.round(out * 255)


def _png(path):
  with open(path, "rb") as f:
    return tf.io.decode_png(f.read()).numpy()[..., 0].astype(np.float64)


class TrainingTest(tf.test.TestCase, parameterized.TestCase):

  def test_writes_the_documented_run_directory(self):
    run_dir = self.create_tempdir().full_path
    trainer, records = _train(run_dir, epochs=2)
    self.assertLen(records, 2)
    for key in ("epoch", "step", "train_loss", "train_elbo", "train_rate",
                "train_distortion", "test_elbo", "test_rate",
                "test_distortion", "examples_per_sec", "wall_time"):
      self.assertIn(key, records[0])
    self.assertEqual([r["epoch"] for r in _metrics(run_dir)], [1, 2])
    self.assertEqual(_metrics(run_dir)[-1]["step"], 16)
    self.assertAllClose(records[-1]["test_elbo"],
                        -(records[-1]["test_rate"] +
                          records[-1]["test_distortion"]))
    saved = tfvae.config.load(runs.config_path(run_dir))
    self.assertEqual(saved.image_shape, (28, 28, 1))
    self.assertEqual(saved.hidden_sizes, (32,))
    self.assertEqual(int(trainer.step), 16)

    train_events = _events(run_dir, "train")
    for name in ("train_loss", "train_elbo", "train_rate", "train_distortion",
                 "examples_per_sec"):
      self.assertEqual([step for step, _ in train_events[name]], [8, 16],
                       name)
      self.assertAllClose([value for _, value in train_events[name]],
                          [r[name] for r in records], rtol=1e-6, msg=name)
    self.assertIn("loss", train_events)
    eval_events = _events(run_dir, "eval")
    for name in ("test_elbo", "test_rate", "test_distortion"):
      self.assertEqual([step for step, _ in eval_events[name]], [8, 16])
      self.assertAllClose([value for _, value in eval_events[name]],
                          [r[name] for r in records], rtol=1e-6, msg=name)

    # The pictures of the last epoch, against the decoder at the known z:
    # 64 prior samples from (seed, 7) in rows of 8, and 16 test images
    # spread evenly over the split (first and last included) above their
    # posterior-mean reconstructions.
    z = tf.random.stateless_normal([64, 2], [0, 7], alg="philox")
    samples = _sigmoid(trainer.model.decoder.net(z).numpy())
    all_test = _small_data().test.images
    spread = np.arange(16) * (len(all_test) - 1) // 15
    test_images = all_test[spread]
    x = tf.constant(test_images.reshape(16, -1), tf.float32) / 255.0
    loc = np.split(trainer.model.encoder.net(x).numpy(), 2, axis=-1)[0]
    recon = _sigmoid(trainer.model.decoder.net(tf.constant(loc)).numpy())
    want_samples = _tiles(samples.reshape(64, 28, 28), 8)
    want_recon = _tiles(np.concatenate(
        [test_images.reshape(16, 28, 28) / 255.0, recon.reshape(16, 28, 28)]),
                        16)
    pictures = os.path.join(run_dir, "pictures")
    for name, want in (("samples", want_samples),
                       ("reconstructions", want_recon)):
      got = _png(os.path.join(pictures, f"{name}_epoch_002.png"))
      self.assertEqual(got.shape, want.shape)
      # float32 network outputs against float64: a pixel may round apart.
      self.assertLessEqual(np.max(np.abs(got - want)), 1, name)
      self.assertEqual([step for step, _ in eval_events[name]], [8, 16])
      self.assertAllEqual(eval_events[name][-1][1], got, name)

  def test_test_elbo_is_the_mean_of_the_model_elbo(self):
    run_dir = self.create_tempdir().full_path
    trainer, records = _train(run_dir)
    images = _small_data().test.images
    x = images.astype(np.float64) / 255.0
    # The evaluation's fixed noise, replayed from its documented contract:
    # the 64 test images are one batch (b = 0) with seed pair
    # (seed, 2**20 + b), and the objective's first draw folds in 1.
    batch_seed = tf.random.experimental.stateless_fold_in(
        tf.constant([0, 2**20], tf.int64), 1)
    eps = tf.random.stateless_normal([64, 2], batch_seed,
                                     alg="philox").numpy().astype(np.float64)
    loc, raw_scale = np.split(
        trainer.model.encoder.net(
            tf.reshape(tf.constant(images, tf.float32) / 255.0,
                       [64, -1])).numpy().astype(np.float64), 2, axis=-1)
    scale = np.log1p(np.exp(raw_scale)) + 1e-5
    z = loc + scale * eps
    rate = np.sum(0.5 * (scale**2 + loc**2 - 1) - np.log(scale), axis=-1)
    logits = trainer.model.decoder.net(
        tf.constant(z, tf.float32)).numpy().astype(np.float64)
    distortion = util.bce(logits, x.reshape(64, -1))
    self.assertAllClose(records[0]["test_rate"], np.mean(rate), rtol=1e-5)
    self.assertAllClose(records[0]["test_distortion"], np.mean(distortion),
                        rtol=1e-5)
    self.assertAllClose(records[0]["test_elbo"],
                        -np.mean(rate + distortion), rtol=1e-5)

  def test_checkpoint_round_trip_gives_identical_outputs(self):
    run_dir = self.create_tempdir().full_path
    trainer, _ = _train(run_dir)
    config, model, step = runs.restore_model(run_dir)
    self.assertEqual(step, 8)
    self.assertEqual(config.latent_dim, 2)
    x = tfvae.input_pipeline.scale(_small_data().test.images[:5])
    z = tf.random.stateless_normal([5, 2], [1, 1])
    self.assertAllEqual(model.decoder.outputs(z)["logits"],
                        trainer.model.decoder.outputs(z)["logits"])
    self.assertAllEqual(model.approx_posterior(x).stddev(),
                        trainer.model.approx_posterior(x).stddev())

  def test_resume_continues_the_step_count_and_extends_epochs(self):
    run_dir = self.create_tempdir().full_path
    _train(run_dir, epochs=1)
    trainer, records = _train(run_dir, epochs=3)
    self.assertEqual([r["epoch"] for r in records], [2, 3])
    self.assertEqual(int(trainer.step), 24)
    self.assertEqual([r["epoch"] for r in _metrics(run_dir)], [1, 2, 3])
    _, records = _train(run_dir, epochs=3)
    self.assertEqual(records, [])

  def test_resumed_run_equals_uninterrupted_run(self):
    whole = self.create_tempdir().full_path
    trainer, _ = _train(whole, epochs=2, save_every_steps=3,
                        keep_checkpoints=100, binarize="dynamic")
    want = _weights(trainer.model)
    # A run stopped at step 6 (mid-epoch 1): its checkpoint ckpt-6 alone.
    part = self.create_tempdir().full_path
    shutil.copy(runs.config_path(whole), runs.config_path(part))
    os.makedirs(runs.ckpt_dir(part))
    for f in glob.glob(os.path.join(runs.ckpt_dir(whole), "ckpt-6.*")):
      shutil.copy(f, runs.ckpt_dir(part))
    tf.compat.v1.train.update_checkpoint_state(runs.ckpt_dir(part), "ckpt-6")
    resumed, records = _train(part, epochs=2, save_every_steps=3,
                              keep_checkpoints=100, binarize="dynamic")
    self.assertEqual([r["epoch"] for r in records], [1, 2])
    for a, b in zip(want, _weights(resumed.model)):
      self.assertAllClose(a, b, rtol=1e-6, atol=1e-6)

  def test_steps_per_call_gives_bit_identical_weights(self):
    plain, plain_records = _train(self.create_tempdir().full_path, epochs=2)
    # 8 steps per epoch in calls of 3, 3, 2: a dropped or repeated batch, or
    # a step seeded with another step's noise, changes the weights.
    other, other_records = _train(self.create_tempdir().full_path, epochs=2,
                                  steps_per_call=3)
    self.assertEqual(int(other.step), 16)
    for a, b in zip(_weights(plain.model), _weights(other.model)):
      self.assertAllEqual(a, b)
    for key in ("test_elbo", "test_rate", "test_distortion"):
      self.assertEqual([r[key] for r in plain_records],
                       [r[key] for r in other_records], key)
    # The step sums its losses in float32 within a call, the loop in float64
    # across calls: the epoch means differ in the last float32 bits only.
    self.assertAllClose([r["train_loss"] for r in plain_records],
                        [r["train_loss"] for r in other_records], rtol=1e-6,
                        atol=0)

  def test_jit_does_not_change_results(self):
    _, plain = _train(self.create_tempdir().full_path, epochs=2)
    _, other = _train(self.create_tempdir().full_path, epochs=2, jit=True)
    # XLA reorders float sums, and Adam turns last-bit differences of
    # near-zero gradients into lr-sized steps: compare the losses, which
    # settle such noise, not individual weights.
    for key in ("train_loss", "test_elbo", "test_rate", "test_distortion"):
      self.assertAllClose([r[key] for r in plain], [r[key] for r in other],
                          rtol=2e-3, msg=key)

  def test_same_seed_same_curve_other_seed_other_curve(self):
    curves = []
    for seed in (0, 0, 1):
      _, records = _train(self.create_tempdir().full_path, epochs=2, seed=seed)
      curves.append([r["train_elbo"] for r in records])
    self.assertAllClose(curves[0], curves[1], rtol=1e-6)
    self.assertNotAllClose(curves[0], curves[2])

  def test_refuses_a_run_dir_trained_with_other_settings(self):
    run_dir = self.create_tempdir().full_path
    _train(run_dir)
    with self.assertRaisesRegex(errors.RunDirError,
                                r"--latent_dim=3 \(run has 2\).*"
                                r"--likelihood=gaussian \(run has bernoulli\)"):
      _train(run_dir, latent_dim=3, likelihood="gaussian")
    # Flags left out take the run's values.
    config = tfvae.Config(latent_dim=7)
    merged = launch.resolve_config(run_dir, config, explicit={"epochs"})
    self.assertEqual(merged.latent_dim, 2)

  def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(self):
    run_dir = self.create_tempdir().full_path

    class PoisonedAtStep5(objectives.ElboObjective):

      def __call__(self, model, images, noise, step=None):
        loss, metrics = super().__call__(model, images, noise, step)
        return tf.where(step >= 5, np.nan, loss), metrics

    original = kinds.build_objective
    kinds.build_objective = lambda config: PoisonedAtStep5()
    try:
      with self.assertRaisesRegex(errors.NonFiniteLossError,
                                  "NaN or infinite within steps 5-6;"):
        _train(run_dir, epochs=2, save_every_steps=2)
    finally:
      kinds.build_objective = original
    newest = tf.train.latest_checkpoint(runs.ckpt_dir(run_dir))
    self.assertEndsWith(newest, "ckpt-4")
    reader = tf.train.load_checkpoint(newest)
    for name in reader.get_variable_to_shape_map():
      value = reader.get_tensor(name)
      if np.issubdtype(np.asarray(value).dtype, np.floating):
        self.assertTrue(np.all(np.isfinite(value)), name)


class DamagedRunDirTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.pristine = os.path.join(
        tf.compat.v1.test.get_temp_dir(), "pristine_run")
    shutil.rmtree(cls.pristine, ignore_errors=True)
    # Checkpoints at steps 4, 8 (epoch end), 12, 16.
    _train(cls.pristine, epochs=2, save_every_steps=4, keep_checkpoints=10)

  def _copy(self):
    run_dir = os.path.join(self.create_tempdir().full_path, "run")
    shutil.copytree(self.pristine, run_dir)
    return run_dir

  def _state_file(self, run_dir):
    return os.path.join(runs.ckpt_dir(run_dir), "checkpoint")

  @parameterized.named_parameters(
      ("empty", b""),
      ("garbage", b"\x00\xffnot a proto {{{"),
      ("outside", b'model_checkpoint_path: "/etc/ckpt-16"\n'),
      ("missing", b'model_checkpoint_path: "ckpt-99"\n'))
  def test_damaged_state_file_falls_back_and_says_so(self, content):
    run_dir = self._copy()
    with open(self._state_file(run_dir), "wb") as f:
      f.write(content)
    with self.assertLogs(level="WARNING") as logs:
      trainer, _ = _train(run_dir, epochs=3)
    self.assertIn("checkpoint is damaged", "\n".join(logs.output))
    self.assertIn("ckpt-16", "\n".join(logs.output))
    self.assertEqual(int(trainer.step), 24)  # resumed at 16, not from zero
    self.assertTrue(glob.glob(self._state_file(run_dir) + ".damaged-*"))

  def test_state_file_behind_an_intact_newer_checkpoint_resumes_newest(self):
    # What a kill between writing ckpt-16 and updating the state file leaves.
    run_dir = self._copy()
    ckpt = runs.ckpt_dir(run_dir)
    tf.compat.v1.train.update_checkpoint_state(
        ckpt, "ckpt-12", all_model_checkpoint_paths=["ckpt-4", "ckpt-8",
                                                     "ckpt-12"])
    trainer = launch.build_trainer(
        tfvae.config.load(runs.config_path(run_dir)), run_dir, _small_data(),
        tf.distribute.get_strategy())
    restored = trainer._restore()  # pylint: disable=protected-access
    self.assertEndsWith(restored, "ckpt-16")
    self.assertEqual(int(trainer.step), 16)
    self.assertEndsWith(tf.train.latest_checkpoint(ckpt), "ckpt-16")
    state = tf.train.get_checkpoint_state(ckpt)
    self.assertEqual([os.path.basename(p)
                      for p in state.all_model_checkpoint_paths],
                     ["ckpt-4", "ckpt-8", "ckpt-12", "ckpt-16"])
    self.assertEmpty(glob.glob(os.path.join(ckpt, "*.damaged-*")))

  @parameterized.named_parameters(("truncated_data", "truncate"),
                                  ("bit_flip", "flip"),
                                  ("truncated_index", "index"))
  def test_damaged_newest_checkpoint_falls_back_to_older(self, how):
    run_dir = self._copy()
    ckpt = runs.ckpt_dir(run_dir)
    data_file = os.path.join(ckpt, "ckpt-16.data-00000-of-00001")
    index_file = os.path.join(ckpt, "ckpt-16.index")
    if how == "truncate":
      with open(data_file, "r+b") as f:
        f.truncate(os.path.getsize(data_file) // 2)
    elif how == "flip":
      with open(data_file, "r+b") as f:
        f.seek(os.path.getsize(data_file) // 3)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x10]))
    else:
      with open(index_file, "r+b") as f:
        f.truncate(10)
    with self.assertLogs(level="WARNING") as logs:
      trainer = launch.build_trainer(
          tfvae.config.load(runs.config_path(run_dir)), run_dir,
          _small_data(), tf.distribute.get_strategy())
      restored = trainer._restore()  # pylint: disable=protected-access
    self.assertEndsWith(restored, "ckpt-12")
    self.assertEqual(int(trainer.step), 12)
    self.assertRegex("\n".join(logs.output), r"ckpt-16 is damaged.*ckpt-12")
    self.assertTrue(glob.glob(os.path.join(ckpt, "ckpt-16.*.damaged-*")))
    self.assertEndsWith(tf.train.latest_checkpoint(ckpt), "ckpt-12")

  def test_all_checkpoints_damaged_is_an_error_naming_the_file(self):
    run_dir = self._copy()
    for f in glob.glob(os.path.join(runs.ckpt_dir(run_dir), "*.data-*")):
      with open(f, "r+b") as fh:
        fh.truncate(3)
    with self.assertRaisesRegex(errors.RunDirError,
                                "no intact checkpoint in .*ckpt-16"):
      _train(run_dir, epochs=3)
    # Nothing was renamed: the user's files are as they were.
    self.assertEmpty(glob.glob(os.path.join(runs.ckpt_dir(run_dir),
                                            "*.damaged-*")))

  def test_state_without_checkpoint_files_is_refused(self):
    run_dir = self._copy()
    for f in glob.glob(os.path.join(runs.ckpt_dir(run_dir), "ckpt-*")):
      os.remove(f)
    with self.assertRaisesRegex(errors.RunDirError, "refusing to start over"):
      _train(run_dir, epochs=3)

  def test_checkpoints_without_config_are_refused(self):
    run_dir = self._copy()
    os.remove(runs.config_path(run_dir))
    with self.assertRaisesRegex(errors.RunDirError, "no config.json"):
      _train(run_dir, epochs=3)


_MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    from tfvae import launch
    launch.configure_cpu_devices(2)
    import tfvae
    from tests import util
    small = util.small_fashion_mnist(num_train=256, num_test=64)
    out = {}
    for name in ("default", "mirrored"):
      config = tfvae.Config(batch_size=32, hidden_sizes=(32,),
                            binarize="dynamic", strategy=name,
                            image_shape=(28, 28, 1))
      strategy = launch.make_strategy(name)
      trainer = launch.build_trainer(config, sys.argv[1] + name, small,
                                     strategy)
      batches = tfvae.input_pipeline.train_dataset(trainer.train_split, 32, 0,
                                                   0)
      iterator = iter(strategy.experimental_distribute_dataset(batches))
      sums = trainer.train_step.steps_from_iterator(
          iterator, tf.constant(3)).numpy()
      out[name] = {"replicas": strategy.num_replicas_in_sync,
                   "sums": sums.tolist()}
      np.savez(sys.argv[1] + name + ".npz",
               *[v.numpy() for v in trainer.model.trainable_variables])
    print(json.dumps(out))
""")


class MirroredTest(tf.test.TestCase):

  def test_mirrored_on_two_cpus_matches_default_strategy(self):
    tmp = self.create_tempdir().full_path + "/"
    result = subprocess.run(
        [sys.executable, "-c", _MIRRORED_SCRIPT, tmp], cwd=util.REPO,
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    out = json.loads(result.stdout.strip().splitlines()[-1])
    self.assertEqual(out["default"]["replicas"], 1)
    self.assertEqual(out["mirrored"]["replicas"], 2)
    # Same loss, ELBO, rate and distortion over three steps, and the same
    # weights after them: each example got the same noise on either side.
    self.assertAllClose(out["default"]["sums"], out["mirrored"]["sums"],
                        rtol=1e-5)
    default = np.load(tmp + "default.npz")
    mirrored = np.load(tmp + "mirrored.npz")
    self.assertLen(default.files, 8)  # kernel and bias of four layers
    self.assertEqual(default.files, mirrored.files)
    for key in default.files:
      self.assertAllClose(default[key], mirrored[key], rtol=1e-5, atol=1e-6,
                          msg=key)


if __name__ == "__main__":
  tf.test.main()
