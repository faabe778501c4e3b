"""Command line of the fake upstream: flags, failure switches, signals, serving.

Signals as llama-server: SIGTERM and SIGINT stop it promptly, unless `--ignore-sigterm` (then
only SIGKILL does). `--fork-child` makes it behave like a wrapper script: the started process
forks, the child serves (holding the same output pipe) and the parent waits for it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from aiohttp import web

from llamaswap_es.fake_upstream.app import build_app
from llamaswap_es.fake_upstream.generation import STATE
from llamaswap_es.fake_upstream.settings import FAIL_AT_START_CODE, FakeSettings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m llamaswap_es.fake_upstream", description="A fake llama-server."
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--model-name", default="fake-model")
    parser.add_argument(
        "--load-delay-ms", type=int, default=0, help="/health answers 503 until this has passed"
    )
    parser.add_argument("--tokens", type=int, default=10, help="tokens in every answer")
    parser.add_argument("--token-delay-ms", type=int, default=0, help="pause before each token")
    parser.add_argument("--fail-at-start", action="store_true", help="exit 1 at once")
    parser.add_argument(
        "--exit-during-request", action="store_true", help="exit (status 3) half-way an answer"
    )
    parser.add_argument(
        "--exit-before-answer-if",
        metavar="FILE",
        help="when FILE exists at a generation request: delete it and exit (status 4) before "
        "answering, so the connection is reset (a one-shot crash switch for tests)",
    )
    parser.add_argument(
        "--drop-connection-if",
        metavar="FILE",
        help="when FILE exists at a generation request: delete it and close that connection "
        "unanswered, then keep serving (a one-shot switch for tests; a FILE holding a number N "
        "drops N requests)",
    )
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument(
        "--fork-child", action="store_true", help="fork; the child serves, the parent waits"
    )
    parser.add_argument("--quiet", action="store_true", help="no log lines")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    say(args, f"main: fake upstream pid={os.getpid()} model={args.model_name}")
    if args.fail_at_start:
        say(args, "main: error: failed to load model (--fail-at-start)")
        return FAIL_AT_START_CODE
    if args.fork_child:
        child = os.fork()
        if child:
            say(args, f"main: forked child pid={child}, waiting for it")
            _, status = os.waitpid(child, 0)
            return os.waitstatus_to_exitcode(status) & 0xFF
    settings = FakeSettings(
        port=args.port,
        host=args.host,
        model_name=args.model_name,
        load_delay_ms=args.load_delay_ms,
        tokens=args.tokens,
        token_delay_ms=args.token_delay_ms,
        exit_during_request=args.exit_during_request,
        exit_before_answer_if=args.exit_before_answer_if,
        drop_connection_if=args.drop_connection_if,
        quiet=args.quiet,
    )
    asyncio.run(serve(settings, ignore_sigterm=args.ignore_sigterm))
    return 0


def say(args: argparse.Namespace, line: str) -> None:
    if not args.quiet:
        try:
            print(line, file=sys.stderr, flush=True)
        except OSError:
            pass


async def serve(settings: FakeSettings, *, ignore_sigterm: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    if not ignore_sigterm:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    app = build_app(settings)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
    await site.start()
    app[STATE].log(
        f"main: server is listening on http://{settings.host}:{settings.port}"
        f" - loading for {settings.load_delay_ms} ms"
    )
    try:
        await stop.wait()
        app[STATE].log("main: shutting down")
    finally:
        await runner.cleanup()
