#!/usr/bin/env bash
# The main job on one machine, narrated: what novacron is for, end to end.
#
#   the platform (with its Terraform state backend) -> an engineer applies examples/gitops
#   with Terraform -> novacron-reconcile serve follows the desired-state repository (a local
#   bare remote) -> a commit (a new VM, more memory) and a signed push webhook roll out through
#   Terraform, and the engineer's own plan stays clean -> a low out-of-band change is healed
#   within seconds, naming who made it -> a critical one (a firewall opened) is held until a
#   person approves it with `novacron-reconcile approve` -> the audit chain verifies -> destroy.
#
# Every step checks that things went as narrated and the script exits non-zero when one did
# not, so it doubles as a smoke test. Cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() {
    printf '\033[31mdemo: FAILED: %s\033[0m\n' "$*" >&2
    [ -f "${WORK:-/nonexistent}/serve.log" ] && { echo "--- the last lines serve logged:" >&2; tail -15 "$WORK/serve.log" >&2; }
    exit 1
}
# wait_for SECONDS WHAT COMMAND...: runs COMMAND every 0.2 s until it succeeds.
wait_for() {
    local limit="$1" what="$2" tries
    shift 2
    tries=$((limit * 5))
    until "$@" >/dev/null 2>&1; do
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || fail "$what did not happen within ${limit}s"
        sleep 0.2
    done
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); $1"; }

step "build (release)"
cargo build --release -p novacron-platform -p terraform-provider-novacron -p novacron-reconcile

step "terraform"
bash acceptance/install-terraform.sh >/dev/null
TF="$ROOT/acceptance/.tools/bin/terraform-1.15.5"
TF_CLI_CONFIG_FILE=/dev/null "$TF" version 2>/dev/null | sed -n 1p

WORK=$(mktemp -d -t novacron-demo.XXXXXX)
KEY="demo-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
ONCALL_KEY="oncall-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
HOOK_SECRET="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
cleanup() {
    [ -n "${SERVE_PID:-}" ] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null
    [ -n "${PLATFORM_PID:-}" ] && kill "$PLATFORM_PID" 2>/dev/null && wait "$PLATFORM_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

step "the platform, with its Terraform state backend"
"$BIN/novacron-platform" --listen 127.0.0.1:0 --data "$WORK/platform" --api-key "demo:$KEY" --api-key "oncall:$ONCALL_KEY" \
    --provision-delay-ms 300 >"$WORK/platform.out" 2>"$WORK/platform.log" &
PLATFORM_PID=$!
for _ in $(seq 100); do
    grep -q "listening on" "$WORK/platform.out" 2>/dev/null && break
    sleep 0.05
done
ENDPOINT=$(sed -n 's/^novacron-platform listening on //p' "$WORK/platform.out")
[ -n "$ENDPOINT" ] || { cat "$WORK/platform.log"; fail "the platform did not start"; }
echo "serving on $ENDPOINT (database in $WORK/platform); API keys: demo (engineers and the reconciler), oncall (a person at the console)"
api() { curl -sS -H "Authorization: Bearer $KEY" "$@"; }
oncall() { curl -sS -H "Authorization: Bearer $ONCALL_KEY" "$@"; }

step "the desired-state repository: a bare remote and an engineer's clone"
git init -q --bare -b main "$WORK/remote.git"
git clone -q "$WORK/remote.git" "$WORK/engineer" 2>/dev/null
cp "$ROOT/examples/gitops/main.tf" "$WORK/engineer/main.tf"
gitc() { git -C "$WORK/engineer" -c user.name=engineer -c user.email=engineer@example.invalid "$@"; }
gitc add main.tf
gitc commit -qm "Desired state: a network, a policy, two VMs and a volume"
gitc push -q origin main
gitc log --oneline

# The engineer's Terraform: the provider from a local filesystem mirror (as a registry would
# serve it), the state in the platform through backend "http" (addresses in TF_HTTP_*, the API
# key only in TF_HTTP_PASSWORD).
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)
case "$(uname -m)" in x86_64) ARCH=amd64 ;; aarch64) ARCH=arm64 ;; *) ARCH=$(uname -m) ;; esac
MIRROR="$WORK/mirror/registry.terraform.io/novacron/novacron/$VERSION/linux_$ARCH"
mkdir -p "$MIRROR"
cp "$BIN/terraform-provider-novacron" "$MIRROR/terraform-provider-novacron_v$VERSION"
export NOVACRON_ENDPOINT="$ENDPOINT" NOVACRON_API_KEY="$KEY" TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
export TF_CLI_CONFIG_FILE="$WORK/terraform.rc"
printf 'provider_installation {\n  filesystem_mirror {\n    path    = "%s"\n    include = ["novacron/novacron"]\n  }\n  direct {\n    exclude = ["novacron/novacron"]\n  }\n}\n' "$WORK/mirror" >"$TF_CLI_CONFIG_FILE"
export TF_DATA_DIR="$WORK/tfdata"
export TF_HTTP_ADDRESS="$ENDPOINT/v1/tfstate/gitops-demo"
export TF_HTTP_LOCK_ADDRESS="$TF_HTTP_ADDRESS" TF_HTTP_UNLOCK_ADDRESS="$TF_HTTP_ADDRESS" TF_HTTP_PASSWORD="$KEY"
tf() { "$TF" -chdir="$WORK/engineer" "$@"; }

step "the engineer: terraform init and apply (state: $TF_HTTP_ADDRESS)"
tf init -input=false -no-color >"$WORK/init.log" 2>&1 || { cat "$WORK/init.log"; fail "terraform init"; }
grep -q 'Successfully configured the backend "http"' "$WORK/init.log" || { cat "$WORK/init.log"; fail "the http backend was not configured"; }
echo "backend \"http\" configured; novacron/novacron $(sed -n 's/.*Installed novacron\/novacron v\([^ ]*\).*/\1/p' "$WORK/init.log") installed from the local mirror"
tf apply -auto-approve -input=false -no-color >"$WORK/apply.log" 2>&1 || { cat "$WORK/apply.log"; fail "terraform apply"; }
grep -E '^Apply complete' "$WORK/apply.log"
api "$TF_HTTP_ADDRESS/versions" | json 'v=d["items"][0]; print("state in the platform: serial %s, %s bytes, stored by %s" % (v["serial"], v["size"], v["actor"]))'
tf plan -detailed-exitcode -input=false -no-color >"$WORK/plan.log" 2>&1 || { cat "$WORK/plan.log"; fail "a plan right after apply must show no changes"; }
echo "terraform plan right after apply: no changes"

step "novacron-reconcile serve follows the repository (webhooks, the platform's change feed)"
cat >"$WORK/serve.toml" <<TOML
endpoint  = "$ENDPOINT"
listen    = "127.0.0.1:0"
state     = "$WORK/reconcile.db"
terraform = "$TF"
provider  = "$BIN/terraform-provider-novacron"

[[repo]]
name               = "gitops"
url                = "file://$WORK/remote.git"
ref                = "main"
interval           = "1h"
workspace          = "gitops-demo"
auto_sync_max      = "low"     # drift up to low is healed by itself
auto_apply_max     = "medium"  # rollouts up to medium are applied by themselves
webhook_secret_env = "DEMO_WEBHOOK_SECRET"
TOML
sed -n '/^\[\[repo\]\]/,$p' "$WORK/serve.toml"
DEMO_WEBHOOK_SECRET="$HOOK_SECRET" NOVACRON_LOG=info "$BIN/novacron-reconcile" serve --config "$WORK/serve.toml" 2>"$WORK/serve.log" &
SERVE_PID=$!
wait_for 30 "serve's start" grep -q "addr=" "$WORK/serve.log"
SERVE="http://$(sed -n 's/.* addr=\([^ ]*\).*/\1/p' "$WORK/serve.log" | head -1)"
status() { curl -sS "$SERVE/api/status" | json "r=d['repos'][0]; $1"; }
wait_for 60 "the first reconcile" curl -sSf "$SERVE/readyz"
wait_for 60 "the first reconcile" status 'sys.exit(0 if r["runs"] >= 1 and not r["running"] and r["last_run"] else 1)'
echo "serve listens on $SERVE"
status 's=r["summary"]; print("first reconcile: %s at %s, %d resources in sync, %d drifted" % (r["name"], r["revision"][:12], s["in_sync"], s["drifted"]))'
status 'sys.exit(0 if r["summary"]["drifted"] == 0 and not r["pending_approvals"] else 1)' || fail "the applied state should be in sync"

step "a commit: a third web VM and more memory; git push, then a signed push webhook"
sed -i 's/default = 2/default = 3/; s/memory_gb   = 4/memory_gb   = 8/' "$WORK/engineer/main.tf"
gitc commit -qam "Three web VMs with 8 GB each"
gitc push -q origin main
REV=$(gitc rev-parse HEAD)
gitc log --oneline -1
BODY=$(printf '{"ref":"refs/heads/main","repository":{"clone_url":"file://%s","default_branch":"main"}}' "$WORK/remote.git")
SIG=$(printf '%s' "$BODY" | python3 -c 'import hashlib,hmac,sys; print("sha256=" + hmac.new(sys.argv[1].encode(), sys.stdin.buffer.read(), hashlib.sha256).hexdigest())' "$HOOK_SECRET")
curl -sS -X POST "$SERVE/hooks/github" -H "X-GitHub-Event: push" -H "X-GitHub-Delivery: demo-push-1" \
    -H "X-Hub-Signature-256: $SIG" -H "Content-Type: application/json" -d "$BODY"
echo
wait_for 120 "the rollout of $REV" status "sys.exit(0 if r['revision'] == '$REV' and not r['running'] and r['summary']['drifted'] == 0 else 1)"
"$BIN/novacron-reconcile" audit list --format json --state "$WORK/reconcile.db" | json '
a=[e for e in d if e["action"] == "apply" and e["detail"].get("phase") == "done"][-1]["detail"]
print("rolled out through Terraform: %s (%s, %s)" % (a["summary"], a["plan_id"], a["severity"]))'
api "$ENDPOINT/v1/vms?name=web-3" | json 'v=d["items"][0]; print("web-3: %s, %d GB, %s" % (v["id"], v["memory_gb"], v["status"]))' || fail "web-3 was not created"
api "$ENDPOINT/v1/vms?name=web-1" | json 'sys.exit(0 if d["items"][0]["memory_gb"] == 8 else 1)' || fail "web-1 did not get 8 GB"
tf plan -detailed-exitcode -input=false -no-color >"$WORK/plan.log" 2>&1 || { cat "$WORK/plan.log"; fail "the engineer's plan after the rollout must show no changes"; }
echo "the engineer's terraform plan: no changes (the reconciler applied through the same state)"

step "out of band, low: oncall relabels web-1 at the console"
WEB1=$(api "$ENDPOINT/v1/vms?name=web-1" | json 'print(d["items"][0]["id"])')
START=$(date +%s%N)
oncall -X PATCH "$ENDPOINT/v1/vms/$WEB1" -d '{"metadata": {"team": "hotfix"}}' >/dev/null
echo "web-1 metadata.team: web -> hotfix (by oncall)"
wait_for 30 "the heal of web-1's metadata" sh -c "curl -sS -H 'Authorization: Bearer $KEY' '$ENDPOINT/v1/vms/$WEB1' | grep -q '\"team\":\"web\"'"
echo "healed in $(( ($(date +%s%N) - START) / 1000000 )) ms: metadata.team is \"web\" again"
"$BIN/novacron-reconcile" audit list --format json --state "$WORK/reconcile.db" | json '
e=[e for e in d if e["action"] == "detect" and e["subject"] == "novacron_vm.web[0]"][-1]["detail"]
c=e.get("changed_by") or {}
print("the audit log names who changed it: %s (%s at %s), drift %s, %s" % (c.get("actor"), c.get("action"), c.get("time"), e["drift_id"], e["severity"]))
sys.exit(0 if c.get("actor") == "oncall" else 1)' || fail "the drift does not name oncall"

step "out of band, critical: oncall opens the firewall to every port"
NET=$(api "$ENDPOINT/v1/networks?name=core" | json 'print(d["items"][0]["id"])')
oncall -X PATCH "$ENDPOINT/v1/networks/$NET" -d '{"firewall_rules": [{"direction": "ingress", "ports": "any"}]}' >/dev/null
echo "core firewall: 22 from 10.0.0.0/8, 80,443 -> any port from anywhere (by oncall)"
wait_for 30 "the critical drift awaiting approval" status 'sys.exit(0 if any(p["severity"] == "critical" for p in r["pending_approvals"]) else 1)'
DRIFT=$(status 'print([p for p in r["pending_approvals"] if p["severity"] == "critical"][0]["id"])')
status 'p=[p for p in r["pending_approvals"] if p["severity"] == "critical"][0]; print("held, not reverted: %s %s [%s], drift %s" % (p["address"], p["object_id"], p["severity"], p["id"]))'
api "$ENDPOINT/v1/networks/$NET" | json 'sys.exit(0 if d["firewall_rules"][0]["ports"] == "any" else 1)' || fail "a critical drift must not be reverted without approval"
set +e
"$BIN/novacron-reconcile" drift --repo "file://$WORK/remote.git" --workspace gitops-demo --cache-dir "$WORK/cache" --color always
code=$?
set -e
[ "$code" -eq 2 ] || fail "drift should exit 2 while the firewall drift is held (got $code)"

step "a person approves it: novacron-reconcile approve $DRIFT"
"$BIN/novacron-reconcile" approve "$DRIFT" --actor alice --state "$WORK/reconcile.db"
wait_for 30 "the approved revert" sh -c "curl -sS -H 'Authorization: Bearer $KEY' '$ENDPOINT/v1/networks/$NET' | grep -q '\"ports\":\"22\"'"
api "$ENDPOINT/v1/networks/$NET" | json 'print("reverted: core firewall is %s again" % ", ".join("%s from %s" % (r["ports"], r.get("cidr", "anywhere")) for r in d["firewall_rules"]))'
wait_for 30 "the repository back in sync" status 'sys.exit(0 if r["summary"]["drifted"] == 0 and not r["pending_approvals"] else 1)'

step "the audit log verifies"
"$BIN/novacron-reconcile" audit verify --state "$WORK/reconcile.db" || fail "audit verify"

step "stop serve, destroy, clean up"
kill -TERM "$SERVE_PID"
wait "$SERVE_PID" || fail "serve did not stop cleanly"
SERVE_PID=""
echo "serve stopped"
tf destroy -auto-approve -input=false -no-color >"$WORK/destroy.log" 2>&1 || { cat "$WORK/destroy.log"; fail "terraform destroy"; }
grep -E '^Destroy complete' "$WORK/destroy.log"
api "$ENDPOINT/v1/vms" | json 'sys.exit(0 if not d["items"] else 1)' || fail "VMs left after destroy"
echo
echo "demo: every step behaved as narrated"
