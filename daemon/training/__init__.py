"""Training control: triggers, the single-flight retrain door, the lease, evaluation, the gate and
one retrain cycle from candidate to promotion.

The learning itself is in ``learners/`` (run in a worker process); this package decides when to
train, on what, and whether the result is served.
"""
