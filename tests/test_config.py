"""Configuration: where it is found, how secrets are given, one clear sentence per mistake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailpulse import config as configuration
from mailpulse.config import Secret
from mailpulse.errors import ConfigError
from tests.helpers import load_config, new_secret, parse_config


def problems(document: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(document, env=env or {})
    return caught.value.problems


def generic(**keys: Any) -> dict[str, Any]:
    return {"sources": {"s": {"provider": "generic", **keys}}}


def test_valid_config_reads_every_section(tmp_path: Path) -> None:
    config = parse_config(
        {
            "data_dir": str(tmp_path),
            "receiver": {"max_body_bytes": 1000, "flush_interval_seconds": 2, "workers": 3},
            "lake": {"dedup_window_days": 60},
            "suppression": {"soft_bounce_limit": 5},
            "sources": {
                "s": {
                    "provider": "generic",
                    "secret": ["new", "old"],
                    "allow_ips": ["10.0.0.0/8", "2001:db8::/32"],
                    "rate_limit": "200/second",
                    "campaign": "batch",
                }
            },
        },
        env={},
    )
    assert config.receiver.max_body_bytes == 1000
    assert config.receiver.flush_interval_seconds == 2
    assert config.lake.dedup_window_days == 60
    assert config.suppression.soft_bounce_limit == 5
    source = config.sources["s"]
    assert [s.reveal() for s in source.credentials["secret"]] == ["new", "old"]
    assert [str(n) for n in source.allow_ips] == ["10.0.0.0/8", "2001:db8::/32"]
    assert source.rate_limit == "200/second"
    assert source.campaign == "batch"


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            {"sources": {"s": {"provider": "sendgird", "secret": "x"}}},
            "unknown provider 'sendgird'",
        ),
        (generic(), "needs secret"),
        (generic(secret="x", allow_ips=["10.0.0.300/8"]), "'10.0.0.300/8' is not an IPv4 or IPv6"),
        (generic(secret="x", rate_limit="lots"), "'lots' is not a rate limit"),
        (generic(secret="x", colour="blue"), "sources.s.colour: unknown key"),
        ({"recevier": {}}, "recevier: unknown key"),
        ({"receiver": {"max_body_byte": 1}}, "receiver.max_body_byte: unknown key"),
        ({"receiver": {"max_body_bytes": "big"}}, "receiver.max_body_bytes must be int"),
        ({"receiver": {"workers": 0}}, "receiver.workers must be greater than zero"),
        (
            {"receiver": {"read_timeout_seconds": "10s"}},
            "receiver.read_timeout_seconds must be float",
        ),
        (generic(secret=""), "sources.s.secret is empty"),
        (generic(secret="x", secret_env="X"), "give only one of secret, secret_env"),
        (generic(secret_env="NOT_SET"), "environment variable NOT_SET is not set"),
        (generic(secret_file="/nonexistent/secret"), "cannot read /nonexistent/secret"),
        ({"sources": {"bad/name": {"provider": "generic", "secret": "x"}}}, "a source name is"),
        (generic(secret="x", shadow="yes"), "sources.s.shadow must be true or false"),
        (
            {"receiver": {"rate_limit_storage": "mongodb://db:27017"}},
            "'mongodb://db:27017' is neither memory:// nor a Redis URL",
        ),
    ],
)
def test_each_mistake_has_one_clear_sentence(document: dict[str, Any], expected: str) -> None:
    found = problems(document)
    assert len(found) == 1, found
    assert expected in found[0]


def test_all_mistakes_are_reported_together() -> None:
    found = problems(
        {"sources": {"a": {"provider": "nope"}, "b": {"provider": "generic"}}, "extra": 1}
    )
    assert len(found) == 3
    assert any("unknown provider" in p for p in found)
    assert any("needs secret" in p for p in found)
    assert any("extra: unknown key" in p for p in found)


def test_credentials_from_env_and_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file\n")
    config = parse_config(
        {
            "sources": {
                "e": {"provider": "generic", "secret_env": "MY_SECRET"},
                "f": {"provider": "generic", "secret_file": "secret"},
            }
        },
        base_dir=tmp_path,
        env={"MY_SECRET": "from-env"},
    )
    assert config.sources["e"].credentials["secret"][0].reveal() == "from-env"
    assert config.sources["f"].credentials["secret"][0].reveal() == "from-file"


def test_secrets_never_show_in_repr_or_errors() -> None:
    config = parse_config(generic(secret="hunter2-very-secret"), env={})
    assert "hunter2" not in repr(config)
    assert "hunter2" not in str(config.sources["s"])
    assert repr(Secret("hunter2")) == "Secret('********')"
    with pytest.raises(ConfigError) as caught:
        parse_config(generic(secret="hunter2-very-secret", rate_limit="bad"), env={})
    assert "hunter2" not in str(caught.value)


def test_the_rate_limit_storage_password_never_shows() -> None:
    config = parse_config(
        {"receiver": {"rate_limit_storage": "redis://:hunter2@cache:6379/0"}}, env={}
    )
    assert config.receiver.rate_limit_storage == "redis://:hunter2@cache:6379/0"
    assert "hunter2" not in repr(config)
    found = problems({"receiver": {"rate_limit_storage": "memcached://u:hunter2@cache:11211"}})
    assert found == [
        "receiver.rate_limit_storage: 'memcached://u:***@cache:11211' is neither memory:// "
        "nor a Redis URL like redis://127.0.0.1:6379/0"
    ]


def test_files_holding_secrets_are_known(tmp_path: Path) -> None:
    """The config file when a secret is written in it, and every <key>_file."""
    (tmp_path / "secret").write_text("from-file\n")
    toml = tmp_path / "mailpulse.toml"
    toml.write_text(
        '[sources.f]\nprovider = "generic"\nsecret_file = "secret"\n'
        '[sources.e]\nprovider = "generic"\nsecret_env = "MY_SECRET"\n'
    )
    assert load_config(toml, env={"MY_SECRET": "x"}).secret_files == ((tmp_path / "secret"),)
    toml.write_text('[sources.i]\nprovider = "generic"\nsecret = ["new", "old"]\n')
    assert load_config(toml, env={}).secret_files == (toml,)
    toml.write_text('[receiver]\nrate_limit_storage = "redis://:pw@cache:6379"\n')
    assert load_config(toml, env={}).secret_files == (toml,)


def test_file_lookup_order_and_data_dir_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit = tmp_path / "explicit.toml"
    explicit.write_text('data_dir = "lake-a"\n[sources.s]\nprovider = "generic"\nsecret = "x"\n')
    from_env = tmp_path / "env.toml"
    from_env.write_text('data_dir = "lake-b"\n')
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mailpulse.toml").write_text('data_dir = "lake-c"\n')

    env = {"MAILPULSE_CONFIG": str(from_env)}
    assert load_config(explicit, env=env).data_dir == tmp_path / "lake-a"
    assert load_config(None, env=env).data_dir == tmp_path / "lake-b"
    assert load_config(None, env={}).data_dir == tmp_path / "lake-c"
    override = {"MAILPULSE_DATA_DIR": str(tmp_path / "elsewhere")}
    assert load_config(explicit, env=override).data_dir == tmp_path / "elsewhere"


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.toml", env={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[sources\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(broken, env={})


def test_missing_credentials_reported_beside_other_mistakes() -> None:
    found = problems(generic(allow_ips=["nonsense"]))
    assert len(found) == 2
    assert any("needs secret" in p for p in found)


def test_dashboard_receiver_url_default_and_validation() -> None:
    assert parse_config({}).dashboard.receiver_url == "http://127.0.0.1:8025"
    chosen = parse_config({"dashboard": {"receiver_url": "https://hooks.example.com:8443"}})
    assert chosen.dashboard.receiver_url == "https://hooks.example.com:8443"
    for bad in ("ftp://example.com", "not a url", "http://"):
        with pytest.raises(ConfigError, match="dashboard.receiver_url must be an http"):
            parse_config({"dashboard": {"receiver_url": bad}})
    with pytest.raises(ConfigError, match="dashboard.receiver_url must be str"):
        parse_config({"dashboard": {"receiver_url": 8025}})
    with pytest.raises(ConfigError, match="dashboard.port"):
        parse_config({"dashboard": {"port": 1}})


def test_spool_engine_is_local_or_postgres_with_a_url(tmp_path: Path) -> None:
    assert parse_config({}).spool.engine == "local"
    assert parse_config({"spool": {"engine": "local"}}).spool.engine == "local"
    (problem,) = problems({"spool": {"engine": "mysql"}})
    assert problem.startswith('spool.engine must be "local"') and "postgres" in problem
    assert problems({"spool": {"engine": 1}})[0].startswith("spool.engine must be")
    assert problems({"spool": {"engine": "postgres"}}) == [
        'spool.url: engine "postgres" needs url, url_env or url_file'
    ]
    assert problems({"spool": {"url": "postgresql://x"}}) == [
        'spool.url is only for engine = "postgres"'
    ]
    assert problems({"spool": {"engine": "postgres", "url": "mysql://x"}})[0].startswith(
        "spool.url must be a postgresql://"
    )
    password = "pw-" + new_secret()
    url = f"postgresql://mp:{password}@db.internal/mailpulse"
    spool = parse_config(
        {"spool": {"engine": "postgres", "url_env": "SPOOL_URL"}}, env={"SPOOL_URL": url}
    ).spool
    assert spool.url is not None and spool.url.reveal() == url
    assert password not in repr(spool)


def test_the_lake_may_live_in_a_shared_directory(tmp_path: Path) -> None:
    assert parse_config({"data_dir": str(tmp_path)}).lake_dir == tmp_path / "lake"
    shared = tmp_path / "nfs" / "lake"
    assert parse_config({"lake": {"url": str(shared)}}).lake_dir == shared
    (problem,) = problems({"lake": {"url": "ftp://bucket/lake"}})
    assert problem.startswith("lake.url: ftp:// is not supported")


def test_the_lake_may_live_on_object_storage_with_keys_read_like_every_secret(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "secret_key"
    key_file.write_text("s3-secret-" + "x" * 20 + "\n")
    config = parse_config(
        {
            "lake": {
                "url": "s3://mail-lake/mailpulse",
                "endpoint_url": "http://127.0.0.1:9000",
                "access_key_id_env": "LAKE_KEY_ID",
                "secret_access_key_file": str(key_file),
            }
        },
        env={"LAKE_KEY_ID": "AKIDEXAMPLE"},
    )
    assert config.lake.is_remote
    assert config.lake_store.location == "s3://mail-lake/mailpulse"
    assert config.lake.secret_access_key is not None
    assert config.lake.secret_access_key.reveal() == "s3-secret-" + "x" * 20
    assert "s3-secret" not in repr(config) and "AKIDEXAMPLE" not in repr(config)
    with pytest.raises(ConfigError, match="object storage"):
        _ = config.lake_dir  # code that needs a local directory says so
    # Without keys the AWS credential chain decides; a missing half of a pair is a mistake.
    assert parse_config({"lake": {"url": "s3://mail-lake"}}).lake.access_key_id is None
    assert problems({"lake": {"url": "s3://b", "access_key_id": "AKID"}}) == [
        "lake: give access_key_id and secret_access_key together, or neither"
    ]
    assert problems({"lake": {"url": "s3://", "endpoint_url": "minio:9000"}}) == [
        "lake.endpoint_url must be an http:// or https:// URL with a host",
        "lake.url: 's3://' names no bucket",
    ]
    assert problems({"lake": {"url": "/srv/lake", "region": "eu-west-1"}}) == [
        "lake.endpoint_url and lake.region are only for an s3:// url"
    ]


def test_without_the_provider_registry_sources_are_not_read(tmp_path: Path) -> None:
    """Readers of the lake load a config whose webhook secrets they do not have."""
    toml = tmp_path / "mailpulse.toml"
    toml.write_text('[sources.s]\nprovider = "generic"\nsecret_env = "NOT_SET_HERE"\n')
    config = configuration.load_config(toml, env={})
    assert config.sources == {}
    with pytest.raises(ConfigError, match="NOT_SET_HERE is not set"):
        load_config(toml, env={})
    with pytest.raises(ConfigError, match="sources must be a table"):
        configuration.parse_config({"sources": 3}, env={})


def test_a_read_timeout_from_an_older_file_loads_with_a_warning_at_start() -> None:
    """The key did something before gunicorn ran stock; now serve says so instead of failing."""
    from ingest.intake.notices import start_notices

    config = parse_config({"receiver": {"read_timeout_seconds": 10}}, env={})
    assert any("read_timeout_seconds has no effect" in line for line in start_notices(config, 2))
    assert not any("read_timeout" in line for line in start_notices(parse_config({}, env={}), 2))
