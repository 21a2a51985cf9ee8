"""tfvae's command-line programs (absl flag scripts)."""
import os

# TensorFlow's C++ start-up chatter (CUDA probes, CPU feature notes) buries the
# one-line messages these programs print; users can still raise it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
