"""What a source hands the pipeline for one split: the three kinds of records.

A `Source` (see `sources/__init__.py`) answers `train_records(num_pipelines)` and
`eval_records(num_pipelines)` with one of these frozen records; the pipeline
dispatches on which one it got (nothing else is accepted):

* `MemoryRecords`: decoded images in memory, read by index (random access).
* `FileRecords`: encoded image files and their labels, read by index; files that
  do not decode are skipped and counted by the pipeline.
* `StreamRecords`: a sharded stream of encoded records (e.g. a TFDS dataset's
  record files), read in order, with the number of examples of each pipeline.

Kept apart from `__init__.py` so that the source modules can import it without
importing each other.
"""

import dataclasses
from typing import Callable, Optional, Tuple, Union

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class MemoryRecords:
  """Decoded examples held in memory.

  Attributes:
    images: uint8 [N, H, W, C].
    labels: int32 [N].
  """
  images: np.ndarray
  labels: np.ndarray


@dataclasses.dataclass(frozen=True)
class FileRecords:
  """Encoded image files (JPEG/PNG/BMP/GIF), read and decoded as they are needed.

  Attributes:
    files: str [N], paths (local or any `tf.io.gfile` file system).
    labels: int32 [N].
  """
  files: np.ndarray
  labels: np.ndarray


@dataclasses.dataclass(frozen=True)
class StreamRecords:
  """A split read as a stream of records {"encoded": string, "label": int32}.

  Attributes:
    read: `read(input_context, shuffle_seed)` -> this pipeline's shard of the
      split (`input_context` None: the whole split); `shuffle_seed` a scalar
      (may be a tensor) shuffles the order of the files, None keeps it.
    pipeline_sizes: examples each of the `num_pipelines` input pipelines reads.
  """
  read: Callable[[Optional[tf.distribute.InputContext], Optional[tf.Tensor]],
                 tf.data.Dataset]
  pipeline_sizes: Tuple[int, ...]


Records = Union[MemoryRecords, FileRecords, StreamRecords]
