#!/usr/bin/env bash
# Build a local Debian bookworm base image with python3 and venv, for machines that cannot pull
# python:3.11-slim from a registry. debootstrap fetches the packages from the Debian mirror on the
# host; `docker import` turns the root filesystem into an image. Usage: base-image.sh [TAG]
set -euo pipefail

TAG="${1:-rag-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DOCKER="${DOCKER:-docker}"

command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install -y debootstrap" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "debootstrap needs root" >&2; exit 1; }

rootfs="$(mktemp -d /tmp/rag-base.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

# minbase: only essential packages and apt. python3-venv brings ensurepip's wheels so that
# `python3 -m venv` works; no compiler, no build headers.
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$rootfs" "$MIRROR"

# Leave apt usable but empty its caches, and drop documentation nobody reads in a container.
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
  "$rootfs"/usr/share/locale/* "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/log/*.log

tar --numeric-owner -C "$rootfs" -c . | "$DOCKER" import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' \
  - "$TAG"
"$DOCKER" image inspect --format '{{.Id}} {{.Size}}' "$TAG"
