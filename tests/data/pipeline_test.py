"""Input pipelines of every kind of records: sharding across input pipelines
(every example exactly once per epoch), reproducibility across processes under a
seed, step-indexed resume, evaluation padding, the deferred blur, the options, and
the refusal of records the pipeline cannot read."""

import dataclasses
import os
import subprocess
import sys
from typing import ClassVar

import numpy as np
import pytest
import tensorflow as tf

from supcon_tf.config import AugmentationType, DataConfig
from supcon_tf.data import pipeline, sources
from supcon_tf.data.augment import ops
from supcon_tf.data.sources import memory
from tests import testing
from tests.data.helpers import eval_spec, options, take, view_spec

_IDENTITY = view_spec(size=8, augmentation_type=AugmentationType.IDENTITY)


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
  """Sources of 24 training images whose views tell which image they are
  (`testing.image_id`): TFDS imagenet2012 in 4 files and in 1 file (sharded by
  examples), an image folder, and the same images in memory."""
  root = tmp_path_factory.mktemp("sources")
  made = {}
  for name, shards in (("stream_files", 4), ("stream_examples", 1)):
    data_dir, _ = testing.make_fake_imagenet(str(root / name), per_class=8,
                                             num_validation=6, num_shards=shards,
                                             unique=True)
    made[name] = sources.load_source(DataConfig(
        dataset="imagenet2012", data_dir=data_dir, eval_split="validation"))
  testing.write_image_folder(str(root / "folder"), per_class=8, unique=True)
  made["folder"] = sources.load_source(DataConfig(
      dataset="image_folder", image_dir=str(root / "folder"), train_split="all",
      eval_split="all"))
  images = np.stack([testing.unique_image(k, 8, 8) for k in range(24)])
  made["memory"] = memory.InMemorySource("memory", images, np.arange(24) % 3,
                                         images, np.arange(24) % 3, 3, "test")
  return made


def _ids(batches):
  return [testing.image_id(view) for b in batches for view in b["views"][:, 0]]


@pytest.mark.parametrize("kind", ["stream_files", "stream_examples", "folder", "memory"])
def test_two_pipelines_see_every_example_exactly_once_per_epoch(kinds, kind):
  source = kinds[kind]
  spec = pipeline.TrainInputSpec(global_batch_size=8, num_views=1, seed=1, stage=1)
  assert source.steps_per_epoch(8, 2) == 3
  per_pipeline = []
  for pid in range(2):
    ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pid,
                                     num_replicas_in_sync=2)
    batches = take(pipeline.train_dataset(source, spec, _IDENTITY, options(), ctx), 6)
    assert all(b["views"].shape == (4, 1, 8, 8, 3) for b in batches)
    per_pipeline.append((_ids(batches[:3]), _ids(batches[3:])))
  for epoch in range(2):
    first, second = per_pipeline[0][epoch], per_pipeline[1][epoch]
    assert not set(first) & set(second)
    assert sorted(first + second) == list(range(24)), (epoch, first, second)
  # Every epoch is ordered anew.
  assert per_pipeline[0][0] != per_pipeline[0][1]


@pytest.mark.parametrize("kind", ["stream_files", "folder"])
def test_eval_shards_cover_the_split_once(kinds, kind):
  source = kinds[kind]
  seen, counts = [], []
  for pid in range(2):
    ctx = tf.distribute.InputContext(2, pid, 2)
    batches = take(pipeline.eval_dataset(source, 4, eval_spec(size=8), options(), ctx),
                   100)
    counts.append(len(batches))
    seen += [testing.image_id(im) for b in batches for im in b["image"][b["valid"]]]
  assert counts[0] == counts[1]  # the same number of steps on every pipeline
  first = 24 if kind.startswith("stream") else 0  # validation images follow training
  assert sorted(seen) == list(range(first, first + source.num_eval))


@pytest.mark.parametrize("kind", ["stream_files", "stream_examples", "folder", "memory"])
def test_resume_reads_the_same_batches(kinds, kind):
  source = kinds[kind]
  view = view_spec(size=8, area_range=(0.3, 1.0), augmentation_type=AugmentationType.SIMCLR)
  spec = pipeline.TrainInputSpec(8, 2, seed=4, stage=2)
  full = take(pipeline.train_dataset(source, spec, view, options()), 8)
  resumed = take(pipeline.train_dataset(
      source, pipeline.TrainInputSpec(8, 2, seed=4, stage=2, start_step=5), view,
      options()), 3)
  for a, b in zip(full[5:], resumed):
    np.testing.assert_array_equal(a["labels"], b["labels"])
    np.testing.assert_array_equal(a["views"], b["views"])


@pytest.mark.parametrize("kind", ["stream_files", "folder", "memory"])
def test_batch_keys_follow_the_view_and_the_source(kinds, kind):
  """"blur_seeds" iff the view defers the blur, "corrupt" iff the source reports."""
  source = kinds[kind]
  spec = pipeline.TrainInputSpec(8, 2, seed=0, stage=1)
  blurred = view_spec(size=8, blur_probability=0.5)
  for view, blur_keys in ((blurred, set()),
                          (dataclasses.replace(blurred, defer_blur=True), {"blur_seeds"})):
    batch = take(pipeline.train_dataset(source, spec, view, options()), 1)[0]
    corrupt = {"corrupt"} if source.reports_corrupt else set()
    assert set(batch) == {"views", "labels"} | blur_keys | corrupt
    if blur_keys:
      assert batch["blur_seeds"].shape == (8, 2, 2)
  evaluation = take(pipeline.eval_dataset(source, 8, eval_spec(size=8), options()), 1)[0]
  assert set(evaluation) == {"image", "labels", "valid"} | corrupt


def test_unequal_shards_give_whole_steps_on_every_pipeline(tmp_path):
  data_dir, _ = testing.make_fake_imagenet(str(tmp_path), per_class=8, num_validation=3,
                                           num_shards=3)
  source = sources.load_source(DataConfig(dataset="imagenet2012", data_dir=data_dir,
                                          eval_split="validation"))
  by_files, sizes = source.shard_sizes("train", 2)
  assert by_files and sorted(sizes) == [8, 16]
  assert source.steps_per_epoch(8, 2) == 2  # the smaller shard sets the epoch
  spec = pipeline.TrainInputSpec(8, 1, seed=0, stage=1)
  for pid in range(2):
    ctx = tf.distribute.InputContext(2, pid, 2)
    batches = take(pipeline.train_dataset(source, spec, _IDENTITY, options(), ctx), 5)
    assert len(batches) == 5 and all(len(b["labels"]) == 4 for b in batches)


_DETERMINISM_SCRIPT = r"""
import hashlib, sys
import numpy as np
from supcon_tf.config import AugmentationType, DataConfig
from supcon_tf.data import pipeline, sources
from supcon_tf.data.augment import views
data_dir, folder, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
for config in (DataConfig(dataset="imagenet2012", data_dir=data_dir, eval_split="validation"),
               DataConfig(dataset="image_folder", image_dir=folder, train_split="all",
                          eval_split="all")):
  source = sources.load_source(config)
  view = views.ViewSpec.from_config(DataConfig(
      image_size=16, crop_area_range=(0.2, 1.0),
      augmentation_type=AugmentationType.STACKED_RANDAUGMENT, augmentation_magnitude=0.5))
  spec = pipeline.TrainInputSpec(8, 2, seed=seed, stage=1)
  options = pipeline.InputOptions.from_config(DataConfig(deterministic=True))
  digest = hashlib.sha256()
  for batch in pipeline.train_dataset(source, spec, view, options).take(2):
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
  source = memory.InMemorySource("m", images, np.arange(16) % 4, images[:4],
                                 np.arange(4), 4, "test")
  view = view_spec(size=32, augmentation_type=AugmentationType.SIMCLR,
                   blur_probability=0.5)
  spec = pipeline.TrainInputSpec(8, 2, 3, 1)
  inline = take(pipeline.train_dataset(source, spec, view, options()), 1)[0]
  deferred_view = dataclasses.replace(view, defer_blur=True)
  deferred = take(pipeline.train_dataset(source, spec, deferred_view, options()), 1)[0]
  assert deferred["blur_seeds"].shape == (8, 2, 2)
  flat = deferred["views"].reshape((16, 32, 32, 3))
  blurred = ops.batch_random_blur(flat, deferred["blur_seeds"].reshape(16, 2),
                                  deferred_view.blur_probability)
  np.testing.assert_allclose(blurred.numpy().reshape(inline["views"].shape),
                             inline["views"], atol=1e-5)
  changed = np.abs(flat - inline["views"].reshape(flat.shape)).max(axis=(1, 2, 3)) > 1e-3
  assert 0 < changed.sum() < 16  # some views blurred, some not (p = 0.5)


def test_input_options():
  tf_options = options(deterministic=False, threads=3).tf_options()
  assert tf_options.deterministic is False
  assert tf_options.threading.private_threadpool_size == 3
  default = pipeline.InputOptions.from_config(DataConfig())
  assert default.tf_options().threading.private_threadpool_size is None


def test_input_options_from_config_follow_it():
  """No defaults of its own: --deterministic (off by default) decides, not a
  second default in the pipeline."""
  assert pipeline.InputOptions.from_config(DataConfig()) == pipeline.InputOptions(
      deterministic=False, threads=0, shuffle_buffer_size=10000, report_corrupt=True)
  assert DataConfig().deterministic is False
  chosen = pipeline.InputOptions.from_config(DataConfig(
      deterministic=True, input_threads=5, shuffle_buffer_size=77))
  assert chosen == pipeline.InputOptions(deterministic=True, threads=5,
                                         shuffle_buffer_size=77, report_corrupt=True)
  assert chosen.tf_options().deterministic is True
  quiet = dataclasses.replace(chosen, report_corrupt=False)
  assert not quiet.report_corrupt and quiet.threads == 5
  with pytest.raises(TypeError):
    pipeline.InputOptions()  # pylint: disable=no-value-for-parameter


# ------------------------------------------------------------------ in memory
def _data(n=40):
  rng = np.random.default_rng(3)
  images = rng.integers(0, 256, (n, 12, 12, 1), dtype=np.uint8)
  labels = np.arange(n, dtype=np.int32)  # label == index: lets us trace examples
  return memory.InMemorySource("traced", images, labels, images, labels, n, "test")


_VIEW = view_spec(size=12, area_range=(0.5, 1.0), aspect_range=(0.75, 4 / 3), flip=True,
                  color_strength=0.0, grayscale_probability=0.0)


def test_epoch_sees_every_example_once_and_epochs_differ():
  source = _data(40)
  spec = pipeline.TrainInputSpec(global_batch_size=8, num_views=2, seed=5, stage=1)
  batches = take(pipeline.train_dataset(source, spec, _VIEW, options()), 10)
  first = np.concatenate([b["labels"] for b in batches[:5]])
  second = np.concatenate([b["labels"] for b in batches[5:]])
  assert sorted(first) == list(range(40)) and sorted(second) == list(range(40))
  assert list(first) != list(second)  # reshuffled each epoch
  assert batches[0]["views"].shape == (8, 2, 12, 12, 1)


def test_resume_is_step_indexed():
  source = _data(40)
  spec = pipeline.TrainInputSpec(global_batch_size=8, num_views=2, seed=5, stage=1)
  full = take(pipeline.train_dataset(source, spec, _VIEW, options()), 9)
  resumed_spec = pipeline.TrainInputSpec(8, 2, seed=5, stage=1, start_step=7)
  resumed = take(pipeline.train_dataset(source, resumed_spec, _VIEW, options()), 2)
  for a, b in zip(full[7:], resumed):
    np.testing.assert_array_equal(a["labels"], b["labels"])
    np.testing.assert_array_equal(a["views"], b["views"])
  other_seed = take(pipeline.train_dataset(
      source, pipeline.TrainInputSpec(8, 2, seed=6, stage=1), _VIEW, options()), 1)
  assert not np.array_equal(other_seed[0]["labels"], full[0]["labels"])


def test_two_pipelines_partition_each_epoch():
  source = _data(40)
  spec = pipeline.TrainInputSpec(global_batch_size=8, num_views=1, seed=0, stage=2)
  seen = []
  for pid in range(2):
    ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pid,
                                     num_replicas_in_sync=2)
    batches = take(pipeline.train_dataset(source, spec, _VIEW, options(), ctx), 5)
    assert all(b["labels"].shape == (4,) for b in batches)
    seen.append(np.concatenate([b["labels"] for b in batches]))
  both = np.concatenate(seen)
  assert sorted(both) == list(range(40))


def test_distributed_over_two_replicas_covers_each_epoch():
  """Through `distribute_datasets_from_function` on 2 virtual CPUs: per-replica
  batches, every example once per epoch, blur seeds on every replica."""
  strategy = testing.mirrored_cpu_strategy(2)
  source = _data(40)
  spec = pipeline.TrainInputSpec(global_batch_size=8, num_views=2, seed=0, stage=1)
  view = dataclasses.replace(_VIEW, color_strength=0.5, blur_probability=0.5,
                             defer_blur=True)
  dist = strategy.distribute_datasets_from_function(
      lambda ctx: pipeline.train_dataset(source, spec, view, options(), ctx))
  labels = []
  for _, batch in zip(range(5), dist):
    local = strategy.experimental_local_results(batch["labels"])
    assert [t.shape for t in local] == [(4,), (4,)]
    assert all(t.shape == (4, 2, 2) for t in
               strategy.experimental_local_results(batch["blur_seeds"]))
    labels += [int(x) for t in local for x in t.numpy()]
  assert sorted(labels) == list(range(40))


def test_too_few_examples_for_a_batch():
  with pytest.raises(ValueError, match="fewer than one global batch"):
    pipeline.train_dataset(_data(6), pipeline.TrainInputSpec(8, 2, 0, 1), _VIEW,
                           options())


def test_eval_dataset_pads_to_full_batches():
  ctx = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0,
                                   num_replicas_in_sync=2)
  batches = take(pipeline.eval_dataset(_data(10), 8, eval_spec(size=12), options(), ctx),
                 100)
  assert all(b["image"].shape == (4, 12, 12, 1) for b in batches)
  valid_labels = np.concatenate([b["labels"][b["valid"]] for b in batches])
  assert sorted(valid_labels) == list(range(10))
  assert sum(int(b["valid"].sum()) for b in batches) == 10


def test_eval_examples_are_the_first_eval_images(kinds, capfd):
  source = _data(10)
  images, labels = pipeline.eval_examples(source, 7, eval_spec(size=12))
  assert images.shape == (7, 12, 12, 1) and images.dtype == np.float32
  np.testing.assert_array_equal(labels, np.arange(7))
  np.testing.assert_allclose(images, source.test_images[:7] / 255.0, atol=1e-7)
  assert len(pipeline.eval_examples(source, 50, eval_spec(size=12))[1]) == 10
  none, no_labels = pipeline.eval_examples(source, 0, eval_spec(size=12))
  assert none.shape == (0, 12, 12, 1) and no_labels.shape == (0,)
  folder = kinds["folder"]
  images, labels = pipeline.eval_examples(folder, 5, eval_spec(size=8))
  assert [testing.image_id(im) for im in images] == list(range(5))
  assert "undecodable" not in capfd.readouterr().err


# ------------------------------------------------------------------ refusals
@dataclasses.dataclass(frozen=True)
class _TupleRecordsSource(memory.InMemorySource):
  """Gives its records as a bare (kind, tensors) tuple: not a kind of records."""

  def train_records(self, num_pipelines):
    return ("images", (self.train_images, self.train_labels))

  def eval_records(self, num_pipelines):
    return ("images", (self.test_images, self.test_labels))


@dataclasses.dataclass(frozen=True)
class _CorruptMemorySource(memory.InMemorySource):
  reports_corrupt: ClassVar[bool] = True  # but decoded images cannot be corrupt


def test_records_of_an_unknown_kind_are_refused():
  base = _data(16)
  odd = _TupleRecordsSource(**{f.name: getattr(base, f.name)
                               for f in dataclasses.fields(base)})
  assert isinstance(odd, sources.Source)  # the protocol checks names, not returns
  spec = pipeline.TrainInputSpec(8, 1, 0, 1)
  with pytest.raises(TypeError, match="records of an unknown kind, tuple"):
    pipeline.train_dataset(odd, spec, _VIEW, options())
  with pytest.raises(TypeError, match="MemoryRecords, FileRecords or StreamRecords"):
    pipeline.eval_dataset(odd, 8, eval_spec(size=12), options())


def test_a_source_reporting_corrupt_decoded_images_is_refused():
  base = _data(16)
  wrong = _CorruptMemorySource(**{f.name: getattr(base, f.name)
                                  for f in dataclasses.fields(base)})
  with pytest.raises(ValueError, match="only files"):
    pipeline.train_dataset(wrong, pipeline.TrainInputSpec(8, 1, 0, 1), _VIEW, options())


@pytest.mark.parametrize("kind", ["folder", "memory"])
def test_class_balanced_batches_over_two_pipelines(kinds, kind):
  """--samples_per_class=2 with a batch of 6: each global batch (both pipelines'
  halves) is 3 classes of 2 images; streams are refused."""
  source = kinds[kind]
  spec = pipeline.TrainInputSpec(global_batch_size=6, num_views=1, seed=1, stage=1,
                                 samples_per_class=2)
  halves = []
  for pid in range(2):
    ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pid,
                                     num_replicas_in_sync=2)
    halves.append(take(pipeline.train_dataset(source, spec, _IDENTITY, options(), ctx), 8))
  for a, b in zip(*halves):
    labels = np.concatenate([a["labels"], b["labels"]])
    assert sorted(np.bincount(labels, minlength=3).tolist()) == [2, 2, 2], labels
    ids = _ids([a, b])
    assert len(set(ids)) == 6


@pytest.mark.parametrize("kind", ["stream_files", "stream_examples"])
def test_class_balanced_batches_of_a_stream_are_refused(kinds, kind):
  from supcon_tf.config import ConfigError  # pylint: disable=import-outside-toplevel
  with pytest.raises(ConfigError, match="needs random access by class"):
    sources.check_balanced_batches(kinds[kind], 2, 6)
  spec = pipeline.TrainInputSpec(global_batch_size=6, num_views=1, seed=1, stage=1,
                                 samples_per_class=2)
  with pytest.raises(ValueError, match="random-access split"):
    take(pipeline.train_dataset(kinds[kind], spec, _IDENTITY, options()), 1)
