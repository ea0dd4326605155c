r"""The command line of the report: `python -m supcon_tf.report`.

  python -m supcon_tf.report --model_dirs='runs/studies/methods/*/seed_*' \
      --stability_model_dirs='runs/studies/hparams/*/seed_1' --output_dir=docs/figures

Writes training_curves.png, accuracy.png, corruption_curve.png, stability.png and
tsne.png into --output_dir, prints the summary table and writes it as summary.md.
Unfinished runs are listed as skipped; a figure whose data no run has is skipped
with one line. Bad flags, patterns that match no directory, no finished run, or a
run file that does not parse: one line on stderr and exit code 1.
"""

import os
import shlex
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

from absl import flags  # pylint: disable=g-import-not-at-top

from supcon_tf import config as config_lib
from supcon_tf.report import data
from supcon_tf.report import plots
from supcon_tf.report import summary

# The report's own flags, apart from absl's global FLAGS (the training flags).
FLAGS = flags.FlagValues()
flags.DEFINE_string(
    "model_dirs", "", "Comma-separated glob patterns of the runs' model_dirs; each "
    "finished run counts once, its method from results.json or config.json.",
    flag_values=FLAGS)
flags.DEFINE_string(
    "stability_model_dirs", "", "Comma-separated glob patterns of runs of different "
    "hyperparameters, for stability.png (empty: no such figure).", flag_values=FLAGS)
flags.DEFINE_string(
    "baseline_method", data.CROSS_ENTROPY, "The method the others are compared with "
    "(the table's top-1 difference, the right panel of tsne.png).", flag_values=FLAGS)
flags.DEFINE_string("output_dir", "docs/figures", "Where the PNGs and summary.md go.",
                    flag_values=FLAGS)
flags.DEFINE_integer("tsne_examples", 2000, "Evaluation images per t-SNE panel (the "
                     "first ones).", lower_bound=5, flag_values=FLAGS)

SUMMARY_FILE = "summary.md"


class _Fail(Exception):
  """Bad input: the message is printed as one error line."""


def _parse(argv):
  FLAGS.unparse_flags()  # an in-process caller may run main twice
  try:
    rest = FLAGS(argv)
  except flags.Error as e:
    raise _Fail(str(e).splitlines()[0].replace("ERROR:: ", "")) from None
  if len(rest) > 1:
    raise _Fail(f"unexpected positional arguments: {' '.join(rest[1:])}")
  if not FLAGS.model_dirs.strip():
    raise _Fail("--model_dirs is required (comma-separated glob patterns)")


def _runs(flag: str):
  """The finished runs of a patterns flag, after printing the skipped ones."""
  patterns = FLAGS[flag].value
  model_dirs = data.expand(patterns)
  if not model_dirs:
    raise _Fail(f"no directory matches --{flag}={patterns}")
  runs, skipped = data.read_runs(model_dirs)
  for model_dir, reason in skipped:
    print(f"skipped {model_dir}: {reason}")
  if not runs:
    raise _Fail(f"no finished run among the {len(model_dirs)} directories matching "
                f"--{flag}={patterns}")
  return runs


def report(argv) -> None:
  """Reads the runs named by the parsed flags, writes the figures and the table.

  Args:
    argv: the command line (summary.md records it).
  """
  runs = _runs("model_dirs")
  stable = _runs("stability_model_dirs") if FLAGS.stability_model_dirs.strip() else []
  print(f"report: {len(runs)} finished run(s): " + ", ".join(
      f"{m} x{len(g)}" for m, g in data.by_method(runs).items()))
  out = FLAGS.output_dir
  os.makedirs(out, exist_ok=True)
  palette = plots.colors(list(runs) + list(stable))
  figures = (
      ("training_curves.png", lambda p: plots.training_curves(runs, p, palette)),
      ("accuracy.png", lambda p: plots.accuracy(runs, p, palette)),
      ("corruption_curve.png", lambda p: plots.corruption_curve(runs, p, palette)),
      ("stability.png", lambda p: plots.stability(stable, p, palette)),
      ("tsne.png", lambda p: plots.tsne(runs, p, FLAGS.baseline_method,
                                        FLAGS.tsne_examples)),
  )
  for name, draw in figures:
    path = os.path.join(out, name)
    try:
      draw(path)
    except data.MissingData as e:
      print(f"skipped {name}: {e}")
      continue
    print(f"wrote {path} ({os.path.getsize(path) // 1024} KiB)")
  table = summary.markdown_table(runs, FLAGS.baseline_method)
  corruptions = summary.corruption_table(runs)
  if corruptions:
    table += "\n\n## Corruptions: top-1 error (%), mean over severities 1-5\n\n" + corruptions
  if stable:
    table += "\n\n## Stability\n\n" + summary.stability_table(stable)
  print(table)
  path = os.path.join(out, SUMMARY_FILE)
  with open(path, "w") as f:
    f.write(f"# Summary\n\n{len(runs)} finished runs; rebuilt by `python -m "
            f"supcon_tf.report {' '.join(shlex.quote(a) for a in argv[1:])}`.\n\n"
            f"{table}\n")
  print(f"wrote {path}")


def main(argv) -> int:
  """Runs the report.

  Args:
    argv: the command line, program name first.

  Returns:
    0, or 1 after one error line on stderr.
  """
  if any(a in ("-h", "--help", "-help", "--helpshort") for a in argv[1:]):
    print(__doc__.split("\n\n")[1] + "\n" + FLAGS.get_help(include_special_flags=False))
    return 0
  try:
    _parse(argv)
    report(argv)
  except (_Fail, config_lib.ConfigError) as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    return 1
  sys.stdout.flush()
  return 0
