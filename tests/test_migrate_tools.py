"""Tests of the migration command-line tools: inspect, extract, build."""
import os
import re
import subprocess
import sys

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tests.test_migrate_mapping import _SMALL_MAP
from tests.test_migrate_mapping import _without_meta
from tests.test_migrate_surgery import _assert_matches_tf1
from tests.test_migrate_surgery import _fixture
from tests.test_migrate_surgery import _versions
from tfvae import migrate

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_tool(module, *args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=_REPO)
  return subprocess.run([sys.executable, "-m", module, *args], cwd=_REPO,
                        env=env, capture_output=True, text=True, timeout=120,
                        check=False)


# TensorFlow's C++ runtime writes a few start-up lines that no flag silences.
_RUNTIME_LOG = re.compile(
    r"^([IWEF]\d{4} |WARNING: All log messages before absl::InitializeLog)")


def _error_lines(stderr):
  return [line for line in stderr.splitlines()
          if line.strip() and not _RUNTIME_LOG.match(line)]


class ToolsTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ("inspect", "tools.inspect_checkpoint", ["json", "verify", "meta_graph"]),
      ("extract", "tools.extract",
       ["out", "include_slots", "include", "exclude"]),
      ("build_generator", "tools.build_generator",
       ["checkpoint", "export_dir", "version", "meta_graph", "latent_tensor",
        "output_tensor", "output_collection", "image_shape", "device",
        "allow_unsafe_ops", "no_meta", "map", "map_file", "network",
        "latent_dim", "hidden_sizes", "conv_channels", "activation",
        "likelihood", "gaussian_scale"]))
  def test_help_lists_every_flag(self, module, flags):
    # absl's --help exits with status 1 by design.
    result = _run_tool(module, "--help")
    self.assertNotIn("Traceback", result.stderr)
    for flag in flags:
      self.assertRegex(result.stdout, rf"--(\[no\])?{flag}:")

  @parameterized.named_parameters(
      ("inspect", "tools.inspect_checkpoint", ["{missing}"]),
      ("extract", "tools.extract", ["{missing}", "--out={tmp}/w.npz"]),
      ("build_generator", "tools.build_generator",
       ["--checkpoint={missing}", "--export_dir={tmp}/export"]))
  def test_bad_input_is_one_line(self, module, args):
    tmp = self.get_temp_dir()
    missing = os.path.join(tmp, "missing", "model")
    result = _run_tool(module, *[a.format(missing=missing, tmp=tmp)
                                 for a in args])
    self.assertNotEqual(result.returncode, 0)
    self.assertNotIn("Traceback", result.stderr)
    lines = _error_lines(result.stderr)
    self.assertLen(lines, 1, result.stderr)
    self.assertIn(missing + ".index", lines[0])

  def test_inspect_json_and_table(self):
    import json  # pylint: disable=g-import-not-at-top
    result = _run_tool("tools.inspect_checkpoint", _fixture("relu"), "--json")
    self.assertEqual(result.returncode, 0, result.stderr)
    report = json.loads(result.stdout)
    self.assertEqual(report["format"], migrate.reader.TF1_FORMAT)
    kinds = {v["name"]: v["kind"] for v in report["variables"]}
    self.assertEqual(kinds["Variable"], "weight")
    self.assertEqual(kinds["Variable/RMSProp"], "slot")
    expected = np.load(os.path.join(_fixture("relu"), "expected.npz"))
    self.assertEqual(report["meta_graph"]["latent_candidates"][0]["name"],
                     str(expected["latent_tensor"]))
    table = _run_tool("tools.inspect_checkpoint", _fixture("relu"))
    self.assertEqual(table.returncode, 0, table.stderr)
    self.assertRegex(table.stdout, r"Variable/RMSProp_1\s+\[64, 16\]\s+"
                     r"float32\s+1024\s+slot \(RMSProp\)")
    self.assertIn("recon (1): Sigmoid:0", table.stdout)

  def test_extract_round_trip(self):
    out = os.path.join(self.get_temp_dir(), "sub", "weights.npz")
    # Temporaries of a dead extraction, of a live one (this process) and of
    # another program's atomic write: only the first is extract's to remove.
    finished = subprocess.Popen(["true"])
    finished.wait()
    os.makedirs(os.path.dirname(out))
    planted = {f".tmp-extract-{finished.pid}-abcd_123.npz": False,
               f".tmp-extract-{os.getpid()}-abcd_123.npz": True,
               ".tmp-abcd_123.npz": True}
    for name in planted:
      with open(os.path.join(os.path.dirname(out), name), "wb") as f:
        f.write(b"half")
    result = _run_tool("tools.extract", _fixture("adam"), f"--out={out}",
                       "--exclude=_9$", "--exclude", "^Variable_8$,nothing")
    self.assertEqual(result.returncode, 0, result.stderr)
    reader = tf.train.load_checkpoint(os.path.join(_fixture("adam"), "model"))
    with np.load(out) as arrays:
      self.assertEqual(sorted(arrays.files),
                       ["Variable"] + [f"Variable_{i}" for i in range(1, 8)])
      for name in arrays.files:
        self.assertAllEqual(arrays[name], reader.get_tensor(name))
    self.assertEqual(
        sorted(os.listdir(os.path.dirname(out))),
        sorted([n for n, kept in planted.items() if kept] + ["weights.npz"]))
    with_slots = os.path.join(self.get_temp_dir(), "all.npz")
    result = _run_tool("tools.extract", _fixture("adam"),
                       f"--out={with_slots}", "--include_slots",
                       "--include=^Variable_3")
    self.assertEqual(result.returncode, 0, result.stderr)
    with np.load(with_slots) as arrays:
      self.assertEqual(sorted(arrays.files),
                       ["Variable_3", "Variable_3/Adam", "Variable_3/Adam_1"])

  def test_build_generator_cli(self):
    export_dir = os.path.join(self.get_temp_dir(), "export")
    result = _run_tool("tools.build_generator",
                       f"--checkpoint={_fixture('conv')}/model",
                       f"--export_dir={export_dir}", "--version=3")
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertEqual(_versions(export_dir), ["3"])
    _assert_matches_tf1(self, os.path.join(export_dir, "3"), _fixture("conv"))
    refused = _run_tool("tools.build_generator",
                        f"--checkpoint={_fixture('write_file')}",
                        f"--export_dir={export_dir}")
    self.assertNotEqual(refused.returncode, 0)
    lines = _error_lines(refused.stderr)
    self.assertLen(lines, 1, refused.stderr)
    self.assertIn("WriteFile", lines[0])
    self.assertEqual(_versions(export_dir), ["3"])


class CliTest(tf.test.TestCase):

  def test_build_generator_cli_with_map(self):
    directory = _without_meta(self, "relu")
    export_dir = os.path.join(self.get_temp_dir(), "export")
    items = [f"{k}={v}" for k, v in _SMALL_MAP.items()]
    result = _run_tool(
        "tools.build_generator", f"--checkpoint={directory}/model",
        f"--export_dir={export_dir}", "--hidden_sizes=16",
        "--image_shape=8,8,1", "--activation=relu",
        "--map=" + ",".join(items[:3]), "--map", items[3])
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertEqual(result.stdout.strip(), os.path.join(export_dir, "1"))
    _assert_matches_tf1(self, os.path.join(export_dir, "1"), directory)
    for name, slot in [("Variable_3", "decoder/mlp/linear_0/w"),
                       ("Variable_9", "decoder/mlp/linear_1/b")]:
      self.assertRegex(result.stderr, rf"Used: {name} .* -> {slot} \(by name")
    self.assertRegex(result.stderr, r"Unused: Variable_5 \[16\]")

if __name__ == "__main__":
  tf.test.main()
