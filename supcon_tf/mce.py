"""Corruption errors and the mean corruption error (mCE): the arithmetic.

Definitions of Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to
Common Corruptions and Perturbations" (ICLR 2019), Sec. 3. With E[c][s] the top-1
error (a fraction in [0, 1]) of a model on corruption c at severity s = 1..5,
E_clean its error on the clean images, and E^b the same for a baseline model:

    CE_c          = sum_s E[c][s] / sum_s E^b[c][s]
    mCE           = mean over c of CE_c
    relative CE_c = sum_s (E[c][s] - E_clean) / sum_s (E^b[c][s] - E^b_clean)
    relative mCE  = mean over c of relative CE_c

The paper normalises by AlexNet on ImageNet-C and reports the ratios as
percentages (the SupCon paper: ResNet-50 with cross-entropy 68.6, SupCon 67.2);
here the baseline is whatever run the caller compares with (e.g.
`--baseline_model_dir`), and every value is a fraction (0.672, not 67.2). Without
a baseline only the unnormalised errors are reported. No TensorFlow.
"""

import math
from typing import Dict, Mapping, Optional, Sequence

NUM_SEVERITIES = 5
# A baseline degradation below this is no degradation (a sum of differences that
# is 0 in exact arithmetic comes out as about 1e-17 in floating point).
_NO_DEGRADATION = 1e-9

Errors = Mapping[str, Sequence[float]]


def _check_error(value: float, what: str) -> float:
  value = float(value)
  if not (math.isfinite(value) and 0.0 <= value <= 1.0):
    raise ValueError(f"{what} must be an error in [0, 1], got {value!r}")
  return value


def _checked(errors: Errors, who: str = "model") -> Dict[str, list]:
  """`errors` as {corruption: 5 floats}, each checked."""
  if not errors:
    raise ValueError(f"no corruption errors given for the {who}")
  out = {}
  for name, values in errors.items():
    values = list(values)
    if len(values) != NUM_SEVERITIES:
      raise ValueError(f"{who} errors of {name!r}: {len(values)} values, one per "
                       f"severity 1..{NUM_SEVERITIES} needed")
    out[name] = [_check_error(v, f"{who} error of {name!r} at severity {s}")
                 for s, v in enumerate(values, 1)]
  return out


def _matched(errors: Errors, baseline_errors: Errors):
  """Both checked, with the same corruptions (each with 5 severities)."""
  model, baseline = _checked(errors), _checked(baseline_errors, "baseline")
  if set(model) != set(baseline):
    only_model = sorted(set(model) - set(baseline))
    only_base = sorted(set(baseline) - set(model))
    raise ValueError(f"model and baseline were measured on different corruptions "
                     f"(only the model: {', '.join(only_model) or '-'}; only the "
                     f"baseline: {', '.join(only_base) or '-'})")
  return model, baseline


def mean_errors(errors: Errors) -> Dict[str, float]:
  """Per corruption, the mean error over the 5 severities.

  Args:
    errors: {corruption: 5 errors in [0, 1], severities 1..5}.

  Returns:
    {corruption: mean}, in the order of `errors`.

  Raises:
    ValueError: no corruptions, a list without 5 values, or a value outside [0, 1].
  """
  return {name: sum(v) / NUM_SEVERITIES for name, v in _checked(errors).items()}


def mean_corruption_error(errors: Errors) -> float:
  """The unnormalised mean error over every corruption and severity.

  Raises:
    ValueError: as `mean_errors`.
  """
  means = mean_errors(errors)
  return sum(means.values()) / len(means)


def corruption_errors(errors: Errors, baseline_errors: Errors) -> Dict[str, float]:
  """CE_c = sum_s E[c][s] / sum_s E^b[c][s] for every corruption c.

  Args:
    errors: the model's {corruption: 5 errors}.
    baseline_errors: the baseline's, on the same corruptions.

  Returns:
    {corruption: CE_c}, in the order of `errors`.

  Raises:
    ValueError: different corruptions, a list without 5 values, a value outside
      [0, 1], or a baseline without errors on a corruption (denominator 0).
  """
  model, baseline = _matched(errors, baseline_errors)
  out = {}
  for name, values in model.items():
    denominator = sum(baseline[name])
    if denominator == 0:
      raise ValueError(f"the baseline makes no error on {name!r} at any severity: "
                       "its corruption error is undefined (0 / 0 or x / 0)")
    out[name] = sum(values) / denominator
  return out


def relative_corruption_errors(errors: Errors, clean_error: float,
                               baseline_errors: Errors,
                               baseline_clean_error: float) -> Dict[str, float]:
  """Relative CE_c = sum_s (E[c][s] - E_clean) / sum_s (E^b[c][s] - E^b_clean).

  Args:
    errors: the model's {corruption: 5 errors}.
    clean_error: the model's error on the clean images.
    baseline_errors: the baseline's, on the same corruptions.
    baseline_clean_error: the baseline's clean error.

  Returns:
    {corruption: relative CE_c}, in the order of `errors`.

  Raises:
    ValueError: as `corruption_errors`, a clean error outside [0, 1], or a
      corruption the baseline is no worse on than on clean images (denominator
      <= 0: the degradation it would normalise by is none).
  """
  model, baseline = _matched(errors, baseline_errors)
  clean = _check_error(clean_error, "model clean error")
  baseline_clean = _check_error(baseline_clean_error, "baseline clean error")
  out = {}
  for name, values in model.items():
    denominator = sum(e - baseline_clean for e in baseline[name])
    if denominator <= _NO_DEGRADATION:
      raise ValueError(
          f"the baseline is no worse on {name!r} than on clean images (sum over "
          f"severities of its error - clean error = {denominator:.3g}): its relative "
          "corruption error is undefined")
    out[name] = sum(e - clean for e in values) / denominator
  return out


def summarize(errors: Errors, clean_error: float,
              baseline_errors: Optional[Errors] = None,
              baseline_clean_error: Optional[float] = None) -> dict:
  """Everything above, JSON-ready.

  Args:
    errors: the model's {corruption: 5 errors}.
    clean_error: its clean error.
    baseline_errors: the baseline's, or None.
    baseline_clean_error: the baseline's clean error (given exactly when
      `baseline_errors` is).

  Returns:
    {"clean_error", "errors" (corruption -> 5 floats), "mean_errors",
    "mean_corruption_error"} and, with a baseline, "corruption_errors", "mce",
    "relative_corruption_errors", "relative_mce" and "undefined" ({reason:
    corruption} for a CE or relative CE the baseline leaves undefined: it is None,
    and so is the mean over corruptions; it never happens with ImageNet-C's
    AlexNet, but a baseline can be as good on a mild corruption as on clean images).

  Raises:
    ValueError: a baseline without its clean error (or the reverse), or a
      refusal of `corruption_errors` / `relative_corruption_errors` other than an
      undefined ratio (different corruptions, bad values).
  """
  if (baseline_errors is None) != (baseline_clean_error is None):
    raise ValueError("a baseline needs both its corruption errors and its clean error")
  model = _checked(errors)
  summary = {
      "clean_error": _check_error(clean_error, "model clean error"),
      "errors": model,
      "mean_errors": mean_errors(model),
      "mean_corruption_error": mean_corruption_error(model),
  }
  if baseline_errors is None:
    return summary
  model, baseline = _matched(model, baseline_errors)
  _check_error(baseline_clean_error, "baseline clean error")
  ce, relative, undefined = {}, {}, {}
  for name in model:
    one, base = {name: model[name]}, {name: baseline[name]}
    try:
      ce[name] = corruption_errors(one, base)[name]
    except ValueError as e:
      ce[name], undefined[name] = None, str(e)
    try:
      relative[name] = relative_corruption_errors(one, clean_error, base,
                                                  baseline_clean_error)[name]
    except ValueError as e:
      relative[name] = None
      undefined.setdefault(name, str(e))

  def mean(values):
    return None if None in values else sum(values) / len(values)

  summary.update({
      "corruption_errors": ce,
      "mce": mean(list(ce.values())),
      "relative_corruption_errors": relative,
      "relative_mce": mean(list(relative.values())),
      "undefined": undefined,
  })
  return summary
