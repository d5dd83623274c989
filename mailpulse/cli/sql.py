"""``mailpulse sql``: the metric registry as views in another SQL engine's dialect."""

from __future__ import annotations

import click

from analytics.engines import DIALECTS, location_problem
from mailpulse.cli import cli
from mailpulse.cli.common import config_option, load


@cli.command("sql")
@config_option
@click.option(
    "--dialect",
    type=click.Choice(list(DIALECTS)),
    required=True,
    help="The SQL engine to write for.",
)
@click.option(
    "--lake",
    "location",
    metavar="URL_OR_PATH",
    help="Where the engine reads the lake (the folder holding events/): a path, "
    "s3://bucket/prefix, gs://bucket/prefix, or @stage for Snowflake "
    "[default: the configured lake].",
)
def sql_command(config_path: str | None, dialect: str, location: str | None) -> None:
    """Print the events, messages and metrics views in DIALECT's SQL, translated by sqlglot
    from the SQL and the metric registry reports use (docs/spark.md).

    One metrics view per `report --by` dimension (metrics_by_campaign, metrics_by_date, ...)
    and metrics_total, every registry metric a column named as in `report --format json`.

    \b
    Example:
        mailpulse sql --dialect spark --lake s3a://mail-lake/mailpulse/lake > views.sql
        spark-sql -i views.sql
        mailpulse sql --dialect trino --lake s3://mail-lake/mailpulse/lake
    """
    from analytics.dialects import script

    if location is None:
        config = load(config_path, announce=False)
        location = config.lake_store.location
    problem = location_problem(dialect, location)
    if problem:
        raise click.BadParameter(problem, param_hint="--lake")
    click.echo(script(dialect, location), nl=False)
