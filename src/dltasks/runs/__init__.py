"""Runs: from a request to a plan, a container (or a job, or a Slurm batch job), and a record.

- :mod:`~dltasks.runs.plan`: settings + request -> the path map, mapped configs/args/env and a
  :class:`~dltasks.engine.spec.RunSpec`.
- :mod:`~dltasks.runs.single`: one container on one target; :mod:`~dltasks.runs.job`: one job
  across hosts (:mod:`~dltasks.runs.jobnet` says where nodes meet, :mod:`~dltasks.runs.torchrun`
  wraps the command); :mod:`~dltasks.runs.slurm` submits to Slurm
  (:mod:`~dltasks.runs.slurmscript` writes the batch script, pure).
- :mod:`~dltasks.runs.record`: the run's folder and record; :mod:`~dltasks.runs.listing`: runs
  found on an engine and in records; :mod:`~dltasks.runs.output`: local output that never stops
  a run.
"""
