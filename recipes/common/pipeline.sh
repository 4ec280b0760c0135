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
#   --stage N --stop-stage M --exp-dir DIR --jobs N --force --cmd PREFIX --nj N
#   --vocoder world|wavenet|wavernn|source_filter --vocoder-config FILE --gpu
#   <conf>.<key>=<value>   (goes to the stage(s) reading <conf>.yaml)
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
    cmd=
    nj=1
    vocoder=world
    vocoder_config=
    gpu=0
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
        --cmd) cmd=$2 ;;
        --nj) nj=$2 ;;
        --vocoder) vocoder=$2 ;;
        --vocoder-config|--vocoder_config) vocoder_config=$2 ;;
        --gpu) gpu=1; consumed=1 ;;
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
# others), each name from the first conf folder that has it, in name order
model_confs() {
    local f d
    for f in $(for d in "${conf_dirs[@]}"; do for f in "$d"/acoustic*.yaml; do [ -f "$f" ] && basename "$f"; done; done | sort -u); do
        case "$f" in *_gpu.yaml) [ "${gpu:-0}" = 1 ] && conf_file "${f%.yaml}" ;; *) [ "${gpu:-0}" = 0 ] && conf_file "${f%.yaml}" ;; esac
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

# pipeline_setup: check the options, go to the repository, name the models of this run
pipeline_setup() {
    case "$nj" in ''|*[!0-9]*|0) echo "run.sh: --nj must be a positive integer, got '$nj'" >&2; exit 2 ;; esac
    cd "$root"
    command -v sps >/dev/null || { echo "run.sh: the 'sps' command is not installed (pip install -e .)" >&2; exit 1; }
    mkdir -p "$exp_dir/log"
    duration_conf=$(conf_file duration)
    if [ "$gpu" = 1 ]; then duration_conf=$(conf_file duration_gpu); fi
    acoustic_models=$(for f in $(acoustic_confs dnn) $(acoustic_confs conv lstm); do conf_name "$f"; done)
    duration_model=$(conf_name "$duration_conf")
    tts_model=$(for m in $acoustic_models; do :; done; echo "${m:-}")   # the last one: full TTS with predicted durations
}

# Signals: SIGINT, SIGTERM and SIGHUP are passed on to the running stage (or its shard jobs);
# the script waits for it to end and exits with 128 + the signal, so no stage outlives it.
stage_pids=()
interrupted=
signals=0
forward() {
    interrupted=$1
    signals=$((signals + 1))
    if [ ${#stage_pids[@]} -gt 0 ]; then kill -s "$1" "${stage_pids[@]}" 2>/dev/null || true; fi
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

# sps_stage <stage-name> <conf-name-or-file> [extra args...]: run one 'sps' subcommand with the
# conf file and the overrides addressed to it, logged to log/<stage>.<time>.log; with --cmd,
# a per-utterance stage (features, linguistic, synth) runs as --nj shard jobs through the prefix.
sps_stage() {
    case "$1" in features|linguistic|synth) _sps_run "$([ -n "$cmd" ] && echo 1 || echo 0)" "$@" ;; *) _sps_run 0 "$@" ;; esac
}
# sps_shards <stage-name> <conf> [extra args...]: the same as --nj shard jobs through --cmd (or
# one run with --jobs without --cmd), for steps of other stages that take --shard
sps_shards() { _sps_run "$([ -n "$cmd" ] && echo 1 || echo 0)" "$@"; }
_sps_run() {
    local sharded=$1 name=$2 cfg=$3; shift 3
    if [ -n "$interrupted" ]; then exit $((128 + $(kill -l "$interrupted"))); fi
    local key args=() file
    file=$(conf_file "$cfg")
    key=$(basename "$file" .yaml)
    for o in "${overrides[@]+"${overrides[@]}"}"; do
        case "$o" in "$key".*) args+=("${o#"$key".}") ;; esac
    done
    if [ "$force" = 1 ]; then args+=(--force); fi
    local log
    log=$exp_dir/log/$name.$(date +%Y%m%d-%H%M%S).$$.log
    echo "=== sps $name --config $file $* ${args[*]+"${args[*]}"}  (log: $log)"
    local status=0
    stage_pids=()
    if [ "$sharded" = 1 ]; then
        local k
        for k in $(seq 1 "$nj"); do
            # shellcheck disable=SC2086 # the prefix is a command line of its own
            $cmd sps "$name" --exp-dir "$exp_dir" --config "$file" --jobs 1 --shard "$k/$nj" "$@" \
                "${args[@]+"${args[@]}"}" > "${log%.log}.$k.log" 2>&1 &
            stage_pids+=($!)
        done
        for k in "${!stage_pids[@]}"; do
            wait_for "${stage_pids[$k]}" || { status=$?; echo "run.sh: sps $name shard $((k + 1))/$nj failed; see ${log%.log}.$((k + 1)).log" >&2; }
        done
    else
        # in the background, so that signals can be passed on (tee ignores them: it ends with the stage)
        sps "$name" --exp-dir "$exp_dir" --config "$file" --jobs "$jobs" "$@" "${args[@]+"${args[@]}"}" \
            > >(trap '' INT TERM HUP; exec tee "$log") 2>&1 &
        stage_pids=($!)
        wait_for "${stage_pids[0]}" || status=$?
    fi
    stage_pids=()
    if [ -n "$interrupted" ]; then
        echo "run.sh: interrupted by SIG$interrupted during 'sps $name' (it has ended); see $log" >&2
        exit $((128 + $(kill -l "$interrupted")))
    fi
    if [ "$status" != 0 ]; then
        echo "run.sh: stage 'sps $name' failed (exit $status); see $log and the reports under $exp_dir" >&2
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
        wavenet|wavernn|source_filter) vocoder_config=${vocoder_config:-$(conf_file "$vocoder")} ;;
        *) echo "run.sh: --vocoder must be world, wavenet, wavernn or source_filter, got '$vocoder'" >&2; exit 2 ;;
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
