"""The stage plan: step ranges, views, and when the classifier is trained."""

import dataclasses

import pytest

from supcon_tf import config as config_lib
from supcon_tf.train import plan as plan_lib


def _config(model_dir):
  return config_lib.Config(
      stage_1=config_lib.StageConfig(steps=1, contrastive_loss_weight=1.0),
      stage_2=config_lib.StageConfig(steps=0),
      runtime=config_lib.RuntimeConfig(model_dir=str(model_dir), batch_size=8))


def test_untrained_classifier_reason_from_the_plan(tmp_path):
  cfg = _config(tmp_path)
  stage_2 = dataclasses.replace(cfg.stage_2, steps=3, cross_entropy_loss_weight=1.0)
  stages = plan_lib.plan_stages(dataclasses.replace(cfg, stage_2=stage_2), 16)
  assert "starts at global step 1" in plan_lib.untrained_classifier_reason(stages, 1)
  assert plan_lib.untrained_classifier_reason(stages, 2) is None
  only_1 = plan_lib.plan_stages(cfg, 16)
  assert "no stage trains" in plan_lib.untrained_classifier_reason(only_1, 1)
  joint = dataclasses.replace(cfg.stage_1, cross_entropy_loss_weight=1.0)
  stages = plan_lib.plan_stages(dataclasses.replace(cfg, stage_1=joint), 16)
  assert plan_lib.untrained_classifier_reason(stages, 1) is None


def test_stages_follow_each_other_in_global_steps(tmp_path):
  cfg = _config(tmp_path)
  cfg = dataclasses.replace(
      cfg, data=dataclasses.replace(cfg.data, num_views=3),
      stage_1=dataclasses.replace(cfg.stage_1, steps=0, epochs=2.5),
      stage_2=dataclasses.replace(cfg.stage_2, epochs=1.0, cross_entropy_loss_weight=1.0))
  one, two = plan_lib.plan_stages(cfg, 100)  # 100 // 8 = 12 steps per epoch
  assert (one.first_step, one.num_steps, one.end_step) == (0, 30, 30)
  assert (two.first_step, two.num_steps, two.end_step) == (30, 12, 42)
  assert one.steps_per_epoch == two.steps_per_epoch == 12
  # Contrastive stages see --num_views views, cross-entropy-only stages one.
  assert (one.num_views, two.num_views) == (3, 1)
  assert one.contrastive and not one.cross_entropy
  assert two.cross_entropy and not two.contrastive
  # A streamed source gives its own (smaller) steps per epoch.
  assert plan_lib.plan_stages(cfg, 100, steps_per_epoch=10)[0].num_steps == 25


def test_steps_override_epochs(tmp_path):
  cfg = _config(tmp_path)
  cfg = dataclasses.replace(cfg, stage_1=dataclasses.replace(cfg.stage_1, steps=7,
                                                             epochs=100))
  assert plan_lib.plan_stages(cfg, 16)[0].num_steps == 7


def test_which_stages_train_the_encoder(tmp_path):
  cfg = _config(tmp_path)
  linear = dataclasses.replace(cfg.stage_2, steps=1, cross_entropy_loss_weight=1.0)
  one, two = plan_lib.plan_stages(dataclasses.replace(cfg, stage_2=linear), 16)
  assert one.trains_encoder(stop_gradient_before_classifier=True)
  assert not two.trains_encoder(stop_gradient_before_classifier=True)
  assert two.trains_encoder(stop_gradient_before_classifier=False)


def test_a_batch_larger_than_the_training_split_is_refused(tmp_path):
  with pytest.raises(config_lib.ConfigError, match="larger than the 5 training"):
    plan_lib.plan_stages(_config(tmp_path), 5)


def test_relative_step_cost_and_remaining_time(tmp_path):
  cfg = _config(tmp_path)
  cfg = dataclasses.replace(
      cfg, data=dataclasses.replace(cfg.data, num_views=2),
      stage_1=dataclasses.replace(cfg.stage_1, steps=10),
      stage_2=dataclasses.replace(cfg.stage_2, steps=30, cross_entropy_loss_weight=1.0))
  one, two = plan_lib.plan_stages(cfg, 100)
  # Contrastive: 2 views through forward + backward; linear stage: 1 view, forward.
  assert plan_lib.relative_step_cost(one, True) == 6.0
  assert plan_lib.relative_step_cost(two, True) == 1.0
  # Cross-entropy reaching the encoder trains it.
  assert plan_lib.relative_step_cost(two, False) == 3.0
  # 4 steps of stage 1 done at 0.6 s/step: 6 left (3.6 s) + 30 steps of stage 2
  # at a sixth of the cost (0.1 s/step).
  assert abs(plan_lib.remaining_seconds([one, two], one, 4, 0.6, True) - 6.6) < 1e-9
  # In the last stage only its own rest counts.
  assert abs(plan_lib.remaining_seconds([one, two], two, 20, 0.1, True) - 2.0) < 1e-9
  empty = dataclasses.replace(two, num_steps=0)
  assert plan_lib.relative_step_cost(empty, True) == 0.0


def _chunks(plan, runtime, start, epoch_end=None):
  """The chunk lengths from `start` to the end of the stage."""
  out, step = [], start
  while step < plan.end_step:
    out.append(plan_lib.chunk_length(plan, step, runtime, epoch_end))
    step += out[-1]
  return out


def test_chunks_end_at_every_boundary(tmp_path):
  cfg = _config(tmp_path)
  cfg = dataclasses.replace(
      cfg, stage_1=dataclasses.replace(cfg.stage_1, steps=23),
      stage_2=dataclasses.replace(cfg.stage_2, steps=9, cross_entropy_loss_weight=1.0))
  one, two = plan_lib.plan_stages(cfg, 16)
  rt = dataclasses.replace(cfg.runtime, steps_per_loop=10, checkpoint_steps=12)
  assert _chunks(one, rt, 0) == [10, 2, 10, 1]  # loops, checkpoint 12, end 23
  assert _chunks(one, rt, 5) == [7, 10, 1]  # a resume at step 5
  knn = dataclasses.replace(rt, knn_every=7)
  assert _chunks(one, knn, 0) == [7, 5, 2, 7, 2]  # + kNN at 7, 14, 21
  assert _chunks(two, knn, 23) == [1, 8]  # no kNN in a cross-entropy stage
  logged = dataclasses.replace(knn, log_steps=3, profile_steps=(1, 2))
  # profile 1, 2; log 3, 6, ...; kNN 7, 14, 21; checkpoint 12; end 23
  assert _chunks(one, logged, 0) == [1, 1, 1, 3, 1, 2, 3, 2, 1, 3, 3, 2]
  # An epoch's end (corrupt images are counted there) ends a chunk too.
  assert plan_lib.chunk_length(one, 0, rt, epoch_end=4) == 4
