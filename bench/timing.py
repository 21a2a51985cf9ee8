"""Measuring contenders side by side: alternating repetitions, medians."""
import dataclasses
import gc
import statistics
import time

import numpy as np
import tensorflow as tf


@dataclasses.dataclass
class Row:
  """One result line: tfvae's figure, the reference's, and tfvae's gain.

  `ratio` is how many times better tfvae is: tfvae / reference for rates
  (higher is better), reference / tfvae for latencies (lower is better).
  """
  name: str
  tfvae: float
  reference: float
  unit: str
  ratio: float
  reference_name: str = ""
  note: str = ""

  @classmethod
  def compare(cls, name, tfvae, reference, unit, reference_name="",
              note="", lower_is_better=False):
    if lower_is_better:
      ratio = reference / tfvae if tfvae > 0 else float("inf")
    else:
      ratio = tfvae / reference if reference > 0 else float("inf")
    return cls(name, float(tfvae), float(reference), unit, float(ratio),
               reference_name, note)

  def to_dict(self):
    return dataclasses.asdict(self)

  def format(self):
    ref = f"{self.reference_name}: " if self.reference_name else ""
    line = (f"{self.name:<44} tfvae {self.tfvae:>11.4g} {self.unit:<10} "
            f"{ref}{self.reference:>11.4g}  x{self.ratio:.2f}")
    return line + (f"  ({self.note})" if self.note else "")


def alternate(contenders, repetitions):
  """Runs each contender once per repetition, in turn; returns medians.

  Args:
    contenders: dict name -> callable() returning one measurement (a float,
      or a tuple of floats).
    repetitions: Rounds; in each, every contender runs once, so that slow
      phases of a shared machine hit all of them alike. The order rotates
      from round to round, so that no contender always runs right after the
      same other one (Keras' `predict`, say, leaves data-pipeline threads
      winding down), and garbage is collected before each measurement, so
      that no contender pays for another's.

  Returns:
    dict name -> median measurement (element-wise for tuples).
  """
  results = {name: [] for name in contenders}
  names = list(contenders)
  for round_index in range(repetitions):
    shift = round_index % len(names)
    for name in names[shift:] + names[:shift]:
      gc.collect()
      results[name].append(contenders[name]())
  medians = {}
  for name, values in results.items():
    if isinstance(values[0], tuple):
      medians[name] = tuple(statistics.median(v) for v in zip(*values))
    else:
      medians[name] = statistics.median(values)
  return medians


def rate(run, count):
  """Calls `run()` (which does `count` units of work); returns units/s."""
  start = time.perf_counter()
  run()
  return count / (time.perf_counter() - start)


def latencies(call, num_calls, percentile=99):
  """Times `num_calls` calls of `call()`; returns (median, the
  `percentile`-th percentile) in ms."""
  times = np.empty(num_calls)
  for i in range(num_calls):
    start = time.perf_counter()
    call()
    times[i] = time.perf_counter() - start
  return (float(np.median(times) * 1e3),
          float(np.percentile(times, percentile) * 1e3))


def matmul_peak(size=2048, calls=5, repetitions=3):
  """This machine's dense float32 matmul rate in GFLOP/s (best median).

  A [size, size] x [size, size] product is 2 * size^3 FLOPs. Each product
  feeds the next (b is scaled by 1 / sqrt(size), which keeps the entries of
  order one), so no product can be hoisted out of the loop or skipped.
  """
  a = tf.random.stateless_normal([size, size], [1, 2])
  b = tf.random.stateless_normal([size, size], [3, 4]) / size**0.5

  @tf.function
  def products(n):
    c = a
    for _ in tf.range(n):
      c = tf.matmul(c, b)
    return c[0, 0]

  products(tf.constant(1)).numpy()
  n = tf.constant(calls)
  runs = alternate({"matmul": lambda: rate(lambda: products(n).numpy(),
                                           calls)}, repetitions)
  return runs["matmul"] * 2 * size**3 / 1e9
