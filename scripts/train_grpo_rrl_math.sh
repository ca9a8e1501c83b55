#!/usr/bin/env bash
# Critic-free RL on math with Retrospective Replay: GRPO (group_norm), REINFORCE++-baseline
# (reinforce_baseline) or REINFORCE++ (reinforce), chosen by ESTIMATOR, with the rule-based reward
# function scripts/reward_math.py (1 when the boxed or last number equals the label, else 0).
# Hybrid engine on one node: actor, reference model and vLLM engines colocated, sleeping in turn.
#
# Runs:   python3 -m openrlhf_rrl.cli.train_ppo_ray <OpenRLHF flags> \
#            --algo.advantage.estimator $ESTIMATOR --reward.remote_url .../reward_math.py --rrl_enable ...
#         (or, with RAY_JOB_ADDRESS set, the same through `ray job submit` to a running Ray cluster)
#
# Edit:   the paths and sizes at the top (or set them in the environment, e.g.
#         ESTIMATOR=reinforce_baseline MODEL_PATH=/models/my-sft bash scripts/train_grpo_rrl_math.sh);
#         RRL_ARGS for how much and when to replay (docs/tuning.md). Extra arguments are appended
#         to the launcher's flags, and the last value of a flag wins.
#         Without a critic, --rrl_scorer is agree (cuts a failed response where it parts from a correct one
#         of its group: the outcome reward as a step checker; docs/measurements/), reward (cuts along failed
#         responses, scored by the group's rewards) or mc (Monte-Carlo refresh from restart outcomes);
#         critic needs scripts/train_ppo_rrl_single_node.sh.
#
# Check:  bash scripts/train_grpo_rrl_math.sh --dry-run
#         prints the composed command (one flag per line, shell-quoted) and starts nothing.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# ---- what to edit -------------------------------------------------------------------------
ESTIMATOR=${ESTIMATOR:-group_norm}                         # group_norm | reinforce_baseline | reinforce
MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-Math-7B-Instruct}
DATASET_PATH=${DATASET_PATH:-zhuzilin/dapo-math-17k}       # prompts with an answer label
INPUT_KEY=${INPUT_KEY:-prompt}
LABEL_KEY=${LABEL_KEY:-label}
# absolute: Ray actors load it, on any node and from any working directory
REWARD_FUNC=${REWARD_FUNC:-$SCRIPT_DIR/reward_math.py}
SAVE_PATH=${SAVE_PATH:-$PWD/exp/$ESTIMATOR-rrl-math}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
VLLM_TP=${VLLM_TP:-2}                                       # tensor parallel size of one vLLM engine
N_SAMPLES=${N_SAMPLES:-8}                                   # group size: samples per prompt
RRL_SCORER=${RRL_SCORER:-agree}                             # agree | reward | mc
RRL_REPLAY_SHARE=${RRL_REPLAY_SHARE:-0.25}
PYTHON=${PYTHON:-python3}
RAY_JOB_ADDRESS=${RAY_JOB_ADDRESS:-}                        # e.g. http://127.0.0.1:8265; empty: run here
# -------------------------------------------------------------------------------------------

# shellcheck source=scripts/launch_common.sh
source "$SCRIPT_DIR/launch_common.sh"
parse_launch_args "$0" "$@"

hybrid_engine 0.6 "$GPUS_PER_NODE" GPUS_PER_NODE

# KL as OpenRLHF's examples pair it with each estimator
case $ESTIMATOR in
   group_norm) KL_ARGS=(--algo.kl.use_loss --algo.kl.estimator k3 --algo.kl.init_coef 1e-3) ;;
   reinforce_baseline) KL_ARGS=(--algo.kl.use_loss --algo.kl.estimator k2 --algo.kl.init_coef 1e-5) ;;
   reinforce) KL_ARGS=(--algo.kl.estimator k1 --algo.kl.init_coef 1e-2) ;;  # KL in the reward
   *) die "ESTIMATOR=$ESTIMATOR: use group_norm, reinforce_baseline or reinforce" ;;
esac

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
   --data.input_key "$INPUT_KEY"
   --data.label_key "$LABEL_KEY"
   --data.apply_chat_template
   --data.max_len 5120
   --data.max_samples 128000
   --rollout.max_new_tokens 4096        # counts the replayed prefix too
   --rollout.batch_size 128
   --rollout.n_samples_per_prompt "$N_SAMPLES"
   --rollout.micro_batch_size 16
   --rollout.temperature 1.0
)

TRAIN_ARGS=(
   --algo.advantage.estimator "$ESTIMATOR"
   "${KL_ARGS[@]}"
   --actor.adam.lr 1e-6
   --actor.entropy_coef 0.0
   --train.batch_size 256
   --train.micro_batch_size 4
   --train.max_epochs 1
   --train.num_episodes 1
   --train.seed 42
   # with --rrl_train_prefix (RRL_ARGS) also set:
   # --algo.advantage.is_correction_level token
)

RRL_ARGS=(
   --rrl_enable
   --rrl_scorer "$RRL_SCORER"
   --rrl_replay_share "$RRL_REPLAY_SHARE"  # share of each batch's prompt slots restarted from the buffer
   --rrl_start_step 5                   # collect candidates first; restart once the policy has improved
   --rrl_hard_threshold 0.5             # prompts whose fresh group passes less often give candidates
   --rrl_success_threshold 0.5          # reward_math.py gives 1 or 0
   --rrl_cut_every 128                  # tokens between candidate cuts; well below the response length
   --rrl_max_prefix_frac 0.8            # leave the restart real work to do
   --rrl_buffer_path "$SAVE_PATH/rrl_buffer.jsonl"  # resume it, review it with rrl-inspect
   # cut after whole reasoning steps: the newline token id(s) of your tokenizer, e.g.
   # --rrl_boundary_tokens 198
)

checkpoints_and_logs "$SAVE_PATH" 10 3   # launch_common.sh: CKPT_ARGS, LOG_ARGS
LOG_ARGS+=(--eval.steps -1)

run_launcher \
   "$PYTHON" -m openrlhf_rrl.cli.train_ppo_ray \
   "${RESOURCE_ARGS[@]}" "${MODEL_ARGS[@]}" "${DATA_ARGS[@]}" "${TRAIN_ARGS[@]}" \
   "${RRL_ARGS[@]}" "${CKPT_ARGS[@]}" "${LOG_ARGS[@]}" "${EXTRA_ARGS[@]}"
