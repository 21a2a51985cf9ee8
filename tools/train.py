r"""Trains a tfvae model, resuming from the run directory's checkpoints.

  tfvae-train --dataset=fashion_mnist --model=vae --network=mlp \
      --latent_dim=2 --epochs=10 --run_dir=checkpoints/fm_mlp
  tfvae-train --model=denoising_ae --noise=salt_and_pepper:0.1 \
      --latent_dim=32 --run_dir=checkpoints/fm_dae
  tfvae-train --data=photos/ --image_size=64,64 --network=conv \
      --conv_channels=32,64,128 --likelihood=continuous_bernoulli \
      --run_dir=checkpoints/photos

Rerunning the same command resumes from the newest checkpoint. Flags left out
on a rerun take the run's saved values; `--epochs` may grow to train on.
SIGINT (Ctrl-C) or SIGTERM stops training at the next step boundary with a
checkpoint saved there; the status is then 128 + the signal's number.
"""
import os
import sys

from absl import app
from absl import flags

from tfvae import config as config_lib
from tfvae import presets
from tools import _cli

# Executed on first use, so that --help and usage errors start no TensorFlow.
distribute = _cli.lazy_import("tfvae.distribute")
launch = _cli.lazy_import("tfvae.launch")
training = _cli.lazy_import("tfvae.training")

# Every `config.Config` field set on the command line, defined from its
# default, help and choices in tfvae/config.py.
CONFIG_FLAGS = tuple(field.name for field in config_lib.fields()
                     if field.on_command_line)
_cli.define_config_flags(CONFIG_FLAGS, __name__)
flags.DEFINE_enum("preset", None, presets.names(),
                  "A named configuration from the literature (see "
                  "tfvae/presets.py): iwae_mnist_1layer is the VAE of Burda "
                  "et al. 2015, Table 1 (MLP 200-200 tanh, latent 50, "
                  "Bernoulli, dynamically binarised MNIST, batch 20). Flags "
                  "given explicitly override its values.")
flags.DEFINE_string("run_dir", "checkpoints/run",
                    "Run directory: config, checkpoints, summaries, metrics "
                    "and pictures (see WORKSPACE.md).")
flags.DEFINE_bool("allow_data_change", False,
                  "Resume a run on other data than it was trained on (the "
                  "run records a SHA-256 of its data in RUN_DIR/data.json "
                  "and otherwise refuses).")
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

FLAGS = flags.FLAGS


def _start_cluster():
  """Joins the multi-worker cluster; first, before TensorFlow runs any op."""
  if FLAGS.cpu_devices > 1:
    raise app.UsageError(
        f"--cpu_devices={FLAGS.cpu_devices}: --strategy=multi_worker runs one "
        "replica per worker on CPU; drop --cpu_devices")
  distribute.start(FLAGS.worker_hosts, FLAGS.task_index,
                   FLAGS.collective_timeout)


def main(argv):
  """Trains (or resumes) the run the flags describe in --run_dir."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")

  if FLAGS.strategy == "multi_worker":
    _start_cluster()
  elif FLAGS.worker_hosts or FLAGS.task_index is not None:
    raise app.UsageError("--worker_hosts/--task_index: only with "
                         "--strategy=multi_worker")
  launch.configure_cpu_devices(FLAGS.cpu_devices)
  fields = _cli.config_flag_values(CONFIG_FLAGS)
  explicit = {f for f in fields if FLAGS[f].present}
  fields, explicit = presets.apply(FLAGS.preset, fields, explicit)
  config = config_lib.Config(**fields)
  training.stop_on_signals()
  try:
    launch.run(config, FLAGS.run_dir, explicit=explicit,
               allow_data_change=FLAGS.allow_data_change)
  except training.Interrupted as e:
    sys.stderr.write(f"{os.path.basename(sys.argv[0]) or 'tfvae-train'}: "
                     f"{e}\n")
    sys.stderr.flush()
    raise SystemExit(128 + e.signum) from None


def run_main():
  """The `tfvae-train` console script."""
  _cli.run(main)


if __name__ == "__main__":
  run_main()
