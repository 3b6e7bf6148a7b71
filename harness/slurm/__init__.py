"""`harness run --executor slurm`: a suite's shards as one Slurm job array, a dependent job that merges and gates
them, and the waiting `harness run` (harness.slurm.executor). The scripts and the record are pure
(harness.slurm.scripts); only harness.slurm.client runs Slurm's commands."""
