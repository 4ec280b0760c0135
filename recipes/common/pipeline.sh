# shellcheck shell=bash
# The stages every sps recipe shares, from acoustic features to the report: one
# implementation, sourced by recipes/*/run.sh. A recipe
#
#   1. sets root (the repository), conf_dirs (its conf folders, searched in order: a file
#      in an earlier folder hides the same name in a later one) and exp_dir (default);
#   2. sources this file and calls pipeline_defaults;
#   3. parses its arguments, handing every one it does not know to pipeline_option, which
#      sets 'consumed' to the number of arguments it took (0: not a shared option);
#   4. calls pipeline_setup, runs its own first stages with sps_stage / run_stage, then
#      run_pipeline N, where N is the stage number of 'features'.
#
# Shared options (pipeline_option):
#   --stage N --stop-stage M --exp-dir DIR --nj N --jobs J --ngpu G --num-nodes M --cmd-sh FILE
#   --force --vocoder world|wavenet|wavernn|source_filter --vocoder-config FILE --gpu
#   --acoustic-models NAME,...   only these acoustic models (the name: keys of acoustic*.yaml;
#                                an MGE model needs the one it starts from), e.g. to leave out
#                                the feed-forward DNNs: --acoustic-models acoustic_conv,acoustic_conv_mge
#   <conf>.<key>=<value>   (goes to the stage(s) reading <conf>.yaml)
#
# Jobs go through the launchers that the recipe's cmd.sh (or --cmd-sh FILE) sets, called
# the Kaldi way: $train_cmd [--gpu G] JOB=1:N <log with JOB> <command with JOB ...>
# (sps-launch local by default; sps-launch slurm, or a lab's own queue.pl/slurm.pl):
#   features, linguistic   --nj shard jobs (sps ... --jobs J --shard JOB/N) through $train_cmd
#   synth                  --nj shard jobs through $decode_cmd
#   train, train-vocoder   one job through $train_cmd; with --ngpu G, one job per node
#                          (--num-nodes M) through $cuda_cmd --gpu G, each running torchrun
#                          with G processes (c10d rendezvous across nodes)
#   vocode                 one job through $decode_cmd ($cuda_cmd --gpu 1 with --ngpu)
#   the others (prepare, stats, eval, report) run here; their output also goes to the terminal
# Each job writes log/<stage>.<time>.<pid>[.<conf>].<JOB>.log; a failed job stops the recipe
# with the launcher's lines naming it and its log.
#
# The stages of run_pipeline N (numbers N, N+1, ...):
#   N     features     WORLD/SPTK acoustic features, log-mel, waveform -> dump/   (features.yaml)
#   N+1   linguistic   HTS labels + question file -> linguistic/duration features (linguistic.yaml)
#   N+2   stats        normalisation statistics on the train split -> stats/      (stats.yaml)
#   N+3   duration     duration model -> models/<name>                            (duration.yaml)
#   N+4   acoustic DNN every acoustic*.yaml of a feed-forward model, in file order
#   N+5   acoustic seq every acoustic*.yaml of a convolutional or recurrent model (MSE, then MGE)
#   N+6   synth        WORLD copy synthesis and each acoustic model on the eval split (natural
#                      durations), plus full TTS with predicted durations          (synth.yaml)
#   N+7   eval         MCD, BAP, F0 RMSE/corr, V/UV, duration RMSE -> eval/        (eval.yaml)
#   N+8   vocoder      train the neural vocoder of --vocoder (wavenet|wavernn)     (<vocoder>.yaml)
#   N+9   vocode       neural vocoding of natural and generated features -> synth/, eval/
#   N+10  report       metrics table + eval/report.html                            (report.yaml)

pipeline_defaults() {
    stage=0
    stop_stage=100
    jobs=2
    force=0
    nj=1
    ngpu=0
    num_nodes=1
    cmd_sh=
    vocoder=world
    vocoder_config=
    gpu=0
    acoustic_only=
    overrides=()
}

# pipeline_option ARGS...: take a shared option from the front of ARGS; sets 'consumed'.
pipeline_option() {
    consumed=2
    case "$1" in
        --stage) stage=$2 ;;
        --stop-stage|--stop_stage) stop_stage=$2 ;;
        --exp-dir|--exp_dir) exp_dir=$2 ;;
        --jobs) jobs=$2 ;;
        --force) force=1; consumed=1 ;;
        --nj) nj=$2 ;;
        --ngpu) ngpu=$2 ;;
        --num-nodes|--num_nodes) num_nodes=$2 ;;
        --cmd-sh|--cmd_sh) cmd_sh=$2 ;;
        --cmd) echo "run.sh: --cmd is replaced by the launchers of cmd.sh (train_cmd, decode_cmd, cuda_cmd;" \
                    "docs/cluster.md)" >&2; exit 2 ;;
        --vocoder) vocoder=$2 ;;
        --vocoder-config|--vocoder_config) vocoder_config=$2 ;;
        --gpu) gpu=1; consumed=1 ;;
        --acoustic-models|--acoustic_models) acoustic_only=$2 ;;
        *=*) overrides+=("$1"); consumed=1 ;;
        *) consumed=0 ;;
    esac
}

# conf_file NAME: the path of NAME.yaml in the first conf folder that has it (NAME may be a path)
conf_file() {
    local d
    case "$1" in */*) echo "$1"; return 0 ;; esac
    for d in "${conf_dirs[@]}"; do
        if [ -f "$d/$1.yaml" ]; then echo "$d/$1.yaml"; return 0; fi
    done
    echo "${conf_dirs[0]}/$1.yaml"
}
# conf_name <file>: the name: key of a model config
conf_name() { sed -n 's/^name:[[:space:]]*\([^[:space:]#]*\).*/\1/p' "$1" | head -n 1; }
# model_confs: the acoustic model configs of this run (the *_gpu.yaml ones with --gpu, else the
# others; only the names of --acoustic-models when given), each name from the first conf folder
# that has it, in name order
model_confs() {
    local f d
    for f in $(for d in "${conf_dirs[@]}"; do for f in "$d"/acoustic*.yaml; do [ -f "$f" ] && basename "$f"; done; done | sort -u); do
        case "$f" in *_gpu.yaml) [ "${gpu:-0}" = 1 ] || continue ;; *) [ "${gpu:-0}" = 0 ] || continue ;; esac
        f=$(conf_file "${f%.yaml}")
        if [ -z "${acoustic_only:-}" ] || [[ ",$acoustic_only," == *",$(conf_name "$f"),"* ]]; then echo "$f"; fi
    done
    return 0
}
# conf_type <file>: the model type (dnn | lstm) of an acoustic config, or of the model it starts from
conf_type() {
    local t init
    t=$(sed -n '/^model:/,/^[^[:space:]]/s/^[[:space:]]*type:[[:space:]]*\([a-z]*\).*/\1/p' "$1" | head -n 1)
    if [ -z "$t" ]; then
        init=$(sed -n 's/^init_from:[[:space:]]*\([^[:space:]#]*\).*/\1/p' "$1" | head -n 1)
        for f in $(model_confs); do
            if [ -n "$init" ] && [ "$f" != "$1" ] && [ "$(conf_name "$f")" = "$init" ]; then t=$(conf_type "$f"); fi
        done
    fi
    echo "${t:-dnn}"
}
# acoustic configs of the given model types, MSE models before the MGE models that start from them
acoustic_confs() {
    local f
    for f in $(model_confs); do
        if [[ " $* " == *" $(conf_type "$f") "* ]] && ! grep -q '^init_from:[[:space:]]*[^[:space:]n#]' "$f"; then echo "$f"; fi
    done
    for f in $(model_confs); do
        if [[ " $* " == *" $(conf_type "$f") "* ]] && grep -q '^init_from:[[:space:]]*[^[:space:]n#]' "$f"; then echo "$f"; fi
    done
}

# pipeline_setup: check the options, go to the repository, read the launchers of cmd.sh,
# name the models of this run
pipeline_setup() {
    local v c m
    for v in nj jobs num_nodes; do
        case "${!v}" in ''|*[!0-9]*|0) echo "run.sh: --${v//_/-} must be a positive integer, got '${!v}'" >&2; exit 2 ;; esac
    done
    case "$ngpu" in ''|*[!0-9]*) echo "run.sh: --ngpu must be a number >= 0, got '$ngpu'" >&2; exit 2 ;; esac
    if [ "$num_nodes" -gt 1 ] && [ "$ngpu" = 0 ]; then
        echo "run.sh: --num-nodes needs --ngpu (the processes per node)" >&2; exit 2
    fi
    if [ -n "$cmd_sh" ] && [ ! -f "$cmd_sh" ]; then
        echo "run.sh: $cmd_sh: no such launcher settings file" >&2; exit 2
    fi
    cmd_sh=${cmd_sh:-$(cd "$(dirname "$0")" && pwd)/cmd.sh}
    cd "$root"
    command -v sps >/dev/null || { echo "run.sh: the 'sps' command is not installed (pip install -e .)" >&2; exit 1; }
    train_cmd="sps-launch local" decode_cmd="sps-launch local" cuda_cmd="sps-launch local"
    # shellcheck source=/dev/null
    if [ -f "$cmd_sh" ]; then . "$cmd_sh"; fi    # without one: the local launcher
    for c in train_cmd decode_cmd cuda_cmd; do
        [ -n "${!c:-}" ] || { echo "run.sh: $cmd_sh does not set $c" >&2; exit 2; }
        command -v "${!c%% *}" >/dev/null || { echo "run.sh: $c of $cmd_sh: '${!c%% *}' not found" \
            "(sps-launch comes with pip install -e .)" >&2; exit 1; }
    done
    mkdir -p "$exp_dir/log"
    duration_conf=$(conf_file duration)
    if [ "$gpu" = 1 ]; then duration_conf=$(conf_file duration_gpu); fi
    acoustic_models=$(for f in $(acoustic_confs dnn) $(acoustic_confs conv lstm); do conf_name "$f"; done)
    for m in ${acoustic_only//,/ }; do
        # shellcheck disable=SC2086 # one line of names
        [[ " $(echo $acoustic_models) " == *" $m "* ]] || { echo "run.sh: --acoustic-models: '$m' is not the" \
            "name: of any acoustic*.yaml of this run" >&2; exit 2; }
    done
    duration_model=$(conf_name "$duration_conf")
    tts_model=$(for m in $acoustic_models; do :; done; echo "${m:-}")   # the last one: full TTS with predicted durations
}

# Signals: SIGINT, SIGTERM and SIGHUP are passed on to the running stage (or its launcher,
# which passes them to its jobs or cancels them); the script waits for it to end and exits
# with 128 + the signal, so no stage outlives it.
stage_pids=()
interrupted=
signals=0
delivered=0
forward() {
    interrupted=$1
    signals=$((signals + 1))
    if [ ${#stage_pids[@]} -gt 0 ]; then
        delivered=$signals
        kill -s "$1" "${stage_pids[@]}" 2>/dev/null || true
    fi
}
# started <pid>: the stage just started in the background is the one signals go to; a signal
# that came between its start and this call (when no stage was known yet) is passed on now
started() {
    stage_pids=("$1")
    if [ -n "$interrupted" ] && [ "$delivered" != "$signals" ]; then
        delivered=$signals
        kill -s "$interrupted" "$1" 2>/dev/null || true
    fi
}
trap 'forward INT' INT
trap 'forward TERM' TERM
trap 'forward HUP' HUP
# wait_for <pid>: its exit status ('wait' returns early when a signal arrives: wait again)
wait_for() {
    local st seen
    while :; do
        seen=$signals
        wait "$1"; st=$?
        if [ "$seen" = "$signals" ]; then return "$st"; fi
    done
}

# summaries <log>...: the per-utterance summaries and training results in job logs
summaries() { grep -h -E '^[a-z][^:]*: [0-9]+ ok, [0-9]+ skipped|^train: ' "$@" 2>/dev/null || true; }

# sps_stage <stage-name> <conf-name-or-file> [extra args...]: run one 'sps' subcommand with the
# conf file and the overrides addressed to it: per-utterance stages as --nj shard jobs and
# trainings through the launchers of cmd.sh (see the top of this file), the others here,
# logged to log/<stage>.<time>.<pid>.log and the terminal.
sps_stage() { _sps_run "" "$@"; }
# sps_shards <stage-name> <conf> [extra args...]: --nj shard jobs through $train_cmd, for the
# steps of other stages that take --shard (e.g. the aligner's per-utterance steps)
sps_shards() { _sps_run shards "$@"; }
_sps_run() {
    local mode=$1 name=$2 cfg=$3; shift 3
    if [ -n "$interrupted" ]; then exit $((128 + $(kill -l "$interrupted"))); fi
    local key args=() file o
    file=$(conf_file "$cfg")
    key=$(basename "$file" .yaml)
    for o in "${overrides[@]+"${overrides[@]}"}"; do
        case "$o" in "$key".*) args+=("${o#"$key".}") ;; esac
    done
    if [ "$force" = 1 ]; then args+=(--force); fi
    local base status=0 launcher njobs=1 what
    base=$exp_dir/log/$name.$(date +%Y%m%d-%H%M%S).$$
    local cmd=(sps "$name" --exp-dir "$exp_dir" --config "$file")
    case "$mode:$name" in
        shards:*|*:features|*:linguistic|*:synth)
            launcher=$train_cmd; [ "$name" = synth ] && launcher=$decode_cmd
            njobs=$nj; what="$nj job(s) of $jobs worker(s)"
            cmd+=(--jobs "$jobs" --shard "JOB/$nj") ;;
        *:train|*:train-vocoder)
            base=$base.$key
            if [ "$ngpu" = 0 ]; then
                launcher=$train_cmd; what="1 process"
            else   # every node: torchrun with --ngpu processes
                launcher="$cuda_cmd --gpu $ngpu"; njobs=$num_nodes
                what="$num_nodes node(s) x $ngpu process(es) under torchrun"
                cmd=(sps-launch torchrun --nnodes "$num_nodes" --node JOB --nproc-per-node "$ngpu"
                     --rdzv-file "$base.rdzv" "${cmd[@]}")
            fi ;;
        *:vocode)   # one job: its metrics cover every utterance
            launcher=$decode_cmd; what="1 job"
            if [ "$ngpu" != 0 ]; then launcher="$cuda_cmd --gpu 1"; fi ;;
        *) cmd+=(--jobs "$jobs") ;;
    esac
    cmd+=("$@" "${args[@]+"${args[@]}"}")
    # in the background, so that signals can be passed on
    stage_pids=()
    if [ -n "${launcher:-}" ]; then
        echo "=== sps $name --config $file $* ${args[*]+"${args[*]}"}  ($what; log: $base.JOB.log)"
        # shellcheck disable=SC2086 # a launcher setting is a command line of its own
        $launcher JOB=1:"$njobs" "$base.JOB.log" "${cmd[@]}" &
        started $!
        wait_for "${stage_pids[0]}" || status=$?
        summaries "$base".*.log
        base=$base.JOB
    else
        echo "=== sps $name --config $file $* ${args[*]+"${args[*]}"}  (log: $base.log)"
        # (tee ignores the signals: it ends with the stage)
        "${cmd[@]}" > >(trap '' INT TERM HUP; exec tee "$base.log") 2>&1 &
        started $!
        wait_for "${stage_pids[0]}" || status=$?
    fi
    stage_pids=()
    if [ -n "$interrupted" ]; then
        echo "run.sh: interrupted by SIG$interrupted during 'sps $name' (it has ended); see $base.log" >&2
        exit $((128 + $(kill -l "$interrupted")))
    fi
    if [ "$status" != 0 ]; then
        echo "run.sh: stage 'sps $name' failed (exit $status); see $base.log and the reports under $exp_dir" >&2
        exit "$status"
    fi
}

run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

# run_pipeline N: the shared stages, 'features' being stage N
run_pipeline() {
    local n=$1 f m
    if run_stage "$n"; then sps_stage features features; fi
    if run_stage $((n + 1)); then sps_stage linguistic linguistic; fi
    if run_stage $((n + 2)); then sps_stage stats stats; fi
    if run_stage $((n + 3)); then sps_stage train "$duration_conf"; fi
    if run_stage $((n + 4)); then for f in $(acoustic_confs dnn); do sps_stage train "$f"; done; fi
    if run_stage $((n + 5)); then for f in $(acoustic_confs conv lstm); do sps_stage train "$f"; done; fi
    if run_stage $((n + 6)); then
        sps_stage synth synth copy_synthesis=true
        for m in $acoustic_models; do sps_stage synth synth acoustic_model="$m" duration_model="$duration_model"; done
        if [ -n "$tts_model" ]; then
            sps_stage synth synth durations=predicted acoustic_model="$tts_model" duration_model="$duration_model"
        fi
    fi
    if run_stage $((n + 7)); then sps_stage eval eval duration_model="$duration_model"; fi

    case "$vocoder" in
        world) ;;
        wavenet|wavernn|wavenet_plain|wavernn_plain|source_filter) vocoder_config=${vocoder_config:-$(conf_file "$vocoder")} ;;
        *) echo "run.sh: --vocoder must be world, wavenet, wavernn, wavenet_plain, wavernn_plain or source_filter, got '$vocoder'" >&2; exit 2 ;;
    esac
    if [ "$vocoder" != world ]; then
        # one thread per process: small recurrent steps stall with several OpenMP threads
        # (the classical source_filter vocoder has nothing to train)
        if run_stage $((n + 8)) && [ "$vocoder" != source_filter ]; then OMP_NUM_THREADS=1 sps_stage train-vocoder "$vocoder_config"; fi
        if run_stage $((n + 9)); then sps_stage vocode "$vocoder_config"; fi
    fi
    if run_stage $((n + 10)); then
        sps_stage eval eval duration_model="$duration_model"
        sps_stage report report
    fi
}
