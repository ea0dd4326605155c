"""Class-balanced batches (--samples_per_class=n): every global batch is B/n classes
with n images each, so that every anchor has n - 1 same-class positives among the
other images of its batch even when B is small.

An epoch keeps the plan's length (steps_per_epoch global batches) and is a function
of (seed, stage, epoch), like the plain order, so a resumed run reads the batches an
uninterrupted one would. Within a class, examples are drawn in passes: each pass is
a fresh permutation of the class, and when fewer than n are left of a pass they are
drawn together with the first ones of the next pass, so each example is drawn once
per pass of its class. Each epoch gives every class a quota of runs of n in
proportion to its size (largest remainders; at most one run per batch, so a class
too large for that cap hands its surplus to the others), and each batch takes B/n
distinct classes: those whose runs left equal the batches left, then others drawn
without replacement in proportion to their runs left. So with equal classes
(Fashion-MNIST, CIFAR) every example appears once per epoch up to the pass
boundaries (exactly once when a class is a whole number of runs and the epoch covers
the split, e.g. 8 classes of 8, n = 4, B = 16; else between 0 and 2 times); with
unequal ones each class's share of the draws is its share of the data except where
the one-run-per-batch cap binds (as B/n approaches the number of classes).
"""

from typing import Sequence

import numpy as np
import tensorflow as tf


def balanced_epoch(labels: np.ndarray, samples_per_class: int, global_batch: int,
                   num_steps: int, seed: Sequence[int]) -> np.ndarray:
  """The example indices of one epoch of class-balanced batches.

  Args:
    labels: int [N], the split's labels.
    samples_per_class: n, images per class in a batch.
    global_batch: B, a multiple of n with B/n <= the number of classes.
    num_steps: batches in the epoch.
    seed: non-negative ints (seed, stage, epoch).

  Returns:
    int64 [num_steps * B]: batch s is [s*B, (s+1)*B), its classes in runs of n.

  Raises:
    ValueError: B is no multiple of n, or B/n exceeds the classes (or a class has
      fewer than n examples: it cannot fill its run).
  """
  n = samples_per_class
  k, rest = divmod(global_batch, n)
  classes = np.unique(labels)
  members = [np.flatnonzero(labels == c) for c in classes]
  if rest or k > len(classes):
    raise ValueError(f"--samples_per_class={n}: a batch of {global_batch} needs a "
                     f"multiple of {n} and at most {len(classes)} classes of {n}")
  if min(len(m) for m in members) < n:
    raise ValueError(f"--samples_per_class={n}: a class has fewer than {n} examples")
  rng = np.random.default_rng(list(seed))
  remaining = _quotas(np.array([len(m) for m in members]), k, num_steps, rng)
  pending = [rng.permutation(m) for m in members]  # what is left of each pass
  out = np.empty(num_steps * global_batch, np.int64)
  at = 0
  for t in range(num_steps):
    # A class with as many runs left as batches must be in every one of them; the
    # others are drawn without replacement in proportion to their runs left.
    must = np.flatnonzero(remaining == num_steps - t)
    others = np.flatnonzero((remaining > 0) & (remaining < num_steps - t))
    weights = remaining[others] / remaining[others].sum() if len(others) else None
    chosen = list(must) + list(rng.choice(others, size=k - len(must), replace=False,
                                          p=weights))
    for c in rng.permutation(chosen):
      if len(pending[c]) < n:  # the end of a pass: the next one follows
        pending[c] = np.concatenate([pending[c], rng.permutation(members[c])])
      out[at:at + n], pending[c] = pending[c][:n], pending[c][n:]
      remaining[c] -= 1
      at += n
  return out


def _quotas(sizes: np.ndarray, k: int, num_steps: int, rng) -> np.ndarray:
  """Runs of n per class in an epoch of num_steps batches of k runs: proportional to
  the class sizes (largest remainders, ties at random), at most one per batch."""
  total = k * num_steps
  quota = np.zeros(len(sizes), np.int64)
  open_ = np.ones(len(sizes), bool)
  while quota.sum() < total:
    left = total - quota.sum()
    share = left * sizes * open_ / (sizes * open_).sum()
    add = np.minimum(np.floor(share).astype(np.int64), num_steps - quota)
    if not add.any():  # hand out the rest one by one, largest remainder first
      order = np.lexsort((rng.random(len(sizes)), -(share - np.floor(share))))
      add[[c for c in order if open_[c]][:left]] = 1
    quota += add
    open_ = quota < num_steps
  return quota


def epoch_order(labels: np.ndarray, samples_per_class: int, global_batch: int,
                num_steps: int, seed: int, stage: int, epoch) -> tf.Tensor:
  """`balanced_epoch` of a (possibly symbolic) epoch, as an int64 tensor.

  Args:
    labels: the split's labels.
    samples_per_class, global_batch, num_steps: as `balanced_epoch`.
    seed: the run's data seed (any int).
    stage: the stage's index.
    epoch: int64 scalar tensor.
  """
  def order(e):
    return balanced_epoch(labels, samples_per_class, global_batch, num_steps,
                          (seed % 2**32, stage, int(e)))
  out = tf.numpy_function(order, [epoch], tf.int64, stateful=False)
  return tf.ensure_shape(out, [num_steps * global_batch])
