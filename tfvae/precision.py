"""Mixed precision: the dtype the networks compute in.

A run's `--precision` names where the arithmetic happens:

  float32          everything in float32.
  mixed_bfloat16   matmuls, convolutions and hidden activations in bfloat16
                   (about twice float32's speed on CPUs with AVX512_BF16
                   and on recent GPUs); bfloat16 has float32's exponent
                   range, so gradients need no scaling.
  mixed_float16    the same in float16 (GPUs with tensor cores); float16's
                   range is small, so the loss is scaled before
                   differentiation and the step is skipped when a gradient
                   overflows (`loss_scale_optimizer`).

In every precision the variables, the optimizer state, the likelihood's and
the posterior's log-probabilities, the KL and every sum stay float32: a net
is run by `run`, which casts its input to the net's compute dtype and its
output back to float32, and the layers of `nets` compute in the dtype of
their input (casting their float32 variables to it). Only the networks'
insides are low precision.
"""
import tensorflow as tf
import tf_keras

# The --precision values of training and the --dtype values of exports.
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
DTYPES = ("float32", "bfloat16", "float16")


# Largest |got - want| / (1 + |want|) that an export computing in each dtype
# may show against the float32 model on its verification inputs (pixel
# means, logits, posterior parameters, bounds in nats). bfloat16 keeps 8
# bits of mantissa, float16 11: each rounds by up to 2^-9 or 2^-12 of a
# value, compounded over the layers. Measured on a Fashion-MNIST MLP VAE
# (1 epoch): 3.2e-3 (bfloat16) and 4.4e-4 (float16) on the export's warmup
# requests, 1.5e-2 (bfloat16) on the generator's verification latents, whose
# logits are larger.
EXPORT_TOLERANCES = {"float32": 1e-4, "bfloat16": 5e-2, "float16": 1e-2}


def compute_dtype(name):
  """The compute dtype of a precision or dtype name.

  Args:
    name: One of `PRECISIONS` or `DTYPES` ("mixed_bfloat16" or "bfloat16").

  Returns:
    tf.float32, tf.bfloat16 or tf.float16.

  Raises:
    ValueError: For any other name.
  """
  if name not in PRECISIONS and name not in DTYPES:
    raise ValueError(f"unknown precision {name!r}; choose one of "
                     f"{', '.join(PRECISIONS + DTYPES[1:])}")
  return tf.as_dtype(name.removeprefix("mixed_"))


def set_compute_dtype(module, dtype):
  """Makes every network inside `module` compute in `dtype`.

  Sets `compute_dtype` on `module` and each of its submodules; `run` reads
  it from the network it runs. Variables are untouched (they stay float32),
  so a model's checkpoints and exports are the same in any precision.

  Args:
    module: A `tf.Module` (a model, or one of its parts).
    dtype: A float dtype or its name (see `compute_dtype`).

  Returns:
    `module`.
  """
  dtype = compute_dtype(dtype) if isinstance(dtype, str) else tf.as_dtype(
      dtype)
  for m in (module, *module.submodules):
    m.compute_dtype = dtype
  return module


def run(net, inputs):
  """Applies `net` in its compute dtype; returns float32.

  Args:
    net: A network of `nets` (its layers compute in their input's dtype).
    inputs: float32 Tensor, its input.

  Returns:
    net(inputs) computed in `net.compute_dtype` (float32 when unset), as
    float32.
  """
  dtype = getattr(net, "compute_dtype", tf.float32)
  if dtype == tf.float32:
    return net(inputs)
  return tf.cast(net(tf.cast(inputs, dtype)), tf.float32)


def needs_loss_scaling(precision):
  """Whether training in `precision` scales its loss (float16 only)."""
  return compute_dtype(precision) == tf.float16


def loss_scale_optimizer(optimizer, initial_scale=2**15):
  """`optimizer` wrapped in tf_keras' dynamic loss scaling.

  The loss is multiplied by the scale S before differentiation and the
  gradients divided by it (`train_step`), so that small float16 gradients do
  not flush to zero. When any gradient is not finite the step is skipped
  (the weights and slots stay as they were) and S is halved; after 2000
  finite steps in a row S doubles. S starts at `initial_scale`. Its state
  (the scale and the count of good steps) is part of the optimizer's
  checkpoint, so a resumed run continues with the scale the uninterrupted
  one would have.

  Args:
    optimizer: A tf_keras optimizer (e.g. `optimizers.Adam`), created under
      the strategy's scope.
    initial_scale: The first S.

  Returns:
    A `tf_keras.mixed_precision.LossScaleOptimizer`.
  """
  return tf_keras.mixed_precision.LossScaleOptimizer(
      optimizer, initial_scale=initial_scale)


def is_loss_scaled(optimizer):
  """Whether `optimizer` scales the loss (see `loss_scale_optimizer`)."""
  return isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
