"""A real SMTP server (aiosmtpd) that records what llmwatch's e-mail channel delivers.

Two listeners on 127.0.0.1, both requiring AUTH (PLAIN or LOGIN) with one user and password:
  --starttls-port: plain SMTP that offers STARTTLS and refuses MAIL before it (and AUTH before
                   it: aiosmtpd's auth_require_tls);
  --smtps-port:    implicit TLS (SMTPS) from the first byte.
Each accepted message becomes DIR/NNN.json: the listener, the envelope (MAIL FROM, RCPT TO), the
AUTH login and mechanism, whether the transport was TLS (read from the socket itself, not
assumed) with its version, the headers and the parsed MIME parts.
Writes DIR/ready once both listeners accept connections; runs until killed.
"""

import argparse
import email
import email.policy
import json
import os
import signal
import ssl
import threading
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def main():
    # aiosmtpd warns that the SMTPS listener does not require TLS for AUTH (it is TLS already),
    # and about its own use of a deprecated attribute.
    warnings.simplefilter("ignore")
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--starttls-port", type=int, required=True)
    ap.add_argument("--smtps-port", type=int, required=True)
    args = ap.parse_args()

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)

    counter = {"n": 0}
    lock = threading.Lock()

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == args.user.encode()
            and auth_data.password == args.password.encode()
        )
        if ok:
            session.llmwatch_mechanism = mechanism
        # handled=False: aiosmtpd itself answers 235, or 535 on a failure.
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    class Sink:
        def __init__(self, listener):
            self.listener = listener

        async def handle_DATA(self, server, session, envelope):
            msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
            parts = []
            for part in msg.walk():
                if part.is_multipart():
                    continue
                parts.append(
                    {
                        "content_type": part.get_content_type(),
                        "charset": part.get_content_charset(),
                        "transfer_encoding": part.get("Content-Transfer-Encoding"),
                        "content": part.get_content(),
                    }
                )
            ssl_object = server.transport.get_extra_info("ssl_object")
            auth = session.auth_data
            record = {
                "listener": self.listener,
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "authenticated": bool(session.authenticated),
                "auth_login": auth.login.decode() if isinstance(auth, LoginPassword) else None,
                "auth_mechanism": getattr(session, "llmwatch_mechanism", None),
                "tls": ssl_object is not None,
                "tls_version": ssl_object.version() if ssl_object is not None else None,
                "content_type": msg.get_content_type(),
                "headers": {k: str(v) for k, v in msg.items()},
                "subject": str(msg["subject"]),
                "parts": parts,
            }
            with lock:
                counter["n"] += 1
                name = os.path.join(args.dir, "%03d.json" % counter["n"])
            with open(name + ".tmp", "w") as f:
                json.dump(record, f, indent=1, ensure_ascii=False)
            os.rename(name + ".tmp", name)  # readers never see half a file
            return "250 OK queued"

    common = dict(
        hostname="127.0.0.1",
        authenticator=authenticator,
        auth_required=True,
        server_hostname="localhost",
    )
    starttls = Controller(
        Sink("starttls"),
        port=args.starttls_port,
        tls_context=context,
        require_starttls=True,
        auth_require_tls=True,
        **common,
    )
    # Implicit TLS: the socket is TLS already, which aiosmtpd's auth_require_tls does not see.
    smtps = Controller(
        Sink("smtps"),
        port=args.smtps_port,
        ssl_context=context,
        auth_require_tls=False,
        **common,
    )
    starttls.start()
    smtps.start()
    with open(os.path.join(args.dir, "ready"), "w") as f:
        f.write("ready\n")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    starttls.stop()
    smtps.stop()


if __name__ == "__main__":
    main()
