"""`bms-gateway`: run, demo, monitor, status, join-check, simulate, replay, decode, check-config, inverters, events,
history.

Exit codes: 0 success, 1 runtime failure, 2 bad config or bad arguments (one line per problem, naming the key) or
a log with no readable frame (naming the file and the line).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import tempfile
import time
import tomllib
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tomli_w

from gateway import __version__, config, logs
from gateway.errors import ConfigError, DecodeError, GatewayError, LogError, unwrap
from gateway.history.events import LEVELS

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
PROFILE_NAMES = typing.get_args(config.ModuleProfileName)
RELOAD_SETTLE = 1.0
"""Seconds a SIGHUP waits for the next one before the file is read: a storm of them is one reload."""
STOP_TIMEOUT = 5.0
"""Seconds the edges get to stop (after the inverter got the fail-safe set) before the process exits anyway."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or EXIT_OK)
    except ConfigError as err:
        for problem in err.problems:
            print(f"bms-gateway: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, DecodeError) as err:
        print(f"bms-gateway: {err}", file=sys.stderr)
        return EXIT_USAGE
    except GatewayError as err:
        print(f"bms-gateway: {err}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:
        # The reader went away (`decode ... | head`): not an error; keep Python from complaining at exit.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bms-gateway", description="Master BMS gateway for stackable LiFePO4 batteries."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the gateway with a config file until SIGINT/SIGTERM")
    p.add_argument("--config", "-c", type=Path, required=True, help="TOML config file")
    p.set_defaults(handler=_run)

    p = sub.add_parser("demo", help="simulated stack + gateway on python-can's virtual bus, no hardware needed")
    p.add_argument("--modules", type=int, default=8, help="simulated modules (default 8)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--current", type=float, default=40.0, help="bank current in A, + = charging (default 40)")
    p.add_argument("--config", "-c", type=Path, default=None, help="run this config instead of the embedded one")
    p.add_argument("--fault", action="append", default=[], metavar="SPEC", help="KIND:MODULE[@T][=VALUE]")
    p.add_argument("--monitor", action="store_true", help="show the live view of the stack instead of log lines")
    p.add_argument(
        "--inverter", metavar="PROFILE", default=None, help="speak PROFILE to a simulated inverter of that kind"
    )
    p.add_argument(
        "--profile",
        choices=sorted(PROFILE_NAMES),
        default="module",
        help="the modules' BMS (default: our module protocol); a battery with its own port gets a bus each",
    )
    p.set_defaults(handler=_demo)

    p = sub.add_parser("inverters", help="list the inverter profiles, or print one profile's frame table")
    p.add_argument("profile", nargs="?", metavar="PROFILE", help="a profile (or alias) to describe")
    p.set_defaults(handler=_inverters)

    p = sub.add_parser("monitor", help="live view of a running gateway, from its MQTT topics")
    p.add_argument("--mqtt", default="127.0.0.1:1883", metavar="HOST[:PORT]", help="broker (default 127.0.0.1:1883)")
    p.add_argument("--id", default="stack1", help="the gateway's [gateway] id (default stack1)")
    p.add_argument("--base-topic", default="bms", help="the gateway's [mqtt] base_topic (default bms)")
    p.set_defaults(handler=_monitor)

    p = sub.add_parser(
        "status", help="summary of a running gateway; exit 0 ok, 1 warning, 2 protection or not valid, 3 unreachable"
    )
    p.add_argument("--url", default="http://127.0.0.1:9108/metrics", help="its [metrics] endpoint")
    p.set_defaults(handler=_status)

    p = sub.add_parser(
        "join-check",
        help="may module N join the bank now? what is missing and what to do, from a running gateway's web API; "
        "exit 0 yes (or in the bank), 1 not now, 3 unreachable",
    )
    p.add_argument("address", type=int, help="the module's address")
    p.add_argument("--url", default="http://127.0.0.1:8080/", help="its [web] dashboard (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the API's JSON answer")
    p.set_defaults(handler=_join_check)

    p = sub.add_parser("simulate", help="simulated modules: write a log file, or send on a bus in real time")
    p.add_argument("--modules", type=int, default=8)
    p.add_argument("--current", type=float, default=20.0, help="bank current in A, + = charging")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of traffic (default 60)")
    p.add_argument("--fault", action="append", default=[], metavar="SPEC", help="KIND:MODULE[@T][=VALUE]")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--profile",
        choices=sorted(PROFILE_NAMES),
        default="module",
        help="the modules' BMS: its frames, on one channel per module where it carries one battery per bus "
        "(<channel>-<n>, or channel names in the log)",
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--output", "-o", type=Path, help="log file; format by extension: .log .asc .blf")
    target.add_argument("--interface", help="python-can interface to send on (with --channel)")
    p.add_argument("--channel", help="channel for --interface")
    p.add_argument("--bitrate", type=int, default=None, help="default: the profile's")
    p.set_defaults(handler=_simulate)

    p = sub.add_parser("replay", help="run ingest + master on a recorded log, as fast as the CPU allows")
    p.add_argument("log", type=Path)
    p.add_argument("--config", "-c", type=Path, required=True)
    p.add_argument("--snapshots", type=Path, help="write one JSON snapshot per master tick (JSON lines)")
    p.add_argument("--output", "-o", type=Path, help="write the frames the gateway would send (.log .asc .blf)")
    p.add_argument("--history", type=Path, metavar="FILE", help="write history (events, counters) on the log's clock")
    p.set_defaults(handler=_replay)

    p = sub.add_parser("events", help="the history's events: alarms, modules, starts and stops, reloads, actions")
    _history_source(p)
    p.add_argument("--since", metavar="2h|ISO", help="only events since then: 30m, 2h, 7d ago, or an ISO time (UTC)")
    p.add_argument("--module", type=int, metavar="N", help="only events that name module N")
    p.add_argument("--level", choices=LEVELS, help="only events of this level or worse")
    p.add_argument("--limit", type=int, metavar="N", help="only the last N events")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(handler=_events)

    p = sub.add_parser("history", help="the history's lifetime counters, daily ageing samples and the master's memory")
    _history_source(p)
    p.add_argument("--module", type=int, metavar="N", help="only module N (0: the bank)")
    p.add_argument("--json", action="store_true", help="one JSON document")
    p.set_defaults(handler=_history)

    p = sub.add_parser("decode", help="print the decoded module frames of a log")
    p.add_argument("log", type=Path)
    p.add_argument("--dbc", type=Path, default=None, help="DBC to decode with (default: the profile's)")
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--profile",
        choices=sorted(PROFILE_NAMES),
        default="module",
        help="the modules' BMS: its DBC and addressing (default: our module protocol)",
    )
    source.add_argument(
        "--config", "-c", type=Path, help="decode as the gateway would: each module bus's DBC, profile, addressing"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(handler=_decode)

    p = sub.add_parser("check-config", help="validate a config file and print the effective config")
    p.add_argument("file", type=Path)
    p.set_defaults(handler=_check_config)
    return parser


def _history_source(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group()
    source.add_argument("--db", type=Path, metavar="FILE", help="the history database to read")
    source.add_argument(
        "--config", "-c", type=Path, help=f"read the database this config writes (default {config.RUN_HISTORY})"
    )


def _history_path(args: argparse.Namespace) -> Path:
    if args.db is not None:
        return Path(args.db)
    if args.config is not None:
        cfg = config.load(args.config)
        return cfg.history.path or config.RUN_HISTORY
    return config.RUN_HISTORY


def demo_history() -> Path:
    """The demo's history: a file in a temp directory of this user's, kept across demos (`events --db` it)."""
    directory = Path(tempfile.gettempdir()) / f"bms-gateway-demo-{os.getuid()}"
    directory.mkdir(mode=0o700, exist_ok=True)
    return directory / "history.sqlite"


def _check_config(args: argparse.Namespace) -> int:
    cfg = config.with_history_default(config.load(args.file), config.RUN_HISTORY)
    from gateway.service import Gateway  # noqa: PLC0415 - building it also checks the DBC and signal map

    Gateway(cfg)
    sys.stdout.write(tomli_w.dumps(config.to_toml_dict(cfg)))
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    cfg = config.with_history_default(config.load(args.config), config.RUN_HISTORY)
    logs.configure(cfg.gateway.log_level, cfg.gateway.log_format)
    runner = asyncio.Runner()
    code = runner.run(_serve(cfg, reload_from=args.config))
    if asyncio.all_tasks(runner.get_loop()):
        # An edge that would not stop in STOP_TIMEOUT (the fail-safe set is out): closing the loop would wait
        # for it, and systemd would have to kill us. Leave now, with what was logged.
        logging.shutdown()
        os._exit(code)
    runner.close()
    return code


async def _serve(
    cfg: config.Config,
    *,
    reload_from: Path | None,
    extra: dict[str, Any] | None = None,
    duration: float | None = None,
    monitor: bool = False,
    show_url: bool = False,
) -> int:
    """Run a Gateway until SIGINT/SIGTERM (or `duration`); SIGHUP reloads `reload_from`.

    `extra` are named tasks run beside the gateway (the demo's simulator); `monitor` shows the live view, else
    a status line is logged every few seconds when `extra` is given (the demo). `show_url` prints the web
    dashboard's address on stdout once it listens (the demo).
    """
    from gateway.service import Gateway  # noqa: PLC0415 - keeps `--help` quick

    log = logs.get("gateway")
    gateway = Gateway(cfg)
    extra = dict(extra or {})
    if monitor:
        extra["monitor"] = lambda: _live_view(gateway)
    elif extra:
        extra["status"] = lambda: _status_lines(gateway)
    if show_url and gateway.web is not None:
        extra["url"] = lambda: _print_url(gateway)
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    stop = asyncio.Event()

    pending: list[asyncio.TimerHandle] = []

    def reload() -> None:
        pending.clear()
        if reload_from is None:
            return
        try:
            kept = gateway.reload(config.load(reload_from))
        except ConfigError as err:
            log.warning("reload refused, keeping the running config", problems=err.problems)
            return
        log.info("config reloaded", needs_restart=kept)

    def hangup() -> None:
        """SIGHUP: read the file once it has been quiet for RELOAD_SETTLE s (an editor's save sends a storm)."""
        for handle in pending:
            handle.cancel()
        pending[:] = [loop.call_later(RELOAD_SETTLE, reload)]

    why: list[str] = []

    def stop_on(sig: signal.Signals) -> None:
        why[:] = [sig.name]
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_on, sig)
    loop.add_signal_handler(signal.SIGHUP, hangup)
    log.info("starting", version=__version__, gateway_id=cfg.gateway.id, config=str(cfg.source or "embedded"))
    runner = asyncio.create_task(gateway.run(extra), name="gateway")
    try:
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({runner, waiter}, timeout=duration, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if runner.done():
            try:
                runner.result()
            except ExceptionGroup as group:
                raise unwrap(group) from None
            return EXIT_OK
        gateway.notifier.stopping()
        gateway.stopping(why[0] if why else f"ran for its duration of {duration:g} s")
        log.info("stopping", reason=gateway.stop_reason)
        await gateway.send_failsafe()
        runner.cancel()
        await asyncio.wait({runner}, timeout=STOP_TIMEOUT)
        if not runner.done():
            waiting = sorted(t.get_name() for t in asyncio.all_tasks() if t is not main and not t.done())
            log.warning("stopping takes too long; exiting without waiting", seconds=STOP_TIMEOUT, waiting=waiting)
            return EXIT_OK
    finally:
        for handle in pending:
            handle.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    log.info("stopped")
    return EXIT_OK


async def _status_lines(gateway: Any) -> None:
    from gateway.service import status_line  # noqa: PLC0415

    log = logs.get("gateway.demo")
    while True:
        await asyncio.sleep(5.0)
        log.info(status_line(gateway.hub.latest))


async def _print_url(gateway: Any) -> None:
    """The dashboard's address, once it listens (its port may be 0 in the config)."""
    while gateway.web.port is None:  # noqa: ASYNC110 - the web edge sets its port once it listens
        await asyncio.sleep(0.05)
    print(f"bms-gateway demo: dashboard at {gateway.web.url}", flush=True)


async def _live_view(gateway: Any) -> None:
    from rich.live import Live  # noqa: PLC0415

    from gateway import payload  # noqa: PLC0415
    from gateway.monitor import inverter_dict, view  # noqa: PLC0415

    def render() -> Any:
        s = gateway.hub.latest
        schedule = gateway.core.inverter
        inverter = None if schedule is None else inverter_dict(schedule.state, gateway.clock(), gateway.core.link.info)
        modules = {a: payload.module_dict(v, s.t) for a, v in s.modules.items()}
        return view(payload.bank_dict(s, wall=gateway.clock.anchor()), modules, inverter)

    with Live(render(), refresh_per_second=2) as live:
        while True:
            await asyncio.sleep(0.5)
            live.update(render())


DEMO_CONFIG = """
[gateway]
id = "demo"
[can.modules]
interface = "virtual"
channel = "demo-modules"
[can.inverter]
interface = "virtual"
channel = "demo-inverter"
[modbus]
host = "127.0.0.1"
port = 5020
[mqtt]
host = "127.0.0.1"
port = 1883
[web]
host = "127.0.0.1"
port = 8080
"""


def _demo(args: argparse.Namespace) -> int:
    from gateway.can.bus import open_bus  # noqa: PLC0415
    from gateway.outputs import inverter  # noqa: PLC0415
    from gateway.sim import Simulator, parse_fault  # noqa: PLC0415
    from gateway.sim.bus import run_on_bus, run_translated  # noqa: PLC0415
    from gateway.sim.inverter import SimInverter, run_inverter  # noqa: PLC0415
    from gateway.sim.profiled import Translator, bus_entries  # noqa: PLC0415

    faults = [parse_fault(spec) for spec in args.fault]
    raw = tomllib.loads(DEMO_CONFIG)
    raw["can"]["modules"] = bus_entries(args.profile, args.modules, interface="virtual", channel="demo-modules")
    if args.inverter is not None:
        if args.inverter not in inverter.PROFILES and args.inverter not in inverter.ALIASES:
            raise ValueError(f"--inverter: no profile {args.inverter!r} (`bms-gateway inverters` lists them)")
        raw["can"]["inverter"]["protocol"] = args.inverter
        if inverter.profile(args.inverter).high_voltage:
            raw["bank"] = {"strings": [list(range(1, args.modules + 1))]}  # a high-voltage tower: one string
    cfg = config.load(args.config) if args.config is not None else config.parse(raw)
    if cfg.history.enabled and cfg.history.path is None:
        cfg = config.with_history_default(cfg, demo_history())
    logs.configure("error" if args.monitor else cfg.gateway.log_level, cfg.gateway.log_format)
    strings = [list(s) for s in cfg.bank.strings] or None
    sim = Simulator(modules=args.modules, current=args.current, strings=strings, faults=faults)
    inv = cfg.can.inverter

    async def simulate() -> None:
        buses = [open_bus(m.interface, m.channel, m.rate) for m in cfg.can.modules]
        try:
            if [m.profile for m in cfg.can.modules] == ["module"]:
                await run_on_bus(buses[0], sim, duration=None)
            else:
                links = [
                    (bus, Translator(m, index=i)) for i, (bus, m) in enumerate(zip(buses, cfg.can.modules, strict=True))
                ]
                await run_translated(links, sim, duration=None)
        finally:
            for bus in buses:
                bus.shutdown()

    async def talk() -> None:
        """The simulated inverter of the profile: polls, pairs and heartbeats like the real one."""
        bus = open_bus(inv.interface, inv.channel, inv.bitrate)
        try:
            await run_inverter(bus, SimInverter(inverter.profile(inv.protocol)))
        finally:
            bus.shutdown()

    extra = {"simulator": simulate}
    if args.inverter is not None:
        extra["inverter"] = talk
    return asyncio.run(
        _serve(
            cfg,
            reload_from=args.config,
            extra=extra,
            duration=args.duration,
            monitor=args.monitor,
            show_url=True,
        )
    )


def _inverters(args: argparse.Namespace) -> int:
    from gateway.outputs import inverter  # noqa: PLC0415
    from gateway.outputs.inverter.docs import frame_table, listing  # noqa: PLC0415

    if args.profile is None:
        print(listing())
        return EXIT_OK
    if args.profile not in inverter.PROFILES and args.profile not in inverter.ALIASES:
        raise ValueError(f"no inverter profile {args.profile!r} (`bms-gateway inverters` lists them)")
    print(frame_table(args.profile))
    return EXIT_OK


def _monitor(args: argparse.Namespace) -> int:
    from gateway.monitor import follow_mqtt  # noqa: PLC0415

    host, _, port = args.mqtt.partition(":")
    asyncio.run(follow_mqtt(host, int(port or 1883), args.base_topic, args.id))
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from gateway import status  # noqa: PLC0415

    code, lines = status.run(args.url)
    print("\n".join(lines))
    return code


def _join_check(args: argparse.Namespace) -> int:
    from gateway import joincheck  # noqa: PLC0415

    code, text = joincheck.run(args.url, args.address, as_json=args.json)
    print(text)
    return code


def _simulate(args: argparse.Namespace) -> int:
    from gateway.sim import Simulator, parse_fault  # noqa: PLC0415
    from gateway.sim.bus import run_on_bus, run_translated, write_log  # noqa: PLC0415
    from gateway.sim.profiled import Translator, bus_entries  # noqa: PLC0415

    faults = [parse_fault(spec) for spec in args.fault]
    sim = Simulator(modules=args.modules, current=args.current, faults=faults, seed=args.seed)
    entries = bus_entries(
        args.profile, args.modules, interface=args.interface or "virtual", channel=args.channel or "modules"
    )
    buses = config.parse({"can": {"modules": entries}}).can.modules
    translators = [] if args.profile == "module" else [Translator(m, index=i) for i, m in enumerate(buses)]
    if args.output is not None:
        count = write_log(args.output, sim, args.duration, translators)
        print(f"wrote {count} frames ({args.duration:g} s, {args.modules} modules) to {args.output}")
        return EXIT_OK
    if not args.channel:
        raise ValueError("--interface needs --channel")
    from gateway.can.bus import open_bus  # noqa: PLC0415

    opened = [open_bus(m.interface, m.channel, args.bitrate or m.rate) for m in buses]
    try:
        if translators:
            links = list(zip(opened, translators, strict=True))
            asyncio.run(run_translated(links, sim, duration=args.duration))
        else:
            asyncio.run(run_on_bus(opened[0], sim, duration=args.duration))
    finally:
        for bus in opened:
            bus.shutdown()
    return EXIT_OK


def _decode_buses(args: argparse.Namespace) -> list[config.ModuleBusSection]:
    """The module buses a log is decoded for: the config's, else one of the profile (with `--dbc`'s DBC)."""
    from gateway.can import profiles  # noqa: PLC0415
    from gateway.can.addressing import Scheme  # noqa: PLC0415

    if args.config is not None:
        if args.dbc is not None:
            raise ConfigError(["--dbc: the config names each bus's DBC (can.modules.dbc)"])
        return list(config.load(args.config).can.modules)
    entry: dict[str, object] = {"profile": args.profile}
    if profiles.profile(args.profile).addressing.scheme is Scheme.FIXED:
        entry["address"] = 1  # one battery per bus: it is module 1
    if args.dbc is not None:
        entry["dbc"] = str(args.dbc)
    return list(config.parse({"can": {"modules": entry}}).can.modules)


def _replay(args: argparse.Namespace) -> int:
    from gateway.replay import progress_bar, replay  # noqa: PLC0415

    cfg = config.load(args.config)
    logs.configure(cfg.gateway.log_level, "console" if sys.stderr.isatty() else cfg.gateway.log_format)
    with progress_bar(args.log, sys.stderr) as progress:
        result = replay(
            args.log, cfg, snapshots=args.snapshots, output=args.output, progress=progress, history=args.history
        )
    print(result.summary())
    if result.damage is not None:
        _report_damage(result.damage, "replayed", result.frames)
    return EXIT_OK


def _events(args: argparse.Namespace) -> int:
    from gateway.history import report  # noqa: PLC0415
    from gateway.history.events import event_dict  # noqa: PLC0415
    from gateway.history.store import Reader  # noqa: PLC0415

    start = None if args.since is None else report.since(args.since, time.time())
    with Reader(_history_path(args)) as reader:
        found = reader.events(since=start, module=args.module, level=args.level, limit=args.limit)
    for event in found:
        line = json.dumps(event_dict(event)) if args.json else report.event_line(event)
        sys.stdout.write(line + "\n")
    return EXIT_OK


def _history(args: argparse.Namespace) -> int:
    from gateway.history import report  # noqa: PLC0415
    from gateway.history.store import Reader  # noqa: PLC0415

    with Reader(_history_path(args)) as reader:
        counters, daily, memory, meta = reader.counters(), reader.daily(args.module), reader.memory(), reader.meta()
    if args.module is not None:
        counters = {s: c for s, c in counters.items() if s == args.module}
    if args.json:
        sys.stdout.write(json.dumps(report.history_dict(counters, daily, memory, meta), indent=2) + "\n")
        return EXIT_OK
    lines: list[str] = []
    for scope, c in counters.items():
        lines += report.counters_lines(scope, c)
    lines += report.daily_lines(daily)
    lines += report.memory_lines(memory)
    if meta.get("running") == "1":
        lines += ["", "a gateway is writing this history now (or its last run ended without a clean stop)"]
    sys.stdout.write("\n".join(lines).lstrip("\n") + "\n")
    return EXIT_OK


def _report_damage(damage: LogError, done: str, frames: int) -> None:
    """A damaged log was used up to the damage: say where, and that the rest was not read."""
    print(f"bms-gateway: {damage}; {done} the {frames} frames before it, not the rest of the file", file=sys.stderr)


def _decode(args: argparse.Namespace) -> int:
    from gateway.can import dbc  # noqa: PLC0415
    from gateway.can.addressing import Scheme  # noqa: PLC0415
    from gateway.can.codec import ModuleCodec  # noqa: PLC0415
    from gateway.can.logfile import LogFile  # noqa: PLC0415

    buses = _decode_buses(args)
    codecs = [ModuleCodec.from_config(bus) for bus in buses]
    bus_of = {bus.channel: i for i, bus in enumerate(buses)}
    out = sys.stdout
    unknown = 0
    frames = LogFile(args.log)
    for msg in frames:
        codec = codecs[bus_of.get(str(msg.channel), 0)]  # as replay routes: by channel, else the first bus
        found = codec.message(msg.arbitration_id)
        if found is None:
            unknown += 1
            continue
        message, address = found
        try:
            decoded = dbc.decode(message, bytes(msg.data))
            signals = {k: round(v, 6) if isinstance(v, float) else v for k, v in decoded.items()}
        except Exception as err:
            raise DecodeError(f"{args.log}: frame {msg.arbitration_id:#x} at {msg.timestamp}: {err}") from err
        addressing = codec.addressing
        if addressing.scheme is Scheme.SIGNAL and addressing.signal in signals:  # the payload names the module
            address = int(signals[addressing.signal]) + addressing.offset
        if args.json:
            record = {
                "t": msg.timestamp,
                "id": msg.arbitration_id,
                "address": address,
                "message": message.name,
                "signals": signals,
            }
            out.write(json.dumps(record) + "\n")
        else:
            values = " ".join(f"{k}={v}" for k, v in signals.items())
            where = "?" if address is None else address
            out.write(f"{msg.timestamp:.6f} {msg.arbitration_id:03X} {message.name}[{where}] {values}\n")
    if unknown:
        print(f"{unknown} frames with IDs the DBC does not know", file=sys.stderr)
    if frames.damage is not None:
        _report_damage(frames.damage, "decoded", frames.frames)
    return EXIT_OK
