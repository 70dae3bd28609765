"""``python -m bench --worker SPEC`` runs one Flink job (see bench.worker); ``python -m bench ...`` is
``streamscore bench ...``."""
import sys

if __name__ == "__main__":
    from bench.worker import _worker

    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(_worker(sys.argv[2]))
    from streamscore.cli import main as _main

    sys.exit(_main(["bench"] + sys.argv[1:]))
