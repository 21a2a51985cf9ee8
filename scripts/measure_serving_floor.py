r"""Where the batch-1 latency of an exported generator goes, path by path.

  python scripts/measure_serving_floor.py [--batch=1] [--calls=2000] \
      [--repetitions=7] [--hidden_size=512] [--show_ops]

Builds the MLP generator of the benchmarks (784-512-2, tanh, Bernoulli;
untrained weights, which change nothing about time), exports it as
`tfvae-export --part=generator` does, and times, side by side in alternating
repetitions (`bench.timing.alternate`), one call of each path on the same
NumPy z [--batch, 2], converted inside the call and returned as NumPy:

  tf1 identity            the TF1 session of `bench/tf1_reference.py`
                          fetching tf.identity of its fed placeholder: a
                          session call that does no work
  tf1 sess.run(mean)      the same session decoding z (the reference)
  tf1 make_callable       the same fetch through Session.make_callable
  identity signature      a restored SavedModel signature returning z
  serving_default         the restored generator's signature
  restored tf.function    the restored object's `serve` function called
                          directly, not through the signature wrapper
  concrete function       that function's concrete function, called with z
  saved_model in session  the SavedModel loaded into a tf.compat.v1.Session
                          (tf.compat.v1.saved_model.loader.load), run by
                          its signature's tensor names, as TF1-style
                          clients (and, in C++, TF Serving) run it
  saved_model make_callable  the same through Session.make_callable

plus the export variants of issue 17 (--variants): serving_default as it
was before (the reshape to images, then the sigmoid), of a bfloat16 export
(weights held in bfloat16), of the former bfloat16 export (float32 weights
cast at every call), and of a float32 export whose serving function is
compiled by XLA (jit_compile=True). --paths restricts the timing to some
paths, e.g. --paths="serving_default,saved_model in session".

Each repetition times --calls calls of a path; the table shows, over the
repetitions, the median of the per-repetition medians and p90s (ms), the
rate in images/s, and each path's median against the TF1 session's
sess.run(mean). With --show_ops it first prints the op types the TF1 graph
and the SavedModel execute in a session (RunMetadata's partition graphs,
after grappler), which show what was fused. With --profile it then runs
--profile_calls more calls of each path under TensorFlow's profiler and
prints where one call's time goes: the Python code around the runtime (a
restored signature's argument handling, numpy conversion), the runtime
call itself (TFE_Py_ExecuteCancelable for a function, SessionRun for a
session) and, inside it, the kernels.
"""
import collections
import os
import sys
import tempfile

from absl import app
from absl import flags
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
flags.DEFINE_integer("batch", 1, "Latent points per call.")
flags.DEFINE_integer("calls", 2000, "Calls per path per repetition.")
flags.DEFINE_integer("repetitions", 7, "Alternating repetitions.")
flags.DEFINE_integer("hidden_size", 512, "Hidden width of the MLP.")
flags.DEFINE_bool("variants", True, "Also time the bfloat16 and XLA export "
                  "variants of issue 17.")
flags.DEFINE_list("paths", None, "Time only these paths (names as in the "
                  "table; the reference is always timed).")
flags.DEFINE_bool("show_ops", False, "Print the op types each session path "
                  "executes (after grappler) before timing.")
flags.DEFINE_bool("profile", False, "After timing, profile each path and "
                  "print where one call's time goes (Python, runtime, "
                  "kernels).")
flags.DEFINE_integer("profile_calls", 300, "Calls per path under --profile.")
FLAGS = flags.FLAGS

LATENT_SIZE = 2
IMAGE_SHAPE = (28, 28, 1)
REFERENCE = "tf1 sess.run(mean)"


def _export(model, root, name, dtype="float32", jit_compile=False):
  """Publishes `model`'s generator; returns the version directory."""
  import tensorflow as tf
  from tfvae import export
  from tfvae import precision
  if name == "bfloat16 cast per call":
    # The export before issue 17: float32 variables cast at every call.
    precision.set_compute_dtype(model, "bfloat16")
    try:
      module = export.export_module(model, "generator")
      path = os.path.join(root, "former_bfloat16")
      tf.saved_model.save(module, path, signatures=export.signatures(module))
    finally:
      precision.set_compute_dtype(model, "float32")
    return path
  if name == "float32 reshape then mean":
    # The serving_default before issue 17: the decoder's outputs reshaped
    # to images, then the sigmoid (a lambda: not a decoder's own method).
    module = export.export_module(model, "generator")
    module.serve = export.serving_function(
        lambda z: model.decoder.outputs(z), LATENT_SIZE)
    path = os.path.join(root, "former_float32")
    tf.saved_model.save(module, path, signatures=export.signatures(module))
    return path
  if jit_compile:
    module = export.export_module(model, "generator")
    module.serve = export.serving_function(
        model.decoder.outputs, LATENT_SIZE, jit_compile=True)
    path = os.path.join(root, "jit")
    tf.saved_model.save(module, path, signatures=export.signatures(module))
    return path
  return export.export_model(model, os.path.join(root, name.replace(" ", "_")),
                             part="generator", dtype=dtype)


def _identity_saved_model(root):
  import tensorflow as tf
  module = tf.Module()
  module.serve = tf.function(
      lambda z: {"mean": tf.identity(z)},
      input_signature=[tf.TensorSpec([None, LATENT_SIZE], tf.float32,
                                     name="z")])
  path = os.path.join(root, "identity")
  tf.saved_model.save(module, path, signatures={"serving_default":
                                                module.serve})
  return path


def _executed_ops(session, fetch, feed):
  """Op type -> count in the partition graphs a session ran for `fetch`."""
  import tensorflow as tf
  v1 = tf.compat.v1
  options = v1.RunOptions(output_partition_graphs=True)
  metadata = v1.RunMetadata()
  session.run(fetch, feed, options=options, run_metadata=metadata)
  counts = collections.Counter()
  for graph_def in metadata.partition_graphs:
    for node in graph_def.node:
      fused = node.attr["fused_ops"].list.s
      counts[node.op + (f"[{'+'.join(s.decode() for s in fused)}]"
                        if fused else "")] += 1
  return dict(sorted(counts.items()))


# Events of the calling thread's line that are the runtime call of a path:
# a function's (eager) or a session's.
_RUNTIME_EVENTS = ("TFE_Py_ExecuteCancelable", "SessionRun")
# Events of the compute threads that are the executor's, not kernels.
_EXECUTOR_EVENTS = ("ExecutorState::Process", "ExecutorDoneCallback",
                    "ThreadpoolListener")


def _profile(call, num_calls):
  """(wall, runtime, conversion, kernels) in microseconds per call of
  `call` under TensorFlow's profiler: the calls' wall time, the time inside
  the runtime call (function or session), inside tf.constant's conversion,
  and the kernels' time (summed over threads)."""
  import glob
  import time
  import tensorflow as tf
  from tensorflow.tsl.profiler.protobuf import xplane_pb2
  logdir = tempfile.mkdtemp(prefix="tfvae-profile-")
  tf.profiler.experimental.start(logdir)
  start = time.perf_counter()
  for _ in range(num_calls):
    call()
  wall = time.perf_counter() - start
  tf.profiler.experimental.stop()
  space = xplane_pb2.XSpace()
  with open(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"),
                      recursive=True)[0], "rb") as f:
    space.ParseFromString(f.read())
  runtime = conversion = kernels = 0
  for plane in space.planes:
    for line in plane.lines:
      for event in line.events:
        name = plane.event_metadata[event.metadata_id].name
        micros = event.duration_ps / 1e6
        # The calling thread's line is named after the process; TF's own
        # threads' lines start with "tf_".
        if not line.name.startswith("tf_"):
          if name in _RUNTIME_EVENTS:
            runtime += micros
          elif name == "tf.constant":
            conversion += micros
        elif (line.name.startswith("tf_Compute")
              and not name.startswith(_EXECUTOR_EVENTS)):
          kernels += micros
  per_call = lambda t: t / num_calls
  return (wall * 1e6 / num_calls, per_call(runtime), per_call(conversion),
          per_call(kernels))


def _paths(model, root, z):
  """name -> call() for every path, and the sessions to close."""
  import tensorflow as tf
  from bench import contenders
  from bench import tf1_reference
  tf1 = tf1_reference.Tf1MlpVae(int(np.prod(IMAGE_SHAPE)), FLAGS.hidden_size,
                                LATENT_SIZE)
  tf1.set_weights(contenders.mlp_weights(model))
  with tf1.graph.as_default():
    identity = tf.identity(tf1.z)
  tf1_callable = tf1.session.make_callable(tf1.decoded_mean, [tf1.z])
  path = _export(model, root, "float32")
  loaded = tf.saved_model.load(path)
  signature = loaded.signatures["serving_default"]
  concrete = loaded.serve.get_concrete_function(
      tf.TensorSpec([None, LATENT_SIZE], tf.float32))
  floor = tf.saved_model.load(_identity_saved_model(root)).signatures[
      "serving_default"]
  in_session = tf1_reference.SavedModelSession(path)
  in_session_callable = in_session.make_callable()
  paths = {
      "tf1 identity": lambda: tf1.session.run(identity, {tf1.z: z}),
      REFERENCE: lambda: tf1.decode(z),
      "tf1 make_callable": lambda: tf1_callable(z),
      "identity signature": lambda: np.asarray(
          floor(z=tf.constant(z))["mean"]),
      "serving_default": lambda: np.asarray(
          signature(z=tf.constant(z))["mean"]),
      "restored tf.function": lambda: np.asarray(
          loaded.serve(tf.constant(z))["mean"]),
      "concrete function": lambda: np.asarray(
          concrete(tf.constant(z))["mean"]),
      "saved_model in session": lambda: in_session.run(z),
      "saved_model make_callable": lambda: in_session_callable(z),
  }
  sessions = [tf1.session, in_session.session]
  if FLAGS.show_ops:
    print("ops executed by the TF1 graph's sess.run(mean):",
          _executed_ops(tf1.session, tf1.decoded_mean, {tf1.z: z}))
    print("ops executed by the SavedModel in a session:",
          _executed_ops(in_session.session, in_session.output,
                        {in_session.input: z}))
  if FLAGS.variants:
    for name, kwargs in (("float32 reshape then mean", {}),
                         ("bfloat16 held weights", {"dtype": "bfloat16"}),
                         ("bfloat16 cast per call", {}),
                         ("float32 jit_compile", {"jit_compile": True})):
      variant_path = _export(model, root, name, **kwargs)
      function = tf.saved_model.load(variant_path).signatures[
          "serving_default"]
      paths[f"serving_default {name}"] = (
          lambda f=function: np.asarray(f(z=tf.constant(z))["mean"]))
      if FLAGS.show_ops:
        variant_session = tf1_reference.SavedModelSession(variant_path)
        sessions.append(variant_session.session)
        print(f"ops executed by the {name} SavedModel in a session:",
              _executed_ops(variant_session.session, variant_session.output,
                            {variant_session.input: z}))
  return paths, sessions


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  from bench import timing
  from tfvae import models
  model = models.VAE(IMAGE_SHAPE, LATENT_SIZE,
                     hidden_sizes=(FLAGS.hidden_size,))
  z = np.random.default_rng(1).standard_normal(
      [FLAGS.batch, LATENT_SIZE]).astype(np.float32)
  root = tempfile.mkdtemp(prefix="tfvae-floor-")
  paths, sessions = _paths(model, root, z)
  if FLAGS.paths:
    unknown = set(FLAGS.paths) - set(paths)
    if unknown:
      raise app.UsageError(f"--paths: unknown {', '.join(sorted(unknown))}; "
                           f"choose among {', '.join(paths)}")
    paths = {name: call for name, call in paths.items()
             if name in FLAGS.paths or name == REFERENCE}
  want = paths[REFERENCE]()
  for name, call in paths.items():
    got = np.asarray(call()).reshape(len(z), -1)
    if name not in ("tf1 identity", "identity signature"):
      tolerance = 5e-2 if "bfloat16" in name else 1e-5
      if not np.allclose(got, want, atol=tolerance):
        raise SystemExit(f"{name} decodes otherwise than {REFERENCE}")
    for _ in range(max(10, FLAGS.calls // 20)):
      call()
  medians = timing.alternate(
      {name: (lambda c=call: timing.latencies(c, FLAGS.calls,
                                              percentile=90))
       for name, call in paths.items()}, FLAGS.repetitions)
  profiles = ({name: _profile(call, FLAGS.profile_calls)
               for name, call in paths.items()} if FLAGS.profile else {})
  for session in sessions:
    session.close()
  reference = medians[REFERENCE][0]
  print(f"batch {FLAGS.batch}, {FLAGS.calls} calls x {FLAGS.repetitions} "
        f"alternating repetitions; load average {os.getloadavg()[0]:.2f}")
  print(f"{'path':<40} {'median ms':>10} {'p90 ms':>8} {'images/s':>10} "
        f"{'vs tf1 sess.run':>15}")
  for name, (median, p90) in medians.items():
    print(f"{name:<40} {median:>10.4f} {p90:>8.4f} "
          f"{FLAGS.batch / median * 1e3:>10.4g} x{reference / median:>14.2f}")
  if profiles:
    print(f"\nunder the profiler, {FLAGS.profile_calls} calls each, "
          "microseconds per call: python = wall - runtime - tf.constant")
    print(f"{'path':<40} {'wall':>8} {'python':>8} {'tf.constant':>11} "
          f"{'runtime':>8} {'kernels':>8}")
    for name, (wall, runtime, conversion, kernels) in profiles.items():
      print(f"{name:<40} {wall:>8.1f} {wall - runtime - conversion:>8.1f} "
            f"{conversion:>11.1f} {runtime:>8.1f} {kernels:>8.1f}")


if __name__ == "__main__":
  app.run(main)
