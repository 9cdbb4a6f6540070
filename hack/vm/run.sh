#!/usr/bin/env bash
# hack/vm/run.sh: run one command inside a real Linux kernel that has IPVS, and return its exit status.
#
# The host kernel of our CI machines has no IPVS. This script boots Debian's own kernel (the package that
# linux-image-amd64 depends on, fetched with `apt-get download` and cached under $VM_CACHE) in
# qemu-system-x86_64 with a busybox initramfs holding the IPVS modules (resolved from modules.dep),
# ipvsadm and the files you pass with -f, runs COMMAND as root in /vm, streams everything it prints on
# the serial console to stdout, and exits with COMMAND's exit status.
#
# Usage: hack/vm/run.sh [-f SRC[:DEST]]... [-t SECONDS] [-m MEM] [--] COMMAND [ARG...]
#   -f SRC[:DEST]  copy host file or directory SRC into the guest at DEST (default /vm/$(basename SRC));
#                  dynamically linked ELF files get their shared libraries too (ldd)
#   -t SECONDS     hard timeout for the whole VM, boot included (default $VM_TIMEOUT or 900)
#   -m MEM         guest memory, qemu syntax (default $VM_MEM or 3G: enough for 110,000 IPVS dests)
#
# Inside the guest: KUBELVS_VM=1, PATH with busybox applets and /vm, HOME=/root, TMPDIR=/tmp, cwd /vm,
# ip_vs loaded, /sbin/modprobe (busybox) so the kernel autoloads schedulers, veth/dummy/bridge/ipip available,
# ipvsadm, iproute2's ip and nftables' nft (nf_tables, nft_ct, nft_nat, nft_masq, nft_chain_nat loaded), every busybox applet (nc, wget, httpd, unshare, nsenter, ...).
#
# Benchmarks on a shared host: a console line `@@vmcpu LABEL` comes out as `@@vmcpu SECONDS LABEL`, with
# the CPU time qemu has used so far (measured on the host), which host load does not inflate as it does
# the guest's clock.
#
# Exit status: COMMAND's; 124 on timeout; 125 when the guest ended without reporting one (kernel panic,
# init died); 126 when the VM could not be prepared.
#
# Environment: VM_CACHE (default ~/.cache/kubelvs/vm), VM_TIMEOUT, VM_MEM, VM_CPUS (default 1),
# VM_KERNEL_PKG (default: what linux-image-amd64 depends on), VM_EXTRA_MODULES (more module names),
# VM_KERNEL_LOG=1 (kernel messages on the console), VM_KEEP=1 (keep the temp dir, for debugging),
# VM_ACCEL=kvm|tcg (default: KVM only where a probe boot shows it runs guests, see accel.sh),
# VM_NET=user (a virtio NIC on qemu's user-mode network: the guest's eth0 is 10.0.2.15/24 and
# 10.0.2.2 is the host's loopback; no default route, so the guest reaches nothing else).
set -euo pipefail
# The braces make bash parse the whole script before running it: editing it mid-run is then harmless.
{

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VM_CACHE=${VM_CACHE:-${HOME:-/root}/.cache/kubelvs/vm}
VM_TIMEOUT=${VM_TIMEOUT:-900}
VM_MEM=${VM_MEM:-3G}
VM_CPUS=${VM_CPUS:-1}

log() { echo "vm: $*" >&2; }
die() { log "$*"; exit 126; }

files=()
while getopts "f:t:m:h" opt; do
  case $opt in
    f) files+=("$OPTARG") ;;
    t) VM_TIMEOUT=$OPTARG ;;
    m) VM_MEM=$OPTARG ;;
    h) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) exit 126 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || die "no command given (see $0 -h)"
[[ $VM_TIMEOUT =~ ^[0-9]+$ ]] || die "timeout must be whole seconds, got '$VM_TIMEOUT'"

# ---------------------------------------------------------------- host packages
"$HERE/../ensure-packages.sh" qemu-system-x86_64:qemu-system-x86 cpio:cpio depmod:kmod ipvsadm:ipvsadm ip:iproute2 nft:nftables >&2 ||
  die "cannot install host packages"
# busybox-static (not the dynamic busybox package): its binary runs in the guest without libraries.
if ! dpkg-query -W -f '${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
  "$HERE/../ensure-packages.sh" /nonexistent/busybox-static:busybox-static >&2 || die "cannot install busybox-static"
fi
BUSYBOX=/bin/busybox
ldd "$BUSYBOX" >/dev/null 2>&1 && die "$BUSYBOX is dynamically linked; install busybox-static"

# ---------------------------------------------------------------- kernel (cached)
# resolve_kernel_pkg prints the versioned kernel package linux-image-amd64 depends on.
resolve_kernel_pkg() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1
}

# fetch_kernel KVER PKG fills $VM_CACHE/KVER with boot/vmlinuz and lib/modules/KVER (depmod'ed).
fetch_kernel() {
  local kver=$1 pkg=$2 dest=$VM_CACHE/$1 work
  work=$(mktemp -d "$VM_CACHE/.fetch.XXXXXX")
  log "fetching $pkg with apt-get download into $dest"
  if ! (cd "$work" && apt-get download "$pkg" >/dev/null 2>&1); then
    log "apt-get download failed; running apt-get update and retrying"
    apt-get update -qq >&2
    (cd "$work" && apt-get download "$pkg" >&2) || { rm -rf "$work"; die "cannot download $pkg"; }
  fi
  dpkg-deb -x "$work"/*.deb "$work/x"
  mkdir -p "$work/k/boot" "$work/k/lib/modules"
  mv "$work/x/boot/vmlinuz-$kver" "$work/k/boot/vmlinuz"
  mv "$work/x/boot/config-$kver" "$work/k/boot/config" 2>/dev/null || true
  mv "$work/x/boot/System.map-$kver" "$work/k/boot/System.map" 2>/dev/null || true
  mv "$work/x/lib/modules/$kver" "$work/k/lib/modules/$kver"
  # The package ships no modules.dep (its postinst runs depmod): generate it.
  depmod -b "$work/k" "$kver" || { rm -rf "$work"; die "depmod failed for $kver"; }
  rm -rf "$dest"
  mv "$work/k" "$dest"
  touch "$dest/.complete"
  rm -rf "$work"
}

mkdir -p "$VM_CACHE"
exec 9>"$VM_CACHE/.lock"
flock 9
rm -rf "$VM_CACHE"/.fetch.* # left by an interrupted fetch (we hold the lock)
pkg=${VM_KERNEL_PKG:-$(resolve_kernel_pkg)}
if [ -z "$pkg" ]; then
  log "apt-cache knows no linux-image-amd64 yet: running apt-get update"
  apt-get update -qq >&2 || true
  pkg=$(resolve_kernel_pkg)
fi
if [ -z "$pkg" ]; then
  # Offline with a stale apt list: use the newest kernel already cached, if any.
  kver=$(find "$VM_CACHE" -mindepth 2 -maxdepth 2 -name .complete -printf '%h\n' 2>/dev/null | xargs -r -n1 basename | sort -V | tail -n1)
  [ -n "$kver" ] || die "cannot resolve the kernel package linux-image-amd64 depends on"
else
  kver=${pkg#linux-image-}
  [ -e "$VM_CACHE/$kver/.complete" ] || fetch_kernel "$kver" "$pkg"
fi
flock -u 9
KDIR=$VM_CACHE/$kver
MODDIR=$KDIR/lib/modules/$kver

# ---------------------------------------------------------------- initramfs
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kubelvs-vm.XXXXXX")
cleanup() {
  if [ "${VM_KEEP:-0}" = 1 ]; then log "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
root=$tmp/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,root,vm,lib/modules/"$kver"}

# busybox; init links its applets (busybox --install, in-process: no process per applet).
cp "$BUSYBOX" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"

# copy_with_libs SRC DEST copies a file to DEST in the guest and, for a dynamic ELF, its libraries.
copy_with_libs() {
  local src=$1 dst=$2 lib
  mkdir -p "$root$(dirname "$dst")"
  cp -L "$src" "$root$dst"
  [ -f "$src" ] && [ -x "$src" ] || return 0
  # ldd prints "name => /path (addr)" and "/lib64/ld-linux... (addr)"; nothing useful for static files.
  while read -r lib; do
    [ -e "$root$lib" ] && continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done < <(ldd "$src" 2>/dev/null | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (.*/\1/p')
}
copy_with_libs "$(command -v ipvsadm)" /sbin/ipvsadm
# iproute2's ip (busybox's cannot move links between namespaces or run `ip netns`).
copy_with_libs "$(command -v ip)" /sbin/ip
# nftables' nft, for tests that look at the agent's table (the agent itself never runs it).
copy_with_libs "$(command -v nft)" /sbin/nft
# Enough of /etc for libc and Go's resolver (numeric lookups, /etc/services, user root).
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
printf '127.0.0.1 localhost kubelvs-vm\n::1 localhost ip6-localhost\n' >"$root/etc/hosts"
printf 'hosts: files\nservices: files\npasswd: files\ngroup: files\n' >"$root/etc/nsswitch.conf"
[ -r /etc/services ] && cp /etc/services "$root/etc/services"

for spec in "${files[@]+"${files[@]}"}"; do
  src=${spec%%:*} dst=/vm/$(basename "${spec%%:*}")
  [[ $spec == *:* ]] && dst=${spec#*:}
  [ -e "$src" ] || die "no such file: $src"
  if [ -d "$src" ]; then
    mkdir -p "$root$dst" && cp -a "$src/." "$root$dst/"
  else
    copy_with_libs "$src" "$dst"
  fi
done

# Kernel modules: every IPVS module (schedulers, ftp, pe_sip) plus veth/dummy/bridge and ipip (a
# tunnel real server's tunl0), each with everything it
# needs according to the kernel's depmod data: kmod's `modprobe --show-depends` follows modules.dep,
# modules.alias and softdeps (libcrc32c needs a crc32c implementation through the crypto API).
# Compressed modules are stored decompressed so busybox modprobe loads them; the guest's modules.dep is
# regenerated for the subset.
# nftables with the expressions the agent's table uses (conntrack, NAT chains, masquerade).
NFT_MODULES="nf_tables nft_ct nft_nat nft_masq nft_chain_nat"
modules_wanted() {
  sed -n 's#^kernel/net/netfilter/ipvs/\([^:/]*\)\.ko[^:]*:.*#\1#p' "$MODDIR/modules.dep"
  echo veth dummy bridge ipip $NFT_MODULES ${VM_EXTRA_MODULES:-}
  [ "${VM_NET:-}" != user ] || echo virtio_pci virtio_net
}
show_depends() {
  modprobe -d "$KDIR" -S "$kver" --show-depends "$1" 2>/dev/null | sed -n 's#^insmod \([^ ]*\).*#\1#p'
}
declare -A need=()
for name in $(modules_wanted); do
  deps=$(show_depends "$name")
  [ -n "$deps" ] || { log "warning: module $name not found in $kver"; continue; }
  for d in $deps; do need[${d#"$MODDIR/"}]=1; done
done
[ ${#need[@]} -gt 0 ] || die "no IPVS modules in $MODDIR"
plain=() packed=()
for m in "${!need[@]}"; do
  case $m in *.ko) plain+=("$m") ;; *) packed+=("$m") ;; esac
done
[ ${#plain[@]} -eq 0 ] || (cd "$MODDIR" && printf '%s\n' "${plain[@]}" | cpio -pdm --quiet "$root/lib/modules/$kver")
for m in "${packed[@]+"${packed[@]}"}"; do
  out=$root/lib/modules/$kver/$m
  mkdir -p "$(dirname "$out")"
  case $m in
    *.ko.xz) xz -dc "$MODDIR/$m" >"${out%.xz}" ;;
    *.ko.zst) zstd -qdc "$MODDIR/$m" >"${out%.zst}" ;;
    *.ko.gz) gzip -dc "$MODDIR/$m" >"${out%.gz}" ;;
    *) die "unknown module format: $m" ;;
  esac
done
cp "$MODDIR"/modules.builtin* "$MODDIR/modules.order" "$root/lib/modules/$kver/" 2>/dev/null || true
depmod -b "$root" "$kver" || die "depmod failed on the initramfs module tree"
# ip_vs and what it needs, in load order (busybox modprobe ignores softdeps, so init loads them first).
show_depends ip_vs | xargs -rn1 basename | sed 's/\.ko.*//' >"$root/etc/preload-modules"
# nftables' expression modules are loaded up front too (busybox modprobe may not resolve the
# kernel's nft-expr-* aliases).
for m in $NFT_MODULES dummy bridge ipip; do show_depends $m | xargs -rn1 basename | sed 's/\.ko.*//'; done >>"$root/etc/preload-modules"
if [ "${VM_NET:-}" = user ]; then
  for m in virtio_pci virtio_net; do show_depends $m | xargs -rn1 basename | sed 's/\.ko.*//'; done >>"$root/etc/preload-modules"
fi

# The command, as a script with every argument single-quoted for the guest's ash.
nonce=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
marker="KUBELVS_VM_EXIT_$nonce="
{
  printf '#!/bin/sh\nexec'
  for a in "$@"; do printf " '%s'" "${a//\'/\'\\\'\'}"; done
  printf '\n'
} >"$root/vm/.cmd"
cat >"$root/init" <<EOF
#!/bin/busybox sh
# Generated by hack/vm/run.sh: mount the basics, load ip_vs, run the command, report its exit status.
export PATH=/vm:/sbin:/usr/sbin:/bin:/usr/bin HOME=/root TMPDIR=/tmp KUBELVS_VM=1
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o size=75% tmpfs /tmp
mkdir -p /var/run /run/netns
echo /sbin/modprobe > /proc/sys/kernel/modprobe
hostname kubelvs-vm
ip link set lo up
# Some preloads are alternatives (crc32c-intel needs SSE4.2): failures are fine as long as ip_vs loads.
while read -r m; do modprobe "\$m" 2>/dev/null; done </etc/preload-modules
grep -q '^ip_vs ' /proc/modules || { echo "vm: cannot load ip_vs" >&2; modprobe ip_vs; }
if [ "${VM_NET:-}" = user ]; then
  ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 || echo "vm: cannot configure eth0" >&2
fi
cd /vm
/bin/sh /vm/.cmd </dev/null
rc=\$?
echo
echo "${marker}\$rc"
sync
poweroff -f
EOF
chmod +x "$root/init" "$root/vm/.cmd"
(cd "$root" && find . | cpio -o -H newc --quiet) >"$tmp/initrd.cpio"

# ---------------------------------------------------------------- boot
# shellcheck source=accel.sh
. "$HERE/accel.sh"
accel_name=$(choose_accel "$KDIR/boot/vmlinuz") || die "cannot choose an accelerator"
accel=(-accel "$accel_name" -cpu max)
nic=(-nic none)
case ${VM_NET:-} in
  "") ;;
  user) nic=(-nic user,model=virtio-net-pci) ;;
  *) die "VM_NET must be empty or user, got '$VM_NET'" ;;
esac
loglevel="quiet loglevel=1"
[ "${VM_KERNEL_LOG:-0}" = 1 ] && loglevel="loglevel=6"
log "booting $kver ($(du -m "$tmp/initrd.cpio" | cut -f1) MiB initramfs, $VM_MEM, $VM_CPUS vCPU, $accel_name, timeout ${VM_TIMEOUT}s)"
# mawk (Debian's default awk) reads a pipe in blocks unless told otherwise: the console would not stream.
awk_unbuffered=()
awk -W version 2>&1 | grep -q mawk && awk_unbuffered=(-W interactive)
start=$(date +%s)
set +e
# --foreground: timeout otherwise puts qemu in a process group of its own, which a terminal's
# Ctrl-C never reaches (the VM went on running, and whatever waited for it).
timeout --foreground -k 10 "$VM_TIMEOUT" qemu-system-x86_64 "${accel[@]}" -machine pc -m "$VM_MEM" -smp "$VM_CPUS" \
  -nodefaults -no-user-config -display none -no-reboot "${nic[@]}" \
  -chardev stdio,id=con,signal=off -serial chardev:con -pidfile "$tmp/qemu.pid" \
  -kernel "$KDIR/boot/vmlinuz" -initrd "$tmp/initrd.cpio" \
  -append "console=ttyS0 panic=-1 oops=panic $loglevel rdinit=/init random.trust_cpu=on" \
  </dev/null 2>"$tmp/qemu.err" |
  awk "${awk_unbuffered[@]}" -v marker="$marker" -v rcfile="$tmp/rc" -v pidfile="$tmp/qemu.pid" -v hz="$(getconf CLK_TCK)" '
    { sub(/\r$/, "") }
    /^@@vmcpu / {
      # CPU seconds qemu has used so far (all threads: utime + stime, fields 14 and 15 of /proc/PID/stat).
      if (pid == "") { getline pid < pidfile; close(pidfile) }
      f = "/proc/" pid "/stat"; st = ""
      if (pid == "" || (getline st < f) <= 0) { pid = ""; st = "" }
      close(f)
      if (st == "") { print "@@vmcpu unknown " substr($0, 9); print "vm: cannot read qemu CPU time (pid \"" pid "\" from " pidfile ")" > "/dev/stderr"; fflush(); next }
      sub(/^.*\) /, "", st); split(st, a, " ")
      printf "@@vmcpu %.2f %s\n", (a[12] + a[13]) / hz, substr($0, 9); fflush(); next
    }
    index($0, marker) {
      pre = substr($0, 1, index($0, marker) - 1)
      if (pre != "") print pre
      print substr($0, index($0, marker) + length(marker)) > rcfile
      close(rcfile); fflush(); done = 1; next
    }
    !done { print; fflush() }'
qrc=${PIPESTATUS[0]}
set -e
elapsed=$(($(date +%s) - start))
if [ -s "$tmp/rc" ]; then
  rc=$(tr -dc '0-9' <"$tmp/rc")
  log "guest command exited $rc after ${elapsed}s"
  exit "${rc:-125}"
fi
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
  log "timed out after ${VM_TIMEOUT}s"
  exit 124
fi
[ -s "$tmp/qemu.err" ] && sed 's/^/vm: qemu: /' "$tmp/qemu.err" >&2
log "guest ended after ${elapsed}s without reporting an exit status (qemu exit $qrc; VM_KERNEL_LOG=1 shows kernel messages)"
exit 125
exit
}
