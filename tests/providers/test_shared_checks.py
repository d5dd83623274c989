"""The checks every provider shares: signed timestamps, enhanced status codes, addresses."""

from __future__ import annotations

import pytest

from ingest.errors import AuthenticationFailed, MappingError
from ingest.providers.events import enhanced_status, normalize_recipient
from ingest.providers.freshness import require_fresh, unix_seconds


def code(call: object) -> str:
    with pytest.raises(AuthenticationFailed) as caught:
        call()  # type: ignore[operator]
    return caught.value.code


def test_unix_seconds_are_plain_digits_and_milliseconds_only_where_allowed() -> None:
    assert unix_seconds("1790000000", field="t") == 1_790_000_000
    assert unix_seconds("1790000000123", field="t", allow_millis=True) == 1_790_000_000
    for bad in ("", "-1", "1e9", "１２", "1790000000123"):
        assert code(lambda bad=bad: unix_seconds(bad, field="t")) == "bad_timestamp"


def test_freshness_is_a_window_around_our_clock() -> None:
    require_fresh(1000, 1300, field="t", back=300)
    require_fresh(1300, 1000, field="t", back=300)
    assert code(lambda: require_fresh(999, 1300, field="t", back=300)) == "stale_timestamp"
    assert code(lambda: require_fresh(1301, 1000, field="t", back=300)) == "stale_timestamp"
    require_fresh(0, 86_400, field="t", back=86_400, ahead=300)
    assert code(lambda: require_fresh(1301, 1000, field="t", back=9e9, ahead=300)) == (
        "stale_timestamp"
    )


def test_enhanced_status_skips_addresses_and_versions() -> None:
    assert enhanced_status(None, 42, "relay 10.5.1.1 said 550 5.1.1 no such user") == "5.1.1"
    assert enhanced_status("version 2.0.0.1", "452 4.2.2 mailbox full") == "4.2.2"
    assert enhanced_status("nothing here") is None


def test_a_display_name_is_dropped_from_an_address() -> None:
    assert normalize_recipient('"Doe, Ann" <Ann@Example.org>') == "ann@example.org"
    assert normalize_recipient(" Bo@Example.org ") == "bo@example.org"
    with pytest.raises(MappingError):
        normalize_recipient("Ann <>")
