"""The benchmark suite: training, FLOP utilisation, generation, input.

Every comparison builds the contenders on the same data and the same
initial weights (tfvae's, copied across), then times them in alternating
repetitions (see `timing.alternate`) and reports medians.
"""
import dataclasses
import os
import subprocess
import sys
import tempfile

from absl import logging
import numpy as np
import tensorflow as tf

from bench import ceilings
from bench import contenders as contenders_lib
from bench import flops as flops_lib
from bench import keras_reference
from bench import mixed
from bench import tf1_reference
from bench import timing
from tfvae import config as config_lib
from tfvae import data
from tfvae import export
from tfvae import image_sources
from tfvae import input_pipeline
from tfvae import launch

Row = timing.Row
# The contenders' model and seed, which the rows' own references share.
LATENT_SIZE = contenders_lib.LATENT_SIZE
SEED = contenders_lib.SEED


@dataclasses.dataclass
class Settings:
  """How much work each measurement does.

  Attributes:
    repetitions: Alternating rounds per comparison (medians reported).
    mlp_batches: Batch sizes of the MLP training rows.
    conv_batches: Batch sizes of the conv training rows.
    mlp_examples: Examples timed per repetition, MLP training.
    conv_examples: Examples timed per repetition, conv training.
    warmup_steps: Untimed steps before the timed ones in each repetition of
      Keras `fit` (its set-up runs inside the call); the others warm up once.
    hidden_size: MLP hidden width.
    mechanism_steps_per_call: steps_per_call of the mechanism rows.
    latency_calls: Batch-1 decode calls per repetition.
    predict_calls: Batch-1 `predict` calls per repetition (it is slow).
    throughput_batch: Batch of the decode throughput rows.
    throughput_calls: Calls per repetition at that batch.
    pipeline_batches: Batches the input-pipeline row draws per repetition.
    matmul_size: Side of the square matmul that measures the peak.
    conv: Whether to run the conv rows.
    images: Whether to run the own-images rows (`image_rows`).
    image_examples: JPEGs (64x64x3) those rows write and read.
    stream_budget_mb: --cache_mb of the streamed-memory row, whose set is 4
      times larger.
    eval_samples: k of the evaluation rows.
    eval_examples: Test images of the evaluation row timed against the
      10-minute target (10,000: the whole split).
    eval_compare_examples: Test images of the float32 / bfloat16 / former
      path evaluation rows.
    eval_train_steps: Training steps of the model the evaluation rows score.
  """
  repetitions: int = 5
  mlp_batches: tuple = (64, 256)
  conv_batches: tuple = (16, 128)
  mlp_examples: int = 25600
  conv_examples: int = 2048
  warmup_steps: int = 5
  hidden_size: int = 512
  mechanism_steps_per_call: int = 100
  latency_calls: int = 1000
  predict_calls: int = 50
  throughput_batch: int = 1024
  throughput_calls: int = 10
  pipeline_batches: int = 900
  matmul_size: int = 2048
  conv: bool = True
  images: bool = True
  image_examples: int = 512
  stream_budget_mb: int = 16
  eval_samples: int = 5000
  eval_examples: int = 10000
  eval_compare_examples: int = 200
  eval_train_steps: int = 937


FULL = Settings()
QUICK = Settings(mlp_examples=3200, conv_examples=256, latency_calls=200,
                 predict_calls=10, throughput_calls=2, pipeline_batches=200,
                 mechanism_steps_per_call=50, image_examples=256,
                 stream_budget_mb=8, eval_examples=300,
                 eval_compare_examples=100, eval_train_steps=300)


# ---------------------------------------------------------------------------
# The rows.


def _steps(examples, batch_size, dataset):
  steps = max(1, examples // batch_size)
  return min(steps, input_pipeline.steps_per_epoch(dataset.train, batch_size))


def training_rows(dataset, settings):
  """Training throughput rows (and FLOP utilisation rows) of the suite.

  The matmul peak is measured before each case and the best figure is the
  peak: on a machine shared with other work a single measurement can land
  in a slow phase and understate it.
  """
  rows, flop_rows = [], []
  peaks = []
  images = contenders_lib.float_images(dataset.train)
  shape = dataset.image_shape
  cases = [("mlp", b) for b in settings.mlp_batches]
  if settings.conv:
    cases += [("conv", b) for b in settings.conv_batches]
  tfvae_rates = {}
  for network, batch in cases:
    examples = (settings.mlp_examples if network == "mlp"
                else settings.conv_examples)
    steps = _steps(examples, batch, dataset)
    logging.info("training %s, batch %d: %d steps x %d repetitions",
                 network, batch, steps, settings.repetitions)
    peaks.append(timing.matmul_peak(settings.matmul_size))
    logging.info("matmul peak %.1f GFLOP/s", peaks[-1])
    ours = contenders_lib.TfvaeTraining(dataset, network, batch,
                                        settings.hidden_size)
    contenders = {"tfvae": ours}
    if network == "mlp":
      contenders["tf1 session"] = contenders_lib.Tf1Training(
          images, batch, settings.hidden_size,
          contenders_lib.mlp_weights(ours.model))
    contenders["keras fit"] = contenders_lib.KerasTraining(
        images, network, batch, settings.hidden_size, ours.model,
        settings.warmup_steps)
    for name, contender in contenders.items():
      if name != "keras fit":
        contender.run(min(steps, 2 * ours.config.steps_per_call))
      else:
        contender.examples_per_sec(1)
    medians = timing.alternate(
        {name: (lambda c=c: c.examples_per_sec(steps))
         for name, c in contenders.items()}, settings.repetitions)
    for name, value in medians.items():
      if name != "tfvae":
        rows.append(Row.compare(f"train {network} b{batch} vs {name}",
                                medians["tfvae"], value, "examples/s",
                                name))
    tfvae_rates[(network, batch)] = medians["tfvae"]
    if isinstance(contenders.get("tf1 session"), contenders_lib.Tf1Training):
      contenders["tf1 session"].reference.close()
    layers = (flops_lib.mlp_vae_layers(shape, (settings.hidden_size,),
                                       LATENT_SIZE) if network == "mlp"
              else flops_lib.conv_vae_layers(shape, LATENT_SIZE))
    per_example = flops_lib.training_flops(layers)
    flop_rows.append((f"flops {network} b{batch} ({per_example / 1e6:.2f} "
                      "MFLOP/ex)", medians["tfvae"] * per_example / 1e9))
  peak = max(peaks)
  rows += [Row.compare(name, achieved, peak, "GFLOP/s", "matmul peak",
                       note="ratio = share of peak")
           for name, achieved in flop_rows]
  return rows, tfvae_rates


def mechanism_rows(dataset, settings):
  """What each training mechanism gains over the former defaults (MLP).

  The baseline is tfvae's step before this suite: one step per call fed by
  a tf.data iterator, tf_keras' RMSprop update, TFP's Bernoulli log-prob, no
  XLA. Each row adds one mechanism to it, then all of today's defaults
  together, then those plus XLA. Every variant trains on the same batches
  with the same noise, so only the speed differs (up to the last bit of
  rounding for the fused update and log-prob, which compute the same
  formulas).
  """
  batch = settings.mlp_batches[0]
  steps = _steps(settings.mlp_examples, batch, dataset)
  k = settings.mechanism_steps_per_call
  former = ("optimizer", "likelihood")
  base = dict(data_on_device=False, steps_per_call=1, jit=False,
              former=former)
  variants = {
      "baseline": base,
      f"steps_per_call={k}": {**base, "steps_per_call": k},
      "data on device": {**base, "data_on_device": True},
      "fused optimizer update": {**base, "former": ("likelihood",)},
      "one-softplus Bernoulli log-prob": {**base, "former": ("optimizer",)},
      f"all of these (defaults; steps_per_call={k})": dict(
          data_on_device=True, steps_per_call=k, jit=False),
      "defaults + jit": dict(data_on_device=True, steps_per_call=k,
                             jit=True),
  }
  logging.info("mechanisms, mlp batch %d: %d variants", batch, len(variants))
  contenders = {name: contenders_lib.TfvaeTraining(dataset, "mlp", batch,
                                                   settings.hidden_size,
                                                   **options)
                for name, options in variants.items()}
  for contender in contenders.values():
    contender.run(min(steps, 2 * contender.config.steps_per_call))
  medians = timing.alternate(
      {name: (lambda c=c: c.examples_per_sec(steps))
       for name, c in contenders.items()}, settings.repetitions)
  return [Row.compare(f"mechanism mlp b{batch}: {name}", value,
                      medians["baseline"], "examples/s", "baseline")
          for name, value in medians.items() if name != "baseline"]

def process_rows(dataset, settings):
  """oneDNN and thread-pool settings, each in a worker process of its own,
  against TensorFlow's defaults (MLP, first batch size)."""
  batch = settings.mlp_batches[0]
  steps = _steps(settings.mlp_examples, batch, dataset)
  variants = {
      "TF defaults": dict(),
      "oneDNN off": dict(environment={"TF_ENABLE_ONEDNN_OPTS": "0"}),
      "inter_op_threads=1": dict(inter_op_threads=1),
      "intra_op_threads=1": dict(intra_op_threads=1),
  }
  logging.info("process settings, mlp batch %d: %d workers", batch,
               len(variants))
  directory = tempfile.mkdtemp(prefix="tfvae-bench-")
  images_path = os.path.join(directory, "train.npy")
  np.save(images_path, dataset.train.images)
  workers = {name: contenders_lib.WorkerProcess(images_path, batch,
                                                settings.hidden_size,
                                                **options)
             for name, options in variants.items()}
  try:
    for worker in workers.values():
      worker.wait_ready()
    medians = timing.alternate(
        {name: (lambda w=w: w.examples_per_sec(steps))
         for name, w in workers.items()}, settings.repetitions)
  finally:
    for worker in workers.values():
      worker.close()
  return [Row.compare(f"setting mlp b{batch}: {name}", value,
                      medians["TF defaults"], "examples/s", "TF defaults")
          for name, value in medians.items() if name != "TF defaults"]


def saved_generator(model, export_dir):
  """Exports `model`'s generator as `tfvae-export --part=generator` does.

  Returns the `decode` signature of the published SavedModel, loaded back
  with `tf.saved_model.load`.
  """
  path = export.export_model(model, export_dir, part="generator")
  return tf.saved_model.load(path).signatures["decode"]


def identity_signature(export_dir):
  """A SavedModel whose `decode` signature returns z unchanged, as "mean".

  Called like the exported generator, it measures what calling a restored
  signature from Python costs by itself: the floor under any decode
  latency in this process.
  """
  module = tf.Module()
  module.decode = tf.function(
      lambda z: {"mean": tf.identity(z)},
      input_signature=[tf.TensorSpec([None, LATENT_SIZE], tf.float32,
                                     name="z")])
  tf.saved_model.save(module, export_dir,
                      signatures={"decode": module.decode})
  return tf.saved_model.load(export_dir).signatures["decode"]


def decode_contenders(model, dataset, settings):
  """The decoders the generation rows time, built from `model`'s weights.

  Returns:
    (contenders, close): `contenders(z, batch)` -> {name: call()} where each
    call decodes the NumPy z [batch, LATENT_SIZE] from scratch (its
    conversion to a tensor or a feed inside the call, as a user's request
    arrives) and returns the pixel means as NumPy; `close()` releases the
    TF1 session.
  """
  decode = saved_generator(model, os.path.join(
      tempfile.mkdtemp(prefix="tfvae-bench-"), "generator"))
  tf1 = tf1_reference.Tf1MlpVae(int(np.prod(dataset.image_shape)),
                                settings.hidden_size, LATENT_SIZE)
  tf1.set_weights(contenders_lib.mlp_weights(model))
  keras_vae, generator = keras_reference.build(
      "mlp", dataset.image_shape, LATENT_SIZE, settings.hidden_size)
  keras_reference.copy_weights_from_tfvae(keras_vae, model)
  floor = identity_signature(os.path.join(
      tempfile.mkdtemp(prefix="tfvae-bench-"), "identity"))

  def contenders(z, batch):
    return {
        # np.asarray: the result as NumPy without the extra copy that
        # EagerTensor.numpy() makes (Session.run hands back its buffer).
        "tfvae": lambda: np.asarray(decode(z=tf.constant(z))["mean"]),
        "tf1 session": lambda: tf1.decode(z),
        "keras model": lambda: np.asarray(generator(tf.constant(z),
                                                    training=False)),
        "keras predict": lambda: generator.predict(z, batch_size=batch,
                                                   verbose=0),
        "identity signature": lambda: np.asarray(
            floor(z=tf.constant(z))["mean"]),
    }

  return contenders, tf1.close


def generation_rows(dataset, settings):
  """Decoder latency (batch 1) and throughput rows, MLP decoder.

  Every contender converts the same NumPy z inside its timed call and hands
  back NumPy pixel means. "keras model" calls the Keras decoder itself;
  "keras predict" adds what `predict` sets up per call (a data adapter and
  its iterator), a separate, labelled row.
  """
  ours = contenders_lib.TfvaeTraining(dataset, "mlp", settings.mlp_batches[0],
                                      settings.hidden_size)
  contenders, close = decode_contenders(ours.model, dataset, settings)
  z1 = np.random.default_rng(1).standard_normal(
      [1, LATENT_SIZE]).astype(np.float32)
  single = contenders(z1, 1)
  expected = single["tf1 session"]().reshape(1, -1)
  for name, call in single.items():
    if name == "identity signature":
      continue
    got = np.reshape(call(), (1, -1))
    if not np.allclose(got, expected, atol=1e-4):
      raise AssertionError(f"{name} decodes differently from the TF1 graph")
  calls = {name: settings.latency_calls for name in single}
  calls["keras predict"] = settings.predict_calls
  logging.info("decode latency, batch 1: %d calls x %d repetitions",
               settings.latency_calls, settings.repetitions)
  lat = timing.alternate(
      {name: (lambda c=c, n=calls[name]: timing.latencies(c, n))
       for name, c in single.items()}, settings.repetitions)
  notes = {"keras predict": "predict() sets up its data pipeline per call"}
  rows = []
  for name in ("tf1 session", "keras model", "keras predict"):
    rows.append(Row.compare(f"decode b1 median vs {name}", lat["tfvae"][0],
                            lat[name][0], "ms", name, lower_is_better=True,
                            note=notes.get(name, "")))
    rows.append(Row.compare(f"decode b1 p99 vs {name}", lat["tfvae"][1],
                            lat[name][1], "ms", name, lower_is_better=True,
                            note=notes.get(name, "")))
  rows.append(Row.compare(
      "decode b1 median vs identity signature", lat["tfvae"][0],
      lat["identity signature"][0], "ms", "identity signature",
      lower_is_better=True, note="reference = the call alone, no work"))
  batch = settings.throughput_batch
  zb = np.random.default_rng(2).standard_normal(
      [batch, LATENT_SIZE]).astype(np.float32)
  big = contenders(zb, batch)
  del big["identity signature"]
  for call in big.values():
    call()
  n = settings.throughput_calls

  def images_per_sec(call):
    return timing.rate(lambda: [call() for _ in range(n)], n * batch)

  logging.info("decode throughput, batch %d", batch)
  thr = timing.alternate({name: (lambda c=c: images_per_sec(c))
                          for name, c in big.items()}, settings.repetitions)
  for name in ("tf1 session", "keras model", "keras predict"):
    rows.append(Row.compare(f"decode b{batch} vs {name}", thr["tfvae"],
                            thr[name], "images/s", name,
                            note=notes.get(name, "")))
  close()
  return rows


def device_feed(contender):
  """What the default training step does to feed itself, without the step.

  With the data on the device (tfvae's default on one replica), each step
  slices its indices from the epoch's permutation and gathers its images
  and labels from the split held on the device, inside the compiled loop
  (`train_step.TrainStep._steps_on_device`). This function does that for
  `num_batches` batches and returns a checksum of what it gathered (the sum
  of the pixels and labels, int64), so that no gather can be dropped.

  Args:
    contender: A `contenders.TfvaeTraining` with `data_on_device`.

  Returns:
    feed(num_batches) -> int, batches of epoch 0 from its first.
  """
  train_step = contender.train_step
  if not train_step.data_on_device:
    raise ValueError("the contender's step does not keep the data on the "
                     "device")
  batch = train_step.batch_size
  order = tf.constant(train_step.epoch_order(0), tf.int32)
  images = train_step._train_images  # pylint: disable=protected-access
  labels = train_step._train_labels  # pylint: disable=protected-access

  @tf.function
  def gather(num_batches):
    checksum = tf.constant(0, tf.int64)
    for i in tf.range(num_batches):
      indices = tf.slice(order, [i * batch], [batch])
      checksum += tf.reduce_sum(tf.cast(tf.gather(images, indices),
                                        tf.int64))
      checksum += tf.reduce_sum(tf.gather(labels, indices))
    return checksum

  return lambda num_batches: int(gather(tf.constant(num_batches)))


def pipeline_rows(dataset, settings, tfvae_rates):
  """The default step's feed alone (data on the device), against the step
  it feeds. Built and traced before the timed window."""
  batch = settings.mlp_batches[0]
  num = min(settings.pipeline_batches,
            input_pipeline.steps_per_epoch(dataset.train, batch))
  ours = contenders_lib.TfvaeTraining(dataset, "mlp", batch,
                                      settings.hidden_size)
  feed = device_feed(ours)
  feed(1)
  medians = timing.alternate(
      {"feed": lambda: timing.rate(lambda: feed(num), num * batch)},
      settings.repetitions)
  return [Row.compare(f"input pipeline b{batch} vs training step",
                      medians["feed"], tfvae_rates[("mlp", batch)],
                      "examples/s", "tfvae train",
                      note="data on device: the step's gather; "
                      "ratio = headroom")]


def _write_jpeg_folder(dataset, directory, count, size=64):
  """`count` training images as colour JPEGs size x size, one folder per
  class (a user's photos, in miniature)."""
  images = tf.image.resize(dataset.train.images[:count], (size, size))
  tint = tf.constant([1.0, 0.7, 0.4])
  images = tf.cast(tf.clip_by_value(tf.round(images * tint), 0, 255),
                   tf.uint8)
  for i, (image, label) in enumerate(zip(images, dataset.train.labels)):
    path = os.path.join(directory, f"class_{label}", f"{i:05d}.jpg")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(path, tf.io.encode_jpeg(image, quality=90))
  return directory


def image_rows(dataset, settings):
  """Your own images: the streamed input pipeline alone (decoding JPEGs
  from a folder, and from TFRecords, every epoch) against the training
  step of a 64x64x3 conv VAE (--conv_channels=32,64,128) on the same
  images held in memory. ratio = headroom of the pipeline."""
  batch = settings.conv_batches[0]
  with tempfile.TemporaryDirectory() as root:
    folder = _write_jpeg_folder(dataset, os.path.join(root, "jpegs"),
                                settings.image_examples)
    prefix = os.path.join(root, "records", "jpegs")
    image_sources.write_tfrecords(folder, prefix, num_shards=4)
    cached = image_sources.load(folder)
    config = config_lib.Config(
        data=folder, network="conv", conv_channels=(32, 64, 128),
        latent_dim=32, likelihood="continuous_bernoulli", batch_size=batch,
        image_shape=cached.image_shape, seed=SEED)
    trainer = launch.build_trainer(config, os.path.join(root, "run"), cached,
                                   tf.distribute.get_strategy())
    steps = trainer.steps_per_epoch - 1
    trainer.train_step.runner(0, 0)(1)
    step_rate = timing.alternate(
        {"step": lambda: timing.rate(
            lambda: trainer.train_step.runner(0, 1)(steps).numpy(),
            steps * batch)}, settings.repetitions)["step"]
    rows = []
    for name, source in (("folder of JPEGs", folder), ("TFRecords", prefix)):
      streamed = image_sources.load(source, cache_mb=1e-6)
      count = input_pipeline.steps_per_epoch(streamed.train, batch) * batch

      def epoch(streamed=streamed):
        for _ in input_pipeline.train_dataset(streamed.train, batch, SEED, 0):
          pass

      epoch()
      rate = timing.alternate({"feed": lambda: timing.rate(epoch, count)},
                              settings.repetitions)["feed"]
      rows.append(Row.compare(
          f"streamed input from a {name} vs conv step 64x64x3 b{batch}",
          rate, step_rate, "examples/s", "tfvae train",
          note="decode each epoch, AUTOTUNE; ratio = headroom"))
    rows.append(streamed_memory_row(dataset, settings, root))
  return rows


# Loads a folder with --cache_mb=BUDGET, reads one training epoch, prints
# the peak RSS of the process in MiB (Linux: ru_maxrss is in KiB).
_PEAK_RSS_CHILD = """
import resource, sys
from tfvae import image_sources, input_pipeline
folder, budget = sys.argv[1], float(sys.argv[2])
dataset = image_sources.load(folder, cache_mb=budget)
for _ in input_pipeline.train_dataset(dataset.train, 16, 0, 0):
  pass
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def _peak_rss_mb(folder, budget_mb):
  result = subprocess.run(
      [sys.executable, "-c", _PEAK_RSS_CHILD, folder, str(budget_mb)],
      capture_output=True, text=True, check=True,
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  return float(result.stdout.strip().splitlines()[-1])


def streamed_memory_row(dataset, settings, root):
  """Peak RSS of a process that streams an epoch of 64x64x3 JPEGs taking 4
  times --cache_mb decoded, against --cache_mb plus the constant: the peak
  of the same process on a set of 64 images (TensorFlow, tf.data)."""
  budget = settings.stream_budget_mb
  count = 4 * budget * 2**20 // (64 * 64 * 3) + 1
  big = _write_jpeg_folder(
      data.Dataset(dataset.name, data.Split(
          np.resize(dataset.train.images, (count, 28, 28, 1)),
          np.resize(dataset.train.labels, count)), dataset.test,
          dataset.class_names, dataset.source),
      os.path.join(root, "big"), count)
  small = _write_jpeg_folder(dataset, os.path.join(root, "small"), 64)
  constant = _peak_rss_mb(small, budget)
  peak = _peak_rss_mb(big, budget)
  return Row.compare(
      f"peak RSS streaming {count} images (4 x --cache_mb={budget})", peak,
      constant + budget, "MiB", "budget + constant", lower_is_better=True,
      note=f"constant {constant:.0f} MiB = the same process on 64 images; "
      "ratio >= 1: under budget + constant")


def run(dataset, settings):
  """Runs the whole suite; yields `Row`s as they are measured."""
  rows, tfvae_rates = training_rows(dataset, settings)
  yield from rows
  yield from mechanism_rows(dataset, settings)
  yield from process_rows(dataset, settings)
  yield from generation_rows(dataset, settings)
  yield from pipeline_rows(dataset, settings, tfvae_rates)
  yield from mixed.run(dataset, settings)
  yield from ceilings.run(dataset, settings)
  if settings.images:
    yield from image_rows(dataset, settings)


TINY = Settings(repetitions=1, mlp_batches=(16,), conv_batches=(8,),
                mlp_examples=64, conv_examples=16, warmup_steps=1,
                hidden_size=16, mechanism_steps_per_call=2, latency_calls=3,
                predict_calls=2, throughput_batch=8, throughput_calls=1,
                pipeline_batches=2, matmul_size=64, images=False,
                image_examples=24, stream_budget_mb=1, eval_samples=10,
                eval_examples=20, eval_compare_examples=10,
                eval_train_steps=2)
