r"""Measures how closely a migrated TF1 run continues the TF1 training curve.

Trains seed 003's graph (784-512-2 MLP, tanh, log-variance sampler,
RMSProp 1e-3, batch 64) in a TF1 session on real Fashion-MNIST for
--pretrain_steps steps and saves it (with its global step); then goes on
in TF1 for --continue_steps more steps on a fixed slice of --slice training
images, recording the mean loss of every --window steps. The saved
checkpoint is migrated twice with tfvae-migrate's library, with and
without --with_optimizer_state, and each migrated run is trained by
tfvae's Trainer for the same number of steps on the same slice (epochs of
--window steps), whose per-epoch training loss is the same window mean.

  PYTHONPATH=. python3 scripts/measure_migrate_continuation.py --out=/tmp/cont

Prints one table (window, TF1, tfvae with state, tfvae without) and the
test ELBOs; README.md quotes it.
"""
import json
import os

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from tfvae import data
from tfvae import input_pipeline
from tfvae import launch
from tfvae.migrate import full_model

flags.DEFINE_string("out", None, "Working directory (required).")
flags.DEFINE_integer("pretrain_steps", 600, "TF1 steps before migrating.")
flags.DEFINE_integer("continue_steps", 200, "Steps after migrating.")
flags.DEFINE_integer("window", 20, "Steps per reported mean.")
flags.DEFINE_integer("hidden", 512, "Hidden width.")
FLAGS = flags.FLAGS
v1 = tf.compat.v1
_BATCH = 64


def _tf1(directory, train, slice_images):
  """Pretrains, saves, continues in TF1; returns window means and test loss."""
  pixels = 784
  with tf.Graph().as_default() as graph:
    v1.set_random_seed(3)
    x = v1.placeholder(tf.float32, [None, pixels], name="x")

    def var(shape):
      return tf.Variable(v1.random_normal(
          shape, stddev=1. / tf.sqrt(shape[0] / 2.)))
    h = FLAGS.hidden
    w = [var([pixels, h]), var([h, 2]), var([h, 2]), var([2, h]),
         var([h, pixels])]
    b = [var([h]), var([2]), var([2]), var([h]), var([pixels])]
    hidden = tf.nn.tanh(tf.matmul(x, w[0]) + b[0])
    z_mean = tf.matmul(hidden, w[1]) + b[1]
    z_log_var = tf.matmul(hidden, w[2]) + b[2]
    eps = v1.random_normal(tf.shape(z_log_var), name="epsilon")
    z = z_mean + tf.exp(z_log_var / 2) * eps
    dec = tf.nn.tanh(tf.matmul(z, w[3]) + b[3])
    out = tf.nn.sigmoid(tf.matmul(dec, w[4]) + b[4])
    v1.add_to_collection("recon", out)
    distortion = -tf.reduce_sum(x * tf.math.log(1e-10 + out)
                                + (1 - x) * tf.math.log(1e-10 + 1 - out), 1)
    rate = -0.5 * tf.reduce_sum(1 + z_log_var - tf.square(z_mean)
                                - tf.exp(z_log_var), 1)
    loss = tf.reduce_mean(distortion + rate)
    step = v1.train.get_or_create_global_step()
    train_op = v1.train.RMSPropOptimizer(1e-3).minimize(loss,
                                                        global_step=step)
    saver = v1.train.Saver()
    rng = np.random.RandomState(0)
    with v1.Session(graph=graph) as sess:
      sess.run(v1.global_variables_initializer())
      for _ in range(FLAGS.pretrain_steps):
        batch = train[rng.randint(0, len(train), _BATCH)]
        sess.run(train_op, {x: batch})
      prefix = saver.save(sess, os.path.join(directory, "model"))
      losses = []
      order = np.concatenate([rng.permutation(len(slice_images))
                              for _ in range(FLAGS.continue_steps * _BATCH
                                             // len(slice_images) + 1)])
      for i in range(FLAGS.continue_steps):
        batch = slice_images[order[i * _BATCH:(i + 1) * _BATCH]]
        losses.append(sess.run([train_op, loss], {x: batch})[1])
      means = np.mean(np.reshape(losses, [-1, FLAGS.window]), axis=1)
      return prefix, means


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  os.makedirs(FLAGS.out, exist_ok=True)
  full = data.load("fashion_mnist")
  train = input_pipeline.scale(full.train.images).numpy().reshape(-1, 784)
  slice_size = FLAGS.window * _BATCH
  slice_images = train[:slice_size]
  prefix, tf1_means = _tf1(os.path.join(FLAGS.out, "tf1"), train,
                           slice_images)
  small = data.Dataset(
      name="fashion_mnist",
      train=data.Split(full.train.images[:slice_size],
                       full.train.labels[:slice_size]),
      test=full.test, class_names=full.class_names,
      source="the first training images of Fashion-MNIST")
  results = {}
  for state in (True, False):
    run_dir = os.path.join(FLAGS.out, f"run_state_{state}")
    migration = full_model.migrate_model(prefix, run_dir,
                                         with_optimizer_state=state)
    config = migration.config.replace(
        epochs=(FLAGS.pretrain_steps + FLAGS.continue_steps)
        // FLAGS.window)
    _, records = launch.run(config, run_dir, explicit={"epochs"},
                              dataset=small)
    # The migrated step ends an epoch: the Trainer first records that
    # epoch's test figures (no training ones), the migrated model's.
    results[state] = [r for r in records if "train_loss" in r]
    results[f"before_{state}"] = [r["test_elbo"] for r in records
                                  if "train_loss" not in r]
  print(f"{'steps after migrating':>22} {'TF1':>8} {'tfvae, state':>13} "
        f"{'tfvae, fresh':>13}")
  for i, tf1_mean in enumerate(tf1_means):
    print(f"{(i * FLAGS.window + 1):>10}-{(i + 1) * FLAGS.window:<11} "
          f"{tf1_mean:8.2f} {results[True][i]['train_loss']:13.2f} "
          f"{results[False][i]['train_loss']:13.2f}")
  print("test ELBO of the migrated model:", results["before_True"],
        results["before_False"])
  print("test ELBO after, with state and fresh:",
        round(results[True][-1]["test_elbo"], 2),
        round(results[False][-1]["test_elbo"], 2))
  with open(os.path.join(FLAGS.out, "continuation.json"), "w") as f:
    json.dump({"tf1": [float(m) for m in tf1_means],
               "with_state": results[True], "fresh": results[False]}, f,
              indent=1)


if __name__ == "__main__":
  flags.mark_flag_as_required("out")
  app.run(main)
