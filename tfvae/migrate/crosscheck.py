"""Second opinions on a mapping of TF1 checkpoint variables into a decoder.

A mapping that loads the right shapes passes the numpy check whichever
variables it names: an untrained twin of a decoder matrix (same shape, never
read by the graph, so never trained) decodes to something plausible. Two
checks catch that:

  * with the `.meta` beside the checkpoint, `check_against_graph` runs the
    graph's own decode path (found as graph surgery finds it) on the same
    latent points, and refuses a mapped decoder that decodes otherwise,
    naming the first weight the mapping fills from another variable than the
    one the graph reads;
  * without one, `untrained_twins` lists mapped variables that have no
    optimizer slots while a variable of the same shape has them.
"""
from absl import logging
import numpy as np
import tensorflow as tf

from tfvae import errors
from tfvae import rng
from tfvae.migrate import candidates
from tfvae.migrate import graph
from tfvae.migrate import mapping
from tfvae.migrate import ops
from tfvae.migrate import reader
from tfvae.migrate import surgery
from tfvae.migrate._messages import first_line

# Largest |mapped decoder - graph| a mapping may show, per value.
MAX_ABS_DIFF = 1e-5
# Ops a variable's value passes through before a weight op or bias add reads it.
_READ_OP_TYPES = frozenset({"Identity", "ReadVariableOp", "Cast"})
_BIAS_OP_TYPES = frozenset({"Add", "AddV2", "BiasAdd"})


class Skipped(Exception):
  """The graph check cannot run; the message says why."""


def _variable_read(tensor):
  """The name of the variable `tensor` reads directly, or None."""
  op = tensor.op
  while op.type in _READ_OP_TYPES and op.inputs:
    op = op.inputs[0].op
  return op.name if op.type in ops.VARIABLE_OP_TYPES else None


def graph_reads(path):
  """The variables a decode path reads, layer by layer from z.

  A layer is a weight op (its kernel: the variable it reads) and the bias
  addition after it (a variable added to a value that weight op computed).

  Args:
    path: A `surgery.DecodePath`.

  Returns:
    List of (kernel variable, bias variable or None), z upwards, or None when
    the path is not a chain of such layers (two weight ops side by side, a
    weight op reading no variable, two biases for one layer).
  """
  meta = path.meta
  depth = {}
  for op in path.ops:
    if op.type in ops.WEIGHT_OP_TYPES:
      before = meta.ancestors([op.outputs[0]], stop=[path.latent]) & path.ops
      depth[op] = sum(1 for b in before if b.type in ops.WEIGHT_OP_TYPES)
  if len(set(depth.values())) != len(depth):
    return None
  layers = sorted(depth, key=depth.get)
  kernels = []
  for op in layers:
    read = [name for name in map(_variable_read, op.inputs) if name]
    if len(read) != 1:
      return None
    kernels.append(read[0])
  biases = [None] * len(layers)
  for op in path.ops:
    if op.type not in _BIAS_OP_TYPES:
      continue
    read = [name for name in map(_variable_read, op.inputs) if name]
    if len(read) != 1:
      continue
    before = meta.ancestors([op.outputs[0]], stop=[path.latent]) & path.ops
    under = [b for b in before if b in depth]
    if not under:
      continue
    layer = layers.index(max(under, key=depth.get))
    if biases[layer] is not None:
      return None
    biases[layer] = read[0]
  return list(zip(kernels, biases))


def _decode_path(source, report):
  """The graph's decode path, or raises `Skipped` saying why not."""
  try:
    meta = graph.MetaGraph(source.meta_graph)
    latent, output = candidates.find_ends(meta)
    path = surgery.DecodePath(meta, latent, output)
    surgery.check_against_checkpoint(meta, report, set(path.variables))
  except errors.TfvaeError as e:
    raise Skipped(f"its decode path cannot be found automatically "
                  f"({first_line(e)})") from e
  unsafe = path.unsafe_ops()
  if unsafe:
    raise Skipped("its decode path runs ops that touch files or run Python "
                  f"({', '.join(op.name for op in unsafe)})")
  return path


def check_against_graph(source, report, spec, assignment, arrays, decoder,
                        device_name):
  """Refuses a mapped decoder that decodes unlike the graph beside it.

  Args:
    source: The `reader.Source`; `source.meta_graph` is the `.meta`.
    report: Its `reader.CheckpointReport`.
    spec: The `mapping.DecoderSpec`.
    assignment: Dict decoder weight -> checkpoint variable.
    arrays: Dict decoder weight -> the array loaded into it.
    decoder: The native decoder, weights loaded.
    device_name: Where to decode.

  Returns:
    The max |mapped - graph| on the check's latent points.

  Raises:
    Skipped: If the graph's decode path cannot be found, is unsafe to run,
      or does not decode z of the mapped decoder's width to as many values.
    errors.TfvaeError: If the two disagree by more than MAX_ABS_DIFF; names
      the first weight filled from another variable than the graph reads.
  """
  path = _decode_path(source, report)
  if path.latent_size != spec.latent_size:
    raise Skipped(f"its decode path from {path.latent.name} takes z of width "
                  f"{path.latent_size}, the mapped decoder {spec.latent_size}")
  z = rng.verification_latents(spec.latent_size)
  with tf.device(device_name):
    mapped = decoder.outputs(z)["mean"].numpy().reshape((len(z), -1))
  try:
    expected = surgery.tf1_decode(path, source.prefix, z, device_name)
  except errors.TfvaeError as e:
    raise Skipped(first_line(e)) from e
  expected = np.asarray(expected, np.float32).reshape((len(z), -1))
  if expected.shape != mapped.shape:
    raise Skipped(f"its output {path.output.name} holds "
                  f"{expected.shape[1]} values per image, the mapped decoder "
                  f"{mapped.shape[1]}")
  diff = float(np.max(np.abs(mapped - expected)))
  if diff <= MAX_ABS_DIFF:
    logging.info("Verified against the graph: max |mapped - %s| = %.3g on %d "
                 "latent points", path.output.name, diff, len(z))
    return diff
  where = (f"the graph's decode path ({path.latent.name} -> "
           f"{path.output.name} in {path.meta.path})")
  layers = graph_reads(path)
  names = mapping.weight_names(spec)
  if layers is not None and 2 * len(layers) == len(names):
    reads = [name for layer in layers for name in layer]
    values = reader.read_all(source, [n for n in reads if n])
    for i, (slot, read) in enumerate(zip(names, reads)):
      if read is None or assignment[slot] == read:
        continue
      if np.array_equal(np.asarray(arrays[slot]), np.asarray(values[read])):
        continue
      part = "kernel" if slot.endswith("/w") else "bias"
      raise errors.TfvaeError(
          f"mapping puts {assignment[slot]} at decoder layer {i // 2} {part} "
          f"({slot}) but {where} reads {read} there; the mapped decoder "
          f"differs from the graph by {diff:.3g}; not publishing (fix --map "
          "or --map_file)")
  raise errors.TfvaeError(
      f"the mapped decoder differs from {where} by {diff:.3g} (more than "
      f"{MAX_ABS_DIFF}) though it reads the variables the graph reads; check "
      "--network, --activation, --likelihood and the mapping; not publishing")


def untrained_twins(report, assignment):
  """Mapped variables that were never trained while a same-shaped one was.

  A variable an optimizer updated has slots (`Variable_7/Adam`,
  `.../Momentum`, ...); one with none while a variable of its shape has them
  was never trained: most likely an unused twin, not the decoder's weight.

  Args:
    report: The checkpoint's `reader.CheckpointReport`.
    assignment: Dict decoder weight -> checkpoint variable.

  Returns:
    List of one-line warnings, in the decoder's weight order.
  """
  slots = {}
  for v in report.slots():
    if v.slot_of:
      slots.setdefault(v.slot_of, []).append(v.name)
  if not slots:
    return []  # Saved without optimizer state: slots tell nothing.
  shapes = {v.name: v.shape for v in report.variables}
  found = []
  for slot, name in assignment.items():
    if name in slots:
      continue
    twins = sorted(v for v in slots
                   if v in shapes and shapes[v] == shapes[name] and v != name)
    if twins:
      found.append(
          f"{name} (mapped to {slot}) has no optimizer slots, so it was never "
          f"trained, while {', '.join(twins)} of the same shape "
          f"{list(shapes[name])} has ({sorted(slots[twins[0]])[0]}, ...); "
          "check the mapping")
  return found
