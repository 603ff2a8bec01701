#!/usr/bin/env bash
# Make sure a Docker engine answers: install the distribution's engine when none exists,
# start dockerd in the background when none runs. Idempotent; used by dev/test and quickstart.
set -euo pipefail

if docker info >/dev/null 2>&1 || python3 -c "import docker; docker.from_env().ping()" >/dev/null 2>&1; then
  exit 0
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
if ! command -v dockerd >/dev/null 2>&1; then
  echo "dev/engine: installing the Docker engine from the distribution (docker.io)..." >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq docker.io >/dev/null
fi
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  $SUDO systemctl start docker
else
  echo "dev/engine: starting dockerd in the background (log: /var/log/dltasks-dockerd.log)" >&2
  # its own session: a signal to the caller's process group (Ctrl-C, a job's timeout) must
  # never reach the engine every later command and test talks to
  $SUDO sh -c 'setsid nohup dockerd >/var/log/dltasks-dockerd.log 2>&1 < /dev/null &'
fi
for _ in $(seq 1 60); do
  if python3 -c "import docker; docker.from_env().ping()" >/dev/null 2>&1; then exit 0; fi
  sleep 0.5
done
echo "dev/engine: dockerd did not answer within 30 s; see /var/log/dltasks-dockerd.log" >&2
exit 1
