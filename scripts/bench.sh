#!/usr/bin/env bash
# Benchmarks stepexec against buildah (rootless, --layers, --network=none,
# runc, overlay, the same local Alpine) and prints a Markdown table for
# BENCHMARKS.md: medians (and minimums) over ROUNDS rounds, the
# stepexec/buildah ratio, the target (issue #7) and whether it is met.
#
# Workloads, each run stepexec then buildah (ABAB...) inside every round, so
# load on the machine falls on both alike, with `sync` before every run:
#   - per-RUN overhead: (10 RUNs - 1 RUN) / 9, fresh content;
#   - full-cache rebuild of the 10-RUN build, and the same build with only
#     its last RUN changed (after an untimed warm-up build);
#   - one RUN writing 2,000 x 100 KB random files, also done without any
#     builder ("bare": unshare, overlay, chroot, tar | sha256sum of the upper);
#   - COPY of 1,000 small files and of one 200 MB file (beyond an empty build);
#   - per-RUN overhead in a store already holding 1,000 more layers;
#   - peak RSS of a 10-RUN build.
# "Fresh" builds carry a nonce (tool, round, workload) in every RUN line, or in
# the copied bytes, so no layer cache can ever hit them; they also get
# --no-cache (buildah; stepexec when it has the flag). The cache workloads
# use each tool's cache as users get it (buildah --layers, stepexec default).
#
# Run it as the user you build as (rootless: with a subuid range). Env:
# ROUNDS (default 5), BENCH_TIMEOUT (seconds for the whole run; default
# 600 + 300 per round), STEPEXEC (the binary; default ./stepexec, built when
# missing). Progress goes to stderr, the report to stdout.
set -euo pipefail
export LC_ALL=C # EPOCHREALTIME and awk with a '.' decimal point
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-5}
budget=${BENCH_TIMEOUT:-$((600 + 300 * rounds))}
se_bin=${STEPEXEC:-$PWD/stepexec}
[ -x "$se_bin" ] || scripts/build.sh >/dev/null
command -v buildah >/dev/null || { echo "bench: buildah is not installed (apt-get install buildah)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }
alpine=$(scripts/alpine.sh)
se_nocache=
if "$se_bin" build --help 2>/dev/null | grep -q -- '--no-cache'; then se_nocache=--no-cache; fi
# As buildah's: steps without a network (stepexec's default is a private
# one through slirp4netns since issue #8).
se_net=()
if "$se_bin" build --help 2>/dev/null | grep -q -- '--network'; then se_net=(--network=none); fi

work=$(mktemp -d "${TMPDIR:-/tmp}/stepexec-bench.XXXXXX")
res="$work/results"; mkdir -p "$res" "$work/ctx"
started=$SECONDS
live=()     # pids of the builds running now, killed on a signal
watchdog=

log() { printf '[bench %4ds] %s\n' $((SECONDS - started)) "$*" >&2; }

# stop_live: TERM the running builds (they clean up after themselves), KILL
# what is still there 15 s later.
stop_live() {
  local p i alive
  [ ${#live[@]} -gt 0 ] || return 0
  kill -TERM "${live[@]}" 2>/dev/null || true
  for i in $(seq 1 150); do
    alive=0
    for p in "${live[@]}"; do if kill -0 "$p" 2>/dev/null; then alive=1; fi; done
    [ "$alive" -eq 1 ] || break
    sleep 0.1
  done
  kill -KILL "${live[@]}" 2>/dev/null || true
  wait "${live[@]}" 2>/dev/null || true
  live=()
}
cleanup() {
  stop_live
  if [ -n "$watchdog" ]; then kill -TERM "$watchdog" 2>/dev/null || true; wait "$watchdog" 2>/dev/null || true; fi
  # Layers hold files owned by the subuid range: remove them from inside it.
  if [ "$(id -u)" -ne 0 ]; then buildah unshare rm -rf "$work" 2>/dev/null || true; fi
  rm -rf "$work" 2>/dev/null || true
  [ ! -e "$work" ] || echo "bench: could not remove $work" >&2
}
on_signal() {
  case $1 in
  ALRM) echo "bench: the run took longer than BENCH_TIMEOUT=${budget}s; stopped" >&2 ;;
  *) echo "bench: interrupted ($1)" >&2 ;;
  esac
  stop_live
  exit 1
}
trap cleanup EXIT
# shellcheck disable=SC2064 # $sig is meant to expand now, once per signal
for sig in INT TERM ALRM; do trap "on_signal $sig" "$sig"; done
# The watchdog bounds the whole run; its own trap takes its sleep with it.
( trap 'kill "$s" 2>/dev/null; wait "$s"; exit 0' TERM; sleep "$budget" & s=$!; wait "$s" && kill -ALRM $$ ) &
watchdog=$!

fail() { # MESSAGE ERRFILE
  echo "bench: $1" >&2
  [ -s "$2" ] && tail -n 40 "$2" >&2
  exit 1
}
# timed KEY CMD...: runs CMD (in the background, so a signal interrupts the
# wait), fails loudly if it fails, appends its wall time in µs to KEY.
timed() {
  local key=$1 t0 t1 rc=0
  shift
  t0=${EPOCHREALTIME/./}
  "$@" >"$work/out" 2>"$work/err" </dev/null &
  live=($!)
  wait "${live[0]}" || rc=$?
  t1=${EPOCHREALTIME/./}
  live=()
  [ "$rc" -eq 0 ] || fail "$key: '$*' exited with status $rc:" "$work/err"
  echo $((t1 - t0)) >>"$res/$key"
}

se() { local store=$1; shift; "$se_bin" --root "$store/root" --runroot "$store/run" "$@"; }
bh() { local store=$1; shift; buildah --root "$store/root" --runroot "$store/run" --storage-driver overlay "$@"; }
# build_argv TOOL STORE MODE CTX: sets argv to TOOL's build of CTX on STORE;
# MODE fresh adds --no-cache, MODE cached leaves the cache on.
build_argv() {
  local tool=$1 store=$2 mode=$3 ctx=$4 nc=()
  case $tool in
  s)
    [ "$mode" = cached ] || [ -z "$se_nocache" ] || nc=("$se_nocache")
    argv=("$se_bin" --root "$store/root" --runroot "$store/run" build -q "${se_net[@]}" "${nc[@]}" "$ctx") ;;
  b)
    [ "$mode" = cached ] || nc=(--no-cache)
    argv=(buildah --root "$store/root" --runroot "$store/run" --storage-driver overlay
      bud --pull=never --runtime=runc --network=none --layers -q "${nc[@]}" "$ctx") ;;
  esac
}
# tidy TOOL STORE: removes what this round's builds left (untimed), so every
# round starts on the same store.
tidy() {
  case $1 in
  s) se "$2" prune --all >/dev/null 2>"$work/err" || fail "stepexec prune failed:" "$work/err" ;;
  b) # buildah 1.28 leaves the working container of a build with no instruction
    bh "$2" rm --all >/dev/null 2>"$work/err" || fail "buildah rm --all failed:" "$work/err"
    bh "$2" rmi --prune >/dev/null 2>"$work/err" || fail "buildah rmi --prune failed:" "$work/err" ;;
  esac
}
layer_count() { grep -o '"id":' "$1/root/overlay-layers/layers.json" | wc -l; }

# steps_dockerfile DIR N NONCE [LAST]: FROM alpine + N RUNs carrying NONCE;
# the last one carries LAST instead when given.
steps_dockerfile() {
  local dir=$1 n=$2 nonce=$3 last=${4:-$3} i
  mkdir -p "$dir"
  {
    echo "FROM alpine"
    for i in $(seq 1 "$n"); do
      if [ "$i" -eq "$n" ]; then nonce=$last; fi
      echo "RUN echo $nonce-$i > /step$i"
    done
  } >"$dir/Dockerfile"
}
files_cmd='mkdir /data && i=0 && while [ $i -lt 2000 ]; do head -c 102400 /dev/urandom > /data/f$i; i=$((i+1)); done'
# overwrite FILE NONCE: puts NONCE at the start of FILE (same size), so a
# COPY of it is new content to any cache.
overwrite() { printf '%-24s' "$2" | dd of="$1" bs=24 count=1 conv=notrunc status=none; }

# prep_WORKLOAD TOOL: writes the context of TOOL's build in round $r, sets ctx.
prep_t0() { ctx="$work/ctx/t0"; }
prep_s1() { ctx="$work/ctx/s1-$1"; steps_dockerfile "$ctx" 1 "$1$r-s1"; }
prep_s10() { ctx="$work/ctx/s10-$1"; steps_dockerfile "$ctx" 10 "$1$r-s10"; }
prep_k1() { ctx="$work/ctx/k1-$1"; steps_dockerfile "$ctx" 1 "$1$r-k1"; }
prep_k10() { ctx="$work/ctx/k10-$1"; steps_dockerfile "$ctx" 10 "$1$r-k10"; }
prep_rss() { ctx="$work/ctx/rss-$1"; steps_dockerfile "$ctx" 10 "$1$r-rss"; }
prep_warm() { ctx="$work/ctx/w-$1"; steps_dockerfile "$ctx" 10 "$1$r-w"; }
prep_same() { ctx="$work/ctx/w-$1"; }
prep_last() { ctx="$work/ctx/w-$1"; steps_dockerfile "$ctx" 10 "$1$r-w" "$1$r-w-changed"; }
prep_small() { ctx="$work/ctx/small"; overwrite "$ctx/files/d0/f0" "$1$r-small"; }
prep_big() { ctx="$work/ctx/big"; overwrite "$ctx/big" "$1$r-big"; }
prep_files() {
  ctx="$work/ctx/files-$1"; mkdir -p "$ctx"
  printf 'FROM alpine\nRUN echo %s > /nonce && %s\n' "$1$r-files" "$files_cmd" >"$ctx/Dockerfile"
}

# store TOOL KIND: the store TOOL builds on: its own empty one (Alpine
# only), or the 1,000-layer one both tools share.
store() { if [ "$2" = 1k ]; then echo "$work/1k"; else echo "$work/$1-empty"; fi; }
# ab KEY KIND MODE: stepexec's then buildah's build of prep_KEY's context,
# on the KIND store (empty or 1k), each timed into KEY.s / KEY.b.
ab() {
  local key=$1 kind=$2 mode=$3 tool
  for tool in s b; do
    "prep_$key" "$tool"
    sync
    build_argv "$tool" "$(store "$tool" "$kind")" "$mode" "$ctx"
    timed "$key.$tool" "${argv[@]}"
  done
}
# The bare reference: the same RUN with no builder, in a user+mount namespace
# on an overlay mounted as stepexec mounts it, the upper dir then tarred and
# hashed as a layer commit does.
bare_script='set -euo pipefail
b=$1
mount -t overlay overlay -o "lowerdir=$b/lower,upperdir=$b/upper,workdir=$b/work,userxattr,volatile" "$b/merged"
mount -t tmpfs -o mode=755,nosuid tmpfs "$b/merged/dev"
for d in null urandom; do : >"$b/merged/dev/$d"; mount --bind "/dev/$d" "$b/merged/dev/$d"; done
chroot "$b/merged" /bin/sh -c "$2"
tar -C "$b/upper" -cf - . | sha256sum >/dev/null'
bare_run() {
  local b="$work/bare"
  [ ! -d "$b/work" ] || chmod -R u+rwx "$b/work"
  rm -rf "$b/upper" "$b/work"; mkdir -p "$b/upper" "$b/work" "$b/merged"
  sync
  timed files.bare unshare --user --map-root-user --mount bash -c "$bare_script" bash "$b" "echo bare$r-files > /nonce && $files_cmd"
  chmod -R u+rwx "$b/work" # overlay leaves work/work mode 000
  rm -rf "$b/upper" "$b/work"
}
# rss TOOL: a fresh 10-RUN build under /usr/bin/time, whose maximum RSS is
# the largest of the process and every descendant it waited for (wait4's
# rusage), so it covers stepexec's re-executed child in the user namespace
# that does the work.
rss() {
  local tool
  for tool in s b; do
    prep_rss "$tool"
    sync
    build_argv "$tool" "$work/$tool-empty" fresh "$ctx"
    timed "rsstime.$tool" /usr/bin/time -f %M -o "$work/rss" "${argv[@]}"
    cat "$work/rss" >>"$res/rss.$tool"
  done
}
# tree_rss PID: polls PID's process tree until PID exits; prints the largest
# processes' VmHWM (pid, parent, name, KiB) and the peak of the tree's summed
# VmRSS (shared pages count in every process that maps them).
tree_rss() {
  local root=$1 d p q st rest k v h rr name sum peak=0
  local -A hwm=() names=() parents=()
  while read -r st 2>/dev/null <"/proc/$root/stat"; do
    rest=${st##*) }
    [ "${rest%% *}" != Z ] || break
    local -A par=()
    for d in /proc/[0-9]*; do
      read -r st 2>/dev/null <"$d/stat" || continue
      rest=${st##*) }
      set -- $rest
      par[${d#/proc/}]=$2
    done
    sum=0
    for p in "${!par[@]}"; do
      q=$p
      while [ -n "$q" ] && [ "$q" -gt 1 ] && [ "$q" != "$root" ]; do q=${par[$q]:-}; done
      [ "$q" = "$root" ] || continue
      h=0 rr=0 name='?'
      while read -r k v _; do
        case $k in Name:) name=$v ;; VmHWM:) h=$v ;; VmRSS:) rr=$v ;; esac
      done 2>/dev/null <"/proc/$p/status" || continue
      sum=$((sum + rr))
      names[$p]=$name parents[$p]=${par[$p]}
      [ "${hwm[$p]:-0}" -ge "$h" ] || hwm[$p]=$h
    done
    [ "$sum" -le "$peak" ] || peak=$sum
    unset par
  done
  for p in "${!hwm[@]}"; do echo "$p ${parents[$p]} ${names[$p]} ${hwm[$p]}"; done | sort -k4 -n -r | head -n 4
  echo "sum $peak"
}
# rss_detail TOOL: one more fresh 10-RUN build, its process tree polled, to
# say which process the peak belongs to. Polling slows the build; untimed.
rss_detail() {
  local tool=$1 pid rc=0
  prep_rss "$tool"
  build_argv "$tool" "$work/$tool-empty" fresh "$ctx"
  "${argv[@]}" >"$work/out" 2>"$work/err" </dev/null &
  pid=$!
  live=("$pid")
  tree_rss "$pid" >"$res/rssdetail.$tool"
  wait "$pid" || rc=$?
  live=()
  [ "$rc" -eq 0 ] || fail "rss detail: '${argv[*]}' exited with status $rc:" "$work/err"
}

# --- setup --------------------------------------------------------------
log "work dir $work; stepexec $("$se_bin" --version 2>&1 | head -n 1); $(buildah --version)"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for s in s-empty b-empty 1k; do
  se "$work/$s" import "$alpine" >/dev/null 2>"$work/err" || fail "importing $alpine into $s failed:" "$work/err"
done
mkdir -p "$work/ctx/t0"
echo "FROM alpine" >"$work/ctx/t0/Dockerfile"
log "writing the COPY contexts (1,000 files of 512 B-4 KiB in 10 directories; one 200 MB file)"
mkdir -p "$work/ctx/small/files" "$work/ctx/big"
printf 'FROM alpine\nCOPY files/ /files/\n' >"$work/ctx/small/Dockerfile"
printf 'FROM alpine\nCOPY big /big\n' >"$work/ctx/big/Dockerfile"
awk 'BEGIN{srand(1); for(i=0;i<1000;i++) print i, 512+int(rand()*3585)}' | while read -r i size; do
  d="$work/ctx/small/files/d$((i % 10))"; mkdir -p "$d"
  head -c "$size" /dev/urandom >"$d/f$i"
done
head -c $((200 * 1024 * 1024)) /dev/urandom >"$work/ctx/big/big"
log "unpacking Alpine for the bare reference"
mkdir -p "$work/bare/lower"
unshare --user --map-root-user tar --no-same-owner -xzf "$alpine" -C "$work/bare/lower"

# The 1,000-layer store: 10 images of 100 one-file RUN layers each, built by
# stepexec, two builds at a time.
log "filling the 1k store with 1,000 layers (10 images x 100 RUNs)"
for i in $(seq 0 2 8); do
  live=()
  for k in 0 1; do
    dir="$work/ctx/fill$((i + k))"; mkdir -p "$dir"
    { echo "FROM alpine"; for j in $(seq 1 100); do echo "RUN echo fill$((i + k))-$j > /fill$j"; done; } >"$dir/Dockerfile"
    "$se_bin" --root "$work/1k/root" --runroot "$work/1k/run" build -q -t "fill$((i + k))" "$dir" >/dev/null 2>"$work/err.$k" </dev/null &
    live+=($!)
  done
  for k in 0 1; do wait "${live[$k]}" || fail "filling the 1k store (image fill$((i + k))) failed:" "$work/err.$k"; done
  live=()
done
n=$(layer_count "$work/1k")
[ "$n" -ge 1001 ] || { echo "bench: the 1k store holds $n layers, not 1,001" >&2; exit 1; }
log "warming up each store (first builds initialize storage and the runtime)"
r=0
for kind in empty 1k; do
  for tool in s b; do
    prep_s1 "$tool"
    build_argv "$tool" "$(store "$tool" "$kind")" fresh "$ctx"
    timed "warmup.$tool" "${argv[@]}"
    tidy "$tool" "$(store "$tool" "$kind")"
  done
done

# --- rounds -------------------------------------------------------------
for r in $(seq 1 "$rounds"); do
  log "round $r/$rounds: empty build, 1 RUN, 10 RUNs"
  ab t0 empty fresh
  ab s1 empty fresh
  ab s10 empty fresh
  log "round $r/$rounds: cache: warm-up, full-cache rebuild, last RUN changed"
  ab warm empty cached
  ab same empty cached
  ab last empty cached
  log "round $r/$rounds: COPY of 1,000 small files, of one 200 MB file"
  ab small empty fresh
  ab big empty fresh
  log "round $r/$rounds: one RUN writing 2,000 x 100 KB (stepexec, buildah, bare)"
  ab files empty fresh
  bare_run
  log "round $r/$rounds: 1 RUN and 10 RUNs on the 1,000-layer stores"
  ab k1 1k fresh
  ab k10 1k fresh
  log "round $r/$rounds: peak RSS of a 10-RUN build"
  rss
  for tool in s b; do tidy "$tool" "$work/$tool-empty"; tidy "$tool" "$work/1k"; done
  log "round $r/$rounds: done; layers in s-empty, b-empty, 1k: $(layer_count "$work/s-empty"), $(layer_count "$work/b-empty"), $(layer_count "$work/1k")"
  sync
done
log "one polled build per tool for the RSS breakdown"
r=detail
for tool in s b; do rss_detail "$tool"; tidy "$tool" "$work/$tool-empty"; done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report -------------------------------------------------------------
# stats KEY: "median min" of KEY's samples.
stats() {
  sort -n "$res/$1" | awk '{v[NR]=$1} END{m = NR % 2 ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2; printf "%d %d\n", m, v[1]}'
}
# diff_stats A B DIV: (A - B) / DIV for the medians and for the minimums.
diff_stats() {
  local a b
  a=$(stats "$1"); b=$(stats "$2")
  awk -v a="$a" -v b="$b" -v d="$3" 'BEGIN{split(a, x); split(b, y); printf "%d %d\n", (x[1]-y[1])/d, (x[2]-y[2])/d}'
}
fmt() { awk -v u="$1" 'BEGIN{ if (u >= 1000000 || u <= -1000000) printf "%.2f s", u/1e6; else printf "%.1f ms", u/1e3 }'; }
fmt2() { set -- $1; echo "$(fmt "$1") ($(fmt "$2"))"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b == 0) print "-"; else printf "%.2f", a/b }'; }
met() { awk -v a="$1" -v b="$2" -v l="$3" 'BEGIN{ print (b != 0 && a/b <= l) ? "yes" : "no" }'; }
# row NAME S B TARGET LIMIT: S and B are "median min"; met is S/B <= LIMIT.
row() {
  local sm bm
  sm=${2%% *}; bm=${3%% *}
  echo "| $1 | $(fmt2 "$2") | $(fmt2 "$3") | $(ratio "$sm" "$bm") | $4 | $(met "$sm" "$bm" "$5") |"
}
run_s=$(diff_stats s10.s s1.s 9); run_b=$(diff_stats s10.b s1.b 9)
k_s=$(diff_stats k10.s k1.s 9); k_b=$(diff_stats k10.b k1.b 9)
files_s=$(stats files.s); files_bare=$(stats files.bare)
rss_s=$(stats rss.s); rss_b=$(stats rss.b)
mib() { awk -v k="$1" 'BEGIN{printf "%.1f MiB", k/1024}'; }
stretch=$(awk -v u="${run_s%% *}" 'BEGIN{print (u <= 15000) ? "yes" : "no"}')
commit=$(git -c safe.directory='*' describe --always --dirty 2>/dev/null || echo unknown)

echo "## $(date -u +%Y-%m-%d), $(nproc) CPUs, kernel $(uname -r) (issue #7)"
echo
echo "- \`$("$se_bin" --version 2>&1 | head -n 1)\` (checkout \`$commit\`); stepexec build --no-cache: $([ -n "$se_nocache" ] && echo yes || echo 'no (no layer cache yet)'), --network=none: $([ ${#se_net[@]} -gt 0 ] && echo yes || echo no)"
echo "- $(buildah --version); runc $(runc --version 2>/dev/null | head -n 1 | awk '{print $3}'); as uid $(id -u) ($(id -un)); store on $(findmnt -n -o FSTYPE -T "$work")"
echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); load average at start $load_start, at end $load_end"
echo "- $rounds rounds, each workload stepexec then buildah in every round; median (min) of the rounds; run took $((SECONDS - started)) s"
echo
echo "| workload | stepexec, median (min) | buildah, median (min) | stepexec/buildah | target | met? |"
echo "|---|---|---|---|---|---|"
row "per-RUN overhead, (10 RUNs − 1 RUN)/9, fresh content" "$run_s" "$run_b" "≤ 0.10× (≈ 25 ms); stretch 15 ms: $stretch" 0.10
row "full-cache rebuild of the 10-RUN build" "$(stats same.s)" "$(stats same.b)" "≤ 0.25× (≈ 40 ms)" 0.25
row "10 RUNs, only the last RUN changed" "$(stats last.s)" "$(stats last.b)" "≤ 0.20×" 0.20
row "one RUN writing 2,000 × 100 KB random files" "$files_s" "$(stats files.b)" "≤ 0.5×" 0.5
echo "| the same, against a bare namespace + overlay + tar \| sha256sum (buildah column: bare) | $(fmt2 "$files_s") | bare: $(fmt2 "$files_bare") | $(ratio "${files_s%% *}" "${files_bare%% *}") (stepexec/bare) | ≤ 1.1× bare | $(met "${files_s%% *}" "${files_bare%% *}" 1.1) |"
row "COPY of 1,000 small files (512 B–4 KiB), beyond an empty build" "$(diff_stats small.s t0.s 1)" "$(diff_stats small.b t0.b 1)" "≤ 0.5×" 0.5
row "COPY of one 200 MB file, beyond an empty build" "$(diff_stats big.s t0.s 1)" "$(diff_stats big.b t0.b 1)" "≤ 0.5×" 0.5
echo "| per-RUN overhead with 1,000 more layers in the store | $(fmt2 "$k_s") | $(fmt2 "$k_b") | $(ratio "${k_s%% *}" "${k_b%% *}"); stepexec $(ratio "${k_s%% *}" "${run_s%% *}")× its empty-store figure (buildah $(ratio "${k_b%% *}" "${run_b%% *}")×) | ≤ 1.5× the empty-store figure | $(met "${k_s%% *}" "${run_s%% *}" 1.5) |"
echo "| peak RSS of a 10-RUN build (largest process) | $(mib "${rss_s%% *}") ($(mib "${rss_s##* }")) | $(mib "${rss_b%% *}") ($(mib "${rss_b##* }")) | $(ratio "${rss_s%% *}" "${rss_b%% *}") | ≤ 40 MiB | $(awk -v k="${rss_s%% *}" 'BEGIN{print (k <= 40*1024) ? "yes" : "no"}') |"
echo
for tool in s b; do
  name=$([ "$tool" = s ] && echo stepexec || echo buildah)
  awk -v name="$name" '
    /^sum/ { sum = $2; next }
    { list = list sprintf("%s`%s` (pid %s, parent %s) %.1f MiB", n++ ? "; " : "", $3, $1, $2, $4/1024) }
    END { printf "- Peak RSS (VmHWM) of the largest processes in one polled %s build: %s; the tree'"'"'s RSS summed peaked at %.1f MiB.\n", name, list, sum/1024 }
  ' "$res/rssdetail.$tool"
done
{
  echo "raw samples (µs), in round order:"
  for f in "$res"/*; do [ "${f#*rssdetail}" = "$f" ] || continue; echo "  $(basename "$f"): $(tr '\n' ' ' <"$f")"; done
} >&2
