#!/bin/sh
# Builds everything compose.example.yml runs, without a container registry: a Debian
# base image made with debootstrap and `docker import`, a directory of wheels filled by pip, the
# dns-sidecar image built from them, and busybox:latest (for the web and client services) from
# the host's busybox-static. Needs root (debootstrap), Debian's debootstrap and busybox-static,
# and a Debian mirror and the Python package index (or a pip that is configured for a mirror).
#
#   sudo examples/compose/build-offline.sh [--base-tar ROOTFS.tar] [--mirror URL] [TAG]
#
# TAG defaults to dns-sidecar:latest, the image the example runs. --base-tar imports a prepared
# root file system (a tarball of a debootstrap of bookworm with python3 and python3-venv)
# instead of running debootstrap. Images already present (the base, busybox) are kept.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
base=local/bookworm-python:latest
suite=bookworm
python_version=3.11  # bookworm's python3: the wheels are fetched for it
mirror=http://deb.debian.org/debian
base_tar=
tag=dns-sidecar:latest
while [ $# -gt 0 ]; do
  case $1 in
    --base-tar) base_tar=$2; shift 2 ;;
    --mirror) mirror=$2; shift 2 ;;
    -h|--help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
    -*) echo "build-offline.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    *) tag=$1; shift ;;
  esac
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
say() { echo "build-offline.sh: $*"; }

if ! docker image inspect "$base" >/dev/null 2>&1; then
  if [ -z "$base_tar" ]; then
    say "making $base with debootstrap ($suite, python3, python3-venv)"
    debootstrap --variant=minbase --include=python3,python3-venv "$suite" "$work/rootfs" "$mirror" \
      >"$work/debootstrap.log" 2>&1 || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
    # apt's downloads and the documentation only make the layers larger
    for leftover in var/cache/apt/archives var/lib/apt/lists usr/share/doc usr/share/man \
                    usr/share/locale usr/share/info; do
      rm -rf "${work:?}/rootfs/$leftover"
    done
    base_tar=$work/rootfs.tar
    tar -C "$work/rootfs" --numeric-owner -cf "$base_tar" .
    rm -rf "$work/rootfs"
  fi
  say "importing $base from $base_tar"
  docker import - "$base" <"$base_tar" >/dev/null
fi

say "filling $root/.wheels (Python $python_version, $(uname -m))"
requirements=$(python3 -c 'import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))
print("\n".join([*project["project"]["dependencies"], *project["build-system"]["requires"], "wheel"]))' \
  "$root/pyproject.toml")
echo "$requirements" | tr '\n' '\0' | xargs -0 python3 -m pip download -q --disable-pip-version-check \
  --only-binary=:all: --python-version "$python_version" --platform "manylinux2014_$(uname -m)" \
  --platform "manylinux_2_28_$(uname -m)" --dest "$root/.wheels"

if ! docker image inspect busybox:latest >/dev/null 2>&1; then
  busybox=$(command -v busybox) || { echo "build-offline.sh: busybox not found (apt-get install busybox-static)" >&2; exit 1; }
  say "importing busybox:latest from $busybox"
  mkdir -p "$work/busybox/bin"
  cp "$busybox" "$work/busybox/bin/busybox"
  for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$work/busybox/bin/$applet"
  done
  tar -C "$work/busybox" -c . | docker import --change 'CMD ["sh"]' - busybox:latest >/dev/null
fi

say "building $tag"
docker build --build-arg "BASE_IMAGE=$base" --build-arg PIP_NO_INDEX=1 \
  --build-arg PIP_FIND_LINKS=/src/.wheels -t "$tag" "$root"
say "built $tag"
