"""Run bookkeeping and the statistics of comparing runs (:mod:`mslib.run.significance`)."""
