"""FrameSync (newest frame per camera, approximate time, stale cameras) and LatestSlot, no ROS."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from perception_edge.core.sync import NS_PER_S, Batch, Frame, FrameSync, LatestSlot


class FakeClock:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


PIXELS = np.zeros((4, 6, 3), np.uint8)


def frame(camera: str, stamp_s: float, frame_id: str = "") -> Frame:
    return Frame(PIXELS, "rgb", int(round(stamp_s * NS_PER_S)), frame_id or camera + "_link", camera)


def make(cameras=("a", "b"), slop=0.05, stale=0.5):
    clock = FakeClock()
    return FrameSync(list(cameras), slop, stale, clock=clock), clock


def test_single_camera_batches_every_frame():
    sync, clock = make(["a"])
    for i in range(3):
        clock.advance(0.1)
        batch = sync.add(frame("a", i * 0.1))
        assert isinstance(batch, Batch) and batch.cameras == ["a"]
        assert batch.frames[0].arrival == clock.t
    st = sync.stats()["a"]
    assert (st.received, st.batched, st.dropped, st.stale) == (3, 3, 0, 0)


def test_matching_stamps_form_one_batch_in_camera_order():
    sync, clock = make(["a", "b"])
    assert sync.add(frame("b", 1.00)) is None  # waits for a
    clock.advance(0.01)
    batch = sync.add(frame("a", 1.02))
    assert batch is not None and batch.cameras == ["a", "b"]
    assert [f.stamp for f in batch.frames] == [int(1.02 * NS_PER_S), 1 * NS_PER_S]
    assert batch.stale == []
    assert sync.batches == 1
    # consumed: the next frame of one camera does not form a batch alone
    assert sync.add(frame("a", 1.1)) is None


def test_frame_fields():
    f = Frame(np.zeros((720, 1280, 3), np.uint8), "bgr", 1_700_000_000_123_456_789, "cam", "/cam/image_raw")
    assert f.source_size == (1280, 720) and (f.width, f.height) == (1280, 720)
    assert f.stamp == 1_700_000_000_123_456_789  # exact integer nanoseconds
    assert f.stamp_sec == pytest.approx(1_700_000_000.123456789)


def test_newer_frame_replaces_unused_one_and_counts_as_dropped():
    sync, clock = make(["a", "b"])
    sync.add(frame("a", 1.0))
    sync.add(frame("a", 1.1))
    sync.add(frame("a", 1.2))
    batch = sync.add(frame("b", 1.2))
    assert batch is not None and batch.frames[0].stamp == int(1.2 * NS_PER_S)
    st = sync.stats()
    assert st["a"].received == 3 and st["a"].dropped == 2 and st["a"].batched == 1
    assert st["b"].dropped == 0


def test_out_of_order_older_frame_does_not_replace_newer():
    sync, _ = make(["a", "b"])
    sync.add(frame("a", 2.0))
    sync.add(frame("a", 1.0))  # late delivery of an older frame
    batch = sync.add(frame("b", 2.0))
    assert batch is not None and batch.frames[0].stamp == 2 * NS_PER_S
    assert sync.stats()["a"].dropped == 1


def test_stamps_further_apart_than_slop_drop_the_oldest():
    sync, clock = make(["a", "b"], slop=0.05)
    sync.add(frame("a", 1.0))
    assert sync.add(frame("b", 1.2)) is None  # a's frame is too old for b's
    assert sync.stats()["a"].dropped == 1
    batch = sync.add(frame("a", 1.22))
    assert batch is not None and batch.cameras == ["a", "b"]


def test_slop_boundary_is_inclusive():
    sync, _ = make(["a", "b"], slop=0.05)
    sync.add(frame("a", 1.0))
    assert sync.add(frame("b", 1.05)) is not None


def test_stale_camera_leaves_the_batch_instead_of_stalling():
    sync, clock = make(["a", "b"], stale=0.5)
    # both run
    sync.add(frame("a", 1.0))
    assert sync.add(frame("b", 1.0)) is not None
    # b stops; a's frames wait for b until a frame of a has waited stale_timeout
    clock.advance(0.1)
    assert sync.add(frame("a", 1.1)) is None
    clock.advance(0.3)
    assert sync.add(frame("a", 1.4)) is None  # waiting 0.3 s: b still waited for
    clock.advance(0.3)  # a's frames have waited 0.6 s > 0.5 s
    batch = sync.poll()
    assert batch is not None and batch.cameras == ["a"] and batch.stale == ["b"]
    st = sync.stats()
    assert st["b"].is_stale and st["b"].stale == 1 and not st["a"].is_stale
    assert sync.stale_cameras() == ["b"]
    # from now on a alone forms batches at once
    clock.advance(0.1)
    assert sync.add(frame("a", 1.7)).cameras == ["a"]
    # stale is counted once per silence, not per check
    for i in range(10):  # a keeps running, b stays silent
        clock.advance(0.1)
        assert sync.add(frame("a", 1.8 + i * 0.1)).stale == ["b"]
    assert sync.stats()["b"].stale == 1
    # b comes back and rejoins the batch
    sync.add(frame("b", 2.8))
    batch = sync.add(frame("a", 2.8))
    assert batch is not None and batch.cameras == ["a", "b"] and batch.stale == []
    assert not sync.stats()["b"].is_stale


def test_camera_that_never_sends_goes_stale_after_timeout_from_start():
    sync, clock = make(["a", "b"], stale=0.5)
    assert sync.add(frame("a", 1.0)) is None
    clock.advance(0.6)
    assert sync.silence("b") == pytest.approx(0.6)
    batch = sync.add(frame("a", 1.6))
    assert batch is not None and batch.cameras == ["a"] and batch.stale == ["b"]
    assert sync.stats()["a"].dropped == 1  # the 1.0 frame was replaced while waiting


def test_slow_cameras_batch_together_and_only_silent_ones_go_stale():
    """Cameras slower than 1 / stale_timeout (a lockstep replay, a 1 Hz rig) still batch together."""
    sync, clock = make(["a", "b", "c"], stale=0.5)
    for k in range(3):
        clock.advance(2.0)  # all silent for 2 s between frames
        assert sync.add(frame("a", k)) is None
        clock.advance(0.01)
        assert sync.add(frame("b", k)) is None
        clock.advance(0.01)
        batch = sync.add(frame("c", k))
        assert batch is not None and batch.cameras == ["a", "b", "c"] and batch.stale == []
    # c stops: a and b's frames wait stale_timeout for it once, then batch without it
    clock.advance(2.0)
    sync.add(frame("a", 3))
    assert sync.add(frame("b", 3)) is None
    clock.advance(0.6)
    batch = sync.poll()
    assert batch.cameras == ["a", "b"] and batch.stale == ["c"]
    st = sync.stats()
    assert st["c"].is_stale and not st["a"].is_stale and not st["b"].is_stale
    clock.advance(2.0)
    sync.add(frame("a", 4))
    assert sync.add(frame("b", 4)).cameras == ["a", "b"]  # not held for c any more


def test_all_stale_gives_no_batch_and_unknown_camera_raises():
    sync, clock = make(["a"], stale=0.5)
    clock.advance(1.0)
    assert sync.poll() is None and sync.stale_cameras() == []  # nothing waits: nobody to blame
    with pytest.raises(KeyError):
        sync.add(frame("zzz", 1.0))
    with pytest.raises(ValueError):
        FrameSync([], 0.05, 0.5)
    with pytest.raises(ValueError):
        FrameSync(["a", "a"], 0.05, 0.5)


def test_frame_sync_is_thread_safe():
    sync = FrameSync(["a", "b"], 0.05, 5.0)
    batches = []
    lock = threading.Lock()

    def feed(cam):
        for i in range(500):
            b = sync.add(frame(cam, i * 0.1))
            if b is not None:
                with lock:
                    batches.append(b)

    threads = [threading.Thread(target=feed, args=(c,)) for c in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    st = sync.stats()
    for cam in ("a", "b"):
        assert st[cam].received == 500
        assert st[cam].batched + st[cam].dropped + (1 if sync._pending[cam] is not None else 0) == 500
    for b in batches:
        assert b.cameras == ["a", "b"]
        assert abs(b.frames[0].stamp - b.frames[1].stamp) <= sync.slop_ns


# -- LatestSlot --------------------------------------------------------------------------------------

def test_latest_slot_replaces_unconsumed_item():
    slot = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True  # 1 never taken
    assert slot.dropped == 1 and len(slot) == 1
    assert slot.get(timeout=0) == 2
    assert slot.get(timeout=0.01) is None
    assert slot.taken == 1 and slot.put_count == 2


def test_latest_slot_wakes_waiting_consumer():
    slot = LatestSlot()
    got = []

    def consume():
        got.append(slot.get(timeout=5.0))

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.05)
    slot.put("batch")
    t.join(2.0)
    assert got == ["batch"]


def test_latest_slot_close_releases_waiters_and_ignores_puts():
    slot = LatestSlot()
    results = []
    t = threading.Thread(target=lambda: results.append(slot.get()))
    t.start()
    time.sleep(0.05)
    slot.close()
    t.join(2.0)
    assert not t.is_alive() and results == [None]
    assert slot.closed
    assert slot.put(3) is False and slot.get(timeout=0) is None


def test_latest_slot_never_queues_under_a_slow_consumer():
    slot = LatestSlot()
    consumed = []
    stop = threading.Event()

    def consumer():
        while not stop.is_set():
            item = slot.get(timeout=0.05)
            if item is not None:
                consumed.append(item)
                time.sleep(0.01)  # slow worker

    t = threading.Thread(target=consumer)
    t.start()
    for i in range(200):
        slot.put(i)
        time.sleep(0.0005)
    time.sleep(0.1)
    stop.set()
    t.join(2.0)
    assert consumed == sorted(consumed)  # always the newest, never an older one after a newer one
    assert slot.dropped + len(consumed) == 200
    assert slot.dropped > 0 and consumed[-1] == 199
