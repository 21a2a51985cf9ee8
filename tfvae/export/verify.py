"""Checks of a written SavedModel before it is published.

An export is trusted only after its reloaded signatures have run: every
warmup request (one per signature, built from `example_inputs`) is replayed
through the reloaded SavedModel and compared with the in-process model, and
nothing the signatures run may be pinned to a device (so that TensorFlow or
TF Serving places the model on whatever device it has).
"""
import os

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from tfvae import errors
from tfvae.export import signature_functions
from tfvae.export import warmup


def example_inputs(function, batch=2, num_classes=2):
  """Small deterministic inputs for a signature function (for warmup).

  Args:
    function: A `tf.function` of `export_module` (with an input signature).
    batch: The batch size of the inputs.
    num_classes: Labels (the `label` input of a CVAE) are 0, 1, ... modulo
      this.

  Returns:
    dict input name -> numpy array.
  """
  rng = np.random.default_rng(0)
  inputs = {}
  for spec in function.input_signature:
    shape = [batch if d is None else d for d in spec.shape.as_list()]
    if spec.name == "x":
      value = rng.uniform(size=shape).astype(np.float32)
    elif spec.name in ("z", "code"):
      value = rng.standard_normal(shape).astype(np.float32)
    elif spec.name == "label":
      value = np.arange(batch, dtype=np.int64) % max(int(num_classes), 1)
    elif spec.name == "seed":
      value = (np.arange(batch, dtype=np.int64) if shape
               else np.array(0, np.int64))
    elif spec.name == "num_samples":
      value = np.array(batch, np.int32)
    else:
      raise ValueError(f"no example for input {spec.name!r}")
    inputs[spec.name] = value
  return inputs


def device_pins(saved_model_dir):
  """Nodes and variables of a SavedModel's signatures pinned to a device.

  Walks what the signatures run: the main-graph nodes their outputs depend
  on and every function those call. Left out is the checkpoint saver that
  `tf.saved_model.save` adds itself (SaveV2/RestoreV2 and their constants,
  which have CPU kernels only and which TensorFlow pins to the CPU).

  Returns:
    A list of "name (op): device" strings; empty when nothing the
    signatures run is pinned, so that TensorFlow (or TF Serving) places the
    model on whatever device it has.
  """
  with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
    saved_model = saved_model_pb2.SavedModel.FromString(f.read())
  pins = []
  for meta_graph in saved_model.meta_graphs:
    graph = meta_graph.graph_def
    by_name = {node.name: node for node in graph.node}
    functions = {f.signature.name: f for f in graph.library.function}
    wanted = [info.name for signature in meta_graph.signature_def.values()
              for info in [*signature.inputs.values(),
                           *signature.outputs.values()]]
    reached = set()
    while wanted:
      name = wanted.pop().lstrip("^").split(":")[0]
      if name in reached or name not in by_name:
        continue
      reached.add(name)
      wanted.extend(by_name[name].input)
    pending = [by_name[name] for name in reached]
    seen = set()
    while pending:
      node = pending.pop()
      if node.device:
        pins.append(f"{node.name} ({node.op}): {node.device}")
      called = [node.op] if node.op in functions else []
      for attr in node.attr.values():
        if attr.HasField("func"):
          called.append(attr.func.name)
        called.extend(f.name for f in attr.list.func)
      for name in called:
        if name in functions and name not in seen:
          seen.add(name)
          pending.extend(functions[name].node_def)
    for i, obj in enumerate(meta_graph.object_graph_def.nodes):
      if obj.WhichOneof("kind") == "variable" and obj.variable.device:
        pins.append(f"variable {obj.variable.name or i}: "
                    f"{obj.variable.device}")
  return pins


def _max_difference(a, b):
  """max |a - b| / (1 + |b|) over elements; inf when the shapes differ."""
  a, b = np.asarray(a), np.asarray(b)
  if a.shape != b.shape:
    return np.inf
  if a.size == 0:
    return 0.0
  return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))
                      / (1.0 + np.abs(b.astype(np.float64)))))


def replay_warmup(loaded, saved_model_dir, expected_functions=None,
                  tolerance=1e-4):
  """Replays a SavedModel's warmup requests through its signatures.

  Args:
    loaded: The SavedModel, loaded with `tf.saved_model.load`.
    saved_model_dir: Its directory (holding assets.extra/).
    expected_functions: Optional dict signature name -> callable giving the
      expected outputs (the in-process model's functions).
    tolerance: Largest accepted |got - expected| / (1 + |expected|).

  Returns:
    The number of requests replayed.

  Raises:
    errors.TfvaeError: If a request names a missing signature, fails, or
      gives outputs different from the expected ones.
  """
  requests = warmup.read(saved_model_dir)
  for signature_name, inputs in requests:
    name = signature_name or signature_functions.DEFAULT_SIGNATURE
    if name not in loaded.signatures:
      raise errors.TfvaeError(
          f"{warmup.path(saved_model_dir)}: a request calls signature "
          f"{name!r}, which the SavedModel does not have")
    try:
      got = loaded.signatures[name](**{k: tf.constant(v)
                                       for k, v in inputs.items()})
    except (tf.errors.OpError, TypeError, ValueError) as e:
      raise errors.TfvaeError(
          f"{saved_model_dir}: warmup request for {name} failed: "
          f"{str(e).strip().splitlines()[0]}") from None
    if expected_functions is None:
      continue
    expected = expected_functions[name](**inputs)
    for key, value in expected.items():
      if key not in got:
        raise errors.TfvaeError(
            f"{saved_model_dir}: signature {name} lost output {key!r}")
      difference = _max_difference(got[key], value)
      if not difference <= tolerance:
        raise errors.TfvaeError(
            f"{saved_model_dir}: signature {name} output {key!r} differs "
            f"from the in-process model by {difference:.3g} after reloading")
  return len(requests)
