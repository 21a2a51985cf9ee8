"""What the explorer shows: a trained model, its data layer and a plane.

An `Explorer` holds the model's decode (and, where it has one, encode)
function, loaded once, and answers the page's requests:

  decode        z [N, D] (and a class for a cvae) -> images, as one PNG
  example       a data point's original or reconstruction
  interpolate   the strip between two data points' codes

The plane: page coordinates c [D] map to z = center + c @ basis, where
`basis` [D, D] is orthonormal; its first two rows span the plane the page
draws, the others are sliders. With `plane="dims"` the basis is the identity
with the two chosen dimensions first and the center is 0 (so a slider is a
latent dimension); with `plane="pca"` the center is the mean of the
posterior means and the rows are their principal directions, largest
variance first. A generator without an encoder has no data, and its plane is
two dimensions of the prior's.

Every request is checked here; a bad one raises `BadRequest`, whose message
is one line and whose `status` is the HTTP status the server answers with.
TensorFlow calls run behind one lock, so any number of server threads may
call an `Explorer`.
"""
import io
import threading

import numpy as np
import PIL.Image
import tensorflow as tf

from tfvae import errors
from tfvae import evaluation
from tfvae import export
from tfvae import images as images_lib

PLANES = ("pca", "dims")
# More images than this in one decode request is not a picture anyone looks
# at (a 32 x 32 manifold is 1024 tiles).
MAX_IMAGES = 1024
MAX_STEPS = 64
# Half-width of the prior's plane, in standard deviations.
PRIOR_SPAN = 3.0
_ENCODE_BATCH = 500


class BadRequest(errors.TfvaeError):
  """A request the explorer refuses; `status` is its HTTP status."""

  def __init__(self, message, status=400):
    super().__init__(message)
    self.status = status


def png(picture):
  """PNG bytes of a uint8 picture [H, W, C] (C 1 or 3)."""
  picture = np.asarray(picture, np.uint8)
  if picture.shape[-1] == 1:
    picture = picture[..., 0]
  buffer = io.BytesIO()
  PIL.Image.fromarray(picture).save(buffer, format="PNG", compress_level=1)
  return buffer.getvalue()


def to_uint8(images):
  """float images in [0, 1] -> uint8, rounded to the nearest level."""
  return np.round(np.clip(np.asarray(images, np.float32), 0.0, 1.0)
                  * 255).astype(np.uint8)


def parse_vector(text, width, what="z"):
  """Parses "a,b,c" into float32 [width], refusing anything else.

  Raises:
    BadRequest: On a malformed number, the wrong width or a value that is
      not finite.
  """
  parts = str(text).split(",")
  if len(parts) != width:
    raise BadRequest(f"{what} has {len(parts)} coordinates, but the latent "
                     f"space has {width}")
  try:
    values = np.array([float(p) for p in parts], np.float64)
  except ValueError:
    raise BadRequest(f"{what}: not a comma-separated list of numbers") \
        from None
  if not np.all(np.isfinite(values)):
    raise BadRequest(f"{what}: coordinates must be finite numbers (got "
                     "NaN or infinity)")
  if np.any(np.abs(values) > 1e6):
    raise BadRequest(f"{what}: coordinates beyond 1e6 are not latent points")
  return values.astype(np.float32)


def check_points(points, width):
  """Checks a JSON list of points; returns float32 [N, width].

  Raises:
    BadRequest: If it is not a non-empty list of `width` finite numbers each,
      or has more than MAX_IMAGES points (status 413).
  """
  if not isinstance(points, list) or not points:
    raise BadRequest("z: expected a non-empty list of latent points")
  if len(points) > MAX_IMAGES:
    raise BadRequest(f"z: {len(points)} points, at most {MAX_IMAGES} in one "
                     "request", status=413)
  for point in points:
    if (not isinstance(point, list) or len(point) != width
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                   for v in point)):
      raise BadRequest(f"z: every point must be a list of {width} numbers "
                       "(the latent size)")
  values = np.array(points, np.float64)
  if not np.all(np.isfinite(values)) or np.any(np.abs(values) > 1e6):
    raise BadRequest("z: coordinates must be finite numbers below 1e6")
  return values.astype(np.float32)


def parse_int(text, what, low, high):
  """An integer in [low, high) from request text, or BadRequest."""
  try:
    value = int(str(text))
  except ValueError:
    raise BadRequest(f"{what}={text!r}: not an integer") from None
  if not low <= value < high:
    raise BadRequest(f"{what}={value}: must be in [{low}, {high})")
  return value


def _functions(trained_model):
  """(decode, encode or None, name of decode's latent input)."""
  t = trained_model
  if t.module is not None:
    # The functions the run would export, so a run and its export explore
    # the same pictures.
    functions = export.export_module(t.module, "full")
    encode = getattr(functions, "encode", None)
    decode = functions.decode
    inputs = decode.input_signature
    z_input = inputs[0].name
    return decode, encode, z_input
  signatures = t.signatures
  if "decode" not in signatures:
    raise errors.TfvaeError(
        f"--model={t.path}: {t.location} has no decode signature (it has: "
        f"{', '.join(sorted(signatures))}); the explorer decodes latent "
        "points")
  inputs = signatures["decode"].structured_input_signature[1]
  z_input = "z" if "z" in inputs else "code" if "code" in inputs else None
  if z_input is None:
    raise errors.TfvaeError(
        f"--model={t.path}: the decode signature of {t.location} takes no z "
        f"(inputs: {', '.join(sorted(inputs))})")
  return signatures["decode"], signatures.get("encode"), z_input


class Explorer:
  """A trained model, its data layer and the plane the page draws.

  Args:
    trained_model: A `trained.TrainedModel` (`trained.open_model`).
    images: An `evaluation.Images` to encode as the data layer (labels are
      used for colours and, for a cvae, to encode), or None. Ignored for a
      model without an encoder.
    plane: "pca" (principal plane of the posterior means; needs data) or
      "dims" (two latent dimensions); default pca when there is data and the
      latent size is above 2.
    dims: The two dimensions of a "dims" plane; default (0, 1).

  Raises:
    errors.TfvaeError: If the model has no decode, the plane cannot be made
      (pca without data, dims out of range), or the images do not fit.
  """

  def __init__(self, trained_model, images=None, plane=None, dims=None):
    self.source = trained_model.source
    self._decode_fn, self._encode_fn, self._z_input = _functions(
        trained_model)
    self._lock = threading.Lock()
    self.latent_size = int(trained_model.latent_size)
    self.conditional = bool(trained_model.conditional)
    self.class_names = (list(trained_model.class_names)
                        if trained_model.class_names else None)
    self.kind = trained_model.kind
    # One decode now: the image shape (an export may not record it), and
    # the first request does not pay for tracing.
    first = self._decode_floats(np.zeros([1, self.latent_size], np.float32),
                                0 if self.conditional else None)
    self.image_shape = tuple(int(d) for d in first.shape[1:])
    self.images = self.labels = self.means = None
    self.data_description = None
    if images is not None and self._encode_fn is not None:
      self._set_data(images)
    self._set_plane(plane, dims)

  # --------------------------------------------------------------------------
  # The model, behind the lock.

  def _decode_floats(self, z, label):
    """Decoder means float [N, H, W, C] of z float32 [N, D]."""
    kwargs = {self._z_input: tf.constant(z)}
    if self.conditional:
      kwargs["label"] = tf.fill([len(z)], tf.constant(label, tf.int64))
    with self._lock:
      return self._decode_fn(**kwargs)["mean"].numpy()

  def _encode(self, images, labels):
    """Posterior means (codes of an autoencoder) float [N, D]."""
    means = []
    for index, x in evaluation.batches(images, _ENCODE_BATCH):
      kwargs = {"x": tf.constant(x)}
      if self.conditional:
        start = index * _ENCODE_BATCH
        kwargs["label"] = tf.constant(
            labels[start:start + len(x)].astype(np.int64))
      with self._lock:
        out = self._encode_fn(**kwargs)
      means.append(out["loc" if "loc" in out else "code"].numpy())
    return np.concatenate(means).astype(np.float32)

  def _set_data(self, images):
    if tuple(images.images.shape[1:]) != self.image_shape:
      raise errors.TfvaeError(
          f"{images.description}: images of shape "
          f"{list(images.images.shape[1:])}, but the model decodes "
          f"{list(self.image_shape)}")
    if self.conditional and images.labels is None:
      raise errors.TfvaeError(
          f"{images.description} has no labels, which the encoder of a "
          "conditional model (cvae) needs")
    self.images = images.images
    self.labels = images.labels
    self.data_description = images.description
    if self.class_names is None and images.class_names:
      self.class_names = list(images.class_names)
    self.means = self._encode(images.images, images.labels)

  def _set_plane(self, plane, dims):
    latent = self.latent_size
    if plane is None:
      plane = "pca" if self.means is not None and latent > 2 else "dims"
    if plane not in PLANES:
      raise errors.TfvaeError(f"--plane={plane}: choose one of "
                              f"{', '.join(PLANES)}")
    if plane == "pca" and self.means is None:
      raise errors.TfvaeError(
          "--plane=pca needs the data layer (posterior means), but "
          f"{self.source} has no encoder or no data was given; use "
          "--plane=dims")
    self.plane = plane
    if plane == "dims":
      dims = tuple(dims) if dims is not None else tuple(range(min(2,
                                                                  latent)))
      if (len(dims) != min(2, latent) or len(set(dims)) != len(dims)
          or any(not 0 <= d < latent for d in dims)):
        raise errors.TfvaeError(
            f"--dims={','.join(str(d) for d in dims)}: expected "
            f"{min(2, latent)} different dimensions in [0, {latent})")
      order = list(dims) + [d for d in range(latent) if d not in dims]
      self.basis = np.eye(latent, dtype=np.float64)[order]
      self.center = np.zeros(latent)
      self.axis_names = [f"z[{d}]" for d in order]
    else:
      self.center = self.means.astype(np.float64).mean(axis=0)
      _, singular, vt = np.linalg.svd(self.means - self.center,
                                      full_matrices=True)
      self.basis = vt
      total = np.sum(singular**2) or 1.0
      shares = list(singular**2 / total) + [0.0] * (latent - len(singular))
      self.axis_names = [f"PC {k + 1} ({shares[k]:.0%})"
                         for k in range(latent)]
    if self.means is not None:
      coords = self.coordinates(self.means)
      spread = np.maximum(np.std(coords, axis=0), 1e-3)
      self.slider_ranges = [float(3 * s) for s in spread]
      low = np.percentile(coords[:, :2], 0.5, axis=0)
      high = np.percentile(coords[:, :2], 99.5, axis=0)
      pad = 0.1 * (high - low) + 1e-3
      self.extent = [float(low[0] - pad[0]), float(high[0] + pad[0]),
                     float(low[1] - pad[1]), float(high[1] + pad[1])]
    else:
      self.slider_ranges = [PRIOR_SPAN] * latent
      self.extent = [-PRIOR_SPAN, PRIOR_SPAN, -PRIOR_SPAN, PRIOR_SPAN]

  # --------------------------------------------------------------------------
  # Coordinates.

  def coordinates(self, z):
    """Page coordinates of latent points: (z - center) @ basis^T, [N, D]."""
    return (np.asarray(z, np.float64) - self.center) @ self.basis.T

  def latent(self, coordinates):
    """Latent points of page coordinates [N, D]: center + c @ basis."""
    return (self.center + np.asarray(coordinates, np.float64)
            @ self.basis).astype(np.float32)

  # --------------------------------------------------------------------------
  # Requests.

  def label(self, text):
    """The class of a request (cvae), or None for an unconditional model.

    Raises:
      BadRequest: If a cvae gets no valid class, or another model gets one.
    """
    if not self.conditional:
      if text is not None:
        raise BadRequest("label: this model is not conditional (only a cvae "
                         "takes a class)")
      return None
    if text is None:
      raise BadRequest("label: a conditional model (cvae) needs the class "
                       "to decode with")
    return parse_int(text, "label", 0, len(self.class_names or ()))

  def decode(self, z, label=None):
    """Decoded images of z float32 [N, D] as uint8 [N, H, W, C]."""
    return to_uint8(self._decode_floats(z, label))

  def decode_png(self, z, label=None, columns=None):
    """One PNG of the decoded z [N, D]: the image itself for N = 1, else a
    grid of `columns` tiles per row, separated by 1-pixel white lines."""
    decoded = self._decode_floats(z, label)
    if len(decoded) == 1:
      return png(to_uint8(decoded[0]))
    return png(images_lib.grid(decoded, columns=columns))

  def _check_index(self, text, what="index"):
    if self.images is None:
      raise BadRequest(f"{what}: this explorer has no data points (the "
                       "model has no encoder, or no data was loaded)",
                       status=404)
    return parse_int(text, what, 0, len(self.images))

  def example_png(self, index_text, what):
    """The original or the reconstruction (decoded posterior mean, with its
    own label for a cvae) of data point `index`, as a PNG."""
    index = self._check_index(index_text)
    if what == "original":
      return png(self.images[index])
    if what == "reconstruction":
      label = int(self.labels[index]) if self.conditional else None
      return self.decode_png(self.means[index:index + 1], label)
    raise BadRequest(f"what={what!r}: choose original or reconstruction")

  def interpolation_png(self, first_text, second_text, steps_text, label):
    """The strip between two data points: original, `steps` decoded points
    from one posterior mean to the other (ends included), original."""
    first = self._check_index(first_text, "a")
    second = self._check_index(second_text, "b")
    steps = parse_int(steps_text, "steps", 2, MAX_STEPS + 1)
    t = np.linspace(0.0, 1.0, steps)[:, None]
    z = ((1 - t) * self.means[first] + t * self.means[second]).astype(
        np.float32)
    decoded = to_uint8(self._decode_floats(z, label))
    strip = np.concatenate([self.images[[first]], decoded,
                            self.images[[second]]])
    return png(images_lib.grid(strip.astype(np.float32) / 255.0,
                               columns=len(strip)))

  def info(self):
    """What the page needs to draw the plane (JSON-able)."""
    return {
        "source": str(self.source),
        "kind": self.kind,
        "latent_size": self.latent_size,
        "image_shape": list(self.image_shape),
        "conditional": self.conditional,
        "class_names": self.class_names,
        "has_data": self.images is not None,
        "data": self.data_description,
        "plane": self.plane,
        "center": [float(v) for v in self.center],
        "basis": [[float(v) for v in row] for row in self.basis],
        "axis_names": self.axis_names,
        "slider_ranges": self.slider_ranges,
        "extent": self.extent,
        "max_images": MAX_IMAGES,
    }

  def points(self):
    """The data layer: plane coordinates [N, 2] of the posterior means and
    their labels (JSON-able; empty without data)."""
    if self.means is None:
      return {"coordinates": [], "labels": []}
    coords = self.coordinates(self.means)[:, :2]
    return {
        "coordinates": [[round(float(v), 6) for v in row] for row in coords],
        "labels": ([int(v) for v in self.labels] if self.labels is not None
                   else [0] * len(coords)),
    }



def data_layer(trained_model, split="test", num_points=2000, dataset=None,
               data_dir=None, loaded=None):
  """The images whose posterior means the page shows, or None.

  None when the model has no encoder (a generator export, a TF1 migration)
  or `num_points` is 0.

  Args:
    trained_model: A `trained.TrainedModel`.
    split: "train" or "test".
    num_points: How many images, from the start of the split.
    dataset: The data set's name; default the run's (an export's recorded
      config), else fashion_mnist.
    data_dir: Directory searched first for the data set's files.
    loaded: A loaded `data.Dataset` to take the split from instead.

  Returns:
    An `evaluation.Images`, or None.
  """
  t = trained_model
  has_encoder = t.module is not None or "encode" in (t.signatures or {})
  if not has_encoder or num_points == 0:
    return None
  if not 0 < num_points <= 100000:
    raise errors.TfvaeError(f"--num_points={num_points}: must be between 0 "
                            "and 100000")
  config = t.config
  name = dataset or (config.dataset if config else "fashion_mnist")
  binarize = config.binarize if config else "none"
  found = evaluation.load_images(name, split, binarize, data_dir,
                                 dataset=loaded,
                                 config=None if dataset else config)
  found.images = found.images[:num_points]
  if found.labels is not None:
    found.labels = found.labels[:num_points]
  found.description = f"{len(found.images)} images of {found.description}"
  return found
