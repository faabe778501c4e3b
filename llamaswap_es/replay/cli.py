"""`llamaswap-es replay …`: the replay tool's command line (verify, timeline, explain, export,
import, whatif). Registered in `llamaswap_es.cli` with one `add_subcommand` line.

Exit status: 0 when the command did its job (and `verify` found every decision identical),
1 when `verify` found a divergence, 2 for a bad input (a missing file, a seq out of range …),
whose message names the problem.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from llamaswap_es.config.policy_registry import policy_names
from llamaswap_es.errors import LlamaSwapError
from llamaswap_es.paths import default_db_path
from llamaswap_es.replay.errors import ReplayError

EXIT_DIVERGED = 1
EXIT_USAGE = 2

HELP = "verify, explain, export or what-if a recorded event log"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the replay subcommands to `parser` (the `replay` subcommand's own parser)."""
    sub = parser.add_subparsers(dest="replay_command", metavar="ACTION", required=True)

    p = sub.add_parser("verify", help="recompute every decision and compare it with the log")
    _log_flag(p)
    _range_flags(p)
    p.set_defaults(replay_handler=_verify)

    p = sub.add_parser("timeline", help="a readable timeline of requests, swaps and processes")
    _log_flag(p)
    _range_flags(p)
    p.add_argument("--since", metavar="DURATION", help="the last 10m / 2h / 1d of the log")
    p.add_argument("--model", metavar="MODEL", help="only what concerns this model")
    p.add_argument("--timers", action="store_true", help="show timer events too")
    p.add_argument(
        "--request", metavar="ID",
        help="only this request: our request id or the client's own X-Request-ID",
    )  # fmt: skip
    p.set_defaults(replay_handler=_timeline)

    p = sub.add_parser("explain", help="why a decision was made")
    _log_flag(p)
    p.add_argument("--seq", type=int, required=True, metavar="N", help="the decision's seq")
    p.add_argument("--json", action="store_true", help="print the explanation as JSON")
    p.set_defaults(replay_handler=_explain)

    p = sub.add_parser("export", help="write a seq range to a .cbor.zst bundle")
    _log_flag(p)
    _range_flags(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE.cbor.zst")
    p.set_defaults(replay_handler=_export)

    p = sub.add_parser("import", help="load a bundle into a new database")
    p.add_argument("--bundle", required=True, metavar="FILE.cbor.zst")
    p.add_argument("-o", "--output", required=True, metavar="DB")
    p.set_defaults(replay_handler=_import)

    p = sub.add_parser("whatif", help="re-run the recorded traffic under another policy/config")
    _log_flag(p)
    p.add_argument("--scheduler", choices=policy_names(), help="the policy to try")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="settings",
        help=(
            "override a setting: min_resident_ms=5000, starvation_bound_ms=…, MODEL.ttl_ms=…;"
            " gpus=24000,24000 gives the GPUs (MiB) for placement by memory"
        ),
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="simulate under this config file's scheduler settings (groups or matrix, policy, "
        "placement, declared footprints) instead of the recorded ones",
    )
    p.add_argument(
        "--placement",
        choices=("off", "memory"),
        help="placement by GPU memory: memory (devices by footprints, evict to fit) or off "
        "(groups and the matrix alone)",
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(replay_handler=_whatif)


def _log_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db", default=default_db_path(), metavar="PATH",
        help="event log database or bundle (default: the server's, %(default)s)",
    )  # fmt: skip


def _range_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="from_seq", type=int, metavar="SEQ")
    p.add_argument("--to", dest="to_seq", type=int, metavar="SEQ")


def run(args: argparse.Namespace) -> int:
    """Run the chosen replay action; errors become one line on stderr and exit status 2."""
    handler: Callable[[argparse.Namespace], int] = args.replay_handler
    try:
        return handler(args)
    except LlamaSwapError as exc:
        print(f"llamaswap-es replay {args.replay_command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `… timeline | head`
        sys.stderr.close()
        return 0


def _verify(args: argparse.Namespace) -> int:
    from llamaswap_es.replay.verify import verify

    with _opened(args.db) as reader:
        report = verify(reader, args.from_seq, args.to_seq)
    print(report.to_text())
    return 0 if report.ok else EXIT_DIVERGED


def _timeline(args: argparse.Namespace) -> int:
    from llamaswap_es.replay.timeline import parse_since, timeline

    if args.since and (args.from_seq is not None or args.to_seq is not None):
        raise ReplayError("give either --since or --from/--to, not both")
    since = parse_since(args.since) if args.since else None
    with _opened(args.db) as reader:
        count = 0
        for line in timeline(
            reader,
            from_seq=args.from_seq,
            to_seq=args.to_seq,
            since_ms=since,
            model=args.model,
            timers=args.timers,
            request=args.request,
        ):
            print(line)
            count += 1
    if count == 0:
        print("(nothing in this window)", file=sys.stderr)
    return 0


def _explain(args: argparse.Namespace) -> int:
    from llamaswap_es.replay.explain import explain

    with _opened(args.db) as reader:
        explanation = explain(reader, args.seq)
    if args.json:
        print(json.dumps(explanation.to_json(), indent=2, ensure_ascii=False))
    else:
        print(explanation.to_text())
    return 0


def _export(args: argparse.Namespace) -> int:
    # imported here: the bundle's codecs (cbor2, zstandard: ~1 MiB) never load in a server
    import tempfile

    from llamaswap_es.events.bundle import export_bundle, import_bundle
    from llamaswap_es.replay.source import log_facts

    source, output = Path(args.db), Path(args.output)
    if not output.name.endswith(".cbor.zst"):
        raise ReplayError(f"-o {output}: a bundle's name must end in .cbor.zst")
    with _opened(source) as reader:
        facts = log_facts(reader)
    if facts.empty:
        raise ReplayError(f"{source}: the log holds no events, there is nothing to export")
    lo, hi = facts.window(args.from_seq, args.to_seq)
    if source.name.endswith(".zst"):  # a bundle: cut the range out through a scratch database
        with tempfile.TemporaryDirectory(prefix="llamaswap-es-export-") as scratch:
            db = Path(scratch) / "events.db"
            import_bundle(source, db)
            header = export_bundle(db, output, from_seq=lo, to_seq=hi)
    else:
        header = export_bundle(source, output, from_seq=lo, to_seq=hi)
    print(
        f"exported seqs {header['from_seq']}..{header['to_seq']} ({header['count']} events, "
        f"{len(header['boots'])} server run(s)) to {output}"
    )
    if lo > 1 and lo == facts.first_seq:
        print(
            f"note: the log itself starts at seq {lo} (older events were pruned), and a bundle "
            "carries no snapshot, so `replay verify` and `replay explain` cannot rebuild the "
            "state before it; run those on the database, which keeps its snapshots",
            file=sys.stderr,
        )
    elif lo > 1:
        print(
            "note: the bundle does not start at seq 1, so `replay verify` and `replay explain` "
            "cannot rebuild the state before it; export from seq 1 for those",
            file=sys.stderr,
        )
    return 0


def _import(args: argparse.Namespace) -> int:
    from llamaswap_es.events.bundle import import_bundle

    bundle, output = Path(args.bundle), Path(args.output)
    if not bundle.is_file():
        raise ReplayError(f"--bundle {bundle}: no such file")
    header = import_bundle(bundle, output)
    print(
        f"imported seqs {header['from_seq']}..{header['to_seq']} "
        f"({header['count']} events) into {output}"
    )
    return 0


def _whatif(args: argparse.Namespace) -> int:
    from llamaswap_es.replay.source import iter_all, log_facts
    from llamaswap_es.replay.traffic import extract_traffic
    from llamaswap_es.replay.whatif import assumptions, parse_settings, simulate
    from llamaswap_es.replay.whatif_table import percentile, render_table, report_json

    settings = parse_settings(args.settings)
    if args.scheduler:
        settings["policy"] = args.scheduler
    if args.placement:
        settings["placement"] = args.placement
    with _opened(args.db) as reader:
        facts = log_facts(reader)
        if facts.empty:
            raise ReplayError(f"{facts.path}: the log holds no events, there is nothing to replay")
        traffic = extract_traffic(iter_all(reader, facts.first_seq, None))
    schedule = None
    if args.config:
        from llamaswap_es.config import build_schedule, load_config

        try:
            schedule = build_schedule(load_config(args.config, None))
        except LlamaSwapError as exc:
            raise ReplayError(f"--config {args.config}: {exc}") from None
    whatif = simulate(traffic, settings, config=schedule)
    baseline = simulate(traffic, {}, label="simulated as recorded")
    notes = assumptions(traffic)
    if args.json:
        runs = [traffic.recorded, baseline, whatif]
        print(json.dumps(report_json(runs, notes), indent=2))
        return 0
    print(render_table(traffic.recorded, whatif))

    def p95(f: object) -> int:
        return percentile([w for ws in f.waits_ms.values() for w in ws], 95)  # type: ignore[attr-defined]

    print(
        f"\nsimulator check: the recorded config, simulated, gives "
        f"{sum(baseline.loads.values())} loads and a p95 wait of {p95(baseline)} ms "
        f"(the log: {sum(traffic.recorded.loads.values())} loads, {p95(traffic.recorded)} ms)"
    )
    print("assumptions:")
    for note in notes:
        print(f"  {note}")
    return 0


class _opened:
    """`with _opened(path) as reader`: open a log for one command and close it after."""

    def __init__(self, path: str | Path) -> None:
        from llamaswap_es.replay.source import open_source

        self.reader = open_source(path)

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self.reader

    def __exit__(self, *exc: object) -> None:
        self.reader.close()
