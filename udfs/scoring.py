"""Vectorized scoring inside the stream: a pandas UDF that loads the model once per worker.

The UDF never kills the job: a model that cannot be loaded, or a batch that fails to score,
is scored by the rules alone and marked ``fallback = true`` (counted in the metrics). A model
trained on another feature definition is refused earlier, at job start (``check_model``).
"""
from __future__ import annotations

import logging
import time
from typing import Optional, Sequence

import pandas as pd
from pyflink.table import DataTypes
from pyflink.table.udf import ScalarFunction, udf

from features import scoring
from features.featureset import FeatureSet

log = logging.getLogger(__name__)

RESULT_FIELDS = (("score", "DOUBLE"), ("decision", "STRING"), ("reasons", "ARRAY<STRING>"),
                 ("model_version", "STRING"), ("fallback", "BOOLEAN"), ("decide_ms", "BIGINT"))
RULES_VERSION = "rules"


def check_model(model_path: str, fs: FeatureSet) -> dict:
    """Metadata of the model the job will serve; raises ModelMismatchError/ModelLoadError."""
    model = scoring.load_model(model_path, expected_hash=fs.definition_hash)
    return model.metadata()


class ScoreBatch(ScalarFunction):
    def __init__(self, feature_names: Sequence[str], model_path: Optional[str], expected_hash: str):
        self.feature_names = list(feature_names)
        self.model_path = model_path
        self.expected_hash = expected_hash

    def open(self, function_context):
        self.model = None
        mg = function_context.get_metric_group()
        self.fallbacks = mg.counter("fallbackDecisions")
        self.scored = mg.counter("decisions")
        if self.model_path:
            try:
                self.model = scoring.load_model(self.model_path, expected_hash=self.expected_hash)
            except Exception as e:  # a broken model must not stop payments: rules take over
                log.error("model %s not loaded, scoring by rules: %s", self.model_path, e)

    def eval(self, *columns):
        df = pd.concat(columns, axis=1)
        df.columns = self.feature_names
        fallback = self.model is None
        out = None
        if not fallback:
            try:
                out = self.model.score_frame(df)
            except Exception as e:
                log.error("scoring failed for a batch of %d, using rules: %s", len(df), e)
                fallback = True
        if fallback:
            out = scoring.rules_only(df)
            self.fallbacks.inc(len(df))
        self.scored.inc(len(df))
        version = RULES_VERSION if fallback else self.model.model_version
        reasons = [r.split(scoring.REASON_SEP) if r else [] for r in out["reasons"]]
        return pd.DataFrame({
            "score": out["score"].to_numpy(dtype="float64"),
            "decision": out["decision"].astype(str).to_numpy(),
            "reasons": reasons,
            "model_version": [version] * len(df),
            "fallback": [fallback] * len(df),
            "decide_ms": [int(time.time() * 1000)] * len(df),
        })


def score_udf(fs: FeatureSet, model_path: Optional[str]):
    """The pandas UDF scoring ``fs``'s feature columns, returning a ROW of RESULT_FIELDS."""
    kinds = {"DOUBLE": DataTypes.DOUBLE(), "STRING": DataTypes.STRING(), "BOOLEAN": DataTypes.BOOLEAN(),
             "BIGINT": DataTypes.BIGINT(), "ARRAY<STRING>": DataTypes.ARRAY(DataTypes.STRING())}
    result = DataTypes.ROW([DataTypes.FIELD(n, kinds[t]) for n, t in RESULT_FIELDS])
    return udf(ScoreBatch(fs.feature_names, model_path, fs.definition_hash), result_type=result,
               func_type="pandas")
