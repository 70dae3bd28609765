"""Feature definitions and pure feature logic. Never imports Flink."""
