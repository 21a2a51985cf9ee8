"""The explorer's HTTP server: the standard library's, with a fixed route table.

Routes (GET unless stated; images are PNGs, the rest JSON):

  /                     the page (page/index.html), /explore.js, /explore.css
  /api/info             the model and the plane (`Explorer.info`)
  /api/points           the data layer (`Explorer.points`)
  /api/decode?z=a,b,..[&label=k]
                        the decoded image of one latent point
  POST /api/decode      {"z": [[...], ...], "columns": n, "label": k}: the
                        decoded points as one grid (manifold tiles)
  /api/example?index=i&what=original|reconstruction
  /api/interpolate?a=i&b=j&steps=n[&label=k]

A request is only ever parsed as numbers and looked up in this table; nothing
in it is executed or used as a path. A bad one gets a 4xx status and a one-line
plain-text reason.
"""
import http.server
import importlib.resources
import json
import socket
import socketserver
import urllib.parse

from absl import logging

from tfvae.explore import explorer as explorer_lib

# The largest POST body accepted: 1024 points of 64 numbers as JSON, with room.
MAX_BODY_BYTES = 4 << 20
_ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/explore.js": ("explore.js", "text/javascript; charset=utf-8"),
    "/explore.css": ("explore.css", "text/css; charset=utf-8"),
}


def page_asset(name):
  """The bytes of a file of the page (package data of tfvae.explore)."""
  return importlib.resources.files("tfvae.explore").joinpath(
      "page", name).read_bytes()


class _Handler(http.server.BaseHTTPRequestHandler):
  """Answers one request from the route table; `server.explorer` serves."""

  server_version = "tfvae-explore"
  protocol_version = "HTTP/1.1"

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    logging.debug("%s %s", self.address_string(), format % args)

  def _send(self, status, body, content_type):
    self.send_response(status)
    self.send_header("Content-Type", content_type)
    self.send_header("Content-Length", str(len(body)))
    self.send_header("Cache-Control", "no-store")
    self.send_header("X-Content-Type-Options", "nosniff")
    self.end_headers()
    if self.command != "HEAD":
      self.wfile.write(body)

  def _refuse(self, status, reason):
    reason = " ".join(str(reason).split())
    self._send(status, (reason + "\n").encode(), "text/plain; charset=utf-8")

  def _json(self, value):
    self._send(200, json.dumps(value).encode(), "application/json")

  def _png(self, body):
    self._send(200, body, "image/png")

  def _query(self):
    parsed = urllib.parse.urlsplit(self.path)
    query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
    return parsed.path, query

  @staticmethod
  def _one(query, name, default=None, required=True):
    values = query.get(name)
    if not values:
      if required and default is None:
        raise explorer_lib.BadRequest(f"{name}: missing")
      return default
    if len(values) > 1:
      raise explorer_lib.BadRequest(f"{name}: given {len(values)} times")
    return values[0]

  def _guarded(self, answer):
    try:
      answer()
    except explorer_lib.BadRequest as e:
      self._refuse(e.status, e)
    except Exception as e:  # pylint: disable=broad-except
      # The server keeps serving; the page shows the one line.
      logging.exception("request %s failed", self.path)
      self._refuse(500, f"{type(e).__name__}: "
                   f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}")

  def do_GET(self):  # pylint: disable=invalid-name
    self._guarded(self._get)

  def do_HEAD(self):  # pylint: disable=invalid-name
    self._guarded(self._get)

  def do_POST(self):  # pylint: disable=invalid-name
    self._guarded(self._post)

  def _get(self):
    path, query = self._query()
    explorer = self.server.explorer
    if path in _ASSETS:
      name, content_type = _ASSETS[path]
      self._send(200, page_asset(name), content_type)
    elif path == "/api/info":
      self._json(explorer.info())
    elif path == "/api/points":
      self._json(explorer.points())
    elif path == "/api/decode":
      z = explorer_lib.parse_vector(self._one(query, "z"),
                                    explorer.latent_size)
      label = explorer.label(self._one(query, "label", required=False))
      self._png(explorer.decode_png(z[None], label))
    elif path == "/api/example":
      self._png(explorer.example_png(self._one(query, "index"),
                                     self._one(query, "what")))
    elif path == "/api/interpolate":
      label = explorer.label(self._one(query, "label", required=False))
      self._png(explorer.interpolation_png(
          self._one(query, "a"), self._one(query, "b"),
          self._one(query, "steps", "10"), label))
    elif path.startswith("/api/"):
      raise explorer_lib.BadRequest(f"{path}: no such endpoint", status=404)
    else:
      raise explorer_lib.BadRequest(f"{path}: not found", status=404)

  def _post(self):
    path, _ = self._query()
    if path != "/api/decode":
      raise explorer_lib.BadRequest(f"POST {path}: not found (POST goes to "
                                    "/api/decode only)", status=404)
    try:
      length = int(self.headers.get("Content-Length", ""))
    except ValueError:
      raise explorer_lib.BadRequest("POST /api/decode needs a Content-Length",
                                    status=411) from None
    if not 0 < length <= MAX_BODY_BYTES:
      # The body is not read; the connection cannot be reused.
      self.close_connection = True
      raise explorer_lib.BadRequest(
          f"body of {length} bytes; at most {MAX_BODY_BYTES}", status=413)
    try:
      request = json.loads(self.rfile.read(length))
    except ValueError:
      raise explorer_lib.BadRequest("body: not JSON") from None
    if not isinstance(request, dict):
      raise explorer_lib.BadRequest("body: expected a JSON object with z")
    explorer = self.server.explorer
    z = explorer_lib.check_points(request.get("z"), explorer.latent_size)
    columns = request.get("columns", len(z))
    if (not isinstance(columns, int) or isinstance(columns, bool)
        or not 1 <= columns <= len(z)):
      raise explorer_lib.BadRequest(
          f"columns={columns!r}: must be an integer in [1, {len(z)}]")
    label = request.get("label")
    label = explorer.label(None if label is None else str(label))
    self._png(explorer.decode_png(z, label, columns))


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
  """A threading HTTP server holding one `Explorer` for all its requests.

  Args:
    explorer: The `explorer.Explorer` to serve.
    host: Address to bind (127.0.0.1: this machine only).
    port: Port to bind (0: any free one; see `url`).
  """

  daemon_threads = True
  allow_reuse_address = True

  def __init__(self, explorer, host="127.0.0.1", port=0):
    self.explorer = explorer
    if ":" in host:
      self.address_family = socket.AF_INET6
    super().__init__((host, port), _Handler)

  @property
  def url(self):
    """The page's address."""
    host, port = self.server_address[:2]
    if ":" in host:
      host = f"[{host}]"
    return f"http://{host}:{port}/"
