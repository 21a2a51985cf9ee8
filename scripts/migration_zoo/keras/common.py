"""Shared by the Keras zoo scripts: the command line, Fashion-MNIST, the reference test loss."""
import argparse, gzip, json, math, os
import numpy as np

D = "/usr/share/datasets/fashion-mnist"


def parse_args(default_steps):
  """--out (required), --steps (training steps, default the tutorial run's), --data_dir."""
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--out", required=True, help="directory for the saved files and reference.json")
  p.add_argument("--steps", type=int, default=default_steps, help="training steps (default %(default)s)")
  p.add_argument("--data_dir", default=D, help="directory of the Fashion-MNIST IDX .gz files")
  args = p.parse_args()
  os.makedirs(args.out, exist_ok=True)
  return args


def schedule(x_train, batch_size, steps):
  """(x_train, epochs) for model.fit: whole epochs while steps allow, else the first steps batches."""
  per_epoch = math.ceil(len(x_train) / batch_size)
  if steps >= per_epoch:
    return x_train, max(1, round(steps / per_epoch))
  return x_train[:steps * batch_size], 1


def _images(name, data_dir=D):
  with gzip.open(os.path.join(data_dir, name)) as f:
    return np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)


def load(data_dir=D):
  x_train = _images("train-images-idx3-ubyte.gz", data_dir).astype("float32") / 255.
  x_test = _images("t10k-images-idx3-ubyte.gz", data_dir).astype("float32") / 255.
  return x_train, x_test


def reference(out_dir, x_test, encode, decode, scale="log_variance",
              likelihood="bernoulli", gaussian_var=0.5, seed=0, **extra):
  """encode(x) -> (z_mean, raw); decode(z) -> mean [N, 784]. Writes reference.json."""
  rng = np.random.RandomState(seed)
  n = len(x_test)
  losses, recs, kls = [], [], []
  for i in range(0, n, 500):
    x = x_test[i:i + 500]
    m, r = [np.asarray(a, np.float64) for a in encode(x)]
    s = np.exp(0.5 * r) if scale == "log_variance" else np.exp(r)
    z = m + s * rng.normal(size=m.shape)
    p = np.asarray(decode(z.astype("float32")), np.float64).reshape(len(x), -1)
    xf = x.reshape(len(x), -1).astype(np.float64)
    if likelihood == "bernoulli":
      p = np.clip(p, 1e-7, 1 - 1e-7)
      rec = -np.sum(xf * np.log(p) + (1 - xf) * np.log(1 - p), 1)
    else:
      rec = np.sum((xf - p) ** 2 / (2 * gaussian_var)
                   + 0.5 * np.log(2 * np.pi * gaussian_var), 1)
    kl = 0.5 * np.sum(m ** 2 + s ** 2 - 1 - 2 * np.log(s), 1)
    recs.append(rec); kls.append(kl); losses.append(rec + kl)
  out = {"test_neg_elbo": float(np.mean(np.concatenate(losses))),
         "test_distortion": float(np.mean(np.concatenate(recs))),
         "test_rate": float(np.mean(np.concatenate(kls))),
         "images": n, "posterior_samples": 1, "likelihood": likelihood,
         "posterior_scale": scale, **extra}
  with open(os.path.join(out_dir, "reference.json"), "w") as f:
    json.dump(out, f, indent=1)
  print(json.dumps(out))
  return out
