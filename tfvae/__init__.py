"""tfvae: variational autoencoders in TensorFlow 2 on TensorFlow Probability."""
