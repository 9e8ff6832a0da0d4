#!/usr/bin/env bash
# Keeps the service crates' layout true to DESIGN.md §8 (run by `make lint`):
# - SQL (query builders, raw statements, sea-orm entity calls) only under `store/`
#   (or in `store.rs`);
# - proto types only at the edges: `lib.rs` (registers the gRPC servers), `api.rs` and
#   `<name>_api.rs` (the gRPC faces), `events.rs` (events in and out), and the outbound client adapters
#   (ingest's `sink.rs`, storage's `access.rs`, dsar's `peers.rs`).
#
# Files that still break a rule would be listed below while being moved (issue 12 moved
# the last ones; the lists are empty). A list only shrinks: a file not on it that breaks
# a rule fails the check, and so does a file on it that no longer does.
set -euo pipefail
cd "$(dirname "$0")/../.."

SQL_PENDING=(
)
PROTO_PENDING=(
)

SQL='Query::(select|insert|update|delete)|Expr::(col|cust|tbl)|Statement::from_|execute_unprepared|"(SELECT|INSERT|DELETE|UPDATE) |Entity::(find|delete|insert|update)|ActiveModel \{'
PROTO='mindmesh_proto::'

pending() { # pending <file> <list…>
  local f=$1; shift
  local p
  for p in "$@"; do [[ $p == "$f" ]] && return 0; done
  return 1
}

bad=0
while IFS= read -r f; do
  sql_ok=false proto_ok=false
  case $f in
    */store/*|*/store.rs) sql_ok=true ;;
  esac
  case ${f##*/} in
    lib.rs|api.rs|*_api.rs|events.rs) proto_ok=true ;;
  esac
  case $f in
    crates/mindmesh-ingest/src/sink.rs|crates/mindmesh-storage/src/access.rs|crates/mindmesh-dsar/src/peers.rs) proto_ok=true ;;
  esac
  if ! $sql_ok; then
    has=false
    grep -qE "$SQL" "$f" && has=true
    if $has && ! pending "$f" "${SQL_PENDING[@]}"; then
      echo "$f: SQL outside store/ (move it into the crate's store module):"
      grep -nE "$SQL" "$f" | head -3
      bad=1
    elif ! $has && pending "$f" "${SQL_PENDING[@]}"; then
      echo "$f: no SQL left; take it off SQL_PENDING in $0"
      bad=1
    fi
  fi
  if ! $proto_ok; then
    has=false
    grep -qE "$PROTO" "$f" && has=true
    if $has && ! pending "$f" "${PROTO_PENDING[@]}"; then
      echo "$f: proto types in a domain module (map them in api.rs, events.rs or an adapter):"
      grep -nE "$PROTO" "$f" | head -3
      bad=1
    elif ! $has && pending "$f" "${PROTO_PENDING[@]}"; then
      echo "$f: no proto type left; take it off PROTO_PENDING in $0"
      bad=1
    fi
  fi
done < <(find crates/mindmesh-{ingest,permissions,storage,retention,dsar}/src -name '*.rs' | sort)

for f in "${SQL_PENDING[@]}" "${PROTO_PENDING[@]}"; do
  [[ -f $f ]] || { echo "$f: listed in $0 but gone; take it off the list"; bad=1; }
done

if [[ $bad -ne 0 ]]; then
  echo "layout check failed (see the rules at the top of deploy/dev/layout-check.sh)"
  exit 1
fi
echo "layout check: SQL only in store/, proto types only at the edges (${#SQL_PENDING[@]} + ${#PROTO_PENDING[@]} files pending)"
