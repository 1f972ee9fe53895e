#!/usr/bin/env bash
# cli_xml_test.sh CASE BIN XML_TEST_DIR
# ctest cases for portico-transcode's XML modes (cli.xml_<CASE> in transcoder/CMakeLists.txt):
# the real binary on test/xml/crm.wsdl; stdout, stderr and exit status checked. The envelopes it
# builds are also checked with xmllint (well-formed, and the namespaces as declared).
set -u
case_name=$1 BIN=$2 DIR=$3
W=$DIR/crm.wsdl
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL [$case_name]: $*" >&2; fails=$((fails + 1)); }
run() { # run NAME EXPECTED_RC CMD...
  local name=$1 want=$2; shift 2
  "$@" >"$T/$name.out" 2>"$T/$name.err"
  local rc=$?
  [ "$rc" -eq "$want" ] || fail "$name: exit $rc, want $want; stderr: $(head -c 400 "$T/$name.err")"
}
same() { [ "$2" == "$3" ] || fail "$1:"$'\n'"  got  $2"$'\n'"  want $3"; }
contains() { grep -qF -- "$3" "$2" || fail "$1: '$3' not in: $(head -c 600 "$2")"; }

case "$case_name" in
list)
  run list 0 "$BIN" --wsdl "$W" --list
  contains list "$T/list.out" 'service Crm port CrmSoap12 (SOAP 1.2, binding CrmSoap12) at http://localhost:8080/crm/v1.2'
  contains list "$T/list.out" '  Add (rpc/literal) action "urn:calc:Add"'
  contains list "$T/list.out" '    fields: id! withAddresses fields[]'
  contains list "$T/list.out" 'content-type: application/soap+xml; charset=utf-8; action="urn:crm:GetCustomer"'
  run missing 1 "$BIN" --wsdl "$T/nope.wsdl" --list
  contains missing "$T/missing.err" "nope.wsdl: cannot read"
  sed 's#schemaLocation="common.xsd"#schemaLocation="http://127.0.0.1:1/common.xsd"#' "$W" >"$T/net.wsdl"
  run net 1 "$BIN" --wsdl "$T/net.wsdl" --list
  contains net "$T/net.err" 'net.wsdl:11: import of "http://127.0.0.1:1/common.xsd" refused: only local files may be imported (no network)'
  ;;
envelope)
  printf '%s' '{"fields":["x"],"id":"12"}' | run env 0 "$BIN" --wsdl "$W" --port CrmSoap11 --op GetCustomer --to-envelope --bind id=7
  xmllint --noout "$T/env.out" || fail "xmllint refuses our envelope"
  same env "$(xmllint --xpath 'string(//*[local-name()="id" and namespace-uri()="urn:portico:test:crm"])' "$T/env.out")" "7"
  same order "$(xmllint --xpath 'name(//*[local-name()="GetCustomer"]/*[1])' "$T/env.out")" "ns1:id"
  printf '%s' '{"id":"x","nope":1}' | run bad 1 "$BIN" --wsdl "$W" --port CrmSoap11 --op GetCustomer --to-envelope
  contains bad "$T/bad.err" 'portico-transcode: id: value "x" is not an integer (xs:long)'
  contains bad "$T/bad.err" 'portico-transcode: nope: unknown field'
  run amb 1 "$BIN" --wsdl "$W" --op GetCustomer --to-envelope </dev/null
  contains amb "$T/amb.err" 'SOAP ports match, give service: and/or port:'
  printf secret >"$T/pw"
  printf '{"id":1}' | run wsse 0 "$BIN" --wsdl "$W" --port CrmSoap12 --op GetCustomer --to-envelope --wsse-user u --wsse-password-file "$T/pw"
  contains wsse "$T/wsse.out" '<wsse:Username>u</wsse:Username>'
  contains wsse "$T/wsse.out" 'PasswordText">secret</wsse:Password>'
  ;;
response)
  E='<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
  printf '%s' "$E"'<m:AddResponse xmlns:m="urn:portico:test:calc"><sum>9007199254740993</sum></m:AddResponse></s:Body></s:Envelope>' \
    | run out 0 "$BIN" --wsdl "$W" --service Calc --op Add --from-envelope
  same out "$(cat "$T/out.out")" '{"sum":"9007199254740993"}'
  printf '%s' "$E"'<s:Fault><faultcode>s:Client</faultcode><faultstring>no</faultstring></s:Fault></s:Body></s:Envelope>' \
    | run fault 1 "$BIN" --wsdl "$W" --service Calc --op Add --from-envelope
  same fault "$(cat "$T/fault.out")" '{"error":{"code":"Client","message":"no"}}'
  contains fault "$T/fault.err" 'fault Client: HTTP 400'
  printf '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>' \
    | run xxe 1 "$BIN" --wsdl "$W" --service Calc --op Add --from-envelope
  contains xxe "$T/xxe.err" 'HTTP 502: upstream answer refused: line 1 column 1: a DOCTYPE is not accepted'
  [ -s "$T/xxe.out" ] && fail "xxe: output written"
  ;;
generic)
  printf '<a x="1"><b>1</b><b>2</b></a>' | run x2j 0 "$BIN" --xml-to-json
  same x2j "$(cat "$T/x2j.out")" '{"a":{"@x":"1","b":["1","2"]}}'
  run j2x 0 "$BIN" --json-to-xml <"$T/x2j.out"
  same j2x "$(tail -n +2 "$T/j2x.out")" '<a x="1"><b>1</b><b>2</b></a>'
  printf '{"a b":1}' | run badkey 1 "$BIN" --json-to-xml
  contains badkey "$T/badkey.err" 'a b: key is not an XML name'
  ;;
*) fail "unknown case" ;;
esac
[ "$fails" -eq 0 ]
