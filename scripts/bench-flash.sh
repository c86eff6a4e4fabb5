#!/usr/bin/env bash
# Flash wear and disk use of one device (issue 14, "Storage for flash"):
# how many bytes a device writes, and how much its data directory takes on
# disk, to take in a release of MIB MiB of random bytes.
#
#   scripts/bench-flash.sh [MIB]                       # default 256
#   POLLEN_BIN=/path/to/old/debug scripts/bench-flash.sh 256
#
# Binaries come from $POLLEN_BIN (default $CARGO_TARGET_DIR/debug, and
# CARGO_TARGET_DIR defaults to /var/cache/pollen/target); nothing is built,
# so an old build can be measured beside a new one. Everything runs on
# 127.0.0.1 with --no-mdns, in a temporary directory removed at the end.
# The directory is on $TMPDIR (default /tmp), which must be a real disk
# file system (ext4, xfs, ...): tmpfs counts no writes.
#
# Cases (one seeder, `pollen-seeder serve`, serves every release; they run
# in the order 1, 3, 2, 4):
#   1. run      `pollen-node run` on a fresh device A installs release 1
#               (fetch, stage into an A/B slot, commit; no hooks).
#   2. 2 releases  a fresh device B, one `run` process, installs the newest
#               release (2), then release 3 (new random bytes, published
#               live to the running seeder) in turn; data dir vs 2 x release.
#   3. delta    device A, its node started again, installs release 2 =
#               release 1 with 1 MiB replaced in the middle and 4096 bytes
#               inserted at offset 300000 (as tests/roundtrip.rs
#               delta_release_moves_only_changed_bytes); bytes written as a
#               share of release 2's size, and bytes received.
#   4. fetch    `pollen-node fetch --out FILE --linger 0s`, one shot, of
#               the newest release (3).
#   5. steady   device C installs release 4 (new random bytes) and 5 (4 with
#      delta    1 MiB replaced at 1/4), then, its node started again, 6 (5
#               with 1 MiB replaced at 3/4): the bytes written for release 6,
#               whose inactive slot holds release 4 (no byte moved).
#   6. xfs      root only: case 3's delta again, with the device's data
#               directory on XFS (reflinks) on a loop device, through
#               `pollen-node import` (release 1, then 2): shared chunks are
#               cloned from the active slot, not written.
#
# Bytes written by a process = its block-I/O write accounting: the node is
# started from a python3 wrapper, which samples /proc/PID/io (write_bytes)
# once the install is committed, then sends SIGTERM and reaps the process
# with os.wait4: ru_oublock * 512 is the same counter over the whole
# lifetime (all threads, shutdown included). This counts the data pages
# the process dirtied (page cache writes, counted once per dirtied page,
# before write-back); file system metadata and journal writes are not
# counted. "Committed" is polled from the node's local endpoint
# (DATA/api.addr, GET /status: phase "committed" and installed.release N),
# every 0.2 s up to a deadline ($POLLEN_BENCH_TIMEOUT seconds per wait,
# default 300 + 3 per MiB). Disk use is allocated bytes (`du -sB1`), of
# the data directory while the node runs with the release committed (just
# before SIGTERM; RocksDB's live write-ahead log is preallocated, so it
# takes more than it holds) and after the process exited; the raw numbers
# split it into slots, write-ahead logs, blob files and tables.
# POLLEN_BENCH_KEEP=1 keeps the temporary directory (and says where).
set -euo pipefail

MIB=${1:-256}
if ! [[ $MIB =~ ^[0-9]+$ ]] || ((MIB < 2)); then
  echo "usage: $0 [MIB]   (a whole number of MiB, at least 2)" >&2
  exit 2
fi
BIN=${POLLEN_BIN:-${CARGO_TARGET_DIR:-/var/cache/pollen/target}/debug}
NODE=$BIN/pollen-node
SEEDER=$BIN/pollen-seeder
for b in "$NODE" "$SEEDER"; do
  [[ -x $b ]] || { echo "bench-flash: $b missing (set POLLEN_BIN)" >&2; exit 2; }
done
command -v python3 >/dev/null || { echo "bench-flash: needs python3" >&2; exit 2; }
TIMEOUT=${POLLEN_BENCH_TIMEOUT:-$((300 + 3 * MIB))}
SIZE=$((MIB << 20))

T=$(mktemp -d "${TMPDIR:-/tmp}/bench-flash.XXXXXX")
SEEDER_PID=
cleanup() {
  local i
  if [[ -n $SEEDER_PID ]] && kill -0 "$SEEDER_PID" 2>/dev/null; then
    kill -TERM "$SEEDER_PID" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do # a 30 s deadline, then SIGKILL
      kill -0 "$SEEDER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SEEDER_PID" 2>/dev/null || true
    wait "$SEEDER_PID" 2>/dev/null || true
  fi
  if [[ -n ${POLLEN_BENCH_KEEP:-} ]]; then echo "bench-flash: kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The process accounting and the waits, in python3.
cat >"$T/bench.py" <<'PY'
import json, os, signal, subprocess, sys, time, urllib.request

def tail(path, n=200):
    try:
        with open(path, errors="replace") as f:
            lines = f.readlines()
    except OSError as e:
        return f"({path}: {e})\n"
    cut = lines[-n:]
    head = f"... ({len(lines) - n} earlier lines)\n" if len(lines) > n else ""
    return head + "".join(cut)

def show_logs(prefix):
    for ext in ("out", "err"):
        p = f"{prefix}.{ext}"
        sys.stderr.write(f"---- {p} ----\n{tail(p)}")

def fail(msg, prefixes=()):
    sys.stderr.write(f"bench-flash: {msg}\n")
    for p in prefixes:
        show_logs(p)
    sys.exit(1)

def proc_io(pid):
    out = {}
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            k, v = line.split(":")
            out[k.strip()] = int(v)
    return out

def spawn(prefix, cmd):
    out = open(f"{prefix}.out", "w")
    err = open(f"{prefix}.err", "w")
    return subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                            preexec_fn=die_with_parent)

def reap(pid, deadline):
    """wait4 polled until the deadline: (status, rusage) or None."""
    while True:
        wpid, status, ru = os.wait4(pid, os.WNOHANG)
        if wpid == pid:
            return status, ru
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)

def report(out, io_before_term, status, ru, extra):
    res = {
        "exit": os.waitstatus_to_exitcode(status),
        "write_bytes_wait4": ru.ru_oublock * 512,
        "read_bytes_wait4": ru.ru_inblock * 512,
        "maxrss_kib": ru.ru_maxrss,
    }
    if io_before_term is not None:
        res["write_bytes_proc"] = io_before_term["write_bytes"]
        res["cancelled_write_bytes_proc"] = io_before_term["cancelled_write_bytes"]
        res["wchar_proc"] = io_before_term["wchar"]
    res.update(extra)
    with open(out, "w") as f:
        json.dump(res, f, indent=1)

def wait_line(path, prefix, pid, timeout):
    """The rest of the first line of `path` starting with `prefix`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, errors="replace") as f:
                for line in f:
                    if line.startswith(prefix) and line.endswith("\n"):
                        return line[len(prefix):].strip()
        except FileNotFoundError:
            pass
        if not alive(pid):
            return None
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)

def du_kinds(data):
    """Allocated bytes below `data` (as du -sB1), and by kind: the slots,
    the store's write-ahead logs, blob files, tables, the rest."""
    kinds = {"total": 0}
    if not os.path.isdir(data):
        return kinds  # not created yet
    seen = set()
    for root, dirs, files in os.walk(data):
        for name in dirs + files:
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue  # removed while we look (a live node)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            b = st.st_blocks * 512
            kinds["total"] += b
            rel = os.path.relpath(path, data)
            if name in files:
                if rel.startswith("slots" + os.sep):
                    k = "slots"
                elif rel.startswith("store" + os.sep):
                    k = ("store_wal" if name.endswith(".log") and not name.startswith("LOG")
                         else "store_blob" if name.endswith(".blob")
                         else "store_sst" if name.endswith(".sst") else "store_other")
                else:
                    k = "other"
                kinds[k] = kinds.get(k, 0) + b
    kinds["total"] += os.lstat(data).st_blocks * 512
    return kinds

def die_with_parent():
    # The measured process gets SIGKILL if this wrapper dies first.
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

# A process that must stay up while we wait (the seeder), if any.
WATCH = int(os.environ.get("BENCH_WATCH_PID") or 0)

def alive(pid):
    if not pid:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False

def addr_stamp(data):
    try:
        st = os.stat(os.path.join(data, "api.addr"))
        return (st.st_ino, st.st_mtime_ns)
    except FileNotFoundError:
        return None

def node_status(data, stale):
    """GET /status of the node of `data`, once it wrote a fresh api.addr."""
    if addr_stamp(data) in (None, stale):
        return None
    try:
        with open(os.path.join(data, "api.addr")) as f:
            addr = f.read().strip()
        with urllib.request.urlopen(f"http://{addr}/status", timeout=5) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None

def committed(st, n):
    return (st is not None and st.get("phase") == "committed"
            and (st.get("installed") or {}).get("release") == n)

def cmd_run(argv):
    """run PREFIX DATA TIMEOUT RESULT STEP... -- CMD...: STEP is
    `commit:N` (wait for release N committed) or `sh:COMMAND` (run it, must
    succeed). After the steps: sample /proc/PID/io, SIGTERM, wait4."""
    sep = argv.index("--")
    prefix, data, timeout, result = argv[:4]
    steps, cmd = argv[4:sep], argv[sep + 1:]
    timeout = float(timeout)
    stale = addr_stamp(data)
    p = spawn(prefix, cmd)
    pid = p.pid
    def bail(msg):
        try:
            os.kill(pid, signal.SIGKILL)
            os.wait4(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        fail(msg, [prefix])
    try:
        measure(pid, prefix, data, timeout, result, steps, cmd, stale, bail)
    except SystemExit:
        raise
    except BaseException as e:
        bail(f"{type(e).__name__}: {e}")

def measure(pid, prefix, data, timeout, result, steps, cmd, stale, bail):
    t0 = time.monotonic()
    marks = {}
    st = None
    peak = {"total": 0}
    for step in steps:
        kind, _, arg = step.partition(":")
        if kind == "commit":
            n = int(arg)
            deadline = time.monotonic() + timeout
            while True:
                wpid, _, _ = os.wait4(pid, os.WNOHANG)
                if wpid == pid:
                    fail(f"{cmd[0]} exited before committing release {n}", [prefix])
                if not alive(WATCH):
                    bail(f"the seeder (pid {WATCH}) is gone")
                st = node_status(data, stale)
                now = du_kinds(data)
                if now["total"] > peak["total"]:
                    peak = dict(now, at_s=round(time.monotonic() - t0, 2))
                if committed(st, n):
                    break
                if time.monotonic() >= deadline:
                    bail(f"release {n} not committed within {timeout:.0f} s; last status: {json.dumps(st)}")
                time.sleep(0.2)
            marks[f"commit_{n}_s"] = round(time.monotonic() - t0, 2)
        elif kind == "sh":
            r = subprocess.run(["bash", "-c", arg], capture_output=True, text=True)
            if r.returncode != 0:
                sys.stderr.write(f"---- step {arg!r} failed ({r.returncode}) ----\n{r.stdout}{r.stderr}")
                bail(f"step failed: {arg}")
        else:
            bail(f"unknown step {step}")
    io = proc_io(pid)
    running = du_kinds(data)
    os.kill(pid, signal.SIGTERM)
    done = reap(pid, time.monotonic() + 60)
    if done is None:
        bail("no exit 60 s after SIGTERM")
    status, ru = done
    if os.waitstatus_to_exitcode(status) != 0:
        fail(f"{cmd[0]} exited {os.waitstatus_to_exitcode(status)} after SIGTERM", [prefix])
    extra = dict(marks)
    extra["status"] = st
    extra["du_running"] = running
    extra["du_peak"] = peak
    extra["du_exited"] = du_kinds(data)
    report(result, io, status, ru, extra)

def cmd_exit(argv):
    """exit PREFIX TIMEOUT RESULT -- CMD...: runs CMD to its exit (which
    must be 0) and records its wait4 rusage."""
    sep = argv.index("--")
    prefix, timeout, result = argv[:3]
    cmd = argv[sep + 1:]
    p = spawn(prefix, cmd)
    t0 = time.monotonic()
    done = reap(p.pid, t0 + float(timeout))
    if done is None:
        os.kill(p.pid, signal.SIGKILL)
        os.wait4(p.pid, 0)
        fail(f"{cmd[0]} did not exit within {timeout} s", [prefix])
    status, ru = done
    if os.waitstatus_to_exitcode(status) != 0:
        fail(f"{cmd[0]} exited {os.waitstatus_to_exitcode(status)}", [prefix])
    report(result, None, status, ru, {"elapsed_s": round(time.monotonic() - t0, 2)})

def cmd_wait_line(argv):
    path, prefix, pid, timeout, logs = argv
    got = wait_line(path, prefix, int(pid), float(timeout))
    if got is None:
        fail(f"no line '{prefix}' in {path} (process {pid} gone or {timeout} s passed)", [logs])
    print(got)

def cmd_du(argv):
    """du DIR: du_kinds as JSON."""
    print(json.dumps(du_kinds(argv[0])))

def cmd_get(argv):
    """get FILE KEY: a number (or dotted path) from a result file."""
    path, key = argv
    with open(path) as f:
        v = json.load(f)
    for k in key.split("."):
        v = v.get(k) if isinstance(v, dict) else None
    print("" if v is None else v)

def cmd_delta(argv):
    """delta SRC DST: SRC with 1 MiB replaced in the middle and 4096
    random bytes inserted at 300000 (tests/roundtrip.rs)."""
    src, dst = argv
    mib = 1 << 20
    size = os.path.getsize(src)
    middle = size // 2
    with open(src, "rb") as f, open(dst, "wb") as o:
        def copy(n):
            while n:
                b = f.read(min(n, 4 * mib))
                if not b:
                    raise SystemExit("short read")
                o.write(b)
                n -= len(b)
        copy(300000)
        o.write(os.urandom(4096))
        copy(middle - 300000)
        o.write(os.urandom(mib))
        f.seek(mib, 1)
        copy(size - middle - mib)

def cmd_patch(argv):
    """patch SRC DST FRACTION: SRC with 1 MiB replaced by random bytes at
    FRACTION of its size; no byte moves."""
    src, dst, frac = argv
    mib = 1 << 20
    with open(src, "rb") as f:
        data = bytearray(f.read())
    at = int(len(data) * float(frac))
    data[at:at + mib] = os.urandom(mib)
    with open(dst, "wb") as o:
        o.write(data)

def cmd_table(argv):
    """table ROWS: the markdown table; ROWS lines are
    case|written|written_base|du|du_after_exit|du_base|note (du empty:
    only the after-exit figure)."""
    mi = lambda b: f"{b / (1 << 20):.1f} MiB"
    print("| case | bytes written | × release | data dir on disk | × release |")
    print("| --- | ---: | ---: | ---: | ---: |")
    with open(argv[0]) as f:
        for line in f:
            case, w, wb, d, dx, db, note = line.rstrip("\n").split("|")
            w, wb, dx, db = int(w), int(wb), int(dx), int(db)
            if d:
                d = int(d)
                disk = f"{mi(d)} (after exit {mi(dx)})"
                ratio = f"{d / db:.3f} ({dx / db:.3f})"
            else:
                disk, ratio = mi(dx), f"{dx / db:.3f}"
            print(f"| {case} | {mi(w)} | {w / wb:.3f} | {disk}{note} | {ratio} |")

{"run": cmd_run, "exit": cmd_exit, "du": cmd_du, "wait-line": cmd_wait_line, "get": cmd_get,
 "delta": cmd_delta, "patch": cmd_patch, "table": cmd_table}[sys.argv[1]](sys.argv[2:])
PY
py() { python3 "$T/bench.py" "$@"; }
get() { py get "$@"; }
du_b() { du -sB1 "$1" | cut -f1; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
# du of each file and directory below a directory, two levels deep (the
# store, the slots and what is in them), for the raw numbers.
du_detail() {
  local e
  find "$1" -mindepth 1 -maxdepth 3 \( -type f -o -type d \) -print0 | sort -z |
    while IFS= read -r -d '' e; do
      case $e in */store/*) continue ;; esac
      printf '    %-44s %12s B allocated, %12s B apparent\n' "${e#"$T"/}" "$(du_b "$e")" "$(du -sb "$e" | cut -f1)"
    done
  # The store (RocksDB) by kind of file: *.sst tables, *.log write-ahead
  # logs, *.blob blob files, the rest.
  find "$1/store" -type f -printf '%f %b\n' 2>/dev/null |
    awk '{ k = "other"; if ($1 ~ /\.sst$/) k = "sst"; else if ($1 ~ /\.log$/ && $1 !~ /^LOG/) k = "wal (.log)"; else if ($1 ~ /\.blob$/) k = "blob"
           n[k]++; b[k] += $2 * 512 }
         END { for (k in b) printf "      store %-12s %3d files %12d B allocated\n", k, n[k], b[k] }' | sort
}

echo "bench-flash: $MIB MiB releases, binaries from $BIN"
echo "  pollen-node   $(sha256sum "$NODE" | cut -c1-16)  $(date -r "$NODE" '+%F %T')"
echo "  pollen-seeder $(sha256sum "$SEEDER" | cut -c1-16)  $(date -r "$SEEDER" '+%F %T')"
echo "  temp dir $T on $(df -T "$T" | awk 'NR == 2 { print $2 }') ($(df -T "$T" | awk 'NR == 2 { print $1 }'))"
echo "  wait deadline ${TIMEOUT}s"

KEY=$T/publisher.key
STORE=$T/seeder-store
"$SEEDER" keygen --out "$KEY" --json >/dev/null
TRUST=$KEY.pub
head -c "$SIZE" /dev/urandom >"$T/v1.img"
publish() { # artifact version
  "$SEEDER" publish --key "$KEY" --store "$STORE" --artifact "$1" \
    --channel stable --version "$2" --json >"$T/publish-$2.json" 2>"$T/publish-$2.err" || {
    echo "bench-flash: publish $2 failed" >&2
    cat "$T/publish-$2.err" >&2
    exit 1
  }
}
publish "$T/v1.img" 1.0.0

"$SEEDER" serve --store "$STORE" --channel stable --listen /ip4/127.0.0.1/tcp/0 --no-mdns \
  >"$T/seeder.out" 2>"$T/seeder.err" &
SEEDER_PID=$!
export BENCH_WATCH_PID=$SEEDER_PID
SEED_ADDR=$(py wait-line "$T/seeder.out" "listening /ip4/127.0.0.1/" "$SEEDER_PID" 60 "$T/seeder")
SEED_ADDR=/ip4/127.0.0.1/$SEED_ADDR
echo "  seeder $SEED_ADDR"

node_args() { # data dir
  printf '%s\n' run --data "$1" --trust "$TRUST" --channel stable \
    --listen /ip4/127.0.0.1/tcp/0 --no-mdns --peer "$SEED_ADDR"
}
run_node() { # name data result step...
  local name=$1 data=$2 result=$3 args
  shift 3
  mapfile -t args < <(node_args "$data")
  if ! py run "$T/$name" "$data" "$TIMEOUT" "$result" "$@" -- "$NODE" "${args[@]}"; then
    echo "---- seeder log (tail) ----" >&2
    tail -n 50 "$T/seeder.err" >&2
    exit 1
  fi
}

# Run order: 1, 3, 2, 4 (the delta needs device A as case 1 left it).
# 1. A fresh device installs release 1.
echo "== 1. run: fresh device A installs release 1"
A=$T/device-a
run_node node-a1 "$A" "$T/case1.json" commit:1
W1=$(get "$T/case1.json" write_bytes_wait4)
D1=$(du_b "$A")
R1=$(get "$T/case1.json" du_running.total)
DET1=$(du_detail "$A")

# 3. Delta: release 2 = release 1 changed; device A, its node started again.
echo "== 3. delta: device A (holds release 1), node started again, installs release 2 = release 1 changed"
py delta "$T/v1.img" "$T/v2.img"
SIZE2=$(stat -c %s "$T/v2.img")
publish "$T/v2.img" 2.0.0 # live: the running seeder serves it at once
run_node node-a2 "$A" "$T/case3.json" commit:2
W3=$(get "$T/case3.json" write_bytes_wait4)
D3=$(du_b "$A")
R3=$(get "$T/case3.json" du_running.total)
DET3=$(du_detail "$A")
RX3_SITE=$(get "$T/case3.json" status.release.bytes_from_site)
RX3_REMOTE=$(get "$T/case3.json" status.release.bytes_from_remote)
RX3=$((RX3_SITE + RX3_REMOTE))

# 2. Two releases in turn on a fresh device, one process: the newest
# (release 2), then release 3 (new random bytes) published live.
echo "== 2. run: fresh device B installs release 2, then release 3 (new random bytes, published live)"
head -c "$SIZE2" /dev/urandom >"$T/v3.img"
B=$T/device-b
run_node node-b "$B" "$T/case2.json" commit:2 \
  "sh:'$SEEDER' publish --key '$KEY' --store '$STORE' --artifact '$T/v3.img' --channel stable --version 3.0.0 --json >'$T/publish-3.0.0.json' 2>'$T/publish-3.0.0.err' || { cat '$T/publish-3.0.0.err'; exit 1; }" \
  commit:3
W2=$(get "$T/case2.json" write_bytes_wait4)
D2=$(du_b "$B")
R2=$(get "$T/case2.json" du_running.total)
DET2=$(du_detail "$B")

# 4. One-shot fetch of the newest release (3) with --out.
echo "== 4. fetch --out: one shot, newest release (3), --linger 0s"
F=$T/fetch
if ! py exit "$T/fetch" "$TIMEOUT" "$T/case4.json" -- "$NODE" fetch --data "$F" --trust "$TRUST" \
  --channel stable --listen /ip4/127.0.0.1/tcp/0 --no-mdns --peer "$SEED_ADDR" \
  --out "$T/fetched.img" --linger 0s --json; then
  echo "---- seeder log (tail) ----" >&2
  tail -n 50 "$T/seeder.err" >&2
  exit 1
fi
cmp -s "$T/fetched.img" "$T/v3.img" || { echo "bench-flash: fetched output differs from release 3" >&2; exit 1; }
W4=$(get "$T/case4.json" write_bytes_wait4)
D4=$(du_b "$F")
DET4=$(du_detail "$F")
O4=$(du_b "$T/fetched.img")
RX4=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["bytes_from_site"] + r["bytes_from_remote"])' "$T/fetch.out")

# 5. Steady state: deltas that move no byte. Device C installs release 4
# (new random bytes), then 5 = 4 with 1 MiB replaced at 1/4 (its other
# slot is empty: a whole slot is written once), then, its node started
# again, 6 = 5 with 1 MiB replaced at 3/4: slot A still holds release 4,
# so all but the two changed regions are in place already.
echo "== 5. steady-state delta: device C installs 4, 5 (1 MiB patched), then 6 (another 1 MiB patched) is measured"
C=$T/device-c
head -c "$SIZE" /dev/urandom >"$T/v4.img"
py patch "$T/v4.img" "$T/v5.img" 0.25
py patch "$T/v5.img" "$T/v6.img" 0.75
publish "$T/v4.img" 4.0.0
run_node node-c1 "$C" "$T/case5a.json" commit:4 \
  "sh:'$SEEDER' publish --key '$KEY' --store '$STORE' --artifact '$T/v5.img' --channel stable --version 5.0.0 --json >'$T/publish-5.0.0.json' 2>'$T/publish-5.0.0.err' || { cat '$T/publish-5.0.0.err'; exit 1; }" \
  commit:5
publish "$T/v6.img" 6.0.0
run_node node-c2 "$C" "$T/case5.json" commit:6
W5=$(get "$T/case5.json" write_bytes_wait4)
W5A=$(get "$T/case5a.json" write_bytes_wait4)
D5=$(du_b "$C")
R5=$(get "$T/case5.json" du_running.total)
RX5=$(($(get "$T/case5.json" status.release.bytes_from_site) + $(get "$T/case5.json" status.release.bytes_from_remote)))

# 6. The delta of case 3 on a file system with reflinks (XFS on a loop
# device; root only): the chunks release 2 shares with release 1 moved by
# 4 KiB, a whole number of blocks, so staging clones them into the other
# slot instead of writing them. Through `pollen-node import` (the offline
# path: same store and staging code, no network), release 1 then release 2.
W6=
if [[ $(id -u) -eq 0 ]] && { command -v mkfs.xfs >/dev/null ||
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xfsprogs >/dev/null 2>&1; }; then
  echo "== 6. delta of case 3 on XFS with reflinks (loop device), by offline import"
  X=$T/xfs
  mkdir -p "$X"
  truncate -s $((3 * SIZE + (512 << 20))) "$T/xfs.img"
  mkfs.xfs -q -m reflink=1 "$T/xfs.img"
  mount -o loop "$T/xfs.img" "$X"
  trap 'umount -l "$X" 2>/dev/null || true; cleanup' EXIT
  STORE6=$T/seeder-store-6
  for v in 1 2; do
    "$SEEDER" publish --key "$KEY" --store "$STORE6" --artifact "$T/v$v.img" --channel stable \
      --version "$v.0.0" --out "$T/v$v-6.pollen" --json >"$T/publish6-$v.json"
  done
  D=$X/device-d
  py exit "$T/import-d1" "$TIMEOUT" "$T/case6a.json" -- "$NODE" import --data "$D" --trust "$TRUST" \
    --manifest "$T/v1-6.pollen" --chunks "$STORE6" --channel stable --json
  py exit "$T/import-d2" "$TIMEOUT" "$T/case6.json" -- "$NODE" import --data "$D" --trust "$TRUST" \
    --manifest "$T/v2-6.pollen" --chunks "$STORE6" --channel stable --json
  W6=$(get "$T/case6.json" write_bytes_wait4)
  D6=$(du_b "$D")
  NEW6=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes_new"])' "$T/import-d2.out")
  grep -h "image complete" "$T/import-d2.err" | tail -1 || true
  umount "$X"
else
  echo "== 6. skipped: needs root and mkfs.xfs (xfsprogs)"
fi

pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f%%", 100 * a / b }'; }
proc() { get "$T/case$1.json" write_bytes_proc; }
echo
echo "## Raw numbers (release 1: $SIZE B; releases 2 and 3: $SIZE2 B)"
echo "bytes written = wait4 ru_oublock * 512 over the process's life; '/proc' = /proc/PID/io write_bytes just before SIGTERM"
for c in 1 2 3 4; do
  echo "-- case $c: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); [r.pop(k, None) for k in ("status", "du_running", "du_peak", "du_exited")]; print(json.dumps(r))' "$T/case$c.json")"
done
echo "data dir, allocated bytes by kind (running = committed, just before SIGTERM; peak = the largest of the samples"
echo "taken at each status poll, every 0.2 s, while waiting for the commit; exited = after the process exited):"
for c in 1 2 3; do
  for w in running peak exited; do
    echo "-- case $c $w: $(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["du_"+sys.argv[2]]))' "$T/case$c.json" "$w")"
  done
done
echo "-- case 4 exited: $(py du "$F")"
echo "1. run, release 1: written $W1 B = $(ratio "$W1" "$SIZE") x (/proc $(proc 1) B = $(ratio "$(proc 1)" "$SIZE") x);" \
  "data dir $R1 B = $(ratio "$R1" "$SIZE") x running, $D1 B = $(ratio "$D1" "$SIZE") x after exit"
echo "$DET1"
echo "2. run, releases 2 then 3: written $W2 B = $(ratio "$W2" "$((2 * SIZE2))") x 2 releases (/proc $(proc 2) B);" \
  "data dir $R2 B = $(ratio "$R2" "$((2 * SIZE2))") x 2 releases running, $D2 B = $(ratio "$D2" "$((2 * SIZE2))") x after exit"
echo "$DET2"
echo "3. delta, release 2 on a device holding release 1: written $W3 B = $(pct "$W3" "$SIZE2") of release 2 (/proc $(proc 3) B);" \
  "received $RX3 B = $(pct "$RX3" "$SIZE2") (site $RX3_SITE, remote $RX3_REMOTE; GET /status);" \
  "publish: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["new_chunks"], "of", r["chunks"], "chunks new,", r["new_bytes"], "B")' "$T/publish-2.0.0.json");" \
  "data dir $R3 B = $(ratio "$R3" "$SIZE2") x one release running, $D3 B = $(ratio "$D3" "$SIZE2") x after exit"
echo "$DET3"
echo "4. fetch --out, release 3: written $W4 B = $(ratio "$W4" "$SIZE2") x; data dir $D4 B = $(ratio "$D4" "$SIZE2") x," \
  "+ output $O4 B: $((D4 + O4)) B = $(ratio "$((D4 + O4))" "$SIZE2") x; received $RX4 B"
echo "$DET4"
[[ -z $W6 ]] || echo "6. delta on XFS with reflinks, release 2 imported on a device holding release 1: written $W6 B = $(pct "$W6" "$SIZE2") of release 2; new chunk bytes $NEW6 B = $(pct "$NEW6" "$SIZE2")"
echo "5. steady-state delta, release 6 on device C (slots: 5 active, 4 inactive): written $W5 B = $(pct "$W5" "$SIZE") of the release;" \
  "received $RX5 B = $(pct "$RX5" "$SIZE"); releases 4 and 5 before it: $W5A B = $(ratio "$W5A" "$SIZE") x one release;" \
  "data dir $R5 B = $(ratio "$R5" "$((2 * SIZE))") x 2 slots running, $D5 B after exit"

echo
echo "## Flash wear and disk use, $MIB MiB releases ($BIN)"
echo
{
  echo "1. run: fresh device installs 1 release|$W1|$SIZE|$R1|$D1|$SIZE|"
  echo "2. run: 2 releases in turn (× = per 2 releases)|$W2|$((2 * SIZE2))|$R2|$D2|$((2 * SIZE2))|"
  echo "3. delta: release 2 on a device holding release 1 (1 MiB replaced, 4 KiB inserted)|$W3|$SIZE2|$R3|$D3|$SIZE2|"
  echo "4. fetch --out (data dir after exit; output apart)|$W4|$SIZE2||$D4|$SIZE2| (+ $(mib "$O4") output)"
  echo "5. steady-state delta: release 6 = 5 with 1 MiB replaced, slots hold 5 and 4 (× data dir = per 2 slots)|$W5|$SIZE|$R5|$D5|$((2 * SIZE))|"
  [[ -z $W6 ]] || echo "6. delta of case 3 on XFS with reflinks (import; du counts the shared blocks in both slots)|$W6|$SIZE2||$D6|$SIZE2|"
} >"$T/rows"
py table "$T/rows"
echo
echo "bytes written: wait4 ru_oublock * 512 (the process's whole life). Data dir: du -sB1 while the node"
echo "runs with the release committed (after the process exited in parentheses); fetch exits by itself."
