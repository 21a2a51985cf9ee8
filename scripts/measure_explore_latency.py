r"""Measures the explorer's pointer-to-image latency in a real browser.

  python scripts/measure_explore_latency.py --model=checkpoints/fm_2d \
      --moves=200 --screenshot=docs/pictures/explore.png

Serves --model as tfvae-explore does, opens the page in the system's Chromium
(playwright, /usr/bin/chromium), moves the pointer --moves times across the
plane, waiting for each image, and reports the time from each pointermove
event to its decoded image drawn on the page (the page's own
performance.now() stamps), and the bare HTTP round trip of one decode
(urllib, same server). With --screenshot, it then clicks a point, shift-clicks
two, turns the manifold on and saves the page as a PNG.
"""
import os
import sys
import tempfile
import threading
import time
import urllib.request

from absl import app
from absl import flags
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from tests import test_explore_browser as browser_lib
from tfvae import trained
from tfvae.explore import explorer as explorer_lib
from tfvae.explore import server as server_lib

flags.DEFINE_string("model", None, "Run directory or export to explore.")
flags.DEFINE_integer("moves", 200, "Pointer positions measured.")
flags.DEFINE_integer("num_points", 2000, "Data points shown.")
flags.DEFINE_string("screenshot", None, "Where to save a screenshot (PNG).")
FLAGS = flags.FLAGS


def _summary(name, values):
  values = np.asarray(values)
  print(f"{name}: n={len(values)} median {np.median(values):.1f} ms, "
        f"p95 {np.percentile(values, 95):.1f} ms, max {values.max():.1f} ms")


def main(argv):
  del argv
  model = trained.open_model(FLAGS.model)
  explorer = explorer_lib.Explorer(
      model, explorer_lib.data_layer(model, num_points=FLAGS.num_points))
  server = server_lib.Server(explorer, "127.0.0.1", 0)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  z = ",".join(["0.5"] * explorer.latent_size)
  label = "&label=0" if explorer.conditional else ""
  round_trips = []
  for _ in range(FLAGS.moves):
    start = time.perf_counter()
    with urllib.request.urlopen(f"{server.url}api/decode?z={z}{label}") as r:
      r.read()
    round_trips.append(1000 * (time.perf_counter() - start))
  playwright = browser_lib.start_playwright()
  browser = browser_lib.launch_chromium(playwright, tempfile.mkdtemp())
  try:
    page = browser.new_page()
    page.goto(server.url)
    page.wait_for_function("window.explorer && window.explorer.ready")
    box = page.locator("#plane").bounding_box()
    rng = np.random.default_rng(0)
    for k in range(FLAGS.moves):
      x, y = rng.uniform(20, 540, size=2)
      page.mouse.move(box["x"] + x, box["y"] + y)
      page.wait_for_function(f"explorer.decodes >= {k + 1}")
    latencies = page.evaluate("explorer.latencies")
    print(f"model {explorer.source}, latent size {explorer.latent_size}, "
          f"{os.cpu_count()} CPUs")
    _summary("HTTP decode round trip (urllib)", round_trips)
    _summary("pointermove to image drawn (Chromium)", latencies)
    if FLAGS.screenshot:
      coords = np.array(page.evaluate("explorer.points.coordinates"))
      def at(i):
        px, py = page.evaluate("([a, b]) => explorer.toPixel(a, b)",
                               list(coords[i]))
        return box["x"] + px, box["y"] + py
      page.check("#manifold-toggle")
      page.wait_for_function(
          "document.getElementById('manifold').dataset.tiles === '16'")
      first, second = int(np.argmin(coords[:, 0])), int(np.argmax(coords[:, 0]))
      for index in (first, second):
        page.keyboard.down("Shift")
        page.mouse.click(*at(index))
        page.keyboard.up("Shift")
      page.mouse.click(*at(len(coords) // 2))
      page.wait_for_function(
          "document.getElementById('reconstruction').dataset.index "
          "!== undefined && document.getElementById('interpolation')"
          ".dataset.ends !== undefined")
      page.mouse.move(box["x"] + 300, box["y"] + 250)
      page.wait_for_timeout(500)
      page.screenshot(path=FLAGS.screenshot)
      print(f"wrote {FLAGS.screenshot}")
  finally:
    browser.close()
    playwright.stop()
    server.shutdown()


if __name__ == "__main__":
  flags.mark_flag_as_required("model")
  app.run(main)
