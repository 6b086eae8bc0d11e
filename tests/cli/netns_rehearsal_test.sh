#!/usr/bin/env bash
# Multi-node rehearsal on one machine: two network namespaces stand in for two nodes, joined by
# veth pairs to a bridge, with private addresses (10.213.0.0/24). mpirun launches one rank per
# "node" over TCP only (an rsh launch agent that enters the namespace of the host it is asked
# for, as ssh would reach another machine; every socket between the ranks and to mpirun crosses
# the veth links), trains a few steps, and the per-step losses must equal those of the same
# training with 2 ranks under a plain mpirun. Each rank's namespace and host name are recorded
# and checked (one rank per namespace, the rank table lists both hosts).
# Needs root (network namespaces), iproute2 (`ip netns`) and mpirun; otherwise it is skipped
# (exit status 77). Nothing is left behind: the namespaces (and with them the links and the
# bridge, which live inside them) are deleted on any exit.
# Usage: netns_rehearsal_test.sh SELFSUP_BINARY SOURCE_DIR
#   SELFSUP_TEST_SIMULATE_NONROOT=1  take the not-root path (to test the skip)
#   SELFSUP_NETNS_KEEP=1             keep the temporary directory (logs, run directories)
set -euo pipefail

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then usage; exit 0; fi
[[ $# -eq 2 ]] || { usage >&2; echo "netns_rehearsal_test.sh: SELFSUP_BINARY and SOURCE_DIR are required" >&2; exit 2; }
bin=$(realpath "$1")
src=$(realpath "$2")
say() { echo "[netns] $*"; }
skip() { echo "SKIP: $*"; exit 77; }

# ---- 1. Can this machine do it? Every missing piece is a skip, with what would enable it. ----
[[ -x "$bin" ]] || { echo "FAIL: $bin is not an executable (build it: launch/build.sh)"; exit 1; }
if [[ $EUID -ne 0 || "${SELFSUP_TEST_SIMULATE_NONROOT:-0}" == 1 ]]; then
  skip "not root; network namespaces need root (run as root, e.g. sudo ctest -R netns_rehearsal)"
fi
command -v ip >/dev/null || skip "ip (iproute2) not found; install iproute2"
command -v mpirun >/dev/null || skip "mpirun not found; install openmpi-bin (launch/setup.sh)"
[[ "$("$bin" info)" == *"MPI        Open MPI"* ]] || skip "selfsup built without MPI (SELFSUP_WITH_MPI=OFF)"
[[ -r "$src/configs/fashion_mnist_simclr.json" ]] || { echo "FAIL: $src is not the source directory"; exit 1; }

tag=$$
head_ns=selfsup-head-$tag
node_ns=(selfsup-n0-$tag selfsup-n1-$tag)
node_ip=(10.213.0.1 10.213.0.2)
head_ip=10.213.0.254
subnet=10.213.0.0/24
tmp=$(mktemp -d)
created=()
child=""

# any_alive PID...: whether one of them still runs (a zombie has ended).
any_alive() {
  local pid state
  for pid; do
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || continue
    [[ -z "$state" || "$state" == Z ]] || return 0
  done
  return 1
}

cleanup() {
  local status=$? ns pid
  trap - EXIT INT TERM
  # Processes still running (a run cut short: mpirun, daemons, ranks) go first, so that the
  # namespaces can be freed: SIGTERM, up to 3 s to end, then SIGKILL.
  local pids=() tries
  [[ -z "$child" ]] || pids+=("$child")
  for ns in "${created[@]}"; do pids+=($(ip netns pids "$ns" 2>/dev/null)); done
  if [[ ${#pids[@]} -gt 0 ]]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for tries in $(seq 30); do any_alive "${pids[@]}" || break; sleep 0.1; done
    for pid in "${pids[@]}"; do any_alive "$pid" && kill -KILL "$pid" 2>/dev/null; done
    wait 2>/dev/null || true
  fi
  for ns in "${created[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || echo "[netns] warning: could not delete namespace $ns (ip netns del $ns)"
  done
  if [[ "${SELFSUP_NETNS_KEEP:-0}" == 1 ]]; then echo "[netns] kept $tmp"; else rm -rf "$tmp"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() { local message=$1; shift; local f; for f in "$@"; do [[ -f "$f" ]] && { echo "---- $f"; tail -40 "$f"; }; done; echo "FAIL: $message"; exit 1; }

# add_ns NAME: create a namespace (recorded for the cleanup) with its loopback up.
add_ns() {
  ip netns add "$1" 2>"$tmp/netns.err" || return 1
  created+=("$1")
  ip -n "$1" link set lo up
}
add_ns "$head_ns" || skip "ip netns add failed ($(cat "$tmp/netns.err")); needs CAP_SYS_ADMIN and CAP_NET_ADMIN"
# The bridge lives in the head namespace (where mpirun runs), not in the root one: nothing on
# the host's own network changes, and parallel runs with the same addresses cannot collide.
ip -n "$head_ns" link add br0 type bridge 2>"$tmp/netns.err" \
  || skip "cannot create a bridge ($(cat "$tmp/netns.err")); the kernel lacks bridge support"
ip -n "$head_ns" addr add "$head_ip/24" dev br0
ip -n "$head_ns" link set br0 up
for i in 0 1; do
  add_ns "${node_ns[$i]}" || fail "ip netns add ${node_ns[$i]} failed: $(cat "$tmp/netns.err")"
  ip -n "$head_ns" link add "veth$i" type veth peer name eth0 netns "${node_ns[$i]}" 2>"$tmp/netns.err" \
    || skip "cannot create a veth pair ($(cat "$tmp/netns.err")); the kernel lacks veth support"
  ip -n "$head_ns" link set "veth$i" master br0
  ip -n "$head_ns" link set "veth$i" up
  ip -n "${node_ns[$i]}" addr add "${node_ip[$i]}/24" dev eth0
  ip -n "${node_ns[$i]}" link set eth0 up
done
say "namespaces: ${node_ns[0]} (${node_ip[0]}), ${node_ns[1]} (${node_ip[1]}), mpirun in $head_ns ($head_ip) on bridge br0"
# The links come up asynchronously: wait until each node answers from the head namespace.
for i in 0 1; do
  for attempt in $(seq 1 50); do
    ip netns exec "$head_ns" ping -c1 -W1 "${node_ip[$i]}" >/dev/null 2>&1 && break
    if ! command -v ping >/dev/null; then sleep 1; break; fi
    [[ $attempt -lt 50 ]] || fail "${node_ip[$i]} (${node_ns[$i]}) does not answer a ping from $head_ns"
    sleep 0.1
  done
done

# Each namespace gets its own host name too (a UTS namespace), as a real node has, when
# unshare can make one; the rank table of the run then names both nodes.
uts=0
unshare --uts true 2>/dev/null && uts=1

# The launch agent: mpirun calls it as `AGENT [options] HOST COMMAND...` (what it would pass to
# ssh); it runs COMMAND (the orted daemon) through a shell inside HOST's namespace.
cat >"$tmp/agent.sh" <<AGENT
#!/usr/bin/env bash
set -euo pipefail
while [[ \$# -gt 0 ]]; do
  case "\$1" in
    ${node_ip[0]}) ns=${node_ns[0]}; host=node0; shift; break ;;
    ${node_ip[1]}) ns=${node_ns[1]}; host=node1; shift; break ;;
    *) shift ;;
  esac
done
[[ -n "\${ns:-}" ]] || { echo "agent.sh: no known host among its arguments" >&2; exit 1; }
echo "\$ns \$host \$*" >>"$tmp/agent.log"
if [[ $uts -eq 1 ]]; then
  exec ip netns exec "\$ns" unshare --uts bash -c 'hostname "\$0"; eval "\$1"' "\$host-$tag" "\$*"
fi
exec ip netns exec "\$ns" bash -c "\$*"
AGENT
# Each rank records its rank, namespace and host name, then becomes selfsup.
cat >"$tmp/rank.sh" <<RANK
#!/usr/bin/env bash
echo "rank=\${OMPI_COMM_WORLD_RANK:-?} ns=\$(ip netns identify \$\$) host=\$(hostname)" >>"$tmp/ranks.log"
exec "$bin" "\$@"
RANK
chmod +x "$tmp/agent.sh" "$tmp/rank.sh"
printf '%s slots=1\n' "${node_ip[@]}" >"$tmp/hostfile"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
# A few steps of SimCLR on the built-in synthetic images (nothing to download), small and fast.
train=(train "$src/configs/fashion_mnist_simclr.json" --no-transfer
       --set data.dataset=synthetic data.synthetic.train_size=256 data.synthetic.test_size=64
             data.synthetic.image_size=16 data.synthetic.channels=1 model.width=8
             train.max_steps=4 train.batch_size=32 train.threads=1 optim.warmup_steps=2
             dist.timeout_s=60)

# ---- 2. Two ranks on two "nodes", over TCP between the namespaces. ----
say "run 1: mpirun over $subnet, one rank in each namespace (rsh agent: ip netns exec)"
SECONDS=0
status=0
# In the background and waited for, so that a signal to this script runs the cleanup at once.
ip netns exec "$head_ns" timeout 120 mpirun -np 2 --hostfile "$tmp/hostfile" --map-by node \
  --mca plm_rsh_agent "$tmp/agent.sh" --mca plm_rsh_no_tree_spawn 1 \
  --mca btl tcp,self --mca btl_tcp_if_include "$subnet" --mca oob_tcp_if_include "$subnet" \
  "$tmp/rank.sh" "${train[@]}" --run-dir "$tmp/run_netns" >"$tmp/netns.out" 2>&1 &
child=$!
wait "$child" || status=$?
child=""
[[ $status -eq 0 ]] || fail "namespaced 2-rank run exited with status $status (124: the 120 s timeout)" \
  "$tmp/agent.log" "$tmp/ranks.log" "$tmp/netns.out"
say "run 1 done in ${SECONDS}s"

# Did it really span both namespaces? The agent started one daemon in each, each rank ran in
# its own namespace, and rank 0 logged a 2-rank world over MPI.
for i in 0 1; do
  grep -q "^${node_ns[$i]} .*orted" "$tmp/agent.log" \
    || fail "the agent never started a daemon in ${node_ns[$i]}" "$tmp/agent.log"
done
[[ $(wc -l <"$tmp/ranks.log") -eq 2 ]] || fail "expected 2 rank records" "$tmp/ranks.log"
ns_of_rank() { sed -n "s/^rank=$1 ns=\([^ ]*\) .*/\1/p" "$tmp/ranks.log"; }
ns0=$(ns_of_rank 0) ns1=$(ns_of_rank 1)
[[ -n "$ns0" && -n "$ns1" && "$ns0" != "$ns1" ]] || fail "ranks 0 and 1 not in two namespaces" "$tmp/ranks.log"
[[ " ${node_ns[*]} " == *" $ns0 "* && " ${node_ns[*]} " == *" $ns1 "* ]] \
  || fail "ranks ran outside the node namespaces" "$tmp/ranks.log"
while read -r line; do say "  $line"; done <"$tmp/ranks.log"
# The gradients went over the links: each node's veth carried the all-reduces (some MB; the
# daemons' control messages alone are a few KB).
for i in 0 1; do
  bytes=0
  for dir in rx tx; do
    bytes=$(( bytes + $(ip netns exec "$head_ns" cat "/sys/class/net/veth$i/statistics/${dir}_bytes") ))
  done
  say "  link of ${node_ns[$i]}: $(( bytes / 1024 )) KiB through veth$i"
  [[ $bytes -gt 1000000 ]] || fail "only $bytes bytes went through veth$i: the ranks did not talk over the links"
done
log0=$tmp/run_netns/logs/rank0.log
grep -q "2 ranks, backend mpi" "$log0" || fail "rank 0 log lacks the 2-rank MPI world" "$log0"
if [[ $uts -eq 1 ]]; then
  for i in 0 1; do
    grep -Eq "^ +$i +node[01]-$tag " "$log0" || fail "rank table lacks rank $i on a node host" "$log0"
  done
  say "rank table: $(grep -E "^ +[01] +node[01]-$tag " "$log0" | awk '{printf "%srank %s on %s", (NR > 1 ? ", " : ""), $1, $2}')"
fi

# ---- 3. The same training, 2 ranks in the root namespace under a plain mpirun. ----
say "run 2: plain mpirun -np 2 on this host"
SECONDS=0
status=0
timeout 120 mpirun -np 2 --oversubscribe --mca btl tcp,self \
  "$bin" "${train[@]}" --run-dir "$tmp/run_local" >"$tmp/local.out" 2>&1 &
child=$!
wait "$child" || status=$?
child=""
[[ $status -eq 0 ]] || fail "plain 2-rank run exited with status $status (124: the 120 s timeout)" "$tmp/local.out"
say "run 2 done in ${SECONDS}s"

# ---- 4. Same losses, step by step. ----
/usr/bin/python3 - "$tmp/run_netns/metrics.jsonl" "$tmp/run_local/metrics.jsonl" <<'PY' || fail "losses differ"
import json, sys
def losses(path):
    return {r["step"]: r["loss"] for r in map(json.loads, open(path)) if "loss" in r}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert sorted(a) == [1, 2, 3, 4], f"namespaced run logged steps {sorted(a)}, expected 1..4"
assert sorted(b) == sorted(a), f"steps differ: {sorted(a)} against {sorted(b)}"
bitwise = True
for step in sorted(a):
    x, y = a[step], b[step]
    ok = abs(x - y) <= 1e-6 * max(abs(x), abs(y))
    bitwise &= x == y
    print(f"[netns]   step {step}: loss {x!r} (namespaces) {y!r} (plain) {'' if ok else 'DIFFERENT'}")
    assert ok, f"step {step}: {x} against {y} (tolerance 1e-6 relative)"
print(f"[netns] losses {'bitwise ' if bitwise else ''}equal on all {len(a)} steps")
PY
echo "PASS: netns rehearsal: 2 ranks in 2 network namespaces over TCP ($subnet) match plain mpirun"
