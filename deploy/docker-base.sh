#!/usr/bin/env bash
# Build a Debian bookworm base image with Python 3.11 from Debian's packages, for machines that
# reach Debian's mirror but no image registry: debootstrap, trim, trust the host's local CAs,
# `docker import`.
#   deploy/docker-base.sh [TAG] [MIRROR]      (root; debootstrap and docker)
# then: docker build --network host --build-arg BASE=TAG --target server -t desy-server .
set -euo pipefail

tag=${1:-desy-base:bookworm}
mirror=${2:-http://deb.debian.org/debian}
root=$(mktemp -d /var/tmp/desy-base.XXXXXX)
trap 'rm -rf "$root"' EXIT

echo "debootstrap bookworm into $root ..." >&2
debootstrap --variant=minbase --include=python3,python3-venv,passwd,ca-certificates \
    bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -20 "$root.log" >&2
    exit 1
}
rm -f "$root.log"
# What an image needs no copy of: downloaded packages, package lists, documentation, locales.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
echo "deb $mirror bookworm main" >"$root/etc/apt/sources.list"
# The host's own CAs (a site's TLS-inspecting proxy, say) are trusted in the image too.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null 2>&1
fi
chmod 755 "$root" # mktemp made it 0700: it becomes the image's /
tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$tag" >/dev/null
echo "$tag: $(docker image inspect --format '{{.Size}}' "$tag" | numfmt --to=iec)" >&2
