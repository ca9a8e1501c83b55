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
