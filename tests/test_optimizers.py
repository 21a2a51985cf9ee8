"""Tests of tfvae.optimizers: the fused updates against independent math."""
import os
import tempfile

from absl.testing import parameterized
import numpy as np
import tensorflow as tf
import tf_keras

from tfvae import optimizers

SHAPES = ((7, 5), (5,))
LEARNING_RATE = 0.01


def _problem(steps=6, seed=0):
  rng = np.random.default_rng(seed)
  init = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
  grads = [[rng.normal(size=s).astype(np.float32) * (1 + step)
            for s in SHAPES] for step in range(steps)]
  return init, grads


def _run(optimizer, init, grads):
  variables = [tf.Variable(v) for v in init]

  @tf.function
  def step(gs):
    optimizer.apply_gradients(zip(gs, variables))

  for gs in grads:
    step([tf.constant(g) for g in gs])
  return [v.numpy() for v in variables]


def _clip(gs, clip_norm):
  if clip_norm is None:
    return gs
  norm = np.sqrt(sum(np.sum(g ** 2) for g in gs))
  return [g * min(1.0, clip_norm / norm) for g in gs]


def numpy_rmsprop(init, grads, lr, rho=0.9, eps=1e-7, clip_norm=None):
  """RMSProp in float64: ms = rho ms + (1 - rho) g^2; w -= lr g/sqrt(ms+eps)."""
  w = [v.astype(np.float64) for v in init]
  ms = [np.zeros_like(v) for v in w]
  for gs in grads:
    gs = _clip([g.astype(np.float64) for g in gs], clip_norm)
    for i, g in enumerate(gs):
      ms[i] = rho * ms[i] + (1 - rho) * g * g
      w[i] = w[i] - lr * g / np.sqrt(ms[i] + eps)
  return w


def numpy_adam(init, grads, lr, b1=0.9, b2=0.999, eps=1e-7, clip_norm=None):
  """Adam in float64 with the bias correction folded into the step size."""
  w = [v.astype(np.float64) for v in init]
  m = [np.zeros_like(v) for v in w]
  v2 = [np.zeros_like(v) for v in w]
  for t, gs in enumerate(grads, start=1):
    gs = _clip([g.astype(np.float64) for g in gs], clip_norm)
    alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    for i, g in enumerate(gs):
      m[i] = b1 * m[i] + (1 - b1) * g
      v2[i] = b2 * v2[i] + (1 - b2) * g * g
      w[i] = w[i] - alpha * m[i] / (np.sqrt(v2[i]) + eps)
  return w


class FusedOptimizerTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.product(name=["rmsprop", "adam"], clip_norm=[None, 1.0])
  def test_matches_float64_update_rule(self, name, clip_norm):
    init, grads = _problem()
    if name == "rmsprop":
      optimizer = optimizers.RMSProp(LEARNING_RATE, global_clipnorm=clip_norm)
      expected = numpy_rmsprop(init, grads, LEARNING_RATE,
                               clip_norm=clip_norm)
    else:
      optimizer = optimizers.Adam(LEARNING_RATE, global_clipnorm=clip_norm)
      expected = numpy_adam(init, grads, LEARNING_RATE, clip_norm=clip_norm)
    got = _run(optimizer, init, grads)
    for g, e, start in zip(got, expected, init):
      # The updates moved the weights by far more than the tolerance.
      self.assertGreater(np.abs(e - start).max(), 1e-2)
      self.assertAllClose(g, e, rtol=1e-5, atol=1e-6)

  @parameterized.parameters("rmsprop", "adam")
  def test_same_as_tf_keras_and_runs_one_kernel_per_variable(self, name):
    init, grads = _problem(seed=1)
    ours = {"rmsprop": optimizers.RMSProp,
            "adam": optimizers.Adam}[name](LEARNING_RATE)
    theirs = {"rmsprop": tf_keras.optimizers.RMSprop,
              "adam": tf_keras.optimizers.Adam}[name](LEARNING_RATE,
                                                       jit_compile=False)
    for g, t in zip(_run(ours, init, grads), _run(theirs, init, grads)):
      self.assertAllClose(g, t, rtol=1e-6, atol=1e-6)
    variables = [tf.Variable(v) for v in init]
    fresh = type(ours)(LEARNING_RATE)
    fn = tf.function(lambda gs: fresh.apply_gradients(zip(gs, variables)))
    graph = fn.get_concrete_function(
        [tf.TensorSpec(s, tf.float32) for s in SHAPES]).graph
    kernel = {"rmsprop": "ResourceApplyRMSProp",
              "adam": "ResourceApplyAdam"}[name]

    def op_types(graph_def):
      types = [n.op for n in graph_def.node]
      for f in graph_def.library.function:
        types += [n.op for n in f.node_def]
      return types

    types = op_types(graph.as_graph_def())
    self.assertEqual(types.count(kernel), len(SHAPES))
    self.assertNotIn("Rsqrt", types)

  def test_options_without_a_fused_kernel_use_tf_keras_update(self):
    init, grads = _problem(seed=2)
    got = _run(optimizers.RMSProp(LEARNING_RATE, momentum=0.5), init, grads)
    want = _run(tf_keras.optimizers.RMSprop(LEARNING_RATE, momentum=0.5,
                                            jit_compile=False), init, grads)
    for g, w in zip(got, want):
      self.assertAllEqual(g, w)

  @parameterized.parameters("rmsprop", "adam")
  def test_checkpoints_are_interchangeable_with_tf_keras(self, name):
    ours_cls = {"rmsprop": optimizers.RMSProp, "adam": optimizers.Adam}[name]
    theirs_cls = {"rmsprop": tf_keras.optimizers.RMSprop,
                  "adam": tf_keras.optimizers.Adam}[name]
    init, grads = _problem(seed=3)
    directory = tempfile.mkdtemp()
    paths, keys = {}, {}
    for label, cls in (("ours", ours_cls), ("theirs", theirs_cls)):
      variables = [tf.Variable(v) for v in init]
      optimizer = cls(LEARNING_RATE)
      optimizer.apply_gradients(zip([tf.constant(g) for g in grads[0]],
                                    variables))
      paths[label] = tf.train.Checkpoint(
          optimizer=optimizer, variables=variables).save(
              os.path.join(directory, label))
      keys[label] = sorted(n for n, _ in tf.train.list_variables(
          paths[label]))
    self.assertEqual(keys["ours"], keys["theirs"])
    # A run checkpointed by tf_keras' optimizer resumes with ours and takes
    # the same next step.
    for label, cls in (("ours", ours_cls), ("theirs", theirs_cls)):
      variables = [tf.Variable(tf.zeros(s)) for s in SHAPES]
      optimizer = cls(LEARNING_RATE)
      optimizer.build(variables)
      status = tf.train.Checkpoint(optimizer=optimizer,
                                   variables=variables).restore(
                                       paths["theirs"])
      status.assert_existing_objects_matched()
      optimizer.apply_gradients(zip([tf.constant(g) for g in grads[1]],
                                    variables))
      keys[label] = [v.numpy() for v in variables]
    for a, b in zip(keys["ours"], keys["theirs"]):
      self.assertAllClose(a, b, rtol=1e-6, atol=1e-6)


if __name__ == "__main__":
  tf.test.main()
