"""Request ids belong to a runtime (its own prefix and counter), not to the process."""

from __future__ import annotations

from gateway.events import RequestIds


def test_each_source_has_its_own_prefix_and_counts_from_one() -> None:
    a, b = RequestIds(), RequestIds()
    first, second = a.take({}), a.take({})
    assert first[:12] == second[:12] and first[12:] == "000000000001" and second[12:] == "000000000002"
    other = b.take({})
    assert other[12:] == "000000000001" and other[:12] != first[:12]


def test_a_clients_printable_id_is_kept_and_bounded() -> None:
    ids = RequestIds()
    assert ids.take({"x-request-id": "abc-1"}) == "abc-1"
    assert ids.take({"x-request-id": "x" * 500}) == "x" * 128
    assert ids.take({"x-request-id": "bad\nid"}) != "bad\nid"
    assert ids.take({"x-request-id": "é"})[12:] == "000000000002"  # not ASCII: ours, the counter moved on
