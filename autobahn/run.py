#!/usr/bin/env python3
"""Run the Autobahn|Testsuite (wstest) against trio_ws and summarise the results.

Sides:
  client  trio_ws as client: ``wstest -m fuzzingserver`` + autobahn/client.py
  server  trio_ws as server: autobahn/server.py + ``wstest -m fuzzingclient``
  both    client, then server (default)

Exit status: 0 every case passed; 1 at least one case failed (behavior FAILED or
UNIMPLEMENTED not allowed by --allow-unimplemented, or behaviorClose other than
OK/INFORMATIONAL); 2 the run itself failed (wstest not installable, a child
crashed or timed out, the report is missing, empty or lacks expected cases).

Stdlib only; run it with the project's Python (client.py/server.py are started
with the same interpreter).
"""

from __future__ import annotations

import argparse
import ast
import atexit
import base64
import datetime
import fnmatch
import importlib.metadata
import json
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
AGENT = "trio_ws"
HOST = "127.0.0.1"
DEFAULT_WSTEST = Path(os.environ.get("WSTEST_PREFIX", "/opt/wstest")) / "wstest"

PASS_BEHAVIOR = {"OK", "NON-STRICT", "INFORMATIONAL"}
PASS_CLOSE = {"OK", "INFORMATIONAL"}
VALUE_ORDER = [
    "OK",
    "NON-STRICT",
    "INFORMATIONAL",
    "UNIMPLEMENTED",
    "WRONG CODE",
    "FAILED BY CLIENT",
    "UNCLEAN",
    "FAILED",
]
SECTIONS = {
    "1": "Framing",
    "2": "Pings/Pongs",
    "3": "Reserved Bits",
    "4": "Opcodes",
    "5": "Fragmentation",
    "6": "UTF-8 Handling",
    "7": "Close Handling",
    "9": "Limits/Performance",
    "10": "Misc",
    "12": "Compression (payloads)",
    "13": "Compression (parameters)",
}
COMPRESSION_SECTIONS = ("12", "13")
SIDE_TITLES = {
    "client": "trio_ws as client (wstest fuzzingserver + autobahn/client.py)",
    "server": "trio_ws as server (autobahn/server.py + wstest fuzzingclient)",
}

# Runs wstest's launcher with autobahn's listenWS() defaulting to 127.0.0.1
# instead of all interfaces ('') -- the fuzzingserver has no option for it.
WSTEST_LOCALHOST_SHIM = """\
import sys
launcher = sys.argv[1]
sys.argv = [launcher] + sys.argv[2:]
class _LocalhostOnly(object):
    name = 'autobahn.twisted.websocket'
    def find_module(self, fullname, path=None):
        return self if fullname == self.name else None
    def load_module(self, fullname):
        sys.meta_path.remove(self)
        __import__(fullname)
        mod = sys.modules[fullname]
        d = list(mod.listenWS.__defaults__)
        d[-1] = HOST
        mod.listenWS.__defaults__ = tuple(d)
        return mod
sys.meta_path.insert(0, _LocalhostOnly())
execfile(launcher, {'__name__': '__main__', '__file__': launcher})
""".replace("HOST", repr(HOST))


class HarnessError(Exception):
    """The run itself failed (as opposed to a test case failing)."""


# --------------------------------------------------------------------------
# child processes


_children: list[subprocess.Popen[bytes]] = []


def spawn(cmd: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group, killed as a whole
        )
    _children.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes] | None, grace: float = 10.0) -> None:
    """Terminate proc's process group (if still running), then SIGKILL it."""
    if proc is None:
        return
    if proc.poll() is None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
    if proc in _children:
        _children.remove(proc)


def stop_all() -> None:
    for proc in list(_children):
        stop(proc, grace=3.0)


def _on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise HarnessError(f"{what} exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise HarnessError(f"{what} did not accept connections on {HOST}:{port} within {timeout:g}s")


def cases_started(log: Path) -> list[str]:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return []
    return re.findall(r"Running test case ID (\S+)", text)


def wait_proc(
    proc: subprocess.Popen[bytes], timeout: float, label: str, wstest_log: Path, total: int | None
) -> int | None:
    """Wait for proc, printing progress every 30 s; None on timeout."""
    start = time.monotonic()
    next_beat = start + 30
    while True:
        try:
            return proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if now - start >= timeout:
            return None
        if now >= next_beat:
            next_beat += 30
            started = cases_started(wstest_log)
            last = started[-1] if started else "-"
            of = "?" if total is None else total
            print(
                f"  [{label}] {now - start:5.0f}s: {len(started)}/{of} cases"
                f" started, current {last}",
                flush=True,
            )


# --------------------------------------------------------------------------
# wstest


def wstest_works(wstest: Path) -> str | None:
    """`wstest -a` output if the launcher works, else None."""
    try:
        out = subprocess.run(
            [str(wstest), "-a"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return " / ".join(line.strip() for line in out.stdout.splitlines() if line.strip())


def ensure_wstest(wstest: Path) -> str:
    version = wstest_works(wstest)
    if version:
        return version
    print(f"wstest not found or not working at {wstest}; running install_wstest.sh", flush=True)
    env = dict(os.environ, WSTEST_PREFIX=str(wstest.parent))
    try:
        rc = subprocess.run(
            ["bash", str(HERE / "install_wstest.sh")], env=env, timeout=1800, check=False
        ).returncode
    except subprocess.TimeoutExpired:
        raise HarnessError("install_wstest.sh did not finish within 1800s") from None
    version = wstest_works(wstest)
    if rc != 0 or not version:
        raise HarnessError(f"install_wstest.sh failed (status {rc}); {wstest} still not working")
    return version


def wstest_cmd(wstest: Path, args: list[str], shim_dir: Path) -> list[str]:
    """Command for wstest; Python 2 launchers run through the 127.0.0.1 shim."""
    try:
        first = wstest.read_bytes()[:200].split(b"\n", 1)[0].decode()
    except (OSError, UnicodeDecodeError):
        first = ""
    interp = shlex.split(first[2:]) if first.startswith("#!") else []
    if interp and "python2" in " ".join(interp):
        shim = shim_dir / "wstest_localhost.py"
        shim.write_text(WSTEST_LOCALHOST_SHIM)
        return [*interp, str(shim), str(wstest), *args]
    return [str(wstest), *args]


def parse_expected(log: Path) -> list[str] | None:
    """The case list wstest prints at start-up ("Cases = [...]")."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    m = re.search(r"^Cases = (\[.*\])\s*$", text, re.M)
    if not m:
        return None
    try:
        return [str(c) for c in ast.literal_eval(m.group(1))]
    except (ValueError, SyntaxError):
        return None


def load_spec(name: str) -> dict[str, Any]:
    path = HERE / "spec" / name
    if path.exists():
        return dict(json.loads(path.read_text()))
    return {"cases": ["*"], "exclude-cases": [], "exclude-agent-cases": {}, "options": {}}


def request_report_update(port: int, timeout: float = 30.0) -> None:
    """Minimal WebSocket handshake to /updateReports (used if client.py died
    before doing it): the fuzzingserver writes its reports on open."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /updateReports?agent={AGENT} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(request.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        if b" 101 " not in data.split(b"\r\n", 1)[0]:
            raise OSError(f"unexpected handshake response {data[:80]!r}")
        if data.split(b"\r\n\r\n", 1)[1] == b"":
            s.recv(4096)  # the close frame sent after the reports are written


# --------------------------------------------------------------------------
# running one side


@dataclass
class SideResult:
    side: str
    outdir: Path
    expected: list[str] | None = None
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    duration: float = 0.0


def prepare_outdir(outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    for pattern in ("index.json", "index.html", "*_case_*.json", "*_case_*.html", "*.log"):
        for f in outdir.glob(pattern):
            f.unlink()


def read_index(res: SideResult, wait: float = 10.0) -> None:
    index = res.outdir / "index.json"
    deadline = time.monotonic() + wait
    while not index.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    if not index.exists():
        res.errors.append(f"no report: {index} was not written")
        return
    try:
        data = json.loads(index.read_text())
    except (OSError, ValueError) as exc:
        res.errors.append(f"cannot read {index}: {exc}")
        return
    res.results = data.get(AGENT) or {}
    if not res.results:
        res.errors.append(f"{index} has no results for agent {AGENT!r} (content: {data!r:.80})")


def check_log_for_tracebacks(res: SideResult, log: Path, what: str) -> None:
    try:
        n = log.read_text(errors="replace").count("Traceback (most recent call last)")
    except OSError:
        return
    if n:
        res.warnings.append(f"{what} logged {n} traceback(s); see {log}")


def run_client_side(args: argparse.Namespace, wstest: Path, outdir: Path) -> SideResult:
    res = SideResult("client", outdir)
    prepare_outdir(outdir)
    port = free_port()
    url = f"ws://{HOST}:{port}"
    spec = load_spec("fuzzingserver.json")
    spec.update({"url": url, "outdir": str(outdir), "cases": args.cases})
    spec["exclude-cases"] = args.exclude
    spec_path = outdir / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=3) + "\n")
    ws_log, client_log = outdir / "wstest.log", outdir / "trio_ws-client.log"
    start = time.monotonic()
    wsproc = client = None
    try:
        cmd = wstest_cmd(wstest, ["-m", "fuzzingserver", "-s", str(spec_path), "-u", "0"], outdir)
        wsproc = spawn(cmd, ws_log, outdir)
        wait_port(port, wsproc, args.startup_timeout, "wstest fuzzingserver")
        res.expected = parse_expected(ws_log)
        if res.expected == []:
            raise HarnessError("no cases selected (check --cases/--exclude)")
        total = len(res.expected) if res.expected is not None else None
        print(f"  wstest fuzzingserver on {url} ({total} cases); running client.py", flush=True)
        cmd = [sys.executable, str(HERE / "client.py"), "--url", url]
        if total is not None:
            # known from wstest's output; saves client.py asking /getCaseCount
            cmd += ["--case-count", str(total)]
        client = spawn(cmd, client_log, REPO)
        rc = wait_proc(client, args.timeout, "client", ws_log, total)
        if rc is None:
            res.errors.append(f"client.py did not finish within {args.timeout:g}s (killed)")
            stop(client)
        elif rc != 0:
            res.errors.append(f"client.py exited with status {rc}; see {client_log}")
        if rc != 0:
            if wsproc.poll() is None:
                try:  # write whatever results there are
                    request_report_update(port)
                except OSError as exc:
                    res.errors.append(f"could not request partial reports: {exc}")
        if wsproc.poll() is not None:
            res.errors.append(f"wstest fuzzingserver exited early (status {wsproc.returncode})")
        read_index(res)
    except HarnessError as exc:
        res.errors.append(str(exc))
    finally:
        stop(client)
        stop(wsproc)
        res.duration = time.monotonic() - start
    check_log_for_tracebacks(res, client_log, "client.py")
    return res


def run_server_side(args: argparse.Namespace, wstest: Path, outdir: Path) -> SideResult:
    res = SideResult("server", outdir)
    prepare_outdir(outdir)
    port = free_port()
    url = f"ws://{HOST}:{port}"
    spec = load_spec("fuzzingclient.json")
    servers = spec.get("servers") or [{"options": {}}]
    servers = [dict(servers[0], agent=AGENT, url=url)]
    spec.update({"servers": servers, "outdir": str(outdir), "cases": args.cases})
    spec["exclude-cases"] = args.exclude
    spec_path = outdir / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=3) + "\n")
    ws_log, server_log = outdir / "wstest.log", outdir / "trio_ws-server.log"
    start = time.monotonic()
    server = wsproc = None
    try:
        cmd = [sys.executable, str(HERE / "server.py"), "--port", str(port)]
        server = spawn(cmd, server_log, REPO)
        wait_port(port, server, args.startup_timeout, "autobahn/server.py")
        print(f"  server.py on {url}; running wstest fuzzingclient", flush=True)
        wsproc = spawn(
            wstest_cmd(wstest, ["-m", "fuzzingclient", "-s", str(spec_path)], outdir),
            ws_log,
            outdir,
        )
        # the case list is printed at start-up; poll briefly for it
        deadline = time.monotonic() + args.startup_timeout
        while res.expected is None and time.monotonic() < deadline and wsproc.poll() is None:
            time.sleep(0.2)
            res.expected = parse_expected(ws_log)
        if res.expected is None:
            res.expected = parse_expected(ws_log)
        if res.expected == []:  # wstest would wait forever
            raise HarnessError("no cases selected (check --cases/--exclude)")
        total = len(res.expected) if res.expected is not None else None
        rc = wait_proc(wsproc, args.timeout, "server", ws_log, total)
        if rc is None:
            res.errors.append(f"wstest fuzzingclient did not finish within {args.timeout:g}s")
        elif rc != 0:
            res.errors.append(f"wstest fuzzingclient exited with status {rc}; see {ws_log}")
        fails = re.findall(r"^Connection to .* failed.*$", ws_log.read_text(errors="replace"), re.M)
        if fails:
            res.errors.append(f"wstest could not connect: {fails[0]}")
        if server.poll() is not None:
            res.errors.append(
                f"server.py exited during the run (status {server.returncode}); see {server_log}"
            )
        if rc is not None:
            read_index(res)
    except HarnessError as exc:
        res.errors.append(str(exc))
    finally:
        stop(wsproc)
        stop(server)
        res.duration = time.monotonic() - start
    check_log_for_tracebacks(res, server_log, "server.py")
    return res


# --------------------------------------------------------------------------
# evaluation and output


def case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(x) for x in case_id.split("."))


def value_key(value: str) -> tuple[int, str]:
    return (VALUE_ORDER.index(value) if value in VALUE_ORDER else len(VALUE_ORDER), value)


@dataclass
class Verdict:
    failed: dict[str, list[str]] = field(default_factory=dict)  # case -> problems
    allowed: list[str] = field(default_factory=list)  # allowed UNIMPLEMENTED cases
    missing: list[str] = field(default_factory=list)


def evaluate(res: SideResult, allow_unimplemented: list[str]) -> Verdict:
    v = Verdict()
    for cid in sorted(res.results, key=case_key):
        entry = res.results[cid]
        behavior, close = entry.get("behavior"), entry.get("behaviorClose")
        problems = []
        allowed = False
        if behavior == "UNIMPLEMENTED":
            if any(fnmatch.fnmatchcase(cid, g) for g in allow_unimplemented):
                allowed = True
            else:
                problems.append("behavior UNIMPLEMENTED")
        elif behavior not in PASS_BEHAVIOR:
            problems.append(f"behavior {behavior}")
        if close not in PASS_CLOSE:
            problems.append(f"behaviorClose {close}")
        if problems:
            v.failed[cid] = problems
        elif allowed:
            v.allowed.append(cid)
    if res.expected is not None:
        v.missing = sorted(set(res.expected) - set(res.results), key=case_key)
        if v.missing:
            res.errors.append(
                f"{len(v.missing)} of {len(res.expected)} expected cases missing from the report"
                f" (first: {', '.join(v.missing[:10])})"
            )
        elif not res.expected and not res.errors:
            res.errors.append("no cases selected (check --cases/--exclude)")
    elif res.results or not res.errors:
        res.errors.append("could not read the expected case list from wstest's output")
    return v


def section_table(res: SideResult) -> tuple[list[str], list[list[str]]]:
    results = res.results
    bvals = sorted({e["behavior"] for e in results.values()}, key=value_key)
    cvals = sorted({e["behaviorClose"] for e in results.values()}, key=value_key)
    by_section: dict[str, list[dict[str, Any]]] = {}
    for cid in sorted(results, key=case_key):
        by_section.setdefault(cid.split(".")[0], []).append(results[cid])
    header = ["Section", "Cases", *bvals, *(f"close {c}" for c in cvals)]

    def row(label: str, entries: list[dict[str, Any]]) -> list[str]:
        b = Counter(e["behavior"] for e in entries)
        c = Counter(e["behaviorClose"] for e in entries)
        return [label, str(len(entries)), *(str(b[x]) for x in bvals), *(str(c[x]) for x in cvals)]

    rows = [row(f"{s} {SECTIONS.get(s, '')}".strip(), e) for s, e in by_section.items()]
    rows.append(row("Total", list(results.values())))
    return header, rows


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(r: list[str]) -> str:
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        return "  " + "  ".join(cells)

    rule = "  " + "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *(fmt(r) for r in rows[:-1]), rule, fmt(rows[-1])])


def md_table(header: list[str], rows: list[list[str]]) -> str:
    align = ["---"] + ["--:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for r in rows[:-1]:
        lines.append("| " + " | ".join(r) + " |")
    lines.append("| " + " | ".join(f"**{c}**" for c in rows[-1]) + " |")
    return "\n".join(lines)


def compact_ids(ids: list[str]) -> str:
    """'12.1.1', '12.1.2', '12.1.3', '12.2.1' -> '12.1.1-12.1.3, 12.2.1'"""
    out: list[str] = []
    run: list[str] = []
    for cid in sorted(ids, key=case_key):
        if run:
            prev, cur = case_key(run[-1]), case_key(cid)
            if prev[:-1] == cur[:-1] and cur[-1] == prev[-1] + 1:
                run.append(cid)
                continue
            out.append(run[0] if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [cid]
    if run:
        out.append(run[0] if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ", ".join(out)


def case_details(res: SideResult, cid: str) -> str:
    entry = res.results[cid]
    try:
        rep = json.loads((res.outdir / entry["reportfile"]).read_text())
    except (OSError, ValueError, KeyError):
        return ""
    return f"result: {rep.get('result')!s} | resultClose: {rep.get('resultClose')!s}"


def non_ok_rows(res: SideResult, v: Verdict) -> list[tuple[str, str, str, str, str]]:
    """(case, behavior, behaviorClose, remoteCloseCode, status) for non-OK,
    non-allowed cases."""
    rows = []
    for cid in sorted(res.results, key=case_key):
        e = res.results[cid]
        if cid in v.allowed:
            continue  # summarised separately
        if e["behavior"] == "OK" and e["behaviorClose"] == "OK":
            continue
        status = "FAIL" if cid in v.failed else "pass"
        rows.append((cid, e["behavior"], e["behaviorClose"], str(e["remoteCloseCode"]), status))
    return rows


def compression_note(res: SideResult) -> str | None:
    comp = [c for c in res.results if c.split(".")[0] in COMPRESSION_SECTIONS]
    unimpl = [c for c in comp if res.results[c]["behavior"] == "UNIMPLEMENTED"]
    if not unimpl:
        return None
    scope = "all" if len(unimpl) == len(comp) else f"{len(unimpl)} of"
    return (
        f"The compression cases (sections 12 and 13) are unimplemented ({scope} {len(comp)} "
        "cases UNIMPLEMENTED) because permessage-deflate was not negotiated: it is not "
        "implemented (or not enabled) in trio_ws yet."
    )


def print_side(res: SideResult, v: Verdict, args: argparse.Namespace) -> None:
    print()
    print(f"== {SIDE_TITLES[res.side]}")
    print(f"   {len(res.results)} cases in {res.duration:.1f}s; reports in {res.outdir}")
    if res.results:
        print(text_table(*section_table(res)))
    rows = non_ok_rows(res, v)
    if rows:
        print(f"\n  Cases not OK ({len(rows)}; FAIL = counts as failure):")
        w = max(len(r[0]) for r in rows)
        for cid, b, c, code, status in rows:
            line = (
                f"    {status:4}  {cid:<{w}}  behavior={b:<13} behaviorClose={c:<13}"
                f" remoteCloseCode={code}"
            )
            print(line)
            if args.details:
                print(f"          {case_details(res, cid)}")
    elif res.results:
        print("\n  All cases OK.")
    if v.allowed:
        print(
            f"\n  Allowed UNIMPLEMENTED ({len(v.allowed)} cases, --allow-unimplemented "
            f"{' '.join(args.allow_unimplemented)}): {compact_ids(v.allowed)}"
        )
    note = compression_note(res)
    if note:
        print(f"\n  {note}")
    for w_ in res.warnings:
        print(f"  WARNING: {w_}")
    for e in res.errors:
        print(f"  ERROR: {e}")
    status = "ERROR" if res.errors else ("FAIL" if v.failed else "PASS")
    print(f"\n  {res.side}: {status} ({len(v.failed)} failing cases)")


def versions() -> dict[str, str]:
    out = {"python": f"{platform.python_implementation()} {platform.python_version()}"}
    for dist in ("trio", "wsproto", "h11", "trio_ws"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "trio_ws"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        out["git"] = rev + (" (trio_ws/ has uncommitted changes)" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def write_markdown(
    path: Path,
    args: argparse.Namespace,
    wstest_version: str,
    v: dict[str, str],
    sides: list[tuple[SideResult, Verdict]],
) -> None:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Autobahn|Testsuite results for trio_ws",
        "",
        f"- Date: {now}",
        f"- wstest: {wstest_version}",
        f"- Python: {v['python']}; trio {v['trio']}, wsproto {v['wsproto']}, h11 {v['h11']}",
        f"- trio_ws: {v['trio_ws']}" + (f", git {v['git']}" if "git" in v else ""),
        f"- Cases: {' '.join(f'`{c}`' for c in args.cases)}"
        + (f"; excluded: {' '.join(f'`{c}`' for c in args.exclude)}" if args.exclude else ""),
        f"- Command: `python autobahn/run.py {shlex.join(sys.argv[1:])}`",
        "",
        "Passing: behavior OK, NON-STRICT or INFORMATIONAL and behaviorClose OK or INFORMATIONAL.",
    ]
    for res, verdict in sides:
        status = "ERROR" if res.errors else ("FAIL" if verdict.failed else "PASS")
        lines += [
            "",
            f"## {SIDE_TITLES[res.side]}",
            "",
            f"{len(res.results)} cases, {res.duration:.0f} s: **{status}**"
            f" ({len(verdict.failed)} failing cases)",
            "",
        ]
        if res.results:
            lines.append(md_table(*section_table(res)))
        rows = non_ok_rows(res, verdict)
        if rows:
            lines += [
                "",
                "Cases not OK:",
                "",
                "| Case | behavior | behaviorClose | remoteCloseCode | counts as |",
                "|---|---|---|---|---|",
            ]
            lines += [
                f"| {c} | {b} | {bc} | {code} | {'failure' if s == 'FAIL' else 'pass'} |"
                for c, b, bc, code, s in rows
            ]
        if verdict.allowed:
            lines += [
                "",
                f"Allowed UNIMPLEMENTED ({len(verdict.allowed)} cases): "
                f"{compact_ids(verdict.allowed)}",
            ]
        note = compression_note(res)
        if note:
            lines += ["", note]
        for e in res.errors:
            lines += ["", f"Error: {e}"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--side", choices=["client", "server", "both"], default="both")
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["*"],
        metavar="GLOB",
        help="case patterns as wstest understands them, e.g. '1.*' 2.1.1",
    )
    parser.add_argument(
        "--exclude",
        nargs="+",
        default=[],
        metavar="GLOB",
        help="case patterns to leave out, e.g. '12.*' '13.*'",
    )
    parser.add_argument(
        "--allow-unimplemented",
        nargs="+",
        default=[],
        metavar="GLOB",
        help="UNIMPLEMENTED cases matching these globs do not fail the run",
    )
    parser.add_argument(
        "--outdir",
        type=Path,
        default=HERE / "reports",
        help="reports go to OUTDIR/client and OUTDIR/server (default: %(default)s)",
    )
    parser.add_argument(
        "--results-md",
        type=Path,
        metavar="PATH",
        help="also write a markdown summary (e.g. autobahn/RESULTS.md)",
    )
    parser.add_argument(
        "--details",
        action="store_true",
        help="print wstest's result/resultClose text for cases not OK",
    )
    parser.add_argument(
        "--wstest",
        type=Path,
        default=DEFAULT_WSTEST,
        help="wstest launcher, installed there if missing (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800,
        help="seconds allowed per side for the cases (default: %(default)s)",
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=30,
        help="seconds to wait for a child to listen (default: %(default)s)",
    )
    args = parser.parse_args()

    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)

    try:
        wstest_version = ensure_wstest(args.wstest)
    except HarnessError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    print(f"wstest: {args.wstest} ({wstest_version})")
    print(
        f"cases: {' '.join(args.cases)}"
        + (f"; excluded: {' '.join(args.exclude)}" if args.exclude else "")
    )

    started_with = versions()  # of the code under test, as the run starts
    print("testing " + ", ".join(f"{k} {v}" for k, v in started_with.items()))
    sides = ["client", "server"] if args.side == "both" else [args.side]
    runners = {"client": run_client_side, "server": run_server_side}
    done: list[tuple[SideResult, Verdict]] = []
    try:
        for side in sides:
            print(f"\n-- running {SIDE_TITLES[side]}", flush=True)
            res = runners[side](args, args.wstest, args.outdir.resolve() / side)
            done.append((res, evaluate(res, args.allow_unimplemented)))
    finally:
        stop_all()

    for res, verdict in done:
        print_side(res, verdict, args)
    if args.results_md:
        write_markdown(args.results_md, args, wstest_version, started_with, done)
        print(f"\nwrote {args.results_md}")

    errors = any(res.errors for res, _ in done)
    failed = any(v.failed for _, v in done)
    print(
        "\nOverall: "
        + ("ERROR (the run itself failed)" if errors else "FAIL" if failed else "PASS")
    )
    return 2 if errors else 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
