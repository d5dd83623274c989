"""The batch benchmark's floor: the work no receive path can skip, measured for real."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.receive_batches import BATCH, ceiling_ratio, floor_cost, signed_batch
from ingest.spool.sqlite import SqliteSpool


def test_floor_cost_verifies_and_spools_the_real_batch(tmp_path: Path) -> None:
    request, _public_key, provider = signed_batch()
    assert request.body.count(b'"sg_event_id"') == BATCH

    floor = floor_cost(request, provider, tmp_path, repeat=3)

    assert floor["authenticate_s"] > 0
    assert floor["append_s"] > 0
    records = SqliteSpool(tmp_path / "spool.sqlite", max_bytes=1 << 40).claim(64 << 20, 10).records
    assert [record.body for record in records] == [request.body] * 3


def test_floor_cost_refuses_a_batch_whose_signature_does_not_verify(tmp_path: Path) -> None:
    from ingest.errors import AuthenticationFailed
    from mailpulse.simulate.esp import OutboundRequest

    request, _public_key, provider = signed_batch()
    tampered = OutboundRequest(headers=request.headers, body=request.body.replace(b"@", b"#", 1))

    with pytest.raises(AuthenticationFailed):
        floor_cost(tampered, provider, tmp_path, repeat=1)


@pytest.mark.parametrize(
    ("noop_rps", "extra_s", "cpus", "expected"),
    [
        (1000.0, 0.0, 2, 100.0),  # nothing to add: the full path could match the no-op
        (1000.0, 0.002, 2, 50.0),  # as much again as the no-op's 2 ms per request
        (6000.0, 0.001, 2, 25.0),  # 1 ms on top of 1/3 ms
    ],
)
def test_ceiling_ratio(noop_rps: float, extra_s: float, cpus: int, expected: float) -> None:
    assert ceiling_ratio(noop_rps, extra_s, cpus) == pytest.approx(expected)
