"""--mode=eval_robustness: the trained classifier's top-1 error on corrupted copies
of the test split, per corruption and severity, and the mCE.

Small datasets held in memory (Fashion-MNIST, CIFAR, ...) get their corrupted
copies generated here, deterministically from --corruption_seed
(`data/corruptions.py`): image i of corruption c at severity s is the same whatever
the batch, the strategy or the worker. ImageNet reads the published ImageNet-C
images from TFDS `imagenet2012_corrupted` prepared under --data_dir
(`data/sources/imagenet_c.py`); they are already 224 x 224 centre crops, so they are
evaluated as they are (resized to --image_size if it differs), without the ImageNet
evaluation crop.

The arithmetic (`mce.py`) follows ImageNet-C (Hendrycks & Dietterich, ICLR 2019):
with E_{s,c} the top-1 error at severity s of corruption c, CE_c = sum_s E_{s,c} /
sum_s E^base_{s,c}, relative CE_c = sum_s (E_{s,c} - E_clean) / sum_s (E^base_{s,c} -
E^base_clean), mCE and relative mCE their means over corruptions. The baseline is
--baseline_model_dir, a run evaluated the same way first (the SupCon paper compares
its ResNets with cross-entropy ones; ImageNet-C's own tables use AlexNet).

The results go to results.json ("robustness"), the table to stdout, the mean
corruption error to TensorBoard (eval/robustness/...). Every worker evaluates (the
evaluation is a collective); only the chief writes.
"""

import dataclasses
import os
from typing import Dict, Iterator, List, Optional, Tuple

from supcon_tf import config as config_lib
from supcon_tf import mce
from supcon_tf import results
from supcon_tf.data import corruptions
from supcon_tf.data.augment import views
from supcon_tf.data.sources import imagenet_c
from supcon_tf.data.sources import memory
from supcon_tf.train import evaluate as evaluate_lib

RESULTS_KEY = "robustness"


def chosen_corruptions(cfg: config_lib.Config, channels: int,
                       imagenet: bool) -> Tuple[str, ...]:
  """The corruptions to evaluate: --corruptions, or by default those of ImageNet-C's
  benchmark (its mCE's 15) that apply: for generated ones, the 12 without zoom blur,
  snow and frost (speckle noise, Gaussian blur and, for RGB, saturate — ImageNet-C's
  extra corruptions — on request).

  Raises:
    ConfigError: an unknown name, or a colour one for 1-channel images.
  """
  available = (imagenet_c.IMAGENET_C_CORRUPTIONS if imagenet
               else corruptions.corruptions_for(channels))
  default = tuple(n for n in available if n in imagenet_c.IMAGENET_C_BENCHMARK)
  given = [n.strip() for n in cfg.runtime.corruptions.split(",") if n.strip()]
  for name in given:
    if name not in available:
      why = ("a colour corruption, for RGB images only" if name in corruptions.COLOUR_ONLY
             and not imagenet else "unknown here")
      raise config_lib.ConfigError(
          f"--corruptions: {name!r} is {why}; choose from {', '.join(available)}")
  return tuple(given) if given else default


def uses_imagenet_c(cfg: config_lib.Config) -> bool:
  """ImageNet (TFDS imagenet2012 under --data_dir): read imagenet2012_corrupted."""
  return cfg.data.dataset.startswith("imagenet2012") and bool(cfg.data.data_dir)


def check_baseline(cfg: config_lib.Config, dataset: str,
                   names: Tuple[str, ...]) -> Optional[dict]:
  """The baseline run's robustness results, checked against this evaluation.

  Returns:
    Its results.json "robustness" object, or None without --baseline_model_dir.

  Raises:
    ConfigError: no such results, or measured on other data, corruptions or seed.
  """
  base_dir = cfg.runtime.baseline_model_dir
  if not base_dir:
    return None
  if os.path.abspath(base_dir) == os.path.abspath(cfg.runtime.model_dir):
    raise config_lib.ConfigError("--baseline_model_dir is the run being evaluated")
  base = results.read(base_dir).get(RESULTS_KEY)
  if not base:
    raise config_lib.ConfigError(
        f"--baseline_model_dir={base_dir!r} has no robustness results: run "
        f"--mode=eval_robustness --model_dir={base_dir} first")
  ours = {"dataset": dataset, "corruption_seed": cfg.runtime.corruption_seed}
  for key, value in ours.items():
    if base.get(key) != value:
      raise config_lib.ConfigError(
          f"--baseline_model_dir={base_dir!r} was evaluated with {key} "
          f"{base.get(key)!r}, this run with {value!r}: evaluate both the same way")
  missing = [n for n in names if n not in base.get("errors", {})]
  if missing:
    raise config_lib.ConfigError(
        f"--baseline_model_dir={base_dir!r} has no errors for {', '.join(missing)}")
  return base


def corrupted_sources(cfg: config_lib.Config, source,
                      names: Tuple[str, ...]) -> Iterator[Tuple[str, int, object]]:
  """(corruption, severity, a source whose test split is the corrupted copy).

  Raises:
    ConfigError: a source whose test images are not held in memory (and not
      ImageNet): their corrupted copies would have to be generated on the fly.
  """
  seed = cfg.runtime.corruption_seed
  for name in names:
    for severity in corruptions.SEVERITIES:
      if uses_imagenet_c(cfg):
        yield name, severity, imagenet_c.corrupted_source(cfg.data, name, severity)
      else:
        images = corruptions.corrupt(source.test_images, name, severity, seed)
        yield name, severity, dataclasses.replace(source, test_images=images)


def check(cfg: config_lib.Config, source) -> Tuple[Tuple[str, ...], Optional[dict]]:
  """Everything this mode can refuse, before the model is built or read.

  Returns:
    (the corruptions to evaluate, the baseline's robustness results or None).

  Raises:
    ConfigError: a source whose test images are not held in memory and that is not
      ImageNet (its corrupted copies would have to be generated on the fly), or see
      `chosen_corruptions` and `check_baseline`.
  """
  imagenet = uses_imagenet_c(cfg)
  if not (imagenet or isinstance(source, memory.InMemorySource)):
    raise config_lib.ConfigError(
        f"--mode=eval_robustness generates corruptions of test splits held in memory "
        f"(Fashion-MNIST, CIFAR and other small TFDS datasets) and reads ImageNet-C "
        f"for imagenet2012; {source.name} from {source.origin} is neither")
  names = chosen_corruptions(cfg, source.num_channels, imagenet)
  return names, check_baseline(cfg, source.name, names)


def _percent(value, width: int = 6) -> str:
  return f"{'n/a':>{width}}" if value is None else f"{100 * value:{width}.1f}"


def format_table(summary: dict) -> List[str]:
  """The per-corruption lines and the means, in percent (n/a: undefined)."""
  errors, lines = summary["errors"], []
  has_base = "corruption_errors" in summary
  lines.append(f"{'corruption':<20} " + " ".join(f"{'s' + str(s):>6}" for s in
                                                 corruptions.SEVERITIES)
               + f" {'mean':>6}" + (f" {'CE':>6} {'relCE':>6}" if has_base else ""))
  for name, row in errors.items():
    line = (f"{name:<20} " + " ".join(f"{100 * e:6.2f}" for e in row)
            + f" {100 * summary['mean_errors'][name]:6.2f}")
    if has_base:
      line += (f" {_percent(summary['corruption_errors'][name])}"
               f" {_percent(summary['relative_corruption_errors'][name])}")
    lines.append(line)
  lines.append(f"clean error {100 * summary['clean_error']:.2f}%, mean corruption "
               f"error {100 * summary['mean_corruption_error']:.2f}%"
               + (f", mCE {_percent(summary['mce'], 0)}%, relative mCE "
                  f"{_percent(summary['relative_mce'], 0)}% (baseline "
                  f"{summary['baseline_model_dir']})" if has_base else ""))
  for name, reason in summary.get("undefined", {}).items():
    lines.append(f"undefined for {name}: {reason}")
  return lines


def evaluate_robustness(trainer, cfg: config_lib.Config, source) -> dict:
  """Evaluates the latest checkpoint clean and on every corruption and severity.

  Args:
    trainer: the run's `Trainer` (restores the checkpoint, evaluates clean).
    cfg: the run's config (from its config.json and this command's flags).
    source: the run's data source.

  Returns:
    The "robustness" object written to results.json (`mce.summarize` plus the
    dataset, seed, global step and baseline).

  Raises:
    ConfigError: see `check`.
  """
  imagenet = uses_imagenet_c(cfg)
  names, baseline = check(cfg, source)
  clean = trainer.evaluate()  # restores the latest checkpoint
  view = trainer.eval_view
  if imagenet:  # already centre-cropped: only resized
    view = dataclasses.replace(view, method=config_lib.EvalCropMethod.IDENTITY)
  errors: Dict[str, List[float]] = {}
  for name, severity, corrupted in corrupted_sources(cfg, source, names):
    got = evaluate_lib.classifier_accuracy(trainer.model, trainer.strategy, corrupted,
                                           view, cfg, trainer.input_options,
                                           lambda line: None)
    errors.setdefault(name, []).append(1.0 - got["top_1"])
    trainer.log(f"{name} severity {severity}: top-1 {100 * got['top_1']:.2f}%")
  summary = mce.summarize(
      errors, 1.0 - clean["top_1"],
      baseline and {n: baseline["errors"][n] for n in names},
      baseline and baseline["clean_error"])
  summary.update(dataset=source.name, corruption_seed=cfg.runtime.corruption_seed,
                 global_step=clean["global_step"],
                 baseline_model_dir=cfg.runtime.baseline_model_dir or None)
  for line in format_table(summary):
    trainer.log(line)
  scalars = {"robustness/mean_corruption_error": summary["mean_corruption_error"]}
  for key in ("mce", "relative_mce"):
    if summary.get(key) is not None:  # (None: undefined, see mce.summarize)
      scalars[f"robustness/{key}"] = summary[key]
  trainer.summaries.scalars("eval", scalars, clean["global_step"])
  if trainer.is_chief:
    results.put(cfg.runtime.model_dir, RESULTS_KEY, summary)
  return summary
