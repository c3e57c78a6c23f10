#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# run_fuzz.sh FUZZER SECONDS SEED_DIR WORK_DIR: fuzzes for SECONDS with new
# inputs kept in WORK_DIR (never in the source tree); a crash fails the test
# and leaves its input in WORK_DIR for adding to the corpus.
set -eu
fuzzer=$1; seconds=$2; seeds=$3; work=$4
mkdir -p "$work/corpus"
exec "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$work/" -print_final_stats=1 "$work/corpus" "$seeds"
