"""Issue 8 spike: in the bench's job process (`python -m bench --worker`, where PyFlink's loopback mode runs
the pandas UDF), log each DeriveBatch.eval call and each Python GC to $LAT_TRACE_DIR. Only active with
LAT_TRACE_DIR set and only in that process."""
import os

_dir = os.environ.get("LAT_TRACE_DIR")
try:
    _cmd = open("/proc/self/cmdline", "rb").read()
except OSError:
    _cmd = b""
if _dir and b"--worker" in _cmd:
    import gc
    import sys
    import threading
    import time

    _f = open(os.path.join(_dir, f"pyworker-{os.getpid()}.log"), "a", buffering=1)
    _gc_t = {}

    def _gc_cb(phase, info):
        if phase == "start":
            _gc_t[threading.get_ident()] = time.time()
        else:
            t0 = _gc_t.pop(threading.get_ident(), None)
            if t0 is not None:
                _f.write(f"gc {t0:.6f} {time.time() - t0:.6f} {info.get('generation')} {info.get('collected')}\n")

    gc.callbacks.append(_gc_cb)

    import builtins

    _orig_import = builtins.__import__
    _done = []

    def _import(name, *a, **k):
        mod = _orig_import(name, *a, **k)
        if not _done and hasattr(sys.modules.get("udfs.engine"), "DeriveBatch"):
            _done.append(1)
            eng = sys.modules["udfs.engine"]
            if os.environ.get("LAT_SKLEARN_IFOREST") == "1":
                # A/B switch of the spike: the IsolationForest scored by scikit-learn (before the PackedForest change)
                sys.modules["features.scoring"].packed_forest = lambda forest, probe_rows=2000: None
                _f.write("ab sklearn-iforest\n")
            orig = eng.DeriveBatch.eval

            def eval(self, *columns):
                t0, c0 = time.time(), time.thread_time()
                out = orig(self, *columns)
                _f.write(f"eval {t0:.6f} {time.time() - t0:.6f} {time.thread_time() - c0:.6f} {len(columns[0])} "
                         f"{threading.get_ident()}\n")
                return out

            eng.DeriveBatch.eval = eval
            builtins.__import__ = _orig_import
        return mod

    builtins.__import__ = _import

