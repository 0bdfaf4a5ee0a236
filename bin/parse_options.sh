#!/usr/bin/env bash
# Kaldi-style option parsing for recipe scripts; source it after setting defaults:
#
#   stage=1; nj=4
#   . parse_options.sh || exit 1
#
# Every "--name value" (or "--name=value") on the command line sets the shell variable "name"
# (dashes become underscores), which must already exist; "--help" prints $help_message.
# Remaining arguments are left in "$@".

while true; do
  [ -z "${1:-}" ] && break
  case "$1" in
    --help|-h)
      if [ -n "${help_message:-}" ]; then printf '%s\n' "$help_message" >&2; else
        echo "$0: no help message; options are the variables set before parse_options.sh" >&2; fi
      exit 0 ;;
    --*=*)
      __name=$(echo "${1%%=*}" | sed 's/^--//; s/-/_/g'); __value="${1#*=}"; shift ;;
    --*)
      __name=$(echo "$1" | sed 's/^--//; s/-/_/g')
      if [ $# -lt 2 ]; then echo "$0: option $1 needs a value" >&2; exit 1; fi
      __value="$2"; shift 2 ;;
    *) break ;;
  esac
  if ! eval "[ -n \"\${${__name}+set}\" ]"; then
    echo "$0: unknown option --${__name//_/-}" >&2; exit 1
  fi
  eval "__old=\"\${${__name}}\""
  if [ "$__old" = true ] || [ "$__old" = false ]; then
    case "$__value" in true|false) ;; *)
      echo "$0: option --${__name//_/-} takes true or false, got '$__value'" >&2; exit 1 ;;
    esac
  fi
  printf -v "$__name" '%s' "$__value"
done
unset __name __value __old
true
