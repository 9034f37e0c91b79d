import threading
import time

import pytest

from strom.runtime.channels import ChannelCancelled, InputGate


def test_put_blocks_when_channel_is_full_until_consumed() -> None:
    gate = InputGate(1, capacity=2)
    gate.put(0, "a")
    gate.put(0, "b")
    done = threading.Event()

    def producer() -> None:
        gate.put(0, "c")
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    assert not done.wait(0.2), "put must block while the channel is full (backpressure)"
    assert gate.get(1) == (0, "a")
    assert done.wait(2)
    t.join()
    assert [gate.get(1), gate.get(1)] == [(0, "b"), (0, "c")]


def test_get_times_out_with_none() -> None:
    gate = InputGate(2)
    start = time.monotonic()
    assert gate.get(0.05) is None
    assert time.monotonic() - start >= 0.04


def test_blocked_channel_is_skipped_until_unblocked() -> None:
    gate = InputGate(2)
    gate.put(0, "x0")
    gate.put(1, "y0")
    gate.block(0)
    assert gate.get(0.1) == (1, "y0")
    assert gate.get(0.05) is None
    gate.unblock_all()
    assert gate.get(0.1) == (0, "x0")


def test_round_robin_between_channels() -> None:
    gate = InputGate(2, capacity=10)
    for i in range(3):
        gate.put(0, f"a{i}")
        gate.put(1, f"b{i}")
    got = [gate.get(0.1) for _ in range(6)]
    assert [ch for ch, _ in got if True] == [0, 1, 0, 1, 0, 1]


def test_cancel_wakes_blocked_producer_and_consumer() -> None:
    gate = InputGate(1, capacity=1)
    gate.put(0, "full")
    errors: list[BaseException] = []

    def producer() -> None:
        try:
            gate.put(0, "more")
        except ChannelCancelled as e:
            errors.append(e)

    t = threading.Thread(target=producer)
    t.start()
    time.sleep(0.05)
    gate.cancel()
    t.join(2)
    assert not t.is_alive()
    assert len(errors) == 1
    with pytest.raises(ChannelCancelled):
        gate.get(1)
