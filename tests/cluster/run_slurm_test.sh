#!/usr/bin/env bash
# Runs the tiny pipeline on a real single-node SLURM cluster with `--profile profiles/slurm`, runs the same
# configuration locally, and checks that both give the same files and that the train jobs asked SLURM for a GPU.
#
#   sudo bash tests/cluster/run_slurm_test.sh        # about 2-3 minutes; `make test-cluster` runs it via pytest
#
# What it does:
#   1. Needs root and apt-get. Without them it prints "SKIPPED: <reason>" and exits 0.
#   2. Installs Debian's slurm-wlm and munge (only when their commands are missing).
#   3. Writes slurm.conf and gres.conf for this host into a temporary folder: one node, one partition, no
#      accounting database, MinJobAge=600 so squeue still sees finished jobs, and one fake GPU (/dev/null) so
#      that --gpus requests can be scheduled. It then starts its own munged, slurmctld and slurmd on free ports,
#      with their own munge key and socket. A system SLURM or munge, if there is one, is left alone.
#   4. Runs snakemake through SLURM and, in a second folder, locally (--cores 2), on a small copy of config.yaml.
#   5. Compares the sha256 of the deterministic outputs (tensors, model.pt, logits.pt, evaluation tables), checks
#      the sbatch calls in the snakemake log (--gpus=1 for train, none for CPU rules), asks SLURM itself for each
#      train job's GPU request, and checks the SLURM logs of successful jobs were kept.
#   6. On exit, always: cancels leftover jobs, stops the three daemons by pid, removes the temporary folder
#      (set CLUSTER_TEST_KEEP=1 to keep it). On failure it first prints the daemon logs.
#
# Environment:
#   CLUSTER_TEST_TARGETS  snakemake targets or options, space separated (default: the workflow's default target,
#                         rule all); e.g. "--until train train_lda": every job up to training, the ones that ask
#                         SLURM for resources of their own
#   CLUSTER_TEST_LOCAL_DIR  a folder where the same tiny configuration already ran locally (at least to the same
#                         targets): compared with instead of running it again here; only the files the SLURM run
#                         made are compared
#   CLUSTER_TEST_KEEP=1   keep the temporary folder (printed at the start)
#   VENV                  virtual environment with snakemake, the SLURM plugin and the package (default: .venv)
#
# Note on `set -u`: Snakemake runs every shell rule in bash under `set -euo pipefail`. On some sites a start-up
# file reaches non-interactive shells through BASH_ENV (module systems, conda hooks) and uses unset variables.
# Shell rules then fail with "unbound variable" before the command runs. That is a site problem, not a workflow
# problem, so this script unsets BASH_ENV and ENV. On such a cluster, fix the start-up file or unset BASH_ENV
# before running snakemake.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VENV:-$REPO/.venv}"
read -r -a TARGETS <<<"${CLUSTER_TEST_TARGETS:-}" # empty: the default target
PARTITION=ci   # deliberately not the default partition: submissions only work if the partition is passed on
NODE_CPUS=8    # advertised to SLURM (SlurmdParameters=config_overrides), so the profile's requests fit on a
NODE_MEM=32000 # small machine; jobs are not confined (task/none), so this only affects scheduling
START=$(date +%s)

skip() {
    echo "SKIPPED: $*"
    exit 0
}

[ "$(id -u)" -eq 0 ] || skip "needs root to install and start SLURM daemons (run as root, e.g. in CI or a container)"
command -v apt-get >/dev/null 2>&1 || skip "apt-get not found: this script installs SLURM from Debian packages"
[ -x "$VENV/bin/snakemake" ] || {
    echo "FAILED: $VENV/bin/snakemake not found (make the virtual environment first, or set VENV)"
    exit 1
}

# ---------------------------------------------------------------- 2. install SLURM and munge from Debian
SLURM_COMMANDS=(munged mungekey slurmctld slurmd sbatch srun squeue sinfo scontrol scancel)
missing=()
for c in "${SLURM_COMMANDS[@]}"; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "Installing slurm-wlm and munge with apt-get (missing: ${missing[*]}) ..."
    apt_log="$(mktemp)"
    if ! {
        DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge
    } >"$apt_log" 2>&1; then
        reason="$(tail -n 3 "$apt_log" | tr '\n' ' ')"
        rm -f "$apt_log"
        skip "could not install slurm-wlm and munge with apt-get: $reason"
    fi
    rm -f "$apt_log"
    for c in "${SLURM_COMMANDS[@]}"; do
        command -v "$c" >/dev/null 2>&1 || skip "apt-get installed slurm-wlm and munge but '$c' is still missing"
    done
fi
echo "SLURM: $(slurmd -V)   munge: $(munged --version 2>&1 | head -n 1)"

# ---------------------------------------------------------------- 3. a private single-node cluster
TMP="$(mktemp -d "${TMPDIR:-/tmp}/cp-slurm-test.XXXXXX")"
chmod 755 "$TMP" # munged and slurmd want to traverse it
mkdir -p "$TMP"/{bin,etc,munge,state,spool,log,run,work-slurm,work-local}
echo "Temporary folder: $TMP"
MUNGE_PID="" CTLD_PID="" SLURMD_PID="" LOCAL_PID="" SLURM_RUN_PID=""

show_logs() {
    for f in "$TMP"/log/munged.log "$TMP"/log/slurmctld.log "$TMP"/log/slurmd.log; do
        [ -f "$f" ] || continue
        echo "----- last lines of $f"
        tail -n 60 "$f"
    done
}

stop() { # stop <pid>: TERM, up to 10 s to exit, then KILL
    [ -n "$1" ] || return 0
    kill -TERM "$1" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}

stop_run() { # stop_run <pid of timeout>: INT (snakemake cancels its jobs; TERM would make it wait for them)
    [ -n "$1" ] || return 0
    kill -INT "$1" 2>/dev/null || return 0 # timeout passes the signal on to snakemake
    for _ in $(seq 60); do kill -0 "$1" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$1" 2>/dev/null # timeout leads its own process group: snakemake and its children
    wait "$1" 2>/dev/null
}

wait_for_run() { # wait_for_run <how> <pid> <log>: waits; on failure prints the end of the log and returns 1
    local rc=0
    wait "$2" || rc=$?
    [ "$rc" -eq 0 ] && return 0
    echo "snakemake $1 failed (exit $rc); last lines of its log:"
    tail -n 80 "$3"
    return 1
}

cleanup() {
    local rc=$?
    set +e
    exec 1>&3 2>&4 # the original output, even if the script stopped inside a redirected command
    trap '' INT TERM
    if [ "$rc" -ne 0 ]; then
        echo "FAILED (exit $rc) after $(($(date +%s) - START)) s; daemon logs follow"
        show_logs
    fi
    # Snakemake first, then leftover jobs, then the daemons.
    stop_run "$SLURM_RUN_PID"
    stop_run "$LOCAL_PID"
    if [ -n "$CTLD_PID" ] && kill -0 "$CTLD_PID" 2>/dev/null; then
        scancel --partition "$PARTITION" >/dev/null 2>&1
        for _ in $(seq 30); do
            [ -z "$(squeue --noheader --states=PENDING,RUNNING,COMPLETING,CONFIGURING 2>/dev/null)" ] && break
            sleep 1
        done
    fi
    stop "$SLURMD_PID"
    stop "$CTLD_PID"
    stop "$MUNGE_PID"
    if [ "${CLUSTER_TEST_KEEP:-0}" = 1 ]; then
        echo "Kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
exec 3>&1 4>&2
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The cluster's commands find it through SLURM_CONF; variables of an enclosing SLURM job would confuse them.
while read -r name; do unset "$name"; done < <(compgen -e | grep '^SLURM_' || true)
export SLURM_CONF="$TMP/etc/slurm.conf"
# Inside each job, snakemake-executor-plugin-slurm-jobstep (0.6.1) starts the rule with a nested srun, and it
# removes every SLURM_* variable except the job's identity first, SLURM_CONF included. A cluster whose
# slurm.conf is at /etc/slurm or served configless does not notice. This cluster's slurm.conf is only found
# through SLURM_CONF, so an srun wrapper first on PATH puts the variable back.
cat >"$TMP/bin/srun" <<EOF
#!/bin/sh
SLURM_CONF='$SLURM_CONF' exec '$(command -v srun)' "\$@"
EOF
chmod 755 "$TMP/bin/srun"
# The rules run `python -m contrastive_prosthetics` with the virtual environment's python; sbatch --export=ALL
# passes PATH on.
export PATH="$TMP/bin:$VENV/bin:$PATH"
unset BASH_ENV ENV # see the note on `set -u` above

NODE="$(hostname -s)"
read -r CTLD_PORT SLURMD_PORT < <("$VENV/bin/python" - <<'EOF'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
EOF
)

cat >"$TMP/etc/slurm.conf" <<EOF
# Written by tests/cluster/run_slurm_test.sh: a one-node cluster for the workflow test.
ClusterName=cptest
SlurmctldHost=${NODE}(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$TMP/munge/munge.socket
StateSaveLocation=$TMP/state
SlurmdSpoolDir=$TMP/spool
SlurmctldPidFile=$TMP/run/slurmctld.pid
SlurmdPidFile=$TMP/run/slurmd.pid
SlurmctldLogFile=$TMP/log/slurmctld.log
SlurmdLogFile=$TMP/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups (SLURM 22.05 has no CgroupPlugin=disabled, so no cgroup.conf and no cgroup plugins at all).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No accounting database: sacct does not work, squeue is the status command.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# Finished jobs stay visible to squeue (and scontrol) for 10 minutes.
MinJobAge=600
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
ReturnToService=2
SlurmdParameters=config_overrides
MpiDefault=none
SwitchType=switch/none
InactiveLimit=0
KillWait=5
Waittime=0
SlurmdTimeout=300
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$NODE_CPUS RealMemory=$NODE_MEM Gres=gpu:1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=NO MaxTime=INFINITE State=UP
EOF
cat >"$TMP/etc/gres.conf" <<EOF
# One pretend GPU, so that --gpus=1 can be scheduled on a machine without one.
AutoDetect=off
NodeName=$NODE Name=gpu File=/dev/null
EOF

# A fresh munge key for this cluster only (its own socket too, so a running system munged is untouched).
if ! mungekey --create --keyfile="$TMP/munge/munge.key" 2>/dev/null; then
    dd if=/dev/urandom of="$TMP/munge/munge.key" bs=1024 count=1 status=none
fi
chmod 600 "$TMP/munge/munge.key"
chmod 755 "$TMP/munge"

setsid munged --foreground --force --socket="$TMP/munge/munge.socket" --key-file="$TMP/munge/munge.key" \
    --pid-file="$TMP/run/munged.pid" --seed-file="$TMP/munge/munged.seed" >"$TMP/log/munged.log" 2>&1 &
MUNGE_PID=$!
for _ in $(seq 50); do [ -S "$TMP/munge/munge.socket" ] && break; sleep 0.2; done
munge --socket="$TMP/munge/munge.socket" --no-input | unmunge --socket="$TMP/munge/munge.socket" >/dev/null ||
    { echo "munged does not answer"; exit 1; }

setsid slurmctld -D -i -f "$SLURM_CONF" >"$TMP/log/slurmctld.out" 2>&1 &
CTLD_PID=$!
setsid slurmd -D -f "$SLURM_CONF" -N "$NODE" >"$TMP/log/slurmd.out" 2>&1 &
SLURMD_PID=$!
echo "Started munged ($MUNGE_PID), slurmctld ($CTLD_PID, port $CTLD_PORT), slurmd ($SLURMD_PID, port $SLURMD_PORT)"

state=""
for _ in $(seq 90); do
    for pid in "$MUNGE_PID" "$CTLD_PID" "$SLURMD_PID"; do
        kill -0 "$pid" 2>/dev/null || { echo "daemon $pid died while starting"; exit 1; }
    done
    state="$(sinfo --noheader --nodes="$NODE" --format=%t 2>/dev/null || true)"
    [ "$state" = idle ] && break
    sleep 1
done
[ "$state" = idle ] || { echo "node $NODE not idle after 90 s (state: '${state:-none}')"; exit 1; }
sinfo --Node --long
scontrol show config | grep -E '^(MinJobAge|SelectType |GresTypes|AccountingStorageType)'

yaml_of() { # the configuration in a file, layout aside; key order counts (it orders models, folds and tables)
    "$VENV/bin/python" -c 'import sys, json, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))' "$1"
}

# ---------------------------------------------------------------- 4. the tiny pipeline, through SLURM and locally
# The tiny configuration of the workflow tests (tests/tiny_config.py): two network models and LDA, one fold.
for dir in "$TMP/work-slurm" "$TMP/work-local"; do
    "$VENV/bin/python" "$REPO/tests/tiny_config.py" "$REPO/config.yaml" "$dir/config.yaml"
done
LOCAL_DIR="${CLUSTER_TEST_LOCAL_DIR:-$TMP/work-local}"
# Jobs per kind, from the workflow's own plan (a dry run of everything): train (a GPU each) for every network model,
# fold and window, train_lda (no GPU) for every LDA model. Counting from the config instead would go stale each
# time a rule or a fold family is added. The targets come before --quiet, which would take them as its values.
read -r GPU_JOBS LDA_JOBS < <(cd "$TMP/work-slurm" && "$VENV/bin/snakemake" --snakefile "$REPO/Snakefile" \
    --configfile config.yaml --dry-run --forceall "${TARGETS[@]}" --quiet rules 2>/dev/null |
    awk '$1 == "train" { gpu = $2 } $1 == "train_lda" { lda = $2 } END { print gpu + 0, lda + 0 }')
echo "EXPECTED-JOBS: train=$GPU_JOBS train_lda=$LDA_JOBS"
[ "$GPU_JOBS" -gt 0 ] || { echo "the dry run planned no train job: the configuration or the workflow is broken"; exit 1; }

# Which keys of profiles/slurm are overridden by the automatically loaded workflow profile (profiles/default)?
(cd "$TMP/work-slurm" && "$VENV/bin/python" - "$REPO" <<'EOF'
import sys
from pathlib import Path

import yaml
from snakemake.cli import parse_args

repo = Path(sys.argv[1])
base = ["--snakefile", str(repo / "Snakefile"), "--profile", str(repo / "profiles/slurm")]
both = parse_args(base)[1]
alone = parse_args([*base, "--workflow-profile", "none"])[1]
keys = yaml.safe_load((repo / "profiles/slurm/config.yaml").read_text())
shadowed = [k for k in keys if repr(getattr(both, k.replace("-", "_"))) != repr(getattr(alone, k.replace("-", "_")))]
if shadowed:
    print("PROFILE-SHADOWED:", " ".join(shadowed))
    print("  profiles/default (the workflow profile, loaded even with --profile) sets these keys too and wins;")
    print("  the values in profiles/slurm are ignored. Remove them from profiles/default.")
else:
    print("PROFILE-CHECK: every key of profiles/slurm takes effect next to profiles/default")
EOF
) 2>/dev/null || echo "PROFILE-CHECK: not run (snakemake could not parse the profiles)"

# The partition is site-specific, so it comes from the command line, as the plugin docs show. The status command
# is squeue because this cluster has no accounting database. The first status check comes after 5 s instead
# of 40 s, to keep the test short. --verbose makes the plugin log every sbatch call.
SLURM_CMD=(snakemake --snakefile "$REPO/Snakefile" --directory "$TMP/work-slurm" --profile "$REPO/profiles/slurm"
    --configfile "$TMP/work-slurm/config.yaml" --default-resources "slurm_partition=$PARTITION"
    --slurm-status-command squeue --slurm-init-seconds-before-status-checks 5 --slurm-no-account --verbose
    "${TARGETS[@]}")
LOCAL_CMD=(snakemake --snakefile "$REPO/Snakefile" --directory "$TMP/work-local"
    --configfile "$TMP/work-local/config.yaml" --cores 2 "${TARGETS[@]}")

# The local run works on its own folder at the same time (the SLURM run mostly waits on status checks), unless
# the caller already has one.
if [ -n "${CLUSTER_TEST_LOCAL_DIR:-}" ]; then
    cmp -s <(yaml_of "$TMP/work-local/config.yaml") <(yaml_of "$LOCAL_DIR/config.yaml") || {
        echo "CLUSTER_TEST_LOCAL_DIR=$LOCAL_DIR ran another configuration than tests/tiny_config.py writes"
        exit 1
    }
    echo "Comparing with the local run already in $LOCAL_DIR"
else
    echo "Running locally, in the background: ${LOCAL_CMD[*]}"
    timeout --signal=INT --kill-after=60 900 "${LOCAL_CMD[@]}" >"$TMP/log/snakemake-local.log" 2>&1 &
    LOCAL_PID=$!
fi
echo "Running through SLURM: ${SLURM_CMD[*]}"
t0=$(date +%s)
# Both runs go to the background and the script waits for them, so INT/TERM reach the traps at once.
(cd "$TMP/work-slurm" && exec timeout --signal=INT --kill-after=60 900 "${SLURM_CMD[@]}") \
    >"$TMP/log/snakemake-slurm.log" 2>&1 &
SLURM_RUN_PID=$!
if ! wait_for_run "through SLURM" "$SLURM_RUN_PID" "$TMP/log/snakemake-slurm.log"; then
    find "$TMP/work-slurm/.snakemake/slurm_logs" "$TMP/work-slurm/logs" -type f 2>/dev/null | while read -r f; do
        echo "----- $f"
        tail -n 20 "$f"
    done
    squeue --states=all --format='%i %j %T %r %k' || true
    exit 1
fi
SLURM_RUN_PID=""
echo "SLURM run finished in $(($(date +%s) - t0)) s"
if [ -n "$LOCAL_PID" ]; then
    wait_for_run locally "$LOCAL_PID" "$TMP/log/snakemake-local.log" || exit 1
    LOCAL_PID=""
    echo "Local run finished ($(grep -o 'Elapsed time: .*' "$TMP/log/snakemake-local.log" | tail -n 1))"
fi

# ---------------------------------------------------------------- 5. checks
fail=0
check() { # check <description> <command...>: runs the command, prints OK or FAIL
    local what="$1"
    shift
    if "$@"; then echo "OK: $what"; else echo "FAIL: $what"; fail=1; fi
}

digests() { # sha256 of the deterministic outputs, by path relative to the work folder
    # stream_timing.tsv is left out: it holds the controller's measured compute time per frame, a wall-clock
    # figure that differs from run to run on any machine.
    (cd "$1" && find results -type f \( -path 'results/tensors/*.pt' -o -path 'results/models/*/model.pt' \
        -o -path 'results/models/*/logits.pt' -o -path 'results/eval/*.tsv' \) ! -name stream_timing.tsv |
        LC_ALL=C sort | xargs -r sha256sum)
}
digests "$TMP/work-slurm" >"$TMP/log/sha256-slurm.txt"
# The same paths in the local run (which may have gone further than the SLURM run's targets).
(cd "$LOCAL_DIR" && awk '{ print $2 }' "$TMP/log/sha256-slurm.txt" | xargs -r sha256sum) >"$TMP/log/sha256-local.txt"
n_files=$(wc -l <"$TMP/log/sha256-slurm.txt")
echo "Deterministic outputs compared: $n_files files"
check "tensors, model.pt and logits.pt files were made (at least 6)" test "$n_files" -ge 6
check "SLURM and local runs made byte-identical outputs" \
    diff -u "$TMP/log/sha256-local.txt" "$TMP/log/sha256-slurm.txt"

sbatch_lines() { grep -o 'sbatch call: .*' "$TMP/log/snakemake-slurm.log" | sed 's/ --wrap=.*//' || true; }
sbatch_lines >"$TMP/log/sbatch-calls.txt"
n_sbatch=$(wc -l <"$TMP/log/sbatch-calls.txt")
n_train=$(grep -c 'rule_train_wildcards' "$TMP/log/sbatch-calls.txt" || true)
n_train_gpu=$(grep 'rule_train_wildcards' "$TMP/log/sbatch-calls.txt" | grep -c -- '--gpus=1' || true)
n_cpu_gpu=$(grep -v 'rule_train_wildcards' "$TMP/log/sbatch-calls.txt" | grep -c -- '--gpus' || true)
n_lda=$(grep -c 'rule_train_lda_wildcards' "$TMP/log/sbatch-calls.txt" || true)
n_partition=$(grep -c -- "-p $PARTITION " "$TMP/log/sbatch-calls.txt" || true)
echo "sbatch submissions: $n_sbatch (train: $n_train, of which with --gpus=1: $n_train_gpu; train_lda: $n_lda)"
grep 'rule_train_wildcards' "$TMP/log/sbatch-calls.txt" | sed 's/^/SBATCH-GPU: /' || true
grep 'rule_train_lda_wildcards' "$TMP/log/sbatch-calls.txt" | sed 's/^/SBATCH-CPU: /' || true
check "jobs were submitted with sbatch" test "$n_sbatch" -gt 0
check "every network's train job ($GPU_JOBS) was submitted with --gpus=1" \
    test "$n_train" -eq "$GPU_JOBS" -a "$n_train_gpu" -eq "$GPU_JOBS"
check "the LDA baseline was submitted as train_lda ($LDA_JOBS)" test "$n_lda" -eq "$LDA_JOBS"
check "no CPU-only job (LDA included) asked for a GPU" test "$n_cpu_gpu" -eq 0
check "every submission went to partition $PARTITION" test "$n_partition" -eq "$n_sbatch"
check "local rules (all, download, aggregate, figures) were not submitted" \
    bash -c "! grep -qE 'rule_(all|download|aggregate|figures)' '$TMP/log/sbatch-calls.txt'"
check "each submission carries its rule's runtime and memory from profiles/slurm (set-resources)" \
    "$VENV/bin/python" - "$REPO/profiles/slurm/config.yaml" "$TMP/log/sbatch-calls.txt" <<'EOF'
import re
import sys

import yaml

wanted = yaml.safe_load(open(sys.argv[1]))["set-resources"]
bad = 0
for call in open(sys.argv[2]):
    rule = re.search(r"--comment rule_(\w+?)(?:_wildcards\S*)?\s", call).group(1)
    if rule not in wanted:
        print(f"  {rule}: submitted, but profiles/slurm has no set-resources entry for it: add one")
        bad += 1
        continue
    expect = {"-t": wanted[rule]["runtime"], "--mem": wanted[rule]["mem_mb"]}
    got = {flag: int(value) for flag, value in re.findall(r" (-t|--mem) (\d+)", call)}
    if got != expect:
        print(f"  {rule}: sbatch got {got}, profiles/slurm says {expect}")
        bad += 1
sys.exit(bad > 0)
EOF

# SLURM's own record of the train jobs (MinJobAge=600 keeps them visible after they finished).
scontrol --oneliner show job >"$TMP/log/jobs.txt" 2>/dev/null || true
n_done=$(grep -c 'JobState=COMPLETED' "$TMP/log/jobs.txt" || true)
n_slurm_train_gpu=$(grep 'Comment=rule_train_wildcards' "$TMP/log/jobs.txt" | grep -cE 'TresPerJob=[^ ]*gpu[:/=]1' || true)
n_slurm_gpu=$(grep -cE 'TresPerJob=[^ ]*gpu' "$TMP/log/jobs.txt" || true)
grep 'Comment=rule_train' "$TMP/log/jobs.txt" | grep -oE 'JobId=[0-9]+|JobState=[A-Z]+|Comment=[^ ]+|TresPerJob=[^ ]+' |
    paste -sd ' ' | sed 's/JobId=/\nSLURM-JOB: JobId=/g' | sed '/^$/d' || true
check "SLURM completed every submitted job" test "$n_done" -eq "$n_sbatch"
check "SLURM recorded a one-GPU request for each train job, and for no other job" \
    test "$n_slurm_train_gpu" -eq "$GPU_JOBS" -a "$n_slurm_gpu" -eq "$GPU_JOBS"
n_logs=$(find "$TMP/work-slurm/.snakemake/slurm_logs" -name '*.log' -type f 2>/dev/null | wc -l)
check "SLURM logs of successful jobs were kept ($n_logs files)" test "$n_logs" -eq "$n_sbatch"

if [ "$fail" -ne 0 ]; then
    echo "----- sbatch calls"
    cat "$TMP/log/sbatch-calls.txt"
    echo "----- last lines of the SLURM run's log"
    tail -n 40 "$TMP/log/snakemake-slurm.log"
    exit 1
fi
echo "PASSED: SLURM run matches the local run; $n_sbatch sbatch jobs, train with --gpus=1, train_lda without ($(($(date +%s) - START)) s)"
