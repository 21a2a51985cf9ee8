"""Downloads Fashion-MNIST or MNIST and verifies its SHA-256 digests.

  tfvae-download-data --dataset=fashion_mnist
  python -m tools.download_data --dataset=mnist --data_dir=/data/mnist
"""
import os

from absl import app
from absl import flags
from absl import logging

from tfvae import data
from tfvae import download
from tools import _cli

flags.DEFINE_enum(
    "dataset", "fashion_mnist", list(data.DATASET_NAMES),
    "Which data set to fetch: its four gzipped IDX files (train/t10k images "
    "and labels).")
flags.DEFINE_string(
    "data_dir", None,
    "Directory to write the files to; created if needed. Default: "
    "~/.keras/datasets/fashion-mnist for fashion_mnist, "
    "~/.keras/datasets/mnist for mnist, where tfvae's loader looks.")
flags.DEFINE_string(
    "base_url", None,
    "URL prefix to fetch the files from instead of the canonical mirror "
    f"(fashion_mnist: {download.DEFAULT_BASE_URLS['fashion_mnist']}, mnist: "
    f"{download.DEFAULT_BASE_URLS['mnist']}); e.g. another mirror or "
    "file:///path/to/dir/. Files are still checked against the known SHA-256 "
    "digests.")
FLAGS = flags.FLAGS


class _ProgressLogger:
  """Logs each file's download at every 25% and when it completes."""

  def __init__(self):
    self._next_quarter = {}

  def __call__(self, filename, done, total):
    if not total:
      return
    quarter = self._next_quarter.setdefault(filename, 1)
    if done * 4 >= quarter * total:
      logging.info("%s: %d%% (%d of %d bytes)", filename, 100 * done // total,
                   done, total)
      self._next_quarter[filename] = done * 4 // total + 1


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  dest_dir = FLAGS.data_dir or os.path.join(
      os.path.expanduser("~"), ".keras", "datasets",
      data.KERAS_SUBDIRS[FLAGS.dataset])
  download.download(FLAGS.dataset, dest_dir, base_url=FLAGS.base_url,
                    progress=_ProgressLogger())
  logging.info("%s is in %s (verified).", FLAGS.dataset, dest_dir)


def run_main():
  _cli.run(main)


if __name__ == "__main__":
  run_main()
