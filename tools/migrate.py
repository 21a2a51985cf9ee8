r"""Migrates a whole TF1 or Keras 2 VAE (encoder, sampler, decoder) into a run.

  tfvae-migrate --checkpoint=TF1_DIR_OR_PREFIX --run_dir=checkpoints/migrated
  tfvae-migrate --checkpoint=vae_mlp.h5 --run_dir=checkpoints/from_keras
  tfvae-migrate --checkpoint=tf1_faces/ --data=faces.npz \
      --run_dir=checkpoints/faces

The graph beside the checkpoint (`PREFIX.meta`) is read: the input
placeholder, the encoder's dense layers or chain of SAME convolutions (any
kernel and stride) and their activations, the posterior's parametrisation
(log-variance, sqrt(exp(.)), exp(log sigma), softplus(.) + c,
tf.distributions.Normal; two heads, or one split or sliced), the decoder
(dense layers, or dense -> reshape -> any chain of conv2d_transpose and
conv2d) and its likelihood (sigmoid, clipped or not: Bernoulli by logits;
identity: Gaussian mean; two output heads, a learned variance: refused),
the optimizer (Adam, RMSProp with its decay and epsilon). A native tfvae VAE
of that
architecture gets the checkpoint's weights and is checked against the TF1
session on a fixed batch of real test images with fixed noise (posterior mean
and scale, decoded output and the per-example loss the graph computes, to
1e-5). Only then is --run_dir written: config.json, a TF2 checkpoint at the
TF1 global_step, and migration.json. `tfvae-train --run_dir=... --epochs=N`
continues training it; tfvae-evaluate, tfvae-plot and tfvae-export read it
as any run. Nothing of the graph runs before it has passed the op allow list.

A graph whose images are not 28x28x1 is verified on, and its run trains on,
the user's own images: --data (with --test_data, --image_size, --channels)
takes every source tfvae-train's --data takes, and is recorded in
config.json as tfvae-train records it, so later programs need no flags.

A Keras 2 (tf_keras) HDF5 file, from model.save or (with --keras_config)
model.save_weights, or a Keras SavedModel, is read as data (h5py, json):
the layers of encoder and decoder from the saved configuration, never the
sampling layer's code (a Lambda or a class of your own, known by its two
Dense inputs). An encoder and decoder saved apart are read together:

  tfvae-migrate --checkpoint=encoder.h5 --decoder=decoder.h5 --run_dir=...
  tfvae-migrate --checkpoint=DIR_WITH_ENCODER_AND_DECODER --run_dir=...

The posterior's parametrisation and a squared-error (Gaussian) loss are read
from the add_loss layers where they show; a compiled Adam/RMSprop's learning
rate goes into config.json and, with --with_optimizer_state, its slots into
the run. The native model is checked against the weights run through an
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
                    "Keras 2 HDF5 file or SavedModel, an encoder saved apart "
                    "(with --decoder), or a directory holding *encoder* and "
                    "*decoder* files (required).")
flags.DEFINE_string("run_dir", None,
                    "Run directory to write; must not exist or be empty "
                    "(required).")
flags.DEFINE_string("meta_graph", None,
                    "The TF1 .meta graph; default: PREFIX.meta.")
flags.DEFINE_enum("dataset", "fashion_mnist", list(config_lib.DATASETS),
                  "Data set whose first test images verify the migration, "
                  "recorded as the run's data set (unless --data).")
flags.DEFINE_string("data_dir", None,
                    "Directory searched first for the data set (as "
                    "tfvae-train's --data_dir).")
# tfvae-train's flags of the user's own images (tfvae.migrate.run_dir's
# DATA_FIELDS, named here: importing it would start TensorFlow).
DATA_FLAGS = ("data", "test_data", "image_size", "channels")
_cli.define_config_flags(DATA_FLAGS, __name__)
flags.DEFINE_bool("allow_unsafe_ops", False,
                  "Run the graph for verification even if the model or its "
                  "loss holds ops outside the allow list (ops that touch "
                  "files or run Python); only for graphs you trust.")
flags.DEFINE_bool("with_optimizer_state", False,
                  "Carry the optimizer's slots over (RMSProp's mean "
                  "square, Adam's moments and step; TF1 checkpoints, and "
                  "Keras model.save HDF5 files' optimizer_weights), so that "
                  "training continues the original curve; default: fresh "
                  "optimizer state.")
flags.DEFINE_string("keras_config", None,
                    "For a Keras weights-only HDF5 file (model.save_weights): "
                    "the JSON of model.to_json(), read as data.")
flags.DEFINE_enum("posterior_scale", None,
                  ["log_variance", "log_scale", "softplus"],
                  "For a Keras file: what the sampling Lambda makes of its "
                  "second input r (exp(r / 2), exp(r) or softplus(r)); "
                  "default: from the add_loss KL term, else the layer's "
                  "name (z_log_var: log_variance).")
flags.DEFINE_string("decoder", None,
                    "For a Keras VAE saved as two files (vae.encoder.save, "
                    "vae.decoder.save): the decoder's HDF5 file or "
                    "SavedModel, --checkpoint being the encoder's. A "
                    "directory as --checkpoint holding one *encoder* and "
                    "one *decoder* file needs no --decoder.")
FLAGS = flags.FLAGS


@_cli.flags_only
def main():
  if not FLAGS.checkpoint or not FLAGS.run_dir:
    raise app.UsageError("--checkpoint and --run_dir are required")
  result = migrate.migrate_model(
      FLAGS.checkpoint, FLAGS.run_dir, meta_graph=FLAGS.meta_graph,
      dataset=FLAGS.dataset, data_dir=FLAGS.data_dir,
      data_fields=_cli.config_flag_values(DATA_FLAGS),
      allow_unsafe_ops=FLAGS.allow_unsafe_ops,
      with_optimizer_state=FLAGS.with_optimizer_state,
      keras_config=FLAGS.keras_config, posterior_scale=FLAGS.posterior_scale,
      decoder=FLAGS.decoder)
  for line in result.lines:
    print(line)


def run_main():
  """The `tfvae-migrate` console script."""
  _cli.run(main)


if __name__ == "__main__":
  run_main()
