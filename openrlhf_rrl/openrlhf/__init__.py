"""The OpenRLHF 0.11.x integration: thin glue between OpenRLHF's Ray PPO pipeline and core/.

launch.py (the launcher) -> arguments.py (OpenRLHF's parser + RRL flags), startup_check.py,
install.py -> trainers.py (sync/async trainers with the pieces below), samples_generator.py (restart
slots), restart_rollout.py (restarts on the vLLM engines), experience_maker.py (harvest and
outcomes), buffer_actor.py (the named Ray actor holding the buffer), policy_actor.py (the policy
actor whose loss normaliser counts restart prefixes, --rrl_loss_norm). Importing this package
imports nothing of OpenRLHF; the modules do.
"""
