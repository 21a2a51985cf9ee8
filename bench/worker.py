r"""A tfvae MLP training step in a process of its own, for process-wide settings.

oneDNN (`TF_ENABLE_ONEDNN_OPTS`) and TensorFlow's thread pools are fixed
when a process starts, so the rows comparing them run each setting in its
own worker process and drive them in alternation from the suite:

  python -m bench.worker --images=train.npy --batch_size=64 \
      [--inter_op_threads=N] [--intra_op_threads=N]

The worker builds the same `TfvaeTraining` contender the suite times (same
seed, so the same initial weights and batches), warms it up, prints
"ready", then for each line "STEPS" read from stdin runs that many steps and
prints the examples/s; it exits at end of input.
"""
import sys

from absl import app
from absl import flags

from tools import quiet_start  # pylint: disable=unused-import

flags.DEFINE_string("images", None,
                    "A .npy file of uint8 training images [N, H, W, C].")
flags.DEFINE_integer("batch_size", 64, "Examples per step.")
flags.DEFINE_integer("hidden_size", 512, "MLP hidden width.")
flags.DEFINE_integer("steps_per_call", None,
                     "Steps per compiled call (default: tfvae's).")
flags.DEFINE_integer("inter_op_threads", 0,
                     "TensorFlow inter-op thread pool size (0: TF's default).")
flags.DEFINE_integer("intra_op_threads", 0,
                     "TensorFlow intra-op thread pool size (0: TF's default).")
flags.mark_flag_as_required("images")

FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op_threads)
  tf.config.threading.set_intra_op_parallelism_threads(FLAGS.intra_op_threads)
  from bench import contenders  # pylint: disable=g-import-not-at-top
  from tfvae import data  # pylint: disable=g-import-not-at-top
  from tfvae import input_pipeline  # pylint: disable=g-import-not-at-top

  images = np.load(FLAGS.images)
  split = data.Split(images, np.zeros(len(images), np.int64))
  dataset = data.Dataset(name="fashion_mnist", train=split, test=split,
                         class_names=tuple(str(i) for i in range(10)),
                         source=FLAGS.images)
  overrides = {}
  if FLAGS.steps_per_call:
    overrides["steps_per_call"] = FLAGS.steps_per_call
  contender = contenders.TfvaeTraining(dataset, "mlp", FLAGS.batch_size,
                                       FLAGS.hidden_size, **overrides)
  contender.run(min(input_pipeline.steps_per_epoch(split, FLAGS.batch_size),
                    2 * contender.config.steps_per_call))
  print("ready", flush=True)
  for line in sys.stdin:
    steps = int(line)
    print(repr(contender.examples_per_sec(steps)), flush=True)


if __name__ == "__main__":
  app.run(main)
