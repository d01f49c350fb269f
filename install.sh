#!/usr/bin/env bash
# EarSight installer. Idempotent: run it again at any time.
#   ./install.sh            everything: Debian packages, .venv, the app and the trainer (CPU torch
#                           or the platform's): train, export, teach, live, describe
#   ./install.sh --runtime  the runtime only, no torch (a wearable): live, describe, doctor,
#                           bench and storing taught words; learning them needs the trainer
#   ./install.sh --dev      also test tools (pytest, ruff) and Xvfb/xdotool for the hotkey tests
#   ./install.sh --service  also the systemd unit (headless wearable): user "earsight", code
#                           copied to root-owned $EARSIGHT_PREFIX (default /opt/earsight)
set -euo pipefail
cd "$(dirname "$0")"

DEV=0; SERVICE=0; RUNTIME=0
for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1 ;;
    --service) SERVICE=1 ;;
    --runtime) RUNTIME=1 ;;
    -h|--help) sed -n 2,9p "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown option '$arg' (use --runtime, --dev, --service or --help)" >&2; exit 2 ;;
  esac
done
if [ "$RUNTIME" = 1 ] && [ "$DEV" = 1 ]; then
  echo "install.sh: --dev runs the trainer's tests: it cannot go with --runtime" >&2; exit 2
fi

TORCH_CPU_VERSION="2.13.0"   # the CPU wheel this project is tested with
PY="${PYTHON:-python3}"
say() { echo "install.sh: $*"; }

# The service's copy of the code in $1 (run in the checkout, with $SUDO): the tracked files only
# (never a user's wavs/, build/ or notes), replacing the code before it whole, so that a module
# deleted upstream is not left importable; $1/.venv stays. safe.directory: as root (su, no sudo)
# git refuses a checkout that another user owns, and the copy took every file of the tree.
install_code() {
  local dest="$1" stage entry
  stage="$($SUDO mktemp -d "$dest/.code.XXXXXX")"
  if git -c safe.directory="$PWD" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -c safe.directory="$PWD" ls-files -z | tar --null -T - -cf - | $SUDO tar -xf - -C "$stage"
  else  # an unpacked sdist: what the package and the service are made of
    tar --exclude=__pycache__ -cf - earsight app engine trainer assets pyproject.toml README.md \
      LICENSE | $SUDO tar -xf - -C "$stage"
  fi
  for entry in "$dest"/* "$dest"/.[!.]*; do
    [ -e "$entry" ] || continue
    case "$entry" in "$dest/.venv" | "$stage") continue ;; esac
    $SUDO rm -rf "$entry"
  done
  $SUDO find "$stage" -mindepth 1 -maxdepth 1 -exec mv -t "$dest" {} +
  $SUDO rmdir "$stage"
}

# --- Debian packages -------------------------------------------------------------------------
APT_PKGS=(espeak-ng libespeak-ng1 libportaudio2 sox alsa-utils)
# evdev (keys on a headless wearable) ships as source only: pip compiles it against the kernel's
# input headers and Python's own
APT_PKGS+=(gcc linux-libc-dev)
"$PY" -c "import os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h'))" \
  >/dev/null 2>&1 || APT_PKGS+=(python3-dev)
[ "$DEV" = 1 ] && APT_PKGS+=(xvfb xdotool strace)
missing=()
for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  say "installing Debian packages: ${missing[*]}"
  # wait (up to 5 min) for another apt or an unattended upgrade instead of failing at once
  LOCK_WAIT=(-o DPkg::Lock::Timeout=300)
  $SUDO apt-get "${LOCK_WAIT[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${LOCK_WAIT[@]}" install -y -qq "${missing[@]}" >/dev/null
fi

# --- platform: Jetson / CUDA desktop / CPU -----------------------------------------------------
VENV_ARGS=()
if [ -f /etc/nv_tegra_release ]; then
  # JetPack ships torch and TensorRT as system packages built for the Tegra GPU: reuse them.
  say "Jetson detected: using the system torch and TensorRT (system site packages)"
  VENV_ARGS+=(--system-site-packages)
  TORCH_SPEC=""
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  # the TensorRT backend keeps its CUDA buffers in torch: a --runtime install gets it too
  say "NVIDIA GPU detected: installing CUDA torch and the TensorRT extra"
  TORCH_SPEC="torch"
  EXTRAS="tensorrt"
elif [ "$RUNTIME" = 1 ]; then
  if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    say "no NVIDIA GPU; the runtime only: the torch of an earlier full install stays in .venv (remove .venv first for a runtime-only one)"
  else
    say "no NVIDIA GPU; the runtime only: no torch"
  fi
  TORCH_SPEC=""
else
  say "no NVIDIA GPU: CPU torch $TORCH_CPU_VERSION (installed unless already there)"
  TORCH_SPEC="torch==$TORCH_CPU_VERSION"
fi

# --- virtual environment ---------------------------------------------------------------------
# The runtime (no extra) runs exported ONNX models; the train extra adds torch and the rest of the
# trainer. torch goes in first, pinned: a bare "torch" requirement would pull a CUDA build here.
[ "$RUNTIME" = 1 ] && [ "${EXTRAS:-}" != tensorrt ] && TORCH_SPEC=""
EXTRA_LIST=""
[ "$RUNTIME" = 0 ] && EXTRA_LIST="train"
[ -n "${EXTRAS:-}" ] && EXTRA_LIST="${EXTRA_LIST:+$EXTRA_LIST,}$EXTRAS"
[ "$DEV" = 1 ] && EXTRA_LIST="$EXTRA_LIST,dev"
if [ "$SERVICE" = 1 ]; then
  # run with sudo: a root-owned .venv in the user's checkout would make their next
  # ./install.sh fail on permissions; the service runs its own copy ($EARSIGHT_PREFIX/.venv)
  say "--service: the checkout's .venv is left alone (the service gets its own, below)"
else
  if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    "$PY" -m venv "${VENV_ARGS[@]}" .venv
  fi
  PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
  if [ -n "$TORCH_SPEC" ] && ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    say "installing $TORCH_SPEC"
    "${PIP[@]}" "$TORCH_SPEC"
  fi
  SPEC="."; [ -n "$EXTRA_LIST" ] && SPEC=".[$EXTRA_LIST]"
  say "installing earsight${EXTRA_LIST:+[$EXTRA_LIST]} (editable)"
  "${PIP[@]}" -e "$SPEC"
fi

if [ "$SERVICE" = 1 ]; then
  # Headless wearable: the code goes to a root-owned prefix (the service cannot change what it
  # runs) and runs as the unprivileged system user "earsight" in the audio/video/input groups.
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  PREFIX="${EARSIGHT_PREFIX:-/opt/earsight}"
  SERVICE_USER=earsight
  for group in audio video input; do
    getent group "$group" >/dev/null || $SUDO groupadd --system "$group"
  done
  if ! id "$SERVICE_USER" >/dev/null 2>&1; then
    say "creating the system user $SERVICE_USER (no login, no home of its own)"
    $SUDO useradd --system --user-group --home-dir /var/lib/earsight --no-create-home \
      --shell /usr/sbin/nologin "$SERVICE_USER"
  fi
  $SUDO usermod -a -G audio,video,input "$SERVICE_USER"
  say "installing the code to $PREFIX (owned by root, read-only for $SERVICE_USER)"
  $SUDO mkdir -p "$PREFIX"
  install_code "$PREFIX"
  if [ ! -x "$PREFIX/.venv/bin/python" ]; then
    $SUDO "$PY" -m venv "${VENV_ARGS[@]}" "$PREFIX/.venv"
  fi
  SPIP=($SUDO "$PREFIX/.venv/bin/python" -m pip install -q --disable-pip-version-check)
  if [ -n "$TORCH_SPEC" ] && ! "$PREFIX/.venv/bin/python" -c "import torch" >/dev/null 2>&1; then
    "${SPIP[@]}" "$TORCH_SPEC"
  fi
  SERVICE_SPEC="$PREFIX"; [ -n "$EXTRA_LIST" ] && SERVICE_SPEC="$PREFIX[${EXTRA_LIST/,dev/}]"
  "${SPIP[@]}" -e "$SERVICE_SPEC"
  $SUDO "$PREFIX/.venv/bin/python" -m compileall -q "$PREFIX/earsight" "$PREFIX/app" "$PREFIX/engine" "$PREFIX/trainer" >/dev/null
  $SUDO chown -R root:root "$PREFIX"
  $SUDO chmod -R go-w "$PREFIX"
  # The venv's python is a link to the interpreter it was made with: one under /root (pyenv)
  # or a home folder cannot be run by the service user, and the service would fail with
  # "Permission denied" while this script said all was well.
  if ! (cd / && $SUDO setpriv --reuid="$SERVICE_USER" --regid="$SERVICE_USER" --init-groups \
      env HOME=/var/lib/earsight "$PREFIX/.venv/bin/python" -c "import earsight.app.cli") >/dev/null 2>&1; then
    echo "install.sh: the user $SERVICE_USER cannot run $PREFIX/.venv/bin/python" \
      "(it is $(readlink -f "$PREFIX/.venv/bin/python"): a Python under /root or a home folder?)" \
      "— remove $PREFIX/.venv and run again with PYTHON=/usr/bin/python3" >&2
    exit 1
  fi
  $SUDO mkdir -p /etc/earsight
  if [ ! -f /etc/earsight/config.toml ]; then
    printf '%s\n' "# earsight live options for the service (see \`earsight live --help\`), e.g." \
      '# evdev_device = "/dev/input/by-id/usb-...-event-kbd"' \
      '# source = "/dev/v4l/by-id/usb-...-video-index0"' | $SUDO tee /etc/earsight/config.toml >/dev/null
  fi
  sed "s#@EARSIGHT_HOME@#$PREFIX#g" assets/earsight.service \
    | $SUDO tee /etc/systemd/system/earsight.service >/dev/null
  $SUDO systemctl daemon-reload && $SUDO systemctl enable --now earsight.service
  sleep 5  # a start-up fault (a bad config, a model it cannot read) ends it within seconds
  if ! $SUDO systemctl is-active --quiet earsight.service; then
    echo "install.sh: earsight.service is installed and enabled but did not stay up:" \
      "journalctl -u earsight -n 20 says why; fix it, then: sudo systemctl restart earsight" >&2
    exit 1
  fi
  say "systemd unit installed, enabled and running: earsight.service (user $SERVICE_USER, code in $PREFIX)"
  say "its lines: journalctl -u earsight -f; after editing its options: sudo systemctl restart earsight"
  say "options for it: /etc/earsight/config.toml; check it: systemd-analyze security earsight"
fi
if [ "$SERVICE" = 1 ]; then
  # the service's own view: its user, its config file, its keys (not root's, not a terminal)
  say "done. Check it as the service sees it: sudo systemctl stop earsight; sudo -u $SERVICE_USER env" \
    "HOME=/var/lib/earsight EARSIGHT_CONFIG=/etc/earsight/config.toml ${PREFIX}/.venv/bin/earsight" \
    "doctor --keys evdev; sudo systemctl start earsight"
else
  say "done. Try: .venv/bin/earsight --help"
fi
