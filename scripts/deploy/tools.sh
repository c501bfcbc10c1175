#!/usr/bin/env bash
# Installs what `make test-deploy` needs, each step skipped when already there (idempotent):
# the Debian packages (Docker engine, debootstrap), promtool from Debian's prometheus package, and
# the Go-built tools (helm, docker compose), built once from the Go module proxy; all cached under
# ~/.cache/event-bridge/tools/.
set -euo pipefail

TOOLS="${TOOLS_DIR:-$HOME/.cache/event-bridge/tools}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
COMPOSE_VERSION="${COMPOSE_VERSION:-v2.40.3}"
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"
mkdir -p "$TOOLS"

need_apt=()
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
if [ "${#need_apt[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "tools.sh: needs root to apt-get install ${need_apt[*]}" >&2
        exit 1
    fi
    echo "tools.sh: apt-get install ${need_apt[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

command -v go >/dev/null 2>&1 || PATH="$PATH:/usr/local/go/bin"
build() {  # build NAME VERSION MODULE[/PKG]@VERSION [PKG-DIR]: builds once, keeps NAME-VERSION
    local name="$1" version="$2" pkg="$3"
    if [ ! -x "$TOOLS/$name-$version" ]; then
        if ! command -v go >/dev/null 2>&1; then
            echo "tools.sh: Go is needed to build $name" >&2
            exit 1
        fi
        echo "tools.sh: go install $pkg (once; cached in $TOOLS)"
        local tmp
        tmp="$(mktemp -d)"
        if [ -n "${4:-}" ]; then
            # A module whose go.mod has replace/exclude directives cannot be `go install`ed: build
            # it as the main module from its downloaded source instead.
            local src
            src="$(go mod download -json "${pkg%@*}@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
            cp -r "$src" "$tmp/src"
            chmod -R u+w "$tmp/src"
            (cd "$tmp/src" && CGO_ENABLED=0 go build -trimpath -o "$tmp/bin" "./$4")
            mv "$tmp/bin" "$TOOLS/$name-$version"
            rm -rf "$tmp"
        else
            GOBIN="$tmp" CGO_ENABLED=0 go install "$pkg"
            mv "$tmp"/* "$TOOLS/$name-$version"
            rmdir "$tmp"
        fi
    fi
    ln -sf "$name-$version" "$TOOLS/$name"
}
build helm "$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
build docker-compose "$COMPOSE_VERSION" "github.com/docker/compose/v2@$COMPOSE_VERSION" cmd
# promtool: taken from Debian's prometheus package (seconds), not built from the Go module proxy
# (15-30 minutes of a cold 2-core machine for the whole Prometheus module); Go only as a fallback.
debian_promtool() {
    [ -x "$TOOLS/promtool-debian" ] && return 0
    command -v apt-get >/dev/null 2>&1 || return 1
    local tmp
    tmp="$(mktemp -d)"
    (cd "$tmp" && { apt-get download prometheus >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get download prometheus >/dev/null 2>&1; }; }) \
        && dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x" \
        && "$tmp/x/usr/bin/promtool" --version >/dev/null 2>&1 \
        && mv "$tmp/x/usr/bin/promtool" "$TOOLS/promtool-debian"
    local ok=$?
    rm -rf "$tmp"
    return $ok
}
if debian_promtool; then
    ln -sf promtool-debian "$TOOLS/promtool"
else
    build promtool "$PROMETHEUS_VERSION" "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"
fi
echo "tools.sh: tools ready in $TOOLS"
