"""Optimizers whose per-variable update is one fused kernel.

tf_keras' optimizers write the update of each variable as a chain of
element-wise ops (square, scale, add, rsqrt, multiply, assign, ...). On a CPU
each op is a separate pass over the variable, its slots and its gradient, so
for a small model at a small batch the update is a large share of the
training step (BENCHMARKS.md, "What each mechanism gained"). The
classes here are the same tf_keras optimizers -- same hyper-parameters,
clipping, `tf.distribute` handling and checkpointed slots -- whose dense
update is TensorFlow's fused training kernel (`ResourceApplyRMSProp`,
`ResourceApplyAdam`, the kernels `tf.compat.v1.train` optimizers run): one
pass per variable. The arithmetic is the same; only the rounding of the last
bit can differ. Sparse gradients and the options the kernels lack (centred
RMSProp, momentum, AMSGrad, adaptive epsilon) take tf_keras' own path.
"""
import tensorflow as tf
import tf_keras


class RMSProp(tf_keras.optimizers.RMSprop):
  """tf_keras RMSprop with a fused dense update.

  ms <- rho * ms + (1 - rho) * g^2;  var <- var - lr * g / sqrt(ms + eps).

  The fused kernel also writes a momentum accumulator, mom <- momentum *
  mom + lr * g / sqrt(ms + eps), here with momentum 0: a scratch variable
  per model variable whose value never matters (it is overwritten at every
  step). It is kept out of checkpoints, so they hold exactly tf_keras'
  RMSprop state and runs checkpointed by either optimizer restore into the
  other.

  Args:
    learning_rate: Step size (a float or a schedule).
    **kwargs: As for `tf_keras.optimizers.RMSprop`; `jit_compile` is off.
  """

  def __init__(self, learning_rate=0.001, **kwargs):
    kwargs.setdefault("jit_compile", False)
    super().__init__(learning_rate, **kwargs)
    self._fused = not self.centered and not self.momentum

  def build(self, var_list):
    if getattr(self, "_built", False):
      return
    super().build(var_list)
    if self._fused:
      # _no_dependency: scratch, not optimizer state (see the class doc).
      self._scratch = self._no_dependency([
          tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False,
                      name=f"{self._var_key(v).split(':')[0]}/scratch")
          for v in var_list])

  def update_step(self, gradient, variable):
    if not self._fused or isinstance(gradient, tf.IndexedSlices):
      return super().update_step(gradient, variable)
    index = self._index_dict[self._var_key(variable)]
    return tf.raw_ops.ResourceApplyRMSProp(
        var=variable.handle, ms=self._velocities[index].handle,
        mom=self._scratch[index].handle,
        lr=tf.cast(self.learning_rate, variable.dtype),
        rho=tf.cast(self.rho, variable.dtype),
        momentum=tf.zeros([], variable.dtype),
        epsilon=tf.cast(self.epsilon, variable.dtype), grad=gradient)


class Adam(tf_keras.optimizers.Adam):
  """tf_keras Adam with a fused dense update.

  m <- m + (1 - b1) * (g - m);  v <- v + (1 - b2) * (g^2 - v);
  var <- var - lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps),
  t the 1-based step.

  Args:
    learning_rate: Step size (a float or a schedule).
    **kwargs: As for `tf_keras.optimizers.Adam`; `jit_compile` is off.
  """

  def __init__(self, learning_rate=0.001, **kwargs):
    kwargs.setdefault("jit_compile", False)
    super().__init__(learning_rate, **kwargs)
    self._fused = not self.amsgrad and not self.adaptive_epsilon

  def update_step(self, gradient, variable):
    if not self._fused or isinstance(gradient, tf.IndexedSlices):
      return super().update_step(gradient, variable)
    index = self._index_dict[self._var_key(variable)]
    dtype = variable.dtype
    local_step = tf.cast(self.iterations + 1, dtype)
    beta_1 = tf.cast(self.beta_1, dtype)
    beta_2 = tf.cast(self.beta_2, dtype)
    return tf.raw_ops.ResourceApplyAdam(
        var=variable.handle, m=self._momentums[index].handle,
        v=self._velocities[index].handle,
        beta1_power=tf.pow(beta_1, local_step),
        beta2_power=tf.pow(beta_2, local_step),
        lr=tf.cast(self.learning_rate, dtype), beta1=beta_1, beta2=beta_2,
        epsilon=tf.cast(self.epsilon, dtype), grad=gradient)
