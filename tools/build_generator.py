"""Builds a servable generator SavedModel (z in, image out) from a checkpoint.

  tfvae-build-generator --checkpoint=SOURCE --export_dir=DIR [--version=N]

For a TF1 checkpoint with its `.meta` (beside the prefix or --meta_graph), the
decode path between the latent tensor z and the decoder output is cut out of
the TF1 graph, run on TF2 variables holding the checkpoint's values, checked
against the TF1 session on fixed latent points and published as
DIR/<version>/ with `decode` and `generate` signatures.
"""
from absl import app
from absl import flags
from absl import logging

from tfvae import legacy
from tools import _cli

flags.DEFINE_string("checkpoint", None,
                    "Checkpoint prefix, directory with a 'checkpoint' file, "
                    "or tfvae run directory (required).")
flags.DEFINE_string("export_dir", None,
                    "Parent of the versioned SavedModel directories "
                    "(required).")
flags.DEFINE_integer("version", None,
                     "Version to write; default: one above the highest.")
flags.DEFINE_string("meta_graph", None,
                    "TF1 .meta to cut the decoder from; default: PREFIX.meta.")
flags.DEFINE_string("latent_tensor", None,
                    "Name of z in the TF1 graph (e.g. add_3:0); default: the "
                    "tensor entering the first weight op after the sampler.")
flags.DEFINE_string("output_tensor", None,
                    "Name of the decoder output tensor (e.g. Sigmoid:0).")
flags.DEFINE_string("output_collection", None,
                    "Collection holding the decoder output (e.g. recon).")
flags.DEFINE_string("image_shape", None,
                    "H,W,C of the images; default: from the output's shape, "
                    "or a square single-channel image for a flat output.")
flags.DEFINE_enum("device", "auto", ["auto", "cpu", "gpu"],
                  "Where to build and verify: auto uses a GPU if present.")
flags.DEFINE_bool("allow_unsafe_ops", False,
                  "Build even if the decode path has ops that touch files or "
                  "run Python (only for graphs you trust).")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.checkpoint or not FLAGS.export_dir:
    raise app.UsageError("--checkpoint and --export_dir are required")
  path = legacy.build_generator(
      FLAGS.checkpoint, FLAGS.export_dir, version=FLAGS.version,
      meta_graph=FLAGS.meta_graph, latent_tensor=FLAGS.latent_tensor,
      output_tensor=FLAGS.output_tensor,
      output_collection=FLAGS.output_collection,
      image_shape=FLAGS.image_shape, device=FLAGS.device,
      allow_unsafe_ops=FLAGS.allow_unsafe_ops)
  logging.info("Published %s", path)
  print(path)


def run_main():
  _cli.run(main)


if __name__ == "__main__":
  run_main()
