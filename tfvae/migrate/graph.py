"""A TF1 meta graph, analysed: where its generator starts and ends.

A TF1 user has a checkpoint and, beside it, the `.meta` (the graph, a
program). The generator is the part of that graph between the latent tensor z
(what the sampler `z = mean + exp(log_var / 2) * eps` produces) and the
decoder's output. `MetaGraph` imports the `.meta` into a private graph (never
running it), walks it, proposes candidates for both ends and reports what it
holds; `find_ends` picks the two tensors, from the user's flags or unaided.
"""
import os

import tensorflow as tf

from tensorflow.core.protobuf import meta_graph_pb2

from tfvae import errors
from tfvae.migrate import ops
from tfvae.migrate._messages import first_line

v1 = tf.compat.v1

_STANDARD_COLLECTIONS = frozenset({
    "variables", "trainable_variables", "train_op", "summaries",
    "queue_runners", "update_ops", "losses", "local_variables",
    "global_step", "model_variables", "cond_context", "while_context",
    "savers", "regularization_losses", "saveable_objects",
})


class MetaGraph:
  """A TF1 `.meta` imported into a private `tf.Graph` for analysis.

  Args:
    path: The `.meta` file.

  Attributes:
    path: The `.meta` file.
    meta_graph_def: Its parsed `MetaGraphDef`.
    graph: The `tf.Graph` it was imported into (devices cleared).

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
          f"meta graph {path} is not a MetaGraphDef ({first_line(e)})") from e
    self.graph = tf.Graph()
    try:
      with self.graph.as_default():
        v1.train.import_meta_graph(self.meta_graph_def, clear_devices=True)
    except Exception as e:  # pylint: disable=broad-except
      raise errors.TfvaeError(
          f"meta graph {path} cannot be imported ({first_line(e)})") from e

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
      if op.type in ops.VARIABLE_OP_TYPES:
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
    """The graph's variable ops (TF1 ref variables and resource handles)."""
    return [op for op in self.graph.get_operations()
            if op.type in ops.VARIABLE_OP_TYPES]

  def _parameter_only(self, tensor):
    """True if `tensor` depends on variables and constants alone."""
    for op in self.ancestors([tensor]):
      if op.type == "Placeholder" or op.type in ops.RANDOM_OP_TYPES:
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
      if (op.type not in ops.RANDOM_OP_TYPES
          or op.name.startswith(ops.SAVER_SCOPE)):
        continue
      downstream = self.descendants(op, everything)
      if any(d.type in ops.VARIABLE_OP_TYPES or d.type.startswith("Assign")
             for d in downstream):
        continue
      if any(d.type in ops.WEIGHT_OP_TYPES for d in downstream):
        samplers.append(op)
    return samplers

  def head_outputs(self):
    """Decoder outputs found from the sampler: after its last weight op.

    Follows bias additions and activations after the last weight op
    downstream of a sampler; gradient ops are ignored.
    """
    forward = {op for op in self.graph.get_operations()
               if not op.name.startswith(("gradients", ops.SAVER_SCOPE))}
    outputs = []
    for sampler in self.sampler_ops():
      reach = self.descendants(sampler, forward)
      weights = [op for op in reach if op.type in ops.WEIGHT_OP_TYPES]
      last = [w for w in weights
              if not any(d.type in ops.WEIGHT_OP_TYPES
                         for d in self.descendants(w, reach))]
      for op in last:
        tensor = op.outputs[0]
        while True:
          following = []
          for consumer in tensor.consumers():
            if (consumer not in reach
                or consumer.type not in ops.HEAD_OP_TYPES):
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
    for sampler in (op for op in upstream if op.type in ops.RANDOM_OP_TYPES):
      reach = self.descendants(sampler, upstream) | {sampler}
      for op in reach:
        if op.type not in ops.WEIGHT_OP_TYPES:
          continue
        for index in ops.WEIGHT_OP_TYPES[op.type]:
          if index >= len(op.inputs):
            continue
          tensor = op.inputs[index]
          if tensor.op not in reach:
            continue
          before = self.ancestors([tensor]) & reach
          if any(b.type in ops.WEIGHT_OP_TYPES for b in before):
            continue
          if tensor not in found:
            found.append(tensor)
    return found

  # Reports ---------------------------------------------------------------

  def unsafe_ops(self, operations=None, include_saver=False):
    """The ops among `operations` that touch files or run Python, by name.

    Args:
      operations: Ops of `graph` to check; None checks every op.
      include_saver: Also list the Saver's own ops under "save/", which never
        run when decoding.

    Returns:
      A list of `tf.Operation`s sorted by name.
    """
    if operations is None:
      operations = self.graph.get_operations()
    return sorted(
        (op for op in operations if ops.is_unsafe(op)
         and (include_saver or not op.name.startswith(ops.SAVER_SCOPE))),
        key=lambda op: op.name)

  def report(self):
    """A JSON-friendly description of the graph's collections and ends."""
    collections = {}
    for key in sorted(self.graph.get_all_collection_keys()):
      items = self.graph.get_collection(key)
      collections[key] = [getattr(i, "name", type(i).__name__) for i in items]
    placeholders = [
        {"name": op.outputs[0].name, "dtype": op.outputs[0].dtype.name,
         "shape": shape_text(op.outputs[0].shape)}
        for op in self.graph.get_operations() if op.type == "Placeholder"]
    random_ops = [
        {"name": op.name, "type": op.type}
        for op in self.graph.get_operations()
        if op.type in ops.RANDOM_OP_TYPES]
    outputs = self.output_candidates()
    latents = []
    for tensor, _ in outputs[:1]:
      latents = [{"name": t.name, "shape": shape_text(t.shape)}
                 for t in self.latent_candidates(tensor)]
    saver_ops = [op for op in self.unsafe_ops(include_saver=True)
                 if op.name.startswith(ops.SAVER_SCOPE)]
    return {
        "meta_graph": self.path,
        "collections": collections,
        "placeholders": placeholders,
        "random_ops": random_ops,
        "variables": len(self.variable_ops()),
        "output_candidates": [
            {"name": t.name, "shape": shape_text(t.shape), "found_by": how}
            for t, how in outputs],
        "latent_candidates": latents,
        "unsafe_ops": [{"name": op.name, "type": op.type}
                       for op in self.unsafe_ops()],
        "saver_file_ops": len(saver_ops),
    }


def shape_text(shape):
  """Writes a `tf.TensorShape` as "[None, 784]" (or "unknown")."""
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
