"""Migration: generators from checkpoints tfvae did not write (or did).

Reading any checkpoint (`reader`), analysing a TF1 meta graph (`graph`, with
the op vocabulary in `ops`), cutting its decode path out into TF2
(`surgery`), mapping a graph-less TF1 checkpoint into a native decoder
(`mapping`, checked against the numpy `reference`), and publishing checked
generators (`publish`), all behind `build_generator` (`build`). Whole
models: a TF1 graph (`anatomy`) or a Keras 2 file (`keras_h5`) read into a
native VAE (`full_model`) and written as a run directory (`run_dir`),
behind `migrate_model`.

This package imports tfvae's core (export, runs, models, nets, likelihoods,
rng, errors); the core never imports it.
"""
from tfvae.migrate import anatomy
from tfvae.migrate import build
from tfvae.migrate import candidates
from tfvae.migrate import crosscheck
from tfvae.migrate import full_model
from tfvae.migrate import graph
from tfvae.migrate import keras_h5
from tfvae.migrate import mapping
from tfvae.migrate import ops
from tfvae.migrate import publish
from tfvae.migrate import reader
from tfvae.migrate import reference
from tfvae.migrate import run_dir
from tfvae.migrate import surgery
from tfvae.migrate.build import build_generator
from tfvae.migrate.build import parse_image_shape
from tfvae.migrate.build import resolve_device
from tfvae.migrate.candidates import find_ends
from tfvae.migrate.full_model import migrate_model
from tfvae.migrate.graph import MetaGraph
from tfvae.migrate.mapping import DecoderSpec
from tfvae.migrate.mapping import match_by_shape
from tfvae.migrate.mapping import parse_mapping
from tfvae.migrate.mapping import read_mapping_file
from tfvae.migrate.publish import DecoderGenerator
from tfvae.migrate.publish import device_pins
from tfvae.migrate.reader import CheckpointReport
from tfvae.migrate.reader import Source
from tfvae.migrate.reader import VariableInfo
from tfvae.migrate.reader import inspect
from tfvae.migrate.reader import read_all
from tfvae.migrate.reader import resolve
from tfvae.migrate.reader import verify
from tfvae.migrate.surgery import DecodePath
from tfvae.migrate.surgery import TF1Generator

__all__ = [
    "CheckpointReport",
    "DecodePath",
    "DecoderGenerator",
    "DecoderSpec",
    "MetaGraph",
    "Source",
    "TF1Generator",
    "VariableInfo",
    "anatomy",
    "build",
    "build_generator",
    "candidates",
    "crosscheck",
    "device_pins",
    "find_ends",
    "full_model",
    "graph",
    "inspect",
    "keras_h5",
    "mapping",
    "match_by_shape",
    "migrate_model",
    "ops",
    "parse_image_shape",
    "parse_mapping",
    "publish",
    "read_all",
    "read_mapping_file",
    "reader",
    "reference",
    "resolve",
    "resolve_device",
    "run_dir",
    "surgery",
    "verify",
]
