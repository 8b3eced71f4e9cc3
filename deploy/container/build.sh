#!/usr/bin/env bash
# Build gslb's container image from deploy/container/Containerfile (what `bin/dev image` runs).
#
#   deploy/container/build.sh image [TAG]   build TAG (default localhost/gslb:dev), base included
#   deploy/container/build.sh base          bootstrap (once) and import the local Debian base
#   deploy/container/build.sh mirror        print the Debian mirror the bootstrap would use
#
# Environment:
#   BASE                   build FROM this image instead (e.g. docker.io/library/python:3.11-slim
#                          where a registry is reachable); unset: a local Debian base, made with
#                          `debootstrap --variant=minbase` (python3, python3-venv), kept as a tar in
#                          GSLB_DEBOOTSTRAP_CACHE (~/.cache/gslb/debootstrap) and imported as
#                          localhost/gslb-base:SUITE. Delete the tar to bootstrap afresh.
#   GSLB_DEBIAN_SUITE      bookworm (python 3.11); trixie works too (python 3.13)
#   GSLB_DEBIAN_MIRROR     default: the host's own apt mirror, else debootstrap's default
#   PODMAN                 the podman command, e.g. "podman --root DIR --runroot DIR" for a
#                          private image store (the tests do that)
#
# Needs root (debootstrap; podman builds with chroot isolation, which works where containers
# cannot run) and the network (Debian mirror, PyPI). The host's CA bundle and a pip.conf naming
# it are mounted into the build, not copied into the image, so a TLS-inspecting proxy that the
# host trusts works.
set -euo pipefail
shopt -s inherit_errexit  # a failed debootstrap inside $(base_tar) must stop the script
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

SUITE="${GSLB_DEBIAN_SUITE:-bookworm}"
CACHE="${GSLB_DEBOOTSTRAP_CACHE:-$HOME/.cache/gslb/debootstrap}"
read -r -a PODMAN_CMD <<<"${PODMAN:-podman}"
BASE_TAG="localhost/gslb-base:$SUITE"

say() { printf '[image] %s\n' "$*" >&2; }

mirror() {  # the host's Debian mirror (deb822 or one-line sources), if it has one
    local url=""
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        url=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$url" ] && [ -f /etc/apt/sources.list ]; then
        url=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
    fi
    printf '%s\n' "${GSLB_DEBIAN_MIRROR:-$url}"
}

base_tar() {  # bootstrap once per suite; a failed or interrupted run leaves no tar behind
    local tar="$CACHE/$SUITE.tar"
    if [ -f "$tar" ]; then
        printf '%s\n' "$tar"
        return
    fi
    mkdir -p "$CACHE"
    local root
    root=$(mktemp -d "$CACHE/$SUITE.root.XXXXXX")
    trap 'rm -rf "$root" "$tar.partial"' EXIT
    say "debootstrap --variant=minbase $SUITE (once; cached in $tar)"
    # shellcheck disable=SC2046  # the mirror is one word or nothing
    debootstrap --variant=minbase --include=python3,python3-venv "$SUITE" "$root" $(mirror) >&2
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" --numeric-owner --xattrs -cf "$tar.partial" .
    mv "$tar.partial" "$tar"
    rm -rf "$root"
    trap - EXIT
    printf '%s\n' "$tar"
}

import_base() {
    local tar
    tar=$(base_tar)
    say "importing $tar as $BASE_TAG"
    "${PODMAN_CMD[@]}" import --quiet "$tar" "$BASE_TAG" >/dev/null
}

build() {  # build TAG
    local tag="$1" base="${BASE:-}"
    if [ -z "$base" ]; then
        import_base
        base="$BASE_TAG"
    fi
    local args=(--isolation chroot --format docker --build-arg "BASE=$base"
        --ignorefile deploy/container/Containerfile.dockerignore
        -f deploy/container/Containerfile -t "$tag")
    local bundle=/etc/ssl/certs/ca-certificates.crt tmp=""
    if [ -f "$bundle" ]; then
        tmp=$(mktemp -d)
        printf '[global]\ncert = %s\n' "$bundle" >"$tmp/pip.conf"
        args+=(-v "$tmp/pip.conf:/etc/pip.conf:ro" -v "$bundle:$bundle:ro")
    fi
    say "building $tag from $base"
    local status=0
    "${PODMAN_CMD[@]}" build "${args[@]}" . >&2 || status=$?
    [ -z "$tmp" ] || rm -rf "$tmp"
    [ "$status" -eq 0 ] || exit "$status"
    printf '%s\n' "$tag"
}

case "${1:-image}" in
    mirror) mirror ;;
    base) import_base ;;
    image) build "${2:-localhost/gslb:dev}" ;;
    *)
        sed -n '2,8p' "$0" >&2
        exit 2
        ;;
esac
