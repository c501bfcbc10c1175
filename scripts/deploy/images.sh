#!/usr/bin/env bash
# Local images for `make test-deploy`, where no registry serves images:
#   BASE_IMAGE   a Debian bookworm root filesystem (debootstrap from the Debian mirror apt uses,
#                then `docker import`) with Python 3.11, passed to the Dockerfile's BASE_IMAGE ARG;
#   KAFKA_IMAGE  Apache Kafka of the pinned version, built from the Maven-fetched broker jars in
#                ~/.cache/event-bridge on a bookworm + Java 17 root filesystem, standing in for the
#                official apache/kafka image (same tag, same KAFKA_* environment convention).
# Each image is built once: present images are kept (idempotent).
set -euo pipefail
cd "$(dirname "$0")/../.."

BASE_IMAGE="${BASE_IMAGE:-event-bridge-base:bookworm}"
KAFKA_IMAGE="${KAFKA_IMAGE:-apache/kafka:4.1.1}"
JRE_IMAGE="${JRE_IMAGE:-event-bridge-jre:bookworm}"
BIN="${BIN:-.venv/bin}"
MIRROR="${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\(\S*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

rootfs_image() {  # rootfs_image TAG PACKAGES: debootstrap a minimal bookworm with PACKAGES, import it
    local tag="$1" packages="$2"
    if docker image inspect "$tag" >/dev/null 2>&1; then
        return
    fi
    echo "images.sh: debootstrap bookworm ($packages) -> $tag"
    local root
    root="$(mktemp -d /var/tmp/event-bridge-rootfs.XXXXXX)"
    debootstrap --variant=minbase --include="$packages" bookworm "$root" "$MIRROR" >"$root.log" 2>&1 \
        || { tail -20 "$root.log" >&2; rm -rf "$root"; exit 1; }
    chroot "$root" apt-get clean
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* \
        "$root"/usr/share/man/* "$root"/usr/share/locale/*
    tar -C "$root" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
    rm -rf "$root" "$root.log"
}

rootfs_image "$BASE_IMAGE" "python3,python3-venv,ca-certificates"

if ! docker image inspect "$KAFKA_IMAGE" >/dev/null 2>&1; then
    rootfs_image "$JRE_IMAGE" "openjdk-17-jre-headless,ca-certificates"
    version="$("$BIN/python" -c 'from bridge.ops.localkafka import pinned_version; print(pinned_version())')"
    libs="$("$BIN/python" -c '
from bridge.ops.localkafka import LocalKafka
from bridge.settings import get_settings
print(LocalKafka(get_settings().cache_dir).fetch())')"
    [ "$KAFKA_IMAGE" = "${KAFKA_IMAGE%:*}:$version" ] || echo "images.sh: note: $KAFKA_IMAGE holds Kafka $version"
    context="$(mktemp -d)"
    cp -r "$libs" "$context/libs"
    cp deploy/kafka-image/Dockerfile deploy/kafka-image/run deploy/kafka-image/kafka-broker-api-versions.sh "$context/"
    echo "images.sh: building $KAFKA_IMAGE from the broker jars in $libs"
    docker build -q --build-arg "BASE_IMAGE=$JRE_IMAGE" --build-arg "KAFKA_VERSION=$version" \
        -t "$KAFKA_IMAGE" "$context" >/dev/null
    rm -rf "$context"
fi
echo "images.sh: $BASE_IMAGE and $KAFKA_IMAGE ready"
