#!/bin/bash
# Health probe at the official image's path: succeeds when the --bootstrap-server port accepts.
set -euo pipefail
server=localhost:9092
while [ $# -gt 0 ]; do
    case "$1" in --bootstrap-server) server="$2"; shift 2 ;; *) shift ;; esac
done
exec 3<>"/dev/tcp/${server%:*}/${server##*:}"
