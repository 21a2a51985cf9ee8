"""Candidates for a TF1 generator's two ends, found in a `graph.MetaGraph`.

The generator is the part of a TF1 graph between the latent tensor z and the
decoder's output. `Candidates` proposes outputs (a collection's, or the head
after the last weight op), the latents each could be cut at (a latent
placeholder of a generation path, or what a sampler produces), and ranks the
(latent, output) pairs; `find_ends` picks the two tensors, from the user's
flags or unaided, and names the flags to pick each pair when it cannot.
"""
import dataclasses

import tensorflow as tf

from tfvae import errors
from tfvae.migrate import ops

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


class Candidates:
  """Finds the candidate ends of a generator in a meta graph.

  Args:
    meta: A `graph.MetaGraph`.
  """

  def __init__(self, meta):
    self.meta = meta

  # Finding the generator's ends --------------------------------------------

  def collection_outputs(self):
    """{collection: tensor} for collections holding exactly one tensor."""
    found = {}
    for key in self.meta.graph.get_all_collection_keys():
      if key in _STANDARD_COLLECTIONS:
        continue
      items = self.meta.graph.get_collection(key)
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
    forward = self.meta._forward_ops()
    samplers = []
    for op in self.meta.graph.get_operations():
      if (op.type not in ops.RANDOM_OP_TYPES or op not in forward
          or ops.is_dropout(op)):
        continue
      downstream = self.meta.descendants(op, forward, control=False)
      if any(d.type in ops.WEIGHT_OP_TYPES for d in downstream):
        samplers.append(op)
    return samplers

  def latent_placeholders(self):
    """[B, k] float placeholders that feed a decoder no sampler reaches.

    A generation path (`z = tf.placeholder(...)` through the decoder built
    again with `reuse=True`); the encoder's input reaches the sampler's
    path and is not one.
    """
    forward = self.meta._forward_ops()
    sampled = set()
    for sampler in self.sampler_ops():
      sampled |= self.meta.descendants(sampler, forward, control=False)
    found = []
    for op in self.meta.graph.get_operations():
      if op.type != "Placeholder" or not self.meta._latent_like(op.outputs[0]):
        continue
      reach = self.meta.descendants(op, forward, control=False)
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
    forward = self.meta._forward_ops()
    outputs = []
    for source in self.sampler_ops() + self.latent_placeholders():
      reach = self.meta.descendants(source, forward, control=False)
      weights = [op for op in reach if op.type in ops.WEIGHT_OP_TYPES]
      last = [w for w in weights
              if not any(d.type in ops.WEIGHT_OP_TYPES
                         for d in self.meta.descendants(w, reach, control=False))]
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
        if all(self.meta._parameter_only(t) for t in others):
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
    upstream = self.meta.ancestors([output])
    found = []
    for op in sorted(upstream, key=lambda o: o.name):
      if op.type == "Placeholder" and self.meta._latent_like(op.outputs[0]):
        if not self.meta.free_inputs(output, stop=[op.outputs[0]]):
          found.append((op.outputs[0], 0))
    for sampler in sorted(upstream, key=lambda o: o.name):
      if (sampler.type not in ops.RANDOM_OP_TYPES
          or ops.is_dropout(sampler)):
        continue
      reach = self.meta.descendants(sampler, upstream) | {sampler}
      for op in sorted(reach, key=lambda o: o.name):
        if op.type not in ops.WEIGHT_OP_TYPES:
          continue
        for index in ops.WEIGHT_OP_TYPES[op.type]:
          if index >= len(op.inputs):
            continue
          tensor = op.inputs[index]
          if tensor.op not in reach:
            continue
          before = self.meta.ancestors([tensor]) & reach
          if any(b.type in ops.WEIGHT_OP_TYPES for b in before):
            continue
          if all(tensor is not t for t, _ in found):
            if not self.meta.free_inputs(output, stop=[tensor]):
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
  finder = Candidates(meta)
  pairs = finder.candidate_pairs()
  for tier in (0, 1):
    tiered = [c for c in pairs if c.tier == tier]
    outputs = {id(c.output) for c in tiered}
    if tier == 1:
      collected = finder.collection_outputs()
      if len(collected) == 1:
        output = next(iter(collected.values()))
        chosen = [c for c in tiered if c.output is output]
        if len(chosen) == 1:
          return chosen[0]
        if not chosen:
          latent = _choose(finder.latent_candidates(output), "latent tensor",
                           "--latent_tensor")
          return Candidate(latent, output, 1, "collection")
    if len(tiered) == 1:
      return tiered[0]
    if len(outputs) > 1 or len(tiered) > 1:
      what = ("decoder output" if len(outputs) > 1 else "latent tensor")
      raise errors.TfvaeError(
          f"several {what} candidates: {_listing(tiered)}; pick one pair "
          "with its flags")
  outputs = finder.output_candidates()
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
  finder = Candidates(meta)
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
    outputs = [c.output for c in finder.candidate_pairs() if c.latent is latent]
    if not outputs:
      outputs = [t for t, _ in finder.output_candidates()
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
    found = finder._latents(output)  # pylint: disable=protected-access
    best = [t for t, tier in found if tier == min(k for _, k in found)] if (
        found) else []
    latent = _choose(best, "latent tensor", "--latent_tensor")
  return latent, output
