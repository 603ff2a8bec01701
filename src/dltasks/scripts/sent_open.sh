# shellcheck shell=sh
# $1: the project folder (absolute); $2: the old sync stamp, from $HOME, or ""; $3: "adopt" to
# take a foreign folder; $4: the sync mark folder; $5: the sent record in it; $6: the runs
# folder; $7: a run id as a glob. Prints the folder's real path, then its state: "mark" and
# the record, "empty", "legacy", "adopted" (these three make an empty record), "foreign" or
# "link". A folder that holds $6/<run id>/ (a remote `train` of an older dltasks made it) is
# legacy, like one with the old sync stamp.
mkdir -p -- "$1" && [ ! -L "$1" ] && cd -P -- "$1" && pwd -P || exit 3
mark=$4 sent=$5 runs=$6
if [ -L "$mark" ] || [ -L "$sent" ]; then echo link; exit 0; fi
if [ -f "$sent" ]; then echo mark; cat "$sent"; exit 0; fi
# Files (not only folders) outside $runs: the folder is dltasks' only when it says so.
if [ -n "$(find . -path "./$runs" -prune -o ! -type d -print -quit 2>/dev/null)" ]; then
  # shellcheck disable=SC2086 # $7 is a glob, meant to match run folders
  if { [ -n "$2" ] && [ -f "$HOME/$2" ]; } || ls -d "$runs"/$7/ >/dev/null 2>&1; then
    echo legacy
  elif [ "$3" = adopt ]; then echo adopted
  else echo foreign; exit 0
  fi
else
  echo empty
fi
mkdir -p "$mark" && printf "{}" > "$sent.tmp" && mv -f "$sent.tmp" "$sent"
