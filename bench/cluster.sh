# Helpers the benchmark scripts share: three-member clusters of etcd or
# skiff-store on loopback, started as background processes of the calling
# script and killed when it exits. Needs $work (a scratch directory) and
# $bin (where the skiff binaries are) to be set.

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# start_cluster NAME PROGRAM CLIENT_BASE PEER_BASE: three members on
# 127.0.0.1:CLIENT_BASE+i and PEER_BASE+i, with etcd's flags (which
# skiff-store shares): heartbeat 100 ms, election timeout 1 s.
declare -A member_pids
start_cluster() {
    local name=$1 program=$2 client_base=$3 peer_base=$4 initial="" i
    for i in 1 2 3; do
        initial+="${name}${i}=http://127.0.0.1:$((peer_base + i)),"
    done
    initial=${initial%,}
    for i in 1 2 3; do
        mkdir -p "$work/$name$i"
        "$program" --name "$name$i" --data-dir "$work/$name$i/data" \
            --listen-client-urls "http://127.0.0.1:$((client_base + i))" \
            --advertise-client-urls "http://127.0.0.1:$((client_base + i))" \
            --listen-peer-urls "http://127.0.0.1:$((peer_base + i))" \
            --initial-advertise-peer-urls "http://127.0.0.1:$((peer_base + i))" \
            --initial-cluster "$initial" --initial-cluster-state new \
            --heartbeat-interval 100 --election-timeout 1000 \
            >"$work/$name$i.log" 2>&1 &
        pids+=($!)
        member_pids[$name$i]=$!
    done
}

# endpoints CLIENT_BASE: the client endpoints of a cluster, comma-separated.
endpoints() {
    local base=$1
    echo "127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2)),127.0.0.1:$((base + 3))"
}

# wait_healthy ENDPOINTS NAME: waits up to 60 s for every member to answer.
wait_healthy() {
    local eps=$1 name=$2 deadline=$((SECONDS + 60))
    until "$bin/skiff" --endpoints "$eps" endpoint health --cluster >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            echo "$(basename "$0"): $name did not become healthy in 60 s; logs in $work" >&2
            trap - EXIT
            exit 1
        fi
        sleep 0.2
    done
}

# peak_rss_mib NAME: the highest peak RSS (VmHWM) of the cluster's members.
peak_rss_mib() {
    member_status_mib "$1" VmHWM
}

# rss_mib NAME: the highest current RSS (VmRSS) of the cluster's members.
rss_mib() {
    member_status_mib "$1" VmRSS
}

member_status_mib() {
    local name=$1 field=$2 peak=0 kb i
    for i in 1 2 3; do
        kb=$(sed -n "s/^$field:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/${member_pids[$name$i]}/status")
        [ "$kb" -gt "$peak" ] && peak=$kb
    done
    echo $((peak / 1024))
}

# cpu_ticks NAME: CPU time (user + system, in clock ticks) the cluster's
# three members have used so far.
cpu_ticks() {
    local name=$1 total=0 i fields
    for i in 1 2 3; do
        # Fields 14 and 15 of /proc/PID/stat, counted after the command name
        # (which may hold spaces) closes with ')'.
        read -ra fields <<<"$(sed 's/^.*) //' "/proc/${member_pids[$name$i]}/stat")"
        total=$((total + fields[11] + fields[12]))
    done
    echo "$total"
}
