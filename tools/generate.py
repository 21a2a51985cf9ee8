r"""Draws or decodes images with an exported (or trained) model.

  tfvae-generate --model=exports/fm_mlp --num=64 --seed=0 --out=samples.png
  tfvae-generate --model=exports/fm_mlp --z="3,3;0,0" --out=z.png
  tfvae-generate --model=exports/fm_mlp --grid=10 --out=manifold.png

--model is a SavedModel version directory, an export directory (its highest
version is used) or a run directory (its newest checkpoint). Samples come from
the generate signature (image i of --seed=S uses prior seed S * 2^32 + i, so a
picture is reproducible); --z, --z_file and --grid go through decode. The
picture shows the decoder's mean (pixel probabilities for Bernoulli models).

A conditional model (cvae) needs --label, an index or a class name; every
image (samples, --z points, the --grid manifold) is drawn for that class:

  tfvae-generate --model=exports/fm_cvae --label=Sneaker --out=sneakers.png

A deterministic autoencoder (ae, denoising_ae, sparse_ae, contractive_ae)
cannot sample; --z, --z_file and --grid decode the given codes instead.
"""
from absl import app
from absl import flags
from absl import logging

from tfvae import errors
from tfvae import files
from tools import _cli

# Executed on first use, so that --help starts no TensorFlow.
generation = _cli.lazy_import("tfvae.generation")
images = _cli.lazy_import("tfvae.images")

flags.DEFINE_string("model", None,
                    "SavedModel directory, export directory (highest "
                    "version) or tfvae run directory.")
flags.DEFINE_integer("num", 64,
                     "Number of prior samples to draw (1 to 10000); used "
                     "when none of --z, --z_file, --grid is given.")
flags.DEFINE_integer("seed", 0,
                     "Seed of the prior samples, in [0, 2^31): the same "
                     "seed gives the same images.")
flags.DEFINE_string("z", None,
                    "Latent points to decode instead of sampling: "
                    "comma-separated coordinates, points separated by ';' "
                    "(e.g. \"3,3;0,0\").")
flags.DEFINE_string("z_file", None,
                    "A .npy file of latent points [N, latent] (or one point "
                    "[latent]) to decode instead of sampling.")
flags.DEFINE_integer("grid", None,
                     "Decode a GRID x GRID manifold over [-3, 3]^2 (2-D "
                     "latent spaces only), x to the right, y upwards.")
flags.DEFINE_string("label", None,
                    "Class to draw, for a conditional model (cvae) only, "
                    "where it is required: a label index (7) or a class "
                    "name (Sneaker, case-insensitive).")
flags.DEFINE_integer("columns", None,
                     "Images per row of the picture; default square (GRID "
                     "for --grid).")
flags.DEFINE_string("out", "samples.png", "PNG file to write.")
flags.DEFINE_string("out_npy", None,
                    "Also write the images, float32 [N, H, W, C] in [0, 1], "
                    "to this .npy file.")
flags.mark_flag_as_required("model")

FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")

  chosen = [name for name in ("z", "z_file", "grid")
            if FLAGS[name].value is not None]
  if len(chosen) > 1:
    raise errors.TfvaeError(
        f"--{chosen[0]} and --{chosen[1]} exclude each other; give one")
  if not FLAGS.out.lower().endswith(".png"):
    raise errors.TfvaeError(f"--out={FLAGS.out}: must name a .png file")
  if FLAGS.out_npy is not None and not FLAGS.out_npy.endswith(".npy"):
    raise errors.TfvaeError(f"--out_npy={FLAGS.out_npy}: must name a .npy "
                            "file")
  if FLAGS.columns is not None and FLAGS.columns < 1:
    raise errors.TfvaeError(f"--columns={FLAGS.columns}: must be positive")
  # Refused before the model is loaded: no picture without its .npy.
  for name in ("out", "out_npy"):
    problem = FLAGS[name].value and files.unwritable_reason(FLAGS[name].value)
    if problem:
      raise errors.TfvaeError(f"--{name}={FLAGS[name].value}: {problem}")
  if not chosen:
    seeds = generation.sample_seeds(FLAGS.seed, FLAGS.num)
  generator = generation.load(FLAGS.model)
  label = None
  if FLAGS.label is not None:
    label = generator.label(FLAGS.label)
  elif generator.conditional:
    raise errors.TfvaeError(
        f"--model={FLAGS.model} is a conditional model (cvae): give the "
        "class to draw with --label (an index or one of "
        f"{', '.join(generator.class_names)})")
  if not chosen and generator.refusal is not None:
    raise generator.refusal
  columns = FLAGS.columns
  if FLAGS.z is not None:
    pictures = generator.decode(
        generation.parse_points(FLAGS.z, generator.latent_size), label)
  elif FLAGS.z_file is not None:
    pictures = generator.decode(
        generation.load_points(FLAGS.z_file, generator.latent_size), label)
  elif FLAGS.grid is not None:
    pictures = generator.decode(
        generation.manifold_grid(FLAGS.grid, generator.latent_size), label)
    columns = columns or FLAGS.grid
  else:
    pictures, _ = generator.generate(seeds, label)
  try:
    if FLAGS.out_npy is not None:
      generation.save_npy(FLAGS.out_npy, pictures)
    images.write_png(FLAGS.out, images.grid(pictures, columns=columns))
  except OSError as e:  # atomic writes: no file is left half-written
    raise errors.TfvaeError(f"could not write {e.filename or FLAGS.out}: "
                            f"{e.strerror or e}") from None
  logging.info("Wrote %d images from %s to %s%s", len(pictures),
               generator.source, FLAGS.out,
               f" and {FLAGS.out_npy}" if FLAGS.out_npy else "")


def run_main():
  _cli.run(main)


if __name__ == "__main__":
  run_main()
