"""Files and directories written whole or not at all (`supcon_tf/atomic.py`)."""

import os
import subprocess
import sys

import pytest

from supcon_tf import atomic


def test_write_text_atomic_replaces_whole_files(tmp_path):
  path = tmp_path / "sub" / "results.json"
  atomic.write_text_atomic(str(path), "one")
  atomic.write_text_atomic(str(path), "two")
  assert path.read_text() == "two" and os.listdir(path.parent) == ["results.json"]


def test_a_failed_directory_write_keeps_the_previous_directory(tmp_path):
  target = tmp_path / "export"

  def write(marker):
    def fill(tmp):
      os.makedirs(tmp)
      (open(os.path.join(tmp, "marker"), "w")).write(marker)
    return fill

  atomic.write_directory_atomic(str(target), write("first"))

  def broken(tmp):
    write("second")(tmp)
    raise RuntimeError("disk full")

  with pytest.raises(RuntimeError, match="disk full"):
    atomic.write_directory_atomic(str(target), broken)
  assert (target / "marker").read_text() == "first"
  assert sorted(os.listdir(tmp_path)) == ["export"]  # no .tmp-/.old- left
  atomic.write_directory_atomic(str(target), write("third"))
  assert (target / "marker").read_text() == "third"


def test_leftovers_of_dead_writers_are_removed_live_ones_kept(tmp_path):
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True)
  dead_pid = int(dead.stdout)
  live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    for name in (f"export.tmp-{dead_pid}", f"export.old-{dead_pid}",
                 f"export.tmp-{live.pid}"):
      os.makedirs(tmp_path / name)
    atomic.write_directory_atomic(str(tmp_path / "export"), os.makedirs)
    assert sorted(os.listdir(tmp_path)) == ["export", f"export.tmp-{live.pid}"]
  finally:
    live.kill()
    live.wait()


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
