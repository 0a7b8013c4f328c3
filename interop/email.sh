#!/usr/bin/env bash
# E-mail alert channel against a real SMTP server: interop/smtp_sink.py (aiosmtpd) requires AUTH
# and TLS, on a STARTTLS port and an implicit-TLS (SMTPS) port, with a certificate from a
# self-signed CA that llmwatch trusts through the channel's `ca_file`. For each way in, `llmwatch alerts test`
# must deliver the test notification exactly once: envelope sender and recipients, the AUTH
# user, TLS on, the subject, a text/plain and an HTML part (escaped). Then what must fail does:
# a wrong password (rejected, not retried, never printed) and a certificate llmwatch does not
# trust (nothing sent).
# Usage: interop/email.sh [LLMWATCH_BINARY]  (default: builds target/release/llmwatch)
# Makes its own virtualenv (cached under target/, keyed by requirements-email.txt; EMAIL_VENV=DIR
# overrides). Needs python3 (with venv), openssl, jq.
set -euo pipefail
bin_arg=${1:+$(realpath "$1")}
cd "$(dirname "$0")/.."

source interop/lib.sh
need_apt=()
command -v openssl >/dev/null || need_apt+=(openssl)
command -v jq >/dev/null || need_apt+=(jq)
[ ${#need_apt[@]} -eq 0 ] || apt_install "${need_apt[@]}"

llmwatch_bin "$bin_arg"

python_venv interop/requirements-email.txt email "${EMAIL_VENV:-}"

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

pass=0; fail=0
check() { # name, expected, actual
  if [ "$2" = "$3" ]; then pass=$((pass+1)); echo "ok   $1"; else fail=$((fail+1)); echo "FAIL $1: expected $2, got $3"; fi
}

# A private relay's certificates: a self-signed CA (what `ca_file` names) and the server's
# certificate it signs, valid for localhost and 127.0.0.1. (rustls, like browsers, refuses a
# CA certificate as the server's own, so the server does not present the CA itself.)
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -days 2 -subj "/CN=llmwatch interop CA" \
  -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req "${ec[@]}" -subj /CN=localhost -keyout "$work/key.pem" -out "$work/server.csr" 2>/dev/null
printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
  "keyUsage=digitalSignature" "extendedKeyUsage=serverAuth" >"$work/server.ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -days 2 -extfile "$work/server.ext" -out "$work/cert.pem" 2>/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
starttls_port=$(free_port)
smtps_port=$(free_port)
user=alerts
password='s3cret/p@ss' # '/' and '@' must be percent-encoded in the URL
password_url='s3cret%2Fp%40ss'
mkdir "$work/mail"
"$py" interop/smtp_sink.py --dir "$work/mail" --cert "$work/cert.pem" --key "$work/key.pem" \
  --user "$user" --password "$password" --starttls-port "$starttls_port" --smtps-port "$smtps_port" \
  2>"$work/sink.err" & pids+=($!)
for _ in $(seq 100); do [ -f "$work/mail/ready" ] && break; sleep 0.1; done
if [ ! -f "$work/mail/ready" ]; then
  echo "FAIL smtp_sink.py did not start"; sed 's/^/     | /' "$work/sink.err" | tail -20
  echo "email interop: $pass passed, $((fail + 1)) failed"; exit 1
fi

delivered() { find "$work/mail" -name '*.json' | wc -l; }
config() { # file, smtp_url, [ca_file]
  cat >"$1" <<TOML
[channels.mail]
type = "email"
smtp_url = "$2"
from = "llmwatch alerts <alerts@example.com>"
to = ["oncall@example.com", "Team <team@example.com>"]
${3:+ca_file = \"$3\"}
TOML
}
run_test() { # config -> sets rc, out
  rc=0
  LLMWATCH_LOG=warn "$bin" alerts test mail --config "$1" >"$work/out" 2>&1 || rc=$?
  out=$(cat "$work/out")
}

for mode in starttls opportunistic smtps; do
  case $mode in
    starttls) url="smtp://$user:$password_url@127.0.0.1:$starttls_port" listener=starttls ;;
    opportunistic) url="smtp://$user:$password_url@127.0.0.1:$starttls_port?tls=opportunistic" listener=starttls ;;
    smtps) url="smtps://$user:$password_url@localhost:$smtps_port" listener=smtps ;;
  esac
  config "$work/$mode.toml" "$url" "$work/ca.pem"
  before=$(delivered)
  run_test "$work/$mode.toml"
  check "$mode: llmwatch alerts test exits 0" 0 "$rc"
  [ "$rc" = 0 ] || sed 's/^/     | /' "$work/out" | tail -10
  check "$mode: delivered once" 1 "$(( $(delivered) - before ))"
  msg=$(find "$work/mail" -name '*.json' | sort | tail -1)
  [ -n "$msg" ] || msg=/dev/null
  j() { jq -r "$1" "$msg" 2>/dev/null || echo "(no message)"; }
  check "$mode: received on the $listener listener" "$listener" "$(j .listener)"
  check "$mode: envelope from" alerts@example.com "$(j .mail_from)"
  check "$mode: envelope to" "oncall@example.com team@example.com" "$(j '.rcpt_tos | join(" ")')"
  check "$mode: authenticated as $user (password percent-decoded)" "true $user" "$(j '"\(.authenticated) \(.auth_login)"')"
  check "$mode: TLS on" true "$(j .tls)"
  check "$mode: From header" "llmwatch alerts <alerts@example.com>" "$(j '.headers.From')"
  check "$mode: To header names both" "2" "$(j '.headers.To | [scan("@example.com")] | length')"
  check "$mode: Date and Message-ID headers" "true true" \
    "$(j '"\(.headers | has("Date")) \(.headers["Message-ID"] // "" | test("^<.+@.+>$"))"')"
  check "$mode: Subject has llmwatch and FIRING" "true true" \
    "$(j '.subject | "\(contains("llmwatch")) \(contains("FIRING"))"')"
  check "$mode: multipart/alternative with text/plain and text/html" "multipart/alternative text/plain text/html" \
    "$(j '"\(.content_type) \([.parts[].content_type] | join(" "))"')"
  check "$mode: the text part has the expression as is" true \
    "$(j '[.parts[] | select(.content_type == "text/plain") | .content | contains("test_value > 0")] | any')"
  check "$mode: the HTML part escapes it" "true false" \
    "$(j '[.parts[] | select(.content_type == "text/html") | .content] | first // "" | "\(contains("test_value &gt; 0")) \(contains("test_value > 0"))"')"
  check "$mode: the HTML part escapes quotes" true \
    "$(j '[.parts[] | select(.content_type == "text/html") | .content] | first // "" | contains("&quot;mail&quot;")')"
  check "$mode: the password is not printed" 0 "$(grep -c -e "$password" -e "$password_url" <<<"$out" || true)"
done

# A wrong password: the server's 535 is permanent (one attempt), and nothing is delivered.
config "$work/wrong.toml" "smtps://$user:wrong-password-42@127.0.0.1:$smtps_port" "$work/ca.pem"
before=$(delivered)
run_test "$work/wrong.toml"
check "wrong password: exits 1" 1 "$rc"
check "wrong password: nothing delivered" 0 "$(( $(delivered) - before ))"
check "wrong password: the server's 535 is reported" yes "$(grep -q '535' <<<"$out" && echo yes || echo no)"
check "wrong password: one attempt (permanent failure)" 0 "$(grep -c '^attempt 2' <<<"$out" || true)"
check "wrong password: the password is not printed" 0 "$(grep -c 'wrong-password-42' <<<"$out" || true)"

# Without ca_file the private CA is not trusted: the TLS handshake fails before
# AUTH (for STARTTLS too: no downgrade to plain text), nothing is sent.
config "$work/untrusted.toml" "smtp://$user:$password_url@127.0.0.1:$starttls_port"
before=$(delivered)
run_test "$work/untrusted.toml"
check "untrusted certificate: exits 1" 1 "$rc"
check "untrusted certificate: nothing delivered" 0 "$(( $(delivered) - before ))"
check "untrusted certificate: reported as a TLS certificate error" yes \
  "$(grep -i 'tls' <<<"$out" | grep -qi 'certificate' && echo yes || echo no)"
check "untrusted certificate: one attempt (not retried)" 0 "$(grep -c '^attempt 2' <<<"$out" || true)"

if [ "$fail" -ne 0 ]; then sed 's/^/     | sink: /' "$work/sink.err" | tail -20; fi
echo "email interop: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
