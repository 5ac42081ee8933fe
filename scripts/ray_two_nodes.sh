#!/usr/bin/env bash
# The multi-node path of deploy/RAY.md, for real, on one machine: a Ray cluster of two nodes on this host
# (`ray start --head` and `ray start --address`, 1 CPU each), `imagerank index --engine ray --address` on the
# shipped sample with IMAGERANK_RAY_SHARDS on a folder both nodes see, then:
#   check 1: the index's vectors equal an in-process index of the same folder (max abs difference < 1e-5);
#   check 2: the inference actors ran on two different Ray nodes.
# The cluster is always stopped (`ray stop --force`), even on failure. Since `ray stop` stops every Ray
# process of this user on the machine, the script refuses to start while another Ray instance is running.
#
#   bash scripts/ray_two_nodes.sh    # KEEP=1 keeps the work folder (indexes, Ray logs); TIMEOUT=600 (s) caps the Ray indexing
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
BIN=$REPO/.venv/bin
PHOTOS=$REPO/sample/caltech101
START=$SECONDS

if pgrep -x raylet >/dev/null || pgrep -x gcs_server >/dev/null; then
    echo "FAIL: Ray is already running on this machine; 'ray stop' would stop it too. Stop it first." >&2
    exit 1
fi

WORK=$(mktemp -d /tmp/imagerank-ray2.XXXXXX)  # short: Ray's socket paths live under it
PORT=$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ADDRESS=127.0.0.1:$PORT

# Ray >= 2.59: `ray start --head` turns on token authentication when a token exists. Nodes that join and
# drivers that connect by address need RAY_AUTH_MODE=token and the same token (here: a file of this run's).
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$WORK/auth_token RAY_USAGE_STATS_ENABLED=0
"$BIN/python" -c 'import secrets; print(secrets.token_hex(32))' >"$RAY_AUTH_TOKEN_PATH"
chmod 600 "$RAY_AUTH_TOKEN_PATH"
export IMAGERANK_RAY_SHARDS=$WORK/shards  # on a real cluster: a folder on the shared filesystem

CHECKED=0
cleanup() {
    local status=$?
    if [[ $CHECKED == 0 ]]; then
        echo "FAIL 1 vectors: not checked, the run stopped before (status $status)"
        echo "FAIL 2 placement: not checked, the run stopped before"
        status=1
    fi
    echo "== ray stop --force"
    "$BIN/ray" stop --force >"$WORK/ray-stop.log" 2>&1 || true
    sleep 1
    if pgrep -x raylet >/dev/null || pgrep -x gcs_server >/dev/null; then
        echo "FAIL 3 cleanup: Ray processes are still running after ray stop"
        status=1
    else
        echo "PASS 3 cleanup: no raylet or gcs_server left"
    fi
    if [[ ${KEEP:-0} == 1 ]]; then echo "work folder kept: $WORK"; else rm -rf "$WORK"; fi
    echo "elapsed: $((SECONDS - START)) s"
    exit "$status"
}
trap cleanup EXIT

phase() { echo "== $1 ($((SECONDS - START)) s)"; }

phase "in-process reference index"
t=$SECONDS
"$BIN/imagerank" index "$PHOTOS" --index "$WORK/local.index" -q
echo "in-process indexing: $((SECONDS - t)) s"

phase "two-node Ray cluster at $ADDRESS"
t=$SECONDS
"$BIN/ray" start --head --port="$PORT" --num-cpus=1 --temp-dir="$WORK/ray" --include-dashboard=false \
    --disable-usage-stats >"$WORK/ray-head.log" 2>&1 || { cat "$WORK/ray-head.log"; exit 1; }
"$BIN/ray" start --address="$ADDRESS" --num-cpus=1 --disable-usage-stats >"$WORK/ray-worker.log" 2>&1 \
    || { cat "$WORK/ray-worker.log"; exit 1; }
"$BIN/python" - "$ADDRESS" <<'EOF'
import sys, time
import ray
ray.init(address=sys.argv[1], logging_level="ERROR")
deadline = time.monotonic() + 60
while (alive := [n for n in ray.nodes() if n["Alive"]]) and len(alive) < 2 and time.monotonic() < deadline:
    time.sleep(1)
for node in alive:
    print(f"node {node['NodeID']} CPU={node['Resources'].get('CPU', 0)}")
sys.exit(0 if len(alive) == 2 else f"expected 2 alive nodes, got {len(alive)}")
EOF
echo "cluster start: $((SECONDS - t)) s"

phase "imagerank index --engine ray --address $ADDRESS"
t=$SECONDS
timeout "${TIMEOUT:-600}" "$BIN/imagerank" index "$PHOTOS" --index "$WORK/ray.index" --engine ray --address "$ADDRESS" \
    --batch-size 16 -q \
    2>"$WORK/ray-index.err" || {
    code=$?
    tail -n 40 "$WORK/ray-index.err"
    echo "the Ray indexing failed (exit $code; 124: still running after ${TIMEOUT:-600} s)"
    exit 1
}
echo "Ray indexing: $((SECONDS - t)) s"

phase "checks"
CHECKED=1
"$BIN/python" - "$ADDRESS" "$WORK/local.index" "$WORK/ray.index" <<'EOF'
import sys
import numpy as np
import ray
import ray._private.state  # the actor table from the GCS; ray.util.state needs the dashboard (ray[default])
from imagerank.index.core import Index

address, local_dir, ray_dir = sys.argv[1:]
failed = False

with Index.open(local_dir) as local, Index.open(ray_dir) as on_ray:
    local_ids = {r.path: r.id for r in local.store.all_records()}
    ray_ids = {r.path: r.id for r in on_ray.store.all_records()}
    paths = sorted(local_ids)
    if len(paths) == 0 or sorted(ray_ids) != paths:
        print(f"FAIL 1 vectors: {len(ray_ids)} images in the Ray index, {len(paths)} in the in-process one")
        failed = True
    else:
        a = local.store.vectors([local_ids[p] for p in paths])
        b = on_ray.store.vectors([ray_ids[p] for p in paths])
        diff = float(np.abs(a - b).max())
        ok = a.shape == b.shape and diff < 1e-5
        failed |= not ok
        print(f"{'PASS' if ok else 'FAIL'} 1 vectors: {len(paths)} images, {a.shape[1]} dims, "
              f"max abs difference {diff:.2e} (< 1e-5)")

ray.init(address=address, logging_level="ERROR")
actors = [a for a in ray._private.state.actors().values() if "EmbeddingActor" in a["ActorClassName"]]
nodes = sorted({a["Address"]["NodeID"] for a in actors})
for actor in actors:
    print(f"  actor {actor['ActorID'][:12]} pid {actor['Pid']} on node {actor['Address']['NodeID']} "
          f"({actor['State']})")
# Which node ran each decoding task, inference call and shard write (task events kept by the GCS).
KINDS = {"decoding": "MapBatches(decoded_batch)", "inference": "(EmbeddingActor)).submit", "writing": "Write"}
work = {}
try:
    ran = {}  # (task, attempt) -> (kind, node)
    for event in ray._private.state.state._get_all_task_events():
        kind = next((k for k, name in KINDS.items() if event.task_info.name.startswith(name)
                     or event.task_info.name.endswith(name)), None)
        if kind and event.state_updates.node_id:
            ran[event.task_id, event.attempt_number] = kind, event.state_updates.node_id.hex()
    for kind, node in ran.values():
        work.setdefault(node, dict.fromkeys(KINDS, 0))[kind] += 1
except Exception as error:  # private API: report and judge by the actors alone
    print(f"  (task events unavailable: {error})")
for node, counts in sorted(work.items()):
    print(f"  node {node}: " + ", ".join(f"{n} {kind}" for kind, n in counts.items()))
inferring = [node for node, counts in work.items() if counts["inference"]]
ok = len(nodes) >= 2 and (not work or len(inferring) >= 2)
failed |= not ok
print(f"{'PASS' if ok else 'FAIL'} 2 placement: {len(actors)} inference actors on {len(nodes)} nodes"
      + (f", inference calls on {len(inferring)} nodes" if work else ""))
sys.exit(1 if failed else 0)
EOF
