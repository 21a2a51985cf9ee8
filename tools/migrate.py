"""Migrates a whole TF1 or Keras 2 VAE (encoder, sampler, decoder) into a run.

  tfvae-migrate --checkpoint=TF1_DIR_OR_PREFIX --run_dir=checkpoints/migrated
  tfvae-migrate --checkpoint=vae_mlp.h5 --run_dir=checkpoints/from_keras

The graph beside the checkpoint (`PREFIX.meta`) is read: the input
placeholder, the encoder's dense layers or chain of convolutions (any kernel
and stride, SAME or VALID) and their activations, the posterior's
parametrisation (log-variance, sqrt(exp(.)), exp(log sigma), softplus(.) + c,
tf.distributions.Normal; two heads, or one split or sliced), the decoder
(dense layers, or dense -> reshape -> any chain of conv2d_transpose and
conv2d) and its likelihood (sigmoid, clipped or not: Bernoulli by logits;
identity: Gaussian mean; two output heads, a learned variance: refused), the
optimizer (Adam, RMSProp with its decay and epsilon). A native tfvae VAE of
that architecture gets the checkpoint's weights and is checked against the
TF1 session on a fixed batch of real test images with fixed noise (posterior
mean and scale, decoded output and the per-example loss the graph computes, to
1e-5). Only then is --run_dir written: config.json, a TF2 checkpoint at the
TF1 global_step, and migration.json. `tfvae-train --run_dir=... --epochs=N`
continues training it; tfvae-evaluate, tfvae-plot and tfvae-export read it
as any run. Nothing of the graph runs before it has passed the op allow list.

A Keras 2 (tf_keras) HDF5 file, from model.save or (with --keras_config)
model.save_weights, is read with h5py: the Dense layers of encoder and
decoder from the saved configuration, never the sampling Lambda's function
(code); the native model is checked against the weights run through an
independent numpy computation.
"""
from absl import app
from absl import flags

from tfvae import config as config_lib
from tools import _cli

# Executed on first use, so that --help and usage errors start no TensorFlow.
migrate = _cli.lazy_import("tfvae.migrate")

flags.DEFINE_string("checkpoint", None,
                    "TF1 checkpoint prefix, or the directory holding it and "
                    "its 'checkpoint' file, with its .meta beside it; or a "
                    "Keras 2 HDF5 file (required).")
flags.DEFINE_string("run_dir", None,
                    "Run directory to write; must not exist or be empty "
                    "(required).")
flags.DEFINE_string("meta_graph", None,
                    "The TF1 .meta graph; default: PREFIX.meta.")
flags.DEFINE_enum("dataset", "fashion_mnist", list(config_lib.DATASETS),
                  "Data set whose first test images verify the migration, "
                  "recorded as the run's data set.")
flags.DEFINE_string("data_dir", None,
                    "Directory searched first for the data set (as "
                    "tfvae-train's --data_dir).")
flags.DEFINE_bool("allow_unsafe_ops", False,
                  "Run the graph for verification even if the model or its "
                  "loss holds ops outside the allow list (ops that touch "
                  "files or run Python); only for graphs you trust.")
flags.DEFINE_bool("with_optimizer_state", False,
                  "Carry the TF1 optimizer's slots over (RMSProp's mean "
                  "square, Adam's moments and step), so that training "
                  "continues the TF1 curve; default: fresh optimizer state.")
flags.DEFINE_string("keras_config", None,
                    "For a Keras weights-only HDF5 file (model.save_weights): "
                    "the JSON of model.to_json(), read as data.")
flags.DEFINE_enum("posterior_scale", None,
                  ["log_variance", "log_scale", "softplus"],
                  "For a Keras file: what the sampling Lambda makes of its "
                  "second input r (exp(r / 2), exp(r) or softplus(r)); "
                  "default: from the layer's name (z_log_var: log_variance).")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.checkpoint or not FLAGS.run_dir:
    raise app.UsageError("--checkpoint and --run_dir are required")
  result = migrate.migrate_model(
      FLAGS.checkpoint, FLAGS.run_dir, meta_graph=FLAGS.meta_graph,
      dataset=FLAGS.dataset, data_dir=FLAGS.data_dir,
      allow_unsafe_ops=FLAGS.allow_unsafe_ops,
      with_optimizer_state=FLAGS.with_optimizer_state,
      keras_config=FLAGS.keras_config, posterior_scale=FLAGS.posterior_scale)
  for line in result.lines:
    print(line)


def run_main():
  """The `tfvae-migrate` console script."""
  _cli.run(main)


if __name__ == "__main__":
  run_main()
