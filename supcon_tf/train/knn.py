"""The kNN monitor (--knn_every): a weighted k-nearest-neighbour classifier of the
test images against a bank of training images, as InstDisc (Wu et al. 2018) and
MoCo monitor their encoders without training a classifier.

Embeddings are the encoder outputs `h`, L2-normalised (what the linear classifier
sees with --normalize_embedding), of the evaluation view of each image: the test
split and the training split read by `pipeline.eval_dataset` (the training records
stand in for the evaluation ones, `bank_source`), both un-augmented and in a fixed
order. Each replica embeds its part of the padded batches (`strategy.run`); the
batches are gathered to every worker (`strategy.gather`, a collective all workers
join) and the padding dropped, so the bank and the test set are the ones one
device would compute. The vote runs on the host, in chunks of test images: the
k most similar (cosine) bank entries each vote for their class with weight
exp(similarity / --knn_temperature); the prediction is the class with the
largest sum. Only the chief writes (TensorBoard `knn/top_1`, results.json).
"""

import dataclasses
import time
from typing import Callable, Dict, Tuple

import numpy as np
import tensorflow as tf

from supcon_tf import config as config_lib
from supcon_tf import results as results_lib
from supcon_tf.data import pipeline
from supcon_tf.data.sources.records import FileRecords, MemoryRecords, StreamRecords

RESULTS_KEY = "knn"
# Bank similarities held at once by the vote: test chunk x bank size (float32).
_MAX_SIMILARITIES = 1 << 24


def knn_predict(queries, bank, bank_labels, num_classes: int, k: int,
                temperature: float, chunk_size: int = 0) -> np.ndarray:
  """The classes a weighted kNN vote gives `queries`.

  Args:
    queries: float [n, d], L2-normalised.
    bank: float [m, d], L2-normalised.
    bank_labels: int [m], in 0..num_classes-1.
    num_classes: the number of classes.
    k: neighbours that vote (capped at m).
    temperature: a neighbour's vote weighs exp(similarity / temperature).
    chunk_size: queries per matmul (0: as many as keep the [chunk, m] similarities
      under 2**24 entries, at most 1024).

  Returns:
    int32 [n]: the class with the largest summed weight (ties: the lowest class).

  Raises:
    ValueError: an empty bank.
  """
  bank = tf.convert_to_tensor(np.asarray(bank, np.float32))
  labels = tf.convert_to_tensor(np.asarray(bank_labels, np.int32))
  queries = np.asarray(queries, np.float32)
  m = int(bank.shape[0])
  if m == 0:
    raise ValueError("the kNN bank is empty")
  k = min(int(k), m)
  chunk = chunk_size or max(1, min(1024, _MAX_SIMILARITIES // m))
  out = [np.zeros([0], np.int32)]
  for start in range(0, len(queries), chunk):
    sims = tf.matmul(queries[start:start + chunk], bank, transpose_b=True)
    top, index = tf.math.top_k(sims, k=k)  # [c, k], most similar first
    # exp((s - s_max) / T): the same ratios as exp(s / T), without overflow at
    # small temperatures.
    weights = tf.exp((top - top[:, :1]) / temperature)
    votes = tf.reduce_sum(tf.one_hot(tf.gather(labels, index), num_classes) *
                          weights[:, :, None], axis=1)  # [c, classes]
    out.append(tf.argmax(votes, axis=1, output_type=tf.int32).numpy())
  return np.concatenate(out)


@dataclasses.dataclass(frozen=True)
class _SplitAsEval:
  """A source whose evaluation split is (the first `num_eval` of) another
  source's training split, for `pipeline.eval_dataset`."""
  source: object
  num_eval: int

  def __getattr__(self, name):  # name, num_classes, num_channels, reports_corrupt...
    if name == "source":  # not set yet (e.g. a copy): no recursion
      raise AttributeError(name)
    return getattr(self.source, name)

  def eval_records(self, num_pipelines: int):
    records = self.source.train_records(num_pipelines)
    n = self.num_eval
    if isinstance(records, (MemoryRecords, FileRecords)):
      return dataclasses.replace(records, **{
          f.name: getattr(records, f.name)[:n] for f in dataclasses.fields(records)})
    if isinstance(records, StreamRecords):
      # Pipeline p keeps the first of its shard's examples (files in their order):
      # n examples dealt round-robin over the pipelines (n on one pipeline).
      quotas = tuple(min(size, len(range(p, n, num_pipelines)))
                     for p, size in enumerate(records.pipeline_sizes))

      def read(ctx, seed):
        return records.read(ctx, seed).take(quotas[ctx.input_pipeline_id if ctx else 0])

      return StreamRecords(read=read, pipeline_sizes=quotas)
    return records  # pipeline.eval_dataset refuses an unknown kind


def bank_source(source, bank_size: int):
  """A source whose evaluation split is the bank: the first `bank_size` training
  examples (0: all) in the split's order.

  Args:
    source: the run's data source.
    bank_size: --knn_bank_size.
  """
  n = source.num_train if bank_size <= 0 else min(bank_size, source.num_train)
  return _SplitAsEval(source, n)


class EmbeddingReader:
  """L2-normalised encoder outputs of a source's evaluation split, on every replica,
  gathered to the host without the padding."""

  def __init__(self, model, strategy: tf.distribute.Strategy, global_batch_size: int,
               eval_view, options: pipeline.InputOptions):
    """Args:
      model: the SupConModel.
      strategy: the strategy it was built under.
      global_batch_size: examples per step over all replicas (--eval_batch_size).
      eval_view: the evaluation view spec.
      options: how the input pipeline runs.
    """
    self.strategy = strategy
    self.global_batch_size = global_batch_size
    self.eval_view = eval_view
    self.options = options

    def replica_fn(batch):
      h = tf.cast(model.encode(batch["image"], training=False), tf.float32)
      corrupt = batch["corrupt"] if "corrupt" in batch else tf.zeros_like(
          batch["labels"])
      return (tf.math.l2_normalize(h, axis=-1), batch["labels"],
              tf.cast(batch["valid"], tf.int32), corrupt)

    @tf.function
    def step(batch):
      out = strategy.run(replica_fn, args=(batch,))
      return tuple(strategy.gather(value, axis=0) for value in out)

    self._step = step

  def read(self, source) -> Tuple[np.ndarray, np.ndarray, int]:
    """Embeds `source`'s evaluation split.

    Args:
      source: a data source (e.g. `bank_source(...)` for the training split).

    Returns:
      (embeddings float32 [n, d], labels int32 [n], undecodable images left out).
    """

    def dataset_fn(input_context):
      return pipeline.eval_dataset(source, self.global_batch_size, self.eval_view,
                                   self.options, input_context)

    dist = self.strategy.distribute_datasets_from_function(dataset_fn)
    embeddings, labels, corrupt = [], [], 0
    for batch in dist:
      h, y, valid, bad = (v.numpy() for v in self._step(batch))
      keep = valid.astype(bool)
      embeddings.append(h[keep])
      labels.append(y[keep])
      corrupt += int(bad.sum())
    if not embeddings:
      return np.zeros([0, 0], np.float32), np.zeros([0], np.int32), corrupt
    return np.concatenate(embeddings), np.concatenate(labels).astype(np.int32), corrupt


class KnnMonitor:
  """Measures the kNN top-1 at the --knn_every steps of stages that train the
  encoder and writes it (TensorBoard, results.json) on the chief."""

  def __init__(self, cfg: config_lib.Config, model, strategy, source, eval_view,
               options: pipeline.InputOptions, summaries, model_dir: str,
               is_chief: bool, log: Callable[[str], None]):
    """Args:
      cfg: the run's config (--knn_*, --eval_batch_size).
      model: the SupConModel.
      strategy: the strategy it was built under.
      source: the data source.
      eval_view: the evaluation view spec.
      options: how the input pipeline runs.
      summaries: the run's `summaries.Summaries`.
      model_dir: the run's model_dir (results.json).
      is_chief: whether this worker writes.
      log: prints a line for the user.
    """
    self.rt = cfg.runtime
    self.source = source
    self.summaries = summaries
    self.model_dir = model_dir
    self.is_chief = is_chief
    self.log = log
    self._reader = None
    self._reader_args = (model, strategy, cfg.runtime.eval_batch_size, eval_view,
                         options)

  def due(self, encoder_trained: bool, step: int, end_step: int) -> bool:
    """Whether a stage's step is a kNN step: every --knn_every steps of a stage
    that trains the encoder (contrastive or cross-entropy), and its last step."""
    every = self.rt.knn_every
    return bool(every) and encoder_trained and (step % every == 0 or step == end_step)

  def measure(self, step: int) -> Dict[str, float]:
    """The kNN top-1 of the current weights, recorded at `step` on the chief.

    Every worker must call it (the embeddings are gathered collectively).

    Returns:
      {"global_step", "top_1", "k", "bank_size", "num_examples", "seconds"}.

    Raises:
      ValueError: the bank or the test split is empty.
    """
    if self._reader is None:
      self._reader = EmbeddingReader(*self._reader_args)
    t0 = time.time()
    bank, bank_labels, bad_bank = self._reader.read(
        bank_source(self.source, self.rt.knn_bank_size))
    test, test_labels, bad_test = self._reader.read(self.source)
    if bad_bank or bad_test:
      self.log(f"kNN monitor: left out {bad_bank} undecodable training and "
               f"{bad_test} test image(s)")
    if len(test_labels) == 0:
      raise ValueError("the kNN monitor's test split is empty")
    k = min(self.rt.knn_k, len(bank_labels))
    top_1 = None
    if self.is_chief:  # the same numbers on every worker: only the chief votes
      predicted = knn_predict(test, bank, bank_labels, self.source.num_classes, k,
                              self.rt.knn_temperature)
      top_1 = float(np.mean(predicted == test_labels))
    result = {"global_step": int(step), "top_1": top_1, "k": k,
              "bank_size": int(len(bank_labels)), "num_examples": int(len(test_labels)),
              "seconds": round(time.time() - t0, 3)}
    if self.is_chief:
      self.summaries.scalars("eval", {"knn/top_1": top_1}, step)
      results_lib.record(self.model_dir, RESULTS_KEY,
                         {key: result[key] for key in ("global_step", "top_1", "k",
                                                       "bank_size", "num_examples")})
    return result
