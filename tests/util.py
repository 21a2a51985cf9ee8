"""Small real data and helpers shared by tfvae's tests."""
import functools
import os
import subprocess
import sys

import numpy as np

from tfvae import data
from tfvae import idx

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@functools.lru_cache(maxsize=None)
def fashion_mnist():
  """The real Fashion-MNIST (Debian's dataset-fashion-mnist package)."""
  return data.load("fashion_mnist")


def small_fashion_mnist(num_train=512, num_test=128):
  """The first `num_train` / `num_test` real Fashion-MNIST images."""
  full = fashion_mnist()
  return data.Dataset(
      name="fashion_mnist",
      train=data.Split(full.train.images[:num_train],
                       full.train.labels[:num_train]),
      test=data.Split(full.test.images[:num_test],
                      full.test.labels[:num_test]),
      class_names=full.class_names, source="first images of Fashion-MNIST")


def write_small_idx_dir(directory, num_train=512, num_test=128):
  """Writes a slice of Fashion-MNIST as the four IDX files into `directory`."""
  small = small_fashion_mnist(num_train, num_test)
  os.makedirs(directory, exist_ok=True)
  for prefix, split in (("train", small.train), ("t10k", small.test)):
    idx.write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte"),
                  split.images[..., 0])
    idx.write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte"),
                  split.labels.astype("uint8"))
  return directory


def run_tool(module, *args, timeout=300, env=None):
  """Runs `python -m module args` from the repo root; returns CompletedProcess."""
  full_env = dict(os.environ, **(env or {}))
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO,
                        capture_output=True, text=True, timeout=timeout,
                        env=full_env)


def bce(logits, x):
  """-log Bernoulli(x | logits) summed over pixels, in float64 numpy."""
  logits, x = np.asarray(logits, np.float64), np.asarray(x, np.float64)
  per_pixel = np.maximum(logits, 0) - logits * x + np.log1p(
      np.exp(-np.abs(logits)))
  return per_pixel.reshape(per_pixel.shape[0], -1).sum(-1)


def log_normal(z, loc, scale):
  """log N(z | loc, diag(scale^2)) summed over the last axis, float64 numpy."""
  z, loc, scale = (np.asarray(a, np.float64) for a in (z, loc, scale))
  return np.sum(-0.5 * ((z - loc) / scale) ** 2 - np.log(scale)
                - 0.5 * np.log(2 * np.pi), axis=-1)
