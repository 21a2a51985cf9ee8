r"""Draws a picture of a trained model into a PNG file.

  tfvae-plot --model=checkpoints/fm_mlp --kind=manifold --out=manifold.png

Kinds:
  manifold         decoded grid over [-3, 3]^2 of z (for latent sizes above
                   2, of the two dims whose posterior means vary most)
  latent           test-set posterior means coloured by class (PCA above 2
                   dims)
  reconstructions  test images (top) above their reconstructions
  samples          decoded draws from the prior
  interpolation    decoded points between two test images' codes
  curves           train/test ELBO, rate and distortion per epoch, from the
                   run's TensorBoard summaries (run directories only)
  anomaly          per-example ELBO of the test split against --other
                   (uniform noise by default), AUROC in the title
  classes          one row of --count samples per class (cvae runs and
                   exports only; the same z in each column)
  projector        TensorBoard projector files of the posterior means of
                   --max_examples images (sprite, labels): --out is a log
                   directory (default for a run: the assets of its
                   summaries/eval, shown by tensorboard --logdir RUN_DIR)
"""
from absl import app
from absl import flags
from absl import logging

from tfvae import data
from tfvae import errors
from tools import _cli

# Executed on first use, so that --help and usage errors start no TensorFlow.
evaluation = _cli.lazy_import("tfvae.evaluation")
generation = _cli.lazy_import("tfvae.generation")
input_pipeline = _cli.lazy_import("tfvae.input_pipeline")
plots = _cli.lazy_import("tfvae.plots")
run_outputs = _cli.lazy_import("tfvae.run_outputs")
trained = _cli.lazy_import("tfvae.trained")

_KINDS = ("manifold", "latent", "reconstructions", "samples",
          "interpolation", "curves", "anomaly", "classes", "projector")

flags.DEFINE_string("model", None,
                    "A run directory (its newest intact checkpoint) or a "
                    "SavedModel export (a version directory, or the parent "
                    "of numbered versions: the highest is used).")
flags.DEFINE_string("kind", None, f"What to draw: {', '.join(_KINDS)}.")
flags.DEFINE_string("out", None,
                    "PNG file to write (atomically); for --kind=projector "
                    "a log directory (default for a run directory: the "
                    "projector assets of its summaries/eval).")
flags.DEFINE_string("split", "test",
                    "Split the images come from: train or test.")
flags.DEFINE_string("dataset", None,
                    "Data set (fashion_mnist or mnist); default the run's, "
                    "or for an export without a config, fashion_mnist.")
flags.DEFINE_string("binarize", None,
                    "Binarisation the model was trained with (none, static, "
                    "dynamic); default the run's, or none for an export.")
flags.DEFINE_string("data_dir", None,
                    "Directory searched first for the data set's files.")
flags.DEFINE_string("images", None,
                    "An IDX or .npy file of uint8 images [N, H, W(, C)] to "
                    "use instead of the data set split (they have no "
                    "labels, so --kind=latent refuses them).")
flags.DEFINE_integer("seed", 0,
                     "Seed of the samples, the ELBO's draws and the noise "
                     "images; the same seed gives the same picture.")
flags.DEFINE_integer("count", 16,
                     "Images shown by reconstructions; samples shows "
                     "count * 4; classes shows count per class.")
flags.DEFINE_integer("grid_size", 20, "Points per axis of the manifold.")
flags.DEFINE_float("span", 3.0, "The manifold covers [-span, span]^2.")
flags.DEFINE_integer("steps", 10, "Decoded points of the interpolation.")
flags.DEFINE_list("pair", ["0", "1"],
                  "Indices of the two images interpolated between.")
flags.DEFINE_integer("max_examples", 2000,
                     "Images used by latent and anomaly (and to choose the "
                     "manifold's dims), from the start of the split.")
flags.DEFINE_string("other", "noise",
                    "anomaly: the other images: noise (uniform pixels), a "
                    "data set name (its test split, e.g. mnist), or an IDX "
                    "or .npy file of images.")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  for flag in ("model", "kind", "out"):
    if flag == "out" and FLAGS.kind == "projector":
      continue
    if not FLAGS[flag].value:
      raise errors.TfvaeError(f"--{flag} is required")
  plots.check_kind(FLAGS.kind)
  if FLAGS.split not in ("train", "test"):
    raise errors.TfvaeError(f"--split={FLAGS.split}: no such split; choose "
                            "train or test")
  try:
    pair = [int(i) for i in FLAGS.pair]
  except ValueError:
    pair = []
  if len(pair) != 2 or min(pair) < 0:
    raise errors.TfvaeError(f"--pair={','.join(FLAGS.pair)}: expected two "
                            "non-negative image indices")
  if FLAGS.kind == "classes":
    # Drawn through the label-taking generate of a cvae run or export.
    if not 1 <= FLAGS.count <= 100:
      raise errors.TfvaeError(f"--count={FLAGS.count}: must be between 1 "
                              "and 100")
    plots.save(plots.classes(generation.load(FLAGS.model), FLAGS.count,
                             FLAGS.seed), FLAGS.out)
    logging.info("Wrote %s.", FLAGS.out)
    return
  loaded = trained.open_for_scoring(FLAGS.model)
  model, config = loaded.model, loaded.config
  dataset = FLAGS.dataset or (config.dataset if config else "fashion_mnist")
  binarize = FLAGS.binarize or (config.binarize if config else "none")

  def images(limit=None):
    found = evaluation.load_images(dataset, FLAGS.split, binarize,
                                   FLAGS.data_dir, images_file=FLAGS.images,
                                   config=None if FLAGS.dataset else config)
    evaluation.check_image_shape(model, found)
    if limit:
      found.images = found.images[:limit]
      if found.labels is not None:
        found.labels = found.labels[:limit]
    return found

  kind = FLAGS.kind
  if kind == "manifold":
    figure, dims = plots.manifold(
        model, images(FLAGS.max_examples) if model.latent_size > 2 else None,
        FLAGS.grid_size, FLAGS.span)
    logging.info("Manifold over latent dims %s.", dims)
  elif kind == "latent":
    figure = plots.latent(model, images(FLAGS.max_examples))
  elif kind == "reconstructions":
    figure = plots.reconstructions(model, images(), FLAGS.count)
  elif kind == "samples":
    figure = plots.samples(model, 4 * FLAGS.count, FLAGS.seed)
  elif kind == "interpolation":
    figure = plots.interpolation(model, images(), FLAGS.steps, *pair)
  elif kind == "curves":
    figure = plots.curves(loaded.run_dir)
  elif kind == "projector":
    out = FLAGS.out or (run_outputs.projector_dir(loaded.run_dir)
                        if loaded.run_dir else None)
    if out is None:
      raise errors.TfvaeError("--kind=projector of an export needs --out, "
                              "the log directory to write into")
    path = plots.projector(model, images(FLAGS.max_examples), out)
    logging.info("Wrote %s; see it with tensorboard --logdir %s.", path,
                 loaded.run_dir if not FLAGS.out else out)
    return
  else:
    inliers = images(FLAGS.max_examples)
    other = FLAGS.other
    if other == "noise":
      outliers = evaluation.Images(
          plots.noise_images(len(inliers.images), model.image_shape,
                             FLAGS.seed), None, None, "uniform noise")
    elif other in data.DATASET_NAMES:
      outliers = evaluation.load_images(other, "test", binarize,
                                        FLAGS.data_dir)
      outliers.images = outliers.images[:FLAGS.max_examples]
    else:
      outliers = evaluation.load_images(dataset, "test", binarize,
                                        images_file=other)
    if other == "noise" and binarize != "none":
      outliers.images = input_pipeline.static_binarize(outliers.images,
                                                       FLAGS.seed)
    figure, area = plots.anomaly(model, inliers, outliers, FLAGS.seed)
    logging.info("AUROC of -ELBO, %s vs %s: %.4f", inliers.description,
                 outliers.description, area)
  plots.save(figure, FLAGS.out)
  logging.info("Wrote %s.", FLAGS.out)


def run_main():
  _cli.run(main)


if __name__ == "__main__":
  run_main()
