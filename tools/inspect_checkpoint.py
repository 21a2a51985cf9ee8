"""Lists what a checkpoint holds: weights, optimizer slots, bookkeeping.

  tfvae-inspect PATH [--json] [--verify]

PATH is a checkpoint prefix (DIR/model), a directory with a `checkpoint`
state file, or a tfvae run directory. When a TF1 `.meta` lies beside the
prefix, its collections, placeholders, random ops, candidate latent and output
tensors, the ranked (latent, output) pairs a generator could be cut out
between with the `tfvae-build-generator` flags that pick each, the inference
values switches and keep probabilities get, and any ops that touch files or
run Python are reported too.
"""
import dataclasses
import json
import sys

from absl import app
from absl import flags

from tools import _cli

# Executed on first use, so that --help starts no TensorFlow.
migrate = _cli.lazy_import("tfvae.migrate")

flags.DEFINE_bool("json", False,
                  "Print one JSON object instead of the human-readable table.")
flags.DEFINE_bool("verify", True,
                  "Read every tensor, which checks the data files' CRCs.")
flags.DEFINE_string("meta_graph", None,
                    "TF1 .meta to report on; default: PREFIX.meta if present.")
FLAGS = flags.FLAGS


def _table(report, meta_report):
  lines = [f"checkpoint: {report.source.prefix}",
           f"format:     {report.format}",
           f"step:       {report.step if report.step is not None else '-'}",
           f"optimizer:  {', '.join(report.optimizers) or '-'}", ""]
  rows = [("name", "shape", "dtype", "size", "kind")]
  for v in report.variables:
    kind = f"slot ({v.optimizer})" if v.kind == migrate.reader.SLOT else v.kind
    rows.append((v.name, str(list(v.shape)), v.dtype, str(v.size), kind))
  widths = [max(len(r[i]) for r in rows) for i in range(5)]
  for row in rows:
    lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
  weights = report.weights()
  lines.append("")
  lines.append(f"{len(weights)} weights "
               f"({sum(v.size for v in weights)} values), "
               f"{len(report.slots())} optimizer slots")
  if meta_report:
    m = meta_report
    lines += ["", f"meta graph: {m['meta_graph']}", "collections:"]
    for key, items in m["collections"].items():
      shown = ", ".join(items[:4]) + (" ..." if len(items) > 4 else "")
      lines.append(f"  {key} ({len(items)}): {shown}")
    lines.append("placeholders: " + (", ".join(
        f"{p['name']} {p['dtype']} {p['shape']}" for p in m["placeholders"])
                                     or "-"))
    lines.append(f"random ops: {len(m['random_ops'])}")
    lines.append("output candidates: " + (", ".join(
        f"{o['name']} {o['shape']} ({o['found_by']})"
        for o in m["output_candidates"]) or "-"))
    lines.append("latent candidates: " + (", ".join(
        f"{t['name']} {t['shape']}" for t in m["latent_candidates"]) or "-"))
    pairs = m.get("generator_candidates", [])
    lines.append("generator candidates (best first): " + ("" if pairs
                                                         else "-"))
    for i, c in enumerate(pairs, 1):
      lines.append(f"  ({i}) {c['output']} {c['output_shape']} from "
                   f"{c['latent']} {c['latent_shape']} ({c['latent_kind']}; "
                   f"output {c['found_by']}): {c['flags']}")
    if m.get("inference_feeds"):
      lines.append("fed when decoding: " + ", ".join(
          f"{k}={v}" for k, v in m["inference_feeds"].items()))
    lines.append("unsafe ops outside save/: " + (", ".join(
        f"{o['name']} ({o['type']})" for o in m["unsafe_ops"]) or "none"))
  return "\n".join(lines)


def main(argv):
  if len(argv) != 2:
    raise app.UsageError(
        "Expected exactly one argument, the checkpoint PATH; got "
        f"{argv[1:]}")
  source = migrate.reader.resolve(argv[1])
  report = (migrate.reader.verify(source) if FLAGS.verify
            else migrate.reader.inspect(source))
  meta_path = FLAGS.meta_graph or source.meta_graph
  meta_report = (migrate.graph.MetaGraph(meta_path).report() if meta_path
                 else None)
  if FLAGS.json:
    out = {"checkpoint": report.source.prefix, "source": report.source.kind,
           "format": report.format, "step": report.step,
           "optimizers": list(report.optimizers),
           "variables": [dataclasses.asdict(v) for v in report.variables],
           "meta_graph": meta_report}
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")
  else:
    print(_table(report, meta_report))


def run_main():
  _cli.run(main)


if __name__ == "__main__":
  run_main()
