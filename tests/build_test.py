"""The Bazel BUILD file lists every module and test (generated, kept in sync)."""

import os
import re
import subprocess
import sys

from tests import testing


def test_build_file_is_in_sync_with_the_tree():
  result = subprocess.run([sys.executable, "scripts/gen_build.py", "--check"],
                          cwd=testing.REPO_ROOT, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr


def test_every_module_and_test_has_a_rule():
  build = open(os.path.join(testing.REPO_ROOT, "BUILD")).read()
  srcs = set(re.findall(r'srcs = \["([^"]+)"\]', build))
  for top in ("supcon_tf", "tests"):
    for dirpath, _, files in os.walk(os.path.join(testing.REPO_ROOT, top)):
      for f in files:
        if f.endswith(".py"):
          rel = os.path.relpath(os.path.join(dirpath, f), testing.REPO_ROOT)
          assert rel in srcs, rel
  test_files = [f for _, _, files in os.walk(os.path.join(testing.REPO_ROOT, "tests"))
                for f in files if f.endswith("_test.py")]
  assert len(re.findall(r"^py_test\(", build, re.M)) == len(test_files)


if __name__ == "__main__":
  import pytest
  sys.exit(pytest.main([__file__]))
