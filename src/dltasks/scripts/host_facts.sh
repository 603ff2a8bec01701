# shellcheck shell=sh
# The facts `inv setup`/`doctor` need about a host, each section after a "@@name" marker line
# (dltasks.hostsetup.facts.parse_facts reads them).
echo @@os; cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null
echo @@machine; uname -m
echo @@pid1; cat /proc/1/comm 2>/dev/null
echo @@service; if [ -x /etc/init.d/docker ] && command -v service >/dev/null; then echo yes; fi
echo @@uid; id -u
echo @@user; id -un
echo @@groups; id -Gn
echo @@sudo_user; echo "${SUDO_USER:-}"
echo @@smi; if command -v nvidia-smi >/dev/null; then nvidia-smi 2>&1; echo "@@smi_rc $?"; \
  nvidia-smi -q 2>/dev/null | grep -m1 "Product Brand"; fi
echo @@ctk; nvidia-ctk --version 2>/dev/null
echo @@daemon_json; cat /etc/docker/daemon.json 2>/dev/null
echo @@cdi; if [ -e /etc/cdi/nvidia.yaml ] || [ -e /var/run/cdi/nvidia.yaml ]; then echo yes; fi
echo @@dockerd; command -v dockerd
echo @@docker; command -v docker
echo @@end
