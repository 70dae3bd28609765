"""The `streamscore` command line and the local tooling around the jobs: a Kafka broker
(``kafka``), a standalone Flink cluster (``cluster``, ``cancel``, ``submit``), event generators and
a producer (``generate``, ``produce``), training and evaluation (``train``, ``evaluate``), drift
monitoring (``monitor``) and the demo. The jobs themselves live in jobs/ (one module per pipeline,
the shared graph, sources and sinks); this package imports them, never the other way round.
"""
