"""An independent decoder in numpy: the reference a mapped decoder must match.

`decode` recomputes a `mapping.DecoderSpec` decoder in float64 numpy straight
from the checkpoint arrays, sharing no code with TensorFlow or `nets`, so a
mapped decoder that agrees with it loaded the right arrays into the right
weights.
"""
import math

import numpy as np

from tfvae.migrate import mapping


def _sigmoid(x):
  return 0.5 * (1.0 + np.tanh(0.5 * x))


# SELU's constants (Klambauer et al. 2017), as tf.nn.selu uses them.
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946

NUMPY_ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "selu": lambda x: _SELU_SCALE * np.where(
        x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0.0))),
    "sigmoid": _sigmoid,
    "softplus": lambda x: np.logaddexp(0.0, x),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),
    "gelu": lambda x: 0.5 * x * (1.0 + np.vectorize(math.erf)(
        x / math.sqrt(2.0))),
    "swish": lambda x: x * _sigmoid(x),
}


def _conv2d_same(x, w):
  """Stride-1 SAME convolution: x [B, H, W, I], w [k, k, I, O]."""
  k = w.shape[0]
  before = (k - 1) // 2
  padded = np.pad(x, [(0, 0), (before, k - 1 - before),
                      (before, k - 1 - before), (0, 0)])
  height, width = x.shape[1:3]
  out = np.zeros(x.shape[:3] + (w.shape[-1],))
  for a in range(k):
    for b in range(k):
      out += padded[:, a:a + height, b:b + width, :] @ w[a, b]
  return out


def _conv2d_transpose_same(x, w, out_hw, stride):
  """SAME transposed convolution: x [B, h, w, I], w [k, k, O, I].

  The adjoint of a SAME convolution with `stride` from [out_hw] to [h, w]:
  input pixel (i, j) adds x[i, j] w[a, b]^T to output pixel
  (i * stride + a - top, j * stride + b - left), where (top, left) is the
  padding that convolution puts before each spatial dimension.
  """
  k = w.shape[0]
  height, width = out_hw
  top = max((x.shape[1] - 1) * stride + k - height, 0) // 2
  left = max((x.shape[2] - 1) * stride + k - width, 0) // 2
  out = np.zeros((x.shape[0], height, width, w.shape[2]))
  for i in range(x.shape[1]):
    for j in range(x.shape[2]):
      contribution = np.einsum("bi,xyoi->bxyo", x[:, i, j, :], w)
      for a in range(k):
        r = i * stride + a - top
        if not 0 <= r < height:
          continue
        for b in range(k):
          c = j * stride + b - left
          if 0 <= c < width:
            out[:, r, c, :] += contribution[:, a, b, :]
  return out


def decode(spec, weights, z):
  """Decodes z in numpy (float64) from the raw checkpoint arrays.

  Args:
    spec: The `DecoderSpec`.
    weights: Dict weight name (see `mapping.weight_names`) -> array.
    z: [B, latent_size].

  Returns:
    float64 [B, H, W, C]: the pixel means.
  """
  act = NUMPY_ACTIVATIONS[spec.activation]
  arrays = [np.asarray(weights[name], np.float64)
            for name in mapping.weight_names(spec)]
  x = np.asarray(z, np.float64)
  if spec.network == "mlp":
    layers = list(zip(arrays[0::2], arrays[1::2]))
    for i, (w, b) in enumerate(layers):
      x = x @ w + b
      if i < len(layers) - 1:
        x = act(x)
  else:
    dense_w, dense_b, up_w, up_b, out_w, out_b = arrays
    height, width, _ = spec.image_shape
    x = act(x @ dense_w + dense_b).reshape(
        (-1, math.ceil(height / 2), math.ceil(width / 2),
         spec.conv_channels[0]))
    x = act(_conv2d_transpose_same(x, up_w, (height, width), 2) + up_b)
    x = _conv2d_same(x, out_w) + out_b
  x = x.reshape((-1, *spec.image_shape))
  return _sigmoid(x) if spec.likelihood == "bernoulli" else x
