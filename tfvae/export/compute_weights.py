"""Weights held in an export's compute dtype, beside the float32 model's.

A model computing in bfloat16 or float16 (`precision.set_compute_dtype`)
keeps float32 variables and casts each of them to the compute dtype in every
call: for a generator of an MLP's size the casts cost about what the low
precision matmuls save. An export computing in such a dtype therefore runs
its signatures on `lowered_copy(model, dtype)`: a copy of the model whose
networks (the modules that `precision.run` runs, each `.net`) hold
non-trainable variables of the compute dtype, made once at export time, so
that the layers' casts (`tf.cast` of a variable to its own dtype) are no
ops. Every other variable (a prior's, a likelihood's, a label embedding's)
is shared with the model, not copied. The SavedModel keeps the float32
model's variables where a float32 export has them; the low-precision copies
are extra objects (`COMPUTE_WEIGHTS`), read by the signatures alone.
"""
import copy

import tensorflow as tf

from tfvae import precision

# The attribute of an exported module that tracks the compute-dtype weights.
COMPUTE_WEIGHTS = "compute_weights"


def _networks(model):
  """The networks `precision.run` runs inside `model` (each module's .net)."""
  found = []
  for module in (model, *model.submodules):
    net = getattr(module, "net", None)
    if isinstance(net, tf.Module) and all(net is not n for n in found):
      found.append(net)
  return found


def lowered_copy(model, dtype):
  """A copy of `model` computing in `dtype` with its networks' weights in it.

  Args:
    model: A tfvae model (or a decoder): a `tf.Module` whose networks are
      its submodules' `.net` attributes, run through `precision.run`.
    dtype: The compute dtype, a float dtype or its name (`precision.DTYPES`).

  Returns:
    (copy, weights): `copy` computes like `model` after
    `precision.set_compute_dtype(model, dtype)`, but reads `weights`, the
    list of new non-trainable variables holding its networks' float32
    variables cast to `dtype` (named after them); variables outside the
    networks are `model`'s own. `model` itself is left untouched. For
    float32, (`model`, []).
  """
  dtype = (precision.compute_dtype(dtype) if isinstance(dtype, str)
           else tf.as_dtype(dtype))
  if dtype == tf.float32:
    return model, []
  lowered = {}
  for net in _networks(model):
    for variable in net.variables:
      if variable.dtype == tf.float32 and id(variable) not in lowered:
        lowered[id(variable)] = tf.Variable(
            tf.cast(variable, dtype), trainable=False,
            name=variable.name.split(":")[0].replace("/", "_") + "_"
            + dtype.name)
  # deepcopy's memo: the networks' variables become their low-precision
  # twins, every other variable stays the model's own object.
  memo = {id(v): v for v in model.variables}
  memo.update((key, twin) for key, twin in lowered.items())
  twin = copy.deepcopy(model, memo)
  precision.set_compute_dtype(twin, dtype)
  return twin, list(lowered.values())
