r"""Trains a tfvae model, resuming from the run directory's checkpoints.

  tfvae-train --dataset=fashion_mnist --model=vae --network=mlp \
      --latent_dim=2 --epochs=10 --run_dir=checkpoints/fm_mlp
  tfvae-train --model=denoising_ae --noise=salt_and_pepper:0.1 \
      --latent_dim=32 --run_dir=checkpoints/fm_dae

Rerunning the same command resumes from the newest checkpoint. Flags left out
on a rerun take the run's saved values; `--epochs` may grow to train on.
"""
from absl import app
from absl import flags

from tfvae import presets
from tools import _cli

flags.DEFINE_enum("preset", None, presets.names(),
                  "A named configuration from the literature (see "
                  "tfvae/presets.py): iwae_mnist_1layer is the VAE of Burda "
                  "et al. 2015, Table 1 (MLP 200-200 tanh, latent 50, "
                  "Bernoulli, dynamically binarised MNIST, batch 20). Flags "
                  "given explicitly override its values.")
flags.DEFINE_enum("dataset", "fashion_mnist", ["fashion_mnist", "mnist"],
                  "Data set to train on.")
flags.DEFINE_string("data_dir", None,
                    "Directory searched first for the data set's IDX files "
                    "or mnist.npz (then $TFVAE_DATA_DIR, ~/.keras/datasets, "
                    "/usr/share/datasets/fashion-mnist).")
flags.DEFINE_enum("model", "vae",
                  ["vae", "iwae", "cvae", "ae", "denoising_ae", "sparse_ae",
                   "contractive_ae"],
                  "Kind of model: vae (ELBO, see --beta, --kl_schedule, "
                  "--free_bits), iwae (importance-weighted bound, see "
                  "--num_importance_samples), cvae (conditional on the class "
                  "label), ae (deterministic autoencoder), denoising_ae (see "
                  "--noise), sparse_ae (see --sparsity_*), contractive_ae "
                  "(see --contractive_weight). Autoencoders cannot generate; "
                  "for them --latent_dim is the code width.")
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
flags.DEFINE_string("kl_schedule", "constant",
                    "Annealing of the KL weight (vae, cvae): constant, "
                    "linear:STEPS (0 to --beta over STEPS steps) or "
                    "cyclical:PERIOD (0 to --beta over the first half of "
                    "every PERIOD steps, then --beta). A function of the "
                    "checkpointed step, so resuming continues it.")
flags.DEFINE_float("free_bits", 0.0,
                   "Free bits (vae, cvae): nats per latent dimension and "
                   "example below which the KL is not penalised (0: off).")
flags.DEFINE_integer("num_importance_samples", 5,
                     "k, importance samples per example of the iwae bound "
                     "(iwae).")
flags.DEFINE_integer("num_classes", 10,
                     "Number of class labels fed to the cvae; must match the "
                     "data set.")
flags.DEFINE_string("noise", "salt_and_pepper:0.1",
                    "Training-time corruption of the denoising_ae's input: "
                    "salt_and_pepper:P (pixel set to 0 or 1 with probability "
                    "P), gaussian:S (add S * N(0,1), clip to [0,1]) or "
                    "masking:P (pixel set to 0 with probability P).")
flags.DEFINE_enum("sparsity_penalty", "kl", ["kl", "l1"],
                  "Sparsity penalty of the sparse_ae's sigmoid code: kl "
                  "(KL from --sparsity_target to each unit's mean activation "
                  "over the batch) or l1 (sum of activations per example).")
flags.DEFINE_float("sparsity_weight", 0.1,
                   "Weight of the sparse_ae's sparsity penalty.")
flags.DEFINE_float("sparsity_target", 0.05,
                   "Target mean activation of the sparse_ae's code units "
                   "(kl penalty), in (0, 1).")
flags.DEFINE_float("contractive_weight", 0.1,
                   "Weight of the contractive_ae's penalty, the squared "
                   "Frobenius norm of the encoder Jacobian.")
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
flags.DEFINE_enum("strategy", "default", ["default", "mirrored",
                                          "multi_worker"],
                  "tf.distribute strategy: default (one device), mirrored "
                  "(all GPUs, or all logical CPUs; see --cpu_devices) or "
                  "multi_worker (MultiWorkerMirroredStrategy over the hosts "
                  "of TF_CONFIG or --worker_hosts; run the same command on "
                  "every worker).")
flags.DEFINE_list("worker_hosts", [],
                  "With --strategy=multi_worker: comma-separated host:port "
                  "of every worker, the same list on each (worker 0 is the "
                  "chief); builds TF_CONFIG. Leave empty to use TF_CONFIG.")
flags.DEFINE_integer("task_index", None,
                     "With --worker_hosts: this worker's index in the list.")
flags.DEFINE_float("collective_timeout", 0.0,
                   "With --strategy=multi_worker: seconds after which an "
                   "all-reduce still waiting for a peer fails (0: wait while "
                   "the peers are alive; a dead worker is noticed by "
                   "heartbeats within about 10 s). Must exceed the chief's "
                   "evaluation time at the end of an epoch.")
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
_NOT_CONFIG = {"run_dir", "preset"}


def _start_cluster():
  """Joins the multi-worker cluster; first, before TensorFlow runs any op."""
  from tfvae import distribute  # pylint: disable=g-import-not-at-top
  if FLAGS.cpu_devices > 1:
    raise app.UsageError(
        f"--cpu_devices={FLAGS.cpu_devices}: --strategy=multi_worker runs one "
        "replica per worker on CPU; drop --cpu_devices")
  distribute.start(FLAGS.worker_hosts, FLAGS.task_index,
                   FLAGS.collective_timeout)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  # Imported here so that --help does not pay for TensorFlow's start-up.
  from tfvae import config as config_lib  # pylint: disable=g-import-not-at-top
  from tfvae import launch  # pylint: disable=g-import-not-at-top

  if FLAGS.strategy == "multi_worker":
    _start_cluster()
  elif FLAGS.worker_hosts or FLAGS.task_index is not None:
    raise app.UsageError("--worker_hosts/--task_index: only with "
                         "--strategy=multi_worker")
  launch.configure_cpu_devices(FLAGS.cpu_devices)
  fields = {f: FLAGS[f].value for f in config_lib.Config().to_dict()
            if f in FLAGS and f not in _NOT_CONFIG}
  try:
    fields["hidden_sizes"] = tuple(int(h) for h in FLAGS.hidden_sizes)
  except ValueError:
    raise app.UsageError(
        f"--hidden_sizes={','.join(FLAGS.hidden_sizes)}: expected "
        "comma-separated integers") from None
  explicit = {f for f in fields if FLAGS[f].present}
  fields, explicit = presets.apply(FLAGS.preset, fields, explicit)
  config = config_lib.Config(**fields)
  launch.run(config, FLAGS.run_dir, explicit=explicit)


def run_main():
  _cli.run(main)


if __name__ == "__main__":
  run_main()
