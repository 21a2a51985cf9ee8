"""Builds a servable generator SavedModel (z in, image out) from a checkpoint.

  tfvae-build-generator --checkpoint=SOURCE --export_dir=DIR [--version=N]

The result is DIR/<version>/ with `decode`, `generate` and serving_default
signatures, checked on the reloaded SavedModel before it is published.
serving_default returns the image mean alone ({"mean": [B, H, W, C]}): TF
Serving clients that want images call it; `decode` also returns the
likelihood's parameters. SOURCE is one of:

  * a tfvae run directory (or a TF2 checkpoint in its ckpt/): the run's
    decoder, checked against the restored model;
  * a TF1 checkpoint with its `.meta` (beside the prefix or --meta_graph):
    the decode path between the latent tensor z and the decoder output is cut
    out of the TF1 graph and checked against the TF1 session;
  * a TF1 checkpoint without a graph (or --no_meta, or --map/--map_file): its
    variables are loaded into a native decoder described by --network,
    --latent_dim, --hidden_sizes, --activation, --likelihood and
    --image_shape, by name (--map decoder/mlp/linear_0/w=Variable_3,...) or
    by shape when shapes are unique, and checked against a numpy
    re-computation from the checkpoint's arrays. With the `.meta` beside the
    checkpoint (even under --no_meta), the mapped decoder must also decode
    like the graph's decode path; without it, a mapped variable that has no
    optimizer slots while one of its shape has them is warned about (on
    stderr, before the published path is printed).
"""
import sys

from absl import app
from absl import flags
from absl import logging

from tfvae import config
from tfvae import errors
from tools import _cli

# tfvae.migrate imports TensorFlow: bound lazily, so --help starts none.
migrate = _cli.lazy_import("tfvae.migrate")
# The decoders a mapping may fill (tfvae.migrate.mapping.LIKELIHOODS; the
# CLI test checks the two agree).
MAPPED_LIKELIHOODS = ("bernoulli", "gaussian")

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
                    "Name of z in the TF1 graph (e.g. add_3:0); default: a "
                    "latent placeholder feeding a generation path, else the "
                    "tensor entering the first weight op after the sampler "
                    "(tfvae-inspect lists the candidates).")
flags.DEFINE_string("output_tensor", None,
                    "Name of the decoder output tensor (e.g. Sigmoid:0).")
flags.DEFINE_string("output_collection", None,
                    "Collection holding the decoder output (e.g. recon).")
flags.DEFINE_string("image_shape", None,
                    "H,W,C of the images; default: from the TF1 output's "
                    "shape (a square single-channel image for a flat output),"
                    " or 28,28,1 for a checkpoint without a graph.")
flags.DEFINE_enum("device", "auto", ["auto", "cpu", "gpu"],
                  "Where to build and verify: auto uses a GPU if present.")
flags.DEFINE_bool("allow_unsafe_ops", False,
                  "Build even if the decode path (or a function, branch or "
                  "loop body it calls) has ops outside the generator allow "
                  "list, such as ops that touch files or run Python (only "
                  "for graphs you trust).")
flags.DEFINE_bool("no_meta", False,
                  "Ignore the .meta beside a TF1 checkpoint and map its "
                  "variables into a native decoder instead.")
flags.DEFINE_multi_string(
    "map", None,
    "DECODER_WEIGHT=CHECKPOINT_VARIABLE, repeatable or comma-separated, e.g. "
    "decoder/mlp/linear_0/w=Variable_3,decoder/mlp/linear_0/b=Variable_8; "
    "must name every decoder weight. Default: match by shape.")
flags.DEFINE_string("map_file", None,
                    "JSON file {DECODER_WEIGHT: CHECKPOINT_VARIABLE} instead "
                    "of --map.")
flags.DEFINE_enum("network", "mlp", list(config.NETWORKS),
                  "Mapped decoder: architecture (mlp: dense layers; conv: "
                  "dense -> reshape to H/2,W/2 -> stride-2 transposed conv "
                  "-> conv, 3x3 kernels, SAME padding).")
flags.DEFINE_integer("latent_dim", 2, "Mapped decoder: width of z.")
flags.DEFINE_list("hidden_sizes", ["512"],
                  "Mapped decoder: mlp hidden widths from z upwards.")
flags.DEFINE_list("conv_channels", ["64", "32"],
                  "Mapped decoder: conv channels after the dense layer and "
                  "after the transposed convolution.")
flags.DEFINE_string("activation", "tanh",
                    "Mapped decoder: hidden activation (tanh, relu, sigmoid, "
                    "elu, softplus, leaky_relu, gelu, swish).")
flags.DEFINE_enum("likelihood", "bernoulli", list(MAPPED_LIKELIHOODS),
                  "Mapped decoder: bernoulli (the TF1 output is "
                  "sigmoid(logits)) or gaussian (the TF1 output is the pixel "
                  "mean).")
flags.DEFINE_float("gaussian_scale", 0.1,
                   "Mapped gaussian decoder: the pixel standard deviation its "
                   "`scale` output reports.")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16", "float16"],
                  "Compute dtype of a native decoder inside the signatures "
                  "(z in and images out stay float32): bfloat16 for CPUs "
                  "with AVX512_BF16 and large decoders (an MLP-sized one "
                  "measured slower, BENCHMARKS.md), float16 for GPUs; "
                  "checked against the float32 decoder within a "
                  "tolerance per dtype (tfvae/precision.py). TF1 graphs cut "
                  "by surgery stay float32.")
FLAGS = flags.FLAGS


def _ints(flag, values):
  try:
    return tuple(int(v) for v in values)
  except ValueError:
    raise errors.TfvaeError(
        f"--{flag} must be integers, not {','.join(values)}") from None


def _decoder_spec():
  return migrate.mapping.DecoderSpec(
      network=FLAGS.network, latent_size=FLAGS.latent_dim,
      hidden_sizes=_ints("hidden_sizes", FLAGS.hidden_sizes),
      activation=FLAGS.activation, likelihood=FLAGS.likelihood,
      gaussian_scale=FLAGS.gaussian_scale,
      conv_channels=_ints("conv_channels", FLAGS.conv_channels))


def _variable_map():
  if FLAGS.map and FLAGS.map_file:
    raise app.UsageError("pass either --map or --map_file, not both")
  if FLAGS.map_file:
    return migrate.mapping.read_mapping_file(FLAGS.map_file)
  return migrate.mapping.parse_mapping(FLAGS.map) or None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.checkpoint or not FLAGS.export_dir:
    raise app.UsageError("--checkpoint and --export_dir are required")
  path = migrate.build.build_generator(
      FLAGS.checkpoint, FLAGS.export_dir, version=FLAGS.version,
      meta_graph=FLAGS.meta_graph, latent_tensor=FLAGS.latent_tensor,
      output_tensor=FLAGS.output_tensor,
      output_collection=FLAGS.output_collection,
      image_shape=FLAGS.image_shape, device=FLAGS.device,
      allow_unsafe_ops=FLAGS.allow_unsafe_ops, no_meta=FLAGS.no_meta,
      decoder_spec=_decoder_spec(), variable_map=_variable_map(),
      dtype=FLAGS.dtype)
  for warning in migrate.publish.source_record(path).get("warnings", []):
    print(f"warning: {warning}", file=sys.stderr)
  logging.info("Published %s", path)
  print(path)


def run_main():
  _cli.run(main)


if __name__ == "__main__":
  run_main()
