r"""Trains a tfvae model, resuming from the run directory's checkpoints.

  tfvae-train --dataset=fashion_mnist --model=vae --network=mlp \
      --latent_dim=2 --epochs=10 --run_dir=checkpoints/fm_mlp

Rerunning the same command resumes from the newest checkpoint. Flags left out
on a rerun take the run's saved values; `--epochs` may grow to train on.
"""
from absl import app
from absl import flags

from tools import _cli

flags.DEFINE_enum("dataset", "fashion_mnist", ["fashion_mnist", "mnist"],
                  "Data set to train on.")
flags.DEFINE_string("data_dir", None,
                    "Directory searched first for the data set's IDX files "
                    "or mnist.npz (then $TFVAE_DATA_DIR, ~/.keras/datasets, "
                    "/usr/share/datasets/fashion-mnist).")
flags.DEFINE_enum("model", "vae", ["vae"], "Kind of model.")
flags.DEFINE_enum("network", "mlp", ["mlp", "conv"],
                  "Encoder/decoder architecture: mlp (784-512-latent by "
                  "default) or conv (conv 32, 64/2, 64, 64, dense 32; "
                  "transposed conv decoder).")
flags.DEFINE_integer("latent_dim", 2, "Dimension of the latent code z.")
flags.DEFINE_list("hidden_sizes", ["512"],
                  "Comma-separated hidden widths of the MLP encoder; the "
                  "decoder mirrors them.")
flags.DEFINE_string("activation", None,
                    "Hidden activation (tanh, relu, elu, sigmoid, softplus, "
                    "leaky_relu, gelu, swish); default tanh for mlp, relu for "
                    "conv.")
flags.DEFINE_enum("likelihood", "bernoulli",
                  ["bernoulli", "continuous_bernoulli", "gaussian",
                   "gaussian_learned"],
                  "Decoder distribution p(x|z): bernoulli (logits), "
                  "continuous_bernoulli (grey-level), gaussian (fixed scale, "
                  "see --gaussian_scale), gaussian_learned (per-pixel scale).")
flags.DEFINE_float("gaussian_scale", 0.1,
                   "Pixel standard deviation of --likelihood=gaussian.")
flags.DEFINE_enum("binarize", "none", ["none", "static", "dynamic"],
                  "Binarisation of pixels: none (grey levels in [0,1]), "
                  "static (sampled once, fixed seed) or dynamic (resampled "
                  "every batch). The test split of a binarised run is "
                  "binarised once with a fixed seed.")
flags.DEFINE_float("beta", 1.0, "Weight of the KL (rate) term in the loss.")
flags.DEFINE_integer("seed", 0,
                     "Seed of initialisation, data order and sampling; the "
                     "same flags and seed give the same loss curve.")
flags.DEFINE_integer("batch_size", 64,
                     "Global batch size (split across replicas).")
flags.DEFINE_integer("epochs", 10,
                     "Total epochs to train; raise it to extend a finished "
                     "run.")
flags.DEFINE_enum("optimizer", "adam", ["adam", "rmsprop"], "Optimizer.")
flags.DEFINE_float("learning_rate", 1e-3, "Optimizer learning rate.")
flags.DEFINE_float("clip_norm", 0.0,
                   "Clip gradients to this global norm (0: no clipping).")
flags.DEFINE_bool("jit", False,
                  "Compile the loss and gradients with XLA (jit_compile).")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored"],
                  "tf.distribute strategy: default (one device) or mirrored "
                  "(all GPUs, or all logical CPUs; see --cpu_devices).")
flags.DEFINE_integer("cpu_devices", 0,
                     "Split the CPU into this many logical devices (for "
                     "--strategy=mirrored without GPUs); 0 leaves it alone.")
flags.DEFINE_integer("steps_per_call", 100,
                     "Training steps per call of the compiled step function "
                     "(a tf.range loop; fewer Python round trips, same "
                     "results; see BENCHMARKS.md).")
flags.DEFINE_string("run_dir", "checkpoints/run",
                    "Run directory: config, checkpoints, summaries, metrics "
                    "and pictures (see WORKSPACE.md).")
flags.DEFINE_integer("save_every_steps", 1000,
                     "Save a checkpoint every this many steps (and at the "
                     "end of every epoch).")
flags.DEFINE_integer("keep_checkpoints", 3, "Number of checkpoints kept.")
flags.DEFINE_integer("log_every_steps", 200,
                     "Steps between progress lines.")

FLAGS = flags.FLAGS

# Flags that are not part of the run's config.
_NOT_CONFIG = {"run_dir"}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  # Imported here so that --help does not pay for TensorFlow's start-up.
  from tfvae import config as config_lib  # pylint: disable=g-import-not-at-top
  from tfvae import training  # pylint: disable=g-import-not-at-top

  training.configure_cpu_devices(FLAGS.cpu_devices)
  fields = {f: FLAGS[f].value for f in config_lib.Config().to_dict()
            if f in FLAGS and f not in _NOT_CONFIG}
  try:
    fields["hidden_sizes"] = tuple(int(h) for h in FLAGS.hidden_sizes)
  except ValueError:
    raise app.UsageError(
        f"--hidden_sizes={','.join(FLAGS.hidden_sizes)}: expected "
        "comma-separated integers") from None
  config = config_lib.Config(**fields)
  explicit = {f for f in fields if FLAGS[f].present}
  training.run(config, FLAGS.run_dir, explicit=explicit)


def run_main():
  _cli.run(main)


if __name__ == "__main__":
  run_main()
