"""Webhook acceptance: Switchboard's Telegram webhook vs a bare FastAPI 200, same run.

    python -m bench.webhook_acceptance [--duration 10] [--warmup 2] [--concurrency 8] [--rounds 1]

Switchboard: POST /webhooks/telegram with the Redis queue (secret header, parse,
SET NX dedupe, XADD, 200); nothing consumes the queue. Bare: a FastAPI route that
reads the body and answers {"ok": true}. Each is uvicorn (one worker) in its own
process, beside a private redis-server and a stub Bot API (getMe). The load is
another process: wrk (apt-get install -y wrk), keep-alive, `--concurrency`
connections, a unique update_id per request, after a warm-up; rounds run bare
then switchboard so drift in machine load hits both. wrk, not a Python client:
httpx spends ~1.5 ms of CPU per request, more than either server, and would set
the pace itself. CPU columns: each process's CPU ms per request and share of one core.
Targets: switchboard req/s >= 0.5 of bare, switchboard p99 <= 20 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import redis
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.applications import Starlette
from starlette.routing import Route

SECRET = "bench-webhook-secret-0123456789"
TOKEN = "123456:ABC-bench-token"
BOT_USER = {"id": 123456, "is_bot": True, "first_name": "Bench Bot", "username": "bench_bot"}
HEADERS = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
PATH = "/webhooks/telegram"
STREAM = "switchboard:queue"
SCRIPT = Path(__file__).resolve()


def update(update_id: int) -> bytes:
    """A private text message; a unique update_id makes every request a new dedupe key and XADD."""
    message = {"message_id": update_id, "date": 1700000000, "chat": {"id": 42, "type": "private"},
               "from": {"id": 42, "is_bot": False, "first_name": "A"}, "text": "hi"}
    return json.dumps({"update_id": update_id, "message": message}).encode()


def serve(role: str, port: int, redis_url: str = "", api_url: str = "", models_dir: str = "") -> None:
    """Run one server ("bare", "stub" or "switchboard") under uvicorn until terminated."""
    # Request/JSONResponse are module globals on purpose: FastAPI resolves the string
    # annotations there, and would read a locally imported Request as a query parameter.
    if role == "bare":
        app = FastAPI()

        @app.post(PATH)
        async def accept(request: Request) -> JSONResponse:
            await request.body()  # as Switchboard does
            return JSONResponse({"ok": True})
    elif role == "stub":
        async def bot_api(request: Request) -> JSONResponse:
            getme = request.path_params["method"].lower() == "getme"
            return JSONResponse({"ok": True, "result": BOT_USER if getme else True})

        app = Starlette(routes=[Route("/bot{token}/{method}", bot_api, methods=["GET", "POST"])])
    else:
        from gateway.app import create_app
        from gateway.settings import Settings

        # An empty models_dir: only the cached base model loads, not trained departments.
        app = create_app(Settings(
            redis_url=redis_url, telegram_bot_token=TOKEN, telegram_webhook_secret=SECRET,
            telegram_api_url=api_url, worker_in_process=False, router="commands",
            reload_interval_seconds=0, models_dir=Path(models_dir), log_level="warning",
        ))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# wrk's Lua hooks: a unique update_id per request (every one a new dedupe key and
# XADD), and the summary printed as one JSON line.
WRK_SCRIPT = """
local counter = 0
function init(args) counter = tonumber(args[1]) end
function request()
  counter = counter + 1
  local body = string.format('{"update_id": %d, "message": {"message_id": %d, "date": 1700000000, '
    .. '"chat": {"id": 42, "type": "private"}, "from": {"id": 42, "is_bot": false, "first_name": "A"}, '
    .. '"text": "hi"}}', counter, counter)
  return wrk.format("POST", nil, nil, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('\\nRESULT {"requests": %d, "seconds": %f, "p50_ms": %f, "p99_ms": %f, '
    .. '"non_2xx": %d, "socket_errors": %d}\\n', summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, e.status,
    e.connect + e.read + e.write + e.timeout))
end
"""


def run_wrk(port: int, concurrency: int, seconds: float, first_id: int, script: Path,
            watch: dict[str, int]) -> dict:
    """One wrk run (a C client: its own CPU cost is small next to either server's) plus CPU per process."""
    url = f"http://127.0.0.1:{port}{PATH}"
    headers = [arg for name, value in HEADERS.items() for arg in ("-H", f"{name}: {value}")]
    before = {name: cpu_seconds(pid) for name, pid in watch.items()}
    finished = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "5s", "-s", str(script), *headers,
         url, "--", str(first_id)], capture_output=True, text=True, check=False, timeout=seconds + 60)
    if finished.returncode != 0 or "RESULT " not in finished.stdout:
        sys.exit(f"wrk failed ({finished.returncode}):\n{finished.stdout[-1000:]}{finished.stderr[-1000:]}")
    result = json.loads(finished.stdout.split("RESULT ", 1)[1].splitlines()[0])
    result["cpu"] = {name: (cpu_seconds(pid) - before[name]) / result["seconds"] for name, pid in watch.items()}
    return result


def command(config: dict) -> list[str]:
    """This script again, as the child process `config["role"]` describes."""
    return [sys.executable, str(SCRIPT), "--child", json.dumps(config)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(url: str, process: subprocess.Popen, timeout: float) -> None:
    """Poll GET `url` until it answers 200; fail early if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{process.args} exited with {process.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    sys.exit(f"{url} did not answer 200 within {timeout:.0f} s")


def summarize(label: str, runs: list[dict]) -> tuple[float, float, float, str]:
    """(req/s, p99 ms, server CPU ms per request, table line) for one target; medians over rounds."""
    rate = float(np.median([run["requests"] / run["seconds"] for run in runs]))
    p50 = float(np.median([run["p50_ms"] for run in runs]))
    p99 = float(np.median([run["p99_ms"] for run in runs]))
    shares = {name: float(np.mean([run["cpu"][name] for run in runs])) for name in runs[0]["cpu"]}
    cpu = "  ".join(f"{name} {share / rate * 1000:.3f} ({share:.0%})" for name, share in shares.items())
    line = f"{label:<22} {rate:>7.0f} {p50:>7.2f} {p99:>7.2f}   {cpu}"
    return rate, p99, shares["server"] / rate * 1000, line


def benchmark(args: argparse.Namespace) -> None:
    for binary, package in (("redis-server", "redis-server"), ("wrk", "wrk")):
        if shutil.which(binary) is None:
            sys.exit(f"{binary} is not on PATH; install it with: apt-get install -y {package}")
    # Settings read SWITCHBOARD_* and the environment beats explicit values: keep stray ones out.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env |= {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    children: list[subprocess.Popen] = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill also runs the cleanup below

    def child(**config: object) -> subprocess.Popen:
        children.append(subprocess.Popen(command(config), env=env, stdin=subprocess.DEVNULL))
        return children[-1]

    runs: dict[str, list[dict]] = {"bare": [], "switchboard": []}
    next_id = itertools.count(1, 100_000_000)
    try:
        with tempfile.TemporaryDirectory(prefix="webhook-bench-") as tmp:
            script = Path(tmp, "load.lua")
            script.write_text(WRK_SCRIPT)
            ports = {name: free_port() for name in ("redis", "stub", "bare", "switchboard")}
            redis_url = f"redis://127.0.0.1:{ports['redis']}/0"
            children.append(redis_server := subprocess.Popen(
                ["redis-server", "--port", str(ports["redis"]), "--bind", "127.0.0.1", "--dir", tmp,
                 "--save", "", "--appendonly", "no", "--logfile", f"{tmp}/redis.log"],
                stdin=subprocess.DEVNULL))
            stub, bare = child(role="stub", port=ports["stub"]), child(role="bare", port=ports["bare"])
            # getMe at Switchboard's start decides whether its webhook opens: the stub must answer first.
            wait_until(f"http://127.0.0.1:{ports['stub']}/bot{TOKEN}/getMe", stub, 60)
            Path(tmp, "models").mkdir()
            switchboard = child(role="switchboard", port=ports["switchboard"], redis_url=redis_url,
                                api_url=f"http://127.0.0.1:{ports['stub']}/bot", models_dir=f"{tmp}/models")
            wait_until(f"http://127.0.0.1:{ports['bare']}/docs", bare, 60)
            wait_until(f"http://127.0.0.1:{ports['switchboard']}/readyz", switchboard, 300)
            # One update first: a refusal (say getMe failed) is reported now, not after the whole run.
            answer = httpx.post(f"http://127.0.0.1:{ports['switchboard']}{PATH}", content=update(0), headers=HEADERS)
            if answer.status_code != 200:
                sys.exit(f"Switchboard refused a webhook ({answer.status_code}): {answer.text}")
            accepted = 1
            watch = {"bare": {"server": bare.pid},
                     "switchboard": {"server": switchboard.pid, "redis": redis_server.pid}}
            print(f"{'target':<22} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7}   CPU ms/request (share of one core)",
                  flush=True)
            for round_ in range(args.rounds):
                for name, done in runs.items():
                    port = ports[name]
                    warm = run_wrk(port, args.concurrency, args.warmup, next(next_id), script, watch[name])
                    done.append(run_wrk(port, args.concurrency, args.duration, next(next_id), script, watch[name]))
                    if name == "switchboard":
                        accepted += warm["requests"] + done[-1]["requests"]
                    if done[-1]["non_2xx"] or done[-1]["socket_errors"]:
                        sys.exit(f"{name}: {done[-1]['non_2xx']} non-2xx answers, "
                                 f"{done[-1]['socket_errors']} socket errors")
                    if args.rounds > 1:
                        print(summarize(f"{name} round {round_ + 1}", done[-1:])[3])
            with redis.Redis.from_url(redis_url) as client:
                queued = client.xlen(STREAM)
    finally:
        for process in children:
            process.terminate()
        for process in children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            process.kill()  # a no-op for those that have exited

    bare_rate, _, bare_cost, bare_line = summarize("bare FastAPI", runs["bare"])
    rate, p99, cost, line = summarize("switchboard webhook", runs["switchboard"])
    print(f"{bare_line}\n{line}\n")
    ratio = rate / bare_rate
    print(f"throughput switchboard/bare: {ratio:.2f}  (target >= 0.5)  {'PASS' if ratio >= 0.5 else 'FAIL'}")
    # What the ratio would be if each one-worker server had a core to itself.
    print(f"server CPU per request bare/switchboard: {bare_cost / cost:.2f}")
    print(f"switchboard p99: {p99:.2f} ms  (target <= 20 ms)  {'PASS' if p99 <= 20 else 'FAIL'}")
    print(f"wrk, {args.concurrency} connections, {args.duration:g} s measured per target and round after "
          f"{args.warmup:g} s warm-up, {args.rounds} round(s)")
    # wrk counts the answers that arrive within its duration; up to one request per
    # connection is still in flight when it stops, and is queued too.
    in_flight = 2 * args.rounds * args.concurrency
    if not accepted <= queued <= accepted + in_flight:
        sys.exit(f"FAILED: XLEN {STREAM} is {queued}, but Switchboard answered 200 to {accepted} updates")
    print(f"stream check: XLEN {STREAM} = {queued}, updates answered 200 = {accepted} (+ up to {in_flight} in flight)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per target and round")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds before each measurement")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (= connections)")
    parser.add_argument("--rounds", type=int, default=1, help="bare-then-switchboard repetitions")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: run as one of the child processes
    args = parser.parse_args()
    if args.child is None:
        try:
            benchmark(args)
        except KeyboardInterrupt:  # the children are stopped already; spare the traceback
            sys.exit("interrupted")
        return
    config = json.loads(args.child)
    serve(config.pop("role"), **config)


if __name__ == "__main__":
    main()
