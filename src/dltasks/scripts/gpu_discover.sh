# shellcheck shell=sh
# Prints the NVIDIA driver of the host ($1: the driver root, "" for /), a fact a line:
# dev<TAB>path, gpu<TAB>bus<TAB>minor, version<TAB>line, lib<TAB>path, bin<TAB>path,
# fw<TAB>path, ipc<TAB>path (dltasks.gpu.driver.parse_driver reads them). Callers append
# more commands after it (dltasks.gpu.modes), so it ends with "true".
r=${1%/}
for f in "$r"/dev/nvidia*; do [ -c "$f" ] && printf "dev\t%s\n" "$f"; done
for f in "$r"/proc/driver/nvidia/gpus/*/information; do
  [ -f "$f" ] || continue
  b=${f%/information}; b=${b##*/}; m=$(sed -n "s/^Device Minor:[[:space:]]*//p" "$f")
  printf "gpu\t%s\t%s\n" "$b" "$m"
done
[ -r "$r/proc/driver/nvidia/version" ] && printf "version\t%s\n" \
  "$(head -n 1 "$r/proc/driver/nvidia/version")"
[ -z "$r" ] && { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } \
  | sed -n "s/.*=> \(.*\)$/\1/p" | grep -E "/lib(cuda|cudadebugger|nvidia-[a-z0-9-]+)\.so" \
  | while IFS= read -r f; do printf "lib\t%s\n" "$f"; done
# Where drivers put their libraries and programs (libnvidia-container's search paths).
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu \
    /usr/lib/aarch64-linux-gnu /usr/lib64 /usr/lib /lib/x86_64-linux-gnu /lib64 /usr/local/lib; do
  for f in "$r$d"/libcuda.so* "$r$d"/libcudadebugger.so* "$r$d"/libnvidia-*.so*; do
    [ -e "$f" ] && printf "lib\t%s\n" "$f"
  done
done
for b in nvidia-smi nvidia-debugdump nvidia-persistenced nvidia-cuda-mps-control \
    nvidia-cuda-mps-server; do
  for d in /usr/local/nvidia/bin /usr/bin /usr/local/bin /bin /usr/sbin; do
    [ -x "$r$d/$b" ] && { printf "bin\t%s\n" "$r$d/$b"; break; }
  done
done
for f in "$r"/lib/firmware/nvidia/*/gsp*.bin "$r"/usr/lib/firmware/nvidia/*/gsp*.bin; do
  [ -f "$f" ] && printf "fw\t%s\n" "$f"
done
for f in /run/nvidia-persistenced/socket /run/nvidia-fabricmanager/socket; do
  [ -S "$r$f" ] && printf "ipc\t%s\n" "$r$f"
done
true
