"""Every OSC input we open survives anything: bench/fuzz.py's harness, short.

The same seeded datagrams as `python bench/fuzz.py` (random bytes, truncated
messages and bundles, wrong type tags, wrong argument counts and types for every
address, NaN / inf / huge floats, huge and non-UTF-8 names, 64 KB datagrams,
bundles nested thousands deep, element sizes that lie), interleaved with valid
frames whose content is known, through each layer: VmcStream.feed, the Receiver's
UDP socket (with an allow-list), the apply step in Blender, and the control port.
"""

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_fuzz", ROOT / "bench" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = fuzz  # its dataclasses look their module up while it loads
_spec.loader.exec_module(fuzz)

DATAGRAMS = 6000
SEED = 20240607
STREAM_CATEGORIES = ("malformed", "too_deep", "bad_messages", "bad_names", "overflow")


def assert_survived(figures, categories, lossless=True):
    f = figures
    assert f.escaped == 0, "exceptions escaped"
    assert f.caught == 0, "exceptions were raised inside (handlers, apply step, server)"
    assert f.log_records == 0, f.log_samples
    assert f.non_finite == 0, "a NaN or inf came out or was applied"
    assert f.degenerate == 0, "a zero or non-unit rotation came out or was applied"
    assert f.valid_wrong == 0, "a valid frame came out with other values"
    assert (f.last_ok, f.last_n) == (fuzz.N_LAST, fuzz.N_LAST), "the last valid frames did not all apply"
    assert all(f.kinds[kind] > 0 for kind in fuzz.FUZZ_KINDS), f.kinds
    for category in categories:
        assert f.drops[category] > 0, f"nothing was dropped as {category}: {f.drops}"
    if lossless:
        assert f.valid_lost == 0
        assert f.valid_ok == f.valid_sent + fuzz.N_LAST
    # A leak guard, not a measurement: the bounded state is a few MB.
    assert f.rss_after - f.rss_before < 200 * 1024 * 1024


def test_the_generator_is_reproducible():
    a, b = fuzz.Fuzzer(SEED), fuzz.Fuzzer(SEED)
    for _ in range(300):
        x, y = a.next(), b.next()
        assert (x.kind, x.datagrams) == (y.kind, y.datagrams)
    assert all(len(d) <= fuzz.MAX_UDP for _ in range(300) for d in a.next().datagrams)


def test_vmc_stream_feed_survives_fuzz():
    assert_survived(fuzz.run_feed(DATAGRAMS, SEED), STREAM_CATEGORIES)


def test_the_receiver_socket_survives_fuzz_and_drops_senders_not_allowed():
    f = fuzz.run_socket(DATAGRAMS, SEED)
    # Loopback UDP may lose a datagram under load: lost frames are counted, and the
    # last frames are sent after a pause with the receiver drained.
    assert_survived(f, STREAM_CATEGORIES, lossless=False)
    assert f.valid_ok + f.valid_lost == f.valid_sent + fuzz.N_LAST
    if f.extra.get("sent_not_allowed") is not None:
        assert f.extra["sent_not_allowed"] > 0
        assert f.drops["not_allowed"] + f.drops["lost_udp"] >= f.extra["sent_not_allowed"]
        assert f.drops["not_allowed"] <= f.extra["sent_not_allowed"]


def test_the_blender_apply_step_survives_fuzz(blender_addon, blender_scene):
    session = importlib.import_module(blender_addon.__name__ + ".session")
    try:
        f = fuzz.run_blender(DATAGRAMS, SEED, session, blender_scene)
    finally:
        session.stop(blender_scene)
        session.STATE.last_take = []
    assert_survived(f, STREAM_CATEGORIES)
    assert f.extra["take_frames"] > 0 and f.extra["take_landmark_frames"] > 0
    assert not any("gone" in line for line in f.extra["take_lines"]), f.extra["take_lines"]


@pytest.mark.parametrize("through_socket", [False, True], ids=["dispatcher", "socket"])
def test_the_control_port_survives_fuzz(through_socket):
    f = fuzz.run_control(DATAGRAMS, SEED, through_socket=through_socket)
    assert_survived(f, ("malformed", "bad_args", "too_deep"), lossless=not through_socket)
