"""Credentials: a value that never shows itself, and where a source's secrets come from.

A credential key of a source may be given inline (``secret = "..."``), as ``<key>_env`` (the
name of an environment variable) or as ``<key>_file`` (a file whose contents are the secret),
and any of them may be a list: every listed secret verifies, which is how secrets rotate.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class Secret:
    """A credential value that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that verifies with it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


def redacted_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for log lines and error messages."""
    try:
        parts = urllib.parse.urlsplit(url)
        password, host, port = parts.password, parts.hostname or "", parts.port
    except ValueError:
        return "(unparsable URL)"
    if password is None:
        return url
    netloc = f"{parts.username or ''}:***@{host}" + (f":{port}" if port is not None else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def read_credential(
    key: str,
    table: Mapping[str, Any],
    base_dir: Path | None,
    env: Mapping[str, str],
    where: str,
    problems: list[str],
    holders: tuple[Path | None, list[Path]],
) -> tuple[Secret, ...]:
    """Collect a credential given directly, as ``<key>_env`` or as ``<key>_file``.

    ``holders`` is the config file and the list of files holding secrets, which this adds to.
    """
    config_file, secret_files = holders
    given = [name for name in (key, f"{key}_env", f"{key}_file") if name in table]
    if len(given) > 1:
        problems.append(f"{where}{key}: give only one of {', '.join(given)}")
        return ()
    if not given:
        return ()
    name = given[0]
    values = string_list(table[name], f"{where}{name}", problems)
    secrets_found: list[Secret] = []
    for value in values:
        if name.endswith("_env"):
            if not env.get(value):
                problems.append(f"{where}{name}: environment variable {value} is not set or empty")
                continue
            secrets_found.append(Secret(env[value].strip()))
        elif name.endswith("_file"):
            path = Path(value).expanduser()
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            try:
                text = path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(f"{where}{name}: cannot read {path} ({exc.__class__.__name__})")
                continue
            if not text:
                problems.append(f"{where}{name}: {path} is empty")
                continue
            secrets_found.append(Secret(text))
            secret_files.append(path)
        else:
            if not value.strip():
                problems.append(f"{where}{name} is empty")
                continue
            secrets_found.append(Secret(value.strip()))
            if config_file is not None:
                secret_files.append(config_file)
    return tuple(secrets_found)


def string_list(value: Any, where: str, problems: list[str]) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    problems.append(f"{where} must be a string or a list of strings")
    return []
