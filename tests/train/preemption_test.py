"""The stop request's choice by strategy and the single-process stop at a chunk
boundary (the signal itself: resume_test.py; several workers:
preemption_multiworker_test.py)."""

import os
import signal

import tensorflow as tf

from supcon_tf.train import preemption


def test_single_process_strategies_use_the_signal_and_save_only_when_needed():
  saves = []
  stop = preemption.stop_request(tf.distribute.get_strategy(), lambda: saves.append(1),
                                 "/unused", total_steps=10)
  assert type(stop) is preemption.StopSignal and stop.reason == "SIGTERM"
  previous = signal.getsignal(signal.SIGTERM)
  with stop:
    assert not stop.stop_at(3, saved=False) and not saves
    os.kill(os.getpid(), signal.SIGTERM)  # handled: a request, not a stop
    assert stop.requested
    assert stop.stop_at(4, saved=True) and not saves  # the loop saved this step
    assert stop.stop_at(5, saved=False) and saves == [1]
  assert signal.getsignal(signal.SIGTERM) is previous
