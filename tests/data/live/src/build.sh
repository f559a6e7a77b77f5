#!/bin/sh
# Build the fixture modules against the Debian armmp headers in /tmp/kernels and
# copy the debug-stripped .ko files to tests/data/ko/<version>/.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=$here/../../ko
for pair in 5.10:5.10.0-32-armmp 6.1:6.1.0-50-armmp 6.12:6.12.95+deb12-armmp; do
  v=${pair%%:*}; rel=${pair#*:}
  mkdir -p "$out/$v"
  for m in kh5foot kh5alloc; do
    b=/tmp/h5/build/$v/$m; rm -rf "$b"; mkdir -p "$b"; cp "$here/$m/$m.c" "$here/$m/Kbuild" "$b/"
    make -s -C /tmp/kernels/$v/usr/src/linux-headers-$rel M="$b" ARCH=arm \
      CROSS_COMPILE=arm-linux-gnueabihf- CC=arm-linux-gnueabihf-gcc-12 modules
    arm-linux-gnueabihf-strip --strip-debug -o "$out/$v/$m.ko" "$b/$m.ko"
  done
done
