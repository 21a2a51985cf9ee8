"""Migrated runs of images other than 28x28x1, and every program on them.

A TF1 MLP VAE of 12x12x3 images (`migrate_fixtures` with channels=3) is
migrated by `tfvae-migrate --data=IMAGES.npz`; the run then trains, plots and
exports with no data flags. The references are the TF1 session, run here
through the tensors the fixture recorded: the migration's own check and the
export's own verification are not trusted.
"""
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tests import migrate_fixtures
from tests import util
from tfvae import config as config_lib
from tfvae import errors
from tfvae import export
from tfvae import image_sources
from tfvae import launch
from tfvae import runs
from tfvae.migrate import full_model
from tfvae.migrate import run_dir as run_dir_lib

v1 = tf.compat.v1

_SIDE, _CHANNELS, _LATENT = 12, 3, 2
_NUM_IMAGES = 80  # 72 train (one batch of 64), 8 test: --test_fraction 0.1
_NUM_CLASSES = 3

# The programs as a user runs them, in one process to pay for one TensorFlow
# start: `tfvae-migrate --data`, `tfvae-train --epochs=1` on a copy of the
# run (no data flags) and `tfvae-plot --kind=K` for each kind. Each program's
# flags are removed before the next defines its own. Prints, last,
# {"train": [metric records], "plot": {kind: "ok" or the error}}.
_DRIVER = r"""
import json, os, shutil, sys
from absl import flags
from absl import logging
from tfvae import errors
FLAGS = flags.FLAGS
tf1, data, run_dir, trained, out_dir = sys.argv[1:]


def run(program, *args):
  __import__(program)
  FLAGS.unparse_flags()
  FLAGS([program, *args])
  logging.set_verbosity(logging.INFO)  # as _cli.run does
  return sys.modules[program].main([program])


def forget(program):
  for flag in FLAGS.get_flags_for_module(program):
    delattr(FLAGS, flag.name)


run("tools.migrate", f"--checkpoint={tf1}", f"--run_dir={run_dir}",
    f"--data={data}")
forget("tools.migrate")
shutil.copytree(run_dir, trained)
run("tools.train", f"--run_dir={trained}", "--epochs=1")
forget("tools.train")
with open(os.path.join(trained, "metrics.jsonl")) as f:
  report = {"train": [json.loads(line) for line in f], "plot": {}}
from tools import plot
for kind in plot._KINDS:
  out = os.path.join(out_dir, kind + ("" if kind == "projector" else ".png"))
  try:
    run("tools.plot", f"--model={trained}", f"--kind={kind}", f"--out={out}",
        "--grid_size=4", "--count=4", "--steps=4")
    report["plot"][kind] = "ok"
  except errors.TfvaeError as e:
    report["plot"][kind] = str(e)
sys.stdout.write("\n" + json.dumps(report))
"""


def _tf1_run(directory, *requests):
  """Runs the fixture's TF1 graph once per (fetch, feeds) of `requests`, in
  one session; both name its tensors by their keys in expected.npz
  ("loc_tensor", ...). Returns [[fetched values]]."""
  names = np.load(os.path.join(directory, "expected.npz"))
  with tf.Graph().as_default():
    saver = v1.train.import_meta_graph(os.path.join(directory, "model.meta"))
    with v1.Session() as sess:
      saver.restore(sess, os.path.join(directory, "model"))
      return [sess.run([str(names[k]) for k in fetch],
                       {str(names[k]): v for k, v in feeds.items()})
              for fetch, feeds in requests]


def _png(path):
  """The PNG at `path` decoded, uint8 [H, W, 3]."""
  with open(path, "rb") as f:
    return tf.io.decode_png(f.read(), channels=3).numpy()


class MigrateRunsTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp(prefix="tfvae_migrate_runs_")
    cls.tf1 = os.path.join(cls.root, "tf1")
    migrate_fixtures.write_fixture(cls.tf1, image_size=_SIDE,
                                   channels=_CHANNELS, hidden_size=8,
                                   latent_size=_LATENT)
    rng = np.random.RandomState(0)
    cls.images = rng.randint(0, 256, (_NUM_IMAGES, _SIDE, _SIDE, _CHANNELS),
                             dtype=np.uint8)
    cls.data = os.path.join(cls.root, "colour.npz")
    np.savez(cls.data, images=cls.images,
             labels=rng.randint(0, _NUM_CLASSES, _NUM_IMAGES))
    cls.run_dir = os.path.join(cls.root, "run")
    cls.trained = os.path.join(cls.root, "trained")
    cls.plots = os.path.join(cls.root, "plots")
    os.makedirs(cls.plots)
    # Runs while the tests that do not need it (export, refusals) do; its
    # output goes to files, which never fill up as a pipe would.
    cls.logs = [os.path.join(cls.root, name) for name in ("out", "err")]
    with open(cls.logs[0], "w") as out, open(cls.logs[1], "w") as err:
      cls.driver = subprocess.Popen(
          [sys.executable, "-c", _DRIVER, cls.tf1, cls.data, cls.run_dir,
           cls.trained, cls.plots], cwd=util.REPO, stdout=out, stderr=err)

  @classmethod
  def tearDownClass(cls):
    if cls.driver.poll() is None:
      cls.driver.kill()
    cls.driver.wait()
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()

  def _report(self):
    """The driver's (stdout, stderr, report), once it has finished."""
    returncode = self.driver.wait(timeout=600)
    stdout, stderr = (open(path).read() for path in self.logs)
    self.assertEqual(returncode, 0, stderr[-3000:])
    return stdout, stderr, json.loads(stdout.rpartition("\n")[2])

  def test_migrate_records_the_data_as_tfvae_train_and_verifies_on_it(self):
    stdout, _, _ = self._report()
    # 8 of the 80 images are the held-out test split.
    self.assertIn("Verified decoded output", stdout)
    self.assertIn("on 8 test images", stdout)
    with open(runs.config_path(self.run_dir)) as f:
      saved = json.load(f)
    expected = json.loads(json.dumps(
        config_lib.Config(data=self.data).to_dict()))
    for field in ("data", "test_data", "test_fraction", "image_size",
                  "channels", "dataset", "data_dir"):
      self.assertEqual(saved[field], expected[field], field)
    self.assertEqual(saved["image_shape"], [_SIDE, _SIDE, _CHANNELS])
    # The restored run agrees with the TF1 session on all 80 images.
    _, model, step = runs.restore_model(self.run_dir)
    self.assertEqual(step, 0)
    x = self.images.astype(np.float32) / 255.0
    (loc, scale), = _tf1_run(self.tf1, (["loc_tensor", "scale_tensor"],
                                        {"input_tensor": x}))
    posterior = model.approx_posterior(tf.constant(x))
    self.assertAllClose(posterior.loc, loc, atol=1e-5, rtol=0)
    self.assertAllClose(posterior.scale.diag_part(), scale, atol=1e-5,
                        rtol=0)

  def test_tfvae_migrate_defines_the_librarys_data_fields(self):
    # Read from the source: importing the program here would define its
    # flags beside other programs' in this process.
    with open(os.path.join(util.REPO, "tools", "migrate.py")) as f:
      names = [ast.literal_eval(node.value)
               for node in ast.parse(f.read()).body
               if isinstance(node, ast.Assign)
               and getattr(node.targets[0], "id", None) == "DATA_FLAGS"]
    self.assertEqual(names, [run_dir_lib.DATA_FIELDS])
    self.assertContainsSubset(run_dir_lib.DATA_FIELDS,
                              {f.name for f in config_lib.fields()})

  def test_image_size_and_channels_bring_other_images_to_the_graph(self):
    grey = os.path.join(self.get_temp_dir(), "grey.npz")
    np.savez(grey, images=self.images[:20, 2:, 2:, 0])  # [20, 10, 10]
    run_dir = os.path.join(self.get_temp_dir(), "grey_run")
    with self.assertRaises(errors.TfvaeError) as refused:
      full_model.migrate_model(self.tf1, run_dir, data_fields={"data": grey})
    self.assertEqual(
        str(refused.exception),
        f"the graph takes images [12, 12, 3] but --data={grey} has "
        "[10, 10, 1] (--image_size and --channels bring images to another "
        "shape)")
    self.assertFalse(os.path.exists(run_dir))
    result = full_model.migrate_model(
        self.tf1, run_dir, data_fields={"data": grey, "image_size": (12, 12),
                                        "channels": 3})
    config = runs.restore_model(run_dir)[0]
    self.assertEqual((config.image_size, config.channels), ((12, 12), 3))
    self.assertEqual(config, result.config)
    self.assertEqual(image_sources.load_for(config).image_shape,
                     (_SIDE, _SIDE, _CHANNELS))

  def test_exported_signatures_agree_with_the_tf1_session(self):
    run_dir = os.path.join(self.get_temp_dir(), "run")
    full_model.migrate_model(self.tf1, run_dir,
                             data_fields={"data": self.data})
    export_dir = os.path.join(self.get_temp_dir(), "export")
    full = tf.saved_model.load(export.export_run(run_dir, export_dir))
    generator = tf.saved_model.load(
        export.export_run(run_dir, export_dir, part="generator"))
    self.assertNotIn("encode", generator.signatures)
    x = self.images[:6].astype(np.float32) / 255.0
    z = migrate_fixtures.latent_points(_LATENT)
    seeds = tf.constant([3, 1, 4], tf.int64)
    drawn = {name: loaded.signatures["generate"](seed=seeds)
             for name, loaded in (("full", full), ("generator", generator))}
    (loc, scale), (decoded,), *generated = _tf1_run(
        self.tf1, (["loc_tensor", "scale_tensor"], {"input_tensor": x}),
        (["output_tensor"], {"latent_tensor": z}),
        *[(["output_tensor"], {"latent_tensor": d["z"].numpy()})
          for d in drawn.values()])
    encoded = full.signatures["encode"](x=tf.constant(x))
    self.assertAllClose(encoded["loc"], loc, atol=1e-5, rtol=0)
    self.assertAllClose(encoded["scale"], scale, atol=1e-5, rtol=0)
    shape = [-1, _SIDE, _SIDE, _CHANNELS]
    for (name, loaded), (images,) in zip(
        (("full", full), ("generator", generator)), generated):
      self.assertAllClose(loaded.signatures["decode"](z=tf.constant(z))["mean"],
                          decoded.reshape(shape), atol=1e-5, rtol=0, msg=name)
      self.assertAllClose(drawn[name]["images"], images.reshape(shape),
                          atol=1e-5, rtol=0, msg=name)

  def test_train_resumes_it_on_its_data_and_plot_draws_every_kind(self):
    _, stderr, report = self._report()
    # One batch of 64 of the 72 training images, from the migrated step 0.
    self.assertEqual([(r["epoch"], r["step"]) for r in report["train"]],
                     [(1, 1)])
    with open(os.path.join(self.trained, launch.DATA_RECORD)) as f:
      self.assertEqual(json.load(f)["train_examples"], 72)
    self.assertIn("Resumed from", stderr)
    results = report["plot"]
    with open(os.path.join(util.REPO, "tools", "plot.py")) as f:
      kinds = [ast.literal_eval(node.value)
               for node in ast.parse(f.read()).body
               if isinstance(node, ast.Assign)
               and getattr(node.targets[0], "id", None) == "_KINDS"][0]
    self.assertEqual(list(results), list(kinds))
    # Only a cvae draws by class.
    self.assertIn("not a conditional model", results.pop("classes"))
    self.assertEqual(set(results.values()), {"ok"}, results)
    for kind in results:
      path = os.path.join(self.plots, kind + ".png")
      if kind == "projector":
        path = os.path.join(self.plots, kind, "sprite.png")
      picture = _png(path).astype(np.int64)
      self.assertGreater(picture.shape[0] * picture.shape[1], 1000, kind)
      # Not blank: axes, text and background are grey; the colour images
      # decoded, the points and the curves are not (at least 395 pixels of
      # them, in `latent`'s 8 points).
      coloured = np.ptp(picture, axis=-1) > 30
      self.assertGreater(np.count_nonzero(coloured), 100, kind)


if __name__ == "__main__":
  tf.test.main()
