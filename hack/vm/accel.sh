#!/usr/bin/env bash
# hack/vm/accel.sh: choose qemu's accelerator by what works, not by what opens.
#
# On some machines /dev/kvm opens but a guest under KVM never runs (qemu spins in the host kernel and
# the guest prints nothing). So KVM is used only after a probe boot under it reached the guest
# kernel's first console line within VM_KVM_PROBE_SECONDS; otherwise TCG (software emulation). The
# verdict is cached per machine boot in $VM_CACHE/accel (the probe costs a few seconds once).
#
# Sourced by run.sh; `hack/vm/accel.sh KERNEL` prints the choice (kvm or tcg).
#
# Environment: VM_ACCEL=kvm|tcg forces one (no probe); VM_KVM_DEV (default /dev/kvm),
# VM_KVM_PROBE_SECONDS (default 15), VM_QEMU (default qemu-system-x86_64), VM_CACHE.

# accel_cache_key names this machine boot: a verdict from another boot (or machine) is not trusted.
accel_cache_key() {
  local boot
  boot=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown)
  echo "$(uname -r) $boot"
}

# kvm_probe KERNEL boots KERNEL under KVM without an initramfs and succeeds when the guest prints
# "Linux version" on its serial console within VM_KVM_PROBE_SECONDS. The guest then panics for want
# of a root file system; -no-reboot makes qemu exit.
kvm_probe() {
  local kernel=$1 secs=${VM_KVM_PROBE_SECONDS:-15}
  timeout -k 2 "$secs" "${VM_QEMU:-qemu-system-x86_64}" -accel kvm -cpu host -machine pc -m 256M \
    -nodefaults -no-user-config -display none -no-reboot -nic none -serial stdio \
    -kernel "$kernel" -append "console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1 loglevel=8" \
    </dev/null 2>/dev/null | grep -a -q -m1 'Linux version'
}

# choose_accel KERNEL prints kvm or tcg (see the file comment); a bad VM_ACCEL is an error.
choose_accel() {
  local kernel=$1 dev=${VM_KVM_DEV:-/dev/kvm} cache=${VM_CACHE:-${HOME:-/root}/.cache/kubelvs/vm}/accel
  local key verdict
  case ${VM_ACCEL:-} in
    kvm | tcg) echo "$VM_ACCEL"; return 0 ;;
    "") ;;
    *) echo "vm: VM_ACCEL must be kvm or tcg, got '$VM_ACCEL'" >&2; return 1 ;;
  esac
  if ! [ -c "$dev" ] || ! (exec 3<>"$dev") 2>/dev/null; then
    echo tcg
    return 0
  fi
  key=$(accel_cache_key)
  if [ -r "$cache" ] && [ "$(sed -n 1p "$cache")" = "$key" ]; then
    verdict=$(sed -n 2p "$cache")
    case $verdict in kvm | tcg) echo "$verdict"; return 0 ;; esac
  fi
  if kvm_probe "$kernel"; then
    verdict=kvm
  else
    verdict=tcg
    echo "vm: $dev opens but a guest under KVM printed nothing within ${VM_KVM_PROBE_SECONDS:-15}s: using TCG (software emulation; cached in $cache)" >&2
  fi
  mkdir -p "$(dirname "$cache")"
  printf '%s\n%s\n' "$key" "$verdict" >"$cache.tmp" && mv "$cache.tmp" "$cache"
  echo "$verdict"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  [ $# -eq 1 ] || { echo "usage: $0 KERNEL" >&2; exit 2; }
  choose_accel "$1"
fi
