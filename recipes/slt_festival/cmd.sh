# How run.sh starts its jobs (the Kaldi/ESPnet convention). Each *_cmd is a launcher that
# run.sh calls as
#     $train_cmd [--gpu G] JOB=1:N <log with JOB> <command with JOB ...>
# and that runs the N jobs (JOB replaced by 1..N), a log each, and exits non-zero naming
# every failed job and its log.
#   train_cmd   per-utterance feature stages (features, linguistic) and CPU training
#   decode_cmd  synthesis and vocoding (synth, vocode)
#   cuda_cmd    training with --ngpu G (one job per node, each running torchrun)
# Options before JOB= are the launcher's: sps-launch local ignores the cluster ones, so a
# line can be switched between local and slurm alone.

# This machine: parallel processes, at most one per CPU (--max-jobs-run K to change it)
export train_cmd="sps-launch local"
export decode_cmd="sps-launch local"
export cuda_cmd="sps-launch local"

# SLURM (one array job per stage, submitted with sbatch --wait; any other --key value is
# passed to sbatch, e.g. --account, --qos, --constraint):
# export train_cmd="sps-launch slurm --partition cpu --time 4:00:00 --mem 4G"
# export decode_cmd="sps-launch slurm --partition cpu --time 4:00:00 --mem 4G"
# export cuda_cmd="sps-launch slurm --partition gpu --time 2-00:00:00 --mem 64G"

# A lab's own Kaldi launchers take the same arguments (docs/cluster.md):
# export train_cmd="/path/to/kaldi/egs/wsj/s5/utils/queue.pl --mem 4G"
# export cuda_cmd="/path/to/kaldi/egs/wsj/s5/utils/slurm.pl --config conf/slurm.conf"
