# shellcheck shell=bash
# Helpers shared by .ci/run and .ci/debian13 (sourced, not run).

log() { printf '[ci %(%H:%M:%S)T] %s\n' -1 "$*"; }
warn() { printf '[ci %(%H:%M:%S)T] WARNING: %s\n' -1 "$*" >&2; }
die() {
    printf '[ci %(%H:%M:%S)T] ERROR: %s\n' -1 "$*" >&2
    exit 1
}

header() {
    local rule='======================================================================'
    printf '\n%s\n== %s\n%s\n' "$rule" "$*" "$rule"
}

# retry N CMD...: the network steps (apt, debootstrap, pip) go through a proxy and
# fail now and then for reasons unrelated to the project. Only for simple commands:
# a shell function run here would run with `set -e` switched off inside it.
retry() {
    local tries=$1 i
    shift
    for ((i = 1; ; i++)); do
        "$@" && return 0
        ((i < tries)) || return 1
        warn "attempt $i of $tries failed: $*; retrying in $((i * 15)) s"
        sleep $((i * 15))
    done
}

# elapsed SECONDS_AT_START: "3m07s" since then.
elapsed() {
    local s=$((SECONDS - $1))
    printf '%dm%02ds' $((s / 60)) $((s % 60))
}

# pytest_summary LOG: pytest's closing "==== 12 passed, 1 skipped in 3.4s ====" line
# from LOG, without the = signs; empty if pytest never printed one (it crashed, or
# was killed). "no tests ran in 0.01s" is matched too.
pytest_summary() {
    grep -aE '^=+ .* in [0-9.]+s( \([0-9:]+\))? =+$' "$1" | tail -n 1 | sed -E 's/^=+ //; s/ =+$//' || true
}

# count_of SUMMARY WORD_REGEX: the number pytest gives for that word, 0 if absent.
# "[0-9]+ passed" does not match "3 xpassed" (the x stands between), nor failed/xfailed.
count_of() {
    { grep -oE "[0-9]+ ($2)\b" <<<"$1" || true; } | awk '{ n += $1 } END { print n + 0 }'
}

# print_versions CMD...: what the suite actually runs against, for reading a failure.
# CMD runs a Python (it may be a chroot command line).
print_versions() {
    "$@" - <<'EOF' || true
import importlib.metadata as md, platform
names = ["mediapipe", "numpy", "opencv-contrib-python", "opencv-python", "python-osc", "bpy", "pytest", "hypothesis"]
found = []
for name in names:
    try:
        found.append(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        pass
print(f"Python {platform.python_version()}: " + ", ".join(found))
EOF
}
