#!/usr/bin/env bash
# `make up` / `make down`: Airflow as `airflow standalone` runs it (api-server, scheduler,
# dag-processor, triggerer; LocalExecutor; SQLite), started in order
# on 127.0.0.1 with the Alliance Watch DAGs, the single-writer pool and the SMTP connection.
#
#   bash dags/tools/standalone.sh up     # start in the background, wait until ready, print the UI
#   bash dags/tools/standalone.sh down   # stop it: every process of the session it started
#   bash dags/tools/standalone.sh env    # print the environment it runs with (for `airflow ...`)
#
# ALLIANCE_WATCH_HOME (default ./demo) holds config/, landing/, inbox/, the warehouse, and the
# Airflow home airflow-standalone/ (SQLite metadata DB, logs, state of this script).
# Ports: the API/UI takes a free port on 127.0.0.1 unless AIRFLOW_UI_PORT is given; nothing
# else listens (the log servers are off: see `up`). AIRFLOW_WORKER_LOG_PORT and
# AIRFLOW_TRIGGER_LOG_PORT still set the ports Airflow would ask for a running task's log.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${ALLIANCE_WATCH_BIN:-$ROOT/.venv/bin}"
export ALLIANCE_WATCH_HOME="$(mkdir -p "${ALLIANCE_WATCH_HOME:-$ROOT/demo}" && cd "${ALLIANCE_WATCH_HOME:-$ROOT/demo}" && pwd)"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$ALLIANCE_WATCH_HOME/airflow-standalone}"
STATE="$AIRFLOW_HOME/standalone.state"
LOG="$AIRFLOW_HOME/standalone.log"
PIDFILE="$AIRFLOW_HOME/standalone.pid"   # the session leader; its pid is the session id

free_port() { "$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

write_env() {
  local ui wl tl
  ui="${AIRFLOW_UI_PORT:-$(free_port)}"; wl="${AIRFLOW_WORKER_LOG_PORT:-$(free_port)}"
  tl="${AIRFLOW_TRIGGER_LOG_PORT:-$(free_port)}"
  cat > "$STATE" <<ENV
export PATH="$BIN:\$PATH"
export ALLIANCE_WATCH_HOME="$ALLIANCE_WATCH_HOME"
export AIRFLOW_HOME="$AIRFLOW_HOME"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
# the API server's plugin that serves the clinicians' answer links at /answers
export AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/dags/plugins"
export ALLIANCE_WATCH_ANSWER_SECRET_FILE="${ALLIANCE_WATCH_ANSWER_SECRET_FILE:-$AIRFLOW_HOME/answer_link.secret}"
export PYTHONPATH="$ROOT/dags\${PYTHONPATH:+:\$PYTHONPATH}"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__PARALLELISM=8
export AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT=120
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT=$ui
export AIRFLOW__API__BASE_URL="http://127.0.0.1:$ui"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$ui/execution/"
export AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=$wl
export AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=$tl
export AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC=1
export AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME=0.25
# the executor's workers fork from a server that imported Great Expectations and the pipeline
# modules once (pipelines/warmup.py), so each task starts warm instead of paying ~5 s of imports
export AIRFLOW__SCHEDULER__MP_START_METHOD=forkserver
export AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD=airflow.executors.local_executor,airflow.sdk.execution_time.supervisor,worker_warmup
export AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT=300
# a task whose process died without a word (SIGKILL of the task and its supervisor, the OOM
# killer) holds its pool slot, the single DuckDB writer, until the scheduler notices that its
# heartbeats stopped: after 30 s (default 300), looked for every 5 s (default 10). A live task
# heartbeats every 5 s ([workers] min_heartbeat_interval), so it has six chances; a task
# process killed alone is reported at once by its supervisor (docs/operations.md)
export AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT=30
export AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL=5
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=5
export AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL=10
export AIRFLOW__TRIGGERER__CAPACITY=200
ENV
}

up() {
  mkdir -p "$AIRFLOW_HOME" "$ALLIANCE_WATCH_HOME"/{config/clinics,landing,inbox}
  if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "already running (pid $(cat "$PIDFILE")); 'make down' first"; source "$STATE"; banner; return 0
  fi
  write_env
  # shellcheck disable=SC1090
  source "$STATE"
  # the secret that signs answer links: made once, kept with the installation (rotate: see
  # docs/deploy.md); never printed
  if [[ ! -s "$ALLIANCE_WATCH_ANSWER_SECRET_FILE" && -z "${ALLIANCE_WATCH_ANSWER_SECRET:-}" ]]; then
    (umask 077; "$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(32))' > "$ALLIANCE_WATCH_ANSWER_SECRET_FILE")
  fi
  # one interpreter for the metadata DB, the pool and the SMTP connection (each `airflow`
  # command pays the full import cost again)
  "$BIN/python" - <<'PY'
import json, os
from airflow.utils.db import initdb
from airflow.models import Connection, Pool
from airflow.utils.session import create_session

initdb()
from pipelines.settings import prepare_slots

Pool.create_or_update_pool("duckdb_writer", 1, "single DuckDB writer (embedded warehouse)", False)
Pool.create_or_update_pool(
    "ingest_prepare", prepare_slots(), "file preparation (CPU-bound): one per core", False
)
host = os.environ.get("ALLIANCE_WATCH_SMTP_HOST", "").strip()
if host:
    with create_session() as s:
        s.query(Connection).filter(Connection.conn_id == "smtp_default").delete()
        s.add(Connection(
            conn_id="smtp_default", conn_type="smtp", host=host,
            port=int(os.environ.get("ALLIANCE_WATCH_SMTP_PORT", "587")),
            login=os.environ.get("ALLIANCE_WATCH_SMTP_USER") or None,
            password=os.environ.get("ALLIANCE_WATCH_SMTP_PASSWORD") or None,
            extra=json.dumps({"from_email": os.environ.get("ALLIANCE_WATCH_SMTP_FROM", "alliance-watch@localhost")}),
        ))
PY
  # No log servers (--skip-serve-logs): Airflow binds them to every interface with no setting
  # for the host, and on one host the api-server reads each task's log from its file anyway.
  # The components of `airflow standalone`, started in order: the api-server first (tasks
  # report to its execution API; a task started before it answers hangs until the heartbeat
  # timeout, as `airflow standalone` allows), then scheduler, dag-processor and triggerer. All in
  # one new session: Airflow moves each task into a process group of its own (the supervisor's
  # setpgid), but a process group never leaves its session, so `down` finds every process
  # this started, task processes included, by the session id.
  setsid bash -c '
    airflow api-server & api=$!
    until curl -fsS "http://127.0.0.1:$AIRFLOW__API__PORT/api/v2/version" >/dev/null 2>&1; do
      kill -0 $api 2>/dev/null || exit 1; sleep 0.5
    done
    airflow scheduler --skip-serve-logs & airflow dag-processor &
    airflow triggerer --skip-serve-logs &
    wait
  ' >"$LOG" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  local deadline=$((SECONDS + ${AIRFLOW_UP_TIMEOUT:-240}))
  until curl -fsS "http://127.0.0.1:$AIRFLOW__API__PORT/api/v2/monitor/health" 2>/dev/null \
      | "$BIN/python" -c 'import json,sys; h=json.load(sys.stdin); sys.exit(0 if all(h.get(k,{}).get("status")=="healthy" for k in ("metadatabase","scheduler","triggerer","dag_processor")) else 1)' 2>/dev/null; do
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then echo "Airflow exited; see $LOG" >&2; exit 1; fi
    if (( SECONDS > deadline )); then echo "not ready in time; see $LOG" >&2; exit 1; fi
    sleep 1
  done
  banner
}

banner() {
  echo "Airflow UI:     http://127.0.0.1:$AIRFLOW__API__PORT  (bound to 127.0.0.1 only)"
  echo "Login:          user 'admin', password in $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
  echo "                (simple auth manager; the file appears when the api-server first starts)"
  echo "Drop files in:  $ALLIANCE_WATCH_HOME/landing/<clinic_id>/ then touch $ALLIANCE_WATCH_HOME/inbox/<clinic_id>.ready"
  echo "Answer links:   http://127.0.0.1:$AIRFLOW__API__PORT/answers/a/<token> (in the digests)"
  echo "Airflow env:    source $STATE   (then e.g. 'airflow dags list')"
  echo "Log:            $LOG;  stop with 'make down'"
}

# The live processes of session $1 and their descendants (a process that started a session
# of its own is still a child of one of ours). Zombies are left out: they hold nothing, and
# are gone once their parent reaps them.
session_pids() {
  ps -eo pid=,ppid=,sid=,stat= | awk -v s="$1" -v self="$$" '
    $4 !~ /^Z/ && $1 != self { pid[$1] = $2; if ($3 == s) keep[$1] = 1 }
    END {
      do { grew = 0; for (p in pid) if (!(p in keep) && (pid[p] in keep)) { keep[p] = 1; grew = 1 } } while (grew)
      for (p in keep) print p
    }'
}

down() {
  if [[ ! -f "$PIDFILE" ]]; then echo "not running (no $PIDFILE)"; return 0; fi
  local sid pids
  sid="$(cat "$PIDFILE")"
  # the components and their tasks first, the session leader (which reaps them) last
  pids="$(session_pids "$sid" | grep -vx "$sid" || true)"
  if [[ -n "$pids" ]]; then
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 1 60); do
      [[ -z "$(session_pids "$sid" | grep -vx "$sid" || true)" ]] && break
      sleep 0.5
    done
  fi
  pids="$(session_pids "$sid")"
  if [[ -n "$pids" ]]; then
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true   # what did not stop within 30 s, and the leader
    for _ in $(seq 1 20); do [[ -z "$(session_pids "$sid")" ]] && break; sleep 0.25; done
  fi
  left="$(session_pids "$sid")"
  rm -f "$PIDFILE"
  if [[ -n "$left" ]]; then echo "stopped, but processes remain: $left" >&2; return 1; fi
  echo "stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) cat "$STATE" ;;
  *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
