"""Is a checkpoint this run's model? One line naming the first difference if not.

A checkpoint is compared with the objects that will restore from it before any
value is read: its index (`tf.train.load_checkpoint`: names and shapes, no tensor
data) against the variables reachable from the restoring object, keyed the way
`tf.train.Checkpoint` keys them (breadth-first object paths, as in the checkpoint's
object graph). Another width or depth shows as a shape that differs, other head sizes
too; a `--precision=float16` run differs from a float32 one by its optimizers'
loss-scale wrapper (`loss_scale/current_loss_scale`, `loss_scale/good_steps`).

Without this check TensorFlow restores variable by variable and stops at the first
shape it cannot take ("Received incompatible tensor ..."), after overwriting the
variables before it, or restores a float16 run's checkpoint into a float32 run
without a word.
"""

from typing import Dict, Optional, Tuple

import tensorflow as tf

from supcon_tf.errors import RunError

_VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"
# Bookkeeping entries of a checkpoint, not variables of the model or an optimizer.
_IGNORED = ("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter")
_LOSS_SCALE = "loss_scale/"


class IncompatibleCheckpoint(RunError):
  """A checkpoint holds another model (or another precision's optimizer)."""


def expected_variables(root, prefix: str = "") -> Dict[str, Tuple[Tuple[int, ...], tf.Variable]]:
  """The variables a restore from `root` reads, by checkpoint key.

  Args:
    root: the restoring object (a `tf.train.Checkpoint`, or one of its children).
    prefix: the path of `root` in the checkpoint (e.g. "model/encoder"), "" for the
      checkpoint's root.

  Returns:
    {checkpoint key: (shape, variable)}; optimizer slots are left out (a slot has the
    shape of its variable).
  """
  view = tf.train.TrackableView(root)
  seen = {id(root)}
  queue = [(root, prefix)]
  out = {}
  while queue:  # breadth first: the first path to an object is its checkpoint key
    obj, path = queue.pop(0)
    for name, child in view.children(obj).items():
      if id(child) in seen:
        continue
      seen.add(id(child))
      child_path = f"{path}/{name}" if path else name
      if isinstance(child, tf.Variable):
        out[child_path + _VALUE] = (tuple(child.shape), child)
      queue.append((child, child_path))
  return out


# The first difference named is the encoder's when there is one: a head or an
# optimizer slot that differs usually follows from it.
_FIRST = ("model/encoder/", "model/projection_head/", "model/classifier/")


def _order(key: str):
  rank = next((i for i, p in enumerate(_FIRST) if key.startswith(p)), len(_FIRST))
  return rank, key


def _name(key: str) -> str:
  return key[:-len(_VALUE)] if key.endswith(_VALUE) else key


def _shape(shape) -> str:
  return "[" + ", ".join(str(d) for d in shape) + "]"


def difference(path: str, root, prefix: str = "") -> Optional[str]:
  """The first way the checkpoint at `path` is not `root`'s, in words; None if it is.

  Args:
    path: a checkpoint prefix.
    root: the restoring object.
    prefix: the path of `root` in the checkpoint ("" for the whole checkpoint; a
      sub-path such as "model/encoder" compares that part only, and ignores the rest
      of the checkpoint).

  Raises:
    Whatever `tf.train.load_checkpoint` raises for an unreadable index.
  """
  stored = tf.train.load_checkpoint(path).get_variable_to_shape_map()
  stored = {k: tuple(v) for k, v in stored.items()
            if k.endswith(_VALUE) and ".OPTIMIZER_SLOT" not in k
            and not k.startswith(_IGNORED) and k.startswith(prefix)}
  expected = {k: v for k, v in expected_variables(root, prefix).items()
              if not k.startswith(_IGNORED)}
  count = lambda n: f" (and {n} more)" if n else ""
  shapes = [k for k in sorted(expected, key=_order)
            if k in stored and stored[k] != expected[k][0]]
  if shapes:
    k = shapes[0]
    var_name = expected[k][1].name.split(":")[0]
    return (f"{_name(k)} ({var_name}) is {_shape(stored[k])} there and "
            f"{_shape(expected[k][0])} in this run{count(len(shapes) - 1)}")
  missing = sorted(set(expected) - set(stored), key=_order)
  extra = sorted(set(stored) - set(expected), key=_order)
  scale = [k for k in missing + extra if _LOSS_SCALE in k]
  if scale:
    if scale[0] in missing:
      return (f"this run's optimizers have a float16 loss scale ({_name(scale[0])}) "
              "that it lacks: it was written with another --precision")
    return (f"it holds a float16 loss scale ({_name(scale[0])}) that this run's "
            "optimizers lack: it was written with another --precision")
  if missing:
    return f"it lacks {_name(missing[0])}{count(len(missing) - 1)}"
  if extra:
    return f"it holds {_name(extra[0])}, which this run has not{count(len(extra) - 1)}"
  return None


def check(path: str, root, what: str, prefix: str = "", advice: str = "") -> None:
  """Refuses a checkpoint that is not `root`'s, in one line.

  Args:
    path: a checkpoint prefix.
    root: the restoring object.
    what: how the line names the checkpoint's role (e.g. "checkpoint", "--encoder_checkpoint").
    prefix: as in `difference`.
    advice: appended in parentheses.

  Raises:
    IncompatibleCheckpoint: naming the first difference (a variable and both shapes,
      a missing or extra variable, or the precision wrapper).
  """
  reason = difference(path, root, prefix)
  if reason:
    raise IncompatibleCheckpoint(f"{what} {path} holds another model: {reason}"
                                 + (f" ({advice})" if advice else ""))
