"""A mapping is checked against the graph beside the checkpoint, or warned.

The fixture has a trained decoder and, beside its output matrix Variable_4,
an untrained twin Variable_10 of the same shape that no op reads (so Adam
gave it no slots). Mapping the twin passes the numpy check; the .meta, or
the missing slots, must give it away.
"""
import os
import shutil

import tensorflow as tf

from tests import migrate_fixtures
from tests import util
from tests.test_migrate_surgery import _assert_matches_tf1
from tfvae import errors
from tfvae import migrate
from tfvae.migrate import crosscheck
from tfvae.migrate import mapping

_RIGHT = {
    "decoder/mlp/linear_0/w": "Variable_3",
    "decoder/mlp/linear_0/b": "Variable_8",
    "decoder/mlp/linear_1/w": "Variable_4",
    "decoder/mlp/linear_1/b": "Variable_9",
}
_WRONG = dict(_RIGHT, **{"decoder/mlp/linear_1/w": "Variable_10"})
_SPEC = mapping.DecoderSpec(latent_size=2, image_shape=(8, 8, 1),
                            hidden_sizes=(16,))
_FIXTURE = {}


def setUpModule():
  directory = os.path.join(tf.compat.v1.test.get_temp_dir(), "twin")
  migrate_fixtures.write_fixture(directory, optimizer="adam",
                                 untrained_twin=True)
  _FIXTURE["dir"] = directory


def _versions(export_dir):
  return sorted(os.listdir(export_dir)) if os.path.isdir(export_dir) else []


class GraphCheckTest(tf.test.TestCase):

  def test_wrong_mapping_is_refused_naming_the_weight(self):
    export_dir = os.path.join(self.get_temp_dir(), "wrong")
    with self.assertRaises(errors.TfvaeError) as caught:
      migrate.build_generator(_FIXTURE["dir"], export_dir, no_meta=True,
                              decoder_spec=_SPEC, variable_map=_WRONG)
    message = str(caught.exception)
    self.assertNotIn("\n", message)
    self.assertRegex(
        message, r"mapping puts Variable_10 at decoder layer 1 kernel "
        r"\(decoder/mlp/linear_1/w\) but the graph's decode path .* reads "
        r"Variable_4 there")
    self.assertEqual(_versions(export_dir), [])

  def test_right_mapping_is_published_checked_against_the_graph(self):
    export_dir = os.path.join(self.get_temp_dir(), "right")
    with self.assertLogs("absl", level="INFO") as logs:
      path = migrate.build_generator(_FIXTURE["dir"], export_dir,
                                     decoder_spec=_SPEC, variable_map=_RIGHT)
    _assert_matches_tf1(self, path, _FIXTURE["dir"])
    self.assertRegex("\n".join(logs.output), "Verified against the graph")
    record = migrate.publish.source_record(path)
    self.assertEqual(record["checked_against_graph"],
                     os.path.abspath(os.path.join(_FIXTURE["dir"],
                                                  "model.meta")))
    self.assertEqual(record["warnings"], [])

  def test_graph_reads_layer_by_layer(self):
    meta = migrate.MetaGraph(os.path.join(_FIXTURE["dir"], "model.meta"))
    path = migrate.DecodePath(meta, *migrate.find_ends(meta))
    self.assertEqual(crosscheck.graph_reads(path),
                     [("Variable_3", "Variable_8"),
                      ("Variable_4", "Variable_9")])


class SlotlessTwinTest(tf.test.TestCase):

  def test_without_meta_the_untrained_twin_is_warned_about(self):
    directory = os.path.join(self.get_temp_dir(), "nometa")
    shutil.copytree(_FIXTURE["dir"], directory)
    os.remove(os.path.join(directory, "model.meta"))
    export_dir = os.path.join(self.get_temp_dir(), "export")
    result = util.run_tool(
        "tools.build_generator", f"--checkpoint={directory}/model",
        f"--export_dir={export_dir}", "--hidden_sizes=16",
        "--image_shape=8,8,1",
        "--map=" + ",".join(f"{k}={v}" for k, v in _WRONG.items()),
        env={"TF_CPP_MIN_LOG_LEVEL": "3"})
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    path = result.stdout.strip()
    self.assertEqual(path, os.path.join(export_dir, "1"))
    warning = (r"Variable_10 \(mapped to decoder/mlp/linear_1/w\) has no "
               r"optimizer slots, so it was never trained, while Variable_4 "
               r"of the same shape \[16, 64\] has \(Variable_4/Adam, ")
    self.assertRegex(result.stderr, r"(?m)^W.*\] " + warning)  # absl log
    self.assertRegex(result.stderr, r"(?m)^warning: " + warning)  # printed
    warnings = migrate.publish.source_record(path)["warnings"]
    self.assertLen(warnings, 1)
    self.assertRegex(warnings[0], warning)
    self.assertIsNone(migrate.publish.source_record(path)[
        "checked_against_graph"])

  def test_trained_mapping_has_no_warning(self):
    report = migrate.inspect(_FIXTURE["dir"])
    self.assertEqual(crosscheck.untrained_twins(report, _RIGHT), [])


if __name__ == "__main__":
  tf.test.main()
