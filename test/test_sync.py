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


# -- cameras whose stamps cannot be matched (simulated clock, no ROS) ---------------------------------

def simulate(rate: float, skew: float, seconds: float = 8.0, cameras=("a", "b", "c"), skewed="c",
             slop=0.05, stale=0.5, fix_at: float | None = None, seed: int = 0):
    """Cameras sending at `rate` Hz (stamped at capture, delivered 5-15 ms later), `skewed`'s stamps
    off by `skew` seconds (until `fix_at`). Returns the sync and the batches in order."""
    rng = np.random.default_rng(seed)
    clock = FakeClock(0.0)
    sync = FrameSync(list(cameras), slop, stale, clock=clock)
    events = []
    for k in range(int(seconds * rate)):
        t = 1.0 + k / rate
        for cam in cameras:
            off = skew if cam == skewed and (fix_at is None or t < fix_at) else 0.0
            events.append((t + rng.uniform(0.005, 0.015), cam, t + off))
    events.sort()
    polls = np.arange(0.0, 1.0 + seconds, 0.05)
    batches, i = [], 0
    for p in polls:  # the fusion node's poll timer between arrivals
        while i < len(events) and events[i][0] <= p:
            arrival, cam, stamp = events[i]
            clock.t = arrival
            f = frame(cam, stamp)
            f.received = int(round(arrival * NS_PER_S))  # receiver's clock: true time
            b = sync.add(f)
            if b is not None:
                batches.append(b)
            i += 1
        clock.t = p
        b = sync.poll()
        if b is not None:
            batches.append(b)
    return sync, batches


@pytest.mark.parametrize("rate", [2.0, 5.0, 10.0, 30.0])
@pytest.mark.parametrize("skew", [-10.0, -1.0, -0.1, 0.1, 1.0, 10.0])
def test_camera_with_offset_stamps_is_left_out_and_costs_the_others_nothing(rate, skew):
    seconds = 8.0
    sent = int(seconds * rate)
    sync, batches = simulate(rate, skew, seconds)
    st = sync.stats()
    assert st["c"].is_skewed and st["c"].skewed == 1 and not st["c"].is_stale
    assert st["c"].offset == pytest.approx(skew, abs=0.02)  # the offset seen, signed
    assert not st["a"].is_skewed and not st["b"].is_skewed
    # the others: every frame after the first stale_timeout (plus one period) is batched, together.
    # Stamps exactly one period off do match the others' previous frames now and then, which
    # postpones the verdict: there the warm-up is longer.
    one_period = abs(abs(skew) * rate - 1.0) < 1e-9
    warmup = int(np.ceil(0.5 * rate)) + 2 + (sent // 4 if one_period else 0)
    for cam in ("a", "b"):
        assert st[cam].batched >= sent - warmup, (cam, st[cam])
    assert all(b.cameras == ["a", "b"] and b.skewed == ["c"] for b in batches[-(sent - warmup):])
    assert all(abs(b.frames[0].stamp - b.frames[1].stamp) <= sync.slop_ns for b in batches)
    # against the same drive with c in sync: a and b lose at most the warm-up
    _, synced = simulate(rate, 0.0, seconds)
    assert len(synced) >= sent - 1
    assert len(batches) >= len(synced) - warmup


@pytest.mark.parametrize("rate", [5.0, 30.0])
def test_skewed_camera_rejoins_when_its_stamps_match_again(rate):
    sync, batches = simulate(rate, -1.0, seconds=8.0, fix_at=5.0)
    st = sync.stats()
    assert not st["c"].is_skewed and st["c"].skewed == 1
    late = [b for b in batches if b.frames[0].stamp >= 6 * NS_PER_S]
    assert late and all(b.cameras == ["a", "b", "c"] and b.skewed == [] for b in late)


def test_two_cameras_the_one_agreeing_with_the_receiver_clock_keeps_batching():
    for skewed in ("a", "b"):
        sync, batches = simulate(10.0, 10.0, cameras=("a", "b"), skewed=skewed)
        good = "b" if skewed == "a" else "a"
        assert sync.skewed_cameras() == [skewed]
        assert batches[-1].cameras == [good]


def test_single_camera_is_never_skewed():
    sync, batches = simulate(10.0, 5.0, cameras=("c",), skewed="c")
    assert sync.skewed_cameras() == [] and len(batches) == 80


def test_skewed_cameras_batch_alone_when_the_others_go_silent():
    sync, clock = make(["a", "b"], stale=0.5)
    for k in range(10):  # b's stamps are 2 s behind a's
        clock.advance(0.1)
        sync.add(frame("a", 10 + k * 0.1))
        sync.add(frame("b", 8 + k * 0.1))
    assert sync.skewed_cameras() == ["b"]
    for k in range(15):  # a stops
        clock.advance(0.1)
        b = sync.add(frame("b", 9 + k * 0.1))
    assert b is not None and b.cameras == ["b"]
    st = sync.stats()
    assert st["a"].is_stale and not st["b"].is_skewed
    for cam in ("a", "b"):  # every frame accounted for
        assert st[cam].received == st[cam].batched + st[cam].dropped + st[cam].waiting


def test_delivery_jitter_and_stalls_are_not_skew():
    """Same stamps on every camera, but b's frames arrive up to 45 ms late, and for 2 s all of its
    frames are held up by 150-400 ms (a congested link): b is never left out for good, and the
    batches go on after the stall."""
    rng = np.random.default_rng(3)
    clock = FakeClock(0.0)
    sync = FrameSync(["a", "b", "c"], 0.05, 0.5, clock=clock)
    events = []
    for k in range(100):  # 10 Hz for 10 s
        t = 1.0 + k / 10
        for cam in "abc":
            delay = rng.uniform(0.005, 0.015)
            if cam == "b":
                delay += rng.uniform(0.0, 0.045) + (rng.uniform(0.15, 0.4) if 4.0 <= t < 6.0 else 0.0)
            events.append((t + delay, cam, t))
    events.sort()
    batches = []
    for arrival, cam, stamp in events:
        clock.t = arrival
        b = sync.add(frame(cam, stamp))
        if b is not None:
            batches.append(b)
    st = sync.stats()
    assert not st["b"].is_skewed and not st["b"].is_stale
    late = [b for b in batches if b.frames[0].stamp >= 7 * NS_PER_S]
    assert len(late) >= 28 and all(b.cameras == ["a", "b", "c"] for b in late)


def test_skewed_camera_that_falls_silent_is_stale():
    sync, clock = make(["a", "b"], stale=0.5)
    for k in range(20):  # b's stamps are 3 s ahead
        clock.advance(0.1)
        sync.add(frame("a", 10 + k * 0.1))
        sync.add(frame("b", 13 + k * 0.1))
    assert sync.skewed_cameras() == ["b"]
    for k in range(10):  # b stops
        clock.advance(0.1)
        sync.add(frame("a", 12 + k * 0.1))
    st = sync.stats()["b"]
    assert st.is_stale and not st.is_skewed


@pytest.mark.parametrize("seed", range(12))
def test_cameras_that_stop_go_stale_despite_jitter_and_losses(seed):
    """10 Hz, 10% of frames lost, deliveries 5-300 ms late; two of three cameras stop at t=5 s: they
    go stale (even when their last frames arrived during a wait and were dropped as too old) and the
    third batches alone."""
    rng = np.random.default_rng(seed)
    clock = FakeClock(0.0)
    sync = FrameSync(["f", "l", "r"], 0.05, 1.0, clock=clock)
    events = [(p, None, None) for p in np.arange(0.0, 12.0, 0.05)]  # the poll timer
    for k in range(100):
        t = 1 + k / 10
        for cam in "flr":
            if (cam == "f" or t < 5) and rng.random() >= 0.1:
                events.append((t + rng.uniform(0.005, 0.3), cam, t))
    batches = []
    for arrival, cam, stamp in sorted(events, key=lambda e: e[0]):
        clock.t = arrival
        b = sync.poll() if cam is None else sync.add(frame(cam, stamp))
        if b is not None:
            batches.append(b)
    st = sync.stats()
    assert st["l"].is_stale and st["r"].is_stale and not st["f"].is_stale and not st["f"].is_skewed
    assert sum(1 for b in batches if b.cameras == ["f"] and b.frames[0].stamp >= 8 * NS_PER_S) >= 20
def test_camera_whose_last_frame_was_dropped_goes_stale_when_it_falls_silent():
    """A camera's last frame arrives just after another camera's frame started the wait, is dropped
    as too old to match, and then the camera stops: it goes stale after the timeout (it sent
    nothing since) and the others batch on, instead of waiting for it for ever. (Seen in the node
    test: a camera stopped right after a delayed frame.)"""
    sync, clock = make(stale=0.5)
    clock.t = 10.0
    assert sync.add(frame("a", 10.0)) is None
    assert sync.add(frame("b", 10.0)) is not None  # in step, both batching
    clock.t = 10.1
    assert sync.add(frame("a", 10.1)) is None  # the wait starts here
    clock.t = 10.11
    assert sync.add(frame("b", 10.0)) is None  # a late duplicate-ish frame: too old, dropped; b then stops
    batches = []
    for i in range(2, 20):
        clock.t = 10.0 + i * 0.1
        batch = sync.add(frame("a", 10.0 + i * 0.1))
        if batch is not None:
            batches.append(batch)
    assert sync.stats()["b"].is_stale
    assert batches and all([f.camera for f in b.frames] == ["a"] for b in batches)
