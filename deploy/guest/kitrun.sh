#!/bin/sh
# Guest-side test plan (docs/contracts.md section 2), busybox sh.
# usage: kitrun.sh OUT_DIR MODULE_DIR M1 [M2 ...]   (loads MODULE_DIR/M.ko one at a time, in order)
# A module whose insmod fails, or that oopses (insmod killed), does not stop the plan.
# Exit status: 0 when every step ran (whatever the modules did), 2 on a usage error.

if [ $# -lt 3 ]; then
	echo "usage: kitrun.sh OUT_DIR MODULE_DIR MODULE..." >&2
	exit 2
fi
out=$1
mods=$2
shift 2

mkdir -p "$out/vmallocinfo" "$out/modules" "$out/sections"
: > "$out/status.txt"

# Globals, before the first module. Root reads real addresses with kptr_restrict=1.
echo 1 > /proc/sys/kernel/kptr_restrict
cat /proc/meminfo > "$out/meminfo.txt"
cat /proc/cmdline > "$out/cmdline.txt"
cat /proc/iomem > "$out/iomem.txt"
cat /proc/zoneinfo > "$out/zoneinfo.txt"

# sections/M.txt: "<section name> <content>" per file of /sys/module/M/sections (dot files included),
# with one grep and one sed for all of them (a process per file costs ~10 ms under TCG; the shell's
# `read` builtin reads byte by byte, which these binary sysfs attributes answer with "0").
dump_sections() {
	(cd "/sys/module/$1/sections" && grep -H . .[!.]* ./* 2>/dev/null) | sed 's#^\./##; s#:# #'
}

for m in "$@"; do
	cat /proc/vmallocinfo > "$out/vmallocinfo/$m.before.txt"
	echo "kit: begin $m" > /dev/kmsg
	insmod "$mods/$m.ko"
	rc=$?
	echo "kit: end $m insmod=$rc" > /dev/kmsg
	cat /proc/vmallocinfo > "$out/vmallocinfo/$m.during.txt"
	cat /proc/modules > "$out/modules/$m.txt"
	dump_sections "$(echo "$m" | tr - _)" > "$out/sections/$m.txt"
	rmmod "$m"
	rc2=$?
	echo "kit: released $m rmmod=$rc2" > /dev/kmsg
	cat /proc/vmallocinfo > "$out/vmallocinfo/$m.after.txt"
	echo "$m insmod=$rc rmmod=$rc2" >> "$out/status.txt"
done

dmesg > "$out/dmesg.txt"
exit 0
