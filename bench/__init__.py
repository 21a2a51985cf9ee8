"""Side-by-side benchmarks of tfvae against TF1 sessions and Keras `fit`.

`python -m bench` (see `bench/__main__.py`) runs the whole suite; the
results of a full run are in BENCHMARKS.md.
"""
