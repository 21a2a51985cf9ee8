"""Tests of the latent space explorer's server (tfvae/explore, tools/explore).

Two tiny Fashion-MNIST runs (a VAE with a 2-d latent and a cvae with a 3-d
one) and a generator export are made once for the module; every picture the
server sends is checked against the model's own distributions
(`likelihood(z).mean()`, `approx_posterior(x).mean()`), not against the
export functions the explorer calls.
"""
import http.client
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request

import numpy as np
import PIL.Image
import tensorflow as tf

from tests import util
from tfvae import config as config_lib
from tfvae import data
from tfvae import errors
from tfvae import export as export_lib
from tfvae import launch
from tfvae import trained
from tfvae.explore import explorer as explorer_lib
from tfvae.explore import server as server_lib

NUM_POINTS = 150
_STATE = {}


def small_dataset():
  full = util.fashion_mnist()
  return data.Dataset(
      name="fashion_mnist",
      train=data.Split(full.train.images[:512], full.train.labels[:512]),
      test=data.Split(full.test.images[:NUM_POINTS],
                      full.test.labels[:NUM_POINTS]),
      class_names=full.class_names, source="first images of Fashion-MNIST")


def train_run(root, name, dataset, **fields):
  """Trains a tiny run (1 epoch, one hidden layer of 32) into root/name."""
  run_dir = os.path.join(root, name)
  launch.run(config_lib.Config(epochs=1, batch_size=32, hidden_sizes=(32,),
                               save_every_steps=10**6, log_every_steps=10**6,
                               **fields), run_dir, dataset=dataset)
  return run_dir


def start_server(path, dataset=None, num_points=NUM_POINTS, **kwargs):
  """(server, explorer, trained model) for `path`, serving in a thread."""
  model = trained.open_model(path)
  images = explorer_lib.data_layer(model, num_points=num_points,
                                   loaded=dataset)
  explorer = explorer_lib.Explorer(model, images, **kwargs)
  server = server_lib.Server(explorer, "127.0.0.1", 0)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  return server, explorer, model


def read_png(body):
  """uint8 [H, W] of a grey PNG (asserting it is one)."""
  with PIL.Image.open(io.BytesIO(body)) as picture:
    assert picture.format == "PNG", picture.format
    return np.asarray(picture.convert("L"))


def expected_decode(model, z, label=None):
  """uint8 [N, H, W] of the model's likelihood mean at z, rounded."""
  z = tf.constant(np.asarray(z, np.float32))
  if label is None:
    mean = model.module.likelihood(z).mean()
  else:
    mean = model.module.likelihood(
        z, tf.fill([len(z)], tf.constant(label, tf.int64))).mean()
  return np.round(np.clip(mean.numpy(), 0, 1) * 255).astype(np.uint8)[..., 0]


def posterior_means(model, images, labels=None):
  x = tf.constant(images.astype(np.float32) / 255.0)
  if labels is None:
    return model.module.approx_posterior(x).mean().numpy()
  return model.module.approx_posterior(
      x, tf.constant(labels.astype(np.int64))).mean().numpy()


def get(server, path):
  """(status, body bytes, content type) of GET path."""
  try:
    with urllib.request.urlopen(server.url + path, timeout=60) as response:
      return response.status, response.read(), response.headers[
          "Content-Type"]
  except urllib.error.HTTPError as e:
    return e.code, e.read(), e.headers["Content-Type"]


def post(server, path, body, headers=None):
  request = urllib.request.Request(
      server.url + path, data=body, method="POST",
      headers={"Content-Type": "application/json", **(headers or {})})
  try:
    with urllib.request.urlopen(request, timeout=60) as response:
      return response.status, response.read(), response.headers[
          "Content-Type"]
  except urllib.error.HTTPError as e:
    return e.code, e.read(), e.headers["Content-Type"]


def setUpModule():
  root = tempfile.mkdtemp(prefix="tfvae_explore_")
  dataset = small_dataset()
  vae = train_run(root, "vae", dataset, latent_dim=2)
  cvae = train_run(root, "cvae", dataset, model="cvae", latent_dim=3)
  generator = os.path.join(root, "generator_export")
  export_lib.export_run(vae, generator, part="generator")
  _STATE.update(root=root, dataset=dataset, vae=vae, cvae=cvae,
                generator=generator)
  for name in ("vae", "cvae", "generator"):
    _STATE[name + "_server"] = start_server(_STATE[name], dataset)


def tearDownModule():
  for name in ("vae", "cvae", "generator"):
    server = _STATE[name + "_server"][0]
    server.shutdown()
    server.server_close()


class DecodeTest(tf.test.TestCase):

  def test_decode_is_the_models_mean_at_z(self):
    server, _, model = _STATE["vae_server"]
    for z in ([0.0, 0.0], [1.25, -0.5], [-2.9, 2.3]):
      status, body, content_type = get(
          server, "api/decode?z=" + ",".join(map(str, z)))
      self.assertEqual((status, content_type), (200, "image/png"))
      picture = read_png(body)
      self.assertEqual(picture.shape, (28, 28))
      expected = expected_decode(model, [z])[0]
      self.assertLessEqual(np.abs(picture.astype(int) - expected).max(), 1)
      # A different z decodes differently: the check above can fail.
    self.assertFalse(np.array_equal(
        read_png(get(server, "api/decode?z=-3,-3")[1]),
        read_png(get(server, "api/decode?z=3,3")[1])))

  def test_cvae_decode_is_conditioned_on_the_class(self):
    server, _, model = _STATE["cvae_server"]
    z = [0.3, -0.7, 1.1]
    pictures = []
    for label in (1, 7):
      status, body, _ = get(server, f"api/decode?z=0.3,-0.7,1.1&label={label}")
      self.assertEqual(status, 200)
      pictures.append(read_png(body))
      expected = expected_decode(model, [z], label)[0]
      self.assertLessEqual(np.abs(pictures[-1].astype(int) - expected).max(),
                           1)
    self.assertGreater(np.abs(pictures[0].astype(int) - pictures[1]).mean(),
                       1.0)

  def test_post_decode_tiles_a_grid(self):
    server, _, model = _STATE["vae_server"]
    z = [[x, y] for y in (1.0, 0.0, -1.0) for x in (-2.0, 0.0, 2.0, 2.5)]
    status, body, _ = post(server, "api/decode",
                           json.dumps({"z": z, "columns": 4}).encode())
    self.assertEqual(status, 200)
    grid = read_png(body)
    self.assertEqual(grid.shape, (3 * 29 - 1, 4 * 29 - 1))
    expected = expected_decode(model, z)
    for i, tile in enumerate(expected):
      row, col = divmod(i, 4)
      got = grid[row * 29:row * 29 + 28, col * 29:col * 29 + 28]
      self.assertLessEqual(np.abs(got.astype(int) - tile).max(), 1)
    # The 1-pixel separators are white.
    self.assertTrue(np.all(grid[28, :] == 255))


class DataLayerTest(tf.test.TestCase):

  def test_points_are_the_posterior_means_of_the_test_split(self):
    server, _, model = _STATE["vae_server"]
    info = json.loads(get(server, "api/info")[1])
    self.assertEqual(info["latent_size"], 2)
    self.assertEqual(info["plane"], "dims")
    self.assertAllClose(info["basis"], np.eye(2))
    points = json.loads(get(server, "api/points")[1])
    test = _STATE["dataset"].test
    self.assertLen(points["coordinates"], NUM_POINTS)
    self.assertEqual(points["labels"], test.labels.tolist())
    self.assertAllClose(points["coordinates"],
                        posterior_means(model, test.images), atol=1e-4)
    self.assertEqual(info["class_names"][:2], ["T-shirt/top", "Trouser"])

  def test_pca_plane_of_a_cvae(self):
    server, explorer, model = _STATE["cvae_server"]
    info = json.loads(get(server, "api/info")[1])
    self.assertEqual(info["plane"], "pca")
    self.assertTrue(info["conditional"])
    basis = np.array(info["basis"])
    self.assertAllClose(basis @ basis.T, np.eye(3), atol=1e-9)
    test = _STATE["dataset"].test
    means = posterior_means(model, test.images, test.labels)
    center = means.mean(axis=0)
    self.assertAllClose(info["center"], center, atol=1e-4)
    # The first direction carries the most variance of the means.
    variances = np.var((means - center) @ basis.T, axis=0)
    self.assertEqual(int(np.argmax(variances)), 0)
    self.assertGreaterEqual(variances[1], variances[2] - 1e-9)
    coords = np.array(json.loads(get(server, "api/points")[1])["coordinates"])
    self.assertAllClose(coords, (means - center) @ basis[:2].T, atol=1e-4)
    self.assertAllClose(explorer.latent(explorer.coordinates(means)), means,
                        atol=1e-5)

  def test_example_shows_original_and_reconstruction(self):
    server, _, model = _STATE["vae_server"]
    test = _STATE["dataset"].test
    index = 17
    status, body, _ = get(server, f"api/example?index={index}&what=original")
    self.assertEqual(status, 200)
    self.assertAllEqual(read_png(body), test.images[index, ..., 0])
    status, body, _ = get(server,
                          f"api/example?index={index}&what=reconstruction")
    means = posterior_means(model, test.images[index:index + 1])
    expected = expected_decode(model, means)[0]
    self.assertLessEqual(np.abs(read_png(body).astype(int) - expected).max(),
                         1)

  def test_cvae_reconstruction_uses_the_points_own_class(self):
    server, _, model = _STATE["cvae_server"]
    test = _STATE["dataset"].test
    index = 5
    body = get(server, f"api/example?index={index}&what=reconstruction")[1]
    means = posterior_means(model, test.images[index:index + 1],
                            test.labels[index:index + 1])
    expected = expected_decode(model, means, int(test.labels[index]))[0]
    self.assertLessEqual(np.abs(read_png(body).astype(int) - expected).max(),
                         1)

  def test_interpolation_strip(self):
    server, _, model = _STATE["vae_server"]
    test = _STATE["dataset"].test
    status, body, _ = get(server, "api/interpolate?a=3&b=40&steps=5")
    self.assertEqual(status, 200)
    strip = read_png(body)
    self.assertEqual(strip.shape, (28, 7 * 29 - 1))
    tiles = [strip[:, k * 29:k * 29 + 28] for k in range(7)]
    self.assertAllEqual(tiles[0], test.images[3, ..., 0])
    self.assertAllEqual(tiles[6], test.images[40, ..., 0])
    means = posterior_means(model, test.images[[3, 40]])
    t = np.linspace(0, 1, 5)[:, None]
    expected = expected_decode(model, (1 - t) * means[0] + t * means[1])
    for got, want in zip(tiles[1:6], expected):
      self.assertLessEqual(np.abs(got.astype(int) - want).max(), 1)

  def test_a_generator_export_explores_the_prior_plane(self):
    server, explorer, model = _STATE["generator_server"]
    self.assertIsNone(model.module)
    info = json.loads(get(server, "api/info")[1])
    self.assertFalse(info["has_data"])
    self.assertEqual(info["extent"], [-3.0, 3.0, -3.0, 3.0])
    self.assertEqual(json.loads(get(server, "api/points")[1]),
                     {"coordinates": [], "labels": []})
    status, body, _ = get(server, "api/example?index=0&what=original")
    self.assertEqual(status, 404)
    self.assertIn(b"no data points", body)
    # Its decode is the run's.
    _, _, run_model = _STATE["vae_server"]
    picture = read_png(get(server, "api/decode?z=0.5,-1.5")[1])
    expected = expected_decode(run_model, [[0.5, -1.5]])[0]
    self.assertLessEqual(np.abs(picture.astype(int) - expected).max(), 1)
    del explorer

  def test_page_and_its_assets(self):
    server = _STATE["vae_server"][0]
    status, body, content_type = get(server, "")
    self.assertEqual((status, content_type),
                     (200, "text/html; charset=utf-8"))
    for asset in re.findall(rb'(?:src|href)="(/[^"]+)"', body):
      status, asset_body, _ = get(server, asset.decode()[1:])
      self.assertEqual(status, 200, asset)
      self.assertNotEmpty(asset_body)


class BadRequestTest(tf.test.TestCase):

  def assert_refused(self, answer, status, reason):
    got_status, body, content_type = answer
    self.assertEqual(got_status, status, body)
    self.assertEqual(content_type, "text/plain; charset=utf-8")
    text = body.decode()
    self.assertEqual(text.count("\n"), 1, text)
    self.assertIn(reason, text)

  def test_bad_z(self):
    server = _STATE["vae_server"][0]
    for query, reason in (
        ("z=1", "z has 1 coordinates, but the latent space has 2"),
        ("z=1,2,3", "has 3 coordinates"),
        ("z=nan,1", "finite"),
        ("z=1,inf", "finite"),
        ("z=1,abc", "not a comma-separated list of numbers"),
        ("z=1,1e300", "beyond 1e6"),
        ("", "z: missing"),
        ("z=1,2&z=3,4", "given 2 times"),
        ("z=1,2&label=3", "not conditional")):
      self.assert_refused(get(server, "api/decode?" + query), 400, reason)

  def test_bad_label_of_a_cvae(self):
    server = _STATE["cvae_server"][0]
    self.assert_refused(get(server, "api/decode?z=0,0,0"), 400,
                        "needs the class")
    self.assert_refused(get(server, "api/decode?z=0,0,0&label=10"), 400,
                        "label=10: must be in [0, 10)")
    self.assert_refused(get(server, "api/decode?z=0,0,0&label=__import__"),
                        400, "not an integer")

  def test_huge_and_malformed_grids(self):
    server = _STATE["vae_server"][0]
    huge = json.dumps({"z": [[0.0, 0.0]] * 1025}).encode()
    self.assert_refused(post(server, "api/decode", huge), 413,
                        "at most 1024")
    # A client announcing a huge body is refused before it is read.
    connection = http.client.HTTPConnection(*server.server_address[:2],
                                            timeout=60)
    connection.putrequest("POST", "/api/decode")
    connection.putheader("Content-Length", str(server_lib.MAX_BODY_BYTES + 1))
    connection.endheaders()
    response = connection.getresponse()
    self.assert_refused((response.status, response.read(),
                         response.headers["Content-Type"]), 413,
                        f"at most {server_lib.MAX_BODY_BYTES}")
    connection.close()
    for body, reason in ((b"{not json", "not JSON"),
                         (b"[1, 2]", "JSON object"),
                         (b'{"z": []}', "non-empty list"),
                         (b'{"z": [[0, 0, 0]]}', "list of 2 numbers"),
                         (b'{"z": [[0, "1"]]}', "list of 2 numbers"),
                         (b'{"z": [[0, 1e400]]}', "finite"),
                         (b'{"z": [[0, 1]], "columns": 5}', "columns=5")):
      self.assert_refused(post(server, "api/decode", body), 400, reason)

  def test_unknown_paths_and_bad_indices(self):
    server = _STATE["vae_server"][0]
    self.assert_refused(get(server, "etc/passwd"), 404, "not found")
    self.assert_refused(get(server, "../../etc/passwd"), 404, "not found")
    self.assert_refused(get(server, "api/eval?code=1"), 404,
                        "no such endpoint")
    self.assert_refused(post(server, "api/info", b"{}"), 404, "not found")
    self.assert_refused(get(server, "api/example?index=150&what=original"),
                        400, "index=150: must be in [0, 150)")
    self.assert_refused(get(server, "api/example?index=-1&what=original"),
                        400, "must be in")
    self.assert_refused(get(server, "api/example?index=1&what=weights"), 400,
                        "choose original or reconstruction")
    self.assert_refused(get(server, "api/interpolate?a=1&b=2&steps=100000"),
                        400, "steps=100000: must be in [2, 65)")


class ConcurrencyTest(tf.test.TestCase):

  def test_concurrent_clients_each_get_their_own_picture(self):
    server, _, model = _STATE["vae_server"]
    rng = np.random.default_rng(0)
    points = rng.uniform(-3, 3, size=(8, 12, 2)).round(3)
    results = {}

    def client(k):
      for i, z in enumerate(points[k]):
        status, body, _ = get(server, "api/decode?z=" + ",".join(
            str(v) for v in z))
        results[k, i] = (status, read_png(body) if status == 200 else body)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for thread in threads:
      thread.start()
    for thread in threads:
      thread.join(120)
    self.assertLen(results, 8 * 12)
    expected = expected_decode(model, points.reshape(-1, 2)).reshape(
        8, 12, 28, 28)
    for (k, i), (status, picture) in results.items():
      self.assertEqual(status, 200)
      self.assertLessEqual(
          np.abs(picture.astype(int) - expected[k, i]).max(), 1, (k, i))


class ToolTest(tf.test.TestCase):

  def test_serves_until_ctrl_c(self):
    # Started as a background job of a non-interactive shell would be: with
    # SIGINT ignored, which exec keeps; Ctrl-C must stop it all the same.
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.explore", f"--model={_STATE['vae']}",
         "--port=0", "--num_points=20"], cwd=util.REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
      line = process.stdout.readline()
      match = re.search(r"serving (http://127\.0\.0\.1:\d+/)", line)
      self.assertIsNotNone(match, line + process.stderr.read()
                           if not line else line)
      with urllib.request.urlopen(match.group(1) + "api/info",
                                  timeout=60) as response:
        info = json.loads(response.read())
      self.assertEqual(info["latent_size"], 2)
      self.assertIn("20 images of fashion_mnist test", info["data"])
      process.send_signal(signal.SIGINT)
      _, stderr = process.communicate(timeout=60)
    finally:
      if process.poll() is None:
        process.kill()
    self.assertEqual(process.returncode, 0, stderr)
    self.assertNotIn("Traceback", stderr)
    self.assertIn("stopped", stderr)

  def test_help_starts_no_tensorflow(self):
    result = subprocess.run(
        [sys.executable, "-c",
         "import runpy, sys\nsys.argv = ['tfvae-explore', '--help']\n"
         "try:\n  runpy.run_module('tools.explore', run_name='__main__')\n"
         "except SystemExit:\n  pass\n"
         "print('TF' if 'tensorflow' in sys.modules else 'no TF')"],
        cwd=util.REPO, capture_output=True, text=True, timeout=120)
    self.assertIn("--num_points", result.stdout)
    self.assertTrue(result.stdout.rstrip().endswith("no TF"), result.stdout)

  def test_bad_flags_are_one_line_errors(self):
    # Checked before TensorFlow starts, so this costs little.
    for args, message in ((["--model=run", "--port=70000"], "--port=70000"),
                          (["--port=0"], "--model is required"),
                          (["--model=run", "--dims=a,b"], "--dims=a,b")):
      result = util.run_tool("tools.explore", *args)
      self.assertEqual(result.returncode, 1, result.stderr)
      self.assertEqual(result.stderr.count("\n"), 1, result.stderr)
      self.assertIn(f"error: {message}", result.stderr)

  def test_planes_that_cannot_be_made(self):
    generator = trained.open_model(_STATE["generator"])
    with self.assertRaisesRegex(errors.TfvaeError,
                                "--plane=pca needs the data layer"):
      explorer_lib.Explorer(generator, None, plane="pca")
    with self.assertRaisesRegex(errors.TfvaeError, "--dims=0,7: expected 2 "
                                r"different dimensions in \[0, 2\)"):
      explorer_lib.Explorer(generator, None, plane="dims", dims=(0, 7))
    with self.assertRaisesRegex(errors.TfvaeError, "--plane=umap: choose"):
      explorer_lib.Explorer(generator, None, plane="umap")


if __name__ == "__main__":
  tf.test.main()
