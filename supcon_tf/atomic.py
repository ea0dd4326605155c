"""Files and directories written whole or not at all (local or any tf.io.gfile path).

`write_text_atomic` writes a sibling and renames it into place;
`write_directory_atomic` does the same for a directory tree (a crash leaves the
previous complete directory, the new complete one, or nothing at the target path,
never a partial one). Used for the model_dir's files (`workdir.py`) and the export.

TensorFlow (for `tf.io.gfile`: gs:// and other file systems) is imported on first
use, so that `workdir.py` can check a model_dir before TensorFlow loads.
"""

import os
import sys
import time
from typing import Callable

# Test hooks. PAUSE_ENV="PHASE:SECONDS[,PHASE:SECONDS...]" makes a write print
# "supcon-export-pause PHASE" on stderr and sleep at that point, for SECONDS or until
# a file named PHASE appears in the directory named by RESUME_ENV. Phases of
# `write_directory_atomic`: "written" (the temporary directory is complete, nothing
# renamed yet), "swapped" (the previous directory is renamed aside, the new one is not
# in place yet); the export adds "partial" (see `export.py`).
PAUSE_ENV = "SUPCON_EXPORT_TEST_PAUSE"
RESUME_ENV = "SUPCON_EXPORT_TEST_RESUME"

# `<target>.tmp-<pid>`: a write in progress; `<target>.old-<pid>`: the previous
# directory during the swap.
TMP_MARK = ".tmp-"
OLD_MARK = ".old-"


def gfile():
  """`tf.io.gfile`, TensorFlow imported on first use."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile


def write_text_atomic(path: str, text: str) -> None:
  """Writes `text` to `path` through a sibling temporary file and a rename.

  Args:
    path: the target file (local or any tf.io.gfile file system); its directory is
      created if missing.
    text: the content.
  """
  fs = gfile()
  parent = os.path.dirname(path)
  if parent:
    fs.makedirs(parent)
  tmp = f"{path}{TMP_MARK}{os.getpid()}"
  with fs.GFile(tmp, "w") as f:
    f.write(text)
  fs.rename(tmp, path, overwrite=True)


def test_pause(phase: str) -> None:
  """The test hook (see PAUSE_ENV); does nothing unless the variable is set.

  Args:
    phase: the point reached ("partial", "written" or "swapped").
  """
  spec = os.environ.get(PAUSE_ENV, "")
  for item in filter(None, spec.split(",")):
    name, _, seconds = item.partition(":")
    if name != phase:
      continue
    print(f"supcon-export-pause {phase}", file=sys.stderr, flush=True)
    resume = os.path.join(os.environ.get(RESUME_ENV, ""), phase)
    deadline = time.time() + float(seconds or 60)
    while time.time() < deadline and not (os.environ.get(RESUME_ENV) and
                                          os.path.exists(resume)):
      time.sleep(0.05)


def _pid_alive(pid: int) -> bool:
  if pid == os.getpid():
    return True
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _remove_stale(target: str) -> None:
  """Deletes `<target>.tmp-<pid>`/`.old-<pid>` left by processes that are gone."""
  fs = gfile()
  parent = os.path.dirname(target) or "."
  base = os.path.basename(target)
  if not fs.isdir(parent):
    return
  for entry in fs.listdir(parent):
    entry = entry.rstrip("/")
    for mark in (TMP_MARK, OLD_MARK):
      if entry.startswith(base + mark):
        pid = entry[len(base + mark):]
        local = "://" not in target
        if pid.isdigit() and local and _pid_alive(int(pid)):
          continue  # another live writer (or ours)
        fs.rmtree(os.path.join(parent, entry))


def write_directory_atomic(target: str, write: Callable[[str], None]) -> None:
  """Calls `write(tmp_dir)`, then puts `tmp_dir` at `target`.

  The previous `target` (if any) is renamed to `<target>.old-<pid>`, the new one
  renamed into place and the old one deleted; on an error the previous directory is
  put back. Leftover `.tmp-*`/`.old-*` siblings of dead processes are removed first.

  Args:
    target: the directory to (re)place.
    write: fills the temporary directory it is given (which it must create).
  """
  fs = gfile()
  target = target.rstrip("/")
  parent = os.path.dirname(target)
  if parent:
    fs.makedirs(parent)
  _remove_stale(target)
  tmp = f"{target}{TMP_MARK}{os.getpid()}"
  old = f"{target}{OLD_MARK}{os.getpid()}"
  for path in (tmp, old):
    if fs.exists(path):
      fs.rmtree(path)
  try:
    write(tmp)
    test_pause("written")
    if fs.exists(target):
      fs.rename(target, old)
      test_pause("swapped")
    fs.rename(tmp, target)
  except BaseException:
    if fs.exists(tmp):
      fs.rmtree(tmp)
    if fs.exists(old) and not fs.exists(target):
      fs.rename(old, target)  # put the previous directory back
    raise
  if fs.exists(old):
    fs.rmtree(old)
