"""The reproducibility contract: every random draw tfvae makes, in one place.

Randomness in tfvae is stateless. A draw is a function of integer seeds, never
of a hidden generator's state, so that a resumed run, another replica count,
another process or a reloaded SavedModel draws exactly the same numbers:

  training step s       noise of step s from the seed pair (seed, s), folded
                        with the draw's index within the step (`ExampleNoise`)
  epoch e               the visit order of the training split, a NumPy
                        permutation seeded by `shuffle_seed(seed, e)`
                        (`epoch_order`)
  evaluation batch b    noise from (seed, EVAL_SEED_OFFSET + b)
  static binarisation   fixed seeds per split (`BINARIZATION_SEEDS`), so every
                        run sees the same binarised data
  exported signatures   row i from (seed[i], stream), one stream per use
                        (`PRIOR_STREAM`, `POSTERIOR_STREAM`,
                        `IMPORTANCE_STREAM`), so request batching cannot
                        change a row
  pictures              decoded prior samples from (seed, PICTURE_STREAM)
  verification          fixed latent points (`verification_latents`)

Every TensorFlow draw names its algorithm (`ALG`): the default
("auto_select") lets the device or XLA choose, and then a CPU, a GPU and a
jit-compiled step would draw different noise from the same seed.
"""
import numpy as np
import tensorflow as tf

ALG = "philox"

# Evaluation draws z from (seed, EVAL_SEED_OFFSET + batch index), apart from
# the training steps' seeds (a run has far fewer than 2**20 steps per seed
# before they could meet).
EVAL_SEED_OFFSET = 1 << 20

# Fixed seeds of static binarisation: every run, whatever its --seed, sees the
# same binarised data, so test figures of different runs are comparable.
TRAIN_BINARIZATION_SEED = 1234
TEST_BINARIZATION_SEED = 4321
BINARIZATION_SEEDS = {"train": TRAIN_BINARIZATION_SEED,
                      "test": TEST_BINARIZATION_SEED}

# Streams of the exported signatures' per-example draws.
PRIOR_STREAM = 0
POSTERIOR_STREAM = 1
IMPORTANCE_STREAM = 2
# Stream of the decoded prior samples drawn as pictures of a run.
PICTURE_STREAM = 7

_VERIFICATION_SEED = 1234
_VERIFICATION_SCALE = 1.5


def normal(shape, seed):
  """Standard-Normal noise of `shape` from an int seed pair [2]."""
  return tf.random.stateless_normal(shape, seed, alg=ALG)


def uniform(shape, seed):
  """U(0, 1) noise of `shape` from an int seed pair [2]."""
  return tf.random.stateless_uniform(shape, seed, alg=ALG)


# ----------------------------------------------------------------------------
# Data order and binarisation (NumPy, outside any graph).


def shuffle_seed(seed, epoch):
  """The int64 seed of epoch `epoch`'s order, a function of (seed, epoch)."""
  return (int(seed) * 1_000_003 + int(epoch)) % (2**63)


def epoch_order(seed, epoch, num_examples):
  """The permutation [N] of a split that epoch `epoch` of a run visits.

  It depends on (seed, epoch) only: not on the process, nor on
  `tf.random.set_seed` (which changes what tf.data's own shuffle does).
  """
  return np.random.default_rng(shuffle_seed(seed, epoch)).permutation(
      num_examples)


def binarization_thresholds(seed, shape):
  """uint8 thresholds uniform on 0..254 [shape] of static binarisation."""
  return np.random.default_rng(seed).integers(0, 255, size=shape,
                                              dtype=np.uint8)


def verification_latents(latent_size, count=8):
  """Fixed latent points [count, latent_size] used to compare decoders."""
  return np.random.RandomState(_VERIFICATION_SEED).normal(
      size=(count, latent_size)).astype(np.float32) * _VERIFICATION_SCALE


# ----------------------------------------------------------------------------
# Training and evaluation noise.


def eval_seed(seed, batch_index):
  """int64 [2], the seed pair of evaluation batch `batch_index`."""
  return tf.constant([seed, EVAL_SEED_OFFSET + batch_index], tf.int64)


class ExampleNoise:
  """Stateless noise for the examples of one batch, whatever the replicas.

  Each draw is made for the whole global batch from a seed and sliced to this
  replica's examples, so example i receives the same noise with one replica
  or many (latent widths and images are small next to the step's matmuls).

  Args:
    seed: int Tensor [2], the batch's stateless seed.
    global_batch: Examples in the global batch.
    start: Index of this replica's first example in the global batch.
    local: Examples on this replica.
  """

  def __init__(self, seed, global_batch, start=0, local=None):
    self._seed = tf.cast(seed, tf.int64)
    self._global_batch = global_batch
    self._start = start
    self._local = global_batch if local is None else local
    self._draws = 0

  def _next_seed(self):
    self._draws += 1
    return tf.random.experimental.stateless_fold_in(self._seed, self._draws)

  def _slice(self, noise):
    return noise[self._start:self._start + self._local]

  def normal(self, shape):
    """Standard-Normal noise [local, *shape]."""
    return self._slice(normal([self._global_batch, *shape],
                              self._next_seed()))

  def uniform(self, shape):
    """U(0, 1) noise [local, *shape]."""
    return self._slice(uniform([self._global_batch, *shape],
                               self._next_seed()))


class RecordedNoise:
  """Stands in for `ExampleNoise` and records which draws are made.

  `draws` lists (kind, shape) per call, kind being "normal" or "uniform".
  """

  def __init__(self):
    self.draws = []

  def normal(self, shape):
    self.draws.append(("normal", list(shape)))
    return tf.zeros([1, *shape])

  def uniform(self, shape):
    self.draws.append(("uniform", list(shape)))
    return tf.fill([1, *shape], 0.5)


class ReplayedNoise:
  """Stands in for `ExampleNoise`, handing out tensors drawn beforehand.

  Args:
    drawn: The tensors, in the order `RecordedNoise` recorded the draws.
  """

  def __init__(self, drawn):
    self._drawn = list(drawn)

  def _next(self):
    if not self._drawn:
      raise ValueError("the objective drew more noise than was recorded")
    return self._drawn.pop(0)

  def normal(self, shape):
    del shape
    return self._next()

  def uniform(self, shape):
    del shape
    return self._next()


def importance_noise(seed, batch_index, start, num_samples, batch,
                     latent_size):
  """Standard-Normal noise of importance samples start..start+num_samples-1.

  Sample i of batch b is drawn from the seed pair (seed, b) folded with i,
  so the noise of a sample does not depend on the chunk it is drawn in.

  Args:
    seed: int64 scalar Tensor (or int), the evaluation's seed.
    batch_index: int64 scalar Tensor, the index b of the batch.
    start: int32 scalar Tensor, the index of the chunk's first sample.
    num_samples: int32 scalar Tensor, c, the samples in the chunk.
    batch: int32 scalar Tensor, B.
    latent_size: int, D.

  Returns:
    float32 [c, B, D].
  """
  base = tf.stack([tf.cast(seed, tf.int64), tf.cast(batch_index, tf.int64)])

  def one(i):
    return normal([batch, latent_size],
                  tf.random.experimental.stateless_fold_in(
                      base, tf.cast(i, tf.int64)))

  return tf.map_fn(one, tf.range(start, start + num_samples),
                   fn_output_signature=tf.TensorSpec([None, latent_size],
                                                     tf.float32))


def export_seed(seed, batch_index, start):
  """An int64 seed for one call of an export's random signature."""
  return (int(seed) * 1_000_003 + int(batch_index) * 10_007 + int(start)) % (
      2**63)


# ----------------------------------------------------------------------------
# Draws inside exported signatures: row i depends on seed[i] alone.


def per_example_normal(seed, shape, stream=0):
  """Draws standard-Normal noise of `shape` for each seed entry, statelessly.

  Entry i of the result depends on (seed[i], stream) alone, never on the rest
  of the batch, so TF Serving's request batching cannot change it.

  Args:
    seed: int64 Tensor [N].
    shape: The shape of one draw (a list of ints).
    stream: An int telling apart the draws of different uses of one seed.

  Returns:
    float32 Tensor [N, *shape]; row i is
    `tf.random.stateless_normal(shape, seed=[seed[i], stream], alg="philox")`.
  """
  seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
  stream = tf.constant(stream, tf.int64)

  def one(s):
    return normal(shape, tf.stack([s, stream]))

  return tf.map_fn(one, seed, fn_output_signature=tf.TensorSpec(
      shape, tf.float32))


def prior_latents(seed, latent_size):
  """Draws one standard-Normal latent point per seed, statelessly.

  Args:
    seed: int64 Tensor [N]; entry i determines row i alone, so the same seed
      gives the same point in any batch, process or reloaded SavedModel.
    latent_size: Width of z.

  Returns:
    float32 Tensor [N, latent_size].
  """
  return per_example_normal(seed, [latent_size], PRIOR_STREAM)


def batch_importance_noise(seed, num_samples, batch, latent_size):
  """eps [num_samples, batch, latent_size] of the `log_importance_weights`
  signature, from (seed, IMPORTANCE_STREAM)."""
  return normal([num_samples, batch, latent_size],
                tf.stack([tf.cast(seed, tf.int64),
                          tf.constant(IMPORTANCE_STREAM, tf.int64)]))


def picture_latents(seed, num, latent_size):
  """Prior samples [num, latent_size] drawn as a run's sample pictures."""
  return normal([num, latent_size], [seed, PICTURE_STREAM])
