"""results.json: entries merged into the file by kind, one per step, other keys kept."""

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
