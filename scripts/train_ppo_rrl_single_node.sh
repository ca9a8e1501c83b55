#!/usr/bin/env bash
# Single-node PPO (GAE, with a critic) plus Retrospective Replay, in OpenRLHF's hybrid engine:
# actor, critic, reference model and vLLM engines share the node's GPUs and sleep in turn
# (--train.colocate_all, --vllm.enable_sleep, --ds.enable_sleep). Reward: the rule-based math
# reward in scripts/reward_math.py (1 for the label's answer, else 0).
#
# Runs:   python3 -m openrlhf_rrl.cli.train_ppo_ray <OpenRLHF flags> --rrl_enable --rrl_scorer critic ...
#         (or, with RAY_JOB_ADDRESS set, the same through `ray job submit` to a running Ray cluster)
#
# Edit:   the paths and sizes at the top (or set them in the environment, e.g.
#         MODEL_PATH=/models/my-sft GPUS_PER_NODE=4 bash scripts/train_ppo_rrl_single_node.sh);
#         RRL_ARGS for how much and when to replay (docs/tuning.md). Extra arguments are appended
#         to the launcher's flags, and the last value of a flag wins:
#         bash scripts/train_ppo_rrl_single_node.sh --rrl_replay_share 0.4
#
# Check:  bash scripts/train_ppo_rrl_single_node.sh --dry-run
#         prints the composed command (one flag per line, shell-quoted) and starts nothing.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# ---- what to edit -------------------------------------------------------------------------
MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-Math-1.5B-Instruct}  # actor (an SFT / instruct model)
CRITIC_PATH=${CRITIC_PATH:-$MODEL_PATH}                    # critic init; OpenRLHF adds the value head
DATASET_PATH=${DATASET_PATH:-zhuzilin/dapo-math-17k}       # prompts with an answer label
INPUT_KEY=${INPUT_KEY:-prompt}
LABEL_KEY=${LABEL_KEY:-label}
# absolute: Ray actors load it, on any node and from any working directory
REWARD_FUNC=${REWARD_FUNC:-$SCRIPT_DIR/reward_math.py}
SAVE_PATH=${SAVE_PATH:-$PWD/exp/ppo-rrl-single-node}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
VLLM_TP=${VLLM_TP:-2}                                       # tensor parallel size of one vLLM engine
RRL_REPLAY_SHARE=${RRL_REPLAY_SHARE:-0.25}
PYTHON=${PYTHON:-python3}
RAY_JOB_ADDRESS=${RAY_JOB_ADDRESS:-}                        # e.g. http://127.0.0.1:8265; empty: run here
# -------------------------------------------------------------------------------------------

# shellcheck source=scripts/launch_common.sh
source "$SCRIPT_DIR/launch_common.sh"
parse_launch_args "$0" "$@"

hybrid_engine 0.5 "$GPUS_PER_NODE" GPUS_PER_NODE

RESOURCE_ARGS=(
   --actor.num_nodes 1
   --actor.num_gpus_per_node "$GPUS_PER_NODE"
   --critic.num_nodes 1
   --critic.num_gpus_per_node "$GPUS_PER_NODE"
   --ref.num_nodes 1
   --ref.num_gpus_per_node "$GPUS_PER_NODE"
   "${HYBRID_ENGINE_ARGS[@]}"   # launch_common.sh: engines cover the actor's GPUs, all colocated
)

MODEL_ARGS=(
   --actor.model_name_or_path "$MODEL_PATH"
   --critic.model_name_or_path "$CRITIC_PATH"
   --reward.remote_url "$REWARD_FUNC"
   "${ZERO3_ARGS[@]}"
)

DATA_ARGS=(
   --data.prompt_dataset "$DATASET_PATH"
   --data.input_key "$INPUT_KEY"
   --data.label_key "$LABEL_KEY"
   --data.apply_chat_template
   --data.max_len 4096
   --data.max_samples 100000
   --rollout.max_new_tokens 3072
   --rollout.batch_size 128
   --rollout.n_samples_per_prompt 4      # a group per prompt: its pass rate says which prompts are hard
   --rollout.micro_batch_size 8
   --rollout.temperature 1.0
)

TRAIN_ARGS=(
   --algo.advantage.estimator gae
   --algo.kl.init_coef 0.001
   --actor.adam.lr 5e-7
   --critic.adam.lr 9e-6
   --train.batch_size 128
   --train.micro_batch_size 4
   --train.max_epochs 1
   --train.num_episodes 1
   --train.seed 42
   # with --rrl_train_prefix (RRL_ARGS) also set:
   # --algo.advantage.is_correction_level token
)

RRL_ARGS=(
   --rrl_enable
   --rrl_scorer critic                  # cut points and scores from the critic's values (GAE runs only)
   --rrl_replay_share "$RRL_REPLAY_SHARE"  # share of each batch's prompt slots restarted from the buffer
   --rrl_share_schedule linear
   --rrl_start_step 10                  # collect candidates first; restart once the policy has improved
   --rrl_warmup_steps 20                # ramp the share up over these steps
   --rrl_success_threshold 0.5          # reward_math.py gives 1 or 0
   --rrl_cut_every 64                   # tokens between candidate cuts; well below the response length
   --rrl_buffer_capacity 4096
   --rrl_buffer_path "$SAVE_PATH/rrl_buffer.jsonl"  # resume it, review it with rrl-inspect
)

checkpoints_and_logs "$SAVE_PATH" 20 3   # launch_common.sh: CKPT_ARGS, LOG_ARGS
LOG_ARGS+=(--eval.steps -1)

run_launcher \
   "$PYTHON" -m openrlhf_rrl.cli.train_ppo_ray \
   "${RESOURCE_ARGS[@]}" "${MODEL_ARGS[@]}" "${DATA_ARGS[@]}" "${TRAIN_ARGS[@]}" \
   "${RRL_ARGS[@]}" "${CKPT_ARGS[@]}" "${LOG_ARGS[@]}" "${EXTRA_ARGS[@]}"
