"""Graph surgery: the decode path cut out of a TF1 graph, run on TF2 variables.

`DecodePath` prunes the graph down to the ops between z and the decoder
output and checks that nothing else feeds them. The pruning happens on the
GraphDef, before the import: only the decode path's ops enter the wrapped
function (its TF1 ref variables turned into placeholders fed from TF2
resource variables holding the checkpoint's values), which gives what
`WrappedFunction.prune(feeds=z, fetches=output)` would, without importing the
training graph's ref-variable, optimizer and file ops into TF2 at all.
`rebuild_generator` does that import and wraps the result as a
`TF1Generator`; `tf1_decode` runs the original graph in a TF1 session, the
reference the rebuilt generator is checked against.
"""
import math

import numpy as np
import tensorflow as tf

from tfvae import errors
from tfvae import export
from tfvae.migrate import ops
from tfvae.migrate._messages import first_line
from tfvae.migrate.candidates import shape_text

v1 = tf.compat.v1

# The name z's placeholder gets in the pruned GraphDef.
_LATENT_INPUT = "tfvae_latent"


def image_shape_of(output, image_shape):
  """The (H, W, C) of the images a TF1 decoder output holds.

  Args:
    output: The decoder output tensor, [B, H, W, C], [B, H, W] or [B, H*W]
      (a flat output is taken for a square single-channel image).
    image_shape: (H, W, C) the user gave, or None to derive it.

  Returns:
    A tuple of three ints.

  Raises:
    errors.TfvaeError: If the shape cannot be derived or does not fit.
  """
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
          f"output {output.name} has shape {shape_text(output.shape)}; "
          "pass --image_shape")
    return image_shape
  size = int(np.prod(pixels))
  if image_shape is not None:
    if int(np.prod(image_shape)) != size:
      raise errors.TfvaeError(
          f"--image_shape={','.join(map(str, image_shape))} does not fit "
          f"output {output.name} of shape {shape_text(output.shape)}")
    return image_shape
  if len(pixels) == 3:
    return tuple(pixels)
  if len(pixels) == 2:
    return (pixels[0], pixels[1], 1)
  side = math.isqrt(size)
  if len(pixels) == 1 and side * side == size:
    return (side, side, 1)
  raise errors.TfvaeError(
      f"output {output.name} of shape {shape_text(output.shape)} is not a "
      "square image; pass --image_shape=H,W,C")


class DecodePath:
  """The ops between z and the output, cut out of a TF1 graph.

  Args:
    meta: The `graph.MetaGraph`.
    latent: z, a [B, latent_size] tensor of `meta.graph`.
    output: The decoder output tensor of `meta.graph`.

  Raises:
    errors.TfvaeError: If z does not cut the output off from every
      placeholder and random op, or is not [batch, latent_size].

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
    self.feeds = {t: v for t, v in meta.inference_feeds().items()
                  if t.op in self.ops}
    for op in sorted(self.ops, key=lambda o: o.name):
      if op.type == "Placeholder" and op.outputs[0] not in self.feeds:
        raise errors.TfvaeError(
            f"output {output.name} also depends on placeholder "
            f"{op.outputs[0].name}, not only on latent tensor {latent.name}; "
            "pick another --latent_tensor or --output_tensor")
      if op.type in ops.RANDOM_OP_TYPES and not ops.is_dropout(op):
        raise errors.TfvaeError(
            f"output {output.name} still depends on random op {op.name} "
            f"when {latent.name} is fed; pick another --latent_tensor")
    if latent.shape.rank != 2:
      raise errors.TfvaeError(
          f"latent tensor {latent.name} has shape {shape_text(latent.shape)}"
          "; it must be [batch, latent_size]")
    self.latent_size = (int(latent.shape[-1]) if latent.shape[-1] is not None
                        else _width_from_weights(latent, self.ops))
    if self.latent_size is None:
      raise errors.TfvaeError(
          f"latent tensor {latent.name} has shape {shape_text(latent.shape)}"
          " and no weight op it feeds tells its width; pass another "
          "--latent_tensor")
    # A sampler drawn with a static shape makes everything after it
    # [batch_size, ...]: the path then decodes in chunks of that size.
    self.batch_size = (int(latent.shape[0]) if latent.shape[0] is not None
                       else None)
    self.variables = sorted(op.name for op in self.ops
                            if op.type in ops.VARIABLE_OP_TYPES)

  def unsafe_ops(self):
    """The path's ops that touch files or run Python, Saver ops included."""
    return self.meta.disallowed_ops(self.ops)

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
        tf.TensorShape([self.batch_size, self.latent_size]).as_proto())
    fed = {t.op: v for t, v in self.feeds.items()}
    for op in sorted(self.ops, key=lambda o: o._id):  # pylint: disable=protected-access
      node = graph_def.node.add()
      node.CopyFrom(op.node_def)
      node.device = ""
      if "_class" in node.attr:
        del node.attr["_class"]
      if op.type in ops.VARIABLE_OP_TYPES:
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
      if op in fed:  # A switch or keep probability: its inference value.
        dtype = op.outputs[0].dtype
        for key in list(node.attr):
          del node.attr[key]
        del node.input[:]
        node.op = "Const"
        node.attr["dtype"].type = dtype.as_datatype_enum
        node.attr["value"].tensor.CopyFrom(
            tf.make_tensor_proto(fed[op], dtype=dtype))
        continue
      for i, name in enumerate(node.input):
        if name in latent_ref:
          node.input[i] = _LATENT_INPUT
    return graph_def


def _width_from_weights(latent, path_ops):
  """The latent width a weight matrix z multiplies tells, or None."""
  for op in latent.consumers():
    if op in path_ops and op.type == "MatMul" and op.inputs[0] is latent:
      dims = op.inputs[1].shape
      if dims.rank == 2 and dims[0] is not None:
        return int(dims[0])
  return None


class TF1Generator(tf.Module):
  """A TF1 decode path running on TF2 resource variables.

  Args:
    decode_graph: `tf.compat.v1.wrap_function` result: z [B, latent_size] ->
      the TF1 output tensor.
    variables: The tf.Variables `decode_graph` reads (tracked so they save).
    latent_size: Width of z.
    image_shape: (H, W, C) of the images.
    batch_size: The static batch `decode_graph` takes, or None for any:
      with one, z is padded to whole chunks of it and decoded chunk by chunk.
    name: Module name.
  """

  def __init__(self, decode_graph, variables, latent_size, image_shape,
               batch_size=None, name=None):
    super().__init__(name=name)
    self.batch_size = batch_size
    self.tf1_variables = list(variables)
    self._decode_graph = decode_graph
    self.latent_size = latent_size
    self.image_shape = tuple(image_shape)
    self.decode, self.generate = export.generator_functions(
        self._decode, latent_size)

  def _decode(self, z):
    """Returns {"mean": float32 [B, H, W, C]}."""
    if self.batch_size is None:
      output = self._decode_graph(z)
    else:
      n = self.batch_size
      count = tf.shape(z)[0]
      chunks = (count + n - 1) // n
      padded = tf.pad(z, [[0, chunks * n - count], [0, 0]])
      outputs = tf.map_fn(
          self._decode_graph, tf.reshape(padded, [chunks, n, -1]),
          fn_output_signature=self._decode_graph.structured_outputs.dtype)
      output = tf.reshape(outputs, tf.concat(
          [[chunks * n], tf.shape(outputs)[2:]], 0))[:count]
    mean = tf.reshape(tf.cast(output, tf.float32), [-1, *self.image_shape])
    return {"mean": mean}


def rebuild_generator(path, values, image_shape, device_name):
  """Imports the decode path into TF2, reading variables holding `values`.

  Args:
    path: The `DecodePath`.
    values: Dict variable name -> array, for every name in `path.variables`.
    image_shape: (H, W, C) the output is reshaped to.
    device_name: Where the variables live.

  Returns:
    A `TF1Generator`.

  Raises:
    errors.TfvaeError: If the pruned graph does not import.
  """
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
        graph_def, input_map=input_map, return_elements=[path.output.name],
        name="tf1")
    return out

  try:
    decode_graph = v1.wrap_function(
        import_decode_path,
        [tf.TensorSpec([path.batch_size, path.latent_size],
                       path.latent.dtype)])
  except (ValueError, TypeError, tf.errors.OpError) as e:
    raise errors.TfvaeError(
        f"could not rebuild the decode path of meta graph {path.meta.path}: "
        f"{first_line(e)}") from e
  return TF1Generator(decode_graph, list(variables.values()),
                      path.latent_size, image_shape, path.batch_size)


def check_against_checkpoint(meta, report, names):
  """Raises if a graph variable is missing from the checkpoint or differs.

  Args:
    meta: The `graph.MetaGraph`.
    report: The checkpoint's `reader.CheckpointReport`.
    names: Names of the variables decoding reads: only these must be saved,
      but every saved one must have the graph's shape.

  Raises:
    errors.TfvaeError: Naming the variable, the graph and the checkpoint.
  """
  saved = {v.name: v for v in report.variables}
  for op in meta.variable_ops():
    if op.name not in saved:
      if op.name in names:
        raise errors.TfvaeError(
            f"variable {op.name} of meta graph {meta.path} is not in "
            f"checkpoint {report.source.prefix}")
      continue
    graph_shape = (tf.TensorShape(op.get_attr("shape"))
                   if op.type == "VarHandleOp" else op.outputs[0].shape)
    if graph_shape.rank is not None and tuple(
        graph_shape.as_list()) != saved[op.name].shape:
      raise errors.TfvaeError(
          f"variable {op.name} has shape {shape_text(graph_shape)} in meta "
          f"graph {meta.path} but {list(saved[op.name].shape)} in checkpoint "
          f"{report.source.prefix}")


def tf1_decode(path, prefix, z, device_name="/CPU:0"):
  """Runs the TF1 graph in a session restored from `prefix`, feeding z.

  This is the reference a rebuilt generator must match: the user's own graph,
  run the way TF1 ran it.

  Switches and keep probabilities get their inference values
  (`path.feeds`); a static-batch path runs on z padded to whole batches.

  Args:
    path: The `DecodePath`.
    prefix: The checkpoint prefix.
    z: float32 [B, latent_size].
    device_name: Where to run it.

  Returns:
    The output tensor's value, [B, ...] as the graph shapes it.

  Raises:
    errors.TfvaeError: If the session fails to restore or decode.
  """
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
        feeds = {t.name: v for t, v in path.feeds.items()}
        if path.batch_size is None:
          return sess.run(path.output.name, {path.latent.name: z, **feeds})
        n = path.batch_size
        chunks = []
        for start in range(0, len(z), n):
          chunk = z[start:start + n]
          padded = np.concatenate(
              [chunk, np.zeros((n - len(chunk),) + chunk.shape[1:],
                               chunk.dtype)])
          chunks.append(sess.run(path.output.name,
                                 {path.latent.name: padded, **feeds})
                        [:len(chunk)])
        return np.concatenate(chunks)
      except tf.errors.OpError as e:
        raise errors.TfvaeError(
            f"the TF1 graph {meta.path} failed to decode with checkpoint "
            f"{prefix}: {first_line(e)}") from e


def _variable_tensor(graph, name):
  # A Saver given the raw op output of a ref variable saves it, but restoring
  # needs the `tf.Variable` when there is one.
  op = graph.get_operation_by_name(name)
  for variable in graph.get_collection(v1.GraphKeys.GLOBAL_VARIABLES):
    if variable.op is op:
      return variable
  return op.outputs[0]


