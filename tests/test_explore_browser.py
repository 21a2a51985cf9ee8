"""The explorer's page in a real browser: Chromium driven by playwright.

Needs Debian's chromium (/usr/bin/chromium) and the `playwright` Python
package (`pip install -e '.[test]'`; scripts/setup.sh installs both). The
browsers `playwright install` would download are not used. Without them these
tests FAIL, saying what is missing: a browser test that skips proves nothing.
"""
import os
import tempfile
import threading

import numpy as np
import PIL.Image
import tensorflow as tf

from tests import test_explore as explore_tests
from tfvae import trained
from tfvae.explore import explorer as explorer_lib
from tfvae.explore import server as server_lib

CHROMIUM = "/usr/bin/chromium"
# Chromium as root needs --no-sandbox; the rest keep a headless browser off
# the (closed) network and away from any profile.
CHROMIUM_ARGS = ("--no-sandbox", "--headless", "--disable-gpu",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync")
_STATE = {}


def launch_chromium(playwright, user_data_dir):
  """A persistent context of the system's Chromium (fresh profile dir)."""
  return playwright.chromium.launch_persistent_context(
      user_data_dir, executable_path=CHROMIUM, headless=True,
      args=list(CHROMIUM_ARGS), viewport={"width": 1280, "height": 800})


def start_playwright():
  """Starts playwright, or raises AssertionError saying what is missing."""
  if not os.access(CHROMIUM, os.X_OK):
    raise AssertionError(
        f"{CHROMIUM} is missing: install Debian's chromium (apt-get install "
        "-y chromium, as scripts/setup.sh does) to run the browser tests")
  try:
    from playwright import sync_api  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise AssertionError(
        f"the playwright package is missing ({e}): pip install -e '.[test]' "
        "(scripts/setup.sh does)") from None
  return sync_api.sync_playwright().start()


def canvas_pixels(page, selector):
  """The grey levels uint8 [H, W] drawn on a canvas of the page."""
  width, height, data = page.evaluate(
      """selector => {
           const canvas = document.querySelector(selector);
           const pixels = canvas.getContext("2d").getImageData(
               0, 0, canvas.width, canvas.height);
           return [canvas.width, canvas.height, Array.from(pixels.data)];
         }""", selector)
  rgba = np.array(data, np.uint8).reshape(height, width, 4)
  assert np.all(rgba[..., 3] == 255), "the canvas is not opaque"
  assert np.array_equal(rgba[..., 0], rgba[..., 1]), "not grey"
  return rgba[..., 0]


def setUpModule():
  root = tempfile.mkdtemp(prefix="tfvae_explore_browser_")
  dataset = explore_tests.small_dataset()
  run_dir = explore_tests.train_run(root, "vae", dataset, latent_dim=2)
  model = trained.open_model(run_dir)
  explorer = explorer_lib.Explorer(
      model, explorer_lib.data_layer(model, num_points=explore_tests
                                     .NUM_POINTS, loaded=dataset))
  server = server_lib.Server(explorer, "127.0.0.1", 0)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  playwright = start_playwright()
  browser = launch_chromium(playwright, os.path.join(root, "profile"))
  _STATE.update(root=root, dataset=dataset, model=model, explorer=explorer,
                server=server, playwright=playwright, browser=browser)


def tearDownModule():
  if "browser" in _STATE:
    _STATE["browser"].close()
    _STATE["playwright"].stop()
  if "server" in _STATE:
    _STATE["server"].shutdown()
    _STATE["server"].server_close()


class BrowserTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.page = _STATE["browser"].new_page()
    self.errors = []
    self.page.on("pageerror", lambda e: self.errors.append(str(e)))
    self.page.goto(_STATE["server"].url)
    self.page.wait_for_function("window.explorer && window.explorer.ready",
                                timeout=30000)

  def tearDown(self):
    self.page.close()
    self.assertEqual(self.errors, [])
    super().tearDown()

  def page_point(self, a, b):
    """Where on the screen the page draws plane coordinates (a, b)."""
    px, py = self.page.evaluate("([a, b]) => explorer.toPixel(a, b)", [a, b])
    box = self.page.locator("#plane").bounding_box()
    return box["x"] + px, box["y"] + py

  def test_the_image_under_the_pointer_is_the_decode_there(self):
    explorer = _STATE["explorer"]
    x0, x1, y0, y1 = explorer.extent
    target = (x0 + 0.3 * (x1 - x0), y0 + 0.7 * (y1 - y0))
    self.page.mouse.move(*self.page_point(*target))
    self.page.wait_for_function(
        "document.getElementById('decoded').dataset.z !== undefined")
    shown_z = np.array(self.page.evaluate(
        "document.getElementById('decoded').dataset.z").split(","), np.float32)
    # The pointer lands on a pixel: z is the target to within a pixel.
    pixel = np.array([(x1 - x0) / 560, (y1 - y0) / 560])
    self.assertTrue(np.all(np.abs(shown_z - np.array(target)) <= pixel),
                    (shown_z, target))
    shown = canvas_pixels(self.page, "#decoded")
    self.assertEqual(shown.shape, (28, 28))
    expected = explore_tests.expected_decode(_STATE["model"], [shown_z])[0]
    difference = np.abs(shown.astype(int) - expected)
    self.assertLessEqual(difference.max(), 1)
    self.assertGreater(np.mean(difference == 0), 0.99)
    # Somewhere else is another picture, so the check above could fail.
    other = explore_tests.expected_decode(
        _STATE["model"], [[x1 - 0.05 * (x1 - x0), y0 + 0.05 * (y1 - y0)]])[0]
    self.assertGreater(np.abs(other.astype(int) - expected).max(), 10)

  def test_a_fast_pointer_queues_no_backlog(self):
    # Counts the decode requests open at once, as the page sends them.
    self.page.evaluate("""() => {
      const fetch = window.fetch;
      window.openDecodes = 0; window.mostOpen = 0; window.decodeRequests = 0;
      window.fetch = async (...args) => {
        const decode = String(args[0]).startsWith("/api/decode?");
        if (decode) {
          window.decodeRequests += 1; window.openDecodes += 1;
          window.mostOpen = Math.max(window.mostOpen, window.openDecodes);
        }
        try { return await fetch(...args); }
        finally { if (decode) window.openDecodes -= 1; }
      };
    }""")
    explorer = _STATE["explorer"]
    x0, x1, y0, y1 = explorer.extent
    moves = 60
    places = [self.page_point(x0 + (0.1 + 0.8 * k / (moves - 1)) * (x1 - x0),
                              y0 + 0.5 * (y1 - y0)) for k in range(moves)]
    # All the moves in one task, faster than any server: the first position
    # is sent, the others wait, and only the last of them is sent next.
    self.page.evaluate("""places => {
      const plane = document.getElementById("plane");
      for (const [x, y] of places) {
        plane.dispatchEvent(new PointerEvent("pointermove", {
            clientX: x, clientY: y, bubbles: true}));
      }
    }""", places)
    last = self.page.evaluate("explorer.latent(...explorer.pointer)")
    self.page.wait_for_function(
        "z => document.getElementById('decoded').dataset.z === z",
        arg=self.page.evaluate(
            "explorer.latent(...explorer.pointer).map(String).join(',')"))
    self.page.wait_for_function("window.openDecodes === 0")
    self.assertEqual(self.page.evaluate("window.mostOpen"), 1)
    self.assertEqual(self.page.evaluate("window.decodeRequests"), 2)
    self.assertEqual(self.page.evaluate("explorer.decodes"), 2)
    shown = canvas_pixels(self.page, "#decoded")
    expected = explore_tests.expected_decode(
        _STATE["model"], [np.array(last, np.float32)])[0]
    self.assertLessEqual(np.abs(shown.astype(int) - expected).max(), 1)

  def isolated_point(self):
    """Index of the data point farthest (on screen) from all the others."""
    coords = np.array(self.page.evaluate("explorer.points.coordinates"))
    pixels = np.array([self.page_point(a, b) for a, b in coords])
    distances = np.linalg.norm(pixels[:, None] - pixels[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    index = int(np.argmax(distances.min(axis=1)))
    return index, pixels[index]

  def test_clicking_a_point_shows_its_reconstruction(self):
    index, where = self.isolated_point()
    self.page.mouse.click(*where)
    self.page.wait_for_function(
        f"document.getElementById('reconstruction').dataset.index === "
        f"'{index}'")
    test = _STATE["dataset"].test
    self.assertAllEqual(canvas_pixels(self.page, "#original"),
                        test.images[index, ..., 0])
    means = explore_tests.posterior_means(_STATE["model"],
                                          test.images[index:index + 1])
    expected = explore_tests.expected_decode(_STATE["model"], means)[0]
    shown = canvas_pixels(self.page, "#reconstruction")
    self.assertLessEqual(np.abs(shown.astype(int) - expected).max(), 1)

  def test_shift_click_two_points_interpolates_and_manifold_tiles(self):
    coords = np.array(self.page.evaluate("explorer.points.coordinates"))
    first, second = int(np.argmin(coords[:, 0])), int(np.argmax(coords[:, 0]))
    for index in (first, second):
      self.page.mouse.move(*self.page_point(*coords[index]))
      self.page.keyboard.down("Shift")
      self.page.mouse.click(*self.page_point(*coords[index]))
      self.page.keyboard.up("Shift")
    self.page.wait_for_function(
        "document.getElementById('interpolation').dataset.ends !== undefined")
    ends = self.page.evaluate(
        "document.getElementById('interpolation').dataset.ends")
    self.assertEqual(ends, f"{first},{second}")
    strip = canvas_pixels(self.page, "#interpolation")
    self.assertEqual(strip.shape, (28, 12 * 29 - 1))
    test = _STATE["dataset"].test
    self.assertAllEqual(strip[:, :28], test.images[first, ..., 0])
    self.assertAllEqual(strip[:, -28:], test.images[second, ..., 0])

    self.page.check("#manifold-toggle")
    self.page.wait_for_function(
        "document.getElementById('manifold').dataset.tiles === '16'")
    screenshot = os.path.join(_STATE["root"], "explore.png")
    self.page.screenshot(path=screenshot)
    with PIL.Image.open(screenshot) as picture:
      self.assertEqual(picture.size, (1280, 800))
      # The manifold's decoded tiles are on the screen: the plane is not
      # one flat colour.
      box = self.page.locator("#manifold").bounding_box()
      plane = np.asarray(picture.convert("L").crop(
          (int(box["x"]), int(box["y"]), int(box["x"] + box["width"]),
           int(box["y"] + box["height"]))))
    self.assertGreater(plane.std(), 20)


if __name__ == "__main__":
  tf.test.main()
