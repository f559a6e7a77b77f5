#!/bin/sh
# Boot a Debian armmp kernel in QEMU with a throwaway initramfs that loads the fixture
# modules one at a time and prints /proc and /sys files between @@@ markers.
# usage: capture.sh <5.10|6.1|6.12> <console-log-out>
set -eu
v=$1; log=$2
here=$(cd "$(dirname "$0")" && pwd)
ko=$here/../../ko/$v
work=/tmp/h5/initramfs-$v
rm -rf "$work"; mkdir -p "$work/bin" "$work/m" "$work/proc" "$work/sys" "$work/dev"
cp /tmp/kernels/6.1/bin/busybox "$work/bin/busybox"
for f in "$ko"/*.ko "$ko"/*.ko.xz; do
  [ -e "$f" ] || continue
  case $f in *.xz) xz -dc "$f" > "$work/m/$(basename "$f" .xz)";; *) cp "$f" "$work/m/";; esac
done
cat > "$work/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
echo 1 > /proc/sys/kernel/kptr_restrict
echo 1 > /proc/sys/kernel/printk
sec() { echo "@@@BEGIN $1"; shift; "$@" 2>/dev/null; echo "@@@END"; }
sec meminfo cat /proc/meminfo
for m in kh5foot nls_cp437 crc7 ts_kmp kh5alloc; do
  sec "vmallocinfo.before $m" cat /proc/vmallocinfo
  insmod /m/$m.ko; echo "@@@RC $m $?"
  sec "vmallocinfo.during $m" cat /proc/vmallocinfo
  sec "modules $m" cat /proc/modules
  sec "sections $m" grep . /sys/module/$m/sections/.* /sys/module/$m/sections/*
done
sec dmesg dmesg
poweroff -f
INIT
chmod +x "$work/init"
(cd "$work" && find . | cpio -o -H newc 2>/dev/null | gzip -9) > /tmp/h5/initrd-$v.gz
timeout 300 qemu-system-arm -M virt -cpu cortex-a15 -m 1024 -nographic -no-reboot \
  -kernel /tmp/kernels/$v/boot/vmlinuz-* -initrd /tmp/h5/initrd-$v.gz \
  -append "console=ttyAMA0 panic=-1" > "$log" 2>&1 </dev/null || true
