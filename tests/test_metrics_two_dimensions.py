"""Registry metrics grouped by two dimensions: a rate over time per source, provider or mailbox."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from analytics import open_lake
from analytics.errors import BadQuery
from tests.lakes import T0, row, write_lake

D = timedelta(days=1)


def _lake(tmp_path: Path) -> Path:
    rows = []
    for n, (source, day, outcome) in enumerate(
        [
            ("alpha", 0, "delivered"),
            ("alpha", 0, "bounced"),
            ("alpha", 1, "delivered"),
            ("beta", 0, "delivered"),
            ("beta", 1, "bounced"),
            ("beta", 1, "complained"),
        ]
    ):
        at, message = T0 + day * D, f"m{n}"
        recipient = f"r{n}@gmail.com"
        rows.append(row(f"s{n}", "sent", recipient, at, message_id=message, source=source))
        kind = "delivered" if outcome == "complained" else outcome
        extra = {"bounce_class": "hard"} if kind == "bounced" else {}
        rows.append(row(f"o{n}", kind, recipient, at, message_id=message, source=source, **extra))
        if outcome == "complained":
            rows.append(
                row(f"c{n}", "complained", recipient, at, message_id=message, source=source)
            )
    write_lake(tmp_path, rows)
    return tmp_path


def test_date_and_source_rows_are_each_sources_daily_rows(tmp_path: Path) -> None:
    """Each (date, source) row holds the numbers the source filter gives for that date."""
    with open_lake(_lake(tmp_path)) as lake:
        both = lake.metrics(("date", "source"), metrics=["sent", "bounce_rate", "complaint_rate"])
        assert both.columns[:2] == ["date", "source"]
        assert both.height == 4
        for source in ("alpha", "beta"):
            alone = lake.metrics(
                "date", metrics=["sent", "bounce_rate", "complaint_rate"], source=source
            )
            mine = both.filter(both["source"] == source).drop("source")
            assert mine.equals(alone), source
        (day_two_beta,) = both.filter(
            (both["source"] == "beta") & (both["date"] == (T0 + D).date())
        ).to_dicts()
        assert day_two_beta["bounce_rate"] == 0.5
        assert day_two_beta["complaint_rate"] == 1.0


def test_an_unknown_dimension_among_several_is_refused(tmp_path: Path) -> None:
    """Every name must be a dimension."""
    with open_lake(_lake(tmp_path)) as lake, pytest.raises(BadQuery, match="cannot group by"):
        lake.metrics(("date", "nonsense"))
