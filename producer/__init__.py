"""Synthetic prediction streams whose accuracy decays in a known way, for testing and demonstrating the monitor.

One concept per module, each importable on its own and free of side effects:

- :mod:`producer.scenario` -- what each model's truth does over time, and the ``--models`` spec parser;
- :mod:`producer.stream` -- seeded, vectorised sampling of a scenario into numpy columns;
- :mod:`producer.manifest` -- the ground truth of a run, for grading the monitor;
- :mod:`producer.encode` -- events as JSON Kafka records;
- :mod:`producer.publisher` -- paced, batched sending through a minimal ``Sender`` protocol;
- :mod:`producer.cli` -- the ``decaywatch produce`` subcommand (the only layer that prints or reads the environment).
"""
