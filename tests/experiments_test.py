"""The experiment files reproduce the authors' configurations (google-research/supcon,
scripts/*.sh and scripts/configs.sh): each file's key hyperparameters against a table
written out here from the authors' scripts and flag defaults."""

import glob
import os

from absl import flags
import pytest

from supcon_tf import config as config_lib
from supcon_tf import flags as flags_lib
from tests import testing

C = config_lib
_EXPERIMENTS_DIR = os.path.join(testing.REPO_ROOT, "experiments")


def _parse(name):
  fv = flags.FlagValues()
  flags_lib.define_flags(fv)
  fv(["prog", f"--flagfile=experiments/{name}"])
  return flags_lib.config_from_flags(fv)


# Values shared by every configuration of a kind (configs.sh flag groups).
_IMAGENET = dict(dataset="imagenet2012", image_size=224, first_conv_kernel_size=7,
                 first_conv_stride=2, use_initial_max_pool=True, blur_probability=0.5,
                 label_smoothing=0.05, eval_crop_method=C.EvalCropMethod.RESIZE_THEN_CROP,
                 crop_padding=32, crop_area_range=(0.08, 1.0), use_pytorch_color_jitter=False,
                 input_normalization=C.InputNormalization.NONE)
_CIFAR = dict(image_size=32, first_conv_kernel_size=3, first_conv_stride=1,
              use_initial_max_pool=False, blur_probability=0.0, label_smoothing=0.0,
              eval_crop_method=C.EvalCropMethod.IDENTITY, crop_padding=0,
              crop_area_range=(0.2, 1.0), use_pytorch_color_jitter=True,
              input_normalization=C.InputNormalization.CIFAR10)
_TPU = dict(strategy=C.StrategyType.TPU, precision=C.Precision.BFLOAT16, defer_blur=True)
_CONTRASTIVE = dict(
    stop_gradient_before_classification_head=True, contrast_mode=C.ContrastMode.ALL_VIEWS,
    summation_location=C.SummationLocation.OUTSIDE, denominator_mode=C.DenominatorMode.ALL,
    s1_contrastive_loss_weight=1.0, s1_cross_entropy_loss_weight=0.0,
    s2_contrastive_loss_weight=0.0, s2_cross_entropy_loss_weight=1.0,
    s1_use_encoder_weight_decay=True, s1_use_projection_head_weight_decay=True,
    s1_use_classification_head_weight_decay=False, s2_use_encoder_weight_decay=False,
    s2_use_projection_head_weight_decay=False, s2_use_classification_head_weight_decay=True,
    s1_update_encoder_batch_norm=True, s2_update_encoder_batch_norm=False,
    s2_frozen_batch_norm=C.FrozenBatchNorm.BATCH_STATISTICS,
    use_bias_weight_decay=True, s1_rmsprop_epsilon=1.0, s2_rmsprop_epsilon=0.001)
_SUPCON = dict(_CONTRASTIVE, use_labels=True, normalize_embedding=True,
               use_projection_batch_norm=False, projection_head_layers=(128,),
               zero_initialize_classifier=False, scale_by_temperature=True)
_SIMCLR = dict(_CONTRASTIVE, use_labels=False, normalize_embedding=False,
               use_projection_batch_norm=True, projection_head_layers=(2048, 2048, 128),
               zero_initialize_classifier=True, scale_by_temperature=False)
_XENT = dict(
    s2_epochs=0.0, s2_warmup_epochs=0.0, stop_gradient_before_classification_head=False,
    s1_contrastive_loss_weight=0.0, s1_cross_entropy_loss_weight=1.0,
    s2_contrastive_loss_weight=0.0, s2_cross_entropy_loss_weight=0.0,
    s1_use_encoder_weight_decay=True, s1_use_projection_head_weight_decay=False,
    s1_use_classification_head_weight_decay=True, s1_update_encoder_batch_norm=True,
    normalize_embedding=False, use_bias_weight_decay=True)
# The ImageNet SupCon linear stage (supcon_imagenet_resnet*.sh); 12 warmup epochs is
# the authors' flag default (their scripts set none).
_IMAGENET_SUPCON_STAGE_2 = dict(
    s2_epochs=90.0, s2_warmup_epochs=12.0, s2_optimizer=C.Optimizer.RMSPROP,
    s2_base_learning_rate=0.05, s2_learning_rate_decay=C.LearningRateDecay.EXPONENTIAL,
    s2_decay_rate=0.97, s2_epochs_per_decay=0.5, s2_weight_decay=1e-6)


def _supcon_imagenet(depth, batch, aug, wd, epochs, lr):
  return dict(_TPU, **_IMAGENET, **_SUPCON, **_IMAGENET_SUPCON_STAGE_2,
              resnet_depth=depth, resnet_width=1.0,
              resnet_architecture=C.ResNetArchitecture.RESNET_V1, batch_size=batch,
              augmentation_type=aug, augmentation_magnitude=1.0, temperature=0.1,
              use_global_batch_norm=True, s1_epochs=epochs, s1_warmup_epochs=12.0,
              s1_optimizer=C.Optimizer.LARS, s1_base_learning_rate=lr,
              s1_learning_rate_decay=C.LearningRateDecay.COSINE, s1_weight_decay=wd)


def _ce_imagenet(depth, batch, aug, epochs):
  return dict(_TPU, **_IMAGENET, **_XENT, resnet_depth=depth, resnet_width=1.0,
              batch_size=batch, augmentation_type=aug, augmentation_magnitude=1.0,
              s1_epochs=epochs, s1_warmup_epochs=12.0, s1_optimizer=C.Optimizer.NESTEROV,
              s1_base_learning_rate=0.1, s1_learning_rate_decay=C.LearningRateDecay.COSINE,
              s1_weight_decay=1e-4)


def _supcon_cifar(dataset):
  # The CIFAR script overrides SUPCON_FLAGS' embedding normalisation and head.
  supcon = dict(_SUPCON, normalize_embedding=False, projection_head_layers=(2048, 128))
  return dict(_TPU, **_CIFAR, **supcon, dataset=dataset, resnet_depth=50,
              batch_size=4096, augmentation_type=C.AugmentationType.SIMCLR,
              augmentation_magnitude=0.5, temperature=0.1, use_global_batch_norm=False,
              s1_epochs=1000.0, s1_warmup_epochs=10.0, s1_optimizer=C.Optimizer.MOMENTUM,
              s1_base_learning_rate=0.5, s1_learning_rate_decay=C.LearningRateDecay.COSINE,
              s1_weight_decay=1e-4,
              s2_epochs=100.0, s2_warmup_epochs=0.0, s2_optimizer=C.Optimizer.MOMENTUM,
              s2_base_learning_rate=2.5, s2_learning_rate_decay=C.LearningRateDecay.PIECEWISE,
              s2_decay_rate=0.2, s2_decay_boundary_epochs=(60.0, 75.0, 90.0),
              s2_weight_decay=0.0)


def _simclr_cifar(dataset):
  return dict(_TPU, **_CIFAR, **_SIMCLR, dataset=dataset, resnet_depth=50,
              batch_size=1024, augmentation_type=C.AugmentationType.SIMCLR,
              augmentation_magnitude=0.5, temperature=0.5, use_global_batch_norm=True,
              s1_epochs=400.0, s1_warmup_epochs=10.0, s1_optimizer=C.Optimizer.MOMENTUM,
              s1_base_learning_rate=0.5, s1_learning_rate_decay=C.LearningRateDecay.COSINE,
              s1_weight_decay=1e-4,
              s2_epochs=90.0, s2_warmup_epochs=0.0, s2_optimizer=C.Optimizer.MOMENTUM,
              s2_base_learning_rate=0.25, s2_learning_rate_decay=C.LearningRateDecay.COSINE,
              s2_weight_decay=0.0)


def _ce_cifar(dataset):
  return dict(_TPU, **_CIFAR, **_XENT, dataset=dataset, resnet_depth=50,
              batch_size=1024, augmentation_type=C.AugmentationType.SIMCLR,
              augmentation_magnitude=0.5,
              s1_epochs=1000.0, s1_warmup_epochs=12.0, s1_optimizer=C.Optimizer.NESTEROV,
              s1_base_learning_rate=0.1, s1_learning_rate_decay=C.LearningRateDecay.COSINE,
              s1_weight_decay=5e-4)


A = C.AugmentationType
EXPECTED = {
    "r50.cfg": _supcon_imagenet(50, 6144, A.AUTOAUGMENT, 1e-3, 350.0, 0.4),
    "r101.cfg": _supcon_imagenet(101, 4096, A.AUTOAUGMENT, 1e-4, 350.0, 0.4),
    "r200.cfg": _supcon_imagenet(200, 4096, A.STACKED_RANDAUGMENT, 1e-4, 700.0, 0.2),
    "simclr_imagenet_r50.cfg": dict(
        _TPU, **_IMAGENET, **_SIMCLR, resnet_depth=50, batch_size=6144,
        augmentation_type=A.SIMCLR, augmentation_magnitude=1.0, temperature=0.1,
        s1_epochs=100.0, s1_warmup_epochs=12.0, s1_optimizer=C.Optimizer.LARS,
        s1_base_learning_rate=0.3, s1_learning_rate_decay=C.LearningRateDecay.COSINE,
        s1_weight_decay=1e-4,
        s2_epochs=90.0, s2_warmup_epochs=12.0, s2_optimizer=C.Optimizer.NESTEROV,
        s2_base_learning_rate=0.1, s2_learning_rate_decay=C.LearningRateDecay.COSINE,
        s2_weight_decay=1e-6),
    "ce_imagenet_r50.cfg": _ce_imagenet(50, 6144, A.AUTOAUGMENT, 200.0),
    "ce_imagenet_r200.cfg": _ce_imagenet(200, 4096, A.STACKED_RANDAUGMENT, 700.0),
    "supcon_cifar10_r50.cfg": _supcon_cifar("cifar10"),
    "simclr_cifar10_r50.cfg": _simclr_cifar("cifar10"),
    "ce_cifar10_r50.cfg": _ce_cifar("cifar10"),
    "supcon_cifar100_r50.cfg": _supcon_cifar("cifar100"),
    "simclr_cifar100_r50.cfg": _simclr_cifar("cifar100"),
    "ce_cifar100_r50.cfg": _ce_cifar("cifar100"),
}


def _value(cfg, key):
  if key.startswith(("s1_", "s2_")):
    stage = cfg.stage_1 if key.startswith("s1_") else cfg.stage_2
    return getattr(stage, key[3:])
  for section in ("data", "model", "loss", "runtime"):
    part = getattr(cfg, section)
    if hasattr(part, key):
      return getattr(part, key)
  raise KeyError(key)


def test_the_table_covers_every_authors_experiment_file():
  on_disk = {os.path.basename(p) for p in glob.glob(os.path.join(_EXPERIMENTS_DIR, "*.cfg"))}
  assert set(EXPECTED) <= on_disk
  assert on_disk - set(EXPECTED) == {"fashion_mnist.cfg", "fashion_mnist_ce.cfg",
                                     "image_folder.cfg"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_experiment_matches_the_authors(name, monkeypatch):
  monkeypatch.chdir(testing.REPO_ROOT)  # flagfiles include others by relative path
  cfg = _parse(name)
  mismatches = {}
  for key, want in EXPECTED[name].items():
    got = _value(cfg, key)
    if isinstance(want, float):
      ok = got == pytest.approx(want)
    elif isinstance(want, tuple):
      ok = tuple(got) == pytest.approx(want)
    else:
      ok = got == want
    if not ok:
      mismatches[key] = (got, want)
  assert not mismatches, mismatches
  assert cfg.runtime.model_dir == f"runs/{name[:-len('.cfg')]}"
  assert cfg.runtime.mode == C.Mode.TRAIN_THEN_EVAL


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_experiment_header_documents_the_run(name):
  with open(os.path.join(_EXPERIMENTS_DIR, name)) as f:
    header = "".join(line for line in f if line.startswith("#"))
  assert "-core TPU" in header  # the hardware the authors' script was meant for
  assert "Paper's top-1:" in header
  assert "Not run here" in header
  assert f"python -m supcon_tf.run --flagfile=experiments/{name}" in header
  assert "--tpu=" in header and "--data_dir=gs://" in header and "--model_dir=gs://" in header


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(_EXPERIMENTS_DIR, "small_batch",
                                                                "*.cfg"))))
def test_small_batch_study_variants_share_a_budget(path, monkeypatch):
  """Every variant of the small-batch study parses, validates, and sees the same
  number of images in stage 1 (one epoch) and stage 2."""
  monkeypatch.chdir(testing.REPO_ROOT)
  fv = flags.FlagValues()
  flags_lib.define_flags(fv)
  # The study gives each run its --model_dir; parsing validates the rest.
  fv(["prog", f"--flagfile={path}", "--model_dir=unused"])
  cfg = flags_lib.config_from_flags(fv)
  assert (cfg.stage_1.epochs, cfg.stage_2.epochs) == (1.0, 2.0)
  assert cfg.data.num_views == 2 and cfg.runtime.knn_every > 0
  name = os.path.basename(path)
  assert (cfg.runtime.batch_size == 256) == name.startswith("large_batch")
  assert (cfg.loss.memory_size > 0) == ("queue" in name)
  assert (cfg.loss.momentum_encoder > 0) == ("momentum" in name)
  assert (cfg.data.samples_per_class > 0) == ("balanced" in name)


_STUDY_PASSES = {"tuning": 6.0, "accuracy": 6.0, "stability": 3.0}


@pytest.mark.parametrize("path", sorted(
    p for study in _STUDY_PASSES
    for p in glob.glob(os.path.join(_EXPERIMENTS_DIR, "study", study, "*.cfg"))))
def test_evidence_study_variants_share_a_budget_of_images(path, monkeypatch):
  """Every variant of the evidence study parses and validates; within a study every
  method puts the same number of images through its encoder (passes over the
  training set: views x epochs of each stage); tuning holds out a validation split,
  the other studies evaluate on the test split; the file name's method is the one
  the run records."""
  from supcon_tf import results  # pylint: disable=g-import-not-at-top
  monkeypatch.chdir(testing.REPO_ROOT)
  fv = flags.FlagValues()
  flags_lib.define_flags(fv)
  fv(["prog", f"--flagfile={path}", "--model_dir=unused"])
  cfg = flags_lib.config_from_flags(fv)
  study = os.path.basename(os.path.dirname(path))
  passes = sum(s.epochs * (cfg.data.num_views if s.contrastive_loss_weight > 0 else 1)
               for s in (cfg.stage_1, cfg.stage_2))
  assert passes == _STUDY_PASSES[study]
  split = (("train[:90%]", "train[90%:]") if study == "tuning" else ("train", "test"))
  assert (cfg.data.train_split, cfg.data.eval_split) == split
  method = results.method(cfg)
  prefix = os.path.splitext(os.path.basename(path))[0].split("_")[0]
  assert method.startswith({"ce": "cross", "cross": "cross"}.get(prefix, prefix))
  assert (method == "supcon_l_in") == ("l_in" in os.path.basename(path))
