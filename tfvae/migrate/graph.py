"""A TF1 meta graph, analysed: where its generator starts and ends.

A TF1 user has a checkpoint and, beside it, the `.meta` (the graph, a
program). The generator is the part of that graph between the latent tensor z
(what the sampler `z = mean + exp(log_var / 2) * eps` produces) and the
decoder's output. `MetaGraph` imports the `.meta` into a private graph (never
running it), walks it, proposes candidates for both ends and reports what it
holds; `find_ends` picks the two tensors, from the user's flags or unaided.
"""
import dataclasses
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


@dataclasses.dataclass(frozen=True)
class Candidate:
  """A (latent, output) pair the generator could be cut out between.

  Attributes:
    latent: z, a tensor of the graph.
    output: The decoder output tensor.
    tier: 0 when z is a placeholder (a generation path, no random op), 1
      when it is what a sampler produces.
    found_by: How the output was found.
    rank: The output's place among the output candidates.
  """
  latent: tf.Tensor
  output: tf.Tensor
  tier: int
  found_by: str
  rank: int = 0

  @property
  def flags(self):
    """The flags that pick this pair."""
    return (f"--latent_tensor={self.latent.name} "
            f"--output_tensor={self.output.name}")

  def describe(self):
    """One line: output, latent, shapes, how found, the flags."""
    kind = "latent placeholder" if self.tier == 0 else "sampler's z"
    return (f"{self.output.name} {shape_text(self.output.shape)} from "
            f"{self.latent.name} {shape_text(self.latent.shape)} ({kind}; "
            f"output {self.found_by}): {self.flags}")

  def to_dict(self):
    return {"latent": self.latent.name,
            "latent_shape": shape_text(self.latent.shape),
            "output": self.output.name,
            "output_shape": shape_text(self.output.shape),
            "latent_kind": ("latent placeholder" if self.tier == 0
                            else "sampler"),
            "found_by": self.found_by, "flags": self.flags}


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
    """Random ops whose values reach a weight op: the latent samplers.

    Initializers (whose values only reach an `Assign`), dropout masks and
    the gradient and optimizer ops are left out; only data edges count.
    """
    forward = self._forward_ops()
    samplers = []
    for op in self.graph.get_operations():
      if (op.type not in ops.RANDOM_OP_TYPES or op not in forward
          or ops.is_dropout(op)):
        continue
      downstream = self.descendants(op, forward, control=False)
      if any(d.type in ops.WEIGHT_OP_TYPES for d in downstream):
        samplers.append(op)
    return samplers

  def latent_placeholders(self):
    """[B, k] float placeholders that feed a decoder no sampler reaches.

    A generation path (`z = tf.placeholder(...)` through the decoder built
    again with `reuse=True`); the encoder's input reaches the sampler's
    path and is not one.
    """
    forward = self._forward_ops()
    sampled = set()
    for sampler in self.sampler_ops():
      sampled |= self.descendants(sampler, forward, control=False)
    found = []
    for op in self.graph.get_operations():
      if op.type != "Placeholder" or not self._latent_like(op.outputs[0]):
        continue
      reach = self.descendants(op, forward, control=False)
      if reach & sampled:
        continue
      if any(d.type in ops.WEIGHT_OP_TYPES for d in reach):
        found.append(op)
    return found

  def head_outputs(self):
    """Decoder outputs: what follows the last weight op after each source.

    The sources are the samplers and latent placeholders. Follows bias
    additions, activations and identities after the last weight op; the
    gradient and optimizer ops are ignored.
    """
    forward = self._forward_ops()
    outputs = []
    for source in self.sampler_ops() + self.latent_placeholders():
      reach = self.descendants(source, forward, control=False)
      weights = [op for op in reach if op.type in ops.WEIGHT_OP_TYPES]
      last = [w for w in weights
              if not any(d.type in ops.WEIGHT_OP_TYPES
                         for d in self.descendants(w, reach, control=False))]
      for op in sorted(last, key=lambda o: o.name):
        tensor = self._follow_head(op.outputs[0], reach)
        if tensor not in outputs:
          outputs.append(tensor)
    return outputs

  def _follow_head(self, tensor, reach):
    """Follows a weight op's output through its bias and activation.

    Up to the activation, bias additions, identities and activations are
    followed (an activation preferred where the value fans out, as logits
    feeding both the output and the loss do); after a squashing activation
    only identities are, so a loss's `1e-10 + output` is not taken for it.
    """
    squashed = False
    while True:
      following = []
      for consumer in tensor.consumers():
        if consumer not in reach or consumer.type not in ops.HEAD_OP_TYPES:
          continue
        if squashed and consumer.type != "Identity":
          continue
        others = [t for t in consumer.inputs if t is not tensor]
        if all(self._parameter_only(t) for t in others):
          following.append(consumer)
      if len(following) > 1:
        following = [c for c in following
                     if c.type in ops.ACTIVATION_OP_TYPES]
      if len(following) != 1:
        return tensor
      squashed = squashed or following[0].type in ops.ACTIVATION_OP_TYPES
      tensor = following[0].outputs[0]

  def output_candidates(self):
    """Candidate decoder outputs, best first, as (tensor, how found)."""
    found = [(t, f"collection '{k}'")
             for k, t in sorted(self.collection_outputs().items())]
    for tensor in self.head_outputs():
      if all(tensor is not t for t, _ in found):
        found.append((tensor, "after the decoder's last weight op"))
    return found

  def latent_candidates(self, output):
    """Tensors that feed `output` in place of every free input, best first.

    A latent placeholder that is `output`'s only free input comes first;
    then the tensors entering the first weight op after a sampler, where
    feeding them cuts `output` off from every placeholder and random draw.

    Args:
      output: The decoder output tensor.

    Returns:
      List of tensors (usually one).
    """
    return [t for t, _ in self._latents(output)]

  def _latents(self, output):
    """[(tensor, tier)]: tier 0 a latent placeholder, 1 a sampler's z."""
    upstream = self.ancestors([output])
    found = []
    for op in sorted(upstream, key=lambda o: o.name):
      if op.type == "Placeholder" and self._latent_like(op.outputs[0]):
        if not self.free_inputs(output, stop=[op.outputs[0]]):
          found.append((op.outputs[0], 0))
    for sampler in sorted(upstream, key=lambda o: o.name):
      if (sampler.type not in ops.RANDOM_OP_TYPES
          or ops.is_dropout(sampler)):
        continue
      reach = self.descendants(sampler, upstream) | {sampler}
      for op in sorted(reach, key=lambda o: o.name):
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
          if all(tensor is not t for t, _ in found):
            if not self.free_inputs(output, stop=[tensor]):
              found.append((tensor, 1))
    return found

  def candidate_pairs(self):
    """Every (latent, output) pair that cuts a generator out, best first.

    Returns:
      List of `Candidate`s: paths fed by a latent placeholder (no random op
      needed) before sampler paths, collection outputs before found ones.
    """
    pairs = []
    for rank, (output, how) in enumerate(self.output_candidates()):
      for latent, tier in self._latents(output):
        pairs.append(Candidate(latent, output, tier, how, rank))
    return sorted(pairs, key=lambda c: (c.tier, c.rank))

  # Reports ---------------------------------------------------------------

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
         "shape": shape_text(op.outputs[0].shape)}
        for op in self.graph.get_operations() if op.type == "Placeholder"]
    random_ops = [
        {"name": op.name, "type": op.type}
        for op in self.graph.get_operations()
        if op.type in ops.RANDOM_OP_TYPES]
    outputs = self.output_candidates()
    pairs = self.candidate_pairs()
    latents = []
    first = [pairs[0].output] if pairs else [t for t, _ in outputs[:1]]
    for tensor in first:
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
        "generator_candidates": [c.to_dict() for c in pairs],
        "inference_feeds": {t.name: v
                            for t, v in sorted(self.inference_feeds().items(),
                                               key=lambda i: i[0].name)},
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


def _listing(pairs):
  return "; ".join(f"({i}) {c.describe()}" for i, c in enumerate(pairs, 1))


def _pick_pair(meta):
  """The generator's ends in a graph the user named nothing of."""
  pairs = meta.candidate_pairs()
  for tier in (0, 1):
    tiered = [c for c in pairs if c.tier == tier]
    outputs = {id(c.output) for c in tiered}
    if tier == 1:
      collected = meta.collection_outputs()
      if len(collected) == 1:
        output = next(iter(collected.values()))
        chosen = [c for c in tiered if c.output is output]
        if len(chosen) == 1:
          return chosen[0]
        if not chosen:
          latent = _choose(meta.latent_candidates(output), "latent tensor",
                           "--latent_tensor")
          return Candidate(latent, output, 1, "collection")
    if len(tiered) == 1:
      return tiered[0]
    if len(outputs) > 1 or len(tiered) > 1:
      what = ("decoder output" if len(outputs) > 1 else "latent tensor")
      raise errors.TfvaeError(
          f"several {what} candidates: {_listing(tiered)}; pick one pair "
          "with its flags")
  outputs = meta.output_candidates()
  if outputs:
    named = ", ".join(f"{t.name} {shape_text(t.shape)}" for t, _ in outputs)
    raise errors.TfvaeError(
        f"no latent tensor cuts any decoder output candidate ({named}) off "
        "from the graph's placeholders and random ops; pass --latent_tensor "
        "and --output_tensor (tfvae-inspect lists placeholders and random "
        "ops)")
  raise errors.TfvaeError(
      "no decoder output found automatically (no sampler or latent "
      "placeholder reaches a weight op); pass --output_tensor and "
      "--latent_tensor")


def find_ends(meta, latent_tensor=None, output_tensor=None,
              output_collection=None):
  """Picks the generator's input (z) and output tensors.

  Unaided, a path fed by a latent placeholder (a generation path, no random
  op) is preferred; then the output a lone collection holds; then the one
  sampler path. Anything else is ambiguous, and the error lists every
  candidate pair, best first, with the flags that pick it.

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
  elif latent_tensor:
    latent = meta.tensor(latent_tensor, "--latent_tensor")
    outputs = [c.output for c in meta.candidate_pairs() if c.latent is latent]
    if not outputs:
      outputs = [t for t, _ in meta.output_candidates()
                 if latent.op in meta.ancestors([t])]
    unique = []
    for t in outputs:
      if all(t is not u for u in unique):
        unique.append(t)
    return latent, _choose(unique, "decoder output", "--output_tensor")
  else:
    chosen = _pick_pair(meta)
    return chosen.latent, chosen.output
  if latent_tensor:
    latent = meta.tensor(latent_tensor, "--latent_tensor")
  else:
    found = meta._latents(output)  # pylint: disable=protected-access
    best = [t for t, tier in found if tier == min(k for _, k in found)] if (
        found) else []
    latent = _choose(best, "latent tensor", "--latent_tensor")
  return latent, output
