#!/usr/bin/env bash
# PostgreSQL and Redis on loopback for the production-profile tests: installed from Debian's
# packages when missing (root with apt only), started when not running. Nothing else binds.
set -uo pipefail
have() { command -v "$1" >/dev/null 2>&1; }
installed_pg=0
if ! have pg_ctlcluster || ! have redis-server; then
  if have apt-get && [ "$(id -u)" = 0 ]; then
    echo "installing postgresql and redis-server (Debian packages) for the production-profile tests ..."
    apt-get update -qq >/dev/null 2>&1 || true
    have pg_ctlcluster || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null && installed_pg=1; }
    have redis-server || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "WARNING: PostgreSQL/Redis missing and cannot be installed here; production tests will skip"
  fi
fi
if have pg_ctlcluster; then
  version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)"
  if [ -n "$version" ]; then
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    if [ "$installed_pg" = 1 ] && [ -f "$hba" ]; then
      # a cluster we just installed: trust on loopback only, as the machine image has it
      sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/; s/^(host\s+all\s+all\s+::1\/128\s+)\S+/\1trust/' "$hba"
      sed -i -E "s/^#?listen_addresses.*/listen_addresses = '127.0.0.1'/" "/etc/postgresql/$version/main/postgresql.conf"
    fi
    if ! pg_isready -h 127.0.0.1 -q 2>/dev/null; then
      pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
      for _ in $(seq 1 20); do pg_isready -h 127.0.0.1 -q 2>/dev/null && break; sleep 0.5; done
    fi
  fi
fi
if have redis-server && ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
exit 0
