"""tfvae: variational autoencoders in TensorFlow 2 on TensorFlow Probability.

Models are `tf.Module`s whose encoder, prior and decoder are TFP distributions;
training is a `tf.function` step under a `tf.distribute.Strategy` with
`tf.train.Checkpoint`s; exports are SavedModels whose signatures give the
decoder on its own.
"""
from tfvae import config
from tfvae import data
from tfvae import distribute
from tfvae import errors
from tfvae import export
from tfvae import images
from tfvae import likelihoods
from tfvae import models
from tfvae import nets
from tfvae import objectives
from tfvae import runs
from tfvae import training
from tfvae.config import Config
from tfvae.errors import TfvaeError
from tfvae.models import VAE
from tfvae.models import build_model
from tfvae.objectives import elbo
from tfvae.objectives import iwae_bound

__all__ = [
    "Config",
    "TfvaeError",
    "VAE",
    "build_model",
    "config",
    "data",
    "distribute",
    "elbo",
    "errors",
    "export",
    "images",
    "iwae_bound",
    "likelihoods",
    "models",
    "nets",
    "objectives",
    "runs",
    "training",
]
