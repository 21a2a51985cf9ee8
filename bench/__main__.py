r"""Benchmarks tfvae against TF1 session code and tf_keras `fit`, side by side.

  python -m bench            # the full suite (30-50 minutes on 2 cores)
  python -m bench --quick    # the same rows, less work (under 3 minutes)
  python -m bench --json     # one JSON object per row

Each row prints tfvae's figure, the reference's and the ratio (how many
times better tfvae is). Contenders run in alternating repetitions on the
same data and initial weights; medians are reported. The "ceiling" rows
time a model's kernel floor (its matmuls/convolutions, likelihood and
optimizer update alone, `bench/ceilings.py`) against a reference: the most
any implementation on these kernels could gain. See BENCHMARKS.md.
"""
import json
import os
import platform
import subprocess
import sys
import time

from absl import app
from absl import flags
from absl import logging

from tools import quiet_start  # pylint: disable=unused-import
from tools import _cli

flags.DEFINE_bool("quick", False,
                  "Run a short version (under 3 minutes) printing the same "
                  "rows.")
flags.DEFINE_bool("json", False,
                  "Print one JSON object per row (name, tfvae, reference, "
                  "unit, ratio, ...) instead of text.")
flags.DEFINE_integer("repetitions", None,
                     "Alternating repetitions per comparison (default 5).")
flags.DEFINE_string("data_dir", None,
                    "Directory searched first for Fashion-MNIST.")
flags.DEFINE_integer("train_examples", 0,
                     "Use only the first this many training images (0: all).")
flags.DEFINE_integer("hidden_size", None,
                     "MLP hidden width (default 512, the benchmarked model).")
flags.DEFINE_bool("conv", True, "Run the conv VAE rows.")
flags.DEFINE_bool("images", True,
                  "Run the own-images rows: the streamed input pipeline "
                  "(JPEG folder, TFRecords) against a 64x64x3 conv VAE's "
                  "training step (off under --tiny unless given).")
flags.DEFINE_bool("tiny", False,
                  "Tiny sizes that only check the suite runs (for tests); "
                  "the figures mean nothing.")

FLAGS = flags.FLAGS


def settings_from_flags():
  from bench import suite  # pylint: disable=g-import-not-at-top
  settings = suite.QUICK if FLAGS.quick else suite.FULL
  if FLAGS.tiny:
    settings = suite.TINY
  changes = {"conv": FLAGS.conv}
  # --tiny leaves the image rows out unless --images is given explicitly.
  if FLAGS["images"].present or not FLAGS.tiny:
    changes["images"] = FLAGS.images
  if FLAGS.repetitions is not None:
    if FLAGS.repetitions < 1:
      raise app.UsageError("--repetitions must be positive")
    changes["repetitions"] = FLAGS.repetitions
  if FLAGS.hidden_size is not None:
    if FLAGS.hidden_size < 1:
      raise app.UsageError("--hidden_size must be positive")
    changes["hidden_size"] = FLAGS.hidden_size
  return suite.dataclasses.replace(settings, **changes)


def machine():
  """The CPU model and core count, as `lscpu` reports them."""
  model = platform.processor() or "unknown"
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
      if line.startswith("Model name:"):
        model = line.split(":", 1)[1].strip()
  except (OSError, subprocess.CalledProcessError):
    pass
  return model, os.cpu_count()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.train_examples < 0:
    raise app.UsageError("--train_examples must not be negative")
  from bench import suite  # pylint: disable=g-import-not-at-top
  from tfvae import data  # pylint: disable=g-import-not-at-top

  settings = settings_from_flags()
  dataset = data.load("fashion_mnist", FLAGS.data_dir)
  if FLAGS.train_examples:
    n = FLAGS.train_examples
    dataset = data.Dataset(
        name=dataset.name,
        train=data.Split(dataset.train.images[:n], dataset.train.labels[:n]),
        test=dataset.test, class_names=dataset.class_names,
        source=dataset.source)
  model, cores = machine()
  logging.info("tfvae bench on %s, %s cores, %s", model, cores,
               time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
  command = "python -m bench " + " ".join(sys.argv[1:])
  if not FLAGS.json:
    print(f"# {time.strftime('%Y-%m-%d')}  {model}, {cores} cores  "
          f"`{command.strip()}`", flush=True)
  for row in suite.run(dataset, settings):
    print(json.dumps(row.to_dict()) if FLAGS.json else row.format(),
          flush=True)


def run_main():
  _cli.run(main)


if __name__ == "__main__":
  run_main()
