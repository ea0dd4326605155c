"""Tests of supcon_tf.models: ResNet encoders, heads and SupConModel."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from supcon_tf import config as config_lib
from supcon_tf.models import heads
from supcon_tf.models import model as model_lib
from supcon_tf.models import resnet

# Tiny encoder settings used wherever the size of the model does not matter.
TINY = dict(width_multiplier=0.125, first_conv_kernel_size=3,
            first_conv_stride=1, use_initial_max_pool=False)


def _num_params(variables):
  return sum(int(np.prod(v.shape)) for v in variables)


def _layers_of_type(layer, layer_type):
  # The walk other modules (weight decay, LARS exclusion) rely on.
  sublayers = layer._flatten_layers(include_self=False, recursive=True)  # pylint: disable=protected-access
  return [l for l in sublayers if isinstance(l, layer_type)]


def _images(batch=2, size=16, channels=3, seed=0, scale=1.0):
  rng = np.random.default_rng(seed)
  return tf.constant(scale * rng.normal(size=(batch, size, size, channels)),
                     tf.float32)


def _tiny_model(num_classes=5, normalize_embedding=True, stop_gradient=True,
                zero_initialize=False, projection_batch_norm=False):
  return model_lib.SupConModel(
      encoder=resnet.ResNet(18, **TINY),
      projection_head=heads.ProjectionHead(
          (16, 8), use_batch_norm=projection_batch_norm),
      classifier=heads.LinearClassifier(
          num_classes, zero_initialize=zero_initialize,
          stop_gradient=stop_gradient),
      normalize_embedding=normalize_embedding)


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
  batch_norms = _layers_of_type(encoder, keras.layers.BatchNormalization)
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
  batch_norms = _layers_of_type(encoder, keras.layers.BatchNormalization)
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
  encoder = resnet.ResNet(18, **TINY)
  encoder(tf.zeros([1, 8, 8, 3]))
  convs = _layers_of_type(encoder, keras.layers.Conv2D)
  batch_norms = _layers_of_type(encoder, keras.layers.BatchNormalization)
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
  encoder = resnet.ResNet(18, **TINY)
  h, maps = encoder(_images(size=32), return_feature_maps=True)
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
  h, maps = encoder(_images(batch=1, size=size), return_feature_maps=True)
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
    h = encoder(_images(batch=1, size=32))
    assert h.shape == (1, expected_dim)


@pytest.mark.parametrize("version", resnet.SUPPORTED_VERSIONS)
@pytest.mark.parametrize("depth", resnet.SUPPORTED_DEPTHS)
def test_forward_pass_every_depth_and_version(depth, version):
  # Alternate the stems over the depths to cover both in both versions.
  imagenet_stem = depth in (18, 50, 152)
  kwargs = dict(width_multiplier=0.125) if imagenet_stem else TINY
  encoder = resnet.ResNet(depth, version=version, **kwargs)
  h = encoder(_images(batch=2, size=16), training=True)
  expected_dim = 64 if depth < 50 else 256
  assert encoder.output_dim == expected_dim
  assert h.shape == (2, expected_dim)
  assert np.all(np.isfinite(h.numpy()))
  kind, blocks_per_stage = _LAYOUTS[depth]
  assert tuple(len(stage) for stage in encoder.stages) == blocks_per_stage
  expected_class = {
      (1, "basic"): resnet.BasicBlockV1,
      (1, "bottleneck"): resnet.BottleneckBlockV1,
      (2, "basic"): resnet.BasicBlockV2,
      (2, "bottleneck"): resnet.BottleneckBlockV2,
  }[version, kind]
  block_classes = {type(b) for stage in encoder.stages for b in stage}
  assert block_classes == {expected_class}


def test_width_rounding_and_minimum():
  assert resnet.scale_channels(64, 0.125) == 8
  assert resnet.scale_channels(64, 0.3) == 19  # 19.2
  assert resnet.scale_channels(64, 0.001) == 1


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
  images = _images(size=33)
  np.testing.assert_allclose(fn(images).numpy(), encoder(images).numpy(),
                             rtol=1e-5, atol=1e-5)
  assert fn.get_concrete_function().structured_outputs.shape.as_list() == [
      None, 256]


# ---------------------------------------------------------------------------
# Building blocks: padding semantics and block wiring.
# ---------------------------------------------------------------------------
def test_strided_conv_uses_symmetric_fixed_padding():
  conv = resnet.Conv2DFixedPadding(2, 3, strides=2)
  x = _images(batch=1, size=4, channels=1)
  y = conv(x)
  kernel = conv.kernel
  expected = tf.nn.conv2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), kernel,
                          strides=2, padding="VALID")
  tf_same = tf.nn.conv2d(x, kernel, strides=2, padding="SAME")
  assert y.shape == (1, 2, 2, 2)
  np.testing.assert_allclose(y.numpy(), expected.numpy(), atol=1e-6)
  # TF's 'SAME' pads (0, 1) on even sizes: different windows.
  assert not np.allclose(y.numpy(), tf_same.numpy(), atol=1e-3)
  assert conv.compute_output_shape([1, 4, 4, 1]).as_list() == [1, 2, 2, 2]
  assert conv.compute_output_shape([1, 7, 7, 1]).as_list() == [1, 4, 4, 2]


def test_stride1_conv_is_same_padding_and_1x1_stride2_is_unpadded():
  conv = resnet.Conv2DFixedPadding(2, 3, strides=1)
  x = _images(batch=1, size=5, channels=1)
  np.testing.assert_allclose(
      conv(x).numpy(),
      tf.nn.conv2d(x, conv.kernel, strides=1, padding="SAME").numpy(), atol=1e-6)
  pointwise = resnet.Conv2DFixedPadding(2, 1, strides=2)
  np.testing.assert_allclose(
      pointwise(x).numpy(),
      tf.nn.conv2d(x, pointwise.kernel, strides=2, padding="VALID").numpy(),
      atol=1e-6)


def test_max_pool_pads_with_minus_infinity():
  pool = resnet.MaxPool2DFixedPadding(3, 2)
  x = -1.0 - tf.reshape(tf.range(16, dtype=tf.float32), [1, 4, 4, 1])
  y = pool(x)[0, :, :, 0].numpy()
  # PyTorch MaxPool2d(3, 2, padding=1): windows rows/cols {0,1}, {1,2,3}.
  # x[i, j] = -1 - (4i + j) is largest at the smallest index of each window.
  np.testing.assert_array_equal(y, [[-1.0, -2.0], [-5.0, -6.0]])


def _bn_eval(x, epsilon=1e-5):
  # A freshly built BN in inference mode: mean 0, variance 1, gamma 1, beta 0.
  return x / np.sqrt(1.0 + epsilon)


def test_bottleneck_block_matches_manual_computation():
  block = resnet.BottleneckBlockV1(4, strides=2, use_projection=True)
  x = _images(batch=2, size=6, channels=8)
  y = block(x, training=False)

  def conv(inputs, layer, stride, pad):
    if pad:
      inputs = tf.pad(inputs, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    return tf.nn.conv2d(inputs, layer.kernel, strides=stride, padding="VALID")

  # v1.5: the stride sits on the 3x3 conv; the 1x1 convs are stride 1.
  r = tf.nn.relu(_bn_eval(conv(x, block.conv1, 1, 0)))
  r = tf.nn.relu(_bn_eval(conv(r, block.conv2, 2, 1)))
  r = _bn_eval(conv(r, block.conv3, 1, 0))
  shortcut = _bn_eval(conv(x, block.shortcut_conv, 2, 0))
  expected = tf.nn.relu(r + shortcut)
  assert y.shape == (2, 3, 3, 16)
  np.testing.assert_allclose(y.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
  assert block.conv1.strides == (1, 1) and block.conv2.strides == (2, 2)


def test_basic_block_identity_shortcut():
  block = resnet.BasicBlockV1(8, strides=1, use_projection=False)
  x = tf.nn.relu(_images(batch=1, size=5, channels=8))
  y = block(x, training=False)
  assert block.shortcut_conv is None
  r = tf.nn.relu(_bn_eval(tf.nn.conv2d(x, block.conv1.kernel, 1, "SAME")))
  r = _bn_eval(tf.nn.conv2d(r, block.conv2.kernel, 1, "SAME"))
  np.testing.assert_allclose(y.numpy(), tf.nn.relu(r + x).numpy(),
                             rtol=1e-5, atol=1e-5)


def test_zero_init_last_block_gamma_makes_blocks_identity():
  encoder = resnet.ResNet(50, zero_init_last_block_gamma=True, **TINY)
  encoder(tf.zeros([1, 8, 8, 3]))
  blocks = [b for stage in encoder.stages for b in stage]
  assert all(np.all(b.bn3.gamma.numpy() == 0) for b in blocks)
  assert all(np.all(b.bn1.gamma.numpy() == 1) for b in blocks)
  # An identity-shortcut block with a zero last gamma returns relu(input).
  block = encoder.stages[0][1]
  x = _images(batch=1, size=8, channels=block.output_channels)
  np.testing.assert_allclose(block(x, training=True).numpy(),
                             tf.nn.relu(x).numpy(), atol=1e-6)
  default = resnet.ResNet(50, **TINY)
  default(tf.zeros([1, 8, 8, 3]))
  assert np.all(default.stages[0][0].bn3.gamma.numpy() == 1)


def _randomize_batch_norms(layer, seed=0):
  """Non-trivial gamma, beta and moving statistics for every BN of `layer`."""
  rng = np.random.default_rng(seed)
  for bn in _layers_of_type(layer, keras.layers.BatchNormalization):
    c = int(bn.gamma.shape[0])
    bn.gamma.assign(rng.uniform(0.5, 1.5, c))
    bn.beta.assign(rng.normal(0.0, 0.5, c))
    bn.moving_mean.assign(rng.normal(0.0, 0.5, c))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, c))


def _bn_inference(x, bn):
  return ((x - bn.moving_mean) / tf.sqrt(bn.moving_variance + bn.epsilon)
          * bn.gamma + bn.beta)


def _reference_conv(inputs, layer, stride, pad):
  if pad:
    inputs = tf.pad(inputs, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
  return tf.nn.conv2d(inputs, layer.kernel, strides=stride, padding="VALID")


def test_bottleneck_block_v2_matches_manual_pre_activation():
  block = resnet.BottleneckBlockV2(4, strides=2, use_projection=True)
  x = _images(batch=2, size=6, channels=8)
  block(x)
  _randomize_batch_norms(block)
  y = block(x, training=False)
  # bn<i> + ReLU precede conv<i>; the projection takes the pre-activation;
  # nothing after the addition; the stride is on the 3x3 conv.
  preact = tf.nn.relu(_bn_inference(x, block.bn1))
  shortcut = _reference_conv(preact, block.shortcut_conv, 2, 0)
  act = lambda t, bn: tf.nn.relu(_bn_inference(t, bn))
  r = _reference_conv(preact, block.conv1, 1, 0)
  r = _reference_conv(act(r, block.bn2), block.conv2, 2, 1)
  r = _reference_conv(act(r, block.bn3), block.conv3, 1, 0)
  assert y.shape == (2, 3, 3, 16)
  np.testing.assert_allclose(y.numpy(), (r + shortcut).numpy(),
                             rtol=1e-5, atol=1e-5)
  assert np.any(y.numpy() < 0)  # No ReLU after the addition.
  # A shortcut from the raw input would differ (x has negative entries).
  raw_shortcut = _reference_conv(x, block.shortcut_conv, 2, 0)
  assert not np.allclose(y.numpy(), (r + raw_shortcut).numpy(), atol=1e-3)
  assert block.shortcut_bn is None
  bn_channels = [int(bn.gamma.shape[0])
                 for bn in (block.bn1, block.bn2, block.bn3)]
  assert bn_channels == [8, 4, 4]
  assert block.conv1.strides == (1, 1) and block.conv2.strides == (2, 2)
  assert block.conv3.strides == (1, 1) and block.shortcut_conv.strides == (2, 2)


@pytest.mark.parametrize("strides,use_projection", [(1, False), (2, True)])
def test_basic_block_v2_matches_manual_pre_activation(strides, use_projection):
  in_channels = 4 if use_projection else 8
  block = resnet.BasicBlockV2(8, strides=strides, use_projection=use_projection)
  x = _images(batch=2, size=5, channels=in_channels)
  block(x)
  _randomize_batch_norms(block, seed=1)
  y = block(x, training=False)
  preact = tf.nn.relu(_bn_inference(x, block.bn1))
  if use_projection:
    shortcut = _reference_conv(preact, block.shortcut_conv, strides, 0)
  else:
    assert block.shortcut_conv is None
    shortcut = x  # The identity shortcut is the raw, not pre-activated, input.
  r = _reference_conv(preact, block.conv1, strides, 1)
  r = _reference_conv(tf.nn.relu(_bn_inference(r, block.bn2)), block.conv2,
                      1, 1)
  np.testing.assert_allclose(y.numpy(), (r + shortcut).numpy(),
                             rtol=1e-5, atol=1e-5)
  assert np.any(y.numpy() < 0)


@pytest.mark.parametrize("imagenet_stem", [False, True])
def test_resnet_v2_stem_and_final_activation(imagenet_stem):
  # Seeded: with some initialisations every stage-4 sum of this tiny net is >= 0.
  keras.utils.set_random_seed(5)
  kwargs = dict(width_multiplier=0.125) if imagenet_stem else TINY
  encoder = resnet.ResNet(18, version=2, **kwargs)
  images = _images(size=16)
  encoder(images)
  _randomize_batch_norms(encoder, seed=2)
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
  final = tf.nn.relu(_bn_inference(maps["stage4"], encoder.final_bn))
  np.testing.assert_allclose(maps["final"].numpy(), final.numpy(),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(h.numpy(), tf.reduce_mean(final, [1, 2]).numpy(),
                             rtol=1e-5, atol=1e-5)
  # 1 stem conv + 8 blocks x 2 convs + 3 projections; 8 blocks x 2 BN + final.
  convs = _layers_of_type(encoder, keras.layers.Conv2D)
  batch_norms = _layers_of_type(encoder, keras.layers.BatchNormalization)
  assert len(convs) == 20 and len(batch_norms) == 17
  assert all(not conv.use_bias for conv in convs)
  kernels = {id(conv.kernel) for conv in convs}
  gammas_betas = {id(v) for bn in batch_norms for v in (bn.gamma, bn.beta)}
  assert kernels | gammas_betas == {id(v) for v in encoder.trainable_weights}


@pytest.mark.parametrize("depth,last_conv", [(18, "conv2"), (50, "conv3")])
def test_zero_init_last_block_gamma_v2_zeroes_last_conv(depth, last_conv):
  encoder = resnet.ResNet(depth, version=2, zero_init_last_block_gamma=True,
                          **TINY)
  images = _images(batch=2, size=8)
  encoder(images)
  blocks = [b for stage in encoder.stages for b in stage]
  assert all(np.all(getattr(b, last_conv).kernel.numpy() == 0) for b in blocks)
  # No BN is zero-initialised (a zero gamma and beta before a ReLU would stop
  # every gradient through it).
  assert all(np.all(bn.gamma.numpy() == 1) for bn in
             _layers_of_type(encoder, keras.layers.BatchNormalization))
  # Blocks start as their shortcut: an identity-shortcut block is the identity.
  block = encoder.stages[0][1]
  x = _images(batch=1, size=8, channels=block.output_channels)
  np.testing.assert_array_equal(block(x, training=True).numpy(), x.numpy())
  # The zeroed convolutions learn from the first step.
  with tf.GradientTape() as tape:
    h = encoder(images, training=True)
    loss = tf.reduce_sum(h * tf.range(1.0, h.shape[-1] + 1.0))
  last_kernels = [getattr(b, last_conv).kernel for b in blocks]
  grads = tape.gradient(loss, last_kernels)
  assert all(g is not None and np.any(g.numpy() != 0) for g in grads)
  default = resnet.ResNet(depth, version=2, **TINY)
  default(images)
  assert np.any(getattr(default.stages[0][0], last_conv).kernel.numpy() != 0)


def test_layers_round_trip_through_config():
  conv = resnet.Conv2DFixedPadding(4, 3, strides=2)
  clone = resnet.Conv2DFixedPadding.from_config(conv.get_config())
  assert clone.kernel_size == (3, 3) and clone.strides == (2, 2)
  assert clone.padding == "valid" and not clone.use_bias
  encoder = resnet.ResNet(50, zero_init_last_block_gamma=True, **TINY)
  clone = resnet.ResNet.from_config(encoder.get_config())
  assert clone.get_config() == encoder.get_config()
  assert clone.version == 1
  encoder_v2 = resnet.ResNet(18, version=2, **TINY)
  clone = resnet.ResNet.from_config(encoder_v2.get_config())
  assert clone.version == 2 and clone.get_config() == encoder_v2.get_config()
  head = heads.ProjectionHead((8, 4), use_batch_norm=True)
  assert heads.ProjectionHead.from_config(head.get_config()).layer_sizes == (8, 4)
  classifier = heads.LinearClassifier(3, stop_gradient=False)
  assert not heads.LinearClassifier.from_config(
      classifier.get_config()).stop_gradient


def test_conv_kernels_are_he_normal_fan_out():
  conv = resnet.Conv2DFixedPadding(256, 3)
  conv.build([None, 8, 8, 64])
  fan_out = 3 * 3 * 256
  std = float(np.std(conv.kernel.numpy()))
  assert std == pytest.approx(np.sqrt(2.0 / fan_out), rel=0.05)


# ---------------------------------------------------------------------------
# Batch norm behaviour.
# ---------------------------------------------------------------------------
def test_training_flag_controls_moving_statistics():
  encoder = resnet.ResNet(18, **TINY)
  images = _images(batch=4, size=8, scale=3.0) + 2.0
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
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  images = _images(batch=4, size=6, scale=2.0)
  # Replica 0 gets a shifted half, so per-replica statistics differ.
  images = tf.concat([images[:2] + 5.0, images[2:]], axis=0)

  def moving_mean_after_one_step(synchronized):
    with strategy.scope():
      encoder = resnet.ResNet(18, synchronized_batch_norm=synchronized, **TINY)
      encoder(tf.zeros([1, 6, 6, 3]))
    assert all(bn.synchronized == synchronized for bn in
               _layers_of_type(encoder, keras.layers.BatchNormalization))
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(4)
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))
    strategy.run(tf.function(lambda x: encoder(x, training=True)), args=(batch,))
    return encoder.stem_bn.moving_mean.numpy(), encoder.stem_conv(images)

  synced, stem_pre_bn = moving_mean_after_one_step(True)
  global_mean = 0.1 * tf.reduce_mean(stem_pre_bn, axis=[0, 1, 2]).numpy()
  np.testing.assert_allclose(synced, global_mean, rtol=1e-4, atol=1e-5)
  local, _ = moving_mean_after_one_step(False)
  assert not np.allclose(local, global_mean, rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------------------
# Heads.
# ---------------------------------------------------------------------------
def test_projection_head_structure_and_normalisation():
  head = heads.ProjectionHead((16, 8, 4), use_batch_norm=True)
  z = head(_images(batch=3, size=1, channels=10, scale=50.0)[:, 0, 0, :],
           training=True)
  assert z.dtype == tf.float32 and z.shape == (3, 4)
  np.testing.assert_allclose(tf.norm(z, axis=-1).numpy(), 1.0, atol=1e-5)
  assert [d.units for d in head.dense_layers] == [16, 8, 4]
  # Hidden layers: no bias (BN follows); the last: no bias either (the authors').
  assert [d.use_bias for d in head.dense_layers] == [False, False, False]
  assert head.dense_layers[-1].dtype == "float32"
  assert len(head.batch_norms) == 2
  with pytest.raises(ValueError):
    heads.ProjectionHead(())


def test_projection_head_has_no_activation_after_last_layer():
  head = heads.ProjectionHead((6, 3))
  x = tf.ones([2, 5])
  z = head(x)
  hidden = tf.nn.relu(head.dense_layers[0](x))
  expected = tf.math.l2_normalize(head.dense_layers[1](hidden), axis=-1)
  np.testing.assert_allclose(z.numpy(), expected.numpy(), atol=1e-6)
  # Generic random kernels give some negative outputs: no ReLU on the last.
  big = heads.ProjectionHead((32, 64))
  assert np.any(big(_images(batch=4, size=1, channels=8)[:, 0, 0, :]) < 0)


# ---------------------------------------------------------------------------
# SupConModel.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("normalize_embedding", [True, False])
def test_supcon_model_outputs(normalize_embedding):
  model = _tiny_model(num_classes=7, normalize_embedding=normalize_embedding)
  images = _images(batch=3, size=8, scale=100.0)
  outputs = model(images, training=False)
  assert set(outputs) == {"embedding", "projection", "logits"}
  assert outputs["embedding"].shape == (3, 64)
  assert outputs["projection"].shape == (3, 8)
  assert outputs["logits"].shape == (3, 7)
  assert outputs["projection"].dtype == tf.float32
  assert outputs["logits"].dtype == tf.float32
  np.testing.assert_allclose(
      tf.norm(outputs["projection"], axis=-1).numpy(), 1.0, atol=1e-5)
  h = outputs["embedding"]
  # h is returned un-normalised (inputs are large).
  assert not np.allclose(tf.norm(h, axis=-1).numpy(), 1.0, atol=1e-2)
  head_input = tf.math.l2_normalize(h, axis=-1) if normalize_embedding else h
  np.testing.assert_allclose(model.head_input(h).numpy(), head_input.numpy(),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
      outputs["logits"].numpy(), model.classifier(head_input).numpy(),
      rtol=1e-4, atol=1e-5)
  # The separate entry points compose to call().
  np.testing.assert_allclose(model.encode(images).numpy(), h.numpy(), atol=1e-5)
  np.testing.assert_allclose(model.project(h).numpy(),
                             outputs["projection"].numpy(), atol=1e-5)
  np.testing.assert_allclose(model.classify(h).numpy(),
                             outputs["logits"].numpy(), atol=1e-5)


def test_zero_initialized_classifier_gives_zero_logits():
  model = _tiny_model(zero_initialize=True)
  logits = model(_images(batch=2, size=8))["logits"]
  np.testing.assert_array_equal(logits.numpy(), np.zeros((2, 5)))


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_classifier_stop_gradient(stop_gradient):
  model = _tiny_model(stop_gradient=stop_gradient)
  images = _images(batch=4, size=8)
  labels = tf.constant([0, 1, 2, 3])
  with tf.GradientTape() as tape:
    logits = model(images, training=True)["logits"]
    loss = tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
  encoder_vars = model.encoder.trainable_variables
  classifier_vars = model.classifier.trainable_variables
  grads = tape.gradient(loss, encoder_vars + classifier_vars)
  encoder_grads = grads[:len(encoder_vars)]
  classifier_grads = grads[len(encoder_vars):]
  assert all(g is not None and np.any(g.numpy() != 0) for g in classifier_grads)
  encoder_norm = sum(float(tf.reduce_sum(tf.abs(g)))
                     for g in encoder_grads if g is not None)
  if stop_gradient:
    assert encoder_norm == 0.0
  else:
    assert encoder_norm > 0.0


def test_projection_gradient_reaches_encoder():
  model = _tiny_model()
  images = _images(batch=4, size=8)
  with tf.GradientTape() as tape:
    z = model(images, training=True)["projection"]
    loss = tf.reduce_sum(z[:, 0])
  grads = tape.gradient(loss, model.encoder.trainable_variables)
  assert all(g is not None for g in grads)
  assert sum(float(tf.reduce_sum(tf.abs(g))) for g in grads) > 0


def test_calling_twice_creates_no_new_variables():
  model = _tiny_model(projection_batch_norm=True)
  images = _images(batch=2, size=8)
  model(images, training=True)
  variables = [v.ref() for v in model.variables]
  model(images, training=False)
  model(images, training=True)
  model.project(model.encode(images), training=True)
  assert [v.ref() for v in model.variables] == variables
  names = [v.name for v in model.variables]
  assert len(set(names)) == len(names)


@pytest.mark.parametrize("build_before_restore", [True, False])
def test_checkpoint_round_trip(tmp_path, build_before_restore):
  images = _images(batch=2, size=8)
  model = _tiny_model(projection_batch_norm=True)
  model(images, training=True)  # Moves BN statistics away from init.
  expected = model(images, training=False)
  path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
  restored = _tiny_model(projection_batch_norm=True)
  if build_before_restore:
    restored(images, training=False)
    tf.train.Checkpoint(model=restored).restore(path).assert_consumed()
  else:
    # Deferred restoration: values are assigned when the variables are created.
    status = tf.train.Checkpoint(model=restored).restore(path)
    restored(images, training=False)
    status.assert_consumed()
  actual = restored(images, training=False)
  for key in expected:
    np.testing.assert_allclose(actual[key].numpy(), expected[key].numpy(),
                               atol=1e-6)


def test_mixed_bfloat16_policy():
  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    model = _tiny_model()
    outputs = model(_images(batch=2, size=8), training=True)
  finally:
    keras.mixed_precision.set_global_policy("float32")
  assert outputs["embedding"].dtype == tf.bfloat16
  assert outputs["projection"].dtype == tf.float32
  assert outputs["logits"].dtype == tf.float32
  assert all(v.dtype == tf.float32 for v in model.variables)
  np.testing.assert_allclose(
      tf.norm(outputs["projection"], axis=-1).numpy(), 1.0, atol=1e-5)


# ---------------------------------------------------------------------------
# build_model.
# ---------------------------------------------------------------------------
def test_build_model_from_config():
  model_config = config_lib.ModelConfig(
      resnet_depth=34, resnet_width=0.125, first_conv_kernel_size=3,
      first_conv_stride=1, use_initial_max_pool=False,
      projection_head_layers=(32, 16), use_projection_batch_norm=True,
      normalize_embedding=False, stop_gradient_before_classification_head=False,
      zero_initialize_classifier=True, batch_norm_momentum=0.8,
      batch_norm_epsilon=1e-3, zero_init_last_block_gamma=True)
  model = model_lib.build_model(model_config, num_classes=10)
  outputs = model(_images(batch=2, size=8), training=False)
  assert outputs["embedding"].shape == (2, 64)
  assert outputs["projection"].shape == (2, 16)
  assert outputs["logits"].shape == (2, 10)
  np.testing.assert_array_equal(outputs["logits"].numpy(), 0.0)
  encoder = model.encoder
  assert isinstance(encoder, resnet.ResNet)
  assert encoder.depth == 34 and encoder.stem_pool is None
  assert encoder.version == 1 and encoder.final_bn is None
  assert encoder.stem_conv.kernel_size == (3, 3)
  assert encoder.stem_conv.strides == (1, 1)
  assert [len(s) for s in encoder.stages] == [3, 4, 6, 3]
  assert encoder.zero_init_last_block_gamma
  assert model.projection_head.layer_sizes == (32, 16)
  assert model.projection_head.use_batch_norm
  assert not model.normalize_embedding
  assert not model.classifier.stop_gradient
  batch_norms = _layers_of_type(model, keras.layers.BatchNormalization)
  assert batch_norms and all(
      bn.momentum == 0.8 and bn.epsilon == 1e-3 and not bn.synchronized
      for bn in batch_norms)


@pytest.mark.parametrize("normalization, channels", [
    (config_lib.InputNormalization.CIFAR10, 3), (config_lib.InputNormalization.IMAGENET, 1)])
def test_input_normalization_whitens_before_the_encoder(normalization, channels):
  model_config = config_lib.ModelConfig(
      resnet_depth=18, resnet_width=0.125, first_conv_kernel_size=3, first_conv_stride=1,
      use_initial_max_pool=False, projection_head_layers=(8,),
      input_normalization=normalization)
  model = model_lib.build_model(model_config, num_classes=3)
  images = tf.random.uniform((2, 8, 8, channels), seed=1)
  h = model(images)["embedding"]
  mean, std = model_lib.INPUT_NORMALIZATIONS[normalization]
  if channels == 1:  # RGB constants on a gray image: their averages
    mean, std = [np.mean(mean)], [np.mean(std)]
  whitened = (images - np.array(mean, np.float32)) / np.array(std, np.float32)
  np.testing.assert_allclose(h, model.encoder(whitened), rtol=1e-5, atol=1e-5)
  assert not np.allclose(h, model.encoder(images), atol=1e-3)
  plain = model_lib.build_model(dataclasses.replace(
      model_config, input_normalization=config_lib.InputNormalization.NONE), 3)
  assert plain.whiten(images) is images
  plain(images)
  # Constants, not variables: checkpoints of both models have the same variables.
  assert [v.shape for v in plain.variables] == [v.shape for v in model.variables]

def test_build_model_resnet_v2():
  model_config = config_lib.ModelConfig(
      resnet_architecture=config_lib.ResNetArchitecture.RESNET_V2,
      resnet_depth=50, resnet_width=0.125, first_conv_kernel_size=3,
      first_conv_stride=1, use_initial_max_pool=False,
      projection_head_layers=(32, 16), zero_init_last_block_gamma=True,
      batch_norm_momentum=0.8)
  model = model_lib.build_model(model_config, num_classes=4,
                                synchronized_batch_norm=True)
  outputs = model(_images(batch=2, size=8), training=True)
  assert outputs["embedding"].shape == (2, 256)
  assert outputs["projection"].shape == (2, 16)
  assert outputs["logits"].shape == (2, 4)
  encoder = model.encoder
  assert encoder.version == 2 and encoder.depth == 50
  assert encoder.stem_bn is None and encoder.final_bn is not None
  blocks = [b for stage in encoder.stages for b in stage]
  assert all(isinstance(b, resnet.BottleneckBlockV2) for b in blocks)
  assert all(np.all(b.conv3.kernel.numpy() == 0) for b in blocks)
  batch_norms = _layers_of_type(encoder, keras.layers.BatchNormalization)
  assert encoder.final_bn in batch_norms
  assert all(bn.synchronized and bn.momentum == 0.8 for bn in batch_norms)


def test_build_model_defaults_and_invalid_depth():
  model = model_lib.build_model(config_lib.ModelConfig(), num_classes=3)
  assert model.encoder.depth == 50
  assert model.encoder.output_dim == 2048
  assert model.encoder.stem_conv.kernel_size == (7, 7)
  assert model.projection_head.layer_sizes == (2048, 128)
  assert model.classifier.stop_gradient and model.normalize_embedding
  with pytest.raises(ValueError, match="depth"):
    model_lib.build_model(config_lib.ModelConfig(resnet_depth=42), num_classes=3)


if __name__ == "__main__":
  import sys
  sys.exit(pytest.main([__file__]))
