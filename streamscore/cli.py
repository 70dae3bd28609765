"""The `streamscore` command line. Each command lives in its own module (streamscore/, the job
commands `run` and `backfill` in jobs/, `bench` in bench/) and registers itself with
``add_parser(subparsers)``; the parser's ``func(args)`` runs it."""
from __future__ import annotations

import argparse
import importlib
import sys

# command name -> module defining add_parser(subparsers)
COMMANDS = {
    "kafka": "streamscore.kafka_broker",
    "cluster": "streamscore.cluster",
    "cancel": "streamscore.cancel",
    "generate": "streamscore.generate",
    "produce": "streamscore.produce",
    "run": "jobs.run",
    "backfill": "jobs.backfill",
    "train": "streamscore.train",
    "evaluate": "streamscore.evaluate",
    "monitor": "streamscore.monitor",
    "demo": "streamscore.demo",
    "bench": "bench.command",
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a wrong command line is one line on stderr (exit 2), like `flink`/`python`."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="streamscore", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, module in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue  # command not built yet
        mod.add_parser(sub)
    return parser


def main(argv=None) -> int:
    from features.scoring import ModelLoadError
    from jobs.runtime import SetupError

    from jobs.runtime import ensure_java_home

    ensure_java_home()  # before any Flink or Kafka process is started from here
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # run prints its resume command from it
    try:
        return int(args.func(args) or 0)
    except SetupError as e:
        sys.stderr.write(f"streamscore {args.command}: {e}\n")
        return 1
    except (ValueError, FileNotFoundError, ModelLoadError) as e:
        sys.stderr.write(f"streamscore {args.command}: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
