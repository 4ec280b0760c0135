# How run.sh starts its jobs: the launchers train_cmd, decode_cmd and cuda_cmd, called as
#     $train_cmd [--gpu G] JOB=1:N <log with JOB> <command with JOB ...>
# Local processes here; recipes/slt_festival/cmd.sh and docs/cluster.md show SLURM and a
# lab's own queue.pl/slurm.pl.
export train_cmd="sps-launch local"
export decode_cmd="sps-launch local"
export cuda_cmd="sps-launch local"
