#!/usr/bin/env bash
# cli_test.sh CASE BIN DESC BAD_DESC SRC_DIR PROTO_INCLUDE_DIR
# ctest cases for portico-transcode (registered as cli.<CASE> in transcoder/CMakeLists.txt).
# Each case runs the real binary on real inputs and checks stdout, stderr and the exit status.
# Cross-checks use protoc's own --encode/--decode so the CLI is not only tested against itself.
set -u
case_name=$1 BIN=$2 DESC=$3 BAD=$4 SRC=$5 INC=$6
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL [$case_name]: $*" >&2; fails=$((fails + 1)); }
PROTOC=(protoc -I "$SRC/test/proto" -I "$SRC/protos" -I "$INC")
BOOK=pt.bookstore.Book

# run NAME EXPECTED_RC CMD... : runs CMD, stdout -> $T/NAME.out, stderr -> $T/NAME.err
run() {
  local name=$1 want=$2; shift 2
  "$@" >"$T/$name.out" 2>"$T/$name.err"
  local rc=$?
  [ "$rc" -eq "$want" ] || fail "$name: exit $rc, want $want; stderr: $(head -c 400 "$T/$name.err")"
}
same() { # same NAME GOT WANT
  [ "$2" == "$3" ] || fail "$1:"$'\n'"  got  $2"$'\n'"  want $3"
}
contains() { # contains NAME FILE TEXT
  grep -qF -- "$3" "$2" || fail "$1: '$3' not in: $(head -c 600 "$2")"
}

case "$case_name" in
roundtrip)
  # JSON -> binary (ours) -> protoc --decode
  json='{"name":"shelves/1/books/2","title":"Été","genre":"SCIENCE","tags":["a","b"],"labels":{"k":"v"},"updateTime":"2024-02-29T12:00:00.500Z","pages":"9007199254740993"}'
  printf '%s' "$json" | run enc 0 "$BIN" -d "$DESC" --type $BOOK --to-binary
  "${PROTOC[@]}" --decode=$BOOK "$SRC/test/proto/bookstore_http.proto" <"$T/enc.out" >"$T/decoded.txt" 2>&1 \
    || fail "protoc cannot decode our binary: $(cat "$T/decoded.txt")"
  contains decode "$T/decoded.txt" 'pages: 9007199254740993'
  contains decode "$T/decoded.txt" 'genre: SCIENCE'
  contains decode "$T/decoded.txt" 'nanos: 500000000'
  # binary -> JSON (ours) gives back the same JSON
  run dec 0 "$BIN" -d "$DESC" --type $BOOK --to-json <"$T/enc.out"
  same roundtrip "$(cat "$T/dec.out")" "$json"
  # protoc --encode (text format) -> binary -> JSON (ours)
  printf 'title: "x"\ngenre: FICTION\npages: -3\nlabels { key: "a" value: "b" }\n' \
    | "${PROTOC[@]}" --encode=$BOOK "$SRC/test/proto/bookstore_http.proto" >"$T/p.bin"
  run fromprotoc 0 "$BIN" -d "$DESC" --type $BOOK --to-json <"$T/p.bin"
  same fromprotoc "$(cat "$T/fromprotoc.out")" '{"title":"x","genre":"FICTION","labels":{"a":"b"},"pages":"-3"}'
  # several descriptor sets (overlapping files are accepted when identical)
  run twosets 0 "$BIN" -d "$DESC" -d "$DESC" --type $BOOK --to-json <"$T/p.bin"
  ;;
flags)
  printf 'genre: FICTION\ntitle: "t"\n' \
    | "${PROTOC[@]}" --encode=$BOOK "$SRC/test/proto/bookstore_http.proto" >"$T/p.bin"
  run plain 0 "$BIN" -d "$DESC" --type $BOOK --to-json <"$T/p.bin"
  same plain "$(cat "$T/plain.out")" '{"title":"t","genre":"FICTION"}'
  run ints 0 "$BIN" -d "$DESC" --type $BOOK --to-json --enums-as-ints <"$T/p.bin"
  same ints "$(cat "$T/ints.out")" '{"title":"t","genre":1}'
  run defaults 0 "$BIN" -d "$DESC" --type $BOOK --to-json --emit-defaults --proto-names <"$T/p.bin"
  same defaults "$(cat "$T/defaults.out")" '{"name":"","title":"t","author":"","genre":"FICTION","tags":[],"labels":{},"pages":"0"}'
  echo '{"update_time":"2024-01-01T00:00:00Z","genre":"fiction"}' \
    | run ci 0 "$BIN" -d "$DESC" --type $BOOK --to-binary --enum-case-insensitive
  echo '{"genre":"fiction"}' | run nocase 1 "$BIN" -d "$DESC" --type $BOOK --to-binary
  contains nocase "$T/nocase.err" 'genre'
  echo '{"title":"t","zzz":1}' | run unknown 1 "$BIN" -d "$DESC" --type $BOOK --to-binary
  contains unknown "$T/unknown.err" 'zzz'
  echo '{"title":"t","zzz":1}' | run ignore 0 "$BIN" -d "$DESC" --type $BOOK --to-binary --ignore-unknown
  run ignore-check 0 "$BIN" -d "$DESC" --type $BOOK --to-json <"$T/ignore.out"
  same ignore "$(cat "$T/ignore-check.out")" '{"title":"t"}'
  # --max-depth: Filter inside ListBooksRequest is depth 2
  echo '{"filter":{"author":"a"}}' | run depth1 1 "$BIN" -d "$DESC" --type pt.bookstore.ListBooksRequest --to-binary --max-depth 1
  echo '{"filter":{"author":"a"}}' | run depth2 0 "$BIN" -d "$DESC" --type pt.bookstore.ListBooksRequest --to-binary --max-depth 8
  ;;
errors)
  echo '{"pages":"many"}' | run badval 1 "$BIN" -d "$DESC" --type $BOOK --to-binary
  contains badval "$T/badval.err" 'pages:'
  echo '{"tags":["a",3]}' | run badelem 1 "$BIN" -d "$DESC" --type $BOOK --to-binary
  contains badelem "$T/badelem.err" 'tags[1]'
  echo '{"title":' | run syntax 1 "$BIN" -d "$DESC" --type $BOOK --to-binary
  printf '\x0a\x7f\x01' | run corrupt 1 "$BIN" -d "$DESC" --type $BOOK --to-json
  [ -s "$T/corrupt.err" ] || fail "corrupt: no message on stderr"
  printf '\x08' | run truncvarint 1 "$BIN" -d "$DESC" --type $BOOK --to-json
  echo '{}' | run notype 1 "$BIN" -d "$DESC" --type pt.bookstore.Nope --to-binary
  contains notype "$T/notype.err" 'pt.bookstore.Nope'
  run nofile 1 "$BIN" -d "$T/missing.pb" --list
  contains nofile "$T/nofile.err" 'missing.pb'
  printf 'garbage' >"$T/garbage.pb"
  run badset 1 "$BIN" -d "$T/garbage.pb" --list
  run noset 2 "$BIN" --list
  run nomode 2 "$BIN" -d "$DESC"
  run twomodes 2 "$BIN" -d "$DESC" --list --to-json
  run needtype 2 "$BIN" -d "$DESC" --to-json
  run baddepth 2 "$BIN" -d "$DESC" --type $BOOK --to-json --max-depth x
  run badopt 2 "$BIN" -d "$DESC" --frobnicate
  run help 0 "$BIN" --help
  contains help "$T/help.out" '--to-binary'
  ;;
list)
  run list 0 "$BIN" -d "$DESC" --list --default-bindings
  contains list "$T/list.out" 'service pt.bookstore.Bookstore'
  contains list "$T/list.out" 'rpc Chat(stream pt.bookstore.Book) returns (stream pt.bookstore.Book)  [bidi streaming]'
  contains list "$T/list.out" 'GET /v1/books  (additional binding)'
  contains list "$T/list.out" 'PATCH /v1/{book.name=shelves/*/books/*}  body=book'
  contains list "$T/list.out" 'PUT /v1/files/{name=**}  body=file (raw HttpBody)'
  contains list "$T/list.out" 'PURGE /v1/{name=shelves/*}'
  contains list "$T/list.out" 'POST /pt.bookstore.Bookstore/NoRule  body=*  (default binding)'
  run nodefault 0 "$BIN" -d "$DESC" --list
  contains nodefault "$T/nodefault.out" '(no HTTP binding)'
  run onesvc 0 "$BIN" -d "$DESC" --list --service pt.bookstore.Admin
  grep -q Bookstore "$T/onesvc.out" && fail "onesvc: Bookstore listed"
  contains onesvc "$T/onesvc.out" 'POST /admin:reset  body=*'
  run bad 1 "$BIN" -d "$BAD" --list
  contains bad "$T/bad.out" '(HTTP bindings not shown: the route table has errors'
  contains bad "$T/bad.out" 'rpc Fine(pt.badhttp.Req) returns (pt.badhttp.Req)  [unary]'
  contains bad "$T/bad.err" "pt.badhttp.Bad.BadTemplate: GET /v1/{name=**}/x: column 15: '**' must be the last segment"
  contains bad "$T/bad.err" 'pt.badhttp.Bad.UnknownBody: POST /v1/ub: body field "missing" is not a field of pt.badhttp.Req'
  [ "$(wc -l <"$T/bad.err")" -eq 6 ] || fail "bad: want 6 errors, got $(cat "$T/bad.err")"
  ;;
match)
  run get 0 "$BIN" -d "$DESC" --match GET '/v1/shelves/3/books?tags=a&tags=b&filter.genre=FICTION&labels[env]=prod&updatedAfter=2024-01-01T00:00:00Z'
  contains get "$T/get.out" 'method: pt.bookstore.Bookstore.ListBooks'
  contains get "$T/get.out" 'var shelf = "3"'
  contains get "$T/get.out" 'request pt.bookstore.ListBooksRequest: {"shelf":"3","filter":{"genre":"FICTION"},"tags":["a","b"],"labels":{"env":"prod"},"updatedAfter":"2024-01-01T00:00:00Z"}'
  echo '{"title":"T"}' >"$T/body.json"
  run post 0 "$BIN" -d "$DESC" --match PATCH '/v1/shelves/1/books/2' --body "$T/body.json"
  contains post "$T/post.out" '{"book":{"name":"shelves/1/books/2","title":"T"}}'
  printf 'PNG' >"$T/body.bin"
  run upload 0 "$BIN" -d "$DESC" --match PUT '/v1/files/a/b.png' --body "$T/body.bin" --content-type image/png
  contains upload "$T/upload.out" '{"name":"a/b.png","file":{"contentType":"image/png","data":"UE5H"}}'
  run e405 1 "$BIN" -d "$DESC" --match PUT '/v1/shelves/3/books/4'
  contains e405 "$T/e405.err" '405 method not allowed; allowed: GET DELETE PATCH'
  run e404 1 "$BIN" -d "$DESC" --match GET '/v2/x'
  contains e404 "$T/e404.err" '404'
  run e400path 1 "$BIN" -d "$DESC" --match GET '/v1/shelves/%2e%2e/books'
  contains e400path "$T/e400path.err" "400 '.' or '..' path segment"
  run e400 1 "$BIN" -d "$DESC" --match GET '/v1/shelves/x/books?pageSize=big&zz=1'
  contains e400 "$T/e400.err" 'the request has 3 problem(s)'
  contains e400 "$T/e400.err" 'shelf: invalid int64 value: x'
  contains e400 "$T/e400.err" 'zz: unknown field'
  run star 1 "$BIN" -d "$DESC" --match POST '/v1/shelves?theme=x' --body "$T/body.json"
  contains star "$T/star.err" 'theme: query parameters are not accepted'
  run usage 2 "$BIN" -d "$DESC" --match GET
  ;;
*)
  echo "unknown case $case_name" >&2
  exit 2
  ;;
esac
[ "$fails" -eq 0 ] || exit 1
echo "cli.$case_name: ok"
