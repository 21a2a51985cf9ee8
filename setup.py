"""Installs tfvae (the library) and tools (its command-line programs)."""
import setuptools

CONSOLE_SCRIPTS = [
    "tfvae-train=tools.train:run_main",
    "tfvae-download-data=tools.download_data:run_main",
    "tfvae-inspect=tools.inspect_checkpoint:run_main",
    "tfvae-extract=tools.extract:run_main",
    "tfvae-build-generator=tools.build_generator:run_main",
    "tfvae-evaluate=tools.evaluate:run_main",
    "tfvae-plot=tools.plot:run_main",
    "tfvae-denoise=tools.denoise:run_main",
    "tfvae-export=tools.export:run_main",
    "tfvae-generate=tools.generate:run_main",
    "tfvae-migrate=tools.migrate:run_main",
    "tfvae-explore=tools.explore:run_main",
    "tfvae-make-tfrecords=tools.make_tfrecords:run_main",
]

setuptools.setup(
    name="tfvae",
    version="0.1.0",
    description="Variational autoencoders in TensorFlow 2: tf.Module models on "
                "TensorFlow Probability, checkpoints, SavedModel export and a "
                "TF1 checkpoint migration toolkit.",
    packages=setuptools.find_packages(include=["tfvae", "tfvae.*", "tools",
                                               "tools.*"]),
    # The explorer's page (HTML, CSS, JavaScript) is served from the package.
    package_data={"tfvae.explore": ["page/*"]},
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "tensorflow-probability[tf]>=0.24,<0.26",
        "tf_keras>=2.16,<2.22",
        "numpy",
        "matplotlib",
        "absl-py",
        "tensorboard",
    ],
    extras_require={
        # playwright drives the system's Chromium (apt-get install chromium,
        # see scripts/setup.sh) in the explorer's browser test.
        "test": ["pytest", "tensorflow-serving-api>=2.16,<2.22",
                 "playwright>=1.40"],
        "serving": ["tensorflow-serving-api>=2.16,<2.22"],
    },
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
