#!/bin/sh
# /init of the kit's initramfs (busybox sh, PID 1).
# Mounts the pseudo filesystems, lowers the console loglevel so kernel messages rarely interleave with
# the host's console protocol (panic and oops still print: they raise the level themselves), turns the
# tty echo off and runs a NON-interactive shell fed by `cat` from the console (an interactive ash would
# do its own echo and line editing), restarted if it ever exits, so PID 1 never dies.
# The host waits for the KIT>READY line, then sends one command line at a time.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
dmesg -n 1
stty -echo
echo 'KIT>READY'
while true; do
	cat | sh
	echo 'KIT>SHELL-RESTARTED'
done
