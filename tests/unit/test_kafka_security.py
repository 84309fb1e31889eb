"""Kafka security without a broker: the SCRAM listener's settings, properties and format arguments; client flags,
environment and config-file settings; and a failed SASL login turned into one line without the password.

The runner's format step is exercised with a stand-in ``java`` script that records its arguments, and login
failures with the log records kafka-python emits (the exception travels as a record argument), so the code paths
run as they would against a real broker.
"""

from __future__ import annotations

import argparse
import io
import logging
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka.errors import (
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaTimeoutError,
    RequestTimedOutError,
    SaslAuthenticationFailedError,
    UnsupportedSaslMechanismError,
)

from decaywatch.deploy.kafka import cli as kafka_cli
from decaywatch.deploy.kafka.runner import (
    SCRAM_MECHANISMS,
    BrokerSettings,
    KafkaRunnerError,
    LocalKafka,
    free_ports,
    render_server_properties,
    scram_format_arguments,
)
from decaywatch.producer import cli as producer_cli
from decaywatch.shared.kafka_settings import (
    CLOSED_DURING_LOGIN,
    KafkaAuthenticationError,
    add_kafka_arguments,
    kafka_client_config,
    redact,
    reporting_login_failures,
    security_config,
)

PASSWORD = "alice-s3cret:with=signs"
SASL = {
    "bootstrap_servers": ["127.0.0.1:9094"],
    "security_protocol": "SASL_PLAINTEXT",
    "sasl_mechanism": "SCRAM-SHA-256",
    "sasl_plain_username": "alice",
    "sasl_plain_password": PASSWORD,
}
BROKER_REFUSAL = (
    "SaslAuthenticationFailedError: Authentication failed during authentication due to invalid credentials "
    "with SASL mechanism SCRAM-SHA-256"
)


def sasl_settings(tmp_path: Path, **overrides: object) -> BrokerSettings:
    port, controller_port, sasl_port = free_ports(3)
    values: dict[str, Any] = {
        "data_dir": tmp_path / "broker",
        "cache_dir": tmp_path / "cache",
        "port": port,
        "controller_port": controller_port,
        "sasl_port": sasl_port,
        "scram_users": {"alice": PASSWORD, "bob": "b0b"},
    }
    values.update(overrides)
    return BrokerSettings(**values)


def parse_properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}  # noqa: C416 - unpacking types each pair (dict() of lists would not)


# ------------------------------------------------------------------ broker settings


def test_scram_listener_properties(tmp_path: Path) -> None:
    settings = sasl_settings(tmp_path, host="127.0.0.2")
    text = render_server_properties(settings)
    props = parse_properties(text)
    host, port, cport, sport = "127.0.0.2", settings.port, settings.controller_port, settings.sasl_port
    assert props["listeners"] == f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport},SASL_PLAINTEXT://{host}:{sport}"
    assert props["advertised.listeners"] == f"PLAINTEXT://{host}:{port},SASL_PLAINTEXT://{host}:{sport}"
    assert props["listener.security.protocol.map"] == "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["listener.name.sasl_plaintext.sasl.enabled.mechanisms"] == "SCRAM-SHA-256,SCRAM-SHA-512"
    login = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    assert props["listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config"] == login
    assert props["listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"] == login
    assert settings.sasl_bootstrap_servers == f"{host}:{sport}"
    assert PASSWORD not in text and "alice" not in text  # credentials live in the metadata log only


def test_one_mechanism_only(tmp_path: Path) -> None:
    settings = sasl_settings(tmp_path, scram_mechanisms=("SCRAM-SHA-512",))
    props = parse_properties(render_server_properties(settings))
    assert props["listener.name.sasl_plaintext.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config" not in props
    assert scram_format_arguments(settings) == [
        "--add-scram", f"SCRAM-SHA-512=[name=alice,password={PASSWORD}]",
        "--add-scram", "SCRAM-SHA-512=[name=bob,password=b0b]",
    ]  # fmt: skip


def test_without_sasl_port_nothing_changes(tmp_path: Path) -> None:
    settings = BrokerSettings(data_dir=tmp_path / "b", cache_dir=tmp_path / "c")
    text = render_server_properties(settings)
    assert "SASL_PLAINTEXT" not in text and "sasl." not in text
    assert scram_format_arguments(settings) == []
    assert settings.sasl_bootstrap_servers is None


def test_format_arguments_one_per_user_and_mechanism(tmp_path: Path) -> None:
    assert scram_format_arguments(sasl_settings(tmp_path)) == [
        "--add-scram", f"SCRAM-SHA-256=[name=alice,password={PASSWORD}]",
        "--add-scram", f"SCRAM-SHA-512=[name=alice,password={PASSWORD}]",
        "--add-scram", "SCRAM-SHA-256=[name=bob,password=b0b]",
        "--add-scram", "SCRAM-SHA-512=[name=bob,password=b0b]",
    ]  # fmt: skip


def test_passwords_stay_out_of_repr(tmp_path: Path) -> None:
    settings = sasl_settings(tmp_path)
    assert PASSWORD not in repr(settings) and "b0b" not in repr(settings)
    assert settings == sasl_settings(tmp_path, port=settings.port, controller_port=settings.controller_port,
                                     sasl_port=settings.sasl_port)  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"sasl_port": 9092, "port": 9092}, "must differ"),
        ({"sasl_port": 70000}, "sasl_port must be in 1..65535"),
        ({"sasl_port": None}, "need a SASL listener"),
        ({"scram_mechanisms": ("PLAIN",)}, "scram_mechanisms"),
        ({"scram_mechanisms": ()}, "scram_mechanisms"),
        ({"scram_users": {"al ice": "x"}}, "user name 'al ice'"),
        ({"scram_users": {"alice": ""}}, "empty password"),
        ({"scram_users": {"alice": "a,b-secret"}}, "may not contain"),
        ({"scram_users": {"alice": "a]b-secret"}}, "may not contain"),
        ({"scram_users": {"alice": "a b-secret"}}, "may not contain"),
    ],
)
def test_invalid_scram_settings_are_rejected_without_echoing_passwords(
    tmp_path: Path, overrides: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint) as caught:
        sasl_settings(tmp_path, **overrides)
    assert "-secret" not in str(caught.value)


# ------------------------------------------------------------------ format and start with a stand-in java


def stand_in_java(tmp_path: Path, format_exit: int = 0) -> str:
    """A ``java`` that records StorageTool's arguments, then fails or "formats"; as kafka.Kafka it idles."""
    script = tmp_path / "java"
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        f'  *StorageTool*) printf "%s\\n" "$@" > "{tmp_path}/format-args"\n'
        f'    echo "Unknown SCRAM configurations: $*"; exit {format_exit};;\n'
        '  *) echo "Kafka Server started"; while :; do sleep 0.05; done;;\n'
        "esac\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


@pytest.fixture
def stand_in_kafka(tmp_path: Path) -> Iterator[LocalKafka]:
    kafka = LocalKafka(sasl_settings(tmp_path), which=lambda name: stand_in_java(tmp_path) if name == "java" else None)
    kafka.libs_dir.mkdir(parents=True)
    (kafka.jar_cache_dir / "libs.complete").write_text("0 jars\n")
    try:
        yield kafka
    finally:
        kafka.stop(timeout=5)


def test_start_formats_with_the_scram_users(stand_in_kafka: LocalKafka, tmp_path: Path) -> None:
    kafka = stand_in_kafka
    info = kafka.start(timeout=20)
    assert info.sasl_bootstrap_servers == kafka.settings.sasl_bootstrap_servers
    arguments = (tmp_path / "format-args").read_text().splitlines()
    tail = arguments[arguments.index("format") :]
    assert tail[:2] == ["format", "--config"] and "--cluster-id" in tail
    assert tail[-8:] == scram_format_arguments(kafka.settings)
    assert kafka.scram_credentials() == [(m, "alice") for m in SCRAM_MECHANISMS] + [(m, "bob") for m in SCRAM_MECHANISMS]
    assert PASSWORD not in kafka.settings.scram_record_path.read_text()
    status = kafka.status()
    assert status.running and status.sasl_bootstrap_servers == kafka.settings.sasl_bootstrap_servers


def test_restart_with_other_users_warns_that_they_are_not_added(
    stand_in_kafka: LocalKafka, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stand_in_kafka.start(timeout=20)
    stand_in_kafka.stop(timeout=5)
    (stand_in_kafka.settings.storage_dir / "meta.properties").write_text("formatted\n")
    settings = stand_in_kafka.settings
    again = LocalKafka(
        sasl_settings(tmp_path, port=settings.port, controller_port=settings.controller_port,
                      sasl_port=settings.sasl_port, scram_users={"carol": "c4rol"}),
        which=lambda name: stand_in_java(tmp_path) if name == "java" else None,
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="decaywatch.deploy.kafka.runner"):
        again.start(timeout=20)
    again.stop(timeout=5)
    assert "only when storage is first formatted" in caplog.text
    assert "c4rol" not in caplog.text

    caplog.clear()  # a restart that asks for no users (or the same ones) has nothing to warn about
    plain = LocalKafka(sasl_settings(tmp_path, port=settings.port, controller_port=settings.controller_port,
                                     sasl_port=None, scram_users={}),
                       which=lambda name: stand_in_java(tmp_path) if name == "java" else None)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="decaywatch.deploy.kafka.runner"):
        plain.start(timeout=20)
    plain.stop(timeout=5)
    assert "only when storage is first formatted" not in caplog.text


def test_format_failure_shows_the_command_without_passwords(tmp_path: Path) -> None:
    kafka = LocalKafka(sasl_settings(tmp_path), which=lambda name: stand_in_java(tmp_path, 1) if name == "java" else None)
    kafka.libs_dir.mkdir(parents=True)
    (kafka.jar_cache_dir / "libs.complete").write_text("0 jars\n")
    with pytest.raises(KafkaRunnerError, match="Formatting Kafka storage failed") as caught:
        kafka.start(timeout=20)
    message = str(caught.value)
    assert "SCRAM-SHA-256=[name=alice,password=***]" in message  # in the command line
    assert "Unknown SCRAM configurations" in message  # and the tool's output, which echoed it too
    assert PASSWORD not in message and "b0b" not in message


# ------------------------------------------------------------------ decaywatch kafka


def run_kafka_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    kafka_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.run(args))


def test_kafka_cli_documents_the_sasl_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run_kafka_cli(["kafka", "--help"])
    help_text = capsys.readouterr().out
    for flag in ("--sasl-port", "--scram-user", "--scram-mechanism", "NAME:PASSWORD", "SASL_PLAINTEXT"):
        assert flag in help_text


def test_kafka_cli_rejects_a_bad_password_without_echoing_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_kafka_cli(["kafka", "start", "--sasl-port", "29094", "--scram-user", "alice:bad,secret",
                          "--data-dir", str(tmp_path / "b"), "--cache-dir", str(tmp_path / "c")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("decaywatch kafka start: error: SCRAM user 'alice'") and "bad,secret" not in err


def test_kafka_cli_scram_user_needs_name_and_password(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run_kafka_cli(["kafka", "start", "--sasl-port", "29094", "--scram-user", "alice"])
    assert "expected NAME:PASSWORD" in capsys.readouterr().err


# ------------------------------------------------------------------ client settings


def monitor_args(argv: list[str], environ: dict[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_kafka_arguments(parser, environ)
    return parser.parse_args(argv)


def test_scram_flags_map_to_kafka_python_keywords() -> None:
    # kafka-python takes the SCRAM user and password as sasl_plain_username/sasl_plain_password too.
    args = monitor_args(["--bootstrap-servers", "k1:9094,k2:9094", "--security-protocol", "SASL_PLAINTEXT",
                         "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", "alice", "--sasl-password", PASSWORD,
                         "--ssl-cafile", "ca.pem"], {})  # fmt: skip
    assert kafka_client_config(args) == {
        "bootstrap_servers": ["k1:9094", "k2:9094"],
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "alice",
        "sasl_plain_password": PASSWORD,
        "ssl_cafile": "ca.pem",
    }


def test_environment_then_flags() -> None:
    env = {"DECAYWATCH_SASL_PASSWORD": PASSWORD, "DECAYWATCH_SASL_USERNAME": "alice", "KAFKA_BOOTSTRAP_SERVERS": "k:1"}
    config = kafka_client_config(monitor_args(["--sasl-username", "bob"], env))
    assert config["sasl_plain_password"] == PASSWORD and config["sasl_plain_username"] == "bob"
    assert config["bootstrap_servers"] == ["k:1"]


def test_config_file_fills_only_what_flags_and_environment_left_unset() -> None:
    table = {"bootstrap_servers": "file:9094", "security_protocol": "SASL_PLAINTEXT", "sasl_username": "alice",
             "sasl_password": "from-file", "sasl_mechanism": "SCRAM-SHA-256"}  # fmt: skip
    config = kafka_client_config(
        monitor_args(["--sasl-mechanism", "SCRAM-SHA-512"], {"DECAYWATCH_SASL_PASSWORD": PASSWORD}), table
    )
    assert config == {**SASL, "bootstrap_servers": ["file:9094"], "sasl_mechanism": "SCRAM-SHA-512"}
    # A bootstrap list from a flag or the environment beats the file's.
    assert kafka_client_config(monitor_args(["--bootstrap-servers", "flag:1"], {}), table)["bootstrap_servers"] == ["flag:1"]
    assert kafka_client_config(monitor_args([], {"KAFKA_BOOTSTRAP_SERVERS": "env:1"}), table)["bootstrap_servers"] == ["env:1"]


def test_config_file_unknown_or_mistyped_keys_are_errors() -> None:
    args = monitor_args([], {})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['sasl_plain_password'\]"):
        kafka_client_config(args, {"sasl_plain_password": "x"})
    with pytest.raises(ValueError, match="sasl_password must be a string"):
        kafka_client_config(args, {"sasl_password": 1234})


def producer_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    producer_cli.add_parser(parser.add_subparsers())
    return parser.parse_args(["produce", *argv])


def test_producer_reads_security_from_flags_then_environment() -> None:
    args = producer_args(["--security-protocol", "SASL_PLAINTEXT", "--sasl-username", "alice"])
    env = {"DECAYWATCH_SASL_PASSWORD": PASSWORD, "DECAYWATCH_SASL_MECHANISM": "SCRAM-SHA-256",
           "DECAYWATCH_SECURITY_PROTOCOL": "SSL"}  # fmt: skip
    assert security_config(args, env) == {key: value for key, value in SASL.items() if key != "bootstrap_servers"}


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        ([], {}, {"bootstrap_servers": ["127.0.0.1:9092"]}),
        ([], {"KAFKA_BOOTSTRAP_SERVERS": "k:1", "DECAYWATCH_BOOTSTRAP_SERVERS": " "}, {"bootstrap_servers": ["k:1"]}),
        (["--bootstrap-servers", "f:1, f:2"], {"DECAYWATCH_BOOTSTRAP_SERVERS": "d:2"}, {"bootstrap_servers": ["f:1", "f:2"]}),
        (["--sasl-username", "bob"], {"DECAYWATCH_SASL_USERNAME": "alice", "DECAYWATCH_SASL_PASSWORD": PASSWORD},
         {"bootstrap_servers": ["127.0.0.1:9092"], "sasl_plain_username": "bob", "sasl_plain_password": PASSWORD}),
    ],
)  # fmt: skip
def test_monitor_and_producer_read_kafka_settings_alike(
    argv: list[str], environ: dict[str, str], expected: dict[str, object]
) -> None:
    # The monitor reads the environment when its parser is built, the producer when it runs: one reader, one precedence.
    assert kafka_client_config(monitor_args(argv, environ)) == expected
    assert kafka_client_config(producer_args(argv), environ=environ) == expected


def test_the_file_table_comes_after_the_environment_read_at_run_time() -> None:
    table = {"bootstrap_servers": "file:1", "sasl_username": "carol"}
    assert kafka_client_config(producer_args([]), table, environ={"KAFKA_BOOTSTRAP_SERVERS": "env:1"}) == {
        "bootstrap_servers": ["env:1"],
        "sasl_plain_username": "carol",
    }
    assert kafka_client_config(producer_args([]), table, environ={})["bootstrap_servers"] == ["file:1"]


def test_redact_blanks_every_secret() -> None:
    config = {**SASL, "ssl_password": "key-pass"}
    assert redact(f"user alice pw {PASSWORD} key key-pass", config) == "user alice pw *** key ***"


# ------------------------------------------------------------------ failed logins


def kafka_python_logs(*errors: BaseException) -> None:
    """What kafka-python 3.0 logs for failed bootstrap attempts: the error is a record argument."""
    for error in errors:
        logging.getLogger("kafka.net.transport").error("%s: Abort (%s)", "<transport>", error)
        logging.getLogger("kafka.net.manager").warning("Bootstrap connection to %s failed: %s", "bootstrap-0", error)
    logging.getLogger("kafka.net.manager").error("Bootstrap failed: %s", KafkaTimeoutError("Unable to bootstrap"))


def failing_connect(*errors: BaseException) -> None:
    kafka_python_logs(*errors)
    raise KafkaTimeoutError("Unable to bootstrap from ['127.0.0.1:9094']")


def test_refused_login_becomes_one_error_and_its_logs_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    disconnected = KafkaConnectionError("socket disconnected")
    handlers = list(logging.getLogger("kafka").handlers)
    with caplog.at_level(logging.WARNING), pytest.raises(KafkaAuthenticationError) as caught, reporting_login_failures(SASL):
        failing_connect(disconnected, SaslAuthenticationFailedError(BROKER_REFUSAL), disconnected)
    assert str(caught.value) == (
        "Kafka authentication failed for user 'alice' (SCRAM-SHA-256) at 127.0.0.1:9094: Authentication failed "
        "during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256"
    )
    assert caught.value.refused and caught.value.__cause__ is None and caught.value.__suppress_context__
    assert caplog.records == []
    assert logging.getLogger("kafka").propagate and logging.getLogger("kafka").handlers == handlers


def test_connections_closed_during_login_count_as_a_failed_login(caplog: pytest.LogCaptureFixture) -> None:
    # kafka-python drops a response that arrives together with the broker's close, so a refusal can look like this.
    with caplog.at_level(logging.WARNING), pytest.raises(KafkaAuthenticationError) as caught, reporting_login_failures(SASL):
        failing_connect(*[KafkaConnectionError("socket disconnected")] * 3)
    assert not caught.value.refused and CLOSED_DURING_LOGIN in str(caught.value)
    assert caplog.records == []


def test_a_last_try_cut_short_by_the_bootstrap_deadline_is_still_a_failed_login(caplog: pytest.LogCaptureFixture) -> None:
    # Seen on a real broker: closes on every try, then the try begun 110 ms before the deadline times out.
    closes = [KafkaConnectionError("socket disconnected")] * 8
    with caplog.at_level(logging.WARNING), pytest.raises(KafkaAuthenticationError) as caught, reporting_login_failures(SASL):
        failing_connect(*closes, RequestTimedOutError("Request timed out after 110 ms"))
    assert not caught.value.refused and CLOSED_DURING_LOGIN in str(caught.value)
    assert caplog.records == []


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            UnsupportedSaslMechanismError(),
            "The broker does not support the requested SASL mechanism. (UnsupportedSaslMechanismError)",
        ),
        (IllegalSaslStateError(), "the listener at this address does not do SASL (IllegalSaslStateError)"),
    ],
)
def test_mechanism_and_listener_mismatches_are_login_failures(error: BaseException, reason: str) -> None:
    with pytest.raises(KafkaAuthenticationError) as caught, reporting_login_failures(SASL):
        failing_connect(error)
    assert caught.value.reason == reason


def test_an_unreachable_broker_is_not_a_login_failure(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING), pytest.raises(KafkaTimeoutError), reporting_login_failures(SASL):
        failing_connect(KafkaConnectionError("111 ECONNREFUSED"), KafkaConnectionError("socket disconnected"))
    assert len(caplog.records) == 5  # held back while connecting, then released as evidence
    assert [r.name for r in caplog.records][:2] == ["kafka.net.transport", "kafka.net.manager"]


def test_a_successful_connect_releases_what_kafka_python_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING), reporting_login_failures(SASL):
        logging.getLogger("kafka.net.sasl.scram").warning("Exchanging credentials in the clear during Sasl Authentication")
        assert caplog.records == []
    assert [r.getMessage() for r in caplog.records] == ["Exchanging credentials in the clear during Sasl Authentication"]


def test_without_sasl_nothing_is_held_back(caplog: pytest.LogCaptureFixture) -> None:
    def connect() -> None:
        with reporting_login_failures({"bootstrap_servers": ["k:1"]}):
            logging.getLogger("kafka.net.manager").warning("live")
            assert [r.getMessage() for r in caplog.records] == ["live"]  # released at once, not held back
            failing_connect(SaslAuthenticationFailedError(BROKER_REFUSAL))

    with caplog.at_level(logging.WARNING), pytest.raises(KafkaTimeoutError):
        connect()


def test_the_reason_never_carries_the_password() -> None:
    with pytest.raises(KafkaAuthenticationError) as caught, reporting_login_failures(SASL):
        failing_connect(SaslAuthenticationFailedError(f"user alice password {PASSWORD} rejected"))
    assert PASSWORD not in str(caught.value) and "password *** rejected" in str(caught.value)


def test_produce_reports_a_failed_login_in_one_line() -> None:
    parser = argparse.ArgumentParser()
    producer_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["produce", "--bootstrap-servers", "127.0.0.1:9094", "--models", "m=stable",
                              "--count", "5", "--security-protocol", "SASL_PLAINTEXT",
                              "--sasl-mechanism", "SCRAM-SHA-256", "--sasl-username", "alice"])  # fmt: skip
    stdout, stderr = io.StringIO(), io.StringIO()

    def refused(bootstrap: str) -> None:
        failing_connect(SaslAuthenticationFailedError(BROKER_REFUSAL))

    code = producer_cli.run(args, environ={"DECAYWATCH_SASL_PASSWORD": PASSWORD}, stdout=stdout, stderr=stderr,
                            producer_factory=refused)  # fmt: skip
    assert code == 1
    assert stderr.getvalue().splitlines() == [
        "decaywatch produce: error: Kafka authentication failed for user 'alice' (SCRAM-SHA-256) at 127.0.0.1:9094: "
        "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256"
    ]
    assert PASSWORD not in stdout.getvalue() + stderr.getvalue()


def test_config_file_kafka_table_reaches_the_client_and_stays_out_of_repr(tmp_path: Path) -> None:
    from decaywatch.cli import build_parser
    from decaywatch.consumer.cli import settings_from_args

    config = tmp_path / "monitor.toml"
    config.write_text(
        '[kafka]\nbootstrap_servers = "10.1.2.3:9093"\nsecurity_protocol = "SASL_PLAINTEXT"\n'
        'sasl_mechanism = "SCRAM-SHA-512"\nsasl_username = "alice"\nsasl_password = "file-secret"\n\n[defaults]\nthreshold = 0.2\n'
    )
    settings = settings_from_args(build_parser().parse_args(["monitor", "--config", str(config)]))
    assert settings.kafka["bootstrap_servers"] == ["10.1.2.3:9093"]
    assert settings.kafka["sasl_plain_password"] == "file-secret" and settings.kafka["sasl_mechanism"] == "SCRAM-SHA-512"
    assert settings.config.defaults.threshold == 0.2
    assert "file-secret" not in repr(settings)
