"""A prepared TFDS dataset read from its record files on every epoch, and the TFDS
helpers of every TFDS-backed source.

`TfdsStreamSource` reads a TFDS image-classification dataset (features `image`
and `label`): imagenet2012, variable-size datasets and anything larger than the
memory budget. Each input pipeline reads its shard of the files
(`tfds.ReadConfig(input_context=...)`: files p, p+P, ...; every P-th example when
there are fewer files than pipelines). The image feature is read undecoded
(`tfds.decode.SkipDecoding`): the pipeline decodes it (JPEG: only the crop).
"""

import dataclasses
from typing import ClassVar, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from supcon_tf.config import ConfigError, DataConfig
from supcon_tf.data.sources.records import StreamRecords


def _tfds():
  # Imported on first use: tensorflow_datasets is only needed by TFDS-backed runs
  # (the embedded Fashion-MNIST default and image folders never use it), and
  # tests patch its readers through `tfds.testing.mock_data`.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds


def tfds_prepared(name: str, data_dir: str) -> bool:
  """Whether TFDS dataset `name` is prepared under `data_dir` ("" : never)."""
  if not data_dir:
    return False
  try:
    return _tfds().builder(name, data_dir=data_dir).is_prepared()
  except Exception:  # pylint: disable=broad-except
    return False


def tfds_builder(name: str, data_dir: str):
  """The builder of a TFDS image-classification dataset.

  Args:
    name: the TFDS name.
    data_dir: where it is prepared.

  Returns:
    The `tfds.core.DatasetBuilder`.

  Raises:
    ConfigError: it has no `image` (an Image feature) and `label` features.
  """
  tfds = _tfds()
  builder = tfds.builder(name, data_dir=data_dir)
  features = builder.info.features
  if "image" not in features or "label" not in features:
    raise ConfigError(f"TFDS {name} has no 'image' and 'label' features "
                      f"(it has: {', '.join(features.keys())})")
  if not isinstance(features["image"], tfds.features.Image):
    raise ConfigError(f"TFDS {name}: 'image' is a {type(features['image']).__name__}, "
                      "not an Image feature")
  return builder


def read_instruction(split: str):
  """TFDS's parsed form of a split string (e.g. "train[:90%]")."""
  return _tfds().core.ReadInstruction.from_spec(split)


def split_num_examples(builder, split: str) -> int:
  """Examples in `split` of `builder`'s dataset.

  Raises:
    ConfigError: a bad split name, or a split whose size cannot be told.
  """
  try:
    return int(builder.info.splits[split].num_examples)
  except Exception:  # pylint: disable=broad-except
    pass  # unknown to the metadata (e.g. tfds.testing.mock_data): ask the reader
  try:
    count = int(builder.as_dataset(split=split).cardinality())
  except (ValueError, KeyError, AssertionError) as e:
    raise ConfigError(f"TFDS {builder.name}: bad split {split!r}: "
                      f"{str(e).splitlines()[0]}") from None
  if count < 0:
    raise ConfigError(f"TFDS {builder.name}: cannot tell the size of split {split!r}")
  return count


def numpy_batches(builder, split: str, batch_size: int) -> List[dict]:
  """`split` decoded, as NumPy batches of `batch_size` (the last may be smaller)."""
  return list(_tfds().as_numpy(builder.as_dataset(split=split).batch(batch_size)))


def limit_split(split: str, num: int) -> str:
  """`split` restricted to its first `num` examples (0: all).

  Raises:
    ConfigError: `split` is already sliced or a sum of splits.
  """
  if not num:
    return split
  if "[" in split or "+" in split:
    raise ConfigError(f"--num_train_examples/--num_eval_examples cannot be combined "
                      f"with the sliced split {split!r} of a streamed dataset")
  return f"{split}[:{num}]"


def fits_in_memory(builder, splits: Sequence[str], max_gb: float) -> bool:
  """Whether the decoded `splits` of fixed-size images take at most `max_gb` GiB
  (datasets that do are decoded into memory, the others streamed)."""
  shape = builder.info.features["image"].shape
  if None in shape or max_gb <= 0:
    return False
  total = sum(split_num_examples(builder, s) for s in splits) * int(np.prod(shape))
  return total <= max_gb * (1 << 30)


@dataclasses.dataclass(frozen=True)
class TfdsStreamSource:
  """A prepared TFDS dataset read from its record files, sharded per input
  pipeline (a `Source`)."""
  name: str
  builder: object
  train_split: str
  eval_split: str
  num_train: int
  num_eval: int
  num_classes: int
  num_channels: int
  class_names: Tuple[str, ...]
  origin: str
  reports_corrupt: ClassVar[bool] = False  # TFDS prepared the images

  @classmethod
  def create(cls, data_config: DataConfig, builder=None) -> "TfdsStreamSource":
    """The streamed source of `data_config.dataset`.

    Args:
      data_config: dataset, data_dir, splits and example limits.
      builder: its builder if already open (one metadata read instead of two).

    Returns:
      The source.

    Raises:
      ConfigError: no image/label features, a bad or empty split.
    """
    d = data_config
    builder = builder or tfds_builder(d.dataset, d.data_dir)
    train_split = limit_split(d.train_split, d.num_train_examples)
    eval_split = limit_split(d.eval_split, d.num_eval_examples)
    num_train = split_num_examples(builder, train_split)
    num_eval = split_num_examples(builder, eval_split)
    for split, num in ((train_split, num_train), (eval_split, num_eval)):
      if num == 0:
        raise ConfigError(f"TFDS {d.dataset} split {split!r} under {d.data_dir} is empty")
    features = builder.info.features
    channels = features["image"].shape[-1] or 3
    label = features["label"]
    return cls(d.dataset, builder, train_split, eval_split, num_train, num_eval,
               label.num_classes, int(channels), tuple(label.names),
               f"TFDS under {d.data_dir} (streamed)")

  # -- sharding
  def shard_sizes(self, split: str, num_pipelines: int) -> Tuple[bool, List[int]]:
    """How the reader shards `split` over `num_pipelines` input pipelines.

    TFDS shards by files (pipeline p reads files p, p+P, ...) when there are at
    least as many files as pipelines; otherwise every pipeline reads the split
    and keeps every P-th example.

    Returns:
      (by_files, examples of each pipeline).
    """
    try:
      instructions = list(self.builder.info.splits[split].file_instructions)
    except Exception:  # pylint: disable=broad-except
      instructions = []  # no file metadata (e.g. mock data): shard by examples
    if num_pipelines > 1 and len(instructions) >= num_pipelines:
      return True, [sum(fi.take for fi in instructions[p::num_pipelines])
                    for p in range(num_pipelines)]
    total = (sum(fi.take for fi in instructions) if instructions
             else split_num_examples(self.builder, split))
    return False, [len(range(p, total, num_pipelines)) for p in range(num_pipelines)]

  def steps_per_epoch(self, global_batch_size: int, num_pipelines: int) -> int:
    """Whole global steps per epoch: the smallest shard sets it."""
    _, sizes = self.shard_sizes(self.train_split, num_pipelines)
    return min(sizes) // (global_batch_size // num_pipelines)

  def records(self, split: str, input_context=None, shuffle_seed=None,
              by_files: Optional[bool] = None) -> tf.data.Dataset:
    """This pipeline's shard of `split`: {"encoded": string, "label": int32}.

    Args:
      split: a TFDS split.
      input_context: this pipeline's; None: the whole split.
      shuffle_seed: scalar (may be a tensor): shuffle the files with it; None:
        files in their order.
      by_files: `shard_sizes(split, P)[0]` (pass it when calling from inside a
        traced function); None: asked here.

    Returns:
      The records, images undecoded.
    """
    tfds = _tfds()
    num_pipelines = input_context.num_input_pipelines if input_context else 1
    if by_files is None:
      by_files, _ = self.shard_sizes(split, num_pipelines)
    read_config = tfds.ReadConfig(
        input_context=input_context if by_files else None,
        shuffle_seed=shuffle_seed, shuffle_reshuffle_each_iteration=False,
        interleave_cycle_length=16, interleave_block_length=1, skip_prefetch=True,
        try_autocache=False)
    ds = self.builder.as_dataset(split=split, shuffle_files=shuffle_seed is not None,
                                 decoders={"image": tfds.decode.SkipDecoding()},
                                 read_config=read_config)
    if num_pipelines > 1 and not by_files:
      ds = ds.shard(num_pipelines, input_context.input_pipeline_id)
    return ds.map(lambda ex: {"encoded": ex["image"],
                              "label": tf.cast(ex["label"], tf.int32)})

  def _stream(self, split: str, num_pipelines: int) -> StreamRecords:
    by_files, sizes = self.shard_sizes(split, num_pipelines)
    return StreamRecords(
        read=lambda ctx, seed: self.records(split, ctx, seed, by_files),
        pipeline_sizes=tuple(sizes))

  def train_records(self, num_pipelines: int) -> StreamRecords:
    return self._stream(self.train_split, num_pipelines)

  def eval_records(self, num_pipelines: int) -> StreamRecords:
    return self._stream(self.eval_split, num_pipelines)
