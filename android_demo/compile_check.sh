#!/usr/bin/env bash
# Compile check of the Android demo app, without an Android SDK or Google's Maven.
#
#   bash android_demo/compile_check.sh [--setup] [APP_DIR]
#
# APP_DIR (default: the app beside this script) holds app/ and tiling/ as android_demo/ does.
# Exit 0 when it compiles; 1 with the compiler's first error when it does not; 2 when the tools
# cannot be installed or APP_DIR is not an app. --setup only installs (or finds) the tools.
#
# What it runs, in the order Gradle would:
#   1. aapt2 compile + link: the app's resources and manifest against the platform resource table
#      (framework-res.apk of Android 10, API 29) — resource names, layout attributes, R.java;
#   2. javac --release 8: the tiling module (its Gradle build is Java 8) and R.java;
#   3. kotlinc 1.9.24 (the app's Kotlin Gradle plugin version), -no-jdk, against android.jar
#      (API 23, the newest Debian ships), the tiling classes and R, and the stand-ins under
#      compile_check/standins/: LiteRT 2.2.0, AndroidX and kotlinx.coroutines *signatures* only
#      (each file says where they come from). Stand-ins are compiled first, on their own, like a
#      library jar, so the app cannot lean on anything but their declarations.
# It proves the app type-checks against those signatures; it cannot prove manifest merging,
# AndroidX's or LiteRT's behaviour, R8/D8, or anything about a device (android_demo/README.md).
#
# Tools (why by hand: no Android SDK, Gradle repository or LiteRT/AndroidX artifact is reachable
# here; Debian's mirror and the npm registry are): a private apt configuration — its own sources
# list (bookworm + bullseye), lists and cache, nothing installed system-wide — downloads aapt2 and
# the libraries it loads, Android 10's framework-res.apk and bullseye's API 23 android.jar;
# dpkg-deb -x unpacks them. kotlinc comes from the npm registry's kotlin-compiler 1.9.24 tarball,
# checked against its published sha512. All of it (165 MB unpacked) is cached under
# ${SRDEPLOY_ANDROID_TOOLS:-${XDG_CACHE_HOME:-~/.cache}/srdeploy/android-tools}; the first run
# takes about 30 s to set up, later ones reuse it. Needs a JDK 17 (java, javac), apt-get, dpkg-deb,
# curl, flock.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STANDINS="$HERE/compile_check/standins"
TOOLS="${SRDEPLOY_ANDROID_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/srdeploy/android-tools}"
MIRROR="${SRDEPLOY_DEBIAN_MIRROR:-http://deb.debian.org/debian}"  # a local mirror may stand in
KOTLIN_VERSION=1.9.24
KOTLIN_URL="https://registry.npmjs.org/kotlin-compiler/-/kotlin-compiler-$KOTLIN_VERSION.tgz"
KOTLIN_SHA512=cac4def5e950a9067f4236664ca5f2028a72253fef5d926f280435c3b85cb661492905994aaccdb62f09bc0d17ac838606cc127a0e5428397843ef34ad49c556
# aapt2 2.19 (Debian's Android 10 build tools) and what it loads; the API 23 android.jar (bullseye)
DEBS=(aapt=1:10.0.0+r36-10 android-libaapt=1:10.0.0+r36-10 android-libandroidfw=1:10.0.0+r36-10
      android-framework-res=1:10.0.0+r36-10 android-libbacktrace=1:29.0.6-28 android-libbase=1:29.0.6-28
      android-libcutils=1:29.0.6-28 android-liblog=1:29.0.6-28 android-libutils=1:29.0.6-28
      android-libziparchive=1:29.0.6-28 libprotobuf-lite32 p7zip-full libandroid-23-java=6.0.1+r72-6)

die() { echo "compile check: $*" >&2; exit 2; }

setup_tools() {
    [ -f "$TOOLS/ready" ] && return 0
    for t in apt-get dpkg-deb curl flock sha512sum; do
        command -v "$t" >/dev/null || die "setup needs $t (a Debian/Ubuntu host)"
    done
    mkdir -p "$(dirname "$TOOLS")"
    exec 9>"$TOOLS.lock"
    flock 9                         # two checks started at once: one installs, the other waits
    [ -f "$TOOLS/ready" ] && return 0
    local t0=$SECONDS staging="$TOOLS.partial-$$"
    rm -rf "$staging"
    mkdir -p "$staging"/apt/{lists/partial,cache/archives/partial,etc} "$staging/debs"
    printf 'deb %s bookworm main\ndeb %s bullseye main\n' "$MIRROR" "$MIRROR" >"$staging/apt/etc/sources.list"
    local user; user=$([ "$(id -u)" = 0 ] && echo root || id -un)
    local opts=(-oDir::Etc::SourceList="$staging/apt/etc/sources.list" -oDir::Etc::SourceParts=/dev/null
                -oDir::State::Lists="$staging/apt/lists" -oDir::Cache="$staging/apt/cache"
                -oDebug::NoLocking=1 -oAPT::Sandbox::User="$user")
    echo "compile check: setting up its tools in $TOOLS (about 10-30 s, ~140 MB of downloads, 91 MB of it kotlinc; nothing installed system-wide)" >&2
    echo "  [1/3] apt-get update (a private sources list: bookworm + bullseye)" >&2
    if ! apt-get "${opts[@]}" update -q >"$staging/apt.log" 2>&1 || grep -q '^Err:' "$staging/apt.log"; then
        local e; e=$(grep -m1 -E '^(Err|E|W):' "$staging/apt.log" || tail -1 "$staging/apt.log")
        rm -rf "$staging"
        die "apt-get update failed (offline? it reads $MIRROR): $e"
    fi
    echo "  [2/3] apt-get download aapt2, framework-res, android.jar (API 23)" >&2
    (cd "$staging/debs" && apt-get "${opts[@]}" download "${DEBS[@]}" >"$staging/apt.log" 2>&1) \
        || { local e; e=$(tail -1 "$staging/apt.log"); rm -rf "$staging"; die "apt-get download failed: $e"; }
    for d in "$staging"/debs/*.deb; do dpkg-deb -x "$d" "$staging/root"; done
    echo "  [3/3] kotlinc $KOTLIN_VERSION from the npm registry" >&2
    curl -fsSL --retry 2 -o "$staging/kotlin.tgz" "$KOTLIN_URL" \
        || { rm -rf "$staging"; die "could not download $KOTLIN_URL"; }
    echo "$KOTLIN_SHA512  $staging/kotlin.tgz" | sha512sum -c --quiet - >/dev/null 2>&1 \
        || { rm -rf "$staging"; die "kotlin-compiler $KOTLIN_VERSION's checksum does not match the registry's published sha512"; }
    mkdir -p "$staging/kotlin" && tar -xzf "$staging/kotlin.tgz" -C "$staging/kotlin" --strip-components=1
    rm -rf "$staging/apt" "$staging/debs" "$staging/kotlin.tgz" "$staging/apt.log"
    local lib="$TOOLS/root/usr/lib/x86_64-linux-gnu"
    cat >"$staging/env.sh" <<EOF
AAPT2="$TOOLS/root/usr/lib/android-sdk/build-tools/debian/aapt2"
AAPT2_LIBS="$lib/android:$lib:$TOOLS/root/usr/lib/p7zip"
ANDROID_JAR="$TOOLS/root/usr/lib/android-sdk/platforms/android-23/android.jar"
FRAMEWORK_RES="$TOOLS/root/usr/share/android-framework-res/framework-res.apk"
KOTLINC="$TOOLS/kotlin/bin/kotlinc"
EOF
    printf '%s\n' "${DEBS[@]}" "kotlin-compiler=$KOTLIN_VERSION" >"$staging/ready.versions"
    rm -rf "$TOOLS"
    mv "$staging" "$TOOLS"
    touch "$TOOLS/ready"
    echo "compile check: tools ready in $((SECONDS - t0)) s" >&2
}

only_setup=0
app_arg=""
for a in "$@"; do
    case "$a" in
        --setup) only_setup=1 ;;
        -h|--help) sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $a (usage: compile_check.sh [--setup] [APP_DIR])" ;;
        *) [ -z "$app_arg" ] || die "one APP_DIR only"; app_arg=$a ;;
    esac
done
command -v java >/dev/null && command -v javac >/dev/null || die "needs a JDK 17 (java and javac on PATH)"
setup_tools
# shellcheck disable=SC1091
. "$TOOLS/env.sh"
for f in "$AAPT2" "$ANDROID_JAR" "$FRAMEWORK_RES" "$KOTLINC"; do
    [ -e "$f" ] || die "tool missing: $f (remove $TOOLS and run again)"
done
LD_LIBRARY_PATH="$AAPT2_LIBS" "$AAPT2" version >/dev/null 2>&1 || die "aapt2 does not run (remove $TOOLS and run again)"
[ "$only_setup" = 1 ] && { echo "compile check: tools ready in $TOOLS"; exit 0; }

APP=$(cd "${app_arg:-$HERE}" 2>/dev/null && pwd) || die "no such folder: ${app_arg}"
MAIN="$APP/app/src/main"
[ -f "$MAIN/AndroidManifest.xml" ] && [ -d "$MAIN/res" ] && [ -f "$APP/app/build.gradle.kts" ] \
    || die "$APP is not the demo app's folder (no app/src/main/AndroidManifest.xml, res/ or app/build.gradle.kts)"
gradle_value() {  # a plain `key = value` of app/build.gradle.kts
    sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"\{0,1\}\([A-Za-z0-9_.]*\)\"\{0,1\}[[:space:]]*$/\1/p" "$APP/app/build.gradle.kts" | head -1
}
NAMESPACE=$(gradle_value namespace); MIN_SDK=$(gradle_value minSdk); TARGET_SDK=$(gradle_value targetSdk)
[ -n "$NAMESPACE" ] && [ -n "$MIN_SDK" ] && [ -n "$TARGET_SDK" ] \
    || die "app/build.gradle.kts names no namespace / minSdk / targetSdk"

W=$(mktemp -d "${TMPDIR:-/tmp}/srdeploy-compile-check.XXXXXX")
trap 'rm -rf "$W"' EXIT
mkdir -p "$W"/{gen,classes,standins,app-classes}

fail() {  # step, log: the compiler's first error (and what follows it) on stderr, exit 1
    local first
    sed -i "s#$W/AndroidManifest.xml#$MAIN/AndroidManifest.xml#g" "$2"  # name the user's file, not the copy
    first=$(grep -m1 -E '(error|Error|ERROR)[: ]' "$2" || head -1 "$2")
    echo "compile check FAILED at $1: $first" >&2
    grep -A3 -m5 -E '(error|Error|ERROR)[: ]' "$2" | head -30 >&2 || true
    exit 1
}
step() { echo "  $1" >&2; }
t0=$SECONDS

step "[1/4] aapt2: resources and manifest (package $NAMESPACE, minSdk $MIN_SDK, targetSdk $TARGET_SDK)"
aapt() { LD_LIBRARY_PATH="$AAPT2_LIBS" "$AAPT2" "$@"; }
aapt compile --dir "$MAIN/res" -o "$W/res-app.zip" >"$W/log" 2>&1 || fail "aapt2 compile (app resources)" "$W/log"
aapt compile --dir "$STANDINS/res" -o "$W/res-standins.zip" >"$W/log" 2>&1 || fail "aapt2 compile (stand-in resources)" "$W/log"
# Gradle's manifest merger puts the namespace in as the package; the manifest itself has none.
# --warn-manifest-validation: Debian's aapt2 is Android 10's and does not know elements added
# since (<uses-native-library>, API 31); they become warnings, printed below, not failures.
sed "0,/<manifest /s//<manifest package=\"$NAMESPACE\" /" "$MAIN/AndroidManifest.xml" >"$W/AndroidManifest.xml"
aapt link -o "$W/app.apk" -I "$FRAMEWORK_RES" --manifest "$W/AndroidManifest.xml" --java "$W/gen" \
    --min-sdk-version "$MIN_SDK" --target-sdk-version "$TARGET_SDK" --warn-manifest-validation \
    "$W/res-standins.zip" "$W/res-app.zip" >"$W/log" 2>&1 || fail "aapt2 link" "$W/log"
sed "s#$W/AndroidManifest.xml#$MAIN/AndroidManifest.xml#g" "$W/log" | grep -i 'warn' | sed 's/^/    aapt2: /' >&2 || true

step "[2/4] javac: the tiling module (Java 8) and R"
mapfile -t tiling < <(find "$APP/tiling/src/main/java" -name '*.java' 2>/dev/null | sort)
[ "${#tiling[@]}" -gt 0 ] || die "$APP/tiling/src/main/java holds no Java sources"
javac --release 8 -Xlint:-options -d "$W/classes" "${tiling[@]}" >"$W/log" 2>&1 || fail "javac (tiling)" "$W/log"
mapfile -t rjava < <(find "$W/gen" -name '*.java')
javac --release 8 -Xlint:-options -d "$W/classes" "${rjava[@]}" >"$W/log" 2>&1 || fail "javac (R)" "$W/log"

step "[3/4] kotlinc $KOTLIN_VERSION: the stand-ins (LiteRT 2.2.0, AndroidX, kotlinx.coroutines signatures)"
mapfile -t standin_src < <(find "$STANDINS" -name '*.kt' | sort)
"$KOTLINC" -no-jdk -jvm-target 17 -nowarn -cp "$ANDROID_JAR" -d "$W/standins" "${standin_src[@]}" >"$W/log" 2>&1 \
    || fail "kotlinc (stand-ins)" "$W/log"

step "[4/4] kotlinc $KOTLIN_VERSION: the app's Kotlin"
mapfile -t app_src < <(find "$MAIN/java" "$MAIN/kotlin" -name '*.kt' -o -name '*.java' 2>/dev/null | sort)
[ "${#app_src[@]}" -gt 0 ] || die "$MAIN/java holds no Kotlin sources"
"$KOTLINC" -no-jdk -jvm-target 17 -cp "$ANDROID_JAR:$W/standins:$W/classes" -d "$W/app-classes" "${app_src[@]}" \
    >"$W/log" 2>&1 || fail "kotlinc (app)" "$W/log"
mapfile -t app_java < <(printf '%s\n' "${app_src[@]}" | grep '\.java$' || true)
if [ "${#app_java[@]}" -gt 0 ]; then
    javac --release 17 -cp "$ANDROID_JAR:$W/standins:$W/classes:$W/app-classes" -d "$W/app-classes" "${app_java[@]}" \
        >"$W/log" 2>&1 || fail "javac (app)" "$W/log"
fi
warnings=$(grep -c '^warning:\|: warning:' "$W/log" || true)
n_classes=$(find "$W/app-classes" -name '*.class' | wc -l)
echo "compile check passed in $((SECONDS - t0)) s: resources linked, ${#tiling[@]} Java + ${#app_src[@]} app sources compiled ($n_classes classes, $warnings Kotlin warnings) against android.jar 23, framework-res 29 and the LiteRT 2.2.0 / AndroidX / kotlinx stand-ins"
[ "$warnings" = 0 ] || grep ': warning:\|^warning:' "$W/log" | sed 's/^/  /' >&2
