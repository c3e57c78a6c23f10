#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# dems-verify's exit codes and messages: test_verify_cli.sh DEMS-VERIFY MKFIXTURE
# 0 valid, 1 invalid (with one line naming what and where), 2 usage errors.
set -u
# meson passes paths relative to the build directory; we cd away below.
abs() { (cd "$(dirname "$1")" && printf '%s/%s\n' "$(pwd)" "$(basename "$1")"); }
verify=$(abs "$1")
mkfixture=$(abs "$2")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$mkfixture" "$tmp" || { echo "FAIL: fixture generation"; exit 1; }
cd "$tmp" || exit 1
fails=0

# expect CODE PATTERN ARGS... : run dems-verify, check the exit code and that
# the output (stdout and stderr) matches the extended regular expression.
expect() {
    want=$1 pat=$2
    shift 2
    out=$("$verify" "$@" 2>&1)
    got=$?
    if [ "$got" -ne "$want" ] || ! printf '%s\n' "$out" | grep -Eq -- "$pat"; then
        echo "FAIL: dems-verify $* -> exit $got (want $want), output:"
        printf '%s\n' "$out" | sed 's/^/    /'
        fails=$((fails + 1))
    else
        echo "ok: exit $got: $*"
    fi
}

key=$(cat key.vkey)
other=$(cat other.vkey)

# Ledger exports.
expect 0 '^OK: 20 entries verified' ledger good.export --key "$key"
expect 0 '^OK: 20 entries verified.*pin it' ledger good.export
expect 0 '^OK: 20 entries.*fast: entries authenticated' ledger good.export --fast
expect 0 '^OK: 20 entries' ledger - --key="$key" < good.export
expect 1 '^INVALID: hash_mismatch: entry 7 \(line 9\)' ledger payload.export --key "$key"
expect 1 '^INVALID: bad_signature: entry 7 ' ledger resigned.export --key "$key"
expect 1 '^INVALID: bad_signature: entry 7 ' ledger resigned.export --fast
expect 1 '^INVALID: root_mismatch' ledger - --fast < resigned.export
expect 1 '^INVALID: hash_mismatch: entry 7 ' ledger payload.export --fast
expect 1 '^INVALID: sequence_reorder: entry 4 ' ledger swapped.export --fast
expect 1 '^INVALID: sequence_gap: entry 9 .*missing' ledger deleted.export
expect 1 '^INVALID: sequence_reorder: entry 4 .*out of order' ledger swapped.export
expect 1 '^INVALID: sequence_duplicate: entry 15 ' ledger duplicate.export
expect 1 '^INVALID: bad_signature: entry 12 \(line 14\)' ledger badsig.export
expect 1 '^INVALID: root_mismatch: ' ledger badroot.export
expect 1 '^INVALID: header: .*not the expected' ledger good.export --key "$other"
expect 2 'cannot open' ledger missing.export
expect 2 'unknown option' ledger good.export --bogus
expect 2 'not a note verifier key' ledger good.export --key nonsense
expect 2 'export file is required' ledger
expect 1 '^INVALID: bad_signature: entry 12 ' ledger badsig.export --threads 3
expect 2 'give 1 to 64' ledger good.export --threads 0

# Inclusion proofs.
set -- $(cat inclusion.args)
expect 0 '^OK: leaf .* is entry 5 of the tree of size 20' inclusion --leaf-hash "$(cat leaf5.hex)" "$@"
expect 0 '^OK: leaf .* is entry 5 ' inclusion --entry entry5.bin "$@"
expect 1 '^INVALID: the proof does not show leaf' inclusion --leaf-hash "$(cat leaf6.hex)" "$@"
expect 2 'give exactly one of' inclusion "$@"
expect 2 'expected 64 hex digits' inclusion --leaf-hash abc "$@"
expect 1 '^INVALID: index 20 is not below tree size 20' inclusion --leaf-hash "$(cat leaf5.hex)" \
    --index 20 --size 20 --root "$(cat leaf5.hex)"
expect 2 'not a decimal number' inclusion --leaf-hash "$(cat leaf5.hex)" --index -1 --size 20 \
    --root "$(cat leaf5.hex)"

# Consistency proofs.
set -- $(cat consistency.args)
expect 0 '^OK: the tree of size 7 is a prefix of the tree of size 20' consistency "$@"
expect 1 '^INVALID: the proof does not show' consistency "$@" --old 8
expect 1 '^INVALID: no consistency can be proven' consistency "$@" --old 0
expect 2 'element 1 is not 64 hex digits' consistency "$@" --proof xyz

# Checkpoints.
expect 0 '^OK: checkpoint signed by dems.test/cli: origin dems.test/cli, tree size 20' \
    checkpoint checkpoint.note --key "$key"
expect 1 '^INVALID: checkpoint.note: no valid signature' checkpoint checkpoint.note --key "$other"
expect 1 '^INVALID: .*not a well-formed checkpoint for that origin' \
    checkpoint checkpoint.note --key "$key" --origin elsewhere

# Files.
sha=$(cat blob.sha256)
expect 0 '^OK: blob.bin: SHA-256 .*1048576 bytes' file blob.bin --sha256 "$sha"
printf 'x' | dd of=blob.bin bs=1 seek=4096 conv=notrunc 2>/dev/null
expect 1 '^INVALID: blob.bin: SHA-256 is [0-9a-f]{64}, expected '"$sha" file blob.bin --sha256 "$sha"
expect 2 'sha256 is required' file blob.bin

# Help and usage.
expect 0 'usage: dems-verify COMMAND' --help
for c in ledger inclusion consistency checkpoint file; do
    expect 0 "usage: dems-verify $c" "$c" --help
done
expect 2 'unknown command' frobnicate
expect 2 'usage: dems-verify COMMAND'

[ "$fails" -eq 0 ] || { echo "$fails dems-verify checks failed"; exit 1; }
echo "all dems-verify checks passed"
