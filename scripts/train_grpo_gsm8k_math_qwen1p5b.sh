#!/usr/bin/env bash
# The GPU recipe of docs/gpu_recipe.md: GRPO (group_norm) with Qwen/Qwen2.5-1.5B-Instruct on GSM8K or
# MATH, on the 8 GPUs of one node, with Retrospective Replay (RRL=1) or without it (RRL=0). The two
# arms are one command: RRL=0 leaves out the --rrl_* flags and nothing else, and the launcher without
# --rrl_enable runs exactly OpenRLHF's train_ppo_ray. Reward: scripts/reward_math.py (1 when the boxed
# or last number equals the label, else 0). Hybrid engine: actor, reference model and vLLM engines
# colocated, sleeping in turn. Not run by the project (no GPU here): see docs/gpu_recipe.md.
#
# Runs:   python3 -m openrlhf_rrl.cli.train_ppo_ray <OpenRLHF flags> --eval.dataset <held-out set> \
#            [--rrl_enable --rrl_scorer agree --rrl_replay_share 0.25 --rrl_seed $SEED ...]
#         (or, with RAY_JOB_ADDRESS set, the same through `ray job submit` to a running Ray cluster)
#
# Edit:   DATASET=gsm8k|math (prompts, held-out set, lengths), RRL=1|0, SEED (the recipe runs 1, 2, 3);
#         DATA_DIR holds the {prompt, label} JSONL files that docs/gpu_recipe.md makes from the public
#         sets; SAVE_PATH defaults to exp/grpo-qwen1p5b-<dataset>-<rrl|baseline>-s<seed>, so no two
#         runs share one. E.g. DATASET=math RRL=0 SEED=2 bash scripts/train_grpo_gsm8k_math_qwen1p5b.sh
#         Extra arguments are appended to the launcher's flags, and the last value of a flag wins.
#
# Check:  bash scripts/train_grpo_gsm8k_math_qwen1p5b.sh --dry-run
#         prints the composed command (one flag per line, shell-quoted) and starts nothing.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# ---- what to edit -------------------------------------------------------------------------
DATASET=${DATASET:-gsm8k}                                  # gsm8k | math
RRL=${RRL:-1}                                              # 1: with replay; 0: the same run without it
SEED=${SEED:-1}                                            # the training seed, and RRL's own draws
MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-1.5B-Instruct}
DATA_DIR=${DATA_DIR:-$PWD/data}                            # absolute: Ray actors read the files
# absolute: Ray actors load it, on any node and from any working directory
REWARD_FUNC=${REWARD_FUNC:-$SCRIPT_DIR/reward_math.py}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
VLLM_TP=${VLLM_TP:-1}                                       # a 1.5B model fits one GPU per vLLM engine
N_SAMPLES=${N_SAMPLES:-8}                                   # group size: samples per prompt
RRL_REPLAY_SHARE=${RRL_REPLAY_SHARE:-0.25}                  # docs/tuning.md's default
PYTHON=${PYTHON:-python3}
RAY_JOB_ADDRESS=${RAY_JOB_ADDRESS:-}                        # e.g. http://127.0.0.1:8265; empty: run here
# -------------------------------------------------------------------------------------------

# shellcheck source=scripts/launch_common.sh
source "$SCRIPT_DIR/launch_common.sh"
parse_launch_args "$0" "$@"

# Per data set: the training prompts, the held-out set evaluated during the run, and lengths that
# fit its solutions (MATH's run several times longer than GSM8K's); max_len - max_new_tokens is
# the prompt's budget.
case $DATASET in
   gsm8k)
      DATASET_PATH=${DATASET_PATH:-$DATA_DIR/gsm8k_train.jsonl}  # openai/gsm8k train: 7473 problems
      EVAL_PATH=${EVAL_PATH:-$DATA_DIR/gsm8k_test.jsonl}         # openai/gsm8k test: 1319
      MAX_NEW_TOKENS=1024
      MAX_LEN=1536
      ;;
   math)
      DATASET_PATH=${DATASET_PATH:-$DATA_DIR/math_train.jsonl}   # MATH train: 7500
      EVAL_PATH=${EVAL_PATH:-$DATA_DIR/math500_test.jsonl}       # MATH-500: 500 problems of MATH test
      MAX_NEW_TOKENS=3072
      MAX_LEN=4096
      ;;
   *) die "DATASET=$DATASET: use gsm8k or math" ;;
esac
case $RRL in
   1) ARM=rrl ;;
   0) ARM=baseline ;;
   *) die "RRL=$RRL: use 1 (with replay) or 0 (without)" ;;
esac
[[ $SEED =~ ^[0-9]+$ ]] || die "SEED=$SEED: use a whole number"
SAVE_PATH=${SAVE_PATH:-$PWD/exp/grpo-qwen1p5b-$DATASET-$ARM-s$SEED}

hybrid_engine 0.6 "$GPUS_PER_NODE" GPUS_PER_NODE

# A run here reads the JSONL files (docs/gpu_recipe.md makes them): say so now, not after the models
# have loaded. A dry run, or a job submitted to a cluster, does not read them on this machine.
if (( ! DRY_RUN )) && [[ -z $RAY_JOB_ADDRESS ]]; then
   for file in "$DATASET_PATH" "$EVAL_PATH"; do
      [[ $file != *.jsonl || -f $file ]] || die "$file not found: make the data files first (docs/gpu_recipe.md, Data)"
   done
fi

RESOURCE_ARGS=(
   --actor.num_nodes 1
   --actor.num_gpus_per_node "$GPUS_PER_NODE"
   --ref.num_nodes 1
   --ref.num_gpus_per_node "$GPUS_PER_NODE"
   "${HYBRID_ENGINE_ARGS[@]}"   # launch_common.sh: engines cover the actor's GPUs, all colocated
)

MODEL_ARGS=(
   --actor.model_name_or_path "$MODEL_PATH"
   --reward.remote_url "$REWARD_FUNC"
   "${ZERO3_ARGS[@]}"
)

DATA_ARGS=(
   --data.prompt_dataset "$DATASET_PATH"
   --data.input_key prompt              # the JSONL format of docs/gpu_recipe.md
   --data.label_key label
   --data.apply_chat_template
   --data.max_len "$MAX_LEN"
   --rollout.max_new_tokens "$MAX_NEW_TOKENS"  # counts a restart's replayed prefix too
   --rollout.batch_size 128
   --rollout.n_samples_per_prompt "$N_SAMPLES"
   --rollout.micro_batch_size 16
   --rollout.temperature 1.0
)

EVAL_ARGS=(
   --eval.dataset "$EVAL_PATH"          # evaluations are always fresh rollouts, never restarts
   --eval.split train                   # a local JSONL file loads as one split named train
   --eval.steps 10
   --eval.temperature 0                 # greedy: one answer per problem, the held-out accuracy
   --eval.n_samples_per_prompt 1
)

TRAIN_ARGS=(
   --algo.advantage.estimator group_norm
   --algo.kl.use_loss                   # KL as OpenRLHF's examples pair it with group_norm
   --algo.kl.estimator k3
   --algo.kl.init_coef 1e-3
   --actor.adam.lr 1e-6
   # with replay an episode takes more steps (a displaced prompt is deferred, not dropped), which
   # would stretch a decaying schedule: a constant rate is the same at every step in both arms
   --actor.lr_scheduler constant
   --actor.entropy_coef 0.0
   --train.batch_size 256               # 4 optimizer steps per rollout batch of 128 x 8 samples
   --train.micro_batch_size 8
   --train.max_epochs 1
   --train.num_episodes 2               # 2 x 59 batches of 128 prompts: 118 steps without replay
   --train.seed "$SEED"
)

# The project's outcome-only defaults (docs/tuning.md): no step checker and no critic, so the
# scorer is agree; RRL=0 drops this group and nothing else.
RRL_ARGS=()
if (( RRL )); then
   RRL_ARGS=(
      --rrl_enable
      --rrl_scorer agree                # cut a failed response where it parts from a correct one of its group
      --rrl_replay_share "$RRL_REPLAY_SHARE"  # share of each batch's prompt slots restarted from the buffer
      --rrl_seed "$SEED"                # the buffer's and the planner's draws vary with the run's seed
      --rrl_buffer_path "$SAVE_PATH/rrl_buffer.jsonl"  # review it with rrl-inspect
   )
fi

# eval/eval_<datasource>_pass1, train/timing/step_total and train/rrl/* are read from $SAVE_PATH/runs
checkpoints_and_logs "$SAVE_PATH" 20 2   # launch_common.sh: CKPT_ARGS, LOG_ARGS

run_launcher \
   "$PYTHON" -m openrlhf_rrl.cli.train_ppo_ray \
   "${RESOURCE_ARGS[@]}" "${MODEL_ARGS[@]}" "${DATA_ARGS[@]}" "${EVAL_ARGS[@]}" "${TRAIN_ARGS[@]}" \
   "${RRL_ARGS[@]}" "${CKPT_ARGS[@]}" "${LOG_ARGS[@]}" "${EXTRA_ARGS[@]}"
