#!/usr/bin/env bash
# RLHF dialogue tuning with a reward model (helpfulness or safety) plus Retrospective Replay:
# PPO with GAE by default (critic initialised from the reward model, as OpenRLHF does), chat
# prompts through the model's chat template. Hybrid engine on one node: actor, critic, reference
# model, reward model and vLLM engines colocated, sleeping in turn.
#
# Runs:   python3 -m openrlhf_rrl.cli.train_ppo_ray <OpenRLHF flags> \
#            --reward.model_name_or_path $REWARD_MODEL_PATH --data.apply_chat_template --rrl_enable ...
#         (or, with RAY_JOB_ADDRESS set, the same through `ray job submit` to a running Ray cluster)
#
# Edit:   the paths at the top (or set them in the environment): REWARD_KIND picks the helpfulness
#         or the safety reward model (OpenRLHF 0.11.2 takes one). Under GAE the RRL scorer is the
#         critic; ESTIMATOR=reinforce_baseline (no critic) switches it to mc. RRL counts a restart
#         as a success when its reward model score is at least RRL_SUCCESS_THRESHOLD: put it at
#         the score of an answer you would accept (read a few scored samples first; with
#         --reward.normalize_enable 0 is the reward model's mean). Extra arguments are appended to
#         the launcher's flags, and the last value of a flag wins.
#
# Check:  bash scripts/train_rlhf_dialogue_rrl.sh --dry-run
#         prints the composed command (one flag per line, shell-quoted) and starts nothing.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# ---- what to edit -------------------------------------------------------------------------
MODEL_PATH=${MODEL_PATH:-OpenRLHF/Llama-3-8b-sft-mixture}   # the SFT policy
REWARD_KIND=${REWARD_KIND:-helpful}                         # helpful | safety
HELPFUL_RM_PATH=${HELPFUL_RM_PATH:-OpenRLHF/Llama-3-8b-rm-700k}
SAFETY_RM_PATH=${SAFETY_RM_PATH:-}                          # your safety (harmlessness) reward model
DATASET_PATH=${DATASET_PATH:-OpenRLHF/prompt-collection-v0.1}
INPUT_KEY=${INPUT_KEY:-context_messages}                    # a list of chat messages per prompt
ESTIMATOR=${ESTIMATOR:-gae}                                 # gae (critic) | reinforce_baseline
SAVE_PATH=${SAVE_PATH:-$PWD/exp/rlhf-dialogue-rrl-$REWARD_KIND}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
VLLM_TP=${VLLM_TP:-2}                                       # tensor parallel size of one vLLM engine
RRL_SCORER=${RRL_SCORER:-}                                  # empty: critic under gae, else mc
RRL_REPLAY_SHARE=${RRL_REPLAY_SHARE:-0.2}
RRL_SUCCESS_THRESHOLD=${RRL_SUCCESS_THRESHOLD:-0.0}
PYTHON=${PYTHON:-python3}
RAY_JOB_ADDRESS=${RAY_JOB_ADDRESS:-}                        # e.g. http://127.0.0.1:8265; empty: run here
# -------------------------------------------------------------------------------------------

# shellcheck source=scripts/launch_common.sh
source "$SCRIPT_DIR/launch_common.sh"
parse_launch_args "$0" "$@"

hybrid_engine 0.5 "$GPUS_PER_NODE" GPUS_PER_NODE

case $REWARD_KIND in
   helpful) REWARD_MODEL_PATH=$HELPFUL_RM_PATH ;;
   safety) REWARD_MODEL_PATH=$SAFETY_RM_PATH ;;
   *) die "REWARD_KIND=$REWARD_KIND: use helpful or safety" ;;
esac
[[ -n $REWARD_MODEL_PATH ]] || die "REWARD_KIND=$REWARD_KIND: set SAFETY_RM_PATH to the safety reward model"

case $ESTIMATOR in
   gae)  # PPO: a critic, which also scores RRL's cut points
      CRITIC_ARGS=(
         --critic.num_nodes 1
         --critic.num_gpus_per_node "$GPUS_PER_NODE"
         --critic.model_name_or_path "${CRITIC_PATH:-$REWARD_MODEL_PATH}"
         --critic.adam.lr 9e-6
      )
      RRL_SCORER=${RRL_SCORER:-critic} ;;
   reinforce_baseline)  # no critic: Monte-Carlo scoring of cut points (extra rollouts)
      CRITIC_ARGS=()
      RRL_SCORER=${RRL_SCORER:-mc} ;;
   *) die "ESTIMATOR=$ESTIMATOR: use gae or reinforce_baseline" ;;
esac

RESOURCE_ARGS=(
   --actor.num_nodes 1
   --actor.num_gpus_per_node "$GPUS_PER_NODE"
   --ref.num_nodes 1
   --ref.num_gpus_per_node "$GPUS_PER_NODE"
   --reward.num_nodes 1
   --reward.num_gpus_per_node "$GPUS_PER_NODE"
   "${HYBRID_ENGINE_ARGS[@]}"   # launch_common.sh: engines cover the actor's GPUs, all colocated
)

MODEL_ARGS=(
   --actor.model_name_or_path "$MODEL_PATH"
   --reward.model_name_or_path "$REWARD_MODEL_PATH"
   --reward.normalize_enable
   "${CRITIC_ARGS[@]}"
   "${ZERO3_ARGS[@]}"
)

DATA_ARGS=(
   --data.prompt_dataset "$DATASET_PATH"
   --data.input_key "$INPUT_KEY"
   --data.apply_chat_template
   --data.max_len 2048
   --data.max_samples 100000
   --rollout.max_new_tokens 1024        # counts the replayed prefix too
   --rollout.batch_size 128
   --rollout.n_samples_per_prompt 4     # a group per prompt: its pass rate says which prompts are hard
   --rollout.micro_batch_size 16
   --rollout.temperature 1.0
)

TRAIN_ARGS=(
   --algo.advantage.estimator "$ESTIMATOR"
   --algo.kl.init_coef 0.01
   --actor.adam.lr 5e-7
   --train.batch_size 128
   --train.micro_batch_size 4
   --train.max_epochs 1
   --train.num_episodes 1
   --train.seed 42
)

RRL_ARGS=(
   --rrl_enable
   --rrl_scorer "$RRL_SCORER"
   --rrl_replay_share "$RRL_REPLAY_SHARE"  # share of each batch's prompt slots restarted from the buffer
   --rrl_start_step 10                  # collect candidates first; restart once the policy has improved
   --rrl_success_threshold "$RRL_SUCCESS_THRESHOLD"  # on the reward model's scale
   --rrl_cut_every 32                   # tokens between candidate cuts; well below the response length
   --rrl_max_prefix_frac 0.7
   --rrl_buffer_path "$SAVE_PATH/rrl_buffer.jsonl"  # resume it, review it with rrl-inspect
)

checkpoints_and_logs "$SAVE_PATH" 20 3   # launch_common.sh: CKPT_ARGS, LOG_ARGS
LOG_ARGS+=(--eval.steps -1)

run_launcher \
   "$PYTHON" -m openrlhf_rrl.cli.train_ppo_ray \
   "${RESOURCE_ARGS[@]}" "${MODEL_ARGS[@]}" "${DATA_ARGS[@]}" "${TRAIN_ARGS[@]}" \
   "${RRL_ARGS[@]}" "${CKPT_ARGS[@]}" "${LOG_ARGS[@]}" "${EXTRA_ARGS[@]}"
