"""Counting the FLOPs of the VAEs' dense and convolution layers.

A layer that does M multiply-adds per example forward does M more for the
gradient of its weights and M more for the gradient of its input, unless
its input is the data (the encoder's first layer), which needs none. A
multiply-add is 2 FLOPs. Biases, activations, the loss and the optimizer
update are element-wise and left out: about 3% of the arithmetic for the MLP
at batch 64 (RMSProp's update of 0.8 M parameters, shared by the batch),
under 1% at batch 256 and for the conv VAE.
"""
import dataclasses
import math


@dataclasses.dataclass
class Layer:
  name: str
  macs: int               # multiply-adds per example, forward
  input_grad: bool = True  # whether backprop needs d(loss)/d(input)


def mlp_vae_layers(image_shape, hidden_sizes, latent_size):
  """The dense layers of tfvae's MLP VAE (encoder, then decoder)."""
  pixels = math.prod(image_shape)
  enc = [pixels, *hidden_sizes, 2 * latent_size]
  dec = [latent_size, *reversed(hidden_sizes), pixels]
  layers = [Layer(f"encoder dense {a}x{b}", a * b, input_grad=i > 0)
            for i, (a, b) in enumerate(zip(enc, enc[1:]))]
  layers += [Layer(f"decoder dense {a}x{b}", a * b)
             for a, b in zip(dec, dec[1:])]
  return layers


def conv_vae_layers(image_shape, latent_size, filters=(32, 64, 64, 64),
                    dense_size=32, hidden_channels=64, upsample_channels=32):
  """The layers of tfvae's conv VAE (`nets.ConvEncoderNet`/`ConvDecoderNet`,
  3x3 kernels, SAME padding)."""
  height, width, channels = image_shape
  half_h, half_w = math.ceil(height / 2), math.ceil(width / 2)
  layers = []
  h, w, c = height, width, channels
  for i, (out, stride) in enumerate(zip(filters, (1, 2, 1, 1))):
    h, w = math.ceil(h / stride), math.ceil(w / stride)
    layers.append(Layer(f"encoder conv {c}->{out} /{stride}",
                        h * w * 9 * c * out, input_grad=i > 0))
    c = out
  layers.append(Layer("encoder dense", h * w * c * dense_size))
  layers.append(Layer("encoder out", dense_size * 2 * latent_size))
  layers.append(Layer("decoder dense", latent_size * half_h * half_w *
                      hidden_channels))
  layers.append(Layer("decoder transposed conv",
                      half_h * half_w * 9 * hidden_channels *
                      upsample_channels))
  layers.append(Layer("decoder conv out",
                      height * width * 9 * upsample_channels * channels))
  return layers


def training_flops(layers):
  """FLOPs of one training example: forward plus both gradients."""
  return sum(2 * l.macs * (2 + int(l.input_grad)) for l in layers)


def forward_flops(layers):
  """FLOPs of one example's forward pass."""
  return sum(2 * l.macs for l in layers)
