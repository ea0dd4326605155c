"""A PyTorch SupCon train step in SupContrast's setup, for `peer_step_benchmark.py`.

The reference users compare against is SupContrast (HobbitLong/SupContrast, the
PyTorch port the paper's authors point to): a CIFAR-style ResNet (3x3 stride-1 stem,
no max-pool, BasicBlocks with 1x1+BN projection shortcuts), a 512-512-128 MLP head,
L2-normalised projections, the SupCon loss over all views as anchors (L_out), SGD with
momentum 0.9 and weight decay on every parameter. This module rebuilds that step from
the paper's and SupContrast's published description (layout, loss algebra, optimizer)
so both frameworks run the same arithmetic; it is a benchmark-only file: PyTorch is
never imported by the package or its tests.
"""

import torch
from torch import nn
from torch.nn import functional as F


class _Basic(nn.Module):
  """conv3x3(stride)-BN-ReLU-conv3x3-BN + shortcut, ReLU."""

  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(cout)
    self.shortcut = nn.Sequential()
    if stride != 1 or cin != cout:
      self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                    nn.BatchNorm2d(cout))

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return F.relu(y + self.shortcut(x))


class SupConResNet18(nn.Module):
  """CIFAR-stem ResNet-18 + 2-layer MLP head with L2-normalised output."""

  def __init__(self, width: int = 64, head=(512, 128), channels: int = 3):
    super().__init__()
    self.stem = nn.Sequential(nn.Conv2d(channels, width, 3, 1, 1, bias=False),
                              nn.BatchNorm2d(width), nn.ReLU(inplace=True))
    layers, cin = [], width
    for i, stride in enumerate((1, 2, 2, 2)):
      cout = width * 2 ** i
      layers += [_Basic(cin, cout, stride), _Basic(cout, cout, 1)]
      cin = cout
    self.body = nn.Sequential(*layers)
    self.head = nn.Sequential(nn.Linear(cin, head[0]), nn.ReLU(inplace=True),
                              nn.Linear(head[0], head[1]))

  def forward(self, x):
    h = torch.flatten(F.adaptive_avg_pool2d(self.body(self.stem(x)), 1), 1)
    return F.normalize(self.head(h), dim=1)


def supcon_loss(features, labels, temperature: float = 0.1,
                base_temperature: float = 0.07):
  """SupContrast's loss algebra: features [b, V, d] (normalised), labels [b].

  All views are anchors; positives are the other views of the same label; the
  denominator runs over every view but the anchor (L_out); the mean over anchors is
  scaled by temperature / base_temperature, as SupContrast does.
  """
  b, v = features.shape[:2]
  contrast = torch.cat(torch.unbind(features, dim=1), dim=0)  # [V b, d] view-major
  logits = contrast @ contrast.T / temperature
  logits = logits - logits.max(dim=1, keepdim=True).values.detach()
  same = torch.eq(labels[:, None], labels[None, :]).float().repeat(v, v)
  not_self = 1.0 - torch.eye(b * v, device=features.device)
  positives = same * not_self
  log_prob = logits - torch.log((torch.exp(logits) * not_self).sum(1, keepdim=True))
  mean_pos = (positives * log_prob).sum(1) / positives.sum(1)
  return -(temperature / base_temperature) * mean_pos.mean()


class Step:
  """One SGD step of SupConResNet18 on a fixed synthetic batch."""

  def __init__(self, batch: int, views: int, image_size: int, channels: int = 3,
               width: int = 64, head=(512, 128), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    self.model = SupConResNet18(width, head, channels)
    self.model.train()
    self.opt = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.9,
                               weight_decay=1e-4)
    self.views = views
    self.x = torch.rand(batch * views, channels, image_size, image_size, generator=g)
    self.labels = torch.randint(0, 100, (batch,), generator=g)

  def __call__(self) -> float:
    z = self.model(self.x)  # view-major [V b, d], as SupContrast concatenates
    features = torch.stack(torch.chunk(z, self.views, dim=0), dim=1)
    loss = supcon_loss(features, self.labels)
    self.opt.zero_grad(set_to_none=True)
    loss.backward()
    self.opt.step()
    return float(loss.detach())


class LossStep:
  """Forward + backward of the loss alone on random normalised features."""

  def __init__(self, batch: int, views: int, dim: int = 128, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    self.features = F.normalize(torch.randn(batch, views, dim, generator=g), dim=-1)
    self.features.requires_grad_(True)
    self.labels = torch.randint(0, 100, (batch,), generator=g)

  def __call__(self) -> float:
    self.features.grad = None
    loss = supcon_loss(self.features, self.labels)
    loss.backward()
    return float(loss.detach())
