"""A TF1 meta graph, analysed: where its generator starts and ends.

A TF1 user has a checkpoint and, beside it, the `.meta` (the graph, a
program). The generator is the part of that graph between the latent tensor z
(what the sampler `z = mean + exp(log_var / 2) * eps` produces) and the
decoder's output. `MetaGraph` imports the `.meta` into a private graph (never
running it), walks it and reports what it holds; `candidates` proposes and
ranks the generator's ends, and `candidates.find_ends` picks them.
"""
import os

import tensorflow as tf

from tensorflow.core.protobuf import meta_graph_pb2

from tfvae import errors
from tfvae.migrate import candidates
from tfvae.migrate import ops
from tfvae.migrate._messages import first_line

v1 = tf.compat.v1



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
    self._functions = None
    try:
      with self.graph.as_default():
        v1.train.import_meta_graph(self.meta_graph_def, clear_devices=True)
    except Exception as e:  # pylint: disable=broad-except
      raise errors.TfvaeError(
          f"meta graph {path} cannot be imported ({first_line(e)})") from e
    self._forward = None
    self._feeds = None

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
  def descendants(op, within, control=True):
    """Ops reachable forward from `op` inside the op set `within`.

    Args:
      op: A `tf.Operation`.
      within: The ops the walk may enter.
      control: Also follow control edges. Classifying ops follows data edges
        only: TF1 optimizers put their bookkeeping (Adam's `beta1_power`
        `Assign`s) under control dependencies on every weight update, so
        with control edges every op of a trained graph reaches an `Assign`.
    """
    seen = set()
    todo = [op]
    while todo:
      current = todo.pop()
      following = [c for out in current.outputs for c in out.consumers()]
      if control:
        following += current._control_outputs  # pylint: disable=protected-access
      for consumer in following:
        if consumer in within and consumer not in seen:
          seen.add(consumer)
          todo.append(consumer)
    return seen

  def variable_ops(self):
    """The graph's variable ops (TF1 ref variables and resource handles)."""
    return [op for op in self.graph.get_operations()
            if op.type in ops.VARIABLE_OP_TYPES]

  def _forward_ops(self):
    """The ops of the model itself: no gradients, optimizer or Saver ops."""
    if self._forward is None:
      self._forward = {op for op in self.graph.get_operations()
                       if not ops.is_training_machinery(op)}
    return self._forward

  def _parameter_only(self, tensor):
    """True if `tensor` depends on variables and constants alone."""
    for op in self.ancestors([tensor]):
      if op.type == "Placeholder" or op.type in ops.RANDOM_OP_TYPES:
        return False
    return True

  # Inputs decoding may see -------------------------------------------------

  def inference_feeds(self):
    """{placeholder tensor: value} fed to run the graph at inference.

    Boolean switches (`is_training`, plain or `placeholder_with_default`)
    are fed False; a float scalar that sets a dropout's keep probability is
    fed 1.0, one that sets its rate 0.0. Dropout's random op then keeps
    every unit, and decoding is deterministic.
    """
    if self._feeds is not None:
      return self._feeds
    feeds = {}
    forward = self._forward_ops()
    for op in self.graph.get_operations():
      if op.type not in ("Placeholder", "PlaceholderWithDefault"):
        continue
      tensor = op.outputs[0]
      if tensor.shape.rank not in (None, 0):
        continue
      if tensor.dtype == tf.bool:
        feeds[tensor] = False
        continue
      if not tensor.dtype.is_floating:
        continue
      near = self._near(op, forward, hops=3)
      if not any(ops.is_dropout(d) for d in near):
        continue
      keep = (any(c.type == "Sub" and c.inputs[1] is tensor
                  for c in tensor.consumers())
              or "keep" in op.name.lower())
      feeds[tensor] = 1.0 if keep else 0.0
    self._feeds = feeds
    return feeds

  @staticmethod
  def _near(op, within, hops):
    """Ops at most `hops` data edges after `op`."""
    found, frontier = set(), {op}
    for _ in range(hops):
      frontier = {c for o in frontier for t in o.outputs
                  for c in t.consumers() if c in within}
      found |= frontier
    return found

  def free_inputs(self, output, stop=()):
    """Placeholders and random draws `output` needs besides `stop`.

    Placeholders with an inference value (`inference_feeds`) or a default,
    and dropout's random op, are not free: decoding fixes them.
    """
    feeds = self.inference_feeds()
    free = []
    for op in self.ancestors([output], stop=stop):
      if op.type == "Placeholder" and op.outputs[0] not in feeds:
        free.append(op)
      elif op.type in ops.RANDOM_OP_TYPES and not ops.is_dropout(op):
        free.append(op)
    return sorted(free, key=lambda o: o.name)

  def _latent_like(self, tensor):
    return (tensor.dtype.is_floating and tensor.shape.rank == 2
            and tensor not in self.inference_feeds())

  def unsafe_ops(self, operations=None, include_saver=False):
    """The ops that touch files or run Python (a deny list), by name.

    Walks the functions, branches and loop bodies the ops run.

    Args:
      operations: Ops of `graph` to check; None checks every op.
      include_saver: Also list the Saver's own ops under "save/", which never
        run when decoding.

    Returns:
      A list of `ops.Finding`s sorted by name.
    """
    if operations is None:
      operations = self.graph.get_operations()
    operations = [op for op in operations
                  if include_saver or not op.name.startswith(ops.SAVER_SCOPE)]
    return ops.find_ops(operations, self._library(), ops.is_unsafe_type)

  def disallowed_ops(self, operations):
    """The ops a generator may not run (outside `ops.ALLOWED_OP_TYPES`),
    here or in any function, branch or loop body they run: `ops.Finding`s.
    """
    library = self._library()
    return ops.find_ops(
        operations, library,
        lambda op_type, attrs: ops.is_disallowed_type(op_type, attrs,
                                                      library))

  def _library(self):
    if self._functions is None:
      self._functions = ops.function_library(self.graph)
    return self._functions

  def report(self):
    """A JSON-friendly description of the graph's collections and ends."""
    collections = {}
    for key in sorted(self.graph.get_all_collection_keys()):
      items = self.graph.get_collection(key)
      collections[key] = [getattr(i, "name", type(i).__name__) for i in items]
    placeholders = [
        {"name": op.outputs[0].name, "dtype": op.outputs[0].dtype.name,
         "shape": candidates.shape_text(op.outputs[0].shape)}
        for op in self.graph.get_operations() if op.type == "Placeholder"]
    random_ops = [
        {"name": op.name, "type": op.type}
        for op in self.graph.get_operations()
        if op.type in ops.RANDOM_OP_TYPES]
    finder = candidates.Candidates(self)
    outputs = finder.output_candidates()
    pairs = finder.candidate_pairs()
    latents = []
    first = [pairs[0].output] if pairs else [t for t, _ in outputs[:1]]
    for tensor in first:
      latents = [{"name": t.name, "shape": candidates.shape_text(t.shape)}
                 for t in finder.latent_candidates(tensor)]
    saver_ops = [op for op in self.unsafe_ops(include_saver=True)
                 if op.name.startswith(ops.SAVER_SCOPE)]
    return {
        "meta_graph": self.path,
        "collections": collections,
        "placeholders": placeholders,
        "random_ops": random_ops,
        "variables": len(self.variable_ops()),
        "output_candidates": [
            {"name": t.name, "shape": candidates.shape_text(t.shape), "found_by": how}
            for t, how in outputs],
        "latent_candidates": latents,
        "generator_candidates": [c.to_dict() for c in pairs],
        "inference_feeds": {t.name: v
                            for t, v in sorted(self.inference_feeds().items(),
                                               key=lambda i: i[0].name)},
        "unsafe_ops": [{"name": op.name, "type": op.type}
                       for op in self.unsafe_ops()],
        "saver_file_ops": len(saver_ops),
    }
