#!/bin/sh
# The image's entrypoint. Started as root (the image's default), it only reads which group owns
# the Docker socket, then runs dns-sidecar as the unprivileged dns-sidecar user in that group,
# keeping no capability but NET_BIND_SERVICE (port 53), and that one only when the container has
# it. The capability is ambient, not a file capability, so no-new-privileges can stay on. Started
# as any other user (`--user`), it runs dns-sidecar as that user, unchanged.
set -eu
server="/opt/dns-sidecar/bin/python3 -m sidecar"
if [ "$(id -u)" != 0 ]; then
  exec $server "$@"
fi
has_cap() {  # has_cap SET BIT: whether this process's capability set SET (CapEff, CapBnd) has BIT
  [ $(( 0x$(sed -n "s/^$1:[[:space:]]*//p" /proc/self/status) >> $2 & 1 )) = 1 ]
}
if ! { has_cap CapEff 6 && has_cap CapEff 7 && has_cap CapEff 8; }; then
  echo "dns-sidecar: started as root without SETGID, SETUID and SETPCAP, which it needs only to drop" \
       "root: add them to cap_add (as examples/compose/compose.yml does), or start it with --user" \
       "and --group-add (the Docker socket's group)" >&2
  exit 1
fi
case "${DOCKER_HOST:-}" in
  unix://*) socket=${DOCKER_HOST#unix://} ;;
  *) socket=/var/run/docker.sock ;;
esac
keep=-all
if has_cap CapBnd 10; then
  keep=-all,+net_bind_service
fi
user="--reuid=dns-sidecar --regid=dns-sidecar --groups=$(id -g dns-sidecar)"
if [ -S "$socket" ]; then
  user="$user,$(stat -c %g "$socket")"
  if [ $(( 0$(stat -c %a "$socket") & 022 )) = 0 ] && [ "$(stat -c %u "$socket")" = 0 ]; then
    # Only root may open it (some Docker Desktop versions mount it so): stay uid 0, but with no
    # capability but NET_BIND_SERVICE and nothing to regain (the file permission checks apply).
    echo "dns-sidecar: $socket is root's with mode $(stat -c %a "$socket") (no group write):" \
         "running as uid 0 without capabilities, not as dns-sidecar" >&2
    user="--clear-groups"
  fi
fi
# shellcheck disable=SC2086 # $user is several options on purpose
exec setpriv $user --inh-caps="$keep" --ambient-caps="$keep" --bounding-set="$keep" -- $server "$@"
