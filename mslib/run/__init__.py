"""The run layer: settings, training, evaluation protocol, records, code hash, train-or-load, statistics.

- :mod:`mslib.run.config`: :class:`~mslib.run.config.TrainConfig`, from a YAML file plus overrides.
- :mod:`mslib.run.trainer`: the training loop (:func:`~mslib.run.trainer.fit`), resumable and seeded.
- :mod:`mslib.run.protocol`: when a run evaluates, which model it selects, the official protocol's number.
- :mod:`mslib.run.records`: run records and the results folder that stores them (storage only).
- :mod:`mslib.run.tables`: a record's metrics table, the CSV files behind the book's tables.
- :mod:`mslib.run.codehash`: the hash of the code a run executes (the trainer's import closure, by syntax tree).
- :mod:`mslib.run.runs`: train or load one run, resumable parallel sweeps (``run_grid``).
- :mod:`mslib.run.stats`: means with 95% intervals over seeds, paired differences between variants.
- :mod:`mslib.run.convergence`: learning curves from a run's evaluations, the late-gain convergence criterion.
- :mod:`mslib.run.significance`: tests over a family of paired comparisons (t, sign-flip, Holm), power and the
  minimum detectable effect.
- :mod:`mslib.run.tuning`: an equal tuning budget per loss (seeded random search on validation classes).

Nothing is re-exported here: import from the module (importing the package stays cheap, and the code hash of a run
does not depend on this file's imports).
"""
