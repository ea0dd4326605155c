"""The one place where defaults live: frozen dataclasses. No TensorFlow.

The vocabularies (enums and their tables) live in `enums.py`; they are
re-exported here so that `config.Mode` etc. read naturally.

Every leaf field becomes an absl flag (see `flags.py`). Flag names follow the
authors' release (google-research/supcon) where one exists: sections other than
the two stages use the field name as the flag name; `StageConfig` fields become
`--stage_1_<field>` and `--stage_2_<field>`. The field's `help` metadata is the
flag's help text.
"""

import dataclasses
import enum
import json
from typing import Tuple

from supcon_tf.enums import (  # pylint: disable=unused-import
    IMAGE_FOLDER, RESNET_DEPTHS, AugmentationType, ContrastMode, DenominatorMode,
    EvalCropMethod, FrozenBatchNorm, InputNormalization, LearningRateDecay, Mode,
    Optimizer, Precision, READER_MODES, ResNetArchitecture, StrategyType,
    SummationLocation)


def field(default, help: str, **kwargs):  # pylint: disable=redefined-builtin
  """A dataclass field with `default` (tuples for sequences: frozen, hashable) and
  the flag's `help` text (plus any `kwargs`) in its metadata. TypeError for a list
  or dict default."""
  if isinstance(default, (list, dict)):
    raise TypeError("use tuples for sequence defaults")
  return dataclasses.field(default=default, metadata={"help": help, **kwargs})


@dataclasses.dataclass(frozen=True)
class DataConfig:
  dataset: str = field(
      "fashion_mnist", "TFDS dataset name (e.g. imagenet2012, cifar10, cifar100, "
      "fashion_mnist, or any TFDS image-classification dataset with 'image' and "
      "'label' features) prepared under --data_dir; fashion_mnist without --data_dir "
      "reads Debian's idx files. Set to image_folder by --image_dir.")
  data_dir: str = field("", "TFDS data directory (local or gs://); empty: TFDS is not "
                            "used.")
  image_dir: str = field(
      "", "A folder of your own labelled images (JPEG/PNG/BMP/GIF), one sub-folder "
      "per class. Splits: --train_split/--eval_split name sub-folders of it (e.g. "
      "train, val) each holding the class folders, or 'all' for class folders "
      "directly under it, with TFDS-style slices per class: all[:90%], all[90%:].")
  train_split: str = field("train", "Training split, TFDS syntax (e.g. train[:90%]; "
                            "the Fashion-MNIST idx files too).")
  eval_split: str = field("test", "Evaluation split, TFDS syntax (e.g. train[90%:] "
                          "to hold out a validation set).")
  fashion_mnist_dir: str = field(
      "/usr/share/datasets/fashion-mnist",
      "Directory with Fashion-MNIST's idx files (Debian package "
      "dataset-fashion-mnist).")
  image_size: int = field(28, "Side length of the images fed to the encoder.")
  num_views: int = field(2, "Augmented views per image in contrastive stages.")
  crop_area_range: Tuple[float, float] = field(
      (0.08, 1.0), "Random resized crop: range of the crop's area fraction.")
  crop_aspect_range: Tuple[float, float] = field(
      (0.75, 4.0 / 3.0), "Random resized crop: range of the aspect ratio.")
  flip: bool = field(True, "Random horizontal flip in training.")
  augmentation_type: AugmentationType = field(
      AugmentationType.SIMCLR, "Training augmentation of each view.")
  augmentation_magnitude: float = field(
      0.5, "SimCLR colour-jitter strength (RGB images only), for simclr and "
      "stacked_randaugment.")
  use_pytorch_color_jitter: bool = field(
      False, "torchvision ColorJitter semantics instead of TensorFlow's.")
  grayscale_probability: float = field(0.2, "Random grayscale probability (RGB only).")
  blur_probability: float = field(
      0.0, "Gaussian blur probability (simclr and stacked_randaugment only).")
  randaugment_layers: int = field(2, "RandAugment: ops per image (N).")
  randaugment_magnitude: float = field(10.0, "RandAugment: magnitude M on the 0..10 scale.")
  eval_crop_method: EvalCropMethod = field(
      EvalCropMethod.IDENTITY, "Evaluation view: identity (small images) or the "
      "ImageNet centre crops.")
  crop_padding: int = field(32, "Centre crop of image_size / (image_size + crop_padding).")
  num_train_examples: int = field(
      0, "Use only the first N training examples (0: all). For smoke runs.")
  num_eval_examples: int = field(0, "Use only the first N test examples (0: all).")
  samples_per_class: int = field(
      0, "n > 0: class-balanced training batches of batch_size/n classes x n images "
      "each, so every anchor has positives at small batch (random-access data only; "
      "see data/balanced.py for how often each example is seen). 0: plain shuffles.")
  seed: int = field(0, "Seed of the input order and the augmentations.")
  deterministic: bool = field(
      False, "Reproducible runs under --seed: tf.data keeps the order of parallel "
      "map/interleave outputs, TensorFlow's ops run deterministically (Eigen's CPU "
      "kernels instead of oneDNN's, ~1.6x slower on AVX2 CPUs) and the "
      "initial weights are seeded, so a resumed run ends bit-identical to an "
      "uninterrupted one. Off, batches may be composed in a different order run to "
      "run (each example's augmentation stays seeded), which is faster.")
  shuffle_buffer_size: int = field(
      10000, "Streamed TFDS sources (e.g. imagenet2012): examples in each input "
      "pipeline's shuffle buffer, on top of a per-epoch shuffle of the files.")
  input_threads: int = field(
      0, "Size of a private tf.data thread pool for the input pipeline (0: "
      "TensorFlow's shared pool).")
  max_in_memory_gb: float = field(
      4.0, "TFDS datasets of fixed-size images whose decoded splits take at most this "
      "many GiB are decoded once and held in memory (a cache); others are streamed "
      "from their files. 0: always stream.")
  max_corrupt_fraction: float = field(
      0.01, "Image folders: undecodable images are skipped and counted (reported at the "
      "end of each epoch and of evaluation); the run fails when more than this "
      "fraction of an epoch's images is bad.")
  defer_blur: bool = field(
      False, "Apply the Gaussian blur to the batch on the accelerator instead of in "
      "the input pipeline (same result: each view keeps its own seed).")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  resnet_architecture: ResNetArchitecture = field(
      ResNetArchitecture.RESNET_V1, "Encoder family.")
  resnet_depth: int = field(50, "ResNet depth (18, 34, 50, 101, 152, 200).")
  resnet_width: float = field(1.0, "Width multiplier of the ResNet channels.")
  first_conv_kernel_size: int = field(
      7, "Stem convolution kernel: 7 for ImageNet, 3 for small images.")
  first_conv_stride: int = field(2, "Stem convolution stride: 2 ImageNet, 1 small.")
  use_initial_max_pool: bool = field(
      True, "3x3/2 max-pool after the stem (ImageNet stem); off for small images.")
  projection_head_layers: Tuple[int, ...] = field(
      (2048, 128), "Units of each dense layer of the projection head; the "
      "output of the last is L2-normalised.")
  use_projection_batch_norm: bool = field(
      False, "Batch norm after the hidden dense layers of the projection head.")
  normalize_embedding: bool = field(
      True, "L2-normalise the encoder output before the heads (as the authors).")
  stop_gradient_before_classification_head: bool = field(
      True, "No gradient from the classifier into the encoder (linear evaluation).")
  zero_initialize_classifier: bool = field(False, "Zero-initialise the classifier.")
  zero_init_last_block_gamma: bool = field(
      False, "Start every residual block as its shortcut: zero-initialise the last BN "
      "scale of the branch (v1) or the branch's last convolution (v2).")
  use_global_batch_norm: bool = field(
      True, "Synchronise BatchNorm statistics across replicas (global batch norm).")
  batch_norm_momentum: float = field(0.9, "Batch norm moving-average momentum.")
  batch_norm_epsilon: float = field(1e-5, "Batch norm epsilon.")
  input_normalization: InputNormalization = field(
      InputNormalization.NONE, "Per-channel whitening of the [0, 1] input images, "
      "done inside the model (training, evaluation and the exported SavedModels): "
      "none, imagenet or cifar10 (the authors' apply_whitening on CIFAR).")
  encoder_checkpoint: str = field(
      "", "Start the encoder (weights, BatchNorm statistics) from another run: its "
      "model_dir (newest checkpoint) or a checkpoint prefix (runs/x/ckpt-1000). Read "
      "once, when this run starts; e.g. a linear evaluation (stage 2 only) of an "
      "encoder pretrained elsewhere.")
  random_encoder: bool = field(
      False, "Allow a classifier stage on a frozen encoder that no stage and no "
      "--encoder_checkpoint trains (the random-encoder baseline).")


@dataclasses.dataclass(frozen=True)
class LossConfig:
  use_labels: bool = field(
      True, "SupCon (positives from labels) if true, SimCLR if false.")
  temperature: float = field(0.1, "Temperature of the contrastive loss.")
  scale_by_temperature: bool = field(True, "Multiply the loss by the temperature.")
  contrast_mode: ContrastMode = field(ContrastMode.ALL_VIEWS, "Which views are anchors.")
  summation_location: SummationLocation = field(
      SummationLocation.OUTSIDE, "outside: Eq. 2 (L_out); inside: Eq. 3 (L_in).")
  denominator_mode: DenominatorMode = field(
      DenominatorMode.ALL, "Which views enter the softmax denominator.")
  positives_cap: int = field(
      -1, "Max positives other than the anchor's own views (-1: no cap). "
      "Multiple of num_views.")
  memory_size: int = field(
      0, "K > 0: contrast the anchors also against a FIFO queue of the K most recent "
      "projections (all views of the global batch of each earlier step) and their "
      "labels: positives where the labels match, negatives otherwise; 0: plain SupCon.")
  momentum_encoder: float = field(
      0.0, "m > 0: fill the --memory_size queue from an exponential moving average "
      "(momentum m, e.g. 0.999) of the encoder and projection head, as MoCo; 0: from "
      "the online projections.")
  loss_chunk_size: int = field(
      0, "If > 0, the contrastive loss processes this many anchor rows at a time and "
      "recomputes them in the backward pass: the same loss and gradients with memory "
      "bounded by chunk x global views instead of anchors x global views.")
  label_smoothing: float = field(0.0, "Label smoothing of the cross-entropy loss.")
  use_bias_weight_decay: bool = field(
      False, "Also decay biases (BatchNorm parameters never are).")


@dataclasses.dataclass(frozen=True)
class StageConfig:
  """One training stage. Flags: --stage_1_<field>, --stage_2_<field>."""
  epochs: float = field(0.0, "Epochs of this stage.")
  steps: int = field(0, "If > 0, overrides epochs (for smoke runs).")
  warmup_epochs: float = field(0.0, "Linear learning-rate warmup epochs.")
  base_learning_rate: float = field(
      0.1, "Learning rate for a batch of 256; the used rate is base*batch/256.")
  optimizer: Optimizer = field(Optimizer.MOMENTUM, "Optimizer.")
  momentum: float = field(0.9, "Momentum of SGD, Nesterov, LARS and RMSProp.")
  lars_eta: float = field(0.001, "LARS trust coefficient.")
  rmsprop_epsilon: float = field(1.0, "RMSProp epsilon.")
  rmsprop_decay: float = field(0.9, "RMSProp discounting factor (rho).")
  adam_beta_1: float = field(0.9, "Adam beta_1.")
  adam_beta_2: float = field(0.999, "Adam beta_2.")
  adam_epsilon: float = field(1e-8, "Adam epsilon (TF1 default, as the authors).")
  learning_rate_decay: LearningRateDecay = field(
      LearningRateDecay.COSINE, "Decay after warmup: cosine, exponential, piecewise "
      "or constant.")
  decay_rate: float = field(
      0.1, "Exponential: factor per epochs_per_decay; piecewise: factor per boundary.")
  epochs_per_decay: float = field(2.4, "Exponential decay period in epochs.")
  staircase: bool = field(False, "Exponential decay in discrete steps.")
  decay_boundary_epochs: Tuple[float, ...] = field(
      (30.0, 60.0, 80.0, 90.0), "Piecewise decay: epochs at which the rate is "
      "multiplied by decay_rate.")
  weight_decay: float = field(0.0, "L2 weight decay on conv/dense kernels.")
  use_encoder_weight_decay: bool = field(True, "Decay the encoder's weights.")
  use_projection_head_weight_decay: bool = field(
      True, "Decay the projection head's weights.")
  use_classification_head_weight_decay: bool = field(
      False, "Decay the classifier's weights.")
  reinitialize_classifier: bool = field(
      False, "Re-initialise the classifier at the start of this stage.")
  contrastive_loss_weight: float = field(0.0, "Weight of the contrastive loss.")
  cross_entropy_loss_weight: float = field(0.0, "Weight of the cross-entropy loss.")
  update_encoder_batch_norm: bool = field(
      True, "Update the encoder's batch-norm statistics in this stage.")
  frozen_batch_norm: FrozenBatchNorm = field(
      FrozenBatchNorm.INFERENCE, "With update_encoder_batch_norm=false: inference "
      "(BN normalises with its moving statistics) or batch_statistics (the authors' "
      "release: BN normalises with the batch statistics, its moving averages stay "
      "as they are).")

  @property
  def trains(self) -> bool:
    """Whether the stage has steps."""
    return self.epochs > 0 or self.steps > 0

  def trains_encoder(self, stop_gradient_before_classifier: bool) -> bool:
    """Whether the stage's gradients reach the encoder.

    Args:
      stop_gradient_before_classifier: the model's
        `stop_gradient_before_classification_head`.
    """
    return self.contrastive_loss_weight > 0 or (self.cross_entropy_loss_weight > 0 and
                                                not stop_gradient_before_classifier)

  def views(self, num_views: int) -> int:
    """Views per image in the stage's batches: --num_views with a contrastive loss, else 1."""
    return num_views if self.contrastive_loss_weight > 0 else 1


def _stage_1_default():
  return StageConfig(epochs=700, warmup_epochs=12, base_learning_rate=0.3,
                     optimizer=Optimizer.LARS, contrastive_loss_weight=1.0)


def _stage_2_default():
  return StageConfig(epochs=90, warmup_epochs=0, base_learning_rate=0.05,
                     cross_entropy_loss_weight=1.0, update_encoder_batch_norm=False)


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
  mode: Mode = field(Mode.TRAIN_THEN_EVAL, "train, eval, train_then_eval, export, "
                     "dry_run or eval_robustness (top-1 on corrupted test images).")
  model_dir: str = field("", "Checkpoints, summaries and config.json go here.")
  overwrite: bool = field(
      False, "Start over: remove what a previous run left in --model_dir (see "
      "workdir.RUN_OUTPUTS) before training. Refused with --mode=eval/export.")
  strategy: StrategyType = field(StrategyType.DEFAULT, "Distribution strategy.")
  num_virtual_cpus: int = field(
      0, "With --strategy=mirrored and no GPU: split the CPU into N logical devices.")
  tpu: str = field("", "TPU name or address (implies --strategy=tpu).")
  batch_size: int = field(2048, "Global training batch size (all replicas).")
  eval_batch_size: int = field(1024, "Global evaluation batch size.")
  precision: Precision = field(
      Precision.FLOAT32, "float32, bfloat16 (mixed) or float16 (mixed, dynamic loss "
      "scaling). The loss, BN statistics and variables stay float32.")
  jit_compile: bool = field(False, "Compile the train step with XLA.")
  steps_per_loop: int = field(100, "Train steps per call into the compiled loop.")
  checkpoint_steps: int = field(1000, "Save a checkpoint every N steps (and at the "
                                      "end of each stage).")
  export_momentum_encoder: bool = field(
      False, "Export the --momentum_encoder model's encoder and projection head (with "
      "the online classifier) instead of the online ones.")
  keep_checkpoint_max: int = field(3, "Checkpoints kept.")
  nan_recovery_trials: int = field(
      0, "On a non-finite loss, up to N times per command: restore the last checkpoint, "
      "find the step whose loss is non-finite by replaying one step at a time, skip its "
      "batch and go on (a fresh run saves ckpt-0 first). 0: stop with an error.")
  log_steps: int = field(0, "Progress line every N steps (0: every loop).")
  export_dir: str = field(
      "", "Where --mode=export (and the end of training) writes the TF-Hub "
      "SavedModels; empty: <model_dir>/export.")
  export_at_end: bool = field(True, "Export the SavedModels when training finishes.")
  profile_steps: Tuple[int, ...] = field(
      (), "START,END: trace the train steps taken while the global step goes from "
      "START to END (tf.profiler, into model_dir/plugins/profile for TensorBoard's "
      "Profile tab). Empty: no profiling.")
  summary_images: int = field(
      8, "Augmented views of the first training batch written to TensorBoard.")
  projector_examples: int = field(
      1000, "Test embeddings written for TensorBoard's projector at the end of stage 1 "
      "and in eval mode (0: none).")
  knn_every: int = field(
      0, "kNN monitor: every N steps of a stage that trains the encoder (and at its "
      "end), the "      "top-1 of a weighted k-nearest-neighbour classifier of the test images' "
      "L2-normalised encoder outputs against those of the (un-augmented) training "
      "images, to TensorBoard (knn/top_1), the progress line and results.json. "
      "0: off.")
  knn_k: int = field(200, "kNN monitor: neighbours that vote (at most the bank size).")
  knn_temperature: float = field(
      0.1, "kNN monitor: each neighbour votes for its class with weight "
      "exp(cosine similarity / temperature).")
  knn_bank_size: int = field(
      0, "kNN monitor: the first N training images (in the split's order) form the "
      "bank; 0: the whole training split.")
  corruptions: str = field(
      "", "--mode=eval_robustness: comma-separated corruptions (default: all that "
      "apply to the images' channels).")
  corruption_seed: int = field(0, "--mode=eval_robustness: seed of the corruptions.")
  baseline_model_dir: str = field(
      "", "--mode=eval_robustness: a run evaluated the same way whose errors "
      "normalise the mCE and relative mCE (ImageNet-C's definitions).")


@dataclasses.dataclass(frozen=True)
class Config:
  data: DataConfig = DataConfig()
  model: ModelConfig = ModelConfig()
  loss: LossConfig = LossConfig()
  stage_1: StageConfig = dataclasses.field(default_factory=_stage_1_default)
  stage_2: StageConfig = dataclasses.field(default_factory=_stage_2_default)
  runtime: RuntimeConfig = RuntimeConfig()

  def to_dict(self):
    """The config as JSON-ready values: a dict of sections, each a dict of leaves
    (enums as their values, tuples as lists)."""
    def convert(value):
      if isinstance(value, enum.Enum):
        return value.value
      if isinstance(value, tuple):
        return [convert(v) for v in value]
      if dataclasses.is_dataclass(value):
        return {f.name: convert(getattr(value, f.name))
                for f in dataclasses.fields(value)}
      return value
    return convert(self)

  def to_json(self):
    """`to_dict()` as indented JSON with sorted keys (config.json)."""
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, d):
    """Inverse of `to_dict` (for config.json).

    A missing section or key takes its default in `Config()` (a stage's key: that
    stage's own default, e.g. stage_1.optimizer lars). Keys naming no field are ignored.

    Args:
      d: a dict as written by `to_dict` (e.g. `json.loads` of config.json).

    Returns:
      The `Config`; not validated.

    Raises:
      ValueError: an enum value is unknown.
    """
    def build(default, values):
      kwargs = {}
      for f in dataclasses.fields(default):
        if f.name not in values:
          continue
        v = values[f.name]
        if dataclasses.is_dataclass(f.type):
          kwargs[f.name] = build(getattr(default, f.name), v)
        elif isinstance(f.type, type) and issubclass(f.type, enum.Enum):
          kwargs[f.name] = f.type(v)
        elif isinstance(v, list):
          kwargs[f.name] = tuple(v)
        else:
          kwargs[f.name] = v
      return dataclasses.replace(default, **kwargs)
    return build(cls(), d)


SECTIONS = ("data", "model", "loss", "stage_1", "stage_2", "runtime")
STAGE_SECTIONS = ("stage_1", "stage_2")


def flag_name(section: str, field_name: str) -> str:
  """The flag of a config leaf: `<section>_<field_name>` for the stages, the bare
  `field_name` otherwise."""
  return f"{section}_{field_name}" if section in STAGE_SECTIONS else field_name


class ConfigError(ValueError):
  """A configuration that cannot run. The message is one line for the user."""
