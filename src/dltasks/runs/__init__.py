"""Runs: from a request to a plan, a container (or a job, or a Slurm batch job), and a record.

- :mod:`~dltasks.runs.plan`: settings + request -> a frozen plan: the path map, mapped
  configs/args/env and the :class:`~dltasks.engine.spec.RunSpec` as far as it needs no host.
- :mod:`~dltasks.runs.prepare`: the host steps every kind of run shares (ready the host, find
  the image); :mod:`~dltasks.runs.start`: plan + what the host told us -> the RunSpec to start
  (pure, one function for single runs, job nodes and Slurm nodes).
- :mod:`~dltasks.runs.single`: one container on one target; :mod:`~dltasks.runs.job`: one job
  across hosts (:mod:`~dltasks.runs.jobnet` says where nodes meet, :mod:`~dltasks.runs.torchrun`
  wraps the command); :mod:`~dltasks.runs.slurm` submits to Slurm
  (:mod:`~dltasks.runs.slurmscript` writes the batch script, pure).
- :mod:`~dltasks.runs.record`: the run's folder and record; :mod:`~dltasks.runs.listing`: runs
  found on an engine and in records; :mod:`~dltasks.runs.output`: local output that never stops
  a run.
"""
