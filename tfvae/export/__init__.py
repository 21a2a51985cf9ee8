"""SavedModel exports in TF Serving's versioned layout, written atomically.

One module per concept:

  versions             an export directory's numbered versions, atomic
                       publishing, finding a SavedModel, the provenance
                       file (`METADATA_FILE`)
  signature_functions  the exported signatures of each model kind and part
  verify               warmup replay, example inputs, device pins
  warmup               TF Serving warmup records (`assets.extra/`)
  writer               `export_model` and `export_run`, which put those
                       together

The modules are not named `publish` and `signatures` because those names
are the functions below.

The names below are the public API (`from tfvae import export;
export.export_run(...)`).
"""
from tfvae.export import signature_functions
from tfvae.export import verify
from tfvae.export import versions
from tfvae.export import warmup
from tfvae.export import writer
from tfvae.export.signature_functions import AUTOENCODER_SIGNATURES
from tfvae.export.signature_functions import Capabilities
from tfvae.export.signature_functions import DEFAULT_SIGNATURE
from tfvae.export.signature_functions import PART_SIGNATURES
from tfvae.export.signature_functions import PARTS
from tfvae.export.signature_functions import capabilities
from tfvae.export.signature_functions import check_part
from tfvae.export.signature_functions import export_module
from tfvae.export.signature_functions import generator_functions
from tfvae.export.signature_functions import refuse_generation
from tfvae.export.signature_functions import serving_function
from tfvae.export.signature_functions import signatures
from tfvae.export.verify import device_pins
from tfvae.export.verify import example_inputs
from tfvae.export.verify import replay_warmup
from tfvae.export.versions import METADATA_FILE
from tfvae.export.versions import SERVING_TAG
from tfvae.export.versions import existing_versions
from tfvae.export.versions import find_saved_model
from tfvae.export.versions import metadata_path
from tfvae.export.versions import next_version
from tfvae.export.versions import publish
from tfvae.export.versions import read_metadata
from tfvae.export.versions import write_metadata
from tfvae.export.writer import export_model
from tfvae.export.writer import export_run
from tfvae.export.writer import run_class_names

__all__ = [
    "AUTOENCODER_SIGNATURES",
    "Capabilities",
    "DEFAULT_SIGNATURE",
    "METADATA_FILE",
    "PARTS",
    "PART_SIGNATURES",
    "SERVING_TAG",
    "capabilities",
    "check_part",
    "device_pins",
    "example_inputs",
    "existing_versions",
    "export_model",
    "export_module",
    "export_run",
    "find_saved_model",
    "generator_functions",
    "metadata_path",
    "next_version",
    "publish",
    "read_metadata",
    "refuse_generation",
    "replay_warmup",
    "run_class_names",
    "serving_function",
    "signature_functions",
    "signatures",
    "verify",
    "versions",
    "warmup",
    "write_metadata",
    "writer",
]
