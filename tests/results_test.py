"""results.json: entries merged into the file by kind, one per step, other keys kept."""

import dataclasses
import json
import os

import pytest

from supcon_tf import config as config_lib
from supcon_tf import results


def test_results_record_merges_and_replaces_the_same_step(tmp_path):
  model_dir = str(tmp_path)
  assert results.read(model_dir) == {}
  with open(os.path.join(model_dir, "results.json"), "w") as f:
    json.dump({"other": {"kept": True}}, f)
  results.record(model_dir, "knn", {"global_step": 4, "top_1": 0.5})
  results.record(model_dir, "knn", {"global_step": 2, "top_1": 0.25})
  results.record(model_dir, "knn", {"global_step": 4, "top_1": 0.75})  # a resume
  with open(os.path.join(model_dir, "results.json")) as f:
    got = json.load(f)
  assert got == {"other": {"kept": True},
                 "knn": [{"global_step": 2, "top_1": 0.25},
                         {"global_step": 4, "top_1": 0.75}]}
  assert sorted(os.listdir(model_dir)) == ["results.json"]  # no temporary left
  with pytest.raises(ValueError, match="global_step"):
    results.record(model_dir, "knn", {"top_1": 1.0})


def test_results_refuses_a_file_it_cannot_merge(tmp_path):
  with open(os.path.join(tmp_path, "results.json"), "w") as f:
    json.dump({"knn": {"not": "a list"}}, f)
  with pytest.raises(config_lib.ConfigError, match="'knn' is not a list"):
    results.record(str(tmp_path), "knn", {"global_step": 1})
  with open(os.path.join(tmp_path, "results.json"), "w") as f:
    f.write("[1, 2]")
  with pytest.raises(config_lib.ConfigError, match="not a JSON object"):
    results.read(str(tmp_path))


def test_training_clock_sums_the_time_kept_in_checkpoints(tmp_path, monkeypatch):
  now = [100.0]
  monkeypatch.setattr(results.time, "time", lambda: now[0])
  model_dir = str(tmp_path)
  first = results.TrainingClock(model_dir, is_chief=True)
  now[0] = 130.0
  first.saved(10)
  now[0] = 150.0
  first.saved(20)
  now[0] = 500.0  # killed after step 20's checkpoint: this time is redone, not kept
  resumed = results.TrainingClock(model_dir, is_chief=True)
  now[0] = 540.0
  resumed.saved(30)
  assert results.read(model_dir)["training"] == {"wall_seconds": 90.0, "global_step": 30}
  results.TrainingClock(model_dir, is_chief=False).saved(40)  # workers write nothing
  assert results.read(model_dir)["training"]["global_step"] == 30


def _config(**loss):
  cfg = config_lib.Config()
  return dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, **loss))


def test_config_hash_names_what_the_run_computes_whatever_the_seed():
  cfg = _config()
  other_seed = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, seed=3),
                                   runtime=dataclasses.replace(
                                       cfg.runtime, model_dir="/x", eval_batch_size=7))
  assert results.config_hash(cfg) == results.config_hash(other_seed)
  assert len(results.config_hash(cfg)) == 12
  assert results.config_hash(_config(temperature=0.5)) != results.config_hash(cfg)


def test_method_of_a_config():
  cfg = _config()  # the defaults: SupCon L_out in stage 1
  assert results.method(cfg) == "supcon"
  assert results.method(_config(use_labels=False)) == "simclr"
  assert results.method(_config(summation_location=config_lib.SummationLocation.INSIDE)) \
      == "supcon_l_in"
  ce = dataclasses.replace(cfg, stage_1=dataclasses.replace(
      cfg.stage_1, contrastive_loss_weight=0.0, cross_entropy_loss_weight=1.0))
  assert results.method(ce) == "cross_entropy"


def test_run_summary_carries_the_training_time_and_the_versions(tmp_path):
  cfg = _config()
  cfg = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime,
                                                             model_dir=str(tmp_path)))
  results.put(str(tmp_path), "training", {"wall_seconds": 12.5, "global_step": 9})
  machine = results.hardware("MirroredStrategy", 2, ["/cpu:0", "/cpu:1", "/cpu:0"])
  summary = results.run_summary(cfg, "fashion_mnist", {"top_1": 0.5, "top_5": 0.9,
                                                       "global_step": 9}, machine)
  assert summary["wall_seconds"] == 12.5 and summary["method"] == "supcon"
  assert summary["top_1"] == 0.5 and summary["seed"] == cfg.data.seed
  assert summary["hardware"]["replicas"] == 2
  assert summary["hardware"]["devices"] == ["/cpu:0", "/cpu:1"]
  assert summary["package_version"] and summary["tensorflow_version"].startswith("2.")
  assert summary["config_hash"] == results.config_hash(cfg)
  json.dumps(summary)  # JSON-ready
