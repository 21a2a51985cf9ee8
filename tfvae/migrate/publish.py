"""Publishing a generator only once its reloaded SavedModel is checked.

Every generator tfvae builds from a checkpoint, native or rebuilt from a TF1
graph, goes through `publish_verified`: it is saved, its device pins are
cleared (so it loads the same on any machine), it is loaded back and must
decode fixed latent points like its reference (the native decoder, or the TF1
session) before `export.publish` renames it into place.
"""
import json
import os

from absl import logging
import numpy as np
import tensorflow as tf

from tensorflow.core.protobuf import saved_model_pb2

from tfvae import errors
from tfvae import export
from tfvae.export import compute_weights
from tfvae import precision
from tfvae import rng
from tfvae.migrate._messages import first_line

# Largest |reloaded - reference| a published generator may show, per value.
MAX_ABS_DIFF = 1e-5
# Where a mapped or run-directory export records what it was built from.
SOURCE_RECORD = "tfvae_source.json"


class DecoderGenerator(tf.Module):
  """A native decoder on its own, with the generator signatures.

  Only the decoder is tracked, so an encoder's variables never reach the
  SavedModel. In another dtype than float32 the signatures compute on a
  copy of the decoder whose network weights are held in that dtype
  (`compute_weights.lowered_copy`), as `tfvae-export --dtype` does; the
  float32 decoder stays as it is.

  Args:
    decoder: A `models.Decoder`.
    dtype: Compute dtype inside the signatures (`precision.DTYPES`).
    name: Module name.
  """

  def __init__(self, decoder, dtype="float32", name=None):
    super().__init__(name=name)
    self.decoder = decoder
    self.latent_size = decoder.latent_size
    self.image_shape = decoder.image_shape
    compute, weights = compute_weights.lowered_copy(decoder, dtype)
    if weights:
      setattr(self, compute_weights.COMPUTE_WEIGHTS, weights)
    self.decode, self.generate = export.generator_functions(
        compute.outputs, decoder.latent_size)
    self.serve = export.serving_function(compute.outputs, decoder.latent_size)


def _node_defs(saved_model):
  """Yields (NodeDef, function name or None) for every node of a SavedModel."""
  for meta_graph in saved_model.meta_graphs:
    for node in meta_graph.graph_def.node:
      yield node, None
    for function in meta_graph.graph_def.library.function:
      for node in function.node_def:
        yield node, function.signature.name


def _read_saved_model(saved_model_dir):
  saved_model = saved_model_pb2.SavedModel()
  with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
    saved_model.ParseFromString(f.read())
  return saved_model


def device_pins(saved_model_dir):
  """Lists every pinned NodeDef of a SavedModel, the saver's included.

  Args:
    saved_model_dir: A SavedModel directory.

  Returns:
    List of "node: device" (main graph) and "node@function: device" strings;
    empty when nothing is pinned.
  """
  pins = []
  for node, function in _node_defs(_read_saved_model(saved_model_dir)):
    if node.device:
      where = node.name if function is None else f"{node.name}@{function}"
      pins.append(f"{where}: {node.device}")
  return pins


def clear_device_pins(saved_model_dir):
  """Clears every NodeDef's device in `saved_model_dir/saved_model.pb`.

  tf.saved_model.save pins its own checkpoint save/restore functions to
  /device:CPU:0; those ops only have CPU kernels, so the placer puts them
  there anyway, and an export free of pins loads the same on any machine.
  """
  saved_model = _read_saved_model(saved_model_dir)
  for node, _ in _node_defs(saved_model):
    node.device = ""
  with open(os.path.join(saved_model_dir, "saved_model.pb"), "wb") as f:
    f.write(saved_model.SerializeToString())


def _reload_unpinned(saved_path, export_dir):
  """Clears the device pins of a written SavedModel and loads it again.

  Raises:
    errors.TfvaeError: If it does not load back.
  """
  clear_device_pins(saved_path)
  try:
    return tf.saved_model.load(saved_path)
  except (tf.errors.OpError, ValueError) as e:
    raise errors.TfvaeError(
        f"the SavedModel for {export_dir} does not load back: "
        f"{first_line(e)}") from e


def _compare(loaded, device_name, z, expected, subject, reference,
             tolerance=None):
  """max |decode(z) - expected| of a reloaded generator; raises past 1e-5.

  With a `tolerance` the difference is relative, max |got - want| / (1 +
  |want|), and may reach it (a generator computing in a lower precision
  than its float32 reference).
  """
  try:
    with tf.device(device_name):
      got = loaded.signatures["decode"](z=tf.constant(z))
    got = {k: v.numpy() for k, v in got.items()}
  except (tf.errors.OpError, ValueError) as e:
    raise errors.TfvaeError(
        f"{subject} fails to decode a batch of {len(z)}: {first_line(e)}; "
        "not publishing") from e
  if sorted(got) != sorted(expected):
    raise errors.TfvaeError(
        f"{subject} returns {sorted(got)}, not {sorted(expected)}; not "
        "publishing")
  for k in expected:
    if got[k].shape != expected[k].shape:
      raise errors.TfvaeError(
          f"{subject} gives images of shape {got[k].shape}, {reference} "
          f"{expected[k].shape}; not publishing")
  limit = MAX_ABS_DIFF if tolerance is None else tolerance
  diff = max(float(np.max(np.abs(got[k] - expected[k])
                          / (1.0 if tolerance is None
                             else 1.0 + np.abs(expected[k]))))
             for k in expected)
  if not diff <= limit:
    raise errors.TfvaeError(
        f"{subject} differs from {reference} by {diff:.3g} at batch size "
        f"{len(z)} (more than {limit}); not publishing")
  return diff


def source_record(version_dir):
  """The provenance a published version records (see `SOURCE_RECORD`).

  Args:
    version_dir: A published version directory.

  Returns:
    The record's dict, or {} for a version without one.
  """
  try:
    with open(os.path.join(version_dir, "assets.extra", SOURCE_RECORD)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}


def publish_verified(module, export_dir, version, device_name, z, expected,
                     subject, reference, label, record=None, tolerance=None):
  """Publishes `module` once its reloaded SavedModel decodes `z` to `expected`.

  Args:
    module: A generator `tf.Module` with `decode`, `generate` (see
      `export.generator_functions`) and `image_shape` (H, W, C).
    export_dir: Parent of the versioned SavedModel directories.
    version: Positive int, or None for the next free version.
    device_name: Where the reloaded copy decodes.
    z: float32 [B, latent_size], the latent points it is checked on, or a
      list of such batches (of different sizes).
    expected: Dict output name -> float32 [B, H, W, C]: what the reference
      decodes `z` to; the reloaded `decode` must return exactly these names.
      A list of such dicts when `z` is a list.
    subject: How messages name the generator ("the rebuilt decoder").
    reference: How messages name the reference ("the TF1 graph M.meta").
    label: What the log line's difference is between ("TF2 - TF1").
    record: JSON-friendly provenance written to
      `<version>/assets.extra/tfvae_source.json`, or None.
    tolerance: None: |reloaded - reference| <= MAX_ABS_DIFF everywhere;
      else the largest relative difference |reloaded - reference| / (1 +
      |reference|) allowed (`precision.EXPORT_TOLERANCES`).

  Returns:
    The published version directory.

  Raises:
    errors.TfvaeError: If the copy pins devices, does not load back, or
      decodes differently by more than MAX_ABS_DIFF; nothing is published.
  """
  batches = list(z) if isinstance(z, (list, tuple)) else [z]
  expectations = (list(expected) if isinstance(expected, (list, tuple))
                  else [expected])

  def verify(loaded, saved_path):
    del loaded  # Reloaded without device pins instead.
    loaded = _reload_unpinned(saved_path, export_dir)
    pins = device_pins(saved_path)
    if pins:
      raise errors.TfvaeError(
          f"the SavedModel for {export_dir} pins devices: {pins[0]}")
    with tf.device(device_name):
      generated = loaded.signatures["generate"](
          seed=tf.constant([0, 1], tf.int64))["images"]
    diff = 0.
    for points, wanted in zip(batches, expectations):
      diff = max(diff, _compare(loaded, device_name, points, wanted,
                                subject, reference, tolerance))
    if tuple(generated.shape[1:]) != tuple(module.image_shape):
      raise errors.TfvaeError(
          f"generate gives images of shape {generated.shape}; not publishing")
    logging.info("Verified: max |%s| = %.3g on batches of %s latent points",
                 label, diff, ", ".join(str(len(b)) for b in batches))
    if record is not None:
      extra = os.path.join(saved_path, "assets.extra")
      os.makedirs(extra, exist_ok=True)
      with open(os.path.join(extra, SOURCE_RECORD), "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)

  return export.publish(
      module, export_dir, version=version,
      signatures={export.DEFAULT_SIGNATURE: getattr(module, "serve",
                                                    module.decode),
                  "decode": module.decode, "generate": module.generate},
      verify=verify,
      options=tf.saved_model.SaveOptions(experimental_io_device=None))


def publish_decoder(decoder, export_dir, version, device_name, source_name,
                    record, dtype="float32"):
  """Publishes a native decoder once its reloaded copy decodes like it.

  Args:
    decoder: The native `models.Decoder`, weights loaded.
    export_dir, version: As in `export.publish`.
    device_name: Where to decode for the check.
    source_name: What the decoder came from, for messages ("run DIR").
    record: JSON-friendly provenance, written to
      `<version>/assets.extra/tfvae_source.json`.
    dtype: Compute dtype inside the signatures (`precision.DTYPES`); for
      another than float32 the reloaded generator is checked against the
      float32 decoder within `precision.EXPORT_TOLERANCES[dtype]`.

  Returns:
    The published version directory.
  """
  z = rng.verification_latents(decoder.latent_size)
  with tf.device(device_name):
    expected = {k: v.numpy() for k, v in decoder.outputs(z).items()}
  tolerance = None
  if dtype != "float32":
    tolerance = precision.EXPORT_TOLERANCES[dtype]
  module = DecoderGenerator(decoder, dtype)
  return publish_verified(
      module, export_dir, version, device_name, z, expected,
      subject="the reloaded generator",
      reference=f"the float32 decoder of {source_name}" if tolerance
      else f"the decoder of {source_name}", label="reloaded - native",
      record=record if tolerance is None else {**record, "dtype": dtype},
      tolerance=tolerance)
