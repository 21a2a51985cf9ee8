"""Exporting a model or a run: signatures, warmup, checks, provenance.

`export_model` publishes `signatures.export_module(model, part)` as the next
version of an export directory with TF Serving warmup requests, after
replaying them through the reloaded SavedModel (`verify`); `export_run` does
so for a run directory's checkpoint and records where it came from.
"""
import os

from absl import logging
import tensorflow as tf

from tfvae import data
from tfvae import errors
from tfvae import image_sources
from tfvae import precision
from tfvae import runs
from tfvae.export import signature_functions
from tfvae.export import verify as verify_lib
from tfvae.export import versions
from tfvae.export import warmup


def export_model(model, export_dir, part="full", version=None,
                 metadata=None, verify=None, dtype="float32"):
  """Publishes `model` as `export_dir/<version>/`, verified, atomically.

  The SavedModel holds `export_module(model, part)` with the signatures of
  `signatures`, `assets.extra/tf_serving_warmup_requests` (one request per
  signature) and `assets.extra/tfvae_export.json` (provenance). Before the
  version directory is renamed into place the export is loaded back, checked
  for device pins, and every warmup request is replayed and compared with
  the in-process model.

  Args:
    model: The model (see `signatures.export_module`).
    export_dir: Parent directory of the versions.
    part: "full" or "generator".
    version: Positive integer version; default one above the highest.
    metadata: Optional JSON-able dict added to the provenance file (for a
      CVAE, "class_names": the names of its labels, which
      `tfvae-generate --label=NAME` reads).
    verify: Optional extra `verify(loaded, path)` run last (see `publish`).
    dtype: The compute dtype of the networks inside the signatures
      (`precision.DTYPES`); inputs and outputs stay float32. For another
      than float32 the networks' weights are held in that dtype too, cast
      once at export (`compute_weights`), while the SavedModel keeps the
      float32 model's variables as well; it is verified against the
      float32 model: every warmup request's
      outputs must be within `precision.EXPORT_TOLERANCES[dtype]` (|got -
      want| / (1 + |want|)) of the float32 model's.

  Returns:
    The path of the published version directory.

  Raises:
    errors.TfvaeError: On any failure; no version directory is left then.
  """
  if dtype not in precision.DTYPES:
    raise errors.TfvaeError(f"--dtype={dtype}: choose one of "
                            f"{', '.join(precision.DTYPES)}")
  module = signature_functions.export_module(model, part)
  signature_map = signature_functions.signatures(module)
  model_name = os.path.basename(os.path.normpath(export_dir)) or "model"
  num_classes = int(getattr(model, "num_classes", 2))
  requests = [(name, verify_lib.example_inputs(function,
                                               num_classes=num_classes))
              for name, function in signature_map.items()]
  expected_functions = signature_map
  if dtype != "float32":
    # The float32 model's answers; the export's signatures then run on a
    # copy whose networks hold their weights in `dtype`
    # (`compute_weights.lowered_copy`), and the model stays as it is.
    wanted = {name: {key: value.numpy() for key, value in signature_map[name](
        **{k: tf.constant(v) for k, v in inputs.items()}).items()}
              for name, inputs in requests}
    expected_functions = {name: (lambda name=name, **_: wanted[name])
                          for name in wanted}
    module = signature_functions.export_module(model, part, dtype)
    signature_map = signature_functions.signatures(module)
  can_generate, conditional = signature_functions.capabilities(model)
  kind_info = {"generative": can_generate, "conditional": conditional}
  if conditional:
    kind_info["num_classes"] = num_classes

  def check(loaded, path):
    pins = verify_lib.device_pins(path)
    if pins:
      raise errors.TfvaeError(f"{path}: exported nodes are pinned to devices "
                              f"({pins[0]}, ...)")
    warmup.write(path, requests, model_name)
    count = verify_lib.replay_warmup(
        loaded, path, expected_functions,
        tolerance=precision.EXPORT_TOLERANCES[dtype])
    logging.info("Replayed %d warmup requests (%s) through the reloaded "
                 "SavedModel%s.", count, ", ".join(signature_map),
                 "" if dtype == "float32" else
                 f" computing in {dtype}, within "
                 f"{precision.EXPORT_TOLERANCES[dtype]} of the float32 model")
    versions.write_metadata(path, {
        "part": part,
        "signatures": list(signature_map),
        "latent_size": int(model.latent_size),
        "image_shape": [int(d) for d in model.image_shape],
        **kind_info,
        "dtype": dtype,
        **(metadata or {}),
    })
    if verify is not None:
      verify(loaded, path)

  return versions.publish(module, export_dir, version,
                          signatures=signature_map, verify=check)


def export_run(run_dir, export_dir, checkpoint=None, version=None,
               part="full", verify=None, dtype="float32"):
  """Exports a run's checkpoint (default: its newest intact one).

  Args:
    run_dir: A tfvae run directory.
    export_dir: Parent directory of the versions.
    checkpoint: A checkpoint prefix, or the name of one in RUN_DIR/ckpt
      (such as "ckpt-1000"); default the newest intact checkpoint.
    version: Positive integer version; default one above the highest.
    part: "full" or "generator".
    verify: Optional extra check (see `publish`).
    dtype: The compute dtype inside the signatures (see `export_model`).

  Returns:
    The path of the published version directory.

  Raises:
    errors.TfvaeError: If the run has no usable checkpoint, the checkpoint
      does not fit the run's config, or the export fails.
  """
  if checkpoint is not None and not os.path.exists(checkpoint + ".index"):
    inside = os.path.join(runs.ckpt_dir(run_dir), checkpoint)
    if os.path.exists(inside + ".index"):
      checkpoint = inside
  signature_functions.check_part(part)
  if tf.io.gfile.exists(export_dir) and not tf.io.gfile.isdir(export_dir):
    raise errors.TfvaeError(f"--export_dir={export_dir} is not a directory")
  # Without --checkpoint, the newest intact one (the next newest if a
  # training run rotates it away meanwhile).
  config, model, step, checkpoint = runs.restore_checkpoint(run_dir,
                                                            checkpoint)
  logging.info("Exporting %s (step %d) of %s as part %s.", checkpoint, step,
               run_dir, part)
  metadata = {"run_dir": os.path.abspath(run_dir),
              "checkpoint": os.path.abspath(checkpoint), "step": step,
              "model": config.model, "config": config.to_dict()}
  if signature_functions.capabilities(model).conditional:
    metadata["class_names"] = list(run_class_names(config))
  return export_model(model, export_dir, part, version, metadata, verify,
                      dtype)


def run_class_names(config):
  """The names of a run's class labels: its data set's (for --data, its
  folder's subdirectories or its TFRecords' recorded names), or "0", "1", ...

  Returns:
    A tuple of `config.num_classes` strings.
  """
  if config.data:
    names = tuple(image_sources.class_names_of(config.data) or ())
  else:
    names = tuple(data.CLASS_NAMES.get(config.dataset, ()))
  if len(names) != config.num_classes:
    names = tuple(str(i) for i in range(config.num_classes))
  return names
