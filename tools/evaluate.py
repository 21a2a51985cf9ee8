r"""Evaluates a trained model: ELBO, importance-weighted NLL, latent usage.

  tfvae-evaluate --model=checkpoints/fm_mlp --split=test \
      --num_importance_samples=1000 --out=metrics.json

Reports over the whole split: the mean ELBO, rate (KL) and distortion; the
importance-weighted estimate of log p(x) (Burda et al., 2015) with k samples
per example, as NLL in nats and bits/dim; reconstruction MSE and BCE; the
active units (Cov_x(E_q[z_u|x]) > 0.01) and the KL of each latent dimension.
The test split of a binarised run is binarised once with a fixed seed, as in
training. The encoder runs once per batch and the importance samples are
decoded in chunks (--chunk_size) inside one compiled call per batch, so
k = 5000 fits in memory and takes minutes (BENCHMARKS.md).
"""
from absl import app
from absl import flags
from absl import logging

from tfvae import errors
from tools import _cli

# Executed on first use, so that --help and usage errors start no TensorFlow.
evaluation = _cli.lazy_import("tfvae.evaluation")
trained = _cli.lazy_import("tfvae.trained")

flags.DEFINE_string("model", None,
                    "A run directory (its newest intact checkpoint) or a "
                    "SavedModel export (a version directory, or the parent "
                    "of numbered versions: the highest is used).")
flags.DEFINE_string("split", "test", "Split to evaluate: train or test.")
flags.DEFINE_integer("num_importance_samples", 1000,
                     "k, importance samples per example for the NLL "
                     "estimate (the literature uses 5000).")
flags.DEFINE_integer("chunk_size", 500,
                     "Importance samples decoded at once, in one batched "
                     "decoder call of chunk_size * batch_size latent points "
                     "(larger is faster); memory grows with it (500 * 100 "
                     "MNIST-sized images: about 1 GB).")
flags.DEFINE_integer("batch_size", 100, "Examples per batch.")
flags.DEFINE_integer("seed", 0,
                     "Seed of every sample drawn; the same seed gives the "
                     "same figures.")
flags.DEFINE_integer("max_examples", 0,
                     "Evaluate only the first this many examples (0: all).")
flags.DEFINE_string("dataset", None,
                    "Data set (fashion_mnist or mnist); default the run's, "
                    "or for an export without a config, fashion_mnist.")
flags.DEFINE_string("binarize", None,
                    "Binarisation the model was trained with (none, static, "
                    "dynamic); default the run's, or none for an export "
                    "without a config. Binarised runs are evaluated on the "
                    "fixed binarisation of the split.")
flags.DEFINE_string("data_dir", None,
                    "Directory searched first for the data set's files.")
flags.DEFINE_bool("jit", False,
                  "Compile the importance-sampling chunks with XLA (often "
                  "faster on CPU for run directories; ignored for exports).")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16", "float16"],
                  "Compute dtype of a run's networks (not of exports): "
                  "bfloat16 was 1.06x faster on a CPU with AVX512_BF16 "
                  "and moved the NLL by a few hundredths of a nat "
                  "(BENCHMARKS.md); log-probabilities and sums stay float32 "
                  "or wider.")
flags.DEFINE_string("out", None,
                    "Write the metrics as JSON to this file (atomically).")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.model:
    raise errors.TfvaeError("--model is required: a run directory or an "
                            "export")
  if FLAGS.num_importance_samples < 1:
    raise errors.TfvaeError(
        f"--num_importance_samples={FLAGS.num_importance_samples}: must be "
        "at least 1")
  if FLAGS.split not in ("train", "test"):
    raise errors.TfvaeError(f"--split={FLAGS.split}: no such split; choose "
                            "train or test")
  loaded = trained.open_for_scoring(FLAGS.model, jit=FLAGS.jit,
                                    dtype=FLAGS.dtype)
  config = loaded.config
  dataset = FLAGS.dataset or (config.dataset if config else "fashion_mnist")
  binarize = FLAGS.binarize or (config.binarize if config else "none")
  images = evaluation.load_images(dataset, FLAGS.split, binarize,
                                  FLAGS.data_dir,
                                  config=None if FLAGS.dataset else config)
  if FLAGS.max_examples > 0:
    images.images = images.images[:FLAGS.max_examples]
    images.labels = images.labels[:FLAGS.max_examples]
  metrics = evaluation.evaluate(
      loaded.model, images, FLAGS.num_importance_samples, FLAGS.chunk_size,
      FLAGS.batch_size, FLAGS.seed)
  # A run trained on --data is evaluated on those images (load_images).
  if config is not None and config.data and not FLAGS.dataset:
    dataset = config.data
  metrics = {"model": loaded.source, "dataset": dataset,
             "split": FLAGS.split, "binarize": binarize, **metrics}
  print(evaluation.format_table(metrics))
  if FLAGS.out:
    evaluation.write_json(FLAGS.out, metrics)
    logging.info("Wrote %s.", FLAGS.out)


def run_main():
  _cli.run(main)


if __name__ == "__main__":
  run_main()
