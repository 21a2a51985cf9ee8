"""`build_generator`: a servable generator from any checkpoint it is given.

The source decides how (see `build_generator`): a tfvae run's decoder is
published as it is; a TF1 checkpoint with its graph goes through graph
surgery (`graph`, `surgery`); a TF1 checkpoint without one has its variables
mapped into a native decoder (`mapping`, checked against `reference`). Every
generator is checked on its reloaded SavedModel before it is published
(`publish`).
"""
import dataclasses
import os

from absl import logging
import numpy as np
import tensorflow as tf

from tfvae import errors
from tfvae import precision
from tfvae import rng
from tfvae import runs
from tfvae.migrate import candidates
from tfvae.migrate import crosscheck
from tfvae.migrate import graph
from tfvae.migrate import mapping
from tfvae.migrate import ops
from tfvae.migrate import publish
from tfvae.migrate import reader
from tfvae.migrate import reference
from tfvae.migrate import surgery
from tfvae.migrate._messages import first_line


# The batch a graph with a dynamic batch is first verified at (then 1 and 7).
VERIFY_BATCH = 8


def resolve_device(device):
  """Maps --device (auto, cpu, gpu) to a TF device name."""
  gpus = tf.config.list_physical_devices("GPU")
  if device == "auto":
    return "/GPU:0" if gpus else "/CPU:0"
  if device == "cpu":
    return "/CPU:0"
  if device == "gpu":
    if not gpus:
      raise errors.TfvaeError(
          "--device=gpu but TensorFlow sees no GPU; use --device=auto or cpu")
    return "/GPU:0"
  raise errors.TfvaeError(f"--device must be auto, cpu or gpu, not {device}")


def parse_image_shape(text):
  """Parses "H,W,C" into a tuple of three positive ints (None for empty)."""
  if not text:
    return None
  try:
    shape = tuple(int(p) for p in str(text).split(","))
  except ValueError:
    shape = ()
  if len(shape) != 3 or min(shape) <= 0:
    raise errors.TfvaeError(f"--image_shape must be H,W,C, not {text!r}")
  return shape


def build_generator(checkpoint, export_dir, version=None, meta_graph=None,
                    latent_tensor=None, output_tensor=None,
                    output_collection=None, image_shape=None, device="auto",
                    allow_unsafe_ops=False, no_meta=False, decoder_spec=None,
                    variable_map=None, dtype="float32"):
  """Builds, verifies and publishes a generator SavedModel from a checkpoint.

  The source decides how:
    * a tfvae run directory, or a TF2 checkpoint inside a run's `ckpt/`: the
      native model is restored and its decoder published;
    * a TF1 checkpoint with a graph (`PREFIX.meta` or `meta_graph`): graph
      surgery cuts the decode path out of the graph;
    * a TF1 checkpoint without a graph (or with `no_meta`, or with a
      `variable_map`): its variables are loaded into a native decoder of the
      architecture `decoder_spec`, by name (`variable_map`) or by shape.

  Args:
    checkpoint: Anything `reader.resolve` accepts.
    export_dir: Parent of the versioned SavedModel directories.
    version: Positive int, or None for the next free version.
    meta_graph: The TF1 `.meta`; None uses the one beside the prefix.
    latent_tensor: Name of z in the TF1 graph, or None to find it.
    output_tensor: Name of the decoder output, or None.
    output_collection: Collection holding the output, or None.
    image_shape: (H, W, C) or "H,W,C", or None to derive it (from the graph;
      for a mapped checkpoint `decoder_spec.image_shape`).
    device: "auto", "cpu" or "gpu".
    allow_unsafe_ops: Build even if the decode path holds ops that touch
      files or run Python.
    no_meta: Ignore the `.meta` beside a TF1 prefix and map the variables.
    decoder_spec: `mapping.DecoderSpec` of the native decoder a TF1
      checkpoint without a graph is mapped into; None: the default spec.
    variable_map: Dict decoder weight -> TF1 checkpoint variable, or None to
      match by shape.
    dtype: Compute dtype of a native decoder's networks inside the
      signatures (`precision.DTYPES`; inputs and outputs stay float32),
      checked against the float32 decoder within
      `precision.EXPORT_TOLERANCES`; a graph cut from TF1 keeps its own
      (float32 only).

  Returns:
    The published version directory.

  Raises:
    errors.TfvaeError: For any problem with the inputs; nothing is published.
  """
  if dtype not in precision.DTYPES:
    raise errors.TfvaeError(f"--dtype={dtype}: choose one of "
                            f"{', '.join(precision.DTYPES)}")
  source = reader.resolve(checkpoint)
  if source.kind in (reader.SOURCE_RUN_DIR,
                     reader.SOURCE_TF2_CHECKPOINT):
    given = [flag for flag, value in (
        ("--meta_graph", meta_graph), ("--latent_tensor", latent_tensor),
        ("--output_tensor", output_tensor),
        ("--output_collection", output_collection), ("--map", variable_map),
        ("--image_shape", image_shape)) if value]
    if given:
      raise errors.TfvaeError(
          f"{', '.join(given)} only apply to TF1 checkpoints, not to "
          f"{source.run_dir or source.prefix}")
    return _build_from_run(source, export_dir, version, device, dtype)
  if no_meta and meta_graph:
    raise errors.TfvaeError("pass either --meta_graph or --no_meta, not both")
  if variable_map and meta_graph:
    raise errors.TfvaeError(
        "--map/--map_file load variables into a native decoder and "
        "--meta_graph cuts the TF1 graph; pass one of them")
  meta_path = None if no_meta or variable_map else (
      meta_graph or source.meta_graph)
  if meta_path is None:
    if source.meta_graph:
      logging.info("Not building from %s: mapping the checkpoint's variables "
                   "into a native decoder (the graph only checks the "
                   "mapping)", source.meta_graph)
    if isinstance(image_shape, str):
      image_shape = parse_image_shape(image_shape)
    spec = decoder_spec or mapping.DecoderSpec()
    if image_shape is not None:
      spec = dataclasses.replace(spec, image_shape=tuple(image_shape))
    return _build_from_mapping(source, spec, variable_map, export_dir,
                               version, device, dtype)
  if dtype != "float32":
    raise errors.TfvaeError(
        f"--dtype={dtype}: only native decoders (a tfvae run, or a TF1 "
        "checkpoint mapped with --no_meta or --map) compute in another "
        f"dtype; the graph of {meta_path} runs as TF1 built it")
  return _build_from_meta_graph(
      source, meta_path, export_dir, version, latent_tensor, output_tensor,
      output_collection, image_shape, device, allow_unsafe_ops)



def _run_dir_of(source):
  """The run directory of a run-dir source or of a TF2 prefix in RUN/ckpt/."""
  if source.run_dir:
    return source.run_dir
  run_dir = os.path.dirname(os.path.dirname(os.path.abspath(source.prefix)))
  if (os.path.basename(os.path.dirname(os.path.abspath(source.prefix)))
      != runs.CKPT or not runs.is_run_dir(run_dir)):
    raise errors.TfvaeError(
        f"TF2 checkpoint {source.prefix} is not inside a tfvae run directory "
        f"(RUN_DIR/{runs.CKPT}/ with RUN_DIR/{runs.CONFIG}); without the "
        "run's config the model cannot be rebuilt")
  return run_dir


def _build_from_run(source, export_dir, version, device, dtype="float32"):
  """A tfvae run's decoder as a generator: see `build_generator`."""
  device_name = resolve_device(device)
  run_dir = _run_dir_of(source)
  checkpoint = None if source.kind == reader.SOURCE_RUN_DIR else (
      source.prefix)
  try:
    with tf.device(device_name):
      config, model, step = runs.restore_model(run_dir, checkpoint)
  except ValueError as e:
    raise errors.TfvaeError(
        f"the model of run directory {run_dir} cannot be rebuilt from "
        f"{runs.config_path(run_dir)}: {first_line(e)}") from e
  logging.info("Restored the %s model of %s at step %d", config.model,
               run_dir, step)
  record = {"source": "tfvae run", "run_dir": os.path.abspath(run_dir),
            "checkpoint": os.path.abspath(checkpoint or source.prefix),
            "step": step}
  return publish.publish_decoder(model.decoder, export_dir, version,
                                 device_name, f"run {run_dir}", record, dtype)


def _build_from_mapping(source, spec, variable_map, export_dir, version,
                        device, dtype="float32"):
  """A TF1 checkpoint mapped into a native decoder: see `build_generator`."""
  device_name = resolve_device(device)
  report = reader.verify(source)
  logging.info("Mapping checkpoint %s into a native decoder: %s",
               source.prefix, spec)
  with tf.device(device_name):
    decoder = mapping.build_decoder(spec)
  required = mapping.decoder_weights(decoder, spec)
  shapes = {v.name: v.shape for v in report.variables}
  if variable_map:
    assignment = mapping.check_mapping(required, variable_map, shapes,
                                       source.prefix)
    how = "by name"
  else:
    weights = {v.name: v.shape for v in report.weights()}
    assignment, _, _ = mapping.match_by_shape(required, weights)
    how = "by shape"
  kinds = {v.name: v for v in report.variables}
  for slot, name in assignment.items():
    logging.info("Used: %s %s -> %s (%s)", name, list(shapes[name]), slot,
                 how)
    if kinds[name].kind != reader.WEIGHT:
      logging.warning("%s is an optimizer %s, not a model weight",
                      name, kinds[name].kind)
  used = set(assignment.values())
  unused = [v for v in report.variables if v.name not in used]
  unused_weights = [v.name for v in unused if v.kind == reader.WEIGHT]
  unused_state = [v.name for v in unused if v.kind != reader.WEIGHT]
  for v in unused:
    if v.kind == reader.WEIGHT:
      logging.info("Unused: %s %s (model weight)", v.name, list(v.shape))
  if unused_state:
    logging.info("Unused optimizer slots and bookkeeping (%d): %s",
                 len(unused_state), ", ".join(unused_state))
  values = reader.read_all(source, sorted(used))
  arrays = {slot: values[name] for slot, name in assignment.items()}
  variables = {mapping.variable_key(v): v for v in decoder.trainable_variables}
  for slot, array in arrays.items():
    variables[slot].assign(np.asarray(array, np.float32))

  z = rng.verification_latents(spec.latent_size)
  with tf.device(device_name):
    native = decoder.outputs(z)["mean"].numpy()
  numpy_mean = reference.decode(spec, arrays, z)
  diff = float(np.max(np.abs(native - numpy_mean)))
  if not diff <= publish.MAX_ABS_DIFF:
    raise errors.TfvaeError(
        f"the native decoder loaded from checkpoint {source.prefix} differs "
        f"from the same weights computed in numpy by {diff:.3g} (more than "
        f"{publish.MAX_ABS_DIFF}); not publishing")
  logging.info("Verified: max |native - numpy| = %.3g on %d latent points",
               diff, len(z))
  checked, warnings = _second_opinion(source, report, spec, assignment,
                                      arrays, decoder, device_name)
  record = {"source": "TF1 checkpoint mapped into a native decoder",
            "checkpoint": os.path.abspath(source.prefix),
            "decoder": spec.to_dict(), "matched": how, "mapping": assignment,
            "unused_weights": unused_weights,
            "unused_optimizer_state": unused_state,
            "checked_against_graph": checked, "warnings": warnings}
  return publish.publish_decoder(decoder, export_dir, version, device_name,
                                 f"checkpoint {source.prefix}", record, dtype)


def _second_opinion(source, report, spec, assignment, arrays, decoder,
                    device_name):
  """Checks a mapping against the graph beside the checkpoint, if any.

  The numpy check only shows that the arrays went where the mapping says; an
  untrained twin of a weight passes it. With a `.meta`, the graph's decode
  path is the judge (`crosscheck.check_against_graph` refuses a mapping it
  disagrees with); without one (or when the path cannot be found), mapped
  variables without optimizer slots whose same-shaped twins have them are
  warned about.

  Returns:
    (checked, warnings): the .meta checked against or None, and the
    one-line warnings (also logged).

  Raises:
    errors.TfvaeError: If the graph decodes otherwise than the mapping.
  """
  warnings = []
  if source.meta_graph:
    logging.info("Checking the mapping against the decode path of meta graph "
                 "%s", source.meta_graph)
    try:
      crosscheck.check_against_graph(source, report, spec, assignment, arrays,
                                     decoder, device_name)
      return os.path.abspath(source.meta_graph), warnings
    except crosscheck.Skipped as e:
      warnings.append(f"the mapping was not checked against meta graph "
                      f"{source.meta_graph}: {e}")
  warnings += crosscheck.untrained_twins(report, assignment)
  for warning in warnings:
    logging.warning("%s", warning)
  return None, warnings


def _build_from_meta_graph(source, meta_path, export_dir, version,
                           latent_tensor, output_tensor, output_collection,
                           image_shape, device, allow_unsafe_ops):
  """Graph surgery: see `build_generator`."""
  device_name = resolve_device(device)
  if isinstance(image_shape, str):
    image_shape = parse_image_shape(image_shape)
  report = reader.verify(source)
  meta = graph.MetaGraph(meta_path)
  latent, output = candidates.find_ends(meta, latent_tensor, output_tensor,
                                   output_collection)
  path = surgery.DecodePath(meta, latent, output)
  logging.info("Decode path: %s -> %s, %d ops, %d variables", latent.name,
               output.name, len(path.ops), len(path.variables))
  ops.refuse_unless_allowed(
      path.unsafe_ops(), allow_unsafe_ops,
      f"the decode path of meta graph {meta.path} runs ops a generator may "
      "not (they may touch files or run Python)", "refusing",
      "Building with unsafe ops on the decode path")
  surgery.check_against_checkpoint(meta, report, set(path.variables))
  images = surgery.image_shape_of(output, image_shape)
  values = reader.read_all(source, path.variables)
  module = surgery.rebuild_generator(path, values, images, device_name)

  # The session's own batch size, then 1 and 7: a path that only works at
  # one batch size is caught here, not by a user.
  sizes = [path.batch_size or VERIFY_BATCH, 1, 7]
  points = rng.verification_latents(path.latent_size, count=sum(sizes))
  batches = np.split(points, np.cumsum(sizes)[:-1])
  expected = []
  for z in batches:
    out = surgery.tf1_decode(path, source.prefix, z, device_name)
    expected.append(
        {"mean": np.asarray(out, np.float32).reshape((len(z),) + images)})
  return publish.publish_verified(
      module, export_dir, version, device_name, batches, expected,
      subject="the rebuilt decoder", reference=f"the TF1 graph {meta.path}",
      label="TF2 - TF1")
