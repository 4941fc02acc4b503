"""`bms-gateway join-check N`: the expansion assistant's answer from a running gateway's web API, for a terminal.

The answer is computed by the gateway (`gateway.master.joining`, on its latest snapshot); this only fetches
`/api/join-check/N` and prints it. Exit codes: 0 the module may join now (or is in the bank), 1 not now, 2 no
such module address, 3 the gateway is unreachable.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

EXIT_YES, EXIT_NOT_NOW, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


def fetch(url: str, address: int, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) of `/api/join-check/<address>` under the dashboard at `url`."""
    target = urllib.parse.urljoin(url if url.endswith("/") else url + "/", f"api/join-check/{address}")
    try:
        with urllib.request.urlopen(target, timeout=timeout) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read() or b"{}")


def lines(answer: dict[str, Any]) -> list[str]:
    """The answer as a person reads it: the summary, then each missing thing with what to do."""
    out = [answer["summary"]]
    bank, module = answer.get("bank"), answer.get("module")
    if bank is not None:
        shown = f"bank: SOC {bank['soc']:.1f} %, {bank['voltage']:.2f} V, {bank['current']:+.1f} A"
        if module is not None:
            shown += f"; module {answer['address']}: SOC {module['soc']:.1f} %, {module['voltage']:.2f} V"
        out.append(shown)
    for item in answer["items"]:
        out.append(f"  {'missing' if item['blocking'] else 'note'}: {item['text']}")
        out.append(f"    -> {item['action']}")
    return out


def run(url: str, address: int, *, as_json: bool = False) -> tuple[int, str]:
    """(exit code, text to print) for `join-check`."""
    try:
        status, answer = fetch(url, address)
    except (OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        return EXIT_UNREACHABLE, f"bms-gateway: cannot reach the gateway's dashboard at {url}: {reason}"
    if status != 200:
        return EXIT_USAGE, f"bms-gateway: {answer.get('error', f'HTTP {status}')}"
    code = EXIT_YES if answer.get("can_join") else EXIT_NOT_NOW
    return code, json.dumps(answer, indent=1) if as_json else "\n".join(lines(answer))
