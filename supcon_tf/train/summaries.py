"""TensorBoard summaries of a run: the config and hparams once, a few augmented
views per stage, the training scalars of every chunk, and evaluation results.

Only the chief writes (other workers get no-op writers); event files go to
<model_dir>/train and <model_dir>/eval.
"""

import os
from typing import Dict

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from supcon_tf import config as config_lib
from supcon_tf.train import plan as plan_lib


def flat_hparams(d: dict, prefix: str = "") -> Dict[str, object]:
  """A config dict for the hparams plugin.

  Args:
    d: `Config.to_dict()` (or a section of it).
    prefix: prepended to every key.

  Returns:
    {"section.field": bool | int | float | str}.
  """
  out = {}
  for key, value in d.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      out.update(flat_hparams(value, name + "."))
    elif isinstance(value, (bool, int, float, str)):
      out[name] = value
    else:
      out[name] = str(value)
  return out


class Summaries:
  """The run's summary writers and what is written through them."""

  def __init__(self, model_dir: str, is_chief: bool):
    """Args:
      model_dir: the run's model_dir.
      is_chief: whether this worker writes.
    """
    self.model_dir = model_dir
    self.is_chief = is_chief
    self._writers = {}
    self._wrote_config = False

  def writer(self, name: str) -> tf.summary.SummaryWriter:
    """The writer of <model_dir>/<name> (a no-op writer on non-chief workers).

    Args:
      name: "train" or "eval".
    """
    if name not in self._writers:
      self._writers[name] = (
          tf.summary.create_file_writer(os.path.join(self.model_dir, name))
          if self.is_chief else tf.summary.create_noop_writer())
    return self._writers[name]

  def config(self, cfg: config_lib.Config, step: int) -> None:
    """The config as text and as hparams, once per process.

    Args:
      cfg: the run's config.
      step: the global step.
    """
    if self._wrote_config:
      return
    with self.writer("train").as_default(step=step):
      tf.summary.text("config", "```\n" + cfg.to_json() + "\n```")
      hp.hparams(flat_hparams(cfg.to_dict()), trial_id=self.model_dir)
    self._wrote_config = True

  def augmented_views(self, stage_index: int, views, step: int) -> None:
    """Augmented views: one image per sample, its views side by side.

    Args:
      stage_index: names the summary (`augmented_views/stage_<i>`).
      views: [k, V, H, W, C] in [0, 1].
      step: the global step.
    """
    rows = tf.concat(tf.unstack(views, axis=1), axis=2)
    with self.writer("train").as_default(step=step):
      tf.summary.image(f"augmented_views/stage_{stage_index}", rows,
                       max_outputs=int(views.shape[0]))

  def train(self, plan: plan_lib.StagePlan, values: Dict[str, float],
            learning_rate: float, images_per_second: float, weight_norm: float,
            step: int) -> None:
    """The scalars of a chunk of training steps.

    Args:
      plan: the stage (which loss terms it has).
      values: the step metrics' means over the chunk.
      learning_rate: the rate after the chunk.
      images_per_second: the chunk's throughput.
      weight_norm: the global norm of the trainable variables.
      step: the global step after the chunk.
    """
    with self.writer("train").as_default(step=step):
      tf.summary.scalar("loss/total", values["loss"])
      if plan.contrastive:
        tf.summary.scalar("loss/contrastive", values["contrastive_loss"])
      if plan.cross_entropy:
        tf.summary.scalar("loss/cross_entropy", values["cross_entropy_loss"])
        tf.summary.scalar("train/accuracy", values["train_accuracy"])
      tf.summary.scalar("loss/weight_decay", values["weight_decay_loss"])
      tf.summary.scalar("learning_rate", learning_rate)
      tf.summary.scalar("norms/gradient", values["gradient_norm"])
      tf.summary.scalar("norms/weights", weight_norm)
      tf.summary.scalar("images_per_second", images_per_second)
      tf.summary.scalar("stage", plan.index)

  def scalars(self, writer: str, values: Dict[str, float], step: int) -> None:
    """Named scalars into one writer.

    Args:
      writer: "train" or "eval".
      values: {tag: value}.
      step: the global step.
    """
    with self.writer(writer).as_default(step=step):
      for name, value in values.items():
        tf.summary.scalar(name, value)

  def flush(self) -> None:
    for w in self._writers.values():
      w.flush()
