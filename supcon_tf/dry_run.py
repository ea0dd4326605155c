"""`--mode=dry_run`: what a run would do, without reading data or training.

Prints the resolved configuration, the strategy and replica count, the model with
its parameter counts and forward FLOPs per image, the steps per epoch and per stage,
and the learning rate at a few milestones of each stage. Writes nothing.
"""

import io
import json
from typing import Callable

import tensorflow as tf

from supcon_tf import config as config_lib
from supcon_tf import optim
from supcon_tf.data import sources
from supcon_tf.train import plan as plan_lib
from supcon_tf.train import state as state_lib


def count_params(variables) -> int:
  """The number of scalars in `variables` (a list of variables)."""
  return int(sum(v.shape.num_elements() for v in variables))


def forward_flops_per_image(model, image_shape) -> int:
  """Floating-point operations of one forward pass of one image.

  Args:
    model: a built Keras layer or model taking images.
    image_shape: `(H, W, C)`.

  Returns:
    The profiler's count (a multiply-add counts as 2).
  """
  fn = tf.function(lambda x: model(x, training=False))
  graph = fn.get_concrete_function(tf.TensorSpec((1,) + tuple(image_shape), tf.float32)).graph
  opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  opts["output"] = "none"
  info = tf.compat.v1.profiler.profile(graph=graph, options=opts)
  return int(info.total_float_ops)


def _summary_text(model) -> str:
  out = io.StringIO()
  model.summary(print_fn=lambda line, **_: out.write(line + "\n"), expand_nested=False)
  return out.getvalue()


def _human(n: float) -> str:
  for unit in ("", "K", "M", "G", "T"):
    if abs(n) < 1000:
      return f"{n:.2f}{unit}" if unit else f"{int(n)}"
    n /= 1000.0
  return f"{n:.2f}P"


def dry_run(cfg: config_lib.Config, strategy: tf.distribute.Strategy,
            printer: Callable[[str], None] = print) -> dict:
  """Prints the plan of the run.

  Args:
    cfg: the run's config.
    strategy: the strategy it would run under.
    printer: where the lines go.

  Returns:
    {"replicas", "trainable_parameters", "encoder_parameters", "flops_per_image",
    "stages": [{"index", "steps", "steps_per_epoch", "learning_rates"}]}.
  """
  meta = sources.dataset_metadata(cfg.data)
  replicas = strategy.num_replicas_in_sync
  rt = cfg.runtime
  printer("== resolved configuration ==")
  printer(json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
  printer("== strategy ==")
  printer(f"{type(strategy).__name__}: {replicas} replica(s); global batch "
          f"{rt.batch_size} = {rt.batch_size // replicas} per replica; eval batch "
          f"{rt.eval_batch_size} = {rt.eval_batch_size // replicas} per replica; "
          f"precision {rt.precision.value}; XLA {'on' if rt.jit_compile else 'off'}; "
          f"global batch norm "
          f"{'on' if cfg.model.use_global_batch_norm and replicas > 1 else 'off'}")

  image_shape = (cfg.data.image_size, cfg.data.image_size, meta.channels)
  with strategy.scope():
    model = state_lib.create_model(cfg, meta.num_classes, image_shape)
  encoder_params = count_params(model.encoder.trainable_variables)
  flops = forward_flops_per_image(model, image_shape)
  encoder_flops = forward_flops_per_image(model.encoder, image_shape)
  printer("== model ==")
  printer(_summary_text(model).rstrip())
  printer(f"encoder: ResNet-{cfg.model.resnet_depth} {cfg.model.resnet_architecture.value} "
          f"x{cfg.model.resnet_width:g}, {encoder_params:,} trainable parameters, "
          f"output dim {model.encoder.output_dim}")
  printer(f"trainable parameters {count_params(model.trainable_variables):,}; "
          f"non-trainable {count_params(model.non_trainable_variables):,}")
  printer(f"forward FLOPs per {image_shape[0]}x{image_shape[1]}x{image_shape[2]} image: "
          f"{_human(flops)} (encoder {_human(encoder_flops)})")

  printer("== schedule ==")
  printer(f"dataset {meta.name}: {meta.num_train:,} training images, {meta.num_eval:,} "
          f"eval images, {meta.num_classes} classes (sizes from {meta.origin}; no data read)")
  plans = plan_lib.plan_stages(cfg, meta.num_train)
  result = {"replicas": replicas, "trainable_parameters": count_params(model.trainable_variables),
            "encoder_parameters": encoder_params, "flops_per_image": flops, "stages": []}
  for plan in plans:
    stage_cfg = plan.config
    if plan.num_steps == 0:
      printer(f"stage {plan.index}: not run (0 steps)")
      continue
    sched = optim.learning_rate_schedule(stage_cfg, rt.batch_size, plan.steps_per_epoch,
                                         plan.num_steps)
    warmup = sched.warmup_steps
    milestones = sorted({0, warmup, plan.num_steps // 4, plan.num_steps // 2,
                         3 * plan.num_steps // 4, plan.num_steps})
    lrs = {m: float(sched(m)) for m in milestones}
    what = []
    if plan.contrastive:
      what.append(f"contrastive x{stage_cfg.contrastive_loss_weight:g} "
                  f"({'SupCon' if cfg.loss.use_labels else 'SimCLR'}, tau "
                  f"{cfg.loss.temperature:g}, {plan.num_views} views)")
    if plan.cross_entropy:
      what.append(f"cross-entropy x{stage_cfg.cross_entropy_loss_weight:g}")
    printer(f"stage {plan.index}: {' + '.join(what)}; {stage_cfg.optimizer.value}, base LR "
            f"{stage_cfg.base_learning_rate:g} -> peak "
            f"{optim.scaled_learning_rate(stage_cfg.base_learning_rate, rt.batch_size):g}, "
            f"{stage_cfg.learning_rate_decay.value} decay, weight decay "
            f"{stage_cfg.weight_decay:g}")
    printer(f"  {plan.steps_per_epoch:,} steps/epoch, {plan.num_steps:,} steps "
            f"({plan.num_steps / plan.steps_per_epoch:.2f} epochs), warmup {warmup:,} steps, "
            f"{plan.num_steps * rt.batch_size:,} images")
    printer("  learning rate: " + ", ".join(f"step {m:,}: {lr:.6g}" for m, lr in lrs.items()))
    result["stages"].append({"index": plan.index, "steps": plan.num_steps,
                             "steps_per_epoch": plan.steps_per_epoch,
                             "learning_rates": lrs})
  return result
