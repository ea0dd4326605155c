"""Tests of supcon_tf.models.resnet: parameter counts, shapes, stems, versions, BN."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from supcon_tf.models import blocks as blocks_lib
from supcon_tf.models import resnet
from tests import testing
from tests.models import common


def _num_params(variables):
  return sum(int(np.prod(v.shape)) for v in variables)


# ---------------------------------------------------------------------------
# Parameter counts.
#
# Trainable counts are torchvision's totals (ImageNet models, 1000 classes) minus
# their final fc layer (2048*1000 + 1000 = 2,049,000 for bottleneck nets,
# 512*1000 + 1000 = 513,000 for basic-block nets). torchvision totals, from the
# "num_params" metadata of the weights enums in torchvision/models/resnet.py and
# the table at https://pytorch.org/vision/stable/models.html:
#   resnet18 11,689,512   resnet34 21,797,672   resnet50 25,557,032
#   resnet101 44,549,160  resnet152 60,192,808.
# torchvision has no ResNet-200; timm's `resnet200` (same v1.5 bottleneck layout
# [3, 24, 36, 3]) has 64,673,832 parameters including its 2,049,000-param fc.
#
# Non-trainable parameters are the BN moving means and variances, one of each per
# BN channel, so they equal the BN gamma+beta count. ResNet-18 has BN channels:
#   stem 64
#   stage 1: 2 blocks x 2 BN x 64                       =  256
#   stage 2: 2 blocks x 2 BN x 128 + shortcut BN 128    =  640
#   stage 3: 2 blocks x 2 BN x 256 + shortcut BN 256    = 1280
#   stage 4: 2 blocks x 2 BN x 512 + shortcut BN 512    = 2560
#   total 4,800 channels -> 2 x 4,800 = 9,600 moving statistics.
# ---------------------------------------------------------------------------
TORCHVISION_TOTAL_PARAMS = {
    18: (11_689_512, 513_000),
    34: (21_797_672, 513_000),
    50: (25_557_032, 2_049_000),
    101: (44_549_160, 2_049_000),
    152: (60_192_808, 2_049_000),
    200: (64_673_832, 2_049_000),  # timm resnet200.
}


@pytest.mark.parametrize("depth", sorted(TORCHVISION_TOTAL_PARAMS))
def test_parameter_counts_match_reference(depth):
  total, fc = TORCHVISION_TOTAL_PARAMS[depth]
  encoder = resnet.ResNet(depth)
  h = encoder(tf.zeros([1, 32, 32, 3]))  # Counts do not depend on image size.
  assert h.shape == (1, encoder.output_dim)
  assert _num_params(encoder.trainable_weights) == total - fc
  batch_norms = common.layers_of_type(encoder, keras.layers.BatchNormalization)
  bn_channels = sum(int(bn.gamma.shape[0]) for bn in batch_norms)
  assert _num_params(encoder.non_trainable_weights) == 2 * bn_channels
  if depth == 18:
    assert bn_channels == 4_800
    assert _num_params(encoder.non_trainable_weights) == 9_600


# ---------------------------------------------------------------------------
# Parameter counts of ResNet v2 (pre-activation).
#
# There is no published count for exactly our v2 layout, so the expected counts
# are derived here from the architecture definition alone (not from the
# builder): a KxK convolution from cin to cout channels has K*K*cin*cout
# weights (no bias), a BN over c channels has 2*c trainable (gamma, beta) and
# 2*c non-trainable (moving mean, variance) parameters. Per block, with input
# channels cin and stage width f:
#   v2 basic:      BN(cin) 3x3(cin->f)  BN(f) 3x3(f->f)
#   v2 bottleneck: BN(cin) 1x1(cin->f)  BN(f) 3x3(f->f)  BN(f) 1x1(f->4f)
#   v1 basic:      3x3(cin->f) BN(f)  3x3(f->f) BN(f)
#   v1 bottleneck: 1x1(cin->f) BN(f)  3x3(f->f) BN(f)  1x1(f->4f) BN(4f)
# plus a projection shortcut 1x1(cin->cout) when the block strides (first block
# of stages 2-4) or changes the channel count (first bottleneck block of stage
# 1); v1 follows it with BN(cout), v2 has none. Stem: 7x7(3->64), followed by
# BN(64) in v1 only; v2 ends with a final BN over the output channels.
# The same formula for v1 reproduces the torchvision counts above, which checks
# the counting conventions against published numbers.
# ---------------------------------------------------------------------------
_LAYOUTS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}


def _formula_counts(depth, version):
  """(trainable parameters, BN channels) of a width-1 ResNet without fc."""
  kind, blocks_per_stage = _LAYOUTS[depth]
  conv = lambda k, cin, cout: k * k * cin * cout
  weights = conv(7, 3, 64)
  bn_channels = [64] if version == 1 else []
  cin = 64
  for stage, (f, num_blocks) in enumerate(zip((64, 128, 256, 512),
                                              blocks_per_stage)):
    for block in range(num_blocks):
      if kind == "basic":
        cout = f
        weights += conv(3, cin, f) + conv(3, f, f)
        bn_channels += [f, f] if version == 1 else [cin, f]
      else:
        cout = 4 * f
        weights += conv(1, cin, f) + conv(3, f, f) + conv(1, f, cout)
        bn_channels += [f, f, cout] if version == 1 else [cin, f, f]
      if (stage > 0 and block == 0) or cin != cout:
        weights += conv(1, cin, cout)
        bn_channels += [cout] if version == 1 else []
      cin = cout
  if version == 2:
    bn_channels.append(cin)
  return weights + 2 * sum(bn_channels), sum(bn_channels)


# _formula_counts(depth, 2): trainable parameters, BN channels (the moving
# statistics are 2 x BN channels).
V2_COUNTS = {
    18: (11_174_720, 3_904),
    34: (21_282_880, 7_616),
    50: (23_500_352, 22_720),
    101: (42_492_480, 48_832),
    152: (58_136_128, 71_872),
    200: (62_617_152, 84_160),
}


def test_parameter_formula_matches_published_v1_and_tabulated_v2_counts():
  for depth, (total, fc) in TORCHVISION_TOTAL_PARAMS.items():
    assert _formula_counts(depth, 1)[0] == total - fc
  assert _formula_counts(18, 1)[1] == 4_800
  for depth, counts in V2_COUNTS.items():
    assert _formula_counts(depth, 2) == counts


@pytest.mark.parametrize("depth", sorted(V2_COUNTS))
def test_v2_parameter_counts(depth):
  trainable, bn_channels = V2_COUNTS[depth]
  encoder = resnet.ResNet(depth, version=2)
  h = encoder(tf.zeros([1, 16, 16, 3]))  # Counts do not depend on image size.
  assert h.shape == (1, encoder.output_dim)
  assert _num_params(encoder.trainable_weights) == trainable
  assert _num_params(encoder.non_trainable_weights) == 2 * bn_channels
  batch_norms = common.layers_of_type(encoder, keras.layers.BatchNormalization)
  assert sum(int(bn.gamma.shape[0]) for bn in batch_norms) == bn_channels


def test_v2_resnet50_count_reconciles_with_keras_resnet50v2():
  # Keras Applications' ResNet50V2 (tf_keras.applications.ResNet50V2,
  # include_top=True) has 25,613,800 parameters: 25,568,360 trainable and
  # 45,440 non-trainable. Its layout is pre-activation too, with the same
  # convolution shapes and BN layers as ours (stem 7x7 conv without BN,
  # pre-activation BN "preact_bn" + BN after the first two convs of each
  # bottleneck, projection shortcut = bare 1x1 conv of the pre-activation in
  # the first block of each stage, final "post_bn"). Differences:
  #   - the stem conv has a bias:                              +64
  #   - the projection convs ("_0_conv") have a bias, 4f each:
  #     256 + 512 + 1024 + 2048                                +3,840
  #   - the last 1x1 conv of every block ("_3_conv") has a bias, 4f each:
  #     3*256 + 4*512 + 6*1024 + 3*2048                        +15,104
  #   - a 1000-way classifier with bias, 2048*1000 + 1000      +2,049,000
  #   - (no parameters) Keras strides in the *last* block of stages 1-3 (3x3
  #     conv, 1x1 max-pool shortcut) instead of the first block of stages 2-4,
  #     and its BN epsilon is 1.001e-5.
  # Hence the same 22,720 BN channels (45,440 moving statistics) and
  # 23,500,352 + 2,068,008 trainable parameters.
  keras_trainable, keras_non_trainable = 25_568_360, 45_440
  assert keras_trainable + keras_non_trainable == 25_613_800
  biases = 64 + (256 + 512 + 1024 + 2048) + (
      3 * 256 + 4 * 512 + 6 * 1024 + 3 * 2048)
  classifier = 2048 * 1000 + 1000
  trainable, bn_channels = V2_COUNTS[50]
  assert biases + classifier == 2_068_008
  assert trainable + biases + classifier == keras_trainable
  assert 2 * bn_channels == keras_non_trainable


def test_resnet18_layers_are_discoverable_by_type():
  encoder = resnet.ResNet(18, **common.TINY)
  encoder(tf.zeros([1, 8, 8, 3]))
  convs = common.layers_of_type(encoder, keras.layers.Conv2D)
  batch_norms = common.layers_of_type(encoder, keras.layers.BatchNormalization)
  # 1 stem conv + 8 blocks x 2 convs + 3 projection shortcuts (stages 2-4).
  assert len(convs) == 20
  assert len(batch_norms) == 20
  assert all(not conv.use_bias for conv in convs)
  kernels = {id(conv.kernel) for conv in convs}
  trainable = {id(v) for v in encoder.trainable_weights}
  assert kernels <= trainable
  # Every trainable variable is a conv kernel or a BN gamma/beta.
  gammas_betas = {id(v) for bn in batch_norms for v in (bn.gamma, bn.beta)}
  assert kernels | gammas_betas == trainable


# ---------------------------------------------------------------------------
# Shapes, stems, widths.
# ---------------------------------------------------------------------------
def _torch_out(size, kernel, stride, padding):
  return (size + 2 * padding - kernel) // stride + 1


def test_small_image_stem_keeps_resolution_until_stage2():
  encoder = resnet.ResNet(18, **common.TINY)
  h, maps = encoder(common.images(size=32), return_feature_maps=True)
  assert maps["stem"].shape == (2, 32, 32, 8)
  assert maps["stage1"].shape == (2, 32, 32, 8)
  assert maps["stage2"].shape == (2, 16, 16, 16)
  assert maps["stage3"].shape == (2, 8, 8, 32)
  assert maps["stage4"].shape == (2, 4, 4, 64)
  assert h.shape == (2, 64)
  np.testing.assert_allclose(
      h.numpy(), tf.reduce_mean(maps["stage4"], axis=[1, 2]).numpy(), atol=1e-6)


@pytest.mark.parametrize("size", [64, 65])
def test_imagenet_stem_shapes_match_pytorch_arithmetic(size):
  encoder = resnet.ResNet(50, width_multiplier=0.125)
  h, maps = encoder(common.images(batch=1, size=size), return_feature_maps=True)
  after_conv = _torch_out(size, 7, 2, 3)
  after_pool = _torch_out(after_conv, 3, 2, 1)
  assert maps["stem"].shape[1:3] == (after_pool, after_pool)
  side = after_pool
  for stage in ("stage2", "stage3", "stage4"):
    side = _torch_out(side, 3, 2, 1)
    assert maps[stage].shape[1:3] == (side, side)
  assert h.shape == (1, 256)


@pytest.mark.parametrize("depth,width,expected_dim", [
    (18, 1.0, 512), (34, 1.0, 512), (50, 1.0, 2048),
    (18, 0.25, 128), (50, 0.25, 512), (18, 0.125, 64), (50, 0.125, 256),
    (18, 0.01, 5),  # round(512 * 0.01) = round(5.12).
])
def test_output_dim(depth, width, expected_dim):
  encoder = resnet.ResNet(depth, width_multiplier=width)
  assert encoder.output_dim == expected_dim
  if width < 1:
    h = encoder(common.images(batch=1, size=32))
    assert h.shape == (1, expected_dim)


@pytest.mark.parametrize("version", resnet.SUPPORTED_VERSIONS)
@pytest.mark.parametrize("depth", resnet.SUPPORTED_DEPTHS)
def test_forward_pass_every_depth_and_version(depth, version):
  # Alternate the stems over the depths to cover both in both versions.
  imagenet_stem = depth in (18, 50, 152)
  kwargs = dict(width_multiplier=0.125) if imagenet_stem else common.TINY
  encoder = resnet.ResNet(depth, version=version, **kwargs)
  h = encoder(common.images(batch=2, size=16), training=True)
  expected_dim = 64 if depth < 50 else 256
  assert encoder.output_dim == expected_dim
  assert h.shape == (2, expected_dim)
  assert np.all(np.isfinite(h.numpy()))
  kind, blocks_per_stage = _LAYOUTS[depth]
  assert tuple(len(stage) for stage in encoder.stages) == blocks_per_stage
  expected_class = {
      (1, "basic"): blocks_lib.BasicBlockV1,
      (1, "bottleneck"): blocks_lib.BottleneckBlockV1,
      (2, "basic"): blocks_lib.BasicBlockV2,
      (2, "bottleneck"): blocks_lib.BottleneckBlockV2,
  }[version, kind]
  block_classes = {type(b) for stage in encoder.stages for b in stage}
  assert block_classes == {expected_class}


@pytest.mark.parametrize("depth", [0, 26, 1000, "50", None])
def test_unknown_depth_raises(depth):
  with pytest.raises(ValueError, match="18, 34, 50, 101, 152, 200"):
    resnet.ResNet(depth)


@pytest.mark.parametrize("version", [0, 3, "2", 2.5, True, None])
def test_unknown_version_raises(version):
  with pytest.raises(ValueError, match="version"):
    resnet.ResNet(18, version=version)


def test_nonpositive_width_raises():
  with pytest.raises(ValueError, match="width_multiplier"):
    resnet.ResNet(18, width_multiplier=0.0)


def test_graph_mode_with_unknown_shapes():
  encoder = resnet.ResNet(50, width_multiplier=0.125)
  fn = tf.function(
      lambda x: encoder(x, training=False),
      input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
  images = common.images(size=33)
  np.testing.assert_allclose(fn(images).numpy(), encoder(images).numpy(),
                             rtol=1e-5, atol=1e-5)
  assert fn.get_concrete_function().structured_outputs.shape.as_list() == [
      None, 256]


# ---------------------------------------------------------------------------
# Zero-initialised residual branches, the v2 stem and final activation, config.
# ---------------------------------------------------------------------------
def test_zero_init_last_block_gamma_makes_blocks_identity():
  encoder = resnet.ResNet(50, zero_init_last_block_gamma=True, **common.TINY)
  encoder(tf.zeros([1, 8, 8, 3]))
  blocks = [b for stage in encoder.stages for b in stage]
  assert all(np.all(b.bn3.gamma.numpy() == 0) for b in blocks)
  assert all(np.all(b.bn1.gamma.numpy() == 1) for b in blocks)
  # An identity-shortcut block with a zero last gamma returns relu(input).
  block = encoder.stages[0][1]
  x = common.images(batch=1, size=8, channels=block.output_channels)
  np.testing.assert_allclose(block(x, training=True).numpy(),
                             tf.nn.relu(x).numpy(), atol=1e-6)
  default = resnet.ResNet(50, **common.TINY)
  default(tf.zeros([1, 8, 8, 3]))
  assert np.all(default.stages[0][0].bn3.gamma.numpy() == 1)


@pytest.mark.parametrize("imagenet_stem", [False, True])
def test_resnet_v2_stem_and_final_activation(imagenet_stem):
  # Seeded: with some initialisations every stage-4 sum of this tiny net is >= 0.
  keras.utils.set_random_seed(5)
  kwargs = dict(width_multiplier=0.125) if imagenet_stem else common.TINY
  encoder = resnet.ResNet(18, version=2, **kwargs)
  images = common.images(size=16)
  encoder(images)
  common.randomize_batch_norms(encoder, seed=2)
  h, maps = encoder(images, return_feature_maps=True)
  # The stem is the bare convolution (+ max-pool): no BN, no ReLU.
  assert encoder.stem_bn is None
  stem = encoder.stem_conv(images)
  if imagenet_stem:
    stem = encoder.stem_pool(stem)
  np.testing.assert_allclose(maps["stem"].numpy(), stem.numpy(), atol=1e-6)
  assert np.any(maps["stem"].numpy() < 0)
  # Stage outputs are bare residual sums; BN + ReLU come once, before pooling.
  assert np.any(maps["stage4"].numpy() < 0)
  final = tf.nn.relu(common.bn_inference(maps["stage4"], encoder.final_bn))
  np.testing.assert_allclose(maps["final"].numpy(), final.numpy(),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(h.numpy(), tf.reduce_mean(final, [1, 2]).numpy(),
                             rtol=1e-5, atol=1e-5)
  # 1 stem conv + 8 blocks x 2 convs + 3 projections; 8 blocks x 2 BN + final.
  convs = common.layers_of_type(encoder, keras.layers.Conv2D)
  batch_norms = common.layers_of_type(encoder, keras.layers.BatchNormalization)
  assert len(convs) == 20 and len(batch_norms) == 17
  assert all(not conv.use_bias for conv in convs)
  kernels = {id(conv.kernel) for conv in convs}
  gammas_betas = {id(v) for bn in batch_norms for v in (bn.gamma, bn.beta)}
  assert kernels | gammas_betas == {id(v) for v in encoder.trainable_weights}


@pytest.mark.parametrize("depth,last_conv", [(18, "conv2"), (50, "conv3")])
def test_zero_init_last_block_gamma_v2_zeroes_last_conv(depth, last_conv):
  encoder = resnet.ResNet(depth, version=2, zero_init_last_block_gamma=True,
                          **common.TINY)
  images = common.images(batch=2, size=8)
  encoder(images)
  blocks = [b for stage in encoder.stages for b in stage]
  assert all(np.all(getattr(b, last_conv).kernel.numpy() == 0) for b in blocks)
  # No BN is zero-initialised (a zero gamma and beta before a ReLU would stop
  # every gradient through it).
  assert all(np.all(bn.gamma.numpy() == 1) for bn in
             common.layers_of_type(encoder, keras.layers.BatchNormalization))
  # Blocks start as their shortcut: an identity-shortcut block is the identity.
  block = encoder.stages[0][1]
  x = common.images(batch=1, size=8, channels=block.output_channels)
  np.testing.assert_array_equal(block(x, training=True).numpy(), x.numpy())
  # The zeroed convolutions learn from the first step.
  with tf.GradientTape() as tape:
    h = encoder(images, training=True)
    loss = tf.reduce_sum(h * tf.range(1.0, h.shape[-1] + 1.0))
  last_kernels = [getattr(b, last_conv).kernel for b in blocks]
  grads = tape.gradient(loss, last_kernels)
  assert all(g is not None and np.any(g.numpy() != 0) for g in grads)
  default = resnet.ResNet(depth, version=2, **common.TINY)
  default(images)
  assert np.any(getattr(default.stages[0][0], last_conv).kernel.numpy() != 0)


def test_resnet_round_trips_through_config():
  encoder = resnet.ResNet(50, zero_init_last_block_gamma=True, **common.TINY)
  clone = resnet.ResNet.from_config(encoder.get_config())
  assert clone.get_config() == encoder.get_config()
  assert clone.version == 1
  encoder_v2 = resnet.ResNet(18, version=2, **common.TINY)
  clone = resnet.ResNet.from_config(encoder_v2.get_config())
  assert clone.version == 2 and clone.get_config() == encoder_v2.get_config()


# ---------------------------------------------------------------------------
# Batch norm behaviour.
# ---------------------------------------------------------------------------
def test_training_flag_controls_moving_statistics():
  encoder = resnet.ResNet(18, **common.TINY)
  images = common.images(batch=4, size=8, scale=3.0) + 2.0
  encoder(images, training=False)
  num_variables = len(encoder.variables)
  stats = lambda: [v.numpy().copy() for v in encoder.non_trainable_weights]
  before = stats()
  encoder(images, training=False)
  for a, b in zip(before, stats()):
    np.testing.assert_array_equal(a, b)
  encoder(images, training=True)
  after = stats()
  assert all(not np.allclose(a, b) for a, b in zip(before, after))
  # Momentum 0.9: moving_mean = 0.9 * 0 + 0.1 * batch_mean for the stem BN.
  stem_pre_bn = encoder.stem_conv(images)
  np.testing.assert_allclose(
      encoder.stem_bn.moving_mean.numpy(),
      0.1 * tf.reduce_mean(stem_pre_bn, axis=[0, 1, 2]).numpy(),
      rtol=1e-4, atol=1e-5)
  assert len(encoder.variables) == num_variables


def test_synchronized_batch_norm_uses_global_batch_statistics():
  strategy = testing.mirrored_cpu_strategy(2)
  images = common.images(batch=4, size=6, scale=2.0)
  # Replica 0 gets a shifted half, so per-replica statistics differ.
  images = tf.concat([images[:2] + 5.0, images[2:]], axis=0)

  def moving_mean_after_one_step(synchronized):
    with strategy.scope():
      encoder = resnet.ResNet(18, synchronized_batch_norm=synchronized, **common.TINY)
      encoder(tf.zeros([1, 6, 6, 3]))
    assert all(bn.synchronized == synchronized for bn in
               common.layers_of_type(encoder, keras.layers.BatchNormalization))
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(4)
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))
    strategy.run(tf.function(lambda x: encoder(x, training=True)), args=(batch,))
    return encoder.stem_bn.moving_mean.numpy(), encoder.stem_conv(images)

  synced, stem_pre_bn = moving_mean_after_one_step(True)
  global_mean = 0.1 * tf.reduce_mean(stem_pre_bn, axis=[0, 1, 2]).numpy()
  np.testing.assert_allclose(synced, global_mean, rtol=1e-4, atol=1e-5)
  local, _ = moving_mean_after_one_step(False)
  assert not np.allclose(local, global_mean, rtol=1e-3, atol=1e-4)


if __name__ == "__main__":
  import sys
  sys.exit(pytest.main([__file__]))
