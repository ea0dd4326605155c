"""`python -m supcon_tf.report`: figures and table from tiny fake runs.

Two SupCon and two cross-entropy runs (seeds 1, 2; one of each with results.json's
"run" record, the other described by config.json and eval_results.json only), event
files in both scalar forms, kNN results, corruption errors and embeddings; a run
without eval_results.json is skipped; runs of several hyperparameters for the
stability plot. The t-SNE's other source, an exported encoder, is checked on its own.
"""

import copy
import dataclasses
import json
import os
import statistics
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from supcon_tf import config as config_lib
from supcon_tf.data.sources import memory
from supcon_tf.report import cli as report_cli
from supcon_tf.report import data
from supcon_tf.report import events
from supcon_tf.report import plots
from tests import cli
from tests import testing

_FIGURES = ("training_curves.png", "accuracy.png", "corruption_curve.png",
            "stability.png", "tsne.png")
_TOP_1 = {("supcon", 1): 0.90, ("supcon", 2): 0.86,
          ("cross_entropy", 1): 0.88, ("cross_entropy", 2): 0.85}
_CORRUPTIONS = ("gaussian_noise", "blur")


def _config(method, seed, **data_fields):
  contrastive = 0.0 if method == data.CROSS_ENTROPY else 1.0
  return config_lib.Config(
      data=config_lib.DataConfig(seed=seed, **data_fields),
      loss=config_lib.LossConfig(
          use_labels=method != data.SIMCLR,
          summation_location=(config_lib.SummationLocation.INSIDE
                              if method == data.SUPCON_L_IN else
                              config_lib.SummationLocation.OUTSIDE)),
      stage_1=config_lib.StageConfig(steps=4, contrastive_loss_weight=contrastive,
                                     cross_entropy_loss_weight=1.0 - contrastive))


def _write(path, value):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write(value if isinstance(value, str) else json.dumps(value))


def _simple_value_events(directory, tag, values):
  """TF1-style events (`simple_value`), written as the TFRecords an event file is."""
  os.makedirs(directory, exist_ok=True)
  with tf.io.TFRecordWriter(os.path.join(directory, "events.out.tfevents.1.test")) as w:
    for step, value in values:
      summary = tf.compat.v1.Summary(
          value=[tf.compat.v1.Summary.Value(tag=tag, simple_value=value)])
      w.write(tf.compat.v1.Event(step=step, summary=summary).SerializeToString())


def _fake_run(model_dir, method, seed, top_1=None, **data_fields):
  top_1 = _TOP_1[(method, seed)] if top_1 is None else top_1
  _write(os.path.join(model_dir, "config.json"),
         _config(method, seed, **data_fields).to_json())
  _write(os.path.join(model_dir, "eval_results.json"),
         {"top_1": top_1, "top_5": top_1 + 0.05, "num_examples": 100,
          "seconds": 1.0, "global_step": 4})
  return model_dir


def _study(root):
  """The four runs of the report (and an unfinished one), with everything."""
  rng = np.random.default_rng(0)
  for method in (data.SUPCON, data.CROSS_ENTROPY):
    for seed in (1, 2):
      model_dir = _fake_run(str(root / method / f"seed_{seed}"), method, seed)
      top_1 = _TOP_1[(method, seed)]
      clean = 1 - top_1
      results = {"robustness": {
          "clean_error": clean,
          "errors": {c: [clean + 0.02 * s * (i + 1) for s in range(1, 6)]
                     for i, c in enumerate(_CORRUPTIONS)},
          "mean_corruption_error": clean + 0.1, "mce": 0.8 + 0.1 * seed}}
      if seed == 1:
        results["run"] = {"method": method, "seed": seed, "top_1": top_1,
                          "top_5": top_1 + 0.05, "global_step": 4,
                          "dataset": "fashion_mnist"}
      if method == data.SUPCON:
        results["knn"] = [{"global_step": s, "top_1": 0.5 + 0.1 * s} for s in (2, 4)]
      _write(os.path.join(model_dir, "results.json"), results)
      writer = tf.summary.create_file_writer(os.path.join(model_dir, "train"))
      with writer.as_default():
        for step in range(5):
          tf.summary.scalar("loss/total", 5.0 - step + seed, step=step)
          tf.summary.scalar("train/accuracy", 0.1 * step, step=step)
      writer.close()
      centres = rng.normal(size=(10, 8)) * 4
      labels = np.arange(60) % 10
      data.write_embeddings(model_dir, centres[labels] + rng.normal(size=(60, 8)),
                            labels)
  _write(str(root / data.SUPCON / "seed_3" / "config.json"),
         _config(data.SUPCON, 3).to_json())  # unfinished
  # Hyperparameter runs: per method a reference setting and one change per axis.
  for i, (method, top_1, change) in enumerate(_HPARAMS):
    _fake_run(str(root / "hparams" / f"h{i}"), method, 1, top_1, **change)
  return root


_RANDAUGMENT = {"augmentation_type": config_lib.AugmentationType.RANDAUGMENT}
_NO_FLIP = {"flip": False}
_HPARAMS = [(data.SUPCON, 0.9, {}), (data.SUPCON, 0.8, _RANDAUGMENT),
            (data.SUPCON, 0.85, _NO_FLIP), (data.CROSS_ENTROPY, 0.7, {}),
            (data.CROSS_ENTROPY, 0.88, _NO_FLIP), (data.CROSS_ENTROPY, 0.8, _RANDAUGMENT)]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  return _study(tmp_path_factory.mktemp("report"))


def _args(root, out, *extra):
  return ["report", f"--model_dirs={root}/supcon/seed_*,{root}/cross_entropy/*",
          f"--output_dir={out}", *extra]


def _check_figures(out, names=_FIGURES):
  for name in names:
    with open(os.path.join(out, name), "rb") as f:
      content = f.read()
    assert content.startswith(b"\x89PNG"), name
    assert len(content) < 200 * 1024, (name, len(content))


def _stats(values):
  return (f"{100 * statistics.mean(values):.2f} ± "
          f"{100 * statistics.stdev(values):.2f}")


def test_the_report_draws_every_figure_and_tabulates(study, tmp_path, capsys):
  out = tmp_path / "figures"
  code = report_cli.main(_args(study, out, f"--stability_model_dirs={study}/hparams/*"))
  printed = capsys.readouterr().out
  assert code == 0, printed
  _check_figures(out)
  assert f"skipped {study}/supcon/seed_3: no eval_results.json (unfinished run)" in printed
  assert "report: 4 finished run(s): supcon x2, cross_entropy x2" in printed
  table = (out / "summary.md").read_text()
  assert (f"rebuilt by `python -m supcon_tf.report '--model_dirs={study}/supcon/seed_*,"
          f"{study}/cross_entropy/*' --output_dir={out} ") in table
  assert table.split("\n\n")[-1].strip() in printed
  lines = {l.split(" | ")[0].strip("| "): l for l in table.splitlines()}
  supcon = [_TOP_1[(data.SUPCON, s)] for s in (1, 2)]
  ce = [_TOP_1[(data.CROSS_ENTROPY, s)] for s in (1, 2)]
  delta = 100 * (statistics.mean(supcon) - statistics.mean(ce))
  assert lines["supcon"].startswith(
      f"| supcon | 2 | {_stats(supcon)} | {_stats([t + 0.05 for t in supcon])} | "
      f"{delta:+.2f} | {_stats([1.1 - t for t in supcon])} | {_stats([0.9, 1.0])} |")
  assert lines["cross_entropy"].startswith(f"| cross_entropy | 2 | {_stats(ce)} |")
  assert "relative mCE" not in table  # no run has it
  # Corruptions: per corruption the mean over severities (clean + 0.06 (i + 1)),
  # then mean ± std over the seeds.
  corruptions = table.split("## Corruptions")[1].split("## Stability")[0]
  for i, name in enumerate(_CORRUPTIONS):
    assert (f"| {name} | {_stats([1 - t + 0.06 * (i + 1) for t in supcon])} | "
            f"{_stats([1 - t + 0.06 * (i + 1) for t in ce])} |") in corruptions
  assert f"| clean | {_stats([1 - t for t in supcon])} | {_stats([1 - t for t in ce])} |" \
      in corruptions
  # Stability: per axis the reference and the change, then all settings.
  stability = table.split("## Stability")[1]
  for row in ("| augmentation_type | supcon | 2 | 85.00 | 80.00 | 90.00 | 10.00 |",
              "| augmentation_type | cross_entropy | 2 | 75.00 | 70.00 | 80.00 | 10.00 |",
              "| flip | supcon | 2 | 87.50 | 85.00 | 90.00 | 5.00 |",
              "| flip | cross_entropy | 2 | 79.00 | 70.00 | 88.00 | 18.00 |",
              "| all settings | supcon | 3 | 85.00 | 80.00 | 90.00 | 10.00 |",
              "| all settings | cross_entropy | 3 | 79.33 | 70.00 | 88.00 | 18.00 |"):
    assert row in stability, (row, stability)


def test_figures_without_their_data_are_skipped_with_a_line(study, tmp_path, capsys):
  # The hyperparameter runs have no event files, robustness or embeddings.
  out = tmp_path / "figures"
  assert report_cli.main(["report", f"--model_dirs={study}/hparams/*",
                          f"--output_dir={out}", "--tsne_examples=50"]) == 0
  printed = capsys.readouterr().out
  assert "skipped training_curves.png: no run has training summaries" in printed
  assert ('skipped corruption_curve.png: no run has "robustness" (clean and '
          "per-severity errors) in results.json") in printed
  assert "skipped stability.png: no --stability_model_dirs given" in printed
  assert (f"skipped tsne.png: {study}/hparams/h0 has no embeddings.npz and no "
          f"exported encoder ({study}/hparams/h0/export/encoder)") in printed
  assert sorted(os.listdir(out)) == ["accuracy.png", "summary.md"]
  _check_figures(out, ["accuracy.png"])
  assert "| supcon | 3 | 85.00 ± 5.00 |" in (out / "summary.md").read_text()


def test_patterns_that_match_nothing_fail_with_one_line(study, tmp_path, capsys):
  assert report_cli.main(["report", f"--model_dirs={tmp_path}/none/*"]) == 1
  assert (capsys.readouterr().err ==
          f"error: no directory matches --model_dirs={tmp_path}/none/*\n")
  assert report_cli.main(["report", f"--model_dirs={study}/supcon/seed_3"]) == 1
  assert "no finished run among the 1 directories" in capsys.readouterr().err
  assert report_cli.main(["report", "--tsne_examples=2", "--model_dirs=x"]) == 1
  assert capsys.readouterr().err.count("\n") == 1


def test_the_command_line_module_runs_without_loading_tensorflow(study, tmp_path):
  # A `tensorflow` that fails on import: embeddings.npz and the event files are read
  # without it (only embedding with an export loads it).
  fake = tmp_path / "no_tf" / "tensorflow"
  fake.mkdir(parents=True)
  (fake / "__init__.py").write_text("raise ImportError('tensorflow was imported')\n")
  env = dict(os.environ, PYTHONPATH=f"{fake.parent}{os.pathsep}{testing.REPO_ROOT}")
  out = tmp_path / "figures"
  command = [sys.executable, "-m", "supcon_tf.report"]
  result = subprocess.run(command + _args(study, out)[1:], cwd=testing.REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  _check_figures(out, [f for f in _FIGURES if f != "stability.png"])
  assert "| supcon | 2 |" in result.stdout
  failed = subprocess.run(command + [f"--model_dirs={tmp_path}/none"],
                          cwd=testing.REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
  assert (cli.one_error_line(failed) ==
          f"error: no directory matches --model_dirs={tmp_path}/none")


@pytest.mark.parametrize("method", [data.SUPCON, data.SUPCON_L_IN, data.SIMCLR,
                                    data.CROSS_ENTROPY])
def test_the_method_is_read_from_the_config(method):
  assert data.method_of(_config(method, 1)) == method


def test_scalars_are_read_in_both_forms_the_last_write_of_a_step_kept(tmp_path):
  _simple_value_events(str(tmp_path / "old"), "loss/total", [(1, 3.0), (2, 2.0), (2, 1.5)])
  writer = tf.summary.create_file_writer(str(tmp_path / "new"))
  with writer.as_default():
    tf.summary.scalar("loss/total", 4.0, step=1)
    tf.summary.text("config", "not a scalar", step=1)
  writer.close()
  steps, values = events.read_scalars(str(tmp_path / "old"))["loss/total"]
  assert steps.tolist() == [1, 2] and values.tolist() == [3.0, 1.5]
  assert {t: v[1].tolist() for t, v in events.read_scalars(str(tmp_path / "new")).items()
          } == {"loss/total": [4.0]}
  assert events.read_scalars(str(tmp_path / "none")) == {}
  path = str(tmp_path / "old" / "events.out.tfevents.1.test")
  with open(path, "rb+") as f:  # a run killed while writing its last event
    f.truncate(os.path.getsize(path) - 3)
  assert events.read_scalars(str(tmp_path / "old"))["loss/total"][1].tolist() == [3.0, 2.0]


def test_stability_axes_are_the_fields_a_run_changes_from_its_method_reference(study):
  runs, _ = data.read_runs(data.expand(f"{study}/hparams/*"))
  axes = data.stability_axes(runs)
  names = {a: {m: sorted(os.path.basename(r.model_dir) for r in g)
               for m, g in groups.items()} for a, groups in axes.items()}
  assert names == {
      "augmentation_type": {data.SUPCON: ["h0", "h1"], data.CROSS_ENTROPY: ["h3", "h5"]},
      "flip": {data.SUPCON: ["h0", "h2"], data.CROSS_ENTROPY: ["h3", "h4"]}}
  assert list(axes) == ["augmentation_type", "flip"]
  # Seeds are not settings; runs that all agree have no axis.
  same = [dataclasses.replace(runs[0], seed=s, config={
      **runs[0].config, "data": {**runs[0].config["data"], "seed": s}}) for s in (1, 2)]
  assert data.stability_axes(same) == {}
  # A run changing two fields is on their joint axis; stage 2's fields keep their name.
  two = copy.deepcopy(runs[0].config)
  two["stage_1"]["optimizer"], two["stage_2"]["epochs"] = "lars", 3.0
  axes = data.stability_axes([runs[0], dataclasses.replace(runs[0], config=two),
                              runs[0]])
  assert list(axes) == ["optimizer + stage_2.epochs"]


def test_mean_curve_averages_over_the_common_steps():
  steps, mean = plots.mean_curve([(np.array([0, 2, 4]), np.array([0.0, 2.0, 4.0])),
                                  (np.array([0, 1, 2, 3]), np.array([2.0, 2, 2, 2]))])
  assert steps.tolist() == [0, 2] and mean.tolist() == [1.0, 2.0]


def _run_with(cfg, total_steps):
  return data.Run(model_dir="", method="", seed=1, top_1=0.5, top_5=None,
                  global_step=None, dataset="", config=json.loads(cfg.to_json()),
                  results={"training": {"global_step": total_steps}})


def test_steps_map_to_passes_through_the_encoder_per_stage():
  two_stage = config_lib.Config(
      stage_1=config_lib.StageConfig(epochs=2.5, contrastive_loss_weight=1.0),
      stage_2=config_lib.StageConfig(epochs=1.0, contrastive_loss_weight=0.0,
                                     cross_entropy_loss_weight=1.0))
  mapping = data.encoder_passes(_run_with(two_stage, 700))  # 200 steps per epoch
  assert mapping == (200.0, 500, 2.0, 1.0)
  # 2 views per image in stage 1 (5 passes in 2.5 epochs), 1 in the linear stage.
  np.testing.assert_allclose(data.to_passes([0, 250, 500, 600, 700], mapping),
                             [0.0, 2.5, 5.0, 5.5, 6.0])
  one_stage = config_lib.Config(
      stage_1=config_lib.StageConfig(epochs=6.0, contrastive_loss_weight=0.0,
                                     cross_entropy_loss_weight=1.0),
      stage_2=config_lib.StageConfig(epochs=0.0))
  np.testing.assert_allclose(
      data.to_passes([1200], data.encoder_passes(_run_with(one_stage, 1200))), [6.0])
  in_steps = config_lib.Config(stage_1=config_lib.StageConfig(steps=4))
  assert data.encoder_passes(_run_with(in_steps, 4)) is None
  assert data.encoder_passes(_run_with(two_stage, None)) is None


def test_curves_break_where_the_stage_changes():
  x, y = plots._break_at(np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 2, 3, 4]), 1.0)
  assert x.tolist() == [0.0, 1.0, 1.0, 2.0, 3.0]
  assert np.isnan(y[2]) and y[[0, 1, 3, 4]].tolist() == [1.0, 2, 3, 4]
  x, y = plots._break_at(np.array([0.0, 1.0]), np.array([1.0, 2.0]), 5.0)
  assert x.tolist() == [0.0, 1.0] and not np.isnan(y).any()


class _Encoder(tf.Module):
  """A stand-in export: images -> their 4 column means (a fixed linear map)."""

  @tf.function(input_signature=[tf.TensorSpec([None, 16, 16, 1], tf.float32),
                                tf.TensorSpec([], tf.bool)])
  def __call__(self, images, training=False):
    del training
    return tf.reshape(tf.reduce_mean(images, axis=1), [-1, 16])[:, ::4]


def test_without_embeddings_the_export_embeds_the_evaluation_images(tmp_path, fake_data):
  model_dir = str(tmp_path / "run")
  cfg = _config(data.SUPCON, 1, fashion_mnist_dir=fake_data, image_size=16)
  _write(os.path.join(model_dir, "config.json"), cfg.to_json())
  _write(os.path.join(model_dir, "eval_results.json"), {"top_1": 0.5})
  tf.saved_model.save(_Encoder(), os.path.join(model_dir, "export", "encoder"))
  embeddings, labels = data.read_embeddings(data.read_run(model_dir), 30)
  test_labels = memory.load_fashion_mnist_idx(fake_data).test_labels
  assert embeddings.shape == (30, 4) and embeddings.dtype == np.float32
  assert labels.tolist() == test_labels[:30].tolist()
  data.write_embeddings(model_dir, embeddings[:10], labels[:10])  # the file wins
  assert data.read_embeddings(data.read_run(model_dir), 30)[0].shape == (10, 4)
