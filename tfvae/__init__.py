"""tfvae: variational autoencoders in TensorFlow 2 on TensorFlow Probability.

Models are `tf.Module`s whose encoder, prior and decoder are TFP distributions;
training is a `tf.function` step under a `tf.distribute.Strategy` with
`tf.train.Checkpoint`s; exports are SavedModels whose signatures give the
decoder on its own.
"""
from tfvae import autoencoders
from tfvae import checkpoints
from tfvae import config
from tfvae import data
from tfvae import denoising
from tfvae import distribute
from tfvae import download
from tfvae import errors
from tfvae import evaluation
from tfvae import export
from tfvae import generation
from tfvae import idx
from tfvae import images
from tfvae import input_pipeline
from tfvae import launch
from tfvae import legacy
from tfvae import likelihoods
from tfvae import mapping
from tfvae import models
from tfvae import nets
from tfvae import objectives
from tfvae import optimizers
from tfvae import plots
from tfvae import presets
from tfvae import run_outputs
from tfvae import runs
from tfvae import train_step
from tfvae import training
from tfvae import warmup
from tfvae.autoencoders import Autoencoder
from tfvae.config import Config
from tfvae.errors import TfvaeError
from tfvae.models import CVAE
from tfvae.models import VAE
from tfvae.models import build_model
from tfvae.objectives import elbo
from tfvae.objectives import iwae_bound

__all__ = [
    "Autoencoder",
    "CVAE",
    "Config",
    "TfvaeError",
    "VAE",
    "autoencoders",
    "build_model",
    "checkpoints",
    "config",
    "data",
    "denoising",
    "distribute",
    "download",
    "elbo",
    "errors",
    "evaluation",
    "export",
    "generation",
    "idx",
    "images",
    "input_pipeline",
    "iwae_bound",
    "launch",
    "legacy",
    "likelihoods",
    "mapping",
    "models",
    "nets",
    "objectives",
    "optimizers",
    "plots",
    "presets",
    "run_outputs",
    "runs",
    "train_step",
    "training",
    "warmup",
]
