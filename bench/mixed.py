"""The rows of issue 17: mixed precision, lean serving, fast evaluation.

  train ... mixed_bfloat16 vs ...   tfvae --precision=mixed_bfloat16 against
                                    tfvae float32, tf_keras `fit` float32
                                    and `fit` under Keras' own
                                    mixed_bfloat16 policy
  generator serving_default ...     a `--part=generator` export's lean
                                    serving_default (float32 and bfloat16)
                                    against the TF1 session's sess.run(mean)
  generator float32 in tf1 session  the float32 export loaded into a
                                    tf.compat.v1 Session (as TF1 clients
                                    and TF Serving run it), batch 1
  evaluate k=...                    `tfvae-evaluate`'s importance-weighted
                                    NLL on the test split: its rate against
                                    the rate that does the split in 10
                                    minutes, bfloat16 against float32, and
                                    the one-call path against the former
                                    chunk-by-chunk one

Contenders share data and initial weights and run in alternating
repetitions (`timing.alternate`), as in `suite`.
"""
import os
import tempfile
import time

from absl import logging
import numpy as np
import tensorflow as tf

from bench import contenders as contenders_lib
from bench import tf1_reference
from bench import timing
from tfvae import evaluation
from tfvae import export
from tfvae import precision
from tfvae import trained

Row = timing.Row
LATENT_SIZE = contenders_lib.LATENT_SIZE
# tfvae-evaluate's target: the 10,000 test images at k = 5000 in 10 minutes.
TARGET_SECONDS = 600.0
TEST_IMAGES = 10_000
# tfvae-evaluate's batch and chunk sizes (and the former chunk size).
EVAL_BATCH = 100
EVAL_CHUNK = 500
FORMER_CHUNK = 100


def training_rows(dataset, settings):
  """mixed_bfloat16 training against float32 and Keras (largest batches)."""
  rows = []
  cases = [("mlp", settings.mlp_batches[-1])]
  if settings.conv:
    cases.append(("conv", settings.conv_batches[-1]))
  images = contenders_lib.float_images(dataset.train)
  for network, batch in cases:
    examples = (settings.mlp_examples if network == "mlp"
                else settings.conv_examples)
    steps = max(1, min(examples // batch, len(images) // batch - 1))
    logging.info("mixed precision, %s batch %d: %d steps x %d repetitions",
                 network, batch, steps, settings.repetitions)
    ours = contenders_lib.TfvaeTraining(dataset, network, batch,
                                        settings.hidden_size,
                                        precision="mixed_bfloat16")
    tfvae_f32 = contenders_lib.TfvaeTraining(dataset, network, batch,
                                             settings.hidden_size)
    racers = {"mixed_bfloat16": ours, "tfvae float32": tfvae_f32}
    if network == "conv":
      for policy in ("float32", "mixed_bfloat16"):
        racers[f"keras fit {policy}"] = contenders_lib.KerasTraining(
            images, network, batch, settings.hidden_size, ours.model,
            settings.warmup_steps, policy=policy)
    for name, racer in racers.items():
      if name.startswith("keras"):
        racer.examples_per_sec(1)
      else:
        racer.run(min(steps, 2 * racer.config.steps_per_call))
    medians = timing.alternate(
        {name: (lambda r=r: r.examples_per_sec(steps))
         for name, r in racers.items()}, settings.repetitions)
    for name, value in medians.items():
      if name != "mixed_bfloat16":
        rows.append(Row.compare(
            f"train {network} b{batch} mixed_bfloat16 vs {name}",
            medians["mixed_bfloat16"], value, "examples/s", name))
  return rows


def serving_rows(dataset, settings):
  """A generator export's serving_default (float32 and bfloat16) against
  the TF1 session's sess.run(mean), batch 1 latency and batch throughput."""
  ours = contenders_lib.TfvaeTraining(dataset, "mlp", settings.mlp_batches[0],
                                      settings.hidden_size)
  root = tempfile.mkdtemp(prefix="tfvae-bench-")
  served = {}
  paths = {}
  for dtype in ("float32", "bfloat16"):
    paths[dtype] = export.export_model(ours.model, os.path.join(root, dtype),
                                       part="generator", dtype=dtype)
    served[dtype] = tf.saved_model.load(paths[dtype]).signatures[
        "serving_default"]
  # The float32 export run as TF1-style clients (and TF Serving) run it.
  in_session = tf1_reference.SavedModelSession(paths["float32"])
  tf1 = tf1_reference.Tf1MlpVae(int(np.prod(dataset.image_shape)),
                                settings.hidden_size, LATENT_SIZE)
  tf1.set_weights(contenders_lib.mlp_weights(ours.model))

  def contenders(z):
    calls = {f"serving_default {dtype}": (
        lambda f=f: np.asarray(f(z=tf.constant(z))["mean"]))
             for dtype, f in served.items()}
    calls["tf1 session"] = lambda: tf1.decode(z)
    calls["saved_model in session"] = lambda: in_session.run(z)
    return calls

  rows = []
  z1 = np.random.default_rng(1).standard_normal(
      [1, LATENT_SIZE]).astype(np.float32)
  single = contenders(z1)
  logging.info("serving_default latency, batch 1")
  lat = timing.alternate(
      {name: (lambda c=c: timing.latencies(c, settings.latency_calls))
       for name, c in single.items()}, settings.repetitions)
  for dtype in served:
    rows.append(Row.compare(
        f"generator serving_default {dtype} b1 median vs tf1 session",
        lat[f"serving_default {dtype}"][0], lat["tf1 session"][0], "ms",
        "tf1 session", lower_is_better=True,
        note="sess.run(mean) on the same weights"))
  rows.append(Row.compare(
      "generator float32 in tf1 session b1 median vs tf1 session",
      lat["saved_model in session"][0], lat["tf1 session"][0], "ms",
      "tf1 session", lower_is_better=True,
      note="the export's serving_default by tf.compat.v1 loader.load"))
  batch = settings.throughput_batch
  zb = np.random.default_rng(2).standard_normal(
      [batch, LATENT_SIZE]).astype(np.float32)
  big = contenders(zb)
  for call in big.values():
    call()
  n = settings.throughput_calls
  logging.info("serving_default throughput, batch %d", batch)
  thr = timing.alternate(
      {name: (lambda c=c: timing.rate(lambda: [c() for _ in range(n)],
                                      n * batch))
       for name, c in big.items()}, settings.repetitions)
  for dtype in served:
    rows.append(Row.compare(
        f"generator serving_default {dtype} b{batch} vs tf1 session",
        thr[f"serving_default {dtype}"], thr["tf1 session"], "images/s",
        "tf1 session", note="sess.run(mean) on the same weights"))
  tf1.close()
  in_session.close()
  return rows


def _scoring_model(model, dtype):
  precision.set_compute_dtype(model, dtype)
  return trained.NativeModel(model)


def _warm_up(scorer, images):
  """Traces `scorer`'s compiled functions on two images, untimed."""
  few = evaluation.Images(images.images[:2], None, None, "warm-up")
  evaluation.evaluate(scorer, few, 2, 1, EVAL_BATCH, log_every_seconds=60)


def _evaluate(scorer, images, num_samples, chunk=EVAL_CHUNK):
  """(examples/s, mean NLL) of `evaluation.evaluate` on `images`."""
  start = time.perf_counter()
  metrics = evaluation.evaluate(scorer, images, num_samples, chunk,
                                EVAL_BATCH, seed=0, log_every_seconds=60)
  seconds = time.perf_counter() - start
  return len(images.images) / seconds, metrics["nll"]


def evaluation_rows(dataset, settings):
  """tfvae-evaluate's NLL at k = settings.eval_samples on the test split.

  The model is the MLP VAE after `settings.eval_train_steps` steps. The
  first row evaluates `settings.eval_examples` test images in bfloat16
  once (a run of minutes) and compares its rate with the rate that does
  the whole split in 10 minutes; the others compare, on a subset, float32
  and bfloat16 and the former chunk-by-chunk path.
  """
  k = settings.eval_samples
  ours = contenders_lib.TfvaeTraining(dataset, "mlp", settings.mlp_batches[0],
                                      settings.hidden_size)
  ours.run(settings.eval_train_steps)
  model = ours.model
  test = dataset.test
  count = min(settings.eval_examples, len(test.images))
  images = evaluation.Images(test.images[:count], test.labels[:count], None,
                             f"{count} test images")
  fast = _scoring_model(model, "bfloat16")
  _warm_up(fast, images)
  logging.info("evaluate k=%d on %d test images (bfloat16)", k, count)
  rate, nll = _evaluate(fast, images, k)
  needed = TEST_IMAGES / TARGET_SECONDS
  minutes = TEST_IMAGES / rate / 60
  measured = ("the whole test split" if count >= TEST_IMAGES
              else f"{count} images, extrapolated to 10,000")
  rows = [Row.compare(
      f"evaluate k={k} test split bfloat16 vs 10 min target", rate, needed,
      "examples/s", "10,000 in 10 min",
      note=f"{minutes:.1f} min for 10,000 ({measured}); NLL {nll:.2f} nats")]

  subset = min(settings.eval_compare_examples, count)
  part = evaluation.Images(test.images[:subset], test.labels[:subset], None,
                           f"{subset} test images")
  scorers = {"bfloat16": fast, "float32": _scoring_model(model, "float32")}
  former = _Chunked(scorers["float32"])
  for scorer in (scorers["float32"], former):
    _warm_up(scorer, part)
  logging.info("evaluate k=%d on %d test images: float32, bfloat16, the "
               "former chunked path", k, subset)
  nlls = {}

  def run(name, scorer, chunk=EVAL_CHUNK):
    rate, nlls[name] = _evaluate(scorer, part, k, chunk)
    return rate

  medians = timing.alternate(
      {"bfloat16": lambda: run("bfloat16", scorers["bfloat16"]),
       "float32": lambda: run("float32", scorers["float32"]),
       "former": lambda: run("former", former, FORMER_CHUNK)},
      max(1, settings.repetitions // 2))
  rows.append(Row.compare(
      f"evaluate k={k} bfloat16 vs float32", medians["bfloat16"],
      medians["float32"], "examples/s", "float32",
      note=f"{subset} images; NLL {nlls['bfloat16']:.3f} vs "
      f"{nlls['float32']:.3f} nats"))
  rows.append(Row.compare(
      f"evaluate k={k} float32 vs former chunked path", medians["float32"],
      medians["former"], "examples/s", "former",
      note=f"{subset} images; former: encoder per chunk of {FORMER_CHUNK}, "
      f"one call per chunk; NLL {nlls['former']:.3f}"))
  precision.set_compute_dtype(model, "float32")
  return rows


class _Chunked:
  """A `NativeModel` seen without its one-call `log_px`: evaluation then
  calls `log_weights` chunk by chunk, as it did before issue 17."""

  def __init__(self, native):
    self._native = native
    self.latent_size = native.latent_size
    self.image_shape = native.image_shape

  def __getattr__(self, name):
    if name == "log_px":
      raise AttributeError(name)
    return getattr(self._native, name)


def run(dataset, settings):
  """Yields the rows of this module."""
  yield from training_rows(dataset, settings)
  yield from serving_rows(dataset, settings)
  yield from evaluation_rows(dataset, settings)
