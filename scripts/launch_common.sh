# shellcheck shell=bash
# Shared by the OpenRLHF launch scripts (sourced): their arguments, --dry-run, and how a composed
# command is printed (one flag per line, shell-quoted, pasteable) and run.

# DRY_RUN=1 for --dry-run; --help prints the calling script's header; the rest go to EXTRA_ARGS
# (appended to the launcher's flags: the last value of a flag wins).
parse_launch_args() {
   local script=$1 arg
   shift
   DRY_RUN=0
   EXTRA_ARGS=()
   for arg in "$@"; do
      case $arg in
         --dry-run) DRY_RUN=1 ;;
         -h | --help) sed -n '2,/^set -euo/{s/^# //p;s/^#$//p}' "$script"; exit 0 ;;
         *) EXTRA_ARGS+=("$arg") ;;
      esac
   done
}

die() { echo "$(basename "$0"): $*" >&2; exit 2; }

# The hybrid engine: vLLM engines of VLLM_TP GPUs each, covering exactly the actor's GPUs, colocated
# with the models and sleeping in turn. $1: vLLM's GPU memory share; $2: the actor's GPU count; $3:
# that count's variable, named in the error. Sets VLLM_ENGINES and HYBRID_ENGINE_ARGS.
hybrid_engine() {
   local memory=$1 gpus=$2 name=$3
   (( gpus % VLLM_TP == 0 )) || die "$name ($gpus) is not a multiple of VLLM_TP ($VLLM_TP)"
   VLLM_ENGINES=$(( gpus / VLLM_TP ))
   # shellcheck disable=SC2034  # read by the scripts that source this file
   HYBRID_ENGINE_ARGS=(
      --vllm.num_engines "$VLLM_ENGINES"
      --vllm.tensor_parallel_size "$VLLM_TP"
      --vllm.gpu_memory_utilization "$memory"
      --train.colocate_all
      --vllm.enable_sleep
      --ds.enable_sleep
      --vllm.sync_backend nccl
      --vllm.enforce_eager
   )
}

# The memory settings every GPU script trains with: ZeRO-3, bf16, activation checkpointing, and
# samples packed without padding.
# shellcheck disable=SC2034  # read by the scripts that source this file
ZERO3_ARGS=(
   --ds.zero_stage 3
   --ds.param_dtype bf16
   --actor.gradient_checkpointing_enable
   --ds.packing_samples
)

# Checkpoints and logs under $1, as every launch script keeps them: the RRL buffer is saved with each
# checkpoint, a restarted run resumes from the last one, TensorBoard logs every step. $2: steps
# between checkpoints; $3: checkpoints kept. Sets CKPT_ARGS and LOG_ARGS.
checkpoints_and_logs() {
   local dir=$1 every=$2 keep=$3
   # shellcheck disable=SC2034  # read by the scripts that source this file
   CKPT_ARGS=(
      --ckpt.output_dir "$dir"
      --ckpt.path "$dir/ckpt"
      --ckpt.save_steps "$every"
      --ckpt.max_num "$keep"
      --ckpt.save_hf
      --ckpt.load_enable
   )
   # shellcheck disable=SC2034
   LOG_ARGS=(
      --logger.logging_steps 1
      --logger.tensorboard_dir "$dir/runs"
   )
}

# QUOTED=the word, quoted for the shell only when it needs it.
quote_word() {
   local safe='^[A-Za-z0-9_./:=,+@%-]+$'
   if [[ $1 =~ $safe ]]; then QUOTED=$1; else QUOTED="'${1//\'/\'\\\'\'}'"; fi
}

# A command on one line.
print_line() {
   local word line=''
   for word in "$@"; do
      [[ -z $line ]] || line+=' '
      quote_word "$word"
      line+=$QUOTED
   done
   printf '%s\n' "$line"
}

# A command as a line per flag with its values, continued with backslashes.
print_command() {
   local word line=''
   for word in "$@"; do
      if [[ $word == --* && -n $line ]]; then
         printf '%s \\\n' "$line"
         line='   '
      elif [[ -n $line ]]; then
         line+=' '
      fi
      quote_word "$word"
      line+=$QUOTED
   done
   printf '%s\n' "$line"
}

# Print the launcher command (through `ray job submit` when RAY_JOB_ADDRESS is set); with
# --dry-run stop there, else create SAVE_PATH and run it.
run_launcher() {
   local cmd=("$@")
   if [[ -n ${RAY_JOB_ADDRESS:-} ]]; then
      cmd=(ray job submit --address="$RAY_JOB_ADDRESS" -- "${cmd[@]}")
   fi
   if (( DRY_RUN )); then
      echo "# dry run: the command below is not run"
      print_command "${cmd[@]}"
      exit 0
   fi
   mkdir -p "$SAVE_PATH"
   print_command "${cmd[@]}"
   exec "${cmd[@]}"
}
