"""The TensorBoard projector files of a run, read by TensorBoard's own plugin.

A tiny run is trained (its last epoch writes the projector files); TensorBoard's
projector plugin is then pointed at the run directory, as `tensorboard
--logdir RUN_DIR` would, and asked for the runs, the embedding's tensor,
metadata and sprite, which are compared with the model's posterior means and
the test images.
"""
import io
import json
import math
import os
import tempfile

import numpy as np
import PIL.Image
import tensorflow as tf
from tensorboard.backend.event_processing import data_provider
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from tensorboard.plugins.projector import projector_plugin
import werkzeug.test

from tests import test_explore as explore_tests
from tests import util
from tfvae import trained

_STATE = {}


def setUpModule():
  root = tempfile.mkdtemp(prefix="tfvae_projector_")
  dataset = explore_tests.small_dataset()
  run_dir = explore_tests.train_run(root, "vae", dataset, latent_dim=3)
  _STATE.update(root=root, dataset=dataset, run_dir=run_dir,
                model=trained.open_model(run_dir))


def tensorboard_projector(logdir):
  """A test client of TensorBoard's projector plugin over `logdir`."""
  multiplexer = plugin_event_multiplexer.EventMultiplexer()
  multiplexer.AddRunsFromDirectory(logdir)
  multiplexer.Reload()
  provider = data_provider.MultiplexerDataProvider(multiplexer, logdir)
  plugin = projector_plugin.ProjectorPlugin(base_plugin.TBContext(
      logdir=logdir, data_provider=provider, multiplexer=multiplexer))
  routes = plugin.get_plugin_apps()

  def get(route, **query):
    client = werkzeug.test.Client(routes[route])
    response = client.get(route, query_string=query)
    assert response.status_code == 200, (route, response.get_data())
    return response.get_data()

  return get


class ProjectorTest(tf.test.TestCase):

  def check_projector(self, logdir, run, count):
    get = tensorboard_projector(logdir)
    self.assertIn(run, json.loads(get("/runs")))
    info = json.loads(get("/info", run=run))
    (embedding,) = info["embeddings"]
    self.assertEqual(embedding["tensorName"], "posterior_means")
    self.assertEqual(embedding["tensorShape"], [count, 3])
    self.assertEqual(embedding["sprite"]["singleImageDim"], [28, 28])
    tensor = np.frombuffer(get("/tensor", run=run, name="posterior_means"),
                           np.float32).reshape(count, 3)
    test = _STATE["dataset"].test
    expected = explore_tests.posterior_means(_STATE["model"],
                                             test.images[:count])
    self.assertAllClose(tensor, expected, atol=1e-5)
    metadata = get("/metadata", run=run, name="posterior_means").decode()
    rows = metadata.rstrip("\n").split("\n")
    self.assertEqual(rows[0], "label\tclass")
    self.assertLen(rows, count + 1)
    names = _STATE["dataset"].class_names
    self.assertEqual(rows[1:], [f"{l}\t{names[l]}" for l in
                                test.labels[:count]])
    with PIL.Image.open(io.BytesIO(get("/sprite_image", run=run,
                                       name="posterior_means"))) as sprite:
      pixels = np.asarray(sprite.convert("L"))
    columns = math.ceil(math.sqrt(count))
    self.assertEqual(pixels.shape, (math.ceil(count / columns) * 28,
                                    columns * 28))
    for i in (0, 1, columns, count - 1):
      r, c = divmod(i, columns)
      self.assertAllEqual(pixels[r * 28:(r + 1) * 28, c * 28:(c + 1) * 28],
                          test.images[i, ..., 0])

  def test_training_writes_the_projector_of_the_test_split(self):
    count = len(_STATE["dataset"].test.images)
    self.check_projector(_STATE["run_dir"], "summaries/eval", count)

  def test_plot_kind_projector_writes_a_log_directory(self):
    out = os.path.join(_STATE["root"], "projector_logdir")
    data_dir = util.write_small_idx_dir(os.path.join(_STATE["root"], "data"))
    result = util.run_tool("tools.plot", f"--model={_STATE['run_dir']}",
                           "--kind=projector", f"--out={out}",
                           f"--data_dir={data_dir}", "--max_examples=50")
    self.assertEqual(result.returncode, 0, result.stderr)
    # Shown as the log directory itself (run ".").
    self.check_projector(out, ".", 50)


if __name__ == "__main__":
  tf.test.main()
