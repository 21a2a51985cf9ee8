"""Small real data and helpers shared by tfvae's tests."""
import functools
import os
import subprocess
import sys

from tfvae import data

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
    data.write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte"),
                   split.images[..., 0])
    data.write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte"),
                   split.labels.astype("uint8"))
  return directory


def run_tool(module, *args, timeout=300, env=None):
  """Runs `python -m module args` from the repo root; returns CompletedProcess."""
  full_env = dict(os.environ, **(env or {}))
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO,
                        capture_output=True, text=True, timeout=timeout,
                        env=full_env)
