r"""Writes images as TFRecord shards that tfvae-train --data=PREFIX reads.

  tfvae-make-tfrecords --data=photos/ --out=records/photos --shards=8
  tfvae-train --data=records/photos --run_dir=checkpoints/photos

--data is any source tfvae-train takes (a folder, a list file, an .npz or
.npy, other shards). Images read from files keep their encoded bytes, so
the shards decode to the same pixels, in the same order: training on them
is training on the source. PREFIX.json beside the shards records the class
names.
"""
from absl import flags
from absl import logging

from tfvae import errors
from tools import _cli

# Executed on first use, so that --help and usage errors start no TensorFlow.
image_sources = _cli.lazy_import("tfvae.image_sources")

flags.DEFINE_string("data", None,
                    "The images: a folder (one subdirectory per class, or "
                    "flat), a list file of 'path [label]' lines, an .npz or "
                    ".npy array, or TFRecord shards PREFIX-*-of-*.")
flags.DEFINE_string("out", None,
                    "Path prefix of the shards written: OUT-00000-of-0000N "
                    "..., and OUT.json with the class names.")
flags.DEFINE_integer("shards", 1,
                     "Number of shards; give a multi-worker cluster at least "
                     "one per worker (workers split the shards by file).")
flags.DEFINE_bool("skip_bad_images", False,
                  "Leave out images that cannot be read or decoded "
                  "(counted in the log) instead of stopping at the first.")
FLAGS = flags.FLAGS


@_cli.flags_only
def main():
  for flag in ("data", "out"):
    if not FLAGS[flag].value:
      raise errors.TfvaeError(f"--{flag} is required")
  if FLAGS.shards < 1:
    raise errors.TfvaeError(f"--shards={FLAGS.shards}: must be at least 1")
  paths = image_sources.write_tfrecords(FLAGS.data, FLAGS.out, FLAGS.shards,
                                        FLAGS.skip_bad_images)
  logging.info("Wrote %s ... %s.", paths[0], paths[-1])


def run_main():
  """The `tfvae-make-tfrecords` console script."""
  _cli.run(main)


if __name__ == "__main__":
  run_main()
