"""mCE arithmetic against a case worked out by hand, and every refusal."""

import json

import pytest

from supcon_tf import mce

# Worked out by hand (two corruptions, severities 1..5):
#
#   model,    clean 0.10:  noise 0.20 0.30 0.40 0.50 0.60   sum 2.00  mean 0.40
#                          blur  0.15 0.20 0.25 0.30 0.35   sum 1.25  mean 0.25
#   baseline, clean 0.25:  noise 0.30 0.40 0.50 0.60 0.70   sum 2.50
#                          blur  0.25 0.30 0.35 0.40 0.45   sum 1.75
#
#   unnormalised mean error  = (0.40 + 0.25) / 2           = 0.325
#   CE_noise = 2.00 / 2.50   = 0.8
#   CE_blur  = 1.25 / 1.75   = 5/7                         = 0.714285...
#   mCE      = (0.8 + 5/7) / 2 = (28/35 + 25/35) / 2 = 53/70 = 0.757142...
#   relative CE_noise = (2.00 - 5 * 0.10) / (2.50 - 5 * 0.25) = 1.50 / 1.25 = 1.2
#   relative CE_blur  = (1.25 - 0.50) / (1.75 - 1.25)         = 0.75 / 0.50 = 1.5
#   relative mCE      = (1.2 + 1.5) / 2                        = 1.35
#
# The model is better than the baseline under corruption (mCE < 1) but loses
# more of its accuracy to the corruptions than the baseline does (relative mCE > 1).
MODEL = {"noise": [0.20, 0.30, 0.40, 0.50, 0.60], "blur": [0.15, 0.20, 0.25, 0.30, 0.35]}
BASELINE = {"blur": [0.25, 0.30, 0.35, 0.40, 0.45], "noise": [0.30, 0.40, 0.50, 0.60, 0.70]}


def test_hand_computed_example():
  assert mce.mean_errors(MODEL) == pytest.approx({"noise": 0.40, "blur": 0.25})
  assert mce.mean_corruption_error(MODEL) == pytest.approx(0.325)
  assert mce.corruption_errors(MODEL, BASELINE) == pytest.approx(
      {"noise": 0.8, "blur": 5 / 7})
  assert mce.relative_corruption_errors(MODEL, 0.10, BASELINE, 0.25) == pytest.approx(
      {"noise": 1.2, "blur": 1.5})
  summary = mce.summarize(MODEL, 0.10, BASELINE, 0.25)
  assert summary["mce"] == pytest.approx(53 / 70)
  assert summary["relative_mce"] == pytest.approx(1.35)
  assert summary["clean_error"] == 0.10
  assert summary["errors"] == MODEL
  assert summary["mean_corruption_error"] == pytest.approx(0.325)
  assert list(summary["corruption_errors"]) == ["noise", "blur"]  # the model's order
  assert json.loads(json.dumps(summary)) == summary


def test_summary_without_a_baseline():
  summary = mce.summarize(MODEL, 0.10)
  assert set(summary) == {"clean_error", "errors", "mean_errors",
                          "mean_corruption_error"}
  assert summary["mean_errors"] == pytest.approx({"noise": 0.40, "blur": 0.25})


def test_a_model_equal_to_its_baseline_scores_one():
  summary = mce.summarize(MODEL, 0.10, MODEL, 0.10)
  assert summary["mce"] == pytest.approx(1)
  assert summary["relative_mce"] == pytest.approx(1)


def test_refusals():
  with pytest.raises(ValueError, match="different corruptions \\(only the model: "
                                       "noise; only the baseline: fog\\)"):
    mce.corruption_errors(MODEL, {"blur": BASELINE["blur"], "fog": BASELINE["noise"]})
  with pytest.raises(ValueError, match="baseline errors of 'blur': 4 values, one per "
                                       "severity 1..5 needed"):
    mce.corruption_errors(MODEL, {**BASELINE, "blur": [0.3] * 4})
  with pytest.raises(ValueError, match="model errors of 'noise': 6 values"):
    mce.mean_errors({"noise": [0.1] * 6})
  with pytest.raises(ValueError, match="no corruption errors given for the model"):
    mce.mean_corruption_error({})
  with pytest.raises(ValueError, match="error of 'noise' at severity 2 must be an "
                                       "error in \\[0, 1\\], got 30.0"):
    mce.mean_errors({"noise": [0.2, 30, 0.4, 0.5, 0.6]})
  with pytest.raises(ValueError, match="got nan"):
    mce.mean_errors({"noise": [0.2, float("nan"), 0.4, 0.5, 0.6]})
  with pytest.raises(ValueError, match="the baseline makes no error on 'blur' at any "
                                       "severity"):
    mce.corruption_errors(MODEL, {**BASELINE, "blur": [0.0] * 5})
  # A baseline no worse under corruption than clean: nothing to normalise by.
  # (0.45 * 5 - 5 * 0.45 is not exactly 0 in floating point: still refused.)
  for blur in ([0.45] * 5, [0.40] * 5, [0.44, 0.45, 0.46, 0.45, 0.45]):
    with pytest.raises(ValueError, match="the baseline is no worse on 'blur' than on "
                                         "clean images"):
      mce.relative_corruption_errors(MODEL, 0.10, {**BASELINE, "blur": blur}, 0.45)
  with pytest.raises(ValueError, match="model clean error must be an error in"):
    mce.relative_corruption_errors(MODEL, 1.5, BASELINE, 0.25)
  with pytest.raises(ValueError, match="needs both its corruption errors and its "
                                       "clean error"):
    mce.summarize(MODEL, 0.10, BASELINE)
  with pytest.raises(ValueError, match="needs both"):
    mce.summarize(MODEL, 0.10, baseline_clean_error=0.2)


def test_summary_marks_what_a_baseline_leaves_undefined():
  """A baseline as good on a corruption as on clean images (or perfect on it) leaves
  that ratio undefined: None, named with the reason, and so is the mean; the other
  corruptions keep their numbers."""
  flat = {**BASELINE, "blur": [0.25] * 5}  # the baseline's clean error: no degradation
  summary = mce.summarize(MODEL, 0.10, flat, 0.25)
  assert summary["relative_corruption_errors"]["noise"] == pytest.approx(1.2)
  assert summary["relative_corruption_errors"]["blur"] is None
  assert summary["relative_mce"] is None
  assert summary["corruption_errors"]["blur"] == pytest.approx(1.25 / 1.25)
  assert summary["mce"] == pytest.approx((0.8 + 1.0) / 2)
  assert list(summary["undefined"]) == ["blur"]
  assert "no worse on 'blur'" in summary["undefined"]["blur"]
  perfect = mce.summarize(MODEL, 0.10, {**BASELINE, "blur": [0.0] * 5}, 0.0)
  assert perfect["mce"] is None and perfect["corruption_errors"]["noise"] == 0.8
  assert "makes no error on 'blur'" in perfect["undefined"]["blur"]
  assert json.loads(json.dumps(perfect)) == perfect
  assert mce.summarize(MODEL, 0.10, BASELINE, 0.25)["undefined"] == {}
