"""Shared test helpers."""

import gzip
import os
import struct
import subprocess
import sys

import numpy as np
import tensorflow as tf

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mirrored_cpu_strategy(n: int, cross_device_ops=None):
  """A MirroredStrategy over logical CPUs 0..n-1 (see `distribute.configure_virtual_cpus`).

  Strategies over different device sets in one process would otherwise allocate
  the same collective group keys and fail ("joining a group with size 4, but that
  group has size 2"); like TensorFlow's own strategy_combinations, move every new
  strategy's collective key base out of the way of the previous ones.
  """
  logical = tf.config.list_logical_devices("CPU")
  if len(logical) < n:
    raise RuntimeError(f"{n} logical CPUs needed, {len(logical)} configured: call "
                       f"distribute.configure_virtual_cpus({n}) before any TensorFlow op")
  # pylint: disable=protected-access
  tf.distribute.MirroredStrategy._collective_key_base += 100000
  # pylint: enable=protected-access
  return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(n)],
                                        cross_device_ops=cross_device_ops)


def write_idx(path, array, gz=True):
  """Writes `array` (uint8 or int32) as an idx file, gzipped if `gz`."""
  codes = {np.uint8: 0x08, np.int32: 0x0C}
  header = bytes([0, 0, codes[array.dtype.type], array.ndim])
  header += struct.pack(f">{array.ndim}I", *array.shape)
  payload = array.astype(array.dtype.newbyteorder(">")).tobytes()
  with (gzip.open if gz else open)(path, "wb") as f:
    f.write(header + payload)


def write_fake_fashion_mnist(directory, num_train=64, num_test=40, seed=0):
  """Fashion-MNIST-shaped idx files whose classes are learnable: class c is a
  bright horizontal band at row 2c plus noise. Returns the arrays written."""
  rng = np.random.default_rng(seed)
  arrays = {}
  for prefix, n in (("train", num_train), ("t10k", num_test)):
    labels = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(labels)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
      images[i, 2 * c + 4:2 * c + 7, :] = 255
    arrays[f"{prefix}-images-idx3-ubyte"] = images
    arrays[f"{prefix}-labels-idx1-ubyte"] = labels
  os.makedirs(directory, exist_ok=True)
  for name, arr in arrays.items():
    write_idx(os.path.join(directory, name + ".gz"), arr)
  return arrays


def run_cli(args, timeout=600, **kwargs):
  """Runs `python -m supcon_tf.run ARGS` from the repository root."""
  env = dict(os.environ, PYTHONPATH=REPO_ROOT)
  return subprocess.run([sys.executable, "-m", "supcon_tf.run"] + list(args),
                        cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                        timeout=timeout, **kwargs)


def wait_for_checkpoint(proc, model_dir, step, timeout=300):
  """Waits until `model_dir`'s checkpoint state names a checkpoint of at least `step`
  (the index file appears before the state file does: waiting for it alone races
  with a kill) and returns that step. Fails if `proc` ends or `timeout` passes."""
  import time  # pylint: disable=g-import-not-at-top
  deadline = time.time() + timeout
  while True:
    latest = tf.train.latest_checkpoint(str(model_dir))
    if latest and int(latest.rsplit("-", 1)[1]) >= step:
      return int(latest.rsplit("-", 1)[1])
    assert proc.poll() is None, proc.stdout.read()
    assert time.time() < deadline, f"no checkpoint {step} within {timeout} s"
    time.sleep(0.05)


def synthetic_source(n=16, size=16, channels=3, classes=4, num_test=8, seed=0):
  """An in-memory source of random uint8 images; labels cycle through the classes
  and the test split is the first `num_test` training examples."""
  from supcon_tf.data.sources.memory import InMemorySource  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8)
  labels = (np.arange(n) % classes).astype(np.int32)
  return InMemorySource("synthetic", images, labels, images[:num_test], labels[:num_test],
                        classes, "test")


def _encode(image, fmt):
  if fmt == "png":
    return tf.io.encode_png(image).numpy()
  return tf.io.encode_jpeg(image, quality=90).numpy()


def _class_image(rng, label, height, width, channels=3):
  """A learnable image: class c is a bright band in row block c (plus noise)."""
  image = rng.integers(0, 80, (height, width, channels)).astype(np.uint8)
  band = max(1, height // 8)
  top = (label * band) % max(1, height - band)
  image[top:top + band] = 230
  return image


def unique_image(k, height, width, channels=3):
  """Example k's image for identity tests: a constant gray level (`image_id`)."""
  return np.full((height, width, channels), 4 * k + 2, np.uint8)


def image_id(view):
  """The k of a (resized, float [0, 1]) view of `unique_image(k)`."""
  return int(round((float(np.mean(view)) * 255.0 - 2.0) / 4.0))


def write_image_folder(root, classes=("cat", "dog", "fox"), per_class=8,
                       formats=("png", "jpg"), sizes=((20, 28), (32, 24), (26, 26)),
                       corrupt=(), seed=0, unique=False, first_id=0):
  """Writes root/<class>/<i>.<fmt> images of varying sizes. `corrupt` lists
  (class, i) pairs written as garbage bytes instead. With `unique`, the images are
  `unique_image(k)` for k = first_id, first_id + 1, ... in writing order.
  Returns {path: label}."""
  rng = np.random.default_rng(seed)
  written = {}
  k = first_id
  for label, name in enumerate(classes):
    os.makedirs(os.path.join(root, name), exist_ok=True)
    for i in range(per_class):
      fmt = formats[i % len(formats)]
      h, w = sizes[(i + label) % len(sizes)]
      path = os.path.join(root, name, f"{i:03d}.{fmt}")
      image = unique_image(k, h, w) if unique else _class_image(rng, label, h, w)
      k += 1
      data = _encode(image, fmt)
      if (name, i) in corrupt:
        data = b"this is not an image " + bytes(rng.integers(0, 256, 64, dtype=np.uint8))
      with open(path, "wb") as f:
        f.write(data)
      written[path] = label
  return written


def make_fake_imagenet(root, num_classes=3, per_class=8, num_validation=10,
                       num_shards=4, seed=0, unique=False, sizes=(24, 48),
                       image_fn=None):
  """A real TFDS `imagenet2012` prepared offline under root/tfds from small
  generated JPEGs of varying sizes, through the builder's own manual-download path
  (the ILSVRC2012 train/val tars). Sides are drawn from [sizes[0], sizes[1]).
  With `unique`, the k-th image written (training images first, then validation) is
  `unique_image(k)`: at most 64 images. `image_fn(rng, label, height, width)` makes
  the images instead (e.g. photo-like ones for benchmarks). Returns (data_dir,
  class synsets)."""
  import io  # pylint: disable=g-import-not-at-top
  import tarfile  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  manual = os.path.join(root, "manual")
  data_dir = os.path.join(root, "tfds")
  os.makedirs(manual, exist_ok=True)
  labels_file = os.path.join(os.path.dirname(tfds.__file__), "datasets", "imagenet2012",
                             "labels.txt")
  with open(labels_file) as f:
    synsets = f.read().split()
  val_labels_file = os.path.join(os.path.dirname(labels_file), "validation_labels.txt")
  with open(val_labels_file) as f:
    val_synsets = f.read().split()
  classes = synsets[:num_classes]

  def add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))

  counter = [0]

  def jpeg(label):
    h, w = int(rng.integers(*sizes)), int(rng.integers(*sizes))
    if unique:
      image = unique_image(counter[0], h, w)
    else:
      image = (image_fn or _class_image)(rng, label, h, w)
    counter[0] += 1
    return _encode(image, "jpg")

  with tarfile.open(os.path.join(manual, "ILSVRC2012_img_train.tar"), "w") as outer:
    for label, synset in enumerate(classes):
      buf = io.BytesIO()
      with tarfile.open(fileobj=buf, mode="w") as inner:
        for i in range(per_class):
          add(inner, f"{synset}_{i}.JPEG", jpeg(label))
      add(outer, f"{synset}.tar", buf.getvalue())
  with tarfile.open(os.path.join(manual, "ILSVRC2012_img_val.tar"), "w") as tar:
    for i in range(num_validation):
      label = synsets.index(val_synsets[i])
      add(tar, f"ILSVRC2012_val_{i + 1:08d}.JPEG", jpeg(label % 7))
  builder = tfds.builder("imagenet2012", data_dir=data_dir)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=manual, num_shards=num_shards))
  return data_dir, classes


def free_ports(n: int):
  """`n` distinct free TCP ports on 127.0.0.1 (bound, then released)."""
  import socket  # pylint: disable=g-import-not-at-top
  sockets = []
  try:
    for _ in range(n):
      s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
      s.bind(("127.0.0.1", 0))
      sockets.append(s)
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


class Workers:
  """`argv` (a command list) running as `num_workers` local MultiWorkerMirroredStrategy
  workers on 127.0.0.1 (TF_CONFIG per process, ports picked here), their stdout and
  stderr in temporary files. A context manager: every process group still running
  on exit is killed."""

  def __init__(self, argv, num_workers=2, env=None):
    import json  # pylint: disable=g-import-not-at-top
    import tempfile  # pylint: disable=g-import-not-at-top
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(num_workers)]}
    self.procs, self._logs = [], []
    try:
      for task in range(num_workers):
        worker_env = dict(os.environ, PYTHONPATH=REPO_ROOT, **(env or {}))
        worker_env["TF_CONFIG"] = json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": task}})
        out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        self._logs.append((out, err))
        self.procs.append(subprocess.Popen(argv, cwd=REPO_ROOT, env=worker_env,
                                           stdout=out, stderr=err, text=True,
                                           start_new_session=True))
    except BaseException:
      self.__exit__(None, None, None)
      raise

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
    for files in self._logs:
      for f in files:
        f.close()
    return False

  def output(self, task):
    """(stdout, stderr) of worker `task` so far (read without moving the file offset
    the worker writes at)."""
    return tuple(os.pread(f.fileno(), os.fstat(f.fileno()).st_size, 0).decode(
        errors="replace") for f in self._logs[task])

  def wait(self, timeout, until_one_fails=True):
    """Waits at most `timeout` seconds for every worker (with `until_one_fails`, only
    until one exits non-zero: the rest would hang). Returns the return codes (None:
    still running)."""
    import time  # pylint: disable=g-import-not-at-top
    deadline = time.time() + timeout
    while time.time() < deadline and any(p.poll() is None for p in self.procs):
      if until_one_fails and any(p.poll() not in (None, 0) for p in self.procs):
        break
      time.sleep(0.5)
    return [p.poll() for p in self.procs]

  def close(self):
    """Kills every process group still running."""
    import signal  # pylint: disable=g-import-not-at-top
    for p in self.procs:
      if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()

  def results(self):
    """[(returncode, stdout, stderr)] by task index; returncode None: still running."""
    return [(p.poll(),) + self.output(task) for task, p in enumerate(self.procs)]


def run_workers(argv, num_workers=2, timeout=300, env=None):
  """Runs `argv` (a command list) as `num_workers` local MultiWorkerMirroredStrategy
  workers (see `Workers`). Waits at most `timeout` seconds in all, then kills them;
  every process is killed on any exit. Returns [(returncode, stdout, stderr)] by
  task index; returncode None: timed out."""
  with Workers(argv, num_workers, env) as workers:
    codes = workers.wait(timeout)
    workers.close()
    results = workers.results()
  return [(code,) + result[1:] for code, result in zip(codes, results)]
