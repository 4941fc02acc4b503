"""The systemd unit and the example config shipped in systemd/: what the service promises, checked on the files.

`systemd-analyze verify` runs on a copy of the unit whose ExecStart binary is /bin/true (the venv path of a real
installation does not exist here); the test skips only when systemd-analyze is not installed.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from gateway import config
from gateway.service import Gateway

SYSTEMD = Path(__file__).parent.parent / "systemd"
UNIT = SYSTEMD / "bms-gateway.service"
EXAMPLE = SYSTEMD / "gateway.toml"
INSTALLED_BINARY = "/opt/bms-gateway/.venv/bin/bms-gateway"


def unit_keys(text: str) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> every value given, in order (systemd allows a key more than once)."""
    keys: dict[tuple[str, str], list[str]] = defaultdict(list)
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        keys[(section, key.strip())].append(value.strip())
    return keys


@pytest.fixture(scope="module")
def unit() -> dict[tuple[str, str], list[str]]:
    return unit_keys(UNIT.read_text())


def one(unit: dict[tuple[str, str], list[str]], key: str, section: str = "Service") -> str:
    values = unit[(section, key)]
    assert len(values) == 1, f"[{section}] {key}: {values}"
    return values[0]


def words(unit: dict[tuple[str, str], list[str]], key: str, section: str = "Service") -> list[str]:
    return [w for value in unit[(section, key)] for w in value.split()]


def test_the_unit_is_a_notify_service_with_a_watchdog_that_restarts_on_failure(
    unit: dict[tuple[str, str], list[str]],
) -> None:
    assert one(unit, "Type") == "notify"
    assert one(unit, "NotifyAccess") == "main"
    watchdog = float(one(unit, "WatchdogSec").removesuffix("s"))
    assert 1.0 <= watchdog <= 60.0
    assert one(unit, "Restart") == "on-failure"
    assert one(unit, "RestartPreventExitStatus") == "2"  # a bad config: restarting cannot fix it
    # `_serve` allows the gateway 5 s to stop (fail-safe frames, MQTT offline) before systemd would kill it.
    assert float(one(unit, "TimeoutStopSec").removesuffix("s")) > 5.0
    command = one(unit, "ExecStart").split()
    assert command[1:] == ["run", "--config", "/etc/bms-gateway/gateway.toml"]
    assert one(unit, "ExecReload") == "/bin/kill -HUP $MAINPID"  # SIGHUP reloads the live settings
    assert one(unit, "WantedBy", "Install") == "multi-user.target"


def test_the_unit_runs_unprivileged_and_locked_down(unit: dict[tuple[str, str], list[str]]) -> None:
    user = unit[("Service", "User")]
    assert unit[("Service", "DynamicUser")] == ["yes"] or (user and user[-1] not in ("", "root", "0"))
    assert one(unit, "ProtectSystem") == "strict"
    assert one(unit, "NoNewPrivileges") == "yes"
    assert one(unit, "ProtectHome") == "yes"
    assert one(unit, "PrivateTmp") == "yes"
    # Only the capability for Modbus on port 502; CAN sockets on an interface that is up need none.
    assert words(unit, "CapabilityBoundingSet") == ["CAP_NET_BIND_SERVICE"]
    assert set(words(unit, "AmbientCapabilities")) <= {"CAP_NET_BIND_SERVICE"}
    families = set(words(unit, "RestrictAddressFamilies"))
    assert {"AF_CAN", "AF_INET", "AF_UNIX"} <= families  # CAN, Modbus/MQTT/metrics, sd_notify
    assert one(unit, "ConfigurationDirectory") == "bms-gateway"  # /etc/bms-gateway/


def test_the_unit_gives_the_history_its_state_directory(unit: dict[tuple[str, str], list[str]]) -> None:
    """ProtectSystem=strict leaves /var/lib read-only: the history's default file must lie in the unit's
    StateDirectory, which systemd creates for the (dynamic) service user and keeps across restarts."""
    state = one(unit, "StateDirectory")
    assert state == "bms-gateway"
    assert config.RUN_HISTORY.parent == Path("/var/lib") / state
    assert config.load(EXAMPLE).history.path in (None, config.RUN_HISTORY)


def test_the_unit_starts_after_the_can_links_of_the_example_config(unit: dict[tuple[str, str], list[str]]) -> None:
    cfg = config.load(EXAMPLE)
    after = words(unit, "After", "Unit")
    buses: list[config.ModuleBusSection | config.InverterBusSection] = [*cfg.can.modules, cfg.can.inverter]
    for bus in buses:
        assert bus.interface == "socketcan"
        assert f"sys-subsystem-net-devices-{bus.channel}.device" in after
    network = unit_keys((SYSTEMD / "80-can.network").read_text())
    assert set(words(network, "Name", "Match")) == {cfg.can.modules[0].channel, cfg.can.inverter.channel}


def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED_BINARY} " in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(f"ExecStart={INSTALLED_BINARY} ", "ExecStart=/bin/true "))
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
    assert result.stderr.strip() == ""


def test_the_example_config_loads_and_the_gateway_constructs(tmp_path: Path) -> None:
    cfg = config.load(EXAMPLE)
    assert cfg.can.modules[0].channel == "can0" and cfg.can.inverter.channel == "can1"
    assert cfg.bank.strings == ((1,), (2,), (3,), (4,))
    assert cfg.bank.min_online <= len(cfg.bank.strings) <= cfg.bank.max_modules
    # The MQTT password lives next to the config, in the unit's ConfigurationDirectory; this machine has none,
    # so the same config points at a stand-in file.
    assert cfg.mqtt.password_file == Path("/etc/bms-gateway/mqtt.pass")
    secret = tmp_path / "mqtt.pass"
    secret.write_text("example\n")
    cfg = dataclasses.replace(cfg, mqtt=dataclasses.replace(cfg.mqtt, password_file=secret))
    gateway = Gateway(cfg)  # builds every edge without opening a bus or a socket
    assert gateway.modbus is not None and gateway.mqtt is not None
    assert gateway.metrics is None
