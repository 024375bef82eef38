#!/usr/bin/env bash
# Lays out the LLVM that burn's `cuda` feature needs at build time, from Debian's own
# packages, where tracel-llvm-bundler looks for an installed bundle, so that
#
#   CUDARC_CUDA_VERSION=13000 cargo build --release --features cuda
#
# builds without reaching GitHub. With internet access this script is not needed: the
# bundler (a build dependency of cubecl-llvm, which cubecl-cuda always depends on)
# downloads its own LLVM archive.
#
#   scripts/cuda-llvm-prefix.sh [--force]
#
# What it does, once (a second run finds the prefix and does nothing; --force redoes it):
#   1. fetches the static libraries and headers of Debian's `llvm-<major>-dev` (suite sid;
#      the machine's own Debian release may not have that LLVM) from the Debian mirror of
#      the machine's own apt sources, with a private apt state in a scratch folder: nothing
#      is installed, and the system's package lists are not touched;
#   2. puts them in <data dir>/tracel/tracel-llvm-<bundler version>, the data dir being
#      $XDG_DATA_HOME, else ~/.local/share (what the bundler's `dirs::data_local_dir` reads);
#   3. writes bin/llvm-config, a shell stand-in answering the bundler's questions
#      (--version, --libdir, --includedir, --libs, --system-libs, --cxxflags, --cflags):
#      sid's own llvm-config is linked against a newer glibc than older releases have;
#   4. where the machine's glibc predates 2.38, builds lib/libc23compat.a, forwarding the
#      C23 entry points (__isoc23_strtol, ...) that sid's libraries call to their C99
#      namesakes; links unversioned names (libzstd.so, ...) for runtime libraries that
#      have no -dev package installed;
#   5. links and runs a small C program against the prefix (NVPTX target lookup), then
#      writes the bundler's marker `.tracel-llvm-installed`.
#
# Environment: XDG_DATA_HOME (see above); NAEVUS_DEBIAN_MIRROR (a Debian mirror URL, instead
# of the one in /etc/apt/sources*); NAEVUS_LLVM_SUITE (default sid).
# Needs apt-get, dpkg-deb, a C/C++ compiler, nm, tsort. Run as root on a machine without
# g++ it installs g++ (cubecl-llvm's build script compiles C++ against LLVM's headers);
# it installs nothing else.
set -euo pipefail

say() { echo "cuda-llvm-prefix: $*" >&2; }
die() { say "error: $*"; exit 1; }

force=0
case "${1:-}" in
    "") ;;
    --force) force=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (usage: $0 [--force])" ;;
esac

repo=$(cd "$(dirname "$0")/.." && pwd)

# ------------------------------------------------------------------ where the bundler looks

# The bundler's version names the prefix; take it from Cargo.lock so that a burn upgrade
# moves the prefix with it.
bundler=$(awk '$0 == "name = \"tracel-llvm-bundler\"" { getline; gsub(/version = |"/, ""); print; exit }' \
    "$repo/Cargo.lock" 2>/dev/null || true)
if [ -z "$bundler" ]; then
    bundler=23.1.0-4
    say "no tracel-llvm-bundler in Cargo.lock; assuming version $bundler (burn 0.22.1)"
fi
major=${bundler%%.*}

# dirs::data_local_dir() on Linux: $XDG_DATA_HOME when it is an absolute path, else
# $HOME/.local/share.
case "${XDG_DATA_HOME:-}" in
    /*) data=$XDG_DATA_HOME ;;
    *) [ -n "${HOME:-}" ] || die "neither HOME nor an absolute XDG_DATA_HOME is set"
       data=$HOME/.local/share ;;
esac
prefix=$data/tracel/tracel-llvm-$bundler
sentinel=$prefix/.tracel-llvm-installed

if [ -e "$sentinel" ] && [ "$force" = 0 ]; then
    say "LLVM for tracel-llvm-bundler $bundler already in place: $prefix (nothing to do; --force redoes it)"
    exit 0
fi

# ------------------------------------------------------------------ tools

[ "$(uname -s)/$(uname -m)" = Linux/x86_64 ] || die "only Linux x86_64 is handled (this is $(uname -s)/$(uname -m))"
for tool in apt-get apt-config dpkg-deb cc ar nm tsort awk; do
    command -v "$tool" > /dev/null || die "'$tool' is missing (Debian: apt-get install apt dpkg gcc binutils coreutils)"
done
if ! command -v c++ > /dev/null; then
    # Not needed by this script but by the build it prepares: cubecl-llvm compiles its C++
    # shims against LLVM's headers.
    if [ "$(id -u)" = 0 ]; then
        say "no C++ compiler; installing g++ (needed by cubecl-llvm's build script)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends g++ > /dev/null \
            || { apt-get update -q > /dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends g++ > /dev/null; } \
            || die "could not install g++"
    else
        die "no C++ compiler: cubecl-llvm's build script needs one (apt-get install g++)"
    fi
fi

# ------------------------------------------------------------------ the Debian mirror

suite=${NAEVUS_LLVM_SUITE:-sid}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

# Prints "URI KEYRING" for each deb source of a Debian release suite (not -security, not
# -updates) in the one-line and deb822 source files.
debian_sources() {
    local codenames=" buster bullseye bookworm trixie forky duke sid oldoldstable oldstable stable testing unstable "
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk -v names="$codenames" '
            $1 == "deb" {
                key = ""; i = 2
                if ($2 ~ /^\[/) {
                    for (; i <= NF; i++) {
                        if ($i ~ /^\[?signed-by=/) { key = $i; sub(/^\[?signed-by=/, "", key); sub(/\]$/, "", key) }
                        if ($i ~ /\]$/) break
                    }
                    i++
                }
                if (index(names, " " $(i + 1) " ")) print $i, key
            }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v names="$codenames" '
            function flush(   n, s, u, k) {
                if (types ~ /(^| )deb( |$)/ && enabled != "no") {
                    ok = 0; n = split(suites, s, " ")
                    for (k = 1; k <= n; k++) if (index(names, " " s[k] " ")) ok = 1
                    if (ok) { n = split(uris, u, " "); for (k = 1; k <= n; k++) print u[k], key }
                }
                types = uris = suites = key = enabled = ""
            }
            /^[ \t]*$/ { flush(); next }
            /^#/ { next }
            tolower($1) == "types:" { $1 = ""; types = $0 }
            tolower($1) == "uris:" { $1 = ""; uris = $0 }
            tolower($1) == "suites:" { $1 = ""; suites = $0 }
            tolower($1) == "enabled:" { enabled = tolower($2) }
            tolower($1) == "signed-by:" { if ($2 ~ /^\//) key = $2 }
            END { flush() }' "$f"
    done
}

if [ -n "${NAEVUS_DEBIAN_MIRROR:-}" ]; then
    mirror=$NAEVUS_DEBIAN_MIRROR
else
    read -r mirror source_key < <(debian_sources | head -n 1) || true
    [ -n "${mirror:-}" ] || die "no Debian mirror in /etc/apt/sources.list*; set NAEVUS_DEBIAN_MIRROR (e.g. http://deb.debian.org/debian)"
    [ -n "${source_key:-}" ] && [ -f "$source_key" ] && keyring=$source_key
fi
[ -f "$keyring" ] || die "Debian's archive keyring $keyring is missing (apt-get install debian-archive-keyring)"
mirror=${mirror%/}

# ------------------------------------------------------------------ fetch and unpack

scratch=$(mktemp -d "${TMPDIR:-/tmp}/cuda-llvm-prefix.XXXXXX")
staging=
cleanup() { rm -rf "$scratch"; [ -z "$staging" ] || rm -rf "$staging"; }
trap cleanup EXIT

mkdir -p "$scratch"/{etc/parts,etc/prefs,lists/partial,cache/archives/partial,state,log,deb}
: > "$scratch/state/status"
echo "deb [signed-by=$keyring target=Packages] $mirror $suite main" > "$scratch/etc/sources.list"
# A private apt state on top of the system's configuration (its proxies, Check-Valid-Until,
# ...): APT_CONFIG is read first and names a main file, read after /etc/apt/apt.conf.d, that
# points every state folder into the scratch folder and clears the system's hooks (cache
# cleaners, update post-invoke scripts), so that nothing of the system is changed.
echo "Dir::Etc::Main \"$scratch/etc/late.conf\";" > "$scratch/etc/apt.conf"
{
    [ -f /etc/apt/apt.conf ] && echo '#include "/etc/apt/apt.conf";'
    for hook in APT::Update::Pre-Invoke APT::Update::Post-Invoke APT::Update::Post-Invoke-Success \
        DPkg::Pre-Invoke DPkg::Post-Invoke DPkg::Pre-Install-Pkgs DPkg::Post-Install-Pkgs; do
        echo "#clear $hook;"
    done
    echo "Dir::Etc::SourceList \"$scratch/etc/sources.list\";"
    echo "Dir::Etc::SourceParts \"$scratch/etc/parts\";"
    echo "Dir::Etc::Preferences \"$scratch/etc/prefs/none\";"
    echo "Dir::Etc::PreferencesParts \"$scratch/etc/prefs\";"
    echo "Dir::State \"$scratch/state\";"
    echo "Dir::State::Lists \"$scratch/lists\";"
    echo "Dir::State::status \"$scratch/state/status\";"
    echo "Dir::Cache \"$scratch/cache\";"
    echo "Dir::Log \"$scratch/log\";"
    echo "Acquire::Languages \"none\";"
} > "$scratch/etc/late.conf"
export APT_CONFIG=$scratch/etc/apt.conf
if [ "$(id -u)" = 0 ] && id _apt > /dev/null 2>&1; then
    # apt downloads as the unprivileged _apt user when run as root.
    chmod 755 "$scratch"
    chown _apt "$scratch/lists/partial" "$scratch/cache/archives/partial" "$scratch/deb"
fi

say "fetching llvm-$major-dev from $mirror ($suite) with a private apt state"
apt-get -q update > "$scratch/update.log" 2>&1 || { cat "$scratch/update.log" >&2; die "apt-get update of $mirror $suite failed"; }
(cd "$scratch/deb" && apt-get -q download "llvm-$major-dev") > "$scratch/download.log" 2>&1 \
    || { cat "$scratch/download.log" >&2; die "apt-get download llvm-$major-dev failed"; }
deb=$(ls "$scratch"/deb/*.deb)
debversion=$(dpkg-deb -f "$deb" Version)
say "unpacking llvm-$major-dev $debversion ($(du -m "$deb" | cut -f1) MB)"
dpkg-deb -x "$deb" "$scratch/x"
src=$scratch/x/usr/lib/llvm-$major
[ -d "$src/lib/cmake/llvm" ] || die "unexpected layout of llvm-$major-dev: no lib/cmake/llvm"

mkdir -p "$data/tracel"
staging=$(mktemp -d "$data/tracel/.tracel-llvm-$bundler.XXXXXX")
mkdir -p "$staging"/{bin,lib,include}
mv "$src"/lib/libLLVM*.a "$staging/lib/"
mv "$src/lib/cmake" "$staging/lib/"
mv "$scratch/x/usr/include/llvm-$major/llvm" "$scratch/x/usr/include/llvm-c-$major/llvm-c" "$staging/include/"
cmake=$staging/lib/cmake/llvm
rm -f "$cmake/LLVMExports-"*.cmake  # per-build-type files naming /usr/lib/llvm-<major> paths

# ------------------------------------------------------------------ link order

# LLVMExports.cmake gives each library's INTERFACE_LINK_LIBRARIES. Libraries are kept when
# all of their non-LLVM dependencies are among the system libraries linked below; the few
# that also want libedit, libcurl, libxml2, libffi or libpfm (line editing, debuginfod,
# Windows manifests, the interpreter, exegesis) are left out together with what depends on
# them: nothing cubecl uses needs them. LLVMSupport's libz3 dependency serves only its Z3
# constraint solver, which nothing here calls: it is not linked.
(cd "$staging/lib" && ls libLLVM*.a) | sed 's/^lib//; s/\.a$//' > "$scratch/archives"
awk '
    FNR == NR { archive[$1] = 1; next }
    /^add_library\(LLVM[A-Za-z0-9_]* STATIC IMPORTED\)/ {
        name = $0; sub(/^add_library\(/, "", name); sub(/ .*/, "", name)
        if (name in archive) lib[name] = 1
    }
    /^set_target_properties\(/ { target = $0; sub(/^set_target_properties\(/, "", target); sub(/ .*/, "", target) }
    /INTERFACE_LINK_LIBRARIES "/ { deps = $0; sub(/^[^"]*"/, "", deps); sub(/".*/, "", deps); linked[target] = deps }
    END {
        system_map["rt"] = "rt"; system_map["dl"] = "dl"; system_map["m"] = "m"; system_map["pthread"] = "pthread"
        system_map["ZLIB::ZLIB"] = "z"; system_map["zstd::libzstd_shared"] = "zstd"; system_map["zstd::libzstd_static"] = "zstd"
        for (name in lib) {
            n = split(linked[name], d, ";")
            count[name] = 0
            for (k = 1; k <= n; k++) {
                dep = d[k]; gsub(/^\\?\$<LINK_ONLY:|>$/, "", dep)
                if (dep == "") continue
                if (dep in lib) { count[name]++; needs[name, count[name]] = dep }
                else if (dep in system_map) sys[name, system_map[dep]] = 1
                else if (dep ~ /libz3\.so$/) continue
                else dropped[name] = dep
            }
        }
        do {
            changed = 0
            for (name in lib) if (!(name in dropped))
                for (k = 1; k <= count[name]; k++) if (needs[name, k] in dropped) { dropped[name] = needs[name, k]; changed = 1; break }
        } while (changed)
        for (name in lib) {
            if (name in dropped) { print "drop", name, dropped[name]; continue }
            print "edge", name, name
            for (k = 1; k <= count[name]; k++) print "edge", name, needs[name, k]
            for (key in sys) { split(key, p, SUBSEP); if (p[1] == name) used[p[2]] = 1 }
        }
        for (s in used) print "system", s
    }' "$scratch/archives" "$cmake/LLVMExports.cmake" > "$scratch/graph"

# tsort: a library before the libraries it needs (what a static link wants).
awk '$1 == "edge" { print $2, $3 }' "$scratch/graph" | tsort > "$scratch/order"
libs=$(sed 's/^/-l/' "$scratch/order" | tr '\n' ' ')
system_libs=$(awk '$1 == "system" { print $2 }' "$scratch/graph" | sort | sed 's/^/-l/' | tr '\n' ' ')
say "$(wc -l < "$scratch/order") LLVM libraries in link order; left out: $(awk '$1 == "drop" { printf "%s ", $2 }' "$scratch/graph")"
# Everything not linked goes, so that the prefix holds what the link uses.
for a in "$staging"/lib/libLLVM*.a; do
    name=$(basename "$a" .a); name=${name#lib}
    grep -qx "$name" "$scratch/order" || rm -f "$a"
done

# ------------------------------------------------------------------ glibc compatibility

# sid's libraries are compiled against a glibc with the C23 entry points (2.38 and later),
# which an older glibc lacks; forward the ones they call to the C99 functions.
libc=$(cc -print-file-name=libc.so.6)
nm -u --format=just-symbols "$staging"/lib/libLLVM*.a 2> /dev/null | grep '^__isoc23_' | sort -u > "$scratch/c23" || true
nm -D --defined-only --format=just-symbols "$libc" 2> /dev/null | sed 's/@.*//' | grep '^__isoc23_' | sort -u > "$scratch/c23-libc" || true
missing=$(comm -23 "$scratch/c23" "$scratch/c23-libc")
compat=
if [ -n "$missing" ]; then
    {
        echo '/* C23 entry points of glibc 2.38 forwarded to their C99 namesakes (written by scripts/cuda-llvm-prefix.sh). */'
        echo '#include <inttypes.h>'
        echo '#include <stdarg.h>'
        echo '#include <stdio.h>'
        echo '#include <stdlib.h>'
        echo '#include <wchar.h>'
        for symbol in $missing; do
            base=${symbol#__isoc23_}
            case "$base" in
                strtol | strtoul | strtoll | strtoull | strtoimax | strtoumax)
                    case "$base" in
                        strtol) type=long ;; strtoul) type='unsigned long' ;;
                        strtoll) type='long long' ;; strtoull) type='unsigned long long' ;;
                        strtoimax) type=intmax_t ;; strtoumax) type=uintmax_t ;;
                    esac
                    echo "$type $symbol(const char *s, char **end, int base) { return $base(s, end, base); }" ;;
                wcstol | wcstoul | wcstoll | wcstoull)
                    case "$base" in
                        wcstol) type=long ;; wcstoul) type='unsigned long' ;;
                        wcstoll) type='long long' ;; wcstoull) type='unsigned long long' ;;
                    esac
                    echo "$type $symbol(const wchar_t *s, wchar_t **end, int base) { return $base(s, end, base); }" ;;
                sscanf) echo "int $symbol(const char *s, const char *f, ...) { va_list a; va_start(a, f); int n = vsscanf(s, f, a); va_end(a); return n; }" ;;
                scanf) echo "int $symbol(const char *f, ...) { va_list a; va_start(a, f); int n = vscanf(f, a); va_end(a); return n; }" ;;
                fscanf) echo "int $symbol(FILE *s, const char *f, ...) { va_list a; va_start(a, f); int n = vfscanf(s, f, a); va_end(a); return n; }" ;;
                vsscanf) echo "int $symbol(const char *s, const char *f, va_list a) { return vsscanf(s, f, a); }" ;;
                vscanf) echo "int $symbol(const char *f, va_list a) { return vscanf(f, a); }" ;;
                vfscanf) echo "int $symbol(FILE *s, const char *f, va_list a) { return vfscanf(s, f, a); }" ;;
                *) die "sid's LLVM calls $symbol, which this glibc ($(getconf GNU_LIBC_VERSION)) lacks and this script cannot forward" ;;
            esac
        done
    } > "$scratch/c23compat.c"
    cc -O2 -fPIC -c "$scratch/c23compat.c" -o "$scratch/c23compat.o"
    ar rcs "$staging/lib/libc23compat.a" "$scratch/c23compat.o"
    cp "$scratch/c23compat.c" "$staging/lib/"
    compat=-lc23compat
    say "$(getconf GNU_LIBC_VERSION) lacks $(echo $missing | wc -w) C23 entry points sid's LLVM calls; forwarding them (lib/libc23compat.a)"
fi

# The linker wants libNAME.so or libNAME.a; a runtime library without its -dev package has
# only libNAME.so.N: link that name in the prefix's lib folder (searched at link time only).
for name in $(awk '$1 == "system" { print $2 }' "$scratch/graph"); do
    found=
    for file in "lib$name.so" "lib$name.a"; do
        [ "$(cc -print-file-name="$file")" != "$file" ] && found=1
    done
    [ -n "$found" ] && continue
    runtime=$(ldconfig -p | awk -v n="lib$name.so." 'index($1, n) == 1 && /x86-64/ { print $NF; exit }')
    [ -n "$runtime" ] || die "LLVM needs lib$name, which is not on this machine (Debian: apt-get install lib$name-dev)"
    ln -s "$runtime" "$staging/lib/lib$name.so"
    say "lib$name.so -> $runtime (no lib$name-dev installed)"
done

# ------------------------------------------------------------------ llvm-config stand-in

version=$(sed -n 's/^set(LLVM_PACKAGE_VERSION \(.*\))$/\1/p' "$cmake/LLVMConfig.cmake")
definitions=$(sed -n 's/^set(LLVM_DEFINITIONS "\(.*\)")$/\1/p' "$cmake/LLVMConfig.cmake")
targets=$(sed -n 's/^set(LLVM_TARGETS_TO_BUILD \(.*\))$/\1/p' "$cmake/LLVMConfig.cmake" | tr ';' ' ')
cxxflags="-std=c++17"
grep -q '^set(LLVM_ENABLE_EH OFF)' "$cmake/LLVMConfig.cmake" && cxxflags="$cxxflags -fno-exceptions"
grep -q '^set(LLVM_ENABLE_RTTI OFF)' "$cmake/LLVMConfig.cmake" && cxxflags="$cxxflags -fno-rtti"
[ -n "$version" ] && [ -n "$definitions" ] || die "could not read LLVM_PACKAGE_VERSION / LLVM_DEFINITIONS from LLVMConfig.cmake"

cat > "$staging/bin/llvm-config" << EOF
#!/bin/sh
# Stand-in for llvm-config over Debian's llvm-$major-dev $debversion (static libraries only),
# written by naevus's scripts/cuda-llvm-prefix.sh for tracel-llvm-bundler. Component
# arguments are accepted and ignored: --libs always names every library of the prefix.
prefix=\$(cd "\$(dirname "\$0")/.." && pwd)
status=0
for arg in "\$@"; do
    case "\$arg" in
        --link-static) ;;
        --link-shared) echo "llvm-config: only static libraries in \$prefix" >&2; status=1 ;;
        --shared-mode) echo static ;;
        --version) echo "$version" ;;
        --prefix) echo "\$prefix" ;;
        --bindir) echo "\$prefix/bin" ;;
        --libdir) echo "\$prefix/lib" ;;
        --includedir) echo "\$prefix/include" ;;
        --cmakedir) echo "\$prefix/lib/cmake/llvm" ;;
        --libs) echo "$libs$compat" ;;
        --libnames) echo "$libs$compat" | sed 's/-l\([^ ]*\)/lib\1.a/g' ;;
        --libfiles) echo "$libs$compat" | sed "s|-l\([^ ]*\)|\$prefix/lib/lib\1.a|g" ;;
        --system-libs) echo "$system_libs" ;;
        --ldflags) echo "-L\$prefix/lib" ;;
        --cppflags) echo "-I\$prefix/include $definitions" ;;
        --cflags) echo "-I\$prefix/include $definitions" ;;
        --cxxflags) echo "-I\$prefix/include $cxxflags $definitions" ;;
        --targets-built) echo "$targets" ;;
        --host-target) echo x86_64-pc-linux-gnu ;;
        --assertion-mode) echo OFF ;;
        --build-mode) echo Release ;;
        -*) echo "llvm-config (stand-in): unsupported option \$arg" >&2; status=1 ;;
        *) ;;
    esac
done
exit \$status
EOF
chmod 755 "$staging/bin/llvm-config"

# ------------------------------------------------------------------ check, then install

# What the bundler does with the prefix, on a small scale: compile against the headers,
# link everything statically, look up the NVPTX target.
cat > "$scratch/check.c" << 'EOF'
#include <stdio.h>
#include <llvm-c/Core.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
void LLVMInitializeNVPTXTargetInfo(void);
void LLVMInitializeNVPTXTarget(void);
void LLVMInitializeNVPTXTargetMC(void);
int main(void) {
    unsigned major, minor, patch;
    LLVMGetVersion(&major, &minor, &patch);
    LLVMInitializeNVPTXTargetInfo();
    LLVMInitializeNVPTXTarget();
    LLVMInitializeNVPTXTargetMC();
    LLVMTargetRef target;
    char *error = NULL;
    if (LLVMGetTargetFromTriple("nvptx64-nvidia-cuda", &target, &error)) {
        fprintf(stderr, "%s\n", error);
        return 1;
    }
    printf("LLVM %u.%u.%u, target %s\n", major, minor, patch, LLVMGetTargetName(target));
    return 0;
}
EOF
config=$staging/bin/llvm-config
# shellcheck disable=SC2046  # word splitting of llvm-config's answers is intended
cc $("$config" --link-static --cflags) -c "$scratch/check.c" -o "$scratch/check.o"
# shellcheck disable=SC2046
cc "$scratch/check.o" -L"$("$config" --link-static --libdir)" $("$config" --link-static --libs) \
    $("$config" --link-static --system-libs) -lstdc++ -o "$scratch/check" 2> "$scratch/check.log" \
    || { cat "$scratch/check.log" >&2; die "a test program does not link against the prefix"; }
say "test program: $("$scratch/check")"

touch "$staging/.tracel-llvm-installed"
rm -rf "$prefix"
mv "$staging" "$prefix"
staging=
say "ready: $prefix (llvm-$major-dev $debversion; $(du -sm "$prefix" | cut -f1) MB)"
say "build with: CUDARC_CUDA_VERSION=13000 cargo build --release --features cuda"
