#!/usr/bin/env bash
# Makes the base images that docker/Dockerfile and the compose files name,
# for a machine that can reach Debian's apt mirror but no container registry.
# An image that is already present, or that `docker pull` can fetch, is left
# alone; only a missing one is made here. Run as root (debootstrap, docker).
#
# The stand-ins, and how they differ from the official images:
#
#   debian:bookworm-slim
#       `debootstrap --variant=minbase bookworm` from this machine's
#       configured Debian mirror (or $DEBIAN_MIRROR), `docker import`ed, with
#       the official image's container settings: apt sources for bookworm,
#       bookworm-updates and bookworm-security; no documentation, man pages
#       or translations installed; empty apt lists; /usr/sbin/policy-rc.d
#       refusing to start services. The package set is minbase's, which is
#       close to, not exactly, the official slim image's. One addition: every
#       CA certificate this machine trusts beyond Debian's own (a
#       TLS-inspecting proxy's, say) goes to /usr/local/share/ca-certificates,
#       so an image that installs ca-certificates (the rust stand-in, for
#       cargo's downloads) trusts what this machine trusts.
#
#   rust:<version>-bookworm (the version from the Dockerfile's build stage)
#       The debian stand-in plus build-essential, pkg-config, ca-certificates,
#       curl and git, and this machine's Rust toolchain (the one `rustc` runs,
#       without its documentation) laid out as the official image lays it out:
#       RUSTUP_HOME=/usr/local/rustup, CARGO_HOME=/usr/local/cargo, rustup's
#       proxies (cargo, rustc, ...) in /usr/local/cargo/bin on PATH (not made
#       world-writable as the official image does: builds run as root). The
#       official image is built on buildpack-deps (many more -dev libraries);
#       respite needs none of them. The machine's rustc must be that version.
#
#   redis:7.2
#       The debian stand-in plus Debian's redis-server, redis-tools and
#       redis-sentinel (Redis 7.0 in bookworm, not 7.2), laid out as the
#       official image: user and group redis (999:999), WORKDIR /data (a
#       volume), port 6379, CMD redis-server, and a docker-entrypoint.sh that
#       does what the official one does (prepends redis-server to options or a
#       .conf file; as root, chowns /data and drops to the redis user; umask
#       0077). The official image compiles protected mode off; Debian's
#       binary has it on, so wrappers in /usr/local/bin (ahead of /usr/bin on
#       PATH) start redis-server and redis-sentinel with `--protected-mode no`
#       placed before the caller's options (a caller's own
#       `--protected-mode yes` still wins; a `protected-mode` line in a .conf
#       file does not).
#
# Environment: DEBIAN_MIRROR (default: the first bookworm mirror in
# /etc/apt/sources.list*, else http://deb.debian.org/debian),
# DEBIAN_SECURITY_MIRROR (likewise, for bookworm-security),
# NO_PULL=1 to skip the `docker pull` attempts.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

log() { printf '[stand-in-images] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

rust_image="$(sed -n 's/^FROM \(rust:[^ ]*\) AS build$/\1/p' "$here/Dockerfile")"
[ -n "$rust_image" ] || die "no 'FROM rust:... AS build' line in $here/Dockerfile"
debian_image=debian:bookworm-slim
redis_image=redis:7.2

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# Present, or pulled now: nothing to make.
available() {
  have_image "$1" && { log "$1: present"; return 0; }
  if [ "${NO_PULL:-0}" != 1 ] && timeout 60 docker pull -q "$1" >/dev/null 2>&1; then
    log "$1: pulled"
    return 0
  fi
  return 1
}

# The first URI in the apt sources serving suite $1 (one-line and deb822).
configured_mirror() {
  local suite="$1" f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    case "$f" in
      *.sources)
        awk -v suite="$suite" '
          /^[[:space:]]*$/ { if (uri != "" && ok) { print uri; exit } uri = ""; ok = 0; next }
          /^URIs:/ { uri = $2 }
          /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) ok = 1 }
          END { if (uri != "" && ok) print uri }' "$f" | head -n1
        ;;
      *)
        awk -v suite="$suite" '$1 == "deb" {
            i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
            if ($(i + 1) == suite) { print $i; exit } }' "$f"
        ;;
    esac
  done | head -n1
}

work=""
cleanup() { [ -z "$work" ] || rm -rf "$work"; }
trap cleanup EXIT
workdir() { [ -n "$work" ] || work="$(mktemp -d "${TMPDIR:-/tmp}/respite-stand-ins.XXXXXX")"; }

# Writes each certificate of this machine's CA bundle that no Debian
# ca-certificates file holds into directory $1, one .crt per certificate.
machine_only_cas() {
  local out="$1" bundle=/etc/ssl/certs/ca-certificates.crt known f n=0
  [ -r "$bundle" ] || return 0
  known="$work/known-cas"
  for f in /usr/share/ca-certificates/*/*.crt; do
    [ -r "$f" ] && grep -v -- '-----' "$f" | tr -d ' \r\n' && echo
  done >"$known"
  mkdir -p "$work/bundle"
  awk -v dir="$work/bundle" '/-----BEGIN CERTIFICATE-----/ { n++ } n { print > (dir "/" n ".pem") }' "$bundle"
  for f in "$work"/bundle/*.pem; do
    [ -e "$f" ] || continue
    if ! grep -qxF "$(grep -v -- '-----' "$f" | tr -d ' \r\n')" "$known"; then
      n=$((n + 1))
      cp "$f" "$out/machine-ca-$n.crt"
    fi
  done
  rm -rf "$work/bundle" "$known"
  [ "$n" = 0 ] || log "$debian_image: $n CA certificate(s) of this machine's beyond Debian's added"
}

make_debian() {
  command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
  local mirror security root
  mirror="${DEBIAN_MIRROR:-$(configured_mirror bookworm)}"
  mirror="${mirror:-http://deb.debian.org/debian}"
  security="${DEBIAN_SECURITY_MIRROR:-$(configured_mirror bookworm-security)}"
  security="${security:-http://deb.debian.org/debian-security}"
  workdir
  root="$work/rootfs"
  log "$debian_image: debootstrap --variant=minbase bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # What the official images configure for containers (debuerreotype).
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 755 "$root/usr/sbin/policy-rc.d"
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
  mkdir -p "$root/usr/local/share/ca-certificates"
  machine_only_cas "$root/usr/local/share/ca-certificates"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/cache/apt/*.bin "$root"/var/log/*.log
  tar --numeric-owner -C "$root" -c . \
    | docker import -c 'CMD ["bash"]' -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -m "stand-in: debootstrap minbase bookworm ($mirror)" - "$debian_image" >/dev/null
  rm -rf "$root"
  log "$debian_image: made"
}

make_rust() {
  local version sysroot toolchain triple rustup ctx
  version="${rust_image#rust:}"
  version="${version%%-*}"
  command -v rustc >/dev/null || die "no rustc on this machine to copy into $rust_image"
  sysroot="$(rustc --print sysroot)"
  triple="$(rustc -vV | sed -n 's/^host: //p')"
  local have
  have="$(rustc -V | awk '{print $2}')"
  case "$have" in
    "$version" | "$version".*) ;;
    *) die "$rust_image needs Rust $version; this machine's rustc is $have (move the Dockerfile's FROM with the toolchain)" ;;
  esac
  rustup="$(command -v rustup || true)"
  [ -n "$rustup" ] || die "rustup not found: the image lays out rustup's proxies as the official one does"
  rustup="$(readlink -f "$rustup")"
  toolchain="$have-$triple"
  workdir
  ctx="$work/rust"
  mkdir -p "$ctx/rustup/toolchains/$toolchain" "$ctx/cargo/bin"
  log "$rust_image: toolchain $toolchain from $sysroot"
  local part
  for part in bin lib libexec etc; do
    [ -e "$sysroot/$part" ] || continue
    cp -al "$sysroot/$part" "$ctx/rustup/toolchains/$toolchain/" 2>/dev/null \
      || cp -a "$sysroot/$part" "$ctx/rustup/toolchains/$toolchain/"
  done
  cp "$rustup" "$ctx/cargo/bin/rustup"
  printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\nauto_self_update = "disable"\n' \
    "$toolchain" >"$ctx/rustup/settings.toml"
  cat >"$ctx/Dockerfile" <<EOF
FROM $debian_image
RUN apt-get update \\
 && apt-get install -y --no-install-recommends build-essential pkg-config ca-certificates curl git \\
 && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup \\
    CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    RUST_VERSION=$have
COPY rustup /usr/local/rustup
COPY cargo /usr/local/cargo
RUN cd /usr/local/cargo/bin \\
 && for p in cargo cargo-clippy cargo-fmt clippy-driver rustc rustdoc rustfmt rust-gdb rust-lldb; do ln -s rustup "\$p"; done \\
 && rustup --version && cargo --version && rustc --version
LABEL org.opencontainers.image.description="stand-in for the official $rust_image (docker/stand-in-images.sh)"
EOF
  docker build -q -t "$rust_image" "$ctx" >/dev/null
  rm -rf "$ctx"
  log "$rust_image: made"
}

make_redis() {
  local ctx
  workdir
  ctx="$work/redis"
  mkdir -p "$ctx"
  # Protected mode off by default, as the official image compiles it.
  cat >"$ctx/protected-mode-off" <<'EOF'
#!/bin/sh
# Stand-in for the official redis image (docker/stand-in-images.sh): start
# Debian's binary with protected mode off, as the official image's default.
real="/usr/bin/$(basename "$0")"
case "$1" in
  -v | --version | -h | --help | --test-memory | --check-system) exec "$real" "$@" ;;
  - | [!-]*) conf="$1"; shift; exec "$real" "$conf" --protected-mode no "$@" ;;
  *) exec "$real" --protected-mode no "$@" ;;
esac
EOF
  cat >"$ctx/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -e
# First argument an option (`--port 7000`) or a .conf file: run redis-server.
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi
# Started as root: own the data directory, then run as the redis user.
if [ "$1" = 'redis-server' ] && [ "$(id -u)" = '0' ]; then
  find . \! -user redis -exec chown redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
um="$(umask)"
if [ "$um" = '0022' ]; then
  umask 0077
fi
exec "$@"
EOF
  chmod 755 "$ctx/protected-mode-off" "$ctx/docker-entrypoint.sh"
  cat >"$ctx/Dockerfile" <<EOF
FROM $debian_image
RUN groupadd --system --gid 999 redis \\
 && useradd --system --uid 999 --gid 999 --home-dir /data --no-create-home --shell /usr/sbin/nologin redis \\
 && apt-get update \\
 && apt-get install -y --no-install-recommends redis-server redis-tools redis-sentinel \\
 && rm -rf /var/lib/apt/lists/* \\
 && mkdir /data && chown redis:redis /data
COPY protected-mode-off /usr/local/bin/redis-server
COPY protected-mode-off /usr/local/bin/redis-sentinel
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /data
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
LABEL org.opencontainers.image.description="stand-in for the official $redis_image: Debian's Redis (docker/stand-in-images.sh)"
EOF
  docker build -q -t "$redis_image" "$ctx" >/dev/null
  rm -rf "$ctx"
  log "$redis_image: made"
}

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "no Docker engine answers (start dockerd)"

available "$debian_image" || make_debian
# The other two only need the debian image: made side by side.
workdir
pids=()
available "$rust_image" || { make_rust & pids+=($!); }
available "$redis_image" || { make_redis & pids+=($!); }
ok=1
for pid in "${pids[@]}"; do wait "$pid" || ok=0; done
[ "$ok" = 1 ] || die "a stand-in image could not be made (see above)"
