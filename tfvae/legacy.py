"""Turning checkpoints into TF2 generators, TF1 graphs by graph surgery.

`build_generator` takes three kinds of source: a tfvae run directory (its
native decoder is published), a TF1 checkpoint with its graph (graph
surgery, below) and a TF1 checkpoint without one (its variables are mapped
into a native decoder, see `mapping`). Every generator is checked on its
reloaded SavedModel before it is published.

A TF1 user has a checkpoint and, beside it, the `.meta` (the graph, a
program). The generator is the part of that graph between the latent tensor z
(what the sampler `z = mean + exp(log_var / 2) * eps` produces) and the
decoder's output. This module finds both tensors, prunes the graph down to the
decode path, checks that nothing on it touches files or runs Python, imports
that path inside `tf.compat.v1.wrap_function` with its variables replaced by
TF2 resource variables holding the checkpoint's values, and publishes it with
the shared `decode`/`generate` signatures, after checking on the reloaded
SavedModel that it decodes like the TF1 session does.

The pruning happens on the GraphDef, before the import: only the decode
path's ops enter the wrapped function (its TF1 ref variables turned into
placeholders fed from the TF2 variables), which gives what
`WrappedFunction.prune(feeds=z, fetches=output)` would, without importing the
training graph's ref-variable, optimizer and file ops into TF2 at all.
"""
import dataclasses
import json
import math
import os

from absl import logging
import numpy as np
import tensorflow as tf

from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.core.protobuf import saved_model_pb2

from tfvae import checkpoints
from tfvae import errors
from tfvae import export
from tfvae import mapping
from tfvae import rng
from tfvae import runs

v1 = tf.compat.v1

# Ops that touch the file system, the network or run Python: a `.meta` is a
# program, and these must not run while decoding.
UNSAFE_OP_TYPES = frozenset({
    "WriteFile", "ReadFile", "MatchingFiles", "PyFunc", "PyFuncStateless",
    "EagerPyFunc", "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2",
    "RestoreSlice", "MergeV2Checkpoints", "ShardedFilename", "ShardedFilespec",
    "WholeFileReader", "WholeFileReaderV2", "TextLineReader",
    "TextLineReaderV2", "TFRecordReader", "TFRecordReaderV2",
    "FixedLengthRecordReader", "FixedLengthRecordReaderV2",
    "TextLineDataset", "TFRecordDataset", "FixedLengthRecordDataset",
    "ImmutableConst", "LoadAndRemapMatrix", "CreateSummaryFileWriter",
    "CreateSummaryDbWriter", "WriteSummary", "WriteScalarSummary",
    "WriteImageSummary", "WriteHistogramSummary", "WriteAudioSummary",
    "WriteGraphSummary", "WriteRawProtoSummary", "DebugIdentity",
    "DebugIdentityV2", "DebugNanCount", "DebugNumericSummary",
    "DebugNumericSummaryV2", "Fact", "Print",
})
# The Saver's own subgraph saves and restores files; it never runs when
# decoding, so it is reported but expected.
_SAVER_SCOPE = "save/"

VARIABLE_OP_TYPES = frozenset({"VariableV2", "Variable", "VarHandleOp"})
WEIGHT_OP_TYPES = {  # op type -> indices of the inputs that carry activations
    "MatMul": (0, 1), "BatchMatMul": (0, 1), "BatchMatMulV2": (0, 1),
    "BatchMatMulV3": (0, 1), "Conv2D": (0,), "Conv3D": (0,),
    "DepthwiseConv2dNative": (0,), "Conv2DBackpropInput": (2,),
    "Conv3DBackpropInputV2": (2,), "Einsum": (0, 1),
}
RANDOM_OP_TYPES = frozenset({
    "RandomStandardNormal", "RandomUniform", "RandomUniformInt",
    "TruncatedNormal", "ParameterizedTruncatedNormal", "RandomGamma",
    "RandomPoisson", "RandomPoissonV2", "Multinomial", "RandomShuffle",
    "StatelessRandomNormal", "StatelessRandomNormalV2",
    "StatelessRandomUniform", "StatelessRandomUniformV2",
    "StatelessTruncatedNormal", "StatelessTruncatedNormalV2",
})
# Ops that may follow the decoder's last weight op and still be "the output":
# bias additions and activations.
_HEAD_OP_TYPES = frozenset({
    "BiasAdd", "Add", "AddV2", "Sigmoid", "Tanh", "Relu", "Relu6", "Elu",
    "Selu", "Softplus", "Softmax", "Identity",
})
_STANDARD_COLLECTIONS = frozenset({
    "variables", "trainable_variables", "train_op", "summaries",
    "queue_runners", "update_ops", "losses", "local_variables",
    "global_step", "model_variables", "cond_context", "while_context",
    "savers", "regularization_losses", "saveable_objects",
})
_LATENT_INPUT = "tfvae_latent"
MAX_ABS_DIFF = 1e-5
# Where a mapped or run-directory export records what it was built from.
SOURCE_RECORD = "tfvae_source.json"


def _is_unsafe(op):
  if op.type in UNSAFE_OP_TYPES:
    return True
  if op.type == "PrintV2":
    try:
      return op.get_attr("output_stream").startswith("file://")
    except ValueError:
      return False
  return False


def _first_line(e):
  text = getattr(e, "message", None) or str(e) or type(e).__name__
  return text.strip().splitlines()[0]


class MetaGraph:
  """A TF1 `.meta` imported into a private `tf.Graph` for analysis.

  Args:
    path: The `.meta` file.

  Raises:
    errors.TfvaeError: If the file is missing or is not a MetaGraphDef.
  """

  def __init__(self, path):
    self.path = path
    if not os.path.isfile(path):
      raise errors.TfvaeError(f"meta graph {path} does not exist")
    self.meta_graph_def = meta_graph_pb2.MetaGraphDef()
    try:
      with open(path, "rb") as f:
        self.meta_graph_def.ParseFromString(f.read())
    except Exception as e:  # pylint: disable=broad-except
      raise errors.TfvaeError(
          f"meta graph {path} is not a MetaGraphDef ({_first_line(e)})") from e
    self.graph = tf.Graph()
    try:
      with self.graph.as_default():
        v1.train.import_meta_graph(self.meta_graph_def, clear_devices=True)
    except Exception as e:  # pylint: disable=broad-except
      raise errors.TfvaeError(
          f"meta graph {path} cannot be imported ({_first_line(e)})") from e

  # Graph walking ---------------------------------------------------------

  def tensor(self, name, flag="tensor"):
    """Returns the tensor called `name` ("op" means "op:0")."""
    if ":" not in name:
      name += ":0"
    try:
      return self.graph.get_tensor_by_name(name)
    except (KeyError, ValueError) as e:
      raise errors.TfvaeError(
          f"{flag} {name} is not in meta graph {self.path}") from e

  def ancestors(self, tensors, stop=()):
    """Ops that computing `tensors` runs, not looking past `stop` tensors.

    Variables are leaves: their initializers never run when reading them.
    """
    stop = set(stop)
    seen = set()
    todo = [t.op for t in tensors if t not in stop]
    while todo:
      op = todo.pop()
      if op in seen:
        continue
      seen.add(op)
      if op.type in VARIABLE_OP_TYPES:
        continue
      todo.extend(t.op for t in op.inputs if t not in stop)
      todo.extend(op.control_inputs)
    return seen

  @staticmethod
  def descendants(op, within):
    """Ops reachable forward from `op` inside the op set `within`."""
    seen = set()
    todo = [op]
    while todo:
      current = todo.pop()
      for out in current.outputs:
        for consumer in out.consumers():
          if consumer in within and consumer not in seen:
            seen.add(consumer)
            todo.append(consumer)
      for consumer in current._control_outputs:  # pylint: disable=protected-access
        if consumer in within and consumer not in seen:
          seen.add(consumer)
          todo.append(consumer)
    return seen

  def variable_ops(self):
    return [op for op in self.graph.get_operations()
            if op.type in VARIABLE_OP_TYPES]

  def _parameter_only(self, tensor):
    """True if `tensor` depends on variables and constants alone."""
    for op in self.ancestors([tensor]):
      if op.type == "Placeholder" or op.type in RANDOM_OP_TYPES:
        return False
    return True

  # Finding the generator's ends --------------------------------------------

  def collection_outputs(self):
    """{collection: tensor} for collections holding exactly one tensor."""
    found = {}
    for key in self.graph.get_all_collection_keys():
      if key in _STANDARD_COLLECTIONS:
        continue
      items = self.graph.get_collection(key)
      if len(items) == 1 and isinstance(items[0], tf.Tensor):
        tensor = items[0]
        if tensor.dtype.is_floating and tensor.shape.rank != 0:
          found[key] = tensor
    return found

  def sampler_ops(self):
    """Random ops whose values reach a weight op (not initializers)."""
    everything = set(self.graph.get_operations())
    samplers = []
    for op in self.graph.get_operations():
      if op.type not in RANDOM_OP_TYPES or op.name.startswith(_SAVER_SCOPE):
        continue
      downstream = self.descendants(op, everything)
      if any(d.type in VARIABLE_OP_TYPES or d.type.startswith("Assign")
             for d in downstream):
        continue
      if any(d.type in WEIGHT_OP_TYPES for d in downstream):
        samplers.append(op)
    return samplers

  def head_outputs(self):
    """Decoder outputs found from the sampler: after its last weight op.

    Follows bias additions and activations after the last weight op
    downstream of a sampler; gradient ops are ignored.
    """
    forward = {op for op in self.graph.get_operations()
               if not op.name.startswith(("gradients", _SAVER_SCOPE))}
    outputs = []
    for sampler in self.sampler_ops():
      reach = self.descendants(sampler, forward)
      weights = [op for op in reach if op.type in WEIGHT_OP_TYPES]
      last = [w for w in weights
              if not any(d.type in WEIGHT_OP_TYPES
                         for d in self.descendants(w, reach))]
      for op in last:
        tensor = op.outputs[0]
        while True:
          following = []
          for consumer in tensor.consumers():
            if consumer not in reach or consumer.type not in _HEAD_OP_TYPES:
              continue
            others = [t for t in consumer.inputs if t is not tensor]
            if all(self._parameter_only(t) for t in others):
              following.append(consumer.outputs[0])
          if len(following) != 1:
            break
          tensor = following[0]
        if tensor not in outputs:
          outputs.append(tensor)
    return outputs

  def output_candidates(self):
    """Candidate decoder outputs, best first, as (tensor, how found)."""
    found = [(t, f"collection '{k}'")
             for k, t in sorted(self.collection_outputs().items())]
    for tensor in self.head_outputs():
      if all(tensor is not t for t, _ in found):
        found.append((tensor, "after the decoder's last weight op"))
    return found

  def latent_candidates(self, output):
    """Tensors entering the first weight op after a sampler, towards `output`.

    Args:
      output: The decoder output tensor.

    Returns:
      List of tensors (usually one: the sampler's z).
    """
    upstream = self.ancestors([output])
    found = []
    for sampler in (op for op in upstream if op.type in RANDOM_OP_TYPES):
      reach = self.descendants(sampler, upstream) | {sampler}
      for op in reach:
        if op.type not in WEIGHT_OP_TYPES:
          continue
        for index in WEIGHT_OP_TYPES[op.type]:
          if index >= len(op.inputs):
            continue
          tensor = op.inputs[index]
          if tensor.op not in reach:
            continue
          before = self.ancestors([tensor]) & reach
          if any(b.type in WEIGHT_OP_TYPES for b in before):
            continue
          if tensor not in found:
            found.append(tensor)
    return found

  # Reports ---------------------------------------------------------------

  def unsafe_ops(self, ops=None, include_saver=False):
    ops = self.graph.get_operations() if ops is None else ops
    return sorted(
        (op for op in ops if _is_unsafe(op)
         and (include_saver or not op.name.startswith(_SAVER_SCOPE))),
        key=lambda op: op.name)

  def report(self):
    """A JSON-friendly description of the graph's collections and ends."""
    collections = {}
    for key in sorted(self.graph.get_all_collection_keys()):
      items = self.graph.get_collection(key)
      collections[key] = [getattr(i, "name", type(i).__name__) for i in items]
    placeholders = [
        {"name": op.outputs[0].name, "dtype": op.outputs[0].dtype.name,
         "shape": _shape_text(op.outputs[0].shape)}
        for op in self.graph.get_operations() if op.type == "Placeholder"]
    random_ops = [
        {"name": op.name, "type": op.type}
        for op in self.graph.get_operations() if op.type in RANDOM_OP_TYPES]
    outputs = self.output_candidates()
    latents = []
    for tensor, _ in outputs[:1]:
      latents = [{"name": t.name, "shape": _shape_text(t.shape)}
                 for t in self.latent_candidates(tensor)]
    saver_ops = [op for op in self.unsafe_ops(include_saver=True)
                 if op.name.startswith(_SAVER_SCOPE)]
    return {
        "meta_graph": self.path,
        "collections": collections,
        "placeholders": placeholders,
        "random_ops": random_ops,
        "variables": len(self.variable_ops()),
        "output_candidates": [
            {"name": t.name, "shape": _shape_text(t.shape), "found_by": how}
            for t, how in outputs],
        "latent_candidates": latents,
        "unsafe_ops": [{"name": op.name, "type": op.type}
                       for op in self.unsafe_ops()],
        "saver_file_ops": len(saver_ops),
    }


def _shape_text(shape):
  if shape.rank is None:
    return "unknown"
  return "[" + ", ".join("None" if d is None else str(d)
                         for d in shape.as_list()) + "]"


def _choose(candidates, what, flag):
  if not candidates:
    raise errors.TfvaeError(f"no {what} found automatically; pass {flag}")
  if len(candidates) > 1:
    names = ", ".join(t.name for t in candidates)
    raise errors.TfvaeError(
        f"several {what} candidates: {names}; pick one with {flag}")
  return candidates[0]


def find_ends(meta, latent_tensor=None, output_tensor=None,
              output_collection=None):
  """Picks the generator's input (z) and output tensors.

  Args:
    meta: A `MetaGraph`.
    latent_tensor: Name of z, or None to find it.
    output_tensor: Name of the output, or None.
    output_collection: Collection holding the output, or None.

  Returns:
    (latent, output) tensors of `meta.graph`.

  Raises:
    errors.TfvaeError: If a name is unknown or the choice is ambiguous.
  """
  if output_tensor and output_collection:
    raise errors.TfvaeError(
        "pass either --output_tensor or --output_collection, not both")
  if output_tensor:
    output = meta.tensor(output_tensor, "--output_tensor")
  elif output_collection:
    items = meta.graph.get_collection(output_collection)
    tensors = [i for i in items if isinstance(i, tf.Tensor)]
    if not tensors:
      raise errors.TfvaeError(
          f"collection '{output_collection}' of meta graph {meta.path} holds "
          "no tensor")
    output = _choose(tensors, f"collection '{output_collection}' output",
                     "--output_tensor")
  else:
    collected = meta.collection_outputs()
    if len(collected) == 1:
      output = next(iter(collected.values()))
    else:
      output = _choose([t for t, _ in meta.output_candidates()],
                       "decoder output", "--output_tensor")
  if latent_tensor:
    latent = meta.tensor(latent_tensor, "--latent_tensor")
  else:
    latent = _choose(meta.latent_candidates(output), "latent tensor",
                     "--latent_tensor")
  return latent, output


# Assigning checkpoint variables to decoder weights by shape (see `mapping`).
match_by_shape = mapping.match_by_shape


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


def _image_shape(output, image_shape):
  """The [H, W, C] of the decoder's images."""
  dims = output.shape.as_list() if output.shape.rank is not None else None
  if dims is None:
    if image_shape is None:
      raise errors.TfvaeError(
          f"output {output.name} has an unknown shape; pass --image_shape")
    return image_shape
  pixels = dims[1:]
  if any(d is None for d in pixels):
    if image_shape is None:
      raise errors.TfvaeError(
          f"output {output.name} has shape {_shape_text(output.shape)}; "
          "pass --image_shape")
    return image_shape
  size = int(np.prod(pixels))
  if image_shape is not None:
    if int(np.prod(image_shape)) != size:
      raise errors.TfvaeError(
          f"--image_shape={','.join(map(str, image_shape))} does not fit "
          f"output {output.name} of shape {_shape_text(output.shape)}")
    return image_shape
  if len(pixels) == 3:
    return tuple(pixels)
  if len(pixels) == 2:
    return (pixels[0], pixels[1], 1)
  side = math.isqrt(size)
  if len(pixels) == 1 and side * side == size:
    return (side, side, 1)
  raise errors.TfvaeError(
      f"output {output.name} of shape {_shape_text(output.shape)} is not a "
      "square image; pass --image_shape=H,W,C")


class DecodePath:
  """The ops between z and the output, cut out of a TF1 graph.

  Attributes:
    meta: The `MetaGraph`.
    latent: z, a tensor of `meta.graph`.
    output: The decoder output tensor.
    ops: The ops that decoding runs.
    variables: The variable ops it reads, by name.
    latent_size: Width of z.
  """

  def __init__(self, meta, latent, output):
    self.meta, self.latent, self.output = meta, latent, output
    self.ops = meta.ancestors([output], stop=[latent])
    if latent.op in self.ops or not any(latent in op.inputs
                                        for op in self.ops):
      raise errors.TfvaeError(
          f"latent tensor {latent.name} does not feed output {output.name} "
          f"in meta graph {meta.path}")
    for op in sorted(self.ops, key=lambda o: o.name):
      if op.type in ("Placeholder", "PlaceholderWithDefault"):
        raise errors.TfvaeError(
            f"output {output.name} also depends on placeholder "
            f"{op.outputs[0].name}, not only on latent tensor {latent.name}; "
            "pick another --latent_tensor or --output_tensor")
      if op.type in RANDOM_OP_TYPES:
        raise errors.TfvaeError(
            f"output {output.name} still depends on random op {op.name} "
            f"when {latent.name} is fed; pick another --latent_tensor")
    if latent.shape.rank != 2 or latent.shape[-1] is None:
      raise errors.TfvaeError(
          f"latent tensor {latent.name} has shape {_shape_text(latent.shape)}"
          "; it must be [batch, latent_size]")
    self.latent_size = int(latent.shape[-1])
    self.variables = sorted(op.name for op in self.ops
                            if op.type in VARIABLE_OP_TYPES)

  def unsafe_ops(self):
    return self.meta.unsafe_ops(self.ops, include_saver=True)

  def graph_def(self):
    """A GraphDef of the path: variables and z become placeholders."""
    latent_ref = {self.latent.name, self.latent.name[:-2]
                  if self.latent.name.endswith(":0") else self.latent.name}
    graph_def = tf.compat.v1.GraphDef()
    graph_def.versions.CopyFrom(self.meta.graph.graph_def_versions)
    library = self.meta.meta_graph_def.graph_def.library
    graph_def.library.CopyFrom(library)
    z = graph_def.node.add()
    z.name, z.op = _LATENT_INPUT, "Placeholder"
    z.attr["dtype"].type = self.latent.dtype.as_datatype_enum
    z.attr["shape"].shape.CopyFrom(
        tf.TensorShape([None, self.latent_size]).as_proto())
    for op in sorted(self.ops, key=lambda o: o._id):  # pylint: disable=protected-access
      node = graph_def.node.add()
      node.CopyFrom(op.node_def)
      node.device = ""
      if "_class" in node.attr:
        del node.attr["_class"]
      if op.type in VARIABLE_OP_TYPES:
        node.op = "Placeholder"
        resource = op.type == "VarHandleOp"
        dtype = (tf.resource if resource
                 else op.outputs[0].dtype.base_dtype)
        shape = (tf.TensorShape([]) if resource
                 else tf.TensorShape(op.outputs[0].shape))
        for key in list(node.attr):
          del node.attr[key]
        del node.input[:]
        node.attr["dtype"].type = dtype.as_datatype_enum
        node.attr["shape"].shape.CopyFrom(shape.as_proto())
        continue
      for i, name in enumerate(node.input):
        if name in latent_ref:
          node.input[i] = _LATENT_INPUT
    return graph_def


class TF1Generator(tf.Module):
  """A TF1 decode path running on TF2 resource variables.

  Args:
    decode_graph: `tf.compat.v1.wrap_function` result: z [B, latent_size] ->
      the TF1 output tensor.
    variables: The tf.Variables `decode_graph` reads (tracked so they save).
    latent_size: Width of z.
    image_shape: (H, W, C) of the images.
  """

  def __init__(self, decode_graph, variables, latent_size, image_shape,
               name=None):
    super().__init__(name=name)
    self.tf1_variables = list(variables)
    self._decode_graph = decode_graph
    self.latent_size = latent_size
    self.image_shape = tuple(image_shape)
    self.decode, self.generate = export.generator_functions(
        self._decode, latent_size)

  def _decode(self, z):
    """Returns {"mean": float32 [B, H, W, C]}."""
    output = self._decode_graph(z)
    mean = tf.reshape(tf.cast(output, tf.float32), [-1, *self.image_shape])
    return {"mean": mean}


def _check_against_checkpoint(meta, report, names):
  """Raises if a graph variable is missing from the checkpoint or differs."""
  saved = {v.name: v for v in report.variables}
  for op in meta.variable_ops():
    if op.name not in saved:
      if op.name in names:
        raise errors.TfvaeError(
            f"variable {op.name} of meta graph {meta.path} is not in "
            f"checkpoint {report.source.prefix}")
      continue
    graph_shape = (tf.TensorShape([]) if op.type == "VarHandleOp"
                   else op.outputs[0].shape)
    if op.type == "VarHandleOp":
      graph_shape = tf.TensorShape(op.get_attr("shape"))
    if graph_shape.rank is not None and tuple(
        graph_shape.as_list()) != saved[op.name].shape:
      raise errors.TfvaeError(
          f"variable {op.name} has shape {_shape_text(graph_shape)} in meta "
          f"graph {meta.path} but {list(saved[op.name].shape)} in checkpoint "
          f"{report.source.prefix}")


def _tf1_decode(path, prefix, z, device_name="/CPU:0"):
  """Runs the TF1 graph in a session restored from `prefix`, feeding z."""
  meta = path.meta
  with tf.Graph().as_default() as graph:
    with graph.device(device_name):
      v1.train.import_meta_graph(meta.meta_graph_def, clear_devices=True)
    var_list = {name: _variable_tensor(graph, name) for name in path.variables}
    saver = v1.train.Saver(var_list=var_list) if var_list else None
    config = v1.ConfigProto(allow_soft_placement=True)
    with v1.Session(graph=graph, config=config) as sess:
      try:
        if saver is not None:
          saver.restore(sess, prefix)
        return sess.run(path.output.name, {path.latent.name: z})
      except tf.errors.OpError as e:
        raise errors.TfvaeError(
            f"the TF1 graph {meta.path} failed to decode with checkpoint "
            f"{prefix}: {_first_line(e)}") from e


def _variable_tensor(graph, name):
  op = graph.get_operation_by_name(name)
  for variable in graph.get_collection(v1.GraphKeys.GLOBAL_VARIABLES):
    if variable.op is op:
      return variable
  return op.outputs[0]


def _reload_unpinned(saved_path, export_dir):
  """Clears the device pins of a written SavedModel and loads it again.

  Raises:
    errors.TfvaeError: If it does not load back.
  """
  _clear_device_pins(saved_path)
  try:
    return tf.saved_model.load(saved_path)
  except (tf.errors.OpError, ValueError) as e:
    raise errors.TfvaeError(
        f"the SavedModel for {export_dir} does not load back: "
        f"{_first_line(e)}") from e


def _clear_device_pins(saved_model_dir):
  """Clears every NodeDef's device in `saved_model_dir/saved_model.pb`.

  tf.saved_model.save pins its own checkpoint save/restore functions to
  /device:CPU:0; those ops only have CPU kernels, so the placer puts them
  there anyway, and an export free of pins loads the same on any machine.
  """
  pb_path = os.path.join(saved_model_dir, "saved_model.pb")
  saved_model = saved_model_pb2.SavedModel()
  with open(pb_path, "rb") as f:
    saved_model.ParseFromString(f.read())
  for meta_graph in saved_model.meta_graphs:
    for node in meta_graph.graph_def.node:
      node.device = ""
    for function in meta_graph.graph_def.library.function:
      for node in function.node_def:
        node.device = ""
  with open(pb_path, "wb") as f:
    f.write(saved_model.SerializeToString())


def device_pins(saved_model_dir):
  """Lists `node@function: device` for every pinned NodeDef in a SavedModel."""
  saved_model = saved_model_pb2.SavedModel()
  with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
    saved_model.ParseFromString(f.read())
  pins = []
  for meta_graph in saved_model.meta_graphs:
    for node in meta_graph.graph_def.node:
      if node.device:
        pins.append(f"{node.name}: {node.device}")
    for function in meta_graph.graph_def.library.function:
      for node in function.node_def:
        if node.device:
          pins.append(f"{node.name}@{function.signature.name}: {node.device}")
  return pins


def build_generator(checkpoint, export_dir, version=None, meta_graph=None,
                    latent_tensor=None, output_tensor=None,
                    output_collection=None, image_shape=None, device="auto",
                    allow_unsafe_ops=False, no_meta=False, decoder_spec=None,
                    variable_map=None):
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
    checkpoint: Anything `checkpoints.resolve` accepts.
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

  Returns:
    The published version directory.

  Raises:
    errors.TfvaeError: For any problem with the inputs; nothing is published.
  """
  source = checkpoints.resolve(checkpoint)
  if source.kind in (checkpoints.SOURCE_RUN_DIR,
                     checkpoints.SOURCE_TF2_CHECKPOINT):
    given = [flag for flag, value in (
        ("--meta_graph", meta_graph), ("--latent_tensor", latent_tensor),
        ("--output_tensor", output_tensor),
        ("--output_collection", output_collection), ("--map", variable_map),
        ("--image_shape", image_shape)) if value]
    if given:
      raise errors.TfvaeError(
          f"{', '.join(given)} only apply to TF1 checkpoints, not to "
          f"{source.run_dir or source.prefix}")
    return _build_from_run(source, export_dir, version, device)
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
      logging.info("Not using %s: mapping the checkpoint's variables into a "
                   "native decoder", source.meta_graph)
    if isinstance(image_shape, str):
      image_shape = parse_image_shape(image_shape)
    spec = decoder_spec or mapping.DecoderSpec()
    if image_shape is not None:
      spec = dataclasses.replace(spec, image_shape=tuple(image_shape))
    return _build_from_mapping(source, spec, variable_map, export_dir,
                               version, device)
  return _build_from_meta_graph(
      source, meta_path, export_dir, version, latent_tensor, output_tensor,
      output_collection, image_shape, device, allow_unsafe_ops)


class DecoderGenerator(tf.Module):
  """A native decoder on its own, with the generator signatures.

  Only the decoder is tracked, so an encoder's variables never reach the
  SavedModel.

  Args:
    decoder: A `models.Decoder`.
  """

  def __init__(self, decoder, name=None):
    super().__init__(name=name)
    self.decoder = decoder
    self.latent_size = decoder.latent_size
    self.image_shape = decoder.image_shape
    self.decode, self.generate = export.generator_functions(
        decoder.outputs, decoder.latent_size)


def _publish_decoder(decoder, export_dir, version, device_name, source_name,
                     record):
  """Publishes `decoder` after checking the reloaded copy decodes like it.

  Args:
    decoder: The native `models.Decoder`, weights loaded.
    export_dir, version: As in `export.publish`.
    device_name: Where to decode for the check.
    source_name: What the decoder came from, for messages.
    record: JSON-friendly provenance, written to
      `<version>/assets.extra/tfvae_source.json`.

  Returns:
    The published version directory.
  """
  module = DecoderGenerator(decoder)
  z = rng.verification_latents(decoder.latent_size)
  with tf.device(device_name):
    expected = {k: v.numpy() for k, v in decoder.outputs(z).items()}

  def verify(loaded, saved_path):
    del loaded  # Reloaded without device pins instead.
    loaded = _reload_unpinned(saved_path, export_dir)
    with tf.device(device_name):
      got = loaded.signatures["decode"](z=tf.constant(z))
      generated = loaded.signatures["generate"](
          seed=tf.constant([0, 1], tf.int64))["images"]
    if sorted(got) != sorted(expected):
      raise errors.TfvaeError(
          f"the reloaded decoder returns {sorted(got)}, not "
          f"{sorted(expected)}; not publishing")
    diff = max(float(np.max(np.abs(got[k].numpy() - expected[k])))
               for k in expected)
    if not diff <= MAX_ABS_DIFF:
      raise errors.TfvaeError(
          f"the reloaded generator differs from the decoder of {source_name} "
          f"by {diff:.3g} (more than {MAX_ABS_DIFF}); not publishing")
    if tuple(generated.shape[1:]) != tuple(decoder.image_shape):
      raise errors.TfvaeError(
          f"generate gives images of shape {generated.shape}; not publishing")
    logging.info("Verified: max |reloaded - native| = %.3g on %d latent "
                 "points", diff, len(z))
    extra = os.path.join(saved_path, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    with open(os.path.join(extra, SOURCE_RECORD), "w") as f:
      json.dump(record, f, indent=1, sort_keys=True)

  return export.publish(
      module, export_dir, version=version,
      signatures={"decode": module.decode, "generate": module.generate},
      verify=verify,
      options=tf.saved_model.SaveOptions(experimental_io_device=None))


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


def _build_from_run(source, export_dir, version, device):
  """A tfvae run's decoder as a generator: see `build_generator`."""
  device_name = resolve_device(device)
  run_dir = _run_dir_of(source)
  checkpoint = None if source.kind == checkpoints.SOURCE_RUN_DIR else (
      source.prefix)
  try:
    with tf.device(device_name):
      config, model, step = runs.restore_model(run_dir, checkpoint)
  except ValueError as e:
    raise errors.TfvaeError(
        f"the model of run directory {run_dir} cannot be rebuilt from "
        f"{runs.config_path(run_dir)}: {_first_line(e)}") from e
  logging.info("Restored the %s model of %s at step %d", config.model,
               run_dir, step)
  record = {"source": "tfvae run", "run_dir": os.path.abspath(run_dir),
            "checkpoint": os.path.abspath(checkpoint or source.prefix),
            "step": step}
  return _publish_decoder(model.decoder, export_dir, version, device_name,
                          f"run {run_dir}", record)


def _build_from_mapping(source, spec, variable_map, export_dir, version,
                        device):
  """A TF1 checkpoint mapped into a native decoder: see `build_generator`."""
  device_name = resolve_device(device)
  report = checkpoints.verify(source)
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
    if kinds[name].kind != checkpoints.WEIGHT:
      logging.warning("%s is an optimizer %s, not a model weight",
                      name, kinds[name].kind)
  used = set(assignment.values())
  unused = [v for v in report.variables if v.name not in used]
  unused_weights = [v.name for v in unused if v.kind == checkpoints.WEIGHT]
  unused_state = [v.name for v in unused if v.kind != checkpoints.WEIGHT]
  for v in unused:
    if v.kind == checkpoints.WEIGHT:
      logging.info("Unused: %s %s (model weight)", v.name, list(v.shape))
  if unused_state:
    logging.info("Unused optimizer slots and bookkeeping (%d): %s",
                 len(unused_state), ", ".join(unused_state))
  values = checkpoints.read_all(source, sorted(used))
  arrays = {slot: values[name] for slot, name in assignment.items()}
  variables = {mapping.variable_key(v): v for v in decoder.trainable_variables}
  for slot, array in arrays.items():
    variables[slot].assign(np.asarray(array, np.float32))

  z = rng.verification_latents(spec.latent_size)
  with tf.device(device_name):
    native = decoder.outputs(z)["mean"].numpy()
  reference = mapping.reference_decode(spec, arrays, z)
  diff = float(np.max(np.abs(native - reference)))
  if not diff <= MAX_ABS_DIFF:
    raise errors.TfvaeError(
        f"the native decoder loaded from checkpoint {source.prefix} differs "
        f"from the same weights computed in numpy by {diff:.3g} (more than "
        f"{MAX_ABS_DIFF}); not publishing")
  logging.info("Verified: max |native - numpy| = %.3g on %d latent points",
               diff, len(z))
  record = {"source": "TF1 checkpoint mapped into a native decoder",
            "checkpoint": os.path.abspath(source.prefix),
            "decoder": spec.to_dict(), "matched": how, "mapping": assignment,
            "unused_weights": unused_weights,
            "unused_optimizer_state": unused_state}
  return _publish_decoder(decoder, export_dir, version, device_name,
                          f"checkpoint {source.prefix}", record)


def _build_from_meta_graph(source, meta_path, export_dir, version,
                           latent_tensor, output_tensor, output_collection,
                           image_shape, device, allow_unsafe_ops):
  """Graph surgery: see `build_generator`."""
  device_name = resolve_device(device)
  if isinstance(image_shape, str):
    image_shape = parse_image_shape(image_shape)
  report = checkpoints.verify(source)
  meta = MetaGraph(meta_path)
  latent, output = find_ends(meta, latent_tensor, output_tensor,
                             output_collection)
  path = DecodePath(meta, latent, output)
  logging.info("Decode path: %s -> %s, %d ops, %d variables", latent.name,
               output.name, len(path.ops), len(path.variables))
  unsafe = path.unsafe_ops()
  if unsafe:
    listed = ", ".join(f"{op.name} ({op.type})" for op in unsafe)
    if not allow_unsafe_ops:
      raise errors.TfvaeError(
          f"the decode path of meta graph {meta.path} runs ops that touch "
          f"files or run Python: {listed}; refusing (pass --allow_unsafe_ops "
          "if you trust this graph)")
    logging.warning("Building with unsafe ops on the decode path: %s", listed)
  _check_against_checkpoint(meta, report, set(path.variables))
  images = _image_shape(output, image_shape)
  values = checkpoints.read_all(source, path.variables)
  graph_def = path.graph_def()
  resource_ops = {op.name for op in path.ops if op.type == "VarHandleOp"}

  with tf.device(device_name):
    variables = {
        name: tf.Variable(values[name], trainable=False,
                          name=name.replace("/", "_"))
        for name in path.variables}

  def import_decode_path(z):
    input_map = {f"{_LATENT_INPUT}:0": z}
    for name, variable in variables.items():
      input_map[f"{name}:0"] = (tf.identity(variable.handle)
                                if name in resource_ops
                                else variable.read_value())
    out, = tf.graph_util.import_graph_def(
        graph_def, input_map=input_map, return_elements=[output.name],
        name="tf1")
    return out

  try:
    decode_graph = v1.wrap_function(
        import_decode_path,
        [tf.TensorSpec([None, path.latent_size], latent.dtype)])
  except (ValueError, TypeError, tf.errors.OpError) as e:
    raise errors.TfvaeError(
        f"could not rebuild the decode path of meta graph {meta.path}: "
        f"{_first_line(e)}") from e
  module = TF1Generator(decode_graph, list(variables.values()),
                        path.latent_size, images)

  z = rng.verification_latents(path.latent_size)
  expected = _tf1_decode(path, source.prefix, z, device_name)
  expected = np.asarray(expected, np.float32).reshape((len(z),) + images)

  def verify(loaded, saved_path):
    del loaded  # Reloaded without device pins instead.
    loaded = _reload_unpinned(saved_path, export_dir)
    pins = device_pins(saved_path)
    if pins:
      raise errors.TfvaeError(
          f"the SavedModel for {export_dir} pins devices: {pins[0]}")
    with tf.device(device_name):
      got = loaded.signatures["decode"](z=tf.constant(z))["mean"].numpy()
      generated = loaded.signatures["generate"](
          seed=tf.constant([0, 1], tf.int64))["images"]
    if got.shape != expected.shape:
      raise errors.TfvaeError(
          f"the rebuilt decoder gives images of shape {got.shape}, the TF1 "
          f"graph {expected.shape}; not publishing")
    diff = float(np.max(np.abs(got - expected)))
    if not diff <= MAX_ABS_DIFF:
      raise errors.TfvaeError(
          f"the rebuilt decoder differs from the TF1 graph {meta.path} by "
          f"{diff:.3g} (more than {MAX_ABS_DIFF}); not publishing")
    if generated.shape[1:] != images:
      raise errors.TfvaeError(
          f"generate gives images of shape {generated.shape}; not publishing")
    logging.info("Verified: max |TF2 - TF1| = %.3g on %d latent points",
                 diff, len(z))

  return export.publish(
      module, export_dir, version=version,
      signatures={"decode": module.decode, "generate": module.generate},
      verify=verify,
      options=tf.saved_model.SaveOptions(experimental_io_device=None))
