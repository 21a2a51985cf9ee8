r"""Explores a trained model's latent space in the browser.

  tfvae-explore --model=checkpoints/fm_mlp
  tfvae-explore --model=exports/fm_cvae --port=8080

Starts a local web server (this machine only, unless --host says otherwise)
and prints the page's address. The page shows the latent plane with the
posterior means of --num_points test images as points coloured by class, and
under the pointer the image decoded there, updated as the pointer moves.
Click a point for its original beside its reconstruction; shift-click two
points for the interpolation between them; "manifold" tiles the plane with
decoded images. For latent sizes above 2 the plane is the principal plane of
the posterior means (--plane=pca) or two latent dimensions (--plane=dims,
--dims), with a slider for each remaining direction. A cvae gets a class
selector that conditions the decoder.

--model is a run directory, a SavedModel version directory or an export
directory (its highest version). A model without an encoder (a
--part=generator export, a TF1 migration) shows the prior's plane without
data points. Ctrl-C stops the server.
"""
import signal
import sys

from absl import app
from absl import flags
from absl import logging

from tfvae import errors
from tools import _cli

# Executed on first use, so that --help starts no TensorFlow.
explorer_lib = _cli.lazy_import("tfvae.explore.explorer")
server_lib = _cli.lazy_import("tfvae.explore.server")
trained = _cli.lazy_import("tfvae.trained")

flags.DEFINE_string("model", None,
                    "A run directory (its newest intact checkpoint), a "
                    "SavedModel version directory or an export directory "
                    "(its highest version); it needs a decode signature.")
flags.DEFINE_integer("port", 6007,
                     "Port to serve on; 0 picks a free one (the printed "
                     "address says which).")
flags.DEFINE_string("host", "127.0.0.1",
                    "Address to bind. The default serves this machine only; "
                    "0.0.0.0 shares the page with the network, deliberately "
                    "(there is no authentication).")
flags.DEFINE_integer("num_points", 2000,
                     "Images of the split shown as points (their posterior "
                     "means), from its start; 0 shows none.")
flags.DEFINE_string("split", "test", "Split the points come from: train or "
                    "test.")
flags.DEFINE_string("dataset", None,
                    "Data set of the points (fashion_mnist or mnist); "
                    "default the run's, or fashion_mnist for an export "
                    "without a config.")
flags.DEFINE_string("data_dir", None,
                    "Directory searched first for the data set's files.")
flags.DEFINE_string("plane", None,
                    "The plane shown for latent sizes above 2: pca (the "
                    "principal plane of the posterior means) or dims (two "
                    "latent dimensions, see --dims); default pca when there "
                    "are points, else dims.")
flags.DEFINE_list("dims", None,
                  "The two latent dimensions of --plane=dims (default 0,1).")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.model:
    raise errors.TfvaeError("--model is required")
  if not 0 <= FLAGS.port < 65536:
    raise errors.TfvaeError(f"--port={FLAGS.port}: must be in [0, 65536)")
  dims = None
  if FLAGS.dims is not None:
    try:
      dims = [int(d) for d in FLAGS.dims]
    except ValueError:
      raise errors.TfvaeError(f"--dims={','.join(FLAGS.dims)}: expected "
                              "two dimension indices") from None
  model = trained.open_model(FLAGS.model)
  images = explorer_lib.data_layer(model, FLAGS.split, FLAGS.num_points,
                                   FLAGS.dataset, FLAGS.data_dir)
  explorer = explorer_lib.Explorer(model, images, FLAGS.plane, dims)
  try:
    server = server_lib.Server(explorer, FLAGS.host, FLAGS.port)
  except OSError as e:
    raise errors.TfvaeError(f"--host={FLAGS.host} --port={FLAGS.port}: "
                            f"cannot serve there: {e.strerror or e}") \
        from None
  logging.info("Exploring %s (%s).", explorer.source,
               explorer.data_description or "no data points")
  # A program started in the background by a non-interactive shell inherits
  # SIGINT ignored (Python then raises no KeyboardInterrupt); Ctrl-C and
  # `kill -INT` must stop the server however it was started.
  signal.signal(signal.SIGINT, signal.default_int_handler)
  print(f"tfvae-explore: serving {server.url} (Ctrl-C stops)", flush=True)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    print("tfvae-explore: stopped", file=sys.stderr, flush=True)
  finally:
    server.server_close()


def run_main():
  _cli.run(main)


if __name__ == "__main__":
  run_main()
