"""The scalars of TensorBoard event files, read without TensorFlow.

An event file is a sequence of TFRecords (a little-endian uint64 length, a uint32
CRC of it, the bytes, a uint32 CRC of them), each a serialized `Event` proto. The
protos and the tensor decoding are TensorBoard's own (`tensorboard.compat.proto`,
`tensorboard.util.tensor_util`), which do not load TensorFlow: the report reads a
study's curves in a fraction of the seconds TensorFlow takes to load. The CRCs are
not checked; a record cut short (a run killed while writing) ends its file.
"""

import glob
import os
import struct
from typing import Dict, Iterator, Optional, Sequence, Tuple

from google.protobuf import message
import numpy as np
from tensorboard.compat.proto import event_pb2
from tensorboard.util import tensor_util

Series = Tuple[np.ndarray, np.ndarray]  # (global steps, values), sorted by step
EVENT_FILES = "events.out.tfevents.*"


def records(path: str) -> Iterator[bytes]:
  """The payloads of a TFRecord file, up to its end or a record cut short.

  Args:
    path: the file.
  """
  with open(path, "rb") as f:
    while True:
      header = f.read(12)
      if len(header) < 12:
        return
      (length,) = struct.unpack("<Q", header[:8])
      payload = f.read(length)
      if len(payload) < length or len(f.read(4)) < 4:
        return
      yield payload


def _number(value) -> Optional[float]:
  """A summary value's number: `simple_value` (TF1) or a one-element numeric tensor
  (TF2's tf.summary.scalar); None for anything else (text, images, hparams)."""
  kind = value.WhichOneof("value")
  if kind == "simple_value":
    return float(value.simple_value)
  if kind != "tensor":
    return None
  try:
    array = tensor_util.make_ndarray(value.tensor)
  except (TypeError, ValueError):
    return None
  if array.size != 1 or not np.issubdtype(array.dtype, np.number):
    return None
  return float(array.reshape(()))


def read_scalars(directory: str, tags: Optional[Sequence[str]] = None
                 ) -> Dict[str, Series]:
  """The scalar summaries of the event files in a directory.

  A step written again (a resumed run) keeps the value written last (files in name
  order, which is their creation order).

  Args:
    directory: e.g. `<model_dir>/train`.
    tags: only these tags (None: every scalar).

  Returns:
    {tag: (steps int64, values float64)}, sorted by step ({} without event files).
  """
  by_tag: Dict[str, Dict[int, float]] = {}
  for path in sorted(glob.glob(os.path.join(directory, EVENT_FILES))):
    for payload in records(path):
      try:
        event = event_pb2.Event.FromString(payload)
      except message.DecodeError:
        break
      for value in event.summary.value:
        if tags is not None and value.tag not in tags:
          continue
        number = _number(value)
        if number is not None:
          by_tag.setdefault(value.tag, {})[int(event.step)] = number
  return {tag: (np.array(sorted(v), np.int64), np.array([v[s] for s in sorted(v)]))
          for tag, v in by_tag.items()}
