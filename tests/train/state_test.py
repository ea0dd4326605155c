"""What a run trains and checkpoints: stage variables, checkpoint round trip,
non-chief scratch, seeded classifier re-initialisation."""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from supcon_tf import train
from tests.train import common


def test_classifier_reinitialisation_is_seeded(tmp_path):
  kernels = []
  for seed in (3, 3, 4):
    cfg = common.tiny_config(str(tmp_path / str(len(kernels))))
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, seed=seed))
    trainer = train.Trainer(cfg, tf.distribute.get_strategy(), common.source(),
                                  str(tmp_path / str(len(kernels))), verbose=False)
    trainer.state.reinitialize_classifier(cfg.data.seed, 2)
    kernels.append(trainer.model.classifier.dense.kernel.numpy())
  np.testing.assert_array_equal(kernels[0], kernels[1])
  assert not np.allclose(kernels[0], kernels[2])


def test_checkpoint_round_trip_restores_model_optimizers_and_step(tmp_path):
  cfg = common.tiny_config(str(tmp_path))
  strategy = tf.distribute.get_strategy()
  trainer = train.Trainer(cfg, strategy, common.source(), str(tmp_path), verbose=False)
  rng = np.random.default_rng(0)
  batch = {"views": tf.constant(rng.random((8, 2, 12, 12, 1)), tf.float32),
           "labels": tf.constant(np.arange(8) % 4, tf.int32)}
  trainer.train_step(1, batch)
  trainer.global_step.assign(3)
  path = trainer.save()
  assert os.path.basename(path) == "ckpt-3"
  saved = [v.numpy() for v in trainer.model.variables]
  slots = [v.numpy() for v in trainer.optimizers[1].variables()]
  assert any(np.any(s != 0) for s in slots[1:])  # momentum moved
  fresh = train.Trainer(cfg, strategy, common.source(), str(tmp_path), verbose=False)
  assert fresh.restore() == 3
  for a, b in zip(saved, fresh.model.variables):
    np.testing.assert_array_equal(a, b.numpy())
  for a, b in zip(slots, fresh.optimizers[1].variables()):
    np.testing.assert_array_equal(a, b.numpy())


def test_a_relative_model_dir_restores(tmp_path, monkeypatch):
  """model_dir as users give it (runs/x, relative to the working directory): the
  checkpoints found are the files saved, and a new Trainer restores the newest."""
  monkeypatch.chdir(tmp_path)
  model_dir = os.path.join("runs", "x")
  cfg = common.tiny_config(model_dir)
  strategy = tf.distribute.get_strategy()
  trainer = train.Trainer(cfg, strategy, common.source(), model_dir, verbose=False)
  for step in (2, 4):
    trainer.global_step.assign(step)
    trainer.save()
  assert trainer.state.checkpoints() == [os.path.join(model_dir, "ckpt-4"),
                                         os.path.join(model_dir, "ckpt-2")]
  fresh = train.Trainer(cfg, strategy, common.source(), model_dir, verbose=False)
  assert fresh.restore() == 4


def test_stage_variables_follow_what_the_stage_trains(tmp_path):
  trainer = train.Trainer(common.tiny_config(str(tmp_path)), tf.distribute.get_strategy(),
                          common.source(), str(tmp_path), verbose=False)
  m = trainer.model
  refs = lambda vs: {v.ref() for v in vs}  # pylint: disable=unnecessary-lambda-assignment
  # Stage 1 (contrastive): encoder + projection head; stage 2 (linear): classifier.
  assert refs(trainer.train_vars[1]) == refs(m.encoder.trainable_variables +
                                             m.projection_head.trainable_variables)
  assert refs(trainer.train_vars[2]) == refs(m.classifier.trainable_variables)


def test_a_non_chief_worker_saves_into_scratch_and_removes_it(tmp_path):
  cfg = common.tiny_config(str(tmp_path))
  trainer = train.Trainer(cfg, tf.distribute.get_strategy(), common.source(), str(tmp_path),
                          is_chief=False, verbose=False)
  assert trainer.state.manager.directory == os.path.join(str(tmp_path), "tmp_worker", "0")
  trainer.save()
  assert not os.path.exists(os.path.join(str(tmp_path), "tmp_worker", "0"))
  assert tf.train.latest_checkpoint(str(tmp_path)) is None  # nothing in model_dir
