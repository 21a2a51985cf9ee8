r"""Measures one-worker step times and gradient sizes; prints the scaling table.

  python scripts/measure_scaling.py --networks=mlp,conv \
      --per_worker_batches=32,128,512

For each network and per-worker batch b it times training steps of a single
process (the fastest of --repeats calls) (default strategy, real Fashion-MNIST), counts the bytes the
all-reduce moves per step (the float32 gradients of every trainable
variable), and predicts the multi-worker step time with a ring all-reduce:

  T(n) = T_1(b) + 2 (n - 1) / n * S / bandwidth + 2 (n - 1) * latency

(each worker sends and receives 2 (n - 1) / n of the S gradient bytes, in
2 (n - 1) messages; tf_keras all-reduces after the backward pass, so nothing
overlaps: an upper bound). Efficiency is T_1(b) / T(n): weak scaling, each
worker keeping its per-worker batch b, the global batch n * b.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

flags.DEFINE_list("networks", ["mlp", "conv"], "Networks to measure.")
flags.DEFINE_list("per_worker_batches", ["32", "128", "512"],
                  "Per-worker batch sizes to time.")
flags.DEFINE_list("workers", ["2", "4", "8"], "Worker counts to predict.")
flags.DEFINE_list("gbits", ["10", "100"], "Network bandwidths, Gbit/s.")
flags.DEFINE_float("latency_us", 50.0,
                   "One-way latency of one all-reduce message, microseconds.")
flags.DEFINE_integer("steps", 10, "Steps per timed call (after a warm-up "
                     "call of the same length).")
flags.DEFINE_integer("repeats", 7, "Timed calls; the fastest one counts.")
FLAGS = flags.FLAGS


def _time_steps(config, dataset, steps):
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfvae import input_pipeline  # pylint: disable=g-import-not-at-top
  from tfvae import launch  # pylint: disable=g-import-not-at-top
  trainer = launch.build_trainer(config, "/nonexistent", dataset,
                                 tf.distribute.get_strategy())
  split = trainer.train_split
  batches = input_pipeline.train_dataset(split, config.batch_size, 0,
                                         0).repeat()
  iterator = iter(trainer.strategy.experimental_distribute_dataset(batches))
  train_step = trainer.train_step
  train_step.steps_from_iterator(iterator, tf.constant(steps))
  # The fastest of several calls: other processes on the machine only ever
  # slow a call down.
  seconds = float("inf")
  for _ in range(FLAGS.repeats):
    start = time.perf_counter()
    train_step.steps_from_iterator(iterator, tf.constant(steps)).numpy()
    seconds = min(seconds, (time.perf_counter() - start) / steps)
  grad_bytes = sum(int(np.prod(v.shape)) * v.dtype.size
                   for v in trainer.model.trainable_variables)
  return seconds, grad_bytes


def main(argv):
  del argv
  from tfvae import config as config_lib  # pylint: disable=g-import-not-at-top
  from tfvae import data  # pylint: disable=g-import-not-at-top
  dataset = data.load("fashion_mnist")
  dataset = data.Dataset(
      name=dataset.name, train=data.Split(dataset.train.images[:8192],
                                          dataset.train.labels[:8192]),
      test=dataset.test, class_names=dataset.class_names,
      source=dataset.source)
  workers = [int(n) for n in FLAGS.workers]
  gbits = [float(g) for g in FLAGS.gbits]
  latency = FLAGS.latency_us * 1e-6
  print(f"| network | params (MB of gradients) | per-worker batch | "
        f"T_1 ms | " + " | ".join(
            f"{n} workers @ {g:g} Gb/s: ms (eff.)" for g in gbits
            for n in workers) + " |")
  print("|" + "---|" * (4 + len(gbits) * len(workers)))
  for network in FLAGS.networks:
    for batch in (int(b) for b in FLAGS.per_worker_batches):
      config = config_lib.Config(
          network=network, batch_size=batch, image_shape=(28, 28, 1),
          hidden_sizes=(512,), latent_dim=2)
      seconds, grad_bytes = _time_steps(config, dataset, FLAGS.steps)
      cells = []
      for g in gbits:
        for n in workers:
          comm = 2 * (n - 1) / n * grad_bytes * 8 / (g * 1e9) + \
              2 * (n - 1) * latency
          total = seconds + comm
          cells.append(f"{total * 1e3:.2f} ({seconds / total:.0%})")
      print(f"| {network} | {grad_bytes / 4:,.0f} ({grad_bytes / 1e6:.2f}) | "
            f"{batch} | {seconds * 1e3:.2f} | " + " | ".join(cells) + " |",
            flush=True)


if __name__ == "__main__":
  app.run(main)
