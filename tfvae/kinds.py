"""The model kinds tfvae can build and train, in one registry.

A `Kind` says how to build a model and its training objective from a
`config.Config`, and what the model can do. Everything that asks "which
kinds..." (flags, checks, `build_model`, `build_objective`) asks this
module: adding a kind is its model class plus one `register` call.

  vae             ELBO; generates                          (models.VAE)
  iwae            importance-weighted bound; generates     (models.VAE)
  cvae            ELBO conditional on a class label        (models.CVAE)
  ae              deterministic autoencoder                (autoencoders)
  denoising_ae    ... trained to undo a corruption
  sparse_ae       ... with a sparsity penalty on the code
  contractive_ae  ... with a penalty on the encoder Jacobian

This module imports without TensorFlow, so that flag definitions and --help
can list the kinds and likelihoods cheaply. The builders of the built-in
kinds import the model modules when first called; the arrow points one way
(models, autoencoders and objectives never import kinds).
"""
import dataclasses
import functools
from typing import Any, Callable

# The likelihoods of `likelihoods.get`, for the --likelihood flag, with
# their help text. They are listed here because the flag needs them before
# (and without) TensorFlow; a likelihood is its registered class in
# likelihoods.py plus its line here (tests/test_kinds.py checks both agree).
_LIKELIHOODS = {
    "bernoulli": "Bernoulli pixels by logits",
    "continuous_bernoulli": "continuous Bernoulli, for grey levels",
    "gaussian": "Gaussian with a fixed scale (see --gaussian_scale)",
    "gaussian_learned": "Gaussian with a per-pixel scale the decoder predicts",
    "gaussian_identity": "Gaussian with a fixed scale whose mean is the "
                         "decoder's output unsquashed (migrated models)",
    "gaussian_log_variance": "Gaussian with a per-pixel log-variance the "
                             "decoder predicts: sigmoid mean, scale "
                             "exp(v / 2), v clipped to [-15, 15]",
    "gaussian_log_variance_identity": "gaussian_log_variance with the mean "
                                      "unsquashed (migrated models)",
}


@dataclasses.dataclass(frozen=True)
class Kind:
  """A model kind: how to build it from a config, and what it can do.

  Attributes:
    name: The --model value.
    description: One line for the --model help text.
    build_model: config -> the model (a `tf.Module`); `config.image_shape`
      is set.
    build_objective: config -> the `objectives.Objective` it trains on.
    can_generate: Whether the model has a prior to sample.
    conditional: Whether the model takes a class label with each image.
    scored: Whether it has an ELBO and an importance-weighted NLL, as
      evaluation and the latent-space plots need.
    autoencoder: Whether it is a deterministic autoencoder (a code, no
      prior).
  """
  name: str
  description: str
  build_model: Callable[[Any], Any]
  build_objective: Callable[[Any], Any]
  can_generate: bool = True
  conditional: bool = False
  scored: bool = False
  autoencoder: bool = False


# name -> Kind, in registration order (the order --help lists them).
_KINDS = {}


def register(kind):
  """Adds `kind` to the registry; returns it.

  Raises:
    ValueError: If a kind of the same name is registered already.
  """
  if kind.name in _KINDS:
    raise ValueError(f"model kind {kind.name!r} is registered already")
  _KINDS[kind.name] = kind
  return kind


def unregister(name):
  """Removes the kind called `name` (tests register toy kinds and leave).

  Raises:
    KeyError: If there is no such kind.
  """
  del _KINDS[name]


def names():
  """The registered kind names, a tuple in registration order."""
  return tuple(_KINDS)


def get(name):
  """The `Kind` called `name`.

  Raises:
    ValueError: naming the choices, if there is no such kind.
  """
  try:
    return _KINDS[name]
  except KeyError:
    raise ValueError(f"unknown model {name!r}; choose one of "
                     f"{', '.join(_KINDS)}") from None


def likelihood_names():
  """The likelihood names (see `likelihoods.get`), a tuple."""
  return tuple(_LIKELIHOODS)


def likelihood_description(name):
  """One line on the likelihood `name`, for the --likelihood help text."""
  return _LIKELIHOODS[name]


def build_model(config):
  """Builds the model a `config.Config` (with `image_shape` set) describes.

  Raises:
    ValueError: If `config.image_shape` is unset or the kind unknown.
  """
  if config.image_shape is None:
    raise ValueError("config.image_shape must be set (from the data set)")
  return get(config.model).build_model(config)


def build_objective(config):
  """The training objective of a `config.Config`'s model kind."""
  return get(config.model).build_objective(config)


# The built-in kinds. Each builder imports the module it needs when called,
# which keeps TensorFlow out of `import tfvae.kinds` (see the docstring).
# pylint: disable=g-import-not-at-top


def _layer_activations(text):
  return None if text is None else tuple(text.split(","))


def _vae(config):
  from tfvae import models
  return models.VAE(config.image_shape, config.latent_dim, config.network,
                    config.hidden_sizes, config.hidden_activation,
                    config.likelihood, config.gaussian_scale,
                    name=config.model, conv_channels=config.conv_channels,
                    decoder_hidden_sizes=config.decoder_hidden_sizes,
                    encoder_activations=_layer_activations(
                        config.encoder_activations),
                    decoder_activations=_layer_activations(
                        config.decoder_activations),
                    posterior_scale=config.posterior_scale,
                    posterior_scale_floor=config.posterior_scale_floor,
                    decoder_conv_channels=config.decoder_conv_channels,
                    encoder_conv_layers=config.encoder_conv_layers,
                    decoder_conv_layers=config.decoder_conv_layers)


def _cvae(config):
  from tfvae import models
  return models.CVAE(config.image_shape, config.num_classes,
                     config.latent_dim, config.network, config.hidden_sizes,
                     config.hidden_activation, config.likelihood,
                     config.gaussian_scale, name=config.model,
                     conv_channels=config.conv_channels)


def _elbo_objective(config, conditional=False):
  from tfvae import objectives
  return objectives.ElboObjective(
      config.beta, objectives.KlSchedule.parse(config.kl_schedule),
      config.free_bits, conditional=conditional)


def _iwae_objective(config):
  from tfvae import objectives
  return objectives.IwaeObjective(config.num_importance_samples)


def _autoencoder(config, code_activation="linear"):
  from tfvae import autoencoders
  return autoencoders.Autoencoder(
      config.image_shape, config.latent_dim, config.network,
      config.hidden_sizes, config.hidden_activation, config.likelihood,
      config.gaussian_scale, code_activation=code_activation,
      kind=config.model, name=config.model,
      conv_channels=config.conv_channels)


def _reconstruction_objective(config):
  from tfvae import autoencoders
  del config  # The plain autoencoder's objective has no options.
  return autoencoders.ReconstructionObjective()


def _denoising_objective(config):
  from tfvae import autoencoders
  return autoencoders.DenoisingObjective(
      autoencoders.Corruption.parse(config.noise))


def _sparse_objective(config):
  from tfvae import autoencoders
  return autoencoders.SparseObjective(
      config.sparsity_weight, config.sparsity_target,
      config.sparsity_penalty)


def _contractive_objective(config):
  from tfvae import autoencoders
  return autoencoders.ContractiveObjective(config.contractive_weight)

# pylint: enable=g-import-not-at-top


register(Kind(
    "vae", "variational autoencoder trained on the ELBO (see --beta, "
    "--kl_schedule, --free_bits)", _vae, _elbo_objective, scored=True))
register(Kind(
    "iwae", "importance-weighted autoencoder (see --num_importance_samples)",
    _vae, _iwae_objective, scored=True))
register(Kind(
    "cvae", "VAE conditional on the class label (see --num_classes)",
    _cvae, functools.partial(_elbo_objective, conditional=True),
    conditional=True))
register(Kind(
    "ae", "deterministic autoencoder", _autoencoder,
    _reconstruction_objective, can_generate=False, autoencoder=True))
register(Kind(
    "denoising_ae", "autoencoder trained to undo a corruption (see --noise)",
    _autoencoder, _denoising_objective, can_generate=False,
    autoencoder=True))
register(Kind(
    "sparse_ae", "autoencoder with a sparse sigmoid code (see --sparsity_*)",
    # The KL sparsity penalty needs codes in (0, 1).
    functools.partial(_autoencoder, code_activation="sigmoid"),
    _sparse_objective, can_generate=False, autoencoder=True))
register(Kind(
    "contractive_ae", "autoencoder with a contractive penalty (see "
    "--contractive_weight)", _autoencoder, _contractive_objective,
    can_generate=False, autoencoder=True))
