"""The kNN monitor: the weighted vote against NumPy, the embeddings of the padded
splits (and the bank's first n) on one device and on 2 replicas against the model
run directly, and a training run that records the monitor at its --knn_every steps
(results.json, TensorBoard, the progress lines)."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from supcon_tf import train
from supcon_tf.data.sources.records import StreamRecords
from supcon_tf.train import knn
from tests import testing
from tests.train import common


def _normalized(x):
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def _numpy_knn(queries, bank, bank_labels, num_classes, k, temperature):
  """The weighted kNN vote, written out: the k most similar, exp(sim / T) each."""
  sims = queries @ bank.T
  k = min(k, len(bank))
  predicted = []
  for row in sims:
    nearest = np.argsort(-row, kind="stable")[:k]
    votes = np.zeros(num_classes)
    for j in nearest:
      votes[bank_labels[j]] += np.exp(row[j] / temperature)
    predicted.append(np.argmax(votes))
  return np.array(predicted)


@pytest.mark.parametrize("k, temperature, chunk", [
    (1, 0.1, 0), (5, 0.1, 4), (12, 0.5, 7), (30, 0.07, 0), (50, 0.1, 5)])
def test_knn_predict_equals_numpy(k, temperature, chunk):
  rng = np.random.default_rng(k)
  bank = _normalized(rng.normal(size=(30, 6)))
  labels = rng.integers(0, 4, 30)
  queries = _normalized(rng.normal(size=(17, 6)))
  got = knn.knn_predict(queries, bank, labels, 4, k, temperature, chunk_size=chunk)
  want = _numpy_knn(queries, bank, labels, 4, k, temperature)
  np.testing.assert_array_equal(got, want)
  assert got.dtype == np.int32 and got.shape == (17,)
  if k >= 30:  # k is capped at the bank size: every bank entry votes
    np.testing.assert_array_equal(
        got, knn.knn_predict(queries, bank, labels, 4, 30, temperature))
  if k == 12:  # the answers differ from 1-NN (the test can tell k apart)
    assert not np.array_equal(got, knn.knn_predict(queries, bank, labels, 4, 1, 0.1))


def test_weighted_vote_can_overrule_the_majority():
  # One bank entry of class 0 at similarity 1 against two of class 1 at 0.5 (k=3):
  # at T=0.1, e^10 = 22026 > 2 e^5 = 297, class 0 wins; at T=10 the weights are
  # nearly equal (e^0.1 = 1.105 < 2 e^0.05 = 2.10) and the majority, class 1, wins.
  q = np.array([[1.0, 0.0]])
  half = [0.5, np.sqrt(0.75)]
  bank = np.array([[1.0, 0.0], half, [0.5, -np.sqrt(0.75)]])
  labels = np.array([0, 1, 1])
  for temperature, want in ((0.1, 0), (10.0, 1)):
    assert knn.knn_predict(q, bank, labels, 2, 3, temperature)[0] == want
    assert _numpy_knn(q, bank, labels, 2, 3, temperature)[0] == want
  # With k=1 only the nearest votes, whatever the temperature.
  assert knn.knn_predict(q, bank, labels, 2, 1, 10.0)[0] == 0


def test_small_temperature_does_not_overflow():
  # exp(sim / 0.001) overflows float32; the vote must still be the nearest one's.
  rng = np.random.default_rng(3)
  bank = _normalized(rng.normal(size=(40, 5))).astype(np.float32)
  labels = rng.integers(0, 3, 40)
  queries = _normalized(rng.normal(size=(9, 5))).astype(np.float32)
  nearest = labels[np.argmax(queries @ bank.T, axis=1)]
  np.testing.assert_array_equal(
      knn.knn_predict(queries, bank, labels, 3, 10, 0.001), nearest)


def test_empty_bank_is_refused():
  with pytest.raises(ValueError, match="bank is empty"):
    knn.knn_predict(np.ones((2, 3)), np.zeros((0, 3)), np.zeros(0), 2, 5, 0.1)


def test_bank_of_a_stream_takes_the_first_of_each_shard():
  # A streamed training split read by 2 pipelines (shards of 5 and 4 examples):
  # a bank of 7 deals 4 + 3 examples; of 20, every example; of 0, every example.
  shards = {0: [0, 2, 4, 6, 8], 1: [1, 3, 5, 7]}

  class Streamed:
    num_train = 9

    def train_records(self, num_pipelines):
      assert num_pipelines == 2
      def read(ctx, seed):
        assert seed is None  # files in their order
        return tf.data.Dataset.from_tensor_slices(
            {"label": tf.constant(shards[ctx.input_pipeline_id], tf.int32)})
      return StreamRecords(read=read, pipeline_sizes=(5, 4))

  for bank_size, sizes in ((7, (4, 3)), (20, (5, 4)), (0, (5, 4))):
    records = knn.bank_source(Streamed(), bank_size).eval_records(2)
    assert records.pipeline_sizes == sizes
    for p in (0, 1):
      ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=p)
      got = [int(e["label"]) for e in records.read(ctx, None)]
      assert got == shards[p][:sizes[p]]


def _reference_embeddings(model, images):
  h = model.encode(tf.constant(images.astype(np.float32) / 255.0), training=False)
  return _normalized(h.numpy().astype(np.float64))


@pytest.mark.parametrize("replicas", [1, 2])
def test_embeddings_of_the_padded_splits_on_replicas_equal_one_device(tmp_path,
                                                                      replicas):
  # 21 training and 13 test images with a global batch of 8: both splits end in a
  # padded batch; on 2 replicas each replica embeds 4 per step and the gathered
  # result must be every real image once, in the split's order, as on one device.
  strategy = (tf.distribute.get_strategy() if replicas == 1
              else testing.mirrored_cpu_strategy(replicas))
  source = testing.synthetic_source(21, 12, 1, 4, num_test=13)
  cfg = common.tiny_config(str(tmp_path), knn_every=1, knn_k=5)
  trainer = train.Trainer(cfg, strategy, source, str(tmp_path), verbose=False)
  reader = knn.EmbeddingReader(trainer.model, strategy, 8, trainer.eval_view,
                               trainer.input_options)
  train_images, train_labels = source.train_images, source.train_labels
  for bank_size, n in ((0, 21), (10, 10), (100, 21)):
    emb, labels, corrupt = reader.read(knn.bank_source(source, bank_size))
    assert emb.shape == (n, 32) and corrupt == 0
    np.testing.assert_allclose(emb, _reference_embeddings(trainer.model,
                                                          train_images[:n]), atol=1e-5)
    np.testing.assert_array_equal(labels, train_labels[:n])
  test, test_labels, _ = reader.read(source)
  np.testing.assert_allclose(test, _reference_embeddings(trainer.model,
                                                         source.test_images), atol=1e-5)
  np.testing.assert_array_equal(test_labels, source.test_labels)
  # The monitor's number is the NumPy vote on those embeddings.
  result = trainer.knn.measure(7)
  bank = _reference_embeddings(trainer.model, train_images)
  want = _numpy_knn(_reference_embeddings(trainer.model, source.test_images), bank,
                    train_labels, 4, 5, 0.1)
  assert result["top_1"] == pytest.approx(np.mean(want == source.test_labels))
  assert (result["k"], result["bank_size"], result["num_examples"]) == (5, 21, 13)
  trainer.close()


def test_training_records_the_monitor_at_its_steps(tmp_path, capsys):
  # Stage 1 has 5 steps, --knn_every=2 and loops of 4: the loops end at the kNN
  # steps 2 and 4 and at the stage's end, 5; stage 2 (cross-entropy) has none.
  # A results.json already there (a resume) keeps its other keys and its entry at
  # step 2 is replaced.
  model_dir = str(tmp_path)
  with open(os.path.join(model_dir, "results.json"), "w") as f:
    json.dump({"other": [1], "knn": [{"global_step": 2, "top_1": -1.0}]}, f)
  cfg = common.tiny_config(model_dir, steps_per_loop=4, summary_images=0,
                           knn_every=2, knn_k=7, knn_bank_size=20)
  # Stage 2 leaves the encoder as stage 1 left it (no BN update), so the kNN of
  # the trained model is the one measured at the end of stage 1.
  cfg = dataclasses.replace(cfg, stage_2=dataclasses.replace(
      cfg.stage_2, update_encoder_batch_norm=False))
  source = common.source()
  trainer = train.Trainer(cfg, tf.distribute.get_strategy(), source, model_dir)
  trainer.train()
  trainer.close()
  with open(os.path.join(model_dir, "results.json")) as f:
    written = json.load(f)
  assert written["other"] == [1]
  entries = written["knn"]
  assert [e["global_step"] for e in entries] == [2, 4, 5]
  for e in entries:
    assert set(e) == {"global_step", "top_1", "k", "bank_size", "num_examples"}
    assert (e["k"], e["bank_size"], e["num_examples"]) == (7, 20, 16)
    assert 0 <= e["top_1"] <= 1
  bank = _reference_embeddings(trainer.model, source.train_images[:20])
  want = _numpy_knn(_reference_embeddings(trainer.model, source.test_images), bank,
                    source.train_labels[:20], 4, 7, 0.1)
  assert entries[-1]["top_1"] == pytest.approx(np.mean(want == source.test_labels))
  # TensorBoard: knn/top_1 in the eval writer at the same steps and values.
  acc = common.events(os.path.join(model_dir, "eval"))
  events = acc.Tensors("knn/top_1")
  assert [e.step for e in events] == [2, 4, 5]
  np.testing.assert_allclose([tf.make_ndarray(e.tensor_proto) for e in events],
                             [e["top_1"] for e in entries], rtol=1e-6)
  # The progress lines: one per loop; the kNN steps' lines carry the number.
  lines = [l for l in capsys.readouterr().out.splitlines() if " | step " in l]
  assert [l.split(" | step ")[1].split(" ")[0] for l in lines] == ["2/5", "4/5", "5/5",
                                                                    "1/1"]
  for line, e in zip(lines, entries):
    assert line.endswith(f" | knn top-1 {100 * e['top_1']:.2f}%"), line
  assert "knn" not in lines[-1]


def test_the_monitor_runs_in_a_cross_entropy_stage_that_trains_the_encoder(tmp_path):
  """The cross-entropy baseline gets the same kNN measure as the contrastive methods:
  a one-stage cross-entropy run through the encoder records it at its steps."""
  model_dir = str(tmp_path)
  cfg = common.tiny_config(model_dir, steps_per_loop=4, summary_images=0, knn_every=2,
                           knn_k=7, knn_bank_size=20)
  cfg = dataclasses.replace(
      cfg, model=dataclasses.replace(cfg.model,
                                     stop_gradient_before_classification_head=False),
      stage_1=dataclasses.replace(cfg.stage_1, contrastive_loss_weight=0.0,
                                  cross_entropy_loss_weight=1.0),
      stage_2=dataclasses.replace(cfg.stage_2, epochs=0.0, steps=0))
  trainer = train.Trainer(cfg, tf.distribute.get_strategy(), common.source(), model_dir)
  assert trainer.stages[0].encoder_trained and trainer.stages[1].num_steps == 0
  trainer.train()
  trainer.close()
  with open(os.path.join(model_dir, "results.json")) as f:
    entries = json.load(f)["knn"]
  assert [e["global_step"] for e in entries] == [2, 4, 5]
  assert all(0.0 <= e["top_1"] <= 1.0 for e in entries)
