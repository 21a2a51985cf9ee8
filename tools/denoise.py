r"""Denoises images with a trained model and shows noisy, cleaned, original.

  tfvae-denoise --model=checkpoints/fm_dae --noise=salt_and_pepper:0.1 \
      --out=denoised.png
  tfvae-denoise --model=checkpoints/fm_dae --input=noisy.npy \
      [--reference=clean.npy] --out=denoised.png --cleaned_npy=cleaned.npy

With --noise (and no --input) the run's test split is corrupted with a fixed
seed, denoised, and the mean per-image PSNR of the noisy and of the cleaned
images against the originals is printed. With --input, the given noisy
images are denoised; --reference supplies originals for the picture's third
row and the PSNRs. Any model with reconstructions works (denoising_ae above
all; ae, sparse_ae, contractive_ae and vae too).
"""
from absl import app
from absl import flags
from absl import logging

from tools import _cli

# Executed on first use, so that --help and usage errors start no TensorFlow.
denoising = _cli.lazy_import("tfvae.denoising")

flags.DEFINE_string("model", None, "Run directory of the trained model.")
flags.DEFINE_string("checkpoint", None,
                    "Checkpoint prefix to load (default: the run's newest "
                    "intact checkpoint).")
flags.DEFINE_string("noise", "salt_and_pepper:0.1",
                    "Corruption applied to the test split when --input is "
                    "not given: salt_and_pepper:P, gaussian:S or masking:P.")
flags.DEFINE_integer("seed", 0, "Seed of the corruption.")
flags.DEFINE_string("input", None,
                    "A .npy of noisy images [N, H, W] or [N, H, W, C], uint8 "
                    "0..255 or float in [0, 1], to denoise instead of the "
                    "corrupted test split.")
flags.DEFINE_string("reference", None,
                    "With --input: a .npy of the clean originals (same shape "
                    "and encoding) for the picture and the PSNRs.")
flags.DEFINE_string("data_dir", None,
                    "Where to look for the data set first (default: the "
                    "run's --data_dir, then the usual places).")
flags.DEFINE_integer("num", 8, "Images per row of the picture.")
flags.DEFINE_integer("batch_size", 500, "Images denoised per batch.")
flags.DEFINE_string("out", None,
                    "PNG to write: rows noisy, cleaned and (when known) "
                    "original.")
flags.DEFINE_string("cleaned_npy", None,
                    "Optionally also write the cleaned images, float32 "
                    "[N, H, W, C] in [0, 1], to this .npy.")
flags.mark_flag_as_required("model")
flags.mark_flag_as_required("out")

FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.num <= 0:
    raise app.UsageError(f"--num={FLAGS.num}: must be positive")
  if FLAGS.batch_size <= 0:
    raise app.UsageError(f"--batch_size={FLAGS.batch_size}: must be positive")
  if FLAGS.reference and not FLAGS.input:
    raise app.UsageError("--reference needs --input")
  result = denoising.run(
      FLAGS.model, FLAGS.out, noise=FLAGS.noise, seed=FLAGS.seed,
      input_path=FLAGS.input, reference_path=FLAGS.reference,
      data_dir=FLAGS.data_dir, num=FLAGS.num, batch_size=FLAGS.batch_size,
      checkpoint=FLAGS.checkpoint, cleaned_npy=FLAGS.cleaned_npy)
  logging.info("Wrote %s.", FLAGS.out)
  if "psnr_noisy" in result:
    print(f"PSNR over {result['count']} images ({result['what']}): noisy "
          f"{result['psnr_noisy']:.2f} dB, cleaned "
          f"{result['psnr_cleaned']:.2f} dB (gain "
          f"{result['psnr_cleaned'] - result['psnr_noisy']:+.2f} dB)")


def run_main():
  _cli.run(main)


if __name__ == "__main__":
  run_main()
