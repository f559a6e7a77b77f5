#!/bin/sh
# Guest-side test plan (docs/contracts.md section 2), busybox sh.
# usage: kitrun.sh OUT_DIR MODULE_DIR GROUP [GROUP ...]   (run again for a later batch: it appends)
# A GROUP is one module M, or a driver stack "A,B,C" in dependency order: each is loaded in turn
# (MODULE_DIR/M.ko) and kept loaded while the ones above it load, then all are unloaded in reverse.
# A module whose insmod fails, or that oopses (insmod killed), does not stop the plan.
# Exit status: 0 when every step ran (whatever the modules did), 2 on a usage error.

if [ $# -lt 3 ]; then
	echo "usage: kitrun.sh OUT_DIR MODULE_DIR GROUP..." >&2
	exit 2
fi
out=$1
mods=$2
shift 2

mkdir -p "$out/vmallocinfo" "$out/modules" "$out/sections" "$out/insmod"

# Root reads real addresses with kptr_restrict=1; the board's own value is put back when the plan ends
# (a board is left as found). `read` is the shell's builtin: no fork before the first snapshot.
kptr=/proc/sys/kernel/kptr_restrict
read -r kptr_was < "$kptr"
trap 'echo "$kptr_was" > "$kptr"' EXIT
trap 'exit 130' INT TERM HUP  # a plan cut short (Ctrl-C on a console, pkill) still puts it back
echo 1 > "$kptr"

rcdir="$out-rc"  # beside the output, under the kit's own directory (removed with it on a board)
mkdir -p "$rcdir"

# Globals, before the first module (a later batch of the same run appends to status.txt and keeps them).
# meminfo.txt last, with the shell's own read and echo: its VmallocUsed is compared with the first
# module's before snapshot, and no process may start or end between the two (a thread stack is a vmalloc
# area, and one freed by an exiting process may be freed later, kernel/fork.c free_thread_stack).
if [ ! -f "$out/status.txt" ]; then
	: > "$out/status.txt"
	cat /proc/cmdline > "$out/cmdline.txt"
	cat /proc/iomem > "$out/iomem.txt"
	cat /proc/zoneinfo > "$out/zoneinfo.txt"
	while IFS= read -r line; do echo "$line"; done < /proc/meminfo > "$out/meminfo.txt"
fi

# sections/M.txt: "<section name> <content>" per file of /sys/module/M/sections (dot files included),
# with one grep and one sed for all of them (a process per file costs ~10 ms under TCG; the shell's
# `read` builtin reads byte by byte, which these binary sysfs attributes answer with "0").
dump_sections() {
	(cd "/sys/module/$1/sections" && grep -H . .[!.]* ./* 2>/dev/null) | sed 's#^\./##; s#:# #'
}

# Nothing forks between meminfo.txt and the first snapshot, nor between a snapshot and the insmod or
# rmmod it brackets (a forked process's stack is a vmalloc area on ARM since VMAP_STACK): the groups are
# split with IFS, the exit statuses kept in files read with the shell's own `read`.
load() {
	cat /proc/vmallocinfo > "$out/vmallocinfo/$1.before.txt"
	echo "kit: begin $1" > /dev/kmsg
	insmod "$mods/$1.ko" 2> "$out/insmod/$1.txt"
	rc=$?
	echo "kit: end $1 insmod=$rc" > /dev/kmsg
	cat /proc/vmallocinfo > "$out/vmallocinfo/$1.during.txt"
	echo "$rc" > "$rcdir/$1.insmod"
	cat /proc/modules > "$out/modules/$1.txt"
	case $1 in  # /sys/module names have "_" for "-"; only a name with a "-" pays for the forks of tr
	*-*) dump_sections "$(echo "$1" | tr - _)" ;;
	*) dump_sections "$1" ;;
	esac > "$out/sections/$1.txt"
}

unload() {
	rmmod "$1"
	rc=$?
	echo "kit: released $1 rmmod=$rc" > /dev/kmsg
	cat /proc/vmallocinfo > "$out/vmallocinfo/$1.after.txt"
	echo "$rc" > "$rcdir/$1.rmmod"
}

blank=$IFS
for group in "$@"; do
	IFS=,
	reverse=
	for m in $group; do
		IFS=$blank; load "$m"; reverse="$m,$reverse"; IFS=,
	done
	for m in $reverse; do
		IFS=$blank; unload "$m"; IFS=,
	done
	for m in $group; do
		IFS=$blank
		read -r rc < "$rcdir/$m.insmod"
		read -r rc2 < "$rcdir/$m.rmmod"
		echo "$m insmod=$rc rmmod=$rc2" >> "$out/status.txt"
		IFS=,
	done
	IFS=$blank
done

dmesg > "$out/dmesg.txt"
exit 0
