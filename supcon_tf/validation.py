"""Checks of a configuration that need no TensorFlow and no data: every range, and
the combinations that cannot run. Flags (`flags.config_from_flags`) and config.json
(`workdir`) go through `validate`. No TensorFlow.
"""

from supcon_tf.config import (Config, ConfigError, IMAGE_FOLDER, RESNET_DEPTHS, Mode,
                              READER_MODES, STAGE_SECTIONS)


def validate(config: Config) -> None:
  """Checks that need no TensorFlow and no data.

  Args:
    config: the config of a run.

  Raises:
    ConfigError: the first bad value, named by its flag.
  """
  d, m, l, r = config.data, config.model, config.loss, config.runtime
  def check(cond, msg):
    if not cond:
      raise ConfigError(msg)
  check(d.image_size >= 8, f"--image_size must be >= 8, got {d.image_size}")
  check(d.num_views >= 1, f"--num_views must be >= 1, got {d.num_views}")
  for name, (lo, hi) in (("crop_area_range", d.crop_area_range),
                         ("crop_aspect_range", d.crop_aspect_range)):
    check(0 < lo <= hi, f"--{name} must be two numbers 0 < lo <= hi, got {lo},{hi}")
  check(d.crop_area_range[1] <= 1.0, "--crop_area_range upper bound must be <= 1")
  check(0 <= d.grayscale_probability <= 1, "--grayscale_probability must be in [0, 1]")
  check(0 <= d.blur_probability <= 1, "--blur_probability must be in [0, 1]")
  check(0 <= d.randaugment_magnitude <= 10, "--randaugment_magnitude must be in [0, 10]")
  check(d.randaugment_layers >= 0, "--randaugment_layers must be >= 0")
  check(d.crop_padding >= 0, "--crop_padding must be >= 0")
  check(d.shuffle_buffer_size >= 1, "--shuffle_buffer_size must be >= 1")
  check(d.input_threads >= 0, "--input_threads must be >= 0")
  check(d.max_in_memory_gb >= 0, "--max_in_memory_gb must be >= 0")
  check(0 <= d.max_corrupt_fraction <= 1, "--max_corrupt_fraction must be in [0, 1]")
  check(not d.image_dir or d.dataset == IMAGE_FOLDER,
        f"--dataset={d.dataset} and --image_dir={d.image_dir!r} name two sources: "
        "pass one (--image_dir implies --dataset=" + IMAGE_FOLDER + ")")
  check(d.image_dir or d.dataset != IMAGE_FOLDER,
        f"--dataset={IMAGE_FOLDER} needs --image_dir")
  check(d.num_train_examples >= 0 and d.num_eval_examples >= 0,
        "--num_train_examples/--num_eval_examples must be >= 0")
  check(m.resnet_depth in RESNET_DEPTHS,
        f"--resnet_depth must be one of {', '.join(map(str, RESNET_DEPTHS))}, got "
        f"{m.resnet_depth}")
  check(m.resnet_width > 0, f"--resnet_width must be > 0, got {m.resnet_width}")
  check(m.first_conv_kernel_size in (3, 5, 7), "--first_conv_kernel_size must be 3, 5 or 7")
  check(m.first_conv_stride in (1, 2), "--first_conv_stride must be 1 or 2")
  check(len(m.projection_head_layers) >= 1 and all(u > 0 for u in m.projection_head_layers),
        "--projection_head_layers must list positive layer sizes")
  check(0 <= m.batch_norm_momentum < 1, "--batch_norm_momentum must be in [0, 1)")
  check(l.temperature > 0, f"--temperature must be > 0, got {l.temperature}")
  check(l.positives_cap == -1 or (l.positives_cap >= 0 and
                                  l.positives_cap % d.num_views == 0),
        f"--positives_cap must be -1 or a multiple of --num_views ({d.num_views}), "
        f"got {l.positives_cap}")
  check(l.loss_chunk_size >= 0, f"--loss_chunk_size must be >= 0, got {l.loss_chunk_size}")
  check(0 <= l.label_smoothing < 1, "--label_smoothing must be in [0, 1)")
  check(not r.export_momentum_encoder or l.momentum_encoder > 0,
        "--export_momentum_encoder needs --momentum_encoder > 0")
  check(l.memory_size >= 0, f"--memory_size must be >= 0, got {l.memory_size}")
  check(0 <= l.momentum_encoder < 1,
        f"--momentum_encoder must be in [0, 1), got {l.momentum_encoder}")
  check(l.momentum_encoder == 0 or l.memory_size > 0,
        "--momentum_encoder fills the queue: it needs --memory_size > 0")
  check(l.memory_size == 0 or any(getattr(config, name).trains and
                                  getattr(config, name).contrastive_loss_weight > 0
                                  for name in STAGE_SECTIONS),
        "--memory_size is a queue of projections: no stage trains with the "
        "contrastive loss")
  check(l.memory_size == 0 or l.positives_cap == -1,
        "--positives_cap is not supported with --memory_size (the cap ranks the "
        "positives of the batch only): drop one of them")
  for name in STAGE_SECTIONS:
    s = getattr(config, name)
    check(s.epochs >= 0 and s.steps >= 0, f"--{name}_epochs/--{name}_steps must be >= 0")
    check(s.base_learning_rate >= 0, f"--{name}_base_learning_rate must be >= 0")
    check(s.weight_decay >= 0, f"--{name}_weight_decay must be >= 0")
    check(s.warmup_epochs >= 0, f"--{name}_warmup_epochs must be >= 0")
    check(s.contrastive_loss_weight >= 0 and s.cross_entropy_loss_weight >= 0,
          f"--{name} loss weights must be >= 0")
    if s.epochs > 0 or s.steps > 0:
      check(s.contrastive_loss_weight > 0 or s.cross_entropy_loss_weight > 0,
            f"{name} trains but both --{name}_contrastive_loss_weight and "
            f"--{name}_cross_entropy_loss_weight are 0")
  check(config.stage_1.trains or config.stage_2.trains or r.mode in READER_MODES,
        "nothing to train: both stages have 0 epochs and 0 steps")
  check(not (m.encoder_checkpoint and m.random_encoder),
        "--encoder_checkpoint and --random_encoder name two starts: pass one")
  encoder_trained = bool(m.encoder_checkpoint) or m.random_encoder
  for name in STAGE_SECTIONS:
    s = getattr(config, name)
    if not s.trains or r.mode in READER_MODES:
      continue
    check(encoder_trained or s.trains_encoder(m.stop_gradient_before_classification_head),
          f"{name} trains a classifier on a frozen encoder that nothing trained: give "
          "--encoder_checkpoint=<the model_dir of a run that trained it>, or "
          "--random_encoder for a random encoder on purpose")
    encoder_trained = True
  check(r.batch_size > 0, f"--batch_size must be > 0, got {r.batch_size}")
  check(d.samples_per_class >= 0 and (d.samples_per_class == 0 or
                                      r.batch_size % d.samples_per_class == 0),
        f"--samples_per_class must be 0 or divide --batch_size={r.batch_size}, got "
        f"{d.samples_per_class}")
  check(r.eval_batch_size > 0, f"--eval_batch_size must be > 0, got {r.eval_batch_size}")
  check(r.steps_per_loop > 0, f"--steps_per_loop must be > 0, got {r.steps_per_loop}")
  check(r.checkpoint_steps > 0, f"--checkpoint_steps must be > 0, got {r.checkpoint_steps}")
  check(r.keep_checkpoint_max > 0, "--keep_checkpoint_max must be > 0")
  check(r.nan_recovery_trials >= 0,
        f"--nan_recovery_trials must be >= 0, got {r.nan_recovery_trials}")
  check(r.num_virtual_cpus >= 0, "--num_virtual_cpus must be >= 0")
  check(not r.profile_steps or (len(r.profile_steps) == 2 and
                                0 <= r.profile_steps[0] < r.profile_steps[1]),
        f"--profile_steps must be START,END with 0 <= START < END, got "
        f"{','.join(map(str, r.profile_steps))}")
  check(r.summary_images >= 0 and r.projector_examples >= 0,
        "--summary_images and --projector_examples must be >= 0")
  check(r.knn_every >= 0, f"--knn_every must be >= 0, got {r.knn_every}")
  check(r.knn_k >= 1, f"--knn_k must be >= 1, got {r.knn_k}")
  check(r.knn_temperature > 0, f"--knn_temperature must be > 0, got {r.knn_temperature}")
  check(r.knn_bank_size >= 0, f"--knn_bank_size must be >= 0, got {r.knn_bank_size}")
  check(bool(r.model_dir), "--model_dir is required")
  check(not (r.overwrite and r.mode in READER_MODES),
        f"--overwrite starts a training run over; --mode={r.mode.value} reads the run "
        "in --model_dir: drop one of them")
