"""Input pipelines of every source kind: sharding across input pipelines (every
example exactly once per epoch), reproducibility across processes under a seed,
step-indexed resume, the deferred blur."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from supcon_tf.config import DataConfig
from supcon_tf.data import augment, datasets, pipeline
from tests import testing

_IDENTITY = dict(size=8, augmentation_type="identity")
_DETERMINISTIC = pipeline.InputOptions(deterministic=True)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
  """Sources of 24 training images whose views tell which image they are
  (`testing.image_id`): TFDS imagenet2012 in 4 files and in 1 file (sharded by
  examples), an image folder, and the same images in memory."""
  root = tmp_path_factory.mktemp("sources")
  made = {}
  for name, shards in (("stream_files", 4), ("stream_examples", 1)):
    data_dir, _ = testing.make_fake_imagenet(str(root / name), per_class=8,
                                             num_validation=6, num_shards=shards,
                                             unique=True)
    made[name] = datasets.load_source(DataConfig(
        dataset="imagenet2012", data_dir=data_dir, eval_split="validation"))
  testing.write_image_folder(str(root / "folder"), per_class=8, unique=True)
  made["folder"] = datasets.load_source(DataConfig(
      dataset="image_folder", image_dir=str(root / "folder"), train_split="all",
      eval_split="all"))
  images = np.stack([testing.unique_image(k, 8, 8) for k in range(24)])
  made["memory"] = datasets.InMemorySource("memory", images, np.arange(24) % 3,
                                           images, np.arange(24) % 3, 3, "test")
  return made


def _ids(batches):
  return [testing.image_id(view) for b in batches for view in b["views"][:, 0]]


def _batches(ds, n):
  return [{k: v.numpy() for k, v in b.items()} for b in ds.take(n)]


@pytest.mark.parametrize("kind", ["stream_files", "stream_examples", "folder", "memory"])
def test_two_pipelines_see_every_example_exactly_once_per_epoch(sources, kind):
  source = sources[kind]
  spec = pipeline.TrainInputSpec(global_batch_size=8, num_views=1, seed=1, stage=1)
  assert source.steps_per_epoch(8, 2) == 3
  per_pipeline = []
  for pid in range(2):
    ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pid,
                                     num_replicas_in_sync=2)
    batches = _batches(source.train_dataset(spec, _IDENTITY, ctx, _DETERMINISTIC), 6)
    assert all(b["views"].shape == (4, 1, 8, 8, 3) for b in batches)
    per_pipeline.append((_ids(batches[:3]), _ids(batches[3:])))
  for epoch in range(2):
    first, second = per_pipeline[0][epoch], per_pipeline[1][epoch]
    assert not set(first) & set(second)
    assert sorted(first + second) == list(range(24)), (epoch, first, second)
  # Every epoch is ordered anew.
  assert per_pipeline[0][0] != per_pipeline[0][1]


@pytest.mark.parametrize("kind", ["stream_files", "folder"])
def test_eval_shards_cover_the_split_once(sources, kind):
  source = sources[kind]
  seen, counts = [], []
  for pid in range(2):
    ctx = tf.distribute.InputContext(2, pid, 2)
    batches = _batches(source.eval_dataset(4, dict(size=8), ctx), 100)
    counts.append(len(batches))
    seen += [testing.image_id(im) for b in batches for im in b["image"][b["valid"]]]
  assert counts[0] == counts[1]  # the same number of steps on every pipeline
  first = 24 if kind.startswith("stream") else 0  # validation images follow training
  assert sorted(seen) == list(range(first, first + source.num_eval))


@pytest.mark.parametrize("kind", ["stream_files", "stream_examples", "folder", "memory"])
def test_resume_reads_the_same_batches(sources, kind):
  source = sources[kind]
  kw = dict(size=8, area_range=(0.3, 1.0), augmentation_type="simclr")
  spec = pipeline.TrainInputSpec(8, 2, seed=4, stage=2)
  full = _batches(source.train_dataset(spec, kw, None, _DETERMINISTIC), 8)
  resumed = _batches(source.train_dataset(
      pipeline.TrainInputSpec(8, 2, seed=4, stage=2, start_step=5), kw, None,
      _DETERMINISTIC), 3)
  for a, b in zip(full[5:], resumed):
    np.testing.assert_array_equal(a["labels"], b["labels"])
    np.testing.assert_array_equal(a["views"], b["views"])


def test_unequal_shards_give_whole_steps_on_every_pipeline(tmp_path):
  data_dir, _ = testing.make_fake_imagenet(str(tmp_path), per_class=8, num_validation=3,
                                           num_shards=3)
  source = datasets.load_source(DataConfig(dataset="imagenet2012", data_dir=data_dir,
                                           eval_split="validation"))
  by_files, sizes = source.shard_sizes("train", 2)
  assert by_files and sorted(sizes) == [8, 16]
  assert source.steps_per_epoch(8, 2) == 2  # the smaller shard sets the epoch
  spec = pipeline.TrainInputSpec(8, 1, seed=0, stage=1)
  for pid in range(2):
    ctx = tf.distribute.InputContext(2, pid, 2)
    batches = _batches(source.train_dataset(spec, _IDENTITY, ctx), 5)
    assert len(batches) == 5 and all(len(b["labels"]) == 4 for b in batches)


_DETERMINISM_SCRIPT = r"""
import hashlib, sys
import numpy as np
from supcon_tf.config import DataConfig
from supcon_tf.data import augment, datasets, pipeline
data_dir, folder, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
kw = dict(size=16, area_range=(0.2, 1.0), augmentation_type="stacked_randaugment",
          color_strength=0.5)
for config in (DataConfig(dataset="imagenet2012", data_dir=data_dir, eval_split="validation"),
               DataConfig(dataset="image_folder", image_dir=folder, train_split="all",
                          eval_split="all")):
  source = datasets.load_source(config)
  spec = pipeline.TrainInputSpec(8, 2, seed=seed, stage=1)
  options = pipeline.InputOptions(deterministic=True)
  digest = hashlib.sha256()
  for batch in source.train_dataset(spec, kw, None, options).take(2):
    digest.update(batch["views"].numpy().tobytes())
    digest.update(batch["labels"].numpy().tobytes())
  print(type(source).__name__, digest.hexdigest())
"""


def test_same_seed_same_first_batches_in_two_processes(tmp_path):
  data_dir, _ = testing.make_fake_imagenet(str(tmp_path / "imagenet"))
  testing.write_image_folder(str(tmp_path / "folder"), per_class=6)
  env = dict(os.environ, PYTHONPATH=testing.REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3")

  def run(seed):
    result = subprocess.run(
        [sys.executable, "-c", _DETERMINISM_SCRIPT, data_dir, str(tmp_path / "folder"),
         str(seed)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [l for l in result.stdout.splitlines() if "Source " in l]
    assert len(lines) == 2, result.stdout
    return lines

  first, second, other = run(0), run(0), run(1)
  assert first == second
  for a, b in zip(first, other):
    assert a.split()[0] == b.split()[0] and a.split()[1] != b.split()[1]


def test_deferred_blur_equals_blur_in_the_pipeline():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (16, 40, 40, 3), dtype=np.uint8)
  source = datasets.InMemorySource("m", images, np.arange(16) % 4, images[:4],
                                   np.arange(4), 4, "test")
  kw = dict(size=32, augmentation_type="simclr", blur_probability=0.5)
  inline = _batches(source.train_dataset(pipeline.TrainInputSpec(8, 2, 3, 1), kw), 1)[0]
  spec = pipeline.TrainInputSpec(8, 2, 3, 1, emit_blur_seeds=True)
  deferred = _batches(source.train_dataset(spec, dict(kw, blur_probability=0.0)), 1)[0]
  assert deferred["blur_seeds"].shape == (8, 2, 2)
  flat = deferred["views"].reshape((16, 32, 32, 3))
  blurred = augment.batch_random_blur(flat, deferred["blur_seeds"].reshape(16, 2), 0.5)
  np.testing.assert_allclose(blurred.numpy().reshape(inline["views"].shape),
                             inline["views"], atol=1e-5)
  changed = np.abs(flat - inline["views"].reshape(flat.shape)).max(axis=(1, 2, 3)) > 1e-3
  assert 0 < changed.sum() < 16  # some views blurred, some not (p = 0.5)


def test_input_options():
  options = pipeline.InputOptions(deterministic=False, threads=3).tf_options()
  assert options.deterministic is False
  assert options.threading.private_threadpool_size == 3
  assert pipeline.InputOptions().tf_options().threading.private_threadpool_size is None


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
