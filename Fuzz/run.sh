#!/usr/bin/env bash
# Builds and runs the libFuzzer targets (docs/fuzzing.md).
#
#   bash Fuzz/run.sh [target|all] [runs] [extra libFuzzer flags...]
#
# Targets: resp (RESP and inline parser), command (command parsers), log (log
# segment and record decoder), snapshot (snapshot file and state decoder).
# `runs` is libFuzzer's -runs (default 10000; 0 means no limit, use
# -max_total_time=SECONDS then). FUZZ_BUILD_DIR picks another build directory
# than .build-fuzz. Each target reads its seed corpus
# Fuzz/corpus/<target>/ (new inputs go to .build-fuzz/corpus/<target>/, the
# repository's corpus stays as committed); a crash, a hang (-timeout) or an
# allocation over -malloc_limit_mb stops it with the input saved as
# .build-fuzz/artifacts/<target>/crash-* and exits non-zero.
#
# Build: the engine's modules are compiled once with coverage instrumentation
# (`swift build --build-path .build-fuzz -Xswiftc -sanitize=fuzzer`, a debug
# build: about a minute on the reference machine), then each target is linked with
# `swiftc -sanitize=fuzzer -parse-as-library` (libFuzzer provides main).
set -euo pipefail
cd "$(dirname "$0")/.."

target="${1:-all}"
runs="${2:-10000}"
shift $(( $# > 2 ? 2 : $# )) || true
extra=("$@")
# libFuzzer's "no limit" is -runs=-1 (-runs=0 would run only the corpus).
libfuzzer_runs="$runs"
[[ "$runs" == 0 ]] && libfuzzer_runs=-1

build="${FUZZ_BUILD_DIR:-.build-fuzz}"
bin="$build/fuzz-bin"
mkdir -p "$bin"
targets=(resp command log snapshot)
[[ "$target" == all ]] || targets=("$target")

need_modules=0
for t in "${targets[@]}"; do [[ "$t" == resp ]] || need_modules=1; done
if (( need_modules )); then
  echo "fuzz: building the instrumented modules ($build)"
  swift build --build-path "$build" -Xswiftc -sanitize=fuzzer --target EngineServer 2>&1 | grep -E "error|warning: |Compiling|Build" | tail -3
fi

flags=(-sanitize=fuzzer -parse-as-library -swift-version 6 -g -Onone)
modules=(-I "$build/debug/Modules" -I Sources/CLinux -I Sources/CSHA256/include)
# A Swift module's objects and its module object; a C module (CSHA256) has only the first.
objects() { for m in "$@"; do ls "$build/debug/$m.build/"*.o; [ -e "$build/debug/Modules/$m.o" ] && ls "$build/debug/Modules/$m.o"; done; }

build_target() {
  local t="$1" out="$bin/fuzz-$t"
  case "$t" in
    resp)
      # The parser's own files only: no engine build needed.
      swiftc "${flags[@]}" -module-name FuzzRESP -o "$out" Fuzz/RESPParserTarget.swift \
        Sources/EngineServer/Net/RESPParser.swift Sources/EngineServer/Net/RESPCommand.swift Sources/EngineServer/Net/NetConfig.swift ;;
    command)
      swiftc "${flags[@]}" "${modules[@]}" -module-name FuzzCommand -o "$out" Fuzz/CommandTarget.swift \
        $(objects WAL Snapshot CSHA256 AllocationEngine EngineServer) ;;
    log)
      swiftc "${flags[@]}" "${modules[@]}" -module-name FuzzLog -o "$out" Fuzz/LogTarget.swift Fuzz/FuzzSupport.swift \
        $(objects WAL Snapshot CSHA256 AllocationEngine) ;;
    snapshot)
      swiftc "${flags[@]}" "${modules[@]}" -module-name FuzzSnapshot -o "$out" Fuzz/SnapshotTarget.swift Fuzz/FuzzSupport.swift \
        $(objects WAL Snapshot CSHA256 AllocationEngine) ;;
    *) echo "unknown target $t (resp, command, log, snapshot, all)" >&2; exit 2 ;;
  esac
}

status=0
for t in "${targets[@]}"; do
  echo "fuzz: linking $t"
  build_target "$t"
  seeds="Fuzz/corpus/$t"
  mkdir -p "$seeds"
  work="$build/corpus/$t"
  artifacts="$build/artifacts/$t/"
  mkdir -p "$work" "$artifacts"
  echo "fuzz: $t, $runs runs"
  set +e
  "$bin/fuzz-$t" "$work" "$seeds" -runs="$libfuzzer_runs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
      -malloc_limit_mb=512 -artifact_prefix="$artifacts" -print_final_stats=1 "${extra[@]}" > "$build/$t.log" 2>&1
  code=$?
  set -e
  grep -E "INITED|DONE|^Done|stat::number_of_executed_units|stat::average_exec_per_sec|ERROR|SUMMARY|crash-|timeout-|oom-|leak-|Fatal error|Precondition" "$build/$t.log" | head -20
  if [[ $code -ne 0 ]]; then status=1; echo "fuzz: $t FOUND A FAILURE (exit $code; input in $artifacts, log $build/$t.log)" >&2; fi
done
exit $status
