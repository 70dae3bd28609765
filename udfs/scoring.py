"""Vectorized scoring inside the stream: loads the model once per worker and scores Arrow batches
(run inside the derived features' pandas UDF, udfs/engine.py).

The UDF never kills the job: a model that cannot be loaded, or a batch that fails to score,
is scored by the rules alone and marked ``fallback = true`` (counted in the metrics). A model
trained on another feature definition is refused earlier, at job start (``check_model``).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import pandas as pd
from pyflink.table import DataTypes
from pyflink.table.udf import ScalarFunction

from features import scoring
from features.featureset import FeatureSet
from udfs.breaker import CircuitBreaker, Reloader
from udfs.counters import RunCounts

log = logging.getLogger(__name__)

RESULT_FIELDS = (("score", "DOUBLE"), ("decision", "STRING"), ("reasons", "ARRAY<STRING>"),
                 ("model_version", "STRING"), ("fallback", "BOOLEAN"), ("decide_ms", "BIGINT"))
RULES_VERSION = "rules"


def check_model(model_path: str, fs: FeatureSet, loader: Callable = scoring.load_model) -> dict:
    """Metadata of the model the job will serve; raises ModelMismatchError/ModelLoadError."""
    model = loader(model_path, expected_hash=fs.definition_hash)
    return model.metadata()


class ScoreBatch(ScalarFunction):
    """Scores a batch of feature rows (one pandas Series per feature, then ``ingest_ms``).

    With a registry (a folder with a ``current`` pointer) the UDF polls the pointer every
    ``reload_interval_s`` and swaps in a newly promoted version without a restart; a version
    that fails to load (or has another feature hash) is refused and the old one kept. A circuit
    breaker hands batches to the rules while the model errors or is too slow.

    ``loader(path, expected_hash=...)`` loads a model (with ``score_frame(df)`` -> score, decision,
    reasons); ``rules(df)`` gives the same frame without a model. Both are the pipeline's own
    (fraud: features.scoring.load_model / rules_only), module-level so the function pickles small.
    """

    def __init__(self, feature_names: Sequence[str], model_path: Optional[str], expected_hash: str,
                 reload_interval_s: float = 5.0, breaker: Optional[dict] = None, counts_dir: Optional[str] = None,
                 loader: Callable = scoring.load_model, rules: Callable = scoring.rules_only):
        self.loader = loader
        self.rules = rules
        self.feature_names = list(feature_names)
        self.model_path = model_path
        self.expected_hash = expected_hash
        self.reload_interval_s = reload_interval_s
        self.breaker_settings = dict(breaker or {})
        self.counts_dir = counts_dir

    def open(self, function_context):
        self.model = None
        mg = function_context.get_metric_group()
        self.m_fallbacks = mg.counter("fallbackDecisions")
        self.m_decisions = mg.counter("decisions")
        self.m_reloads = mg.counter("modelReloads")
        self.m_trips = mg.counter("breakerTrips")
        self.m_latency = mg.distribution("ingestToDecisionMs") if hasattr(mg, "distribution") else None
        self.breaker = CircuitBreaker(**self.breaker_settings)
        self.counts = RunCounts(self.counts_dir, "score")  # end-of-run counts (udfs/counters.py)
        registry = self.model_path and (Path(self.model_path) / scoring.CURRENT_FILE).exists()
        self.reloader = Reloader(lambda: scoring.current_version(self.model_path), self.reload_interval_s) \
            if registry else None
        if self.model_path:
            try:
                self.model = self.loader(self.model_path, expected_hash=self.expected_hash)
                if self.reloader:
                    self.reloader.loaded(self.model.model_version)
            except Exception as e:  # a broken model must not stop payments: rules take over
                log.error("model %s not loaded, scoring by rules: %s", self.model_path, e)

    def close(self):
        self.counts.close()

    def _maybe_reload(self) -> None:
        version = self.reloader.check() if self.reloader else None
        if version is None:
            return
        try:
            self.model = self.loader(Path(self.model_path) / version, expected_hash=self.expected_hash)
            self.m_reloads.inc()
            log.warning("now serving model %s", version)
        except Exception as e:
            log.error("promoted model %s refused, keeping %s: %s", version,
                      self.model.model_version if self.model else "rules", e)
        self.reloader.loaded(version)  # do not retry a refused version on every batch

    def eval(self, *columns):
        *features, ingest = columns
        df = pd.concat(features, axis=1)
        df.columns = self.feature_names
        return self.score(df, ingest)

    def score(self, df: pd.DataFrame, ingest: pd.Series) -> pd.DataFrame:
        """RESULT_FIELDS for a batch of feature rows (``df``, columns ``feature_names``)."""
        self._maybe_reload()
        out = None
        if self.model is not None and self.breaker.allow():
            t0 = time.perf_counter()
            trips = self.breaker.trips
            try:
                out = self.model.score_frame(df)
                self.breaker.record(True, (time.perf_counter() - t0) * 1000)
            except Exception as e:
                log.error("scoring failed for a batch of %d, using rules: %s", len(df), e)
                self.breaker.record(False, (time.perf_counter() - t0) * 1000)
            if self.breaker.trips > trips:
                self.m_trips.inc()
                log.error("scoring circuit breaker open for %.0f s", self.breaker.cooldown_s)
        fallback = out is None
        if fallback:
            out = self.rules(df)
            self.m_fallbacks.inc(len(df))
        self.m_decisions.inc(len(df))
        for decision, n in out["decision"].astype(str).value_counts().items():
            self.counts.inc(f"decision.{decision}", int(n))
        self.counts.inc("fallback", len(df) if fallback else 0)
        now = int(time.time() * 1000)
        if self.m_latency is not None:
            for lat in (now - ingest.dropna().to_numpy(dtype="int64")).tolist():
                self.m_latency.update(lat)
        version = RULES_VERSION if fallback else self.model.model_version
        reasons = [r.split(scoring.REASON_SEP) if r else [] for r in out["reasons"]]
        return pd.DataFrame({
            "score": out["score"].to_numpy(dtype="float64"),
            "decision": out["decision"].astype(str).to_numpy(),
            "reasons": reasons,
            "model_version": [version] * len(df),
            "fallback": [fallback] * len(df),
            "decide_ms": [now] * len(df),
        })


RESULT_TYPES = {"DOUBLE": DataTypes.DOUBLE(), "STRING": DataTypes.STRING(), "BOOLEAN": DataTypes.BOOLEAN(),
                "BIGINT": DataTypes.BIGINT(), "ARRAY<STRING>": DataTypes.ARRAY(DataTypes.STRING())}


def result_fields() -> list:
    """RESULT_FIELDS as DataTypes.FIELDs, for a UDF's ROW result."""
    return [DataTypes.FIELD(n, RESULT_TYPES[t]) for n, t in RESULT_FIELDS]


def scorer(fs: FeatureSet, model_path: Optional[str], **kwargs) -> ScoreBatch:
    """The scoring function of ``fs`` (for udfs/engine.py, which runs it in the derived features' UDF)."""
    return ScoreBatch(fs.feature_names, model_path, fs.definition_hash, **kwargs)
