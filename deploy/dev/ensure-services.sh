#!/usr/bin/env bash
# Makes sure what the tests need is installed and running on this Debian machine:
# cargo-nextest, PostgreSQL on 127.0.0.1:5432 (trust auth for local tests), NATS with
# JetStream on 127.0.0.1:4222, and chromium with chromedriver (the browser test).
# Installs missing Debian packages with apt and starts the servers when they are not
# running. It never stops or restarts a server it did not start.
set -euo pipefail

log() { printf 'ensure-services: %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    log "apt-get update"
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {
  local what=$1 check=$2
  for _ in $(seq 1 60); do
    if eval "$check"; then return 0; fi
    sleep 0.5
  done
  log "$what did not come up"
  return 1
}

# --- toolchain -------------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1; then
  log "cargo is missing: install a Rust toolchain >= 1.94 (rustup) first"
  exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest from crates.io"
  cargo install cargo-nextest --locked
fi

# --- PostgreSQL ------------------------------------------------------------------------
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  apt_install postgresql postgresql-client
  fresh_postgres=1
else
  fresh_postgres=""
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  if [ -n "$fresh_postgres" ]; then
    # A server we just installed: let local test connections in without a password.
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    $SUDO sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
  fi
  log "starting PostgreSQL $version"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start
  wait_for PostgreSQL "pg_isready -q -h 127.0.0.1 -p 5432"
fi

# --- NATS with JetStream ---------------------------------------------------------------
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  apt_install nats-server
fi
if ! port_open 4222; then
  log "starting nats-server with JetStream"
  $SUDO mkdir -p /var/lib/nats-server
  $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server
  wait_for NATS "port_open 4222"
fi

# --- a headless browser for the unsubscribe-link test (P13) ----------------------------
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  apt_install chromium chromium-driver
fi

log "PostgreSQL and NATS are up"
