"""The stage plan: which global steps each training stage takes, and what it trains.

Global steps [0, S1) are stage 1, [S1, S1 + S2) stage 2. A checkpoint holds the
global step, so the step alone says which stage to resume and where its input
starts (the input is step-indexed, see `data/pipeline.py`). Dry-run, the trainer,
evaluation and export all read the plan from here.
"""

import dataclasses
from typing import List, Optional

from supcon_tf import config as config_lib
from supcon_tf.data import pipeline


@dataclasses.dataclass(frozen=True)
class StagePlan:
  """What one stage trains, resolved from its StageConfig."""
  index: int  # 1 or 2
  config: config_lib.StageConfig
  first_step: int  # global step at which the stage starts
  num_steps: int
  steps_per_epoch: int
  num_views: int
  # Whether the stage's gradients reach the encoder (the kNN monitor runs there).
  encoder_trained: bool = True

  @property
  def end_step(self) -> int:
    return self.first_step + self.num_steps

  @property
  def contrastive(self) -> bool:
    return self.config.contrastive_loss_weight > 0

  @property
  def cross_entropy(self) -> bool:
    return self.config.cross_entropy_loss_weight > 0

  def trains_encoder(self, stop_gradient_before_classifier: bool) -> bool:
    """Whether the stage's gradients reach the encoder.

    Args:
      stop_gradient_before_classifier: the model's
        `stop_gradient_before_classification_head`.
    """
    return self.config.trains_encoder(stop_gradient_before_classifier)


def relative_step_cost(plan: StagePlan, stop_gradient_before_classifier: bool) -> float:
  """A stage's encoder work per step, in forward passes of one sample's view.

  Views per sample, times 3 when the gradient reaches the encoder (a backward
  pass costs about two forward ones), else 1 (frozen encoder: forward only).
  Used to extrapolate a measured stage's speed to the stages still to come; the
  batch is the same in every stage.

  Args:
    plan: the stage.
    stop_gradient_before_classifier: the model's
      `stop_gradient_before_classification_head`.

  Returns:
    The cost (0 for a stage without steps).
  """
  if plan.num_steps == 0:
    return 0.0
  return plan.num_views * (3.0 if plan.trains_encoder(stop_gradient_before_classifier)
                           else 1.0)


def format_seconds(seconds: float) -> str:
  """A duration for the progress line.

  Args:
    seconds: the duration (negative counts as 0).

  Returns:
    `1h02m03s`, or `2m03s` under an hour.
  """
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def remaining_seconds(stages: List[StagePlan], current: StagePlan, step: int,
                      seconds_per_step: float,
                      stop_gradient_before_classifier: bool) -> float:
  """Estimated time to the end of training, from the current stage's speed.

  Args:
    stages: the plan.
    current: the stage being trained.
    step: the global step reached.
    seconds_per_step: measured in `current`.
    stop_gradient_before_classifier: as in `relative_step_cost`.

  Returns:
    Seconds for the rest of `current` plus the later stages, each scaled by its
    `relative_step_cost` against the current one's.
  """
  unit = seconds_per_step / max(
      relative_step_cost(current, stop_gradient_before_classifier), 1e-9)
  later = sum(p.num_steps * relative_step_cost(p, stop_gradient_before_classifier)
              for p in stages if p.first_step >= current.end_step)
  return (current.end_step - step) * seconds_per_step + later * unit


def plan_stages(cfg: config_lib.Config, num_train_examples: int,
                steps_per_epoch: Optional[int] = None) -> List[StagePlan]:
  """The stages' step ranges.

  Args:
    cfg: the run's config (stage lengths in epochs or steps, batch, views).
    num_train_examples: size of the training split.
    steps_per_epoch: default whole global batches of `num_train_examples` (a
      streamed source can have fewer: its smallest shard).

  Returns:
    `[StagePlan of stage 1, StagePlan of stage 2]` (a stage may have 0 steps).

  Raises:
    ConfigError: a stage trains but the batch is larger than the training split.
  """
  spe = (pipeline.steps_per_epoch(num_train_examples, cfg.runtime.batch_size)
         if steps_per_epoch is None else steps_per_epoch)
  plans, first = [], 0
  for index, stage in ((1, cfg.stage_1), (2, cfg.stage_2)):
    steps = stage.steps if stage.steps > 0 else int(round(stage.epochs * spe))
    if steps > 0 and spe < 1:
      raise config_lib.ConfigError(
          f"--batch_size={cfg.runtime.batch_size} is larger than the "
          f"{num_train_examples} training examples")
    plans.append(StagePlan(index, stage, first, steps, spe, stage.views(cfg.data.num_views),
                           stage.trains_encoder(
        cfg.model.stop_gradient_before_classification_head)))
    first += steps
  return plans


def chunk_length(plan: StagePlan, step: int, runtime: config_lib.RuntimeConfig,
                 epoch_end: Optional[int] = None) -> int:
  """Steps of the next call into the compiled loop: up to the next boundary.

  A chunk ends at --steps_per_loop steps, at a --checkpoint_steps,
  --log_steps, --profile_steps or (in a stage that trains the encoder) --knn_every
  boundary,
  at `epoch_end` and at the end of the stage.

  Args:
    plan: the stage being trained.
    step: the global step reached.
    runtime: the run's runtime config.
    epoch_end: the global step ending the current epoch, when something is
      reported there (undecodable images); None: no such boundary.

  Returns:
    The chunk's number of steps (>= 1 while `step < plan.end_step`).
  """
  rt = runtime

  def to_next(every: int) -> int:
    return (step // every + 1) * every - step

  chunk = min(rt.steps_per_loop, plan.end_step - step, to_next(rt.checkpoint_steps))
  if epoch_end is not None:
    chunk = min(chunk, epoch_end - step)
  for boundary in rt.profile_steps:  # the trace starts/ends between chunks
    if boundary > step:
      chunk = min(chunk, boundary - step)
  if rt.log_steps:
    chunk = min(chunk, to_next(rt.log_steps))
  if rt.knn_every and plan.encoder_trained:
    chunk = min(chunk, to_next(rt.knn_every))
  return chunk


def untrained_classifier_reason(stages: List[StagePlan], step: int) -> Optional[str]:
  """Why the classifier has not been trained by global step `step`, or None.

  A top-1 of an untrained classifier is chance at best (with a zero-initialised
  classifier every logit ties), so no number is reported for it.

  Args:
    stages: the run's plan (`plan_stages`).
    step: the global step of the checkpoint.

  Returns:
    A one-line reason, or None when some cross-entropy stage has taken a step.
  """
  trains = [p for p in stages if p.cross_entropy and p.num_steps > 0]
  if not trains:
    return ("no stage trains the classifier (no cross-entropy stage with steps: "
            "e.g. --stage_2_steps=0 --stage_2_epochs=0)")
  if not any(step > p.first_step for p in trains):
    return (f"the classifier is untrained at global step {step}: its training "
            f"starts at global step {trains[0].first_step} (stage {trains[0].index})")
  return None
