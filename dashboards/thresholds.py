"""The limits mailbox providers and ESPs enforce, and who is over them.

Amazon SES puts an account under review at a 5 % bounce rate or a 0.1 % complaint rate
(and may pause sending at 10 % and 0.5 %); Gmail and Yahoo require bulk senders to keep the
spam (complaint) rate under 0.3 %. The dashboard draws these as lines and lists what crosses
them.
"""

from __future__ import annotations

import polars as pl

#: Bounce-rate limits, by who enforces them.
BOUNCE_LIMITS = {"SES review (5 %)": 0.05}
#: Complaint-rate limits, by who enforces them.
COMPLAINT_LIMITS = {"SES review (0.1 %)": 0.001, "Gmail/Yahoo bulk limit (0.3 %)": 0.003}
SES_BOUNCE_REVIEW = BOUNCE_LIMITS["SES review (5 %)"]
SES_COMPLAINT_REVIEW = COMPLAINT_LIMITS["SES review (0.1 %)"]

_OFFENDER_SCHEMA = {
    "group": pl.String,
    "name": pl.String,
    "sent": pl.Int64,
    "bounce_rate": pl.Float64,
    "complaint_rate": pl.Float64,
    "over": pl.String,
}


def offenders(frames: dict[str, pl.DataFrame], limit: int = 10) -> pl.DataFrame:
    """The worst rows of several metric tables (campaign, provider, ...), over a limit first.

    ``frames`` maps a dimension to its registry table (a column of that name, ``sent``,
    ``bounce_rate``, ``complaint_rate``). Rows are ranked by how far they are over the
    tightest limit they cross, relative to it, so 0.2 % complaints (twice SES's 0.1 %) ranks
    above a 6 % bounce rate (1.2 times SES's 5 %).
    """
    parts = [
        frame.drop_nulls(dimension).select(
            pl.lit(dimension.replace("_", " ")).alias("group"),
            pl.col(dimension).cast(pl.String).alias("name"),
            pl.col("sent").cast(pl.Int64),
            pl.col("bounce_rate").cast(pl.Float64),
            pl.col("complaint_rate").cast(pl.Float64),
        )
        for dimension, frame in frames.items()
    ]
    table = pl.concat(parts) if parts else pl.DataFrame(schema=_OFFENDER_SCHEMA)
    severity = pl.max_horizontal(
        pl.col("bounce_rate").fill_null(0.0) / SES_BOUNCE_REVIEW,
        pl.col("complaint_rate").fill_null(0.0) / SES_COMPLAINT_REVIEW,
    )
    crossed = [
        pl.when(pl.col("bounce_rate") >= value).then(pl.lit(label))
        for label, value in BOUNCE_LIMITS.items()
    ] + [
        pl.when(pl.col("complaint_rate") >= value).then(pl.lit(label))
        for label, value in COMPLAINT_LIMITS.items()
    ]
    over = pl.concat_str(crossed, separator=", ", ignore_nulls=True)
    return (
        table.with_columns(over.alias("over"), severity.alias("_severity"))
        .sort(["_severity", "sent"], descending=True)
        .drop("_severity")
        .head(limit)
        .select(list(_OFFENDER_SCHEMA))
    )
