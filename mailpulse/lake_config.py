"""The ``[lake]`` table: how long ids are remembered, flush batch size, and where the lake is.

``url`` is a local directory (relative paths are taken from the config file's folder) or an
object-store URL (``s3://bucket/prefix``). For S3 the credentials come from the AWS chain
(environment, profile, instance role) unless ``access_key_id`` and ``secret_access_key`` are
given, as every secret is: directly, ``_env`` or ``_file``; ``endpoint_url`` points at an
S3-compatible store (MinIO, Ceph, R2...).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mailpulse.credentials import Secret, read_credential
from mailpulse.storage import OBJECT_SCHEMES

#: Credentials of ``[lake]``, each given directly, as ``<key>_env`` or as ``<key>_file``.
CREDENTIAL_KEYS = ("access_key_id", "secret_access_key", "session_token")


@dataclass(frozen=True)
class LakeConfig:
    """The ``[lake]`` table."""

    dedup_window_days: int = 45  # event ids remembered for at least this long
    flush_batch_bytes: int = 32 * 1024 * 1024  # spool bytes per flush batch: bounds memory
    # Where the lake lives: empty for <data_dir>/lake, a local directory (every receiver
    # mounts it when several share one spool), or an object-store URL such as s3://bucket/lake.
    url: str = ""
    endpoint_url: str = ""  # an S3-compatible store's address, e.g. http://127.0.0.1:9000
    region: str = ""  # the bucket's region; empty: the AWS chain's (or us-east-1 with endpoint)
    access_key_id: Secret | None = field(default=None, repr=False)
    secret_access_key: Secret | None = field(default=None, repr=False)
    session_token: Secret | None = field(default=None, repr=False)

    @property
    def is_remote(self) -> bool:
        """True when the lake is on object storage."""
        return bool(urllib.parse.urlsplit(self.url).scheme)


def credential_names() -> set[str]:
    """Every key a credential of ``[lake]`` may be written as."""
    return {f"{key}{suffix}" for key in CREDENTIAL_KEYS for suffix in ("", "_env", "_file")}


def check_lake(lake: LakeConfig, problems: list[str]) -> None:
    """The plain settings' own checks (the location is checked by :func:`finish_lake`)."""
    if lake.dedup_window_days < 30:
        problems.append("lake.dedup_window_days must be at least 30 (ESPs retry for days)")
    if lake.flush_batch_bytes < 4096:
        problems.append("lake.flush_batch_bytes must be at least 4096")


def finish_lake(
    lake: LakeConfig,
    table: Mapping[str, Any],
    base_dir: Path | None,
    env: Mapping[str, str],
    problems: list[str],
    holders: tuple[Path | None, list[Path]],
) -> LakeConfig:
    """``url`` made absolute (a local directory) or checked (an object store), and the
    credentials of ``table`` read."""
    secrets: dict[str, Secret | None] = {}
    for key in CREDENTIAL_KEYS:
        found = read_credential(key, table, base_dir, env, "lake.", problems, holders)
        secrets[key] = found[0] if found else None
    lake = replace(
        lake,
        access_key_id=secrets["access_key_id"],
        secret_access_key=secrets["secret_access_key"],
        session_token=secrets["session_token"],
    )
    scheme = urllib.parse.urlsplit(lake.url).scheme
    explicit = [key for key in CREDENTIAL_KEYS if secrets[key] is not None]
    if explicit and scheme != "s3":
        problems.append(f"lake.{explicit[0]} is only for an s3:// url")
    if (secrets["access_key_id"] is None) != (secrets["secret_access_key"] is None):
        problems.append("lake: give access_key_id and secret_access_key together, or neither")
    if (lake.endpoint_url or lake.region) and scheme != "s3":
        problems.append("lake.endpoint_url and lake.region are only for an s3:// url")
    if lake.endpoint_url:
        parts = urllib.parse.urlsplit(lake.endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            problems.append("lake.endpoint_url must be an http:// or https:// URL with a host")
    if not lake.url or scheme:
        if scheme and scheme not in OBJECT_SCHEMES:
            problems.append(
                f"lake.url: {scheme}:// is not supported; give a local directory or an "
                "object-store URL (s3://bucket/prefix, gs://, abfs://)"
            )
        elif scheme and not lake.url.split("://", 1)[1].strip("/"):
            problems.append(f"lake.url: {lake.url!r} names no bucket")
        return lake
    path = Path(lake.url).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return replace(lake, url=str(path))
