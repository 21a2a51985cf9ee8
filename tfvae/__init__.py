"""tfvae: variational autoencoders in TensorFlow 2 on TensorFlow Probability.

Models are `tf.Module`s whose encoder, prior and decoder are TFP distributions;
training is a `tf.function` step under a `tf.distribute.Strategy` with
`tf.train.Checkpoint`s; exports are SavedModels whose signatures give the
decoder on its own.

The names below are imported when first used (PEP 562), so `import tfvae`
costs nothing: a program's `--help`, and the modules that need no TensorFlow
(`config`, `kinds`, `errors`), do not start TensorFlow, matplotlib or TF1's
protobufs.
"""
import importlib

_SUBMODULES = (
    "autoencoders",
    "config",
    "data",
    "denoising",
    "distribute",
    "download",
    "errors",
    "evaluation",
    "export",
    "generation",
    "idx",
    "image_sources",
    "images",
    "input_pipeline",
    "kinds",
    "launch",
    "likelihoods",
    "migrate",
    "models",
    "nets",
    "objectives",
    "optimizers",
    "plots",
    "precision",
    "presets",
    "rng",
    "run_outputs",
    "runs",
    "train_step",
    "trained",
    "training",
)

# Public name -> the submodule that defines it.
_DEFINED_IN = {
    "Autoencoder": "autoencoders",
    "CVAE": "models",
    "Config": "config",
    "TfvaeError": "errors",
    "VAE": "models",
    "build_model": "kinds",
    "elbo": "objectives",
    "iwae_bound": "objectives",
}

__all__ = sorted([*_SUBMODULES, *_DEFINED_IN])


def __getattr__(name):
  """Imports a submodule, or the one defining a public name, on first use."""
  if name in _SUBMODULES:
    return importlib.import_module(f"{__name__}.{name}")
  if name in _DEFINED_IN:
    module = importlib.import_module(f"{__name__}.{_DEFINED_IN[name]}")
    return getattr(module, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
  return sorted({*globals(), *__all__})
