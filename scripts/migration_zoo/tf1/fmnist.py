"""Shared by the TF1 zoo scripts: Fashion-MNIST from the IDX files, x/255 flattened,
as a user would load it; the command line; reference.json."""
import argparse, gzip, json, os
import numpy as np
D = "/usr/share/datasets/fashion-mnist"
def parse_args(default_steps):
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--out", required=True, help="directory for the checkpoint and reference.json")
  p.add_argument("--steps", type=int, default=default_steps, help="training steps (default %(default)s)")
  p.add_argument("--data_dir", default=D, help="directory of the Fashion-MNIST IDX .gz files")
  args = p.parse_args()
  os.makedirs(args.out, exist_ok=True)
  return args
def load(split, data_dir=D):
  name = "train" if split == "train" else "t10k"
  with gzip.open(os.path.join(data_dir, f"{name}-images-idx3-ubyte.gz")) as f:
    x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)
  return (x / 255.0).astype(np.float32)
def batches(x, n, seed=0):
  rng = np.random.RandomState(seed)
  while True:
    idx = rng.permutation(len(x))
    for i in range(0, len(x) - n + 1, n):
      yield x[idx[i:i + n]]
def write_reference(path, losses, extra=None):
  d = {"test_neg_elbo": float(np.mean(losses)), "n": int(len(losses))}
  d.update(extra or {})
  json.dump(d, open(path, "w"), indent=1)
  print("reference", d)
