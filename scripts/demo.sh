#!/usr/bin/env bash
# The main job on one machine: build the platform, the provider and the reconciler, start
# the platform with a fresh database, apply examples/gitops with the real Terraform (its state
# kept in the platform through backend "http"), show that a second plan is clean, change two
# things behind Terraform's back, and let both Terraform (plan) and novacron-reconcile (drift
# report) find them. Cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "build (release)"
cargo build --release -p novacron-platform -p terraform-provider-novacron -p novacron-reconcile

step "terraform"
bash acceptance/install-terraform.sh >/dev/null
TF="$ROOT/acceptance/.tools/bin/terraform-1.15.5"
TF_CLI_CONFIG_FILE=/dev/null "$TF" version 2>/dev/null | sed -n 1p || true

WORK=$(mktemp -d -t novacron-demo.XXXXXX)
KEY="demo-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
cleanup() {
    [ -n "${PLATFORM_PID:-}" ] && kill "$PLATFORM_PID" 2>/dev/null && wait "$PLATFORM_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

step "platform"
"$BIN/novacron-platform" --listen 127.0.0.1:0 --data "$WORK/platform" --api-key "demo:$KEY" \
    --provision-delay-ms 300 >"$WORK/platform.out" 2>"$WORK/platform.log" &
PLATFORM_PID=$!
for _ in $(seq 100); do
    grep -q "listening on" "$WORK/platform.out" 2>/dev/null && break
    sleep 0.05
done
ENDPOINT=$(sed -n 's/^novacron-platform listening on //p' "$WORK/platform.out")
[ -n "$ENDPOINT" ] || { cat "$WORK/platform.log"; echo "the platform did not start" >&2; exit 1; }
echo "serving on $ENDPOINT (database in $WORK/platform)"

step "desired-state repository"
cp -r "$ROOT/examples/gitops" "$WORK/repo"
git -C "$WORK/repo" init -q -b main
git -C "$WORK/repo" add -A
git -C "$WORK/repo" -c user.name=demo -c user.email=demo@example.invalid commit -qm "Desired state"
git -C "$WORK/repo" log --oneline

export NOVACRON_ENDPOINT="$ENDPOINT" NOVACRON_API_KEY="$KEY" TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
export TF_CLI_CONFIG_FILE="$WORK/terraform.rc"
printf 'provider_installation {\n  dev_overrides { "novacron/novacron" = "%s" }\n  direct {}\n}\n' "$BIN" >"$TF_CLI_CONFIG_FILE"
export TF_DATA_DIR="$WORK/tfdata"
# The state lives in the platform (examples/gitops has backend "http" { username = "terraform" }):
# addresses through TF_HTTP_*, the API key only through TF_HTTP_PASSWORD.
export TF_HTTP_ADDRESS="$ENDPOINT/v1/tfstate/gitops-demo"
export TF_HTTP_LOCK_ADDRESS="$TF_HTTP_ADDRESS" TF_HTTP_UNLOCK_ADDRESS="$TF_HTTP_ADDRESS" TF_HTTP_PASSWORD="$KEY"
TFARGS=(-chdir="$WORK/repo")

step "terraform init (state backend: $TF_HTTP_ADDRESS)"
"$TF" "${TFARGS[@]}" init -input=false -compact-warnings | grep -E 'backend|Terraform has been' || true

step "terraform apply"
"$TF" "${TFARGS[@]}" apply -auto-approve -input=false -compact-warnings
api() { curl -sS -H "Authorization: Bearer $KEY" "$@"; }
api "$TF_HTTP_ADDRESS/versions" | python3 -c 'import json,sys; v=json.load(sys.stdin)["items"][0]; print("state in the platform: serial %s, %s bytes, stored by %s" % (v["serial"], v["size"], v["actor"]))'

step "terraform plan right after apply (expect: no changes)"
"$TF" "${TFARGS[@]}" plan -detailed-exitcode -input=false -compact-warnings | tail -3 || true

step "novacron-reconcile drift (expect: in sync, exit 0)"
"$BIN/novacron-reconcile" drift --repo "$WORK/repo" --cache-dir "$WORK/cache" --color always && echo "exit 0"

step "out-of-band changes through the API"
VM=$(api "$ENDPOINT/v1/vms?name=web-2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')
NET=$(api "$ENDPOINT/v1/networks?name=core" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')
api -X PATCH "$ENDPOINT/v1/vms/$VM" -d '{"memory_gb": 16}' >/dev/null && echo "web-2: memory_gb 4 -> 16"
api -X PATCH "$ENDPOINT/v1/networks/$NET" -d '{"firewall_rules": [{"direction": "ingress", "ports": "any"}]}' >/dev/null \
    && echo "core: firewall opened to any port"

step "terraform plan (expect: the drift, exit 2)"
set +e
"$TF" "${TFARGS[@]}" plan -detailed-exitcode -input=false -compact-warnings | grep -E '^\s+[~+-] |# |Plan:'
step "novacron-reconcile drift (expect: critical firewall drift, exit 2)"
"$BIN/novacron-reconcile" drift --repo "$WORK/repo" --cache-dir "$WORK/cache" --color always
echo "exit $?"
set -e

step "terraform apply repairs it"
"$TF" "${TFARGS[@]}" apply -auto-approve -input=false -compact-warnings | tail -1 || true
"$BIN/novacron-reconcile" drift --repo "$WORK/repo" --cache-dir "$WORK/cache" --format text >/dev/null && echo "drift: in sync again"

step "terraform destroy"
"$TF" "${TFARGS[@]}" destroy -auto-approve -input=false -compact-warnings | tail -1 || true
