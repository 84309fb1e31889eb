"""The local Kafka runner without a broker: settings, rendering, idempotence, and its error messages.

Failures are provoked with real processes (stand-in ``java``/``mvn`` scripts
handed in through ``which``), not mocks, so the code paths run as they would.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from decaywatch.deploy.kafka import cli as kafka_cli
from decaywatch.deploy.kafka.runner import (
    BrokerSettings,
    KafkaRunnerError,
    LocalKafka,
    ToolMissingError,
    free_port,
    free_ports,
    new_cluster_id,
    render_server_properties,
)


def settings_in(tmp_path: Path, **overrides: object) -> BrokerSettings:
    values: dict[str, Any] = {"data_dir": tmp_path / "broker", "cache_dir": tmp_path / "cache"}
    values.update(overrides)
    return BrokerSettings(**values)


def parse_properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}  # noqa: C416 - unpacking types each pair (dict() of lists would not)


def script(path: Path, body: str) -> str:
    """An executable shell script standing in for java or mvn."""
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def which_only(**tools: str | None) -> Callable[[str], str | None]:
    """A ``which`` that knows exactly the given tools (None: not installed)."""
    return tools.get


def complete_jar_cache(kafka: LocalKafka) -> None:
    """Pretend a previous fetch finished: a jar and the completion marker."""
    kafka.libs_dir.mkdir(parents=True)
    (kafka.libs_dir / "kafka_2.13-4.1.1.jar").write_bytes(b"")
    (kafka.jar_cache_dir / "libs.complete").write_text("1 jars\n")


# ------------------------------------------------------------------ settings


def test_defaults_keep_clear_of_alertmanager(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    assert (settings.host, settings.port, settings.controller_port) == ("127.0.0.1", 9092, 19093)
    assert settings.heap_mb == 512
    assert settings.bootstrap_servers == "127.0.0.1:9092"


def test_settings_do_not_read_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DECAYWATCH_CACHE_DIR", "/nowhere/cache")
    monkeypatch.setenv("DECAYWATCH_KAFKA_DIR", "/nowhere/broker")
    settings = settings_in(tmp_path)
    assert settings.cache_dir == tmp_path / "cache"
    assert settings.data_dir == tmp_path / "broker"


def test_from_environment_reads_dirs_and_ignores_unset_overrides(tmp_path: Path) -> None:
    env = {"DECAYWATCH_CACHE_DIR": str(tmp_path / "c"), "DECAYWATCH_KAFKA_DIR": str(tmp_path / "k")}
    settings = BrokerSettings.from_environment(env, port=29092, heap_mb=None)
    assert settings.cache_dir == tmp_path / "c"
    assert settings.data_dir == tmp_path / "k"
    assert settings.port == 29092
    assert settings.heap_mb == 512


def test_from_environment_defaults_under_home_cache() -> None:
    settings = BrokerSettings.from_environment({})
    base = Path("~/.cache/decaywatch").expanduser()
    assert settings.cache_dir == base
    assert settings.data_dir == base / "kafka-broker"


def test_relative_dirs_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = BrokerSettings(data_dir=Path("b"), cache_dir=Path("c"))
    assert settings.data_dir == tmp_path / "b"
    assert settings.cache_dir == tmp_path / "c"


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"heap_mb": 2048}, "heap_mb"),
        ({"heap_mb": 64}, "heap_mb"),
        ({"port": 19093}, "differ"),
        ({"port": 0}, "port"),
        ({"controller_port": 70000}, "controller_port"),
        ({"num_partitions": 0}, "num_partitions"),
    ],
)
def test_invalid_settings_are_rejected(tmp_path: Path, overrides: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        settings_in(tmp_path, **overrides)


# ------------------------------------------------------------------ rendering


def test_server_properties_single_kraft_node(tmp_path: Path) -> None:
    settings = settings_in(tmp_path, host="127.0.0.2", port=29092, controller_port=29093, num_partitions=3)
    props = parse_properties(render_server_properties(settings))
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.2:29093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.2:29092,CONTROLLER://127.0.0.2:29093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.2:29092"
    assert props["log.dirs"] == str(tmp_path / "broker" / "data")
    assert props["num.partitions"] == "3"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert "9093" not in props["listeners"].replace("29093", "")


def test_cluster_id_is_base64url_of_16_bytes() -> None:
    cluster_id = new_cluster_id()
    assert len(cluster_id) == 22
    assert set(cluster_id) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert new_cluster_id() != cluster_id


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(3)
    assert len(set(ports)) == 3
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))


# ------------------------------------------------------------------ jar cache


def test_jar_cache_dir_is_keyed_by_pom_content(tmp_path: Path) -> None:
    pom_a, pom_b = tmp_path / "a.xml", tmp_path / "b.xml"
    pom_a.write_text("<project>a</project>")
    pom_b.write_text("<project>b</project>")
    dir_a = LocalKafka(settings_in(tmp_path), pom_path=pom_a).jar_cache_dir
    dir_b = LocalKafka(settings_in(tmp_path), pom_path=pom_b).jar_cache_dir
    assert dir_a.parent == tmp_path / "cache"
    assert dir_a.name.startswith("kafka-") and len(dir_a.name) == len("kafka-") + 12
    assert dir_a != dir_b


def test_fetch_with_complete_cache_needs_no_maven(tmp_path: Path) -> None:
    kafka = LocalKafka(settings_in(tmp_path), which=which_only())
    complete_jar_cache(kafka)
    assert kafka.fetch() == kafka.libs_dir


def test_fetch_without_maven_says_so(tmp_path: Path) -> None:
    kafka = LocalKafka(settings_in(tmp_path), which=which_only(java="/usr/bin/java"))
    with pytest.raises(ToolMissingError, match=r"`mvn` was not found on PATH") as caught:
        kafka.fetch()
    assert caught.value.tool == "mvn"


def test_failed_maven_reports_command_and_output_and_is_retried(tmp_path: Path) -> None:
    mvn = script(tmp_path / "mvn", 'echo "[ERROR] Could not resolve dependencies: boom"; exit 1')
    kafka = LocalKafka(settings_in(tmp_path), which=which_only(mvn=mvn))
    with pytest.raises(KafkaRunnerError) as caught:
        kafka.fetch()
    message = str(caught.value)
    assert "exit code 1" in caught.value.summary
    assert "dependency:copy-dependencies" in message and mvn in message
    assert "Could not resolve dependencies: boom" in message
    assert not (kafka.jar_cache_dir / "libs.complete").exists()

    # An interrupted or failed download leaves no marker, so the next fetch runs mvn again.
    good_mvn = script(
        tmp_path / "mvn-ok",
        'for arg; do case "$arg" in -DoutputDirectory=*) dir="${arg#-DoutputDirectory=}";; esac; done\n'
        'mkdir -p "$dir" && touch "$dir/kafka_2.13-4.1.1.jar" "$dir/kafka-clients-4.1.1.jar"',
    )
    kafka = LocalKafka(settings_in(tmp_path), which=which_only(mvn=good_mvn))
    libs = kafka.fetch()
    assert sorted(p.name for p in libs.iterdir()) == ["kafka-clients-4.1.1.jar", "kafka_2.13-4.1.1.jar"]
    assert (kafka.jar_cache_dir / "libs.complete").read_text().startswith("2 jars")


# ------------------------------------------------------------------ lifecycle without a broker


def test_start_without_java_says_so_before_downloading(tmp_path: Path) -> None:
    kafka = LocalKafka(settings_in(tmp_path), which=which_only(mvn="/usr/bin/mvn"))
    with pytest.raises(ToolMissingError, match=r"`java` was not found on PATH.*JDK 17"):
        kafka.start(timeout=5)
    assert not kafka.jar_cache_dir.exists()


def test_start_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        kafka = LocalKafka(settings_in(tmp_path, port=port, controller_port=free_port()), which=which_only(java="java"))
        with pytest.raises(KafkaRunnerError, match=rf"127\.0\.0\.1:{port} is not available"):
            kafka.start(timeout=5)


def prepared_broker(tmp_path: Path, java_body: str) -> LocalKafka:
    """A runner whose jars are 'cached' and storage 'formatted', with a stand-in java."""
    java = script(tmp_path / "java", java_body)
    port, controller_port = free_ports(2)
    kafka = LocalKafka(settings_in(tmp_path, port=port, controller_port=controller_port), which=which_only(java=java))
    complete_jar_cache(kafka)
    kafka.settings.storage_dir.mkdir(parents=True)
    (kafka.settings.storage_dir / "meta.properties").write_text("version=1\n")
    return kafka


def test_start_fails_fast_with_log_tail_when_the_jvm_exits(tmp_path: Path) -> None:
    kafka = prepared_broker(tmp_path, 'echo "ERROR Address already in use (kafka.network.SocketServer)"; exit 7')
    began = time.monotonic()
    with pytest.raises(KafkaRunnerError, match="exited with code 7") as caught:
        kafka.start(timeout=30)
    assert time.monotonic() - began < 10
    assert "Address already in use" in caught.value.details
    assert not kafka.settings.pid_path.exists()
    assert not kafka.status().running


def test_start_times_out_kills_the_jvm_and_keeps_no_pid(tmp_path: Path) -> None:
    kafka = prepared_broker(tmp_path, 'echo "still booting"; exec sleep 60')
    with pytest.raises(KafkaRunnerError, match=r"within 0\.5 s") as caught:
        kafka.start(timeout=0.5)
    assert "still booting" in caught.value.details
    assert not kafka.settings.pid_path.exists()
    assert kafka._process is not None and kafka._process.poll() is not None


def test_format_failure_reports_the_storage_tool_output(tmp_path: Path) -> None:
    kafka = prepared_broker(tmp_path, 'echo "Invalid cluster.id"; exit 1')
    (kafka.settings.storage_dir / "meta.properties").unlink()
    with pytest.raises(KafkaRunnerError, match="Formatting Kafka storage failed") as caught:
        kafka.start(timeout=10)
    assert "kafka.tools.StorageTool format" in caught.value.details
    assert "Invalid cluster.id" in caught.value.details
    cluster_id = kafka.settings.cluster_id_path.read_text().strip()
    assert f"--cluster-id {cluster_id}" in caught.value.details


def test_stop_and_status_when_nothing_ever_ran(tmp_path: Path) -> None:
    kafka = LocalKafka(settings_in(tmp_path))
    assert kafka.stop() is False
    assert kafka.stop() is False
    status = kafka.status()
    assert not status.running and status.pid is None
    assert status.bootstrap_servers == "127.0.0.1:9092"
    assert not kafka.settings.data_dir.exists()  # stop/status create nothing


def test_stale_pid_file_of_another_process_is_not_our_broker(tmp_path: Path) -> None:
    kafka = LocalKafka(settings_in(tmp_path))
    kafka.settings.data_dir.mkdir(parents=True)
    kafka.settings.pid_path.write_text(f"{os.getpid()}\n")  # alive, but not kafka.Kafka
    assert not kafka.status().running
    assert kafka.stop() is False
    assert not kafka.settings.pid_path.exists()


# ------------------------------------------------------------------ command line


def run_cli(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser()
    kafka_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.run(args))


def test_cli_status_exit_code_3_when_not_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["kafka", "status", "--data-dir", str(tmp_path / "b"), "--cache-dir", str(tmp_path / "c")]) == 3
    assert "not running" in capsys.readouterr().out


def test_cli_stop_when_not_running_is_success(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["kafka", "stop", "--data-dir", str(tmp_path / "b")]) == 0
    assert "No Kafka broker running" in capsys.readouterr().out


def test_cli_errors_are_one_line_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli(["kafka", "start", "--port", "19093", "--data-dir", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("decaywatch kafka start: error: port and controller_port must differ")
    assert "Traceback" not in err


@pytest.mark.skipif(shutil.which("java") is None, reason="needs java on PATH to reach the port check")
def test_cli_start_on_a_taken_port_fails_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = run_cli(["kafka", "start", "--port", str(port), "--controller-port", str(free_port()),
                        "--data-dir", str(tmp_path / "b"), "--cache-dir", str(tmp_path / "c")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and f"127.0.0.1:{port} is not available" in err


def test_cluster_ids_never_start_with_a_dash() -> None:
    from decaywatch.deploy.kafka.runner import new_cluster_id

    draws = iter([b"\xf8" + b"\x00" * 15, b"\x00" * 16])  # the first encodes to "-AAAA...", the second to "AAAA..."
    assert new_cluster_id(lambda n: next(draws)) == "A" * 22
