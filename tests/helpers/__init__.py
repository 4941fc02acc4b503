"""What several test modules share; test modules import from here, never from each other.

`from helpers.<module> import ...` resolves as `from factories import ...` did before: tests/ has no __init__.py,
so pytest (importmode "prepend") puts tests/ on sys.path when it imports tests/conftest.py and the test modules.
Fixtures are registered in tests/conftest.py (`pytest_plugins`), so test modules only request them by name.

- factories: module readings, configs, masters and their runs on explicit time, tick inputs for one rule
- mosquitto: a real broker (fixtures `mosquitto`, `mosquitto_auth`, `mosquitto_tls`) and a recording subscriber
- ports: a free TCP port, a port held busy, whether a port listens
- buses: the gateway on python-can virtual buses, taps that record frames, the simulator, Pylontech decoding
- modbus: the Modbus server on an ephemeral port with an injected clock, a client, requests packed by hand
- socat: a pseudo-terminal pair (fixture `pty_pair`, skipped without socat), optionally on fixed links
- modbus_rtu: the Modbus RTU server in a task and a pymodbus serial client playing the Fronius GEN24
- service: `_serve` in a task, a NOTIFY_SOCKET (fixture `notify`), config files, signals, metrics and status
- breakable: a master whose step raises on demand
- frames: every DBC the decoders must handle, and random payloads of their messages (every multiplexer branch)
- home_assistant: a checker of Home Assistant's MQTT discovery rules (and of the Energy dashboard's)
- clocks: a clock a test sets, anchored to a fixed wall-clock time, and ISO times read back as Unix seconds
- web: an operator token file and a reader of the dashboard's Server-Sent Events
- history: the history read back through `bms-gateway events --json` and `history --json`
- disks: broken disks for the history's fault tests (a small tmpfs, a full one, a read-only file)
"""
