r"""Exports a trained run as a SavedModel in TF Serving's versioned layout.

  tfvae-export --run_dir=checkpoints/fm_mlp --export_dir=exports/fm_mlp

writes exports/fm_mlp/<version>/ (saved_model.pb, variables/, assets.extra/
with TF Serving warmup requests) for the run's newest intact checkpoint. The
version is one above the highest already there unless --version is given; an
existing version is never overwritten. The export is written under a
temporary name, loaded back, its warmup requests replayed and compared with
the in-process model, and only then renamed into place.

Signatures: decode, generate, serving_default (with --part=generator the
image mean alone, which TF Serving clients wanting images should call; with
--part=full = decode), and with --part=full
also encode, encode_sample, reconstruct, elbo and log_importance_weights;
a cvae's all take a class `label` as well; a deterministic autoencoder (ae,
denoising_ae, sparse_ae, contractive_ae) exports encode, decode and
reconstruct only, and refuses --part=generator. See README "Exported
signatures".
"""
from absl import flags
from absl import logging

from tfvae import errors
from tfvae import files
from tools import _cli

# Executed on first use, so that --help starts no TensorFlow.
export = _cli.lazy_import("tfvae.export")

flags.DEFINE_string("run_dir", None,
                    "Run directory written by tfvae-train (config.json and "
                    "ckpt/).")
flags.DEFINE_string("export_dir", None,
                    "Export directory: versions are written as "
                    "EXPORT_DIR/<version>/ (TF Serving's model base path).")
flags.DEFINE_string("checkpoint", None,
                    "Checkpoint to export: a prefix (RUN_DIR/ckpt/ckpt-1000) "
                    "or the name of one in RUN_DIR/ckpt (ckpt-1000); default "
                    "the newest intact checkpoint.")
flags.DEFINE_integer("version", None,
                     "Positive integer version to write; default one above "
                     "the highest already in --export_dir. Refused if it "
                     "exists.")
flags.DEFINE_enum("part", "full", ["full", "generator"],
                  "What to export: full (encoder, decoder and bounds: every "
                  "signature) or generator (decode and generate only; the "
                  "file holds no encoder variables; not for autoencoders, "
                  "which cannot generate).")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16", "float16"],
                  "Compute dtype of the networks inside the signatures "
                  "(inputs and outputs stay float32): bfloat16 for CPUs "
                  "with AVX512_BF16 and large decoders (an MLP-sized "
                  "generator measured slower, BENCHMARKS.md), float16 for "
                  "GPUs. Verified against the float32 model within a "
                  "tolerance per dtype (tfvae/precision.py).")
flags.mark_flags_as_required(["run_dir", "export_dir"])

FLAGS = flags.FLAGS


@_cli.flags_only
def main():
  for name in ("run_dir", "export_dir"):
    if not FLAGS[name].value:
      raise errors.TfvaeError(f"--{name}='': must name a directory")
  # Refused before the run is read or anything is created.
  problem = files.unwritable_reason(FLAGS.export_dir, directory=True)
  if problem:
    raise errors.TfvaeError(f"--export_dir={FLAGS.export_dir}: {problem}")
  try:
    path = export.export_run(FLAGS.run_dir, FLAGS.export_dir,
                             checkpoint=FLAGS.checkpoint,
                             version=FLAGS.version, part=FLAGS.part,
                             dtype=FLAGS.dtype)
  except OSError as e:  # e.g. the disk filled up; publish removed its files
    raise errors.TfvaeError(
        f"--export_dir={FLAGS.export_dir}: could not write "
        f"{e.filename or FLAGS.export_dir}: {e.strerror or e}") from None
  logging.info("Exported %s", path)
  print(path)


def run_main():
  _cli.run(main)


if __name__ == "__main__":
  run_main()
