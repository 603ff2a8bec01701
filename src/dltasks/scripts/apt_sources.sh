# shellcheck shell=sh
# The host's apt sources (dltasks.images.base.host_sources): each file after a "### PATH" line.
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] && { echo "### $f"; cat "$f"; echo; }
done
true
