#!/usr/bin/env python3
"""Summarises one testssl.sh JSON report (scripts/tls-audit.sh) and fails (exit 1) on any
finding about the TLS configuration itself that is not OK or INFO: protocols, ciphers, forward
secrecy, cipher order, renegotiation, compression and the known protocol vulnerabilities. A
check that could not run (WARN) in those families fails too. Findings about the certificate
(a development certificate from `gen-cert`) and about HTTP response headers are listed but do
not fail the audit; docs/tls-audit.md says why each is expected.
"""
import json
import re
import sys

# testssl.sh 3.0 ids of the checks that judge the TLS configuration.
TLS_CONFIG = re.compile(
    r"^(SSLv2|SSLv3|TLS1|TLS1_1|TLS1_2|TLS1_3|cipherlist_.*|PFS.*|cipher_order|"
    r"secure_renego|secure_client_renego|CRIME_TLS|BREACH|heartbleed|CCS|ticketbleed|ROBOT|"
    r"POODLE_SSL|fallback_SCSV|SWEET32|FREAK|DROWN|LOGJAM.*|BEAST|LUCKY13|RC4)$"
)
SHOWN = [
    "SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3", "ALPN_HTTP2",
    "cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW",
    "cipherlist_3DES_IDEA", "cipherlist_AVERAGE", "cipherlist_STRONG", "PFS", "PFS_ECDHE_curves",
    "cipher_order", "cipherorder_TLSv1_2", "cipherorder_TLSv1_3", "secure_renego",
    "secure_client_renego", "CRIME_TLS", "BREACH", "heartbleed", "CCS", "ticketbleed", "ROBOT",
    "POODLE_SSL", "fallback_SCSV", "SWEET32", "FREAK", "DROWN", "LOGJAM", "BEAST", "LUCKY13",
    "RC4", "cert_signatureAlgorithm", "cert_keySize",
]
GOOD = {"OK", "INFO"}


def main(path):
    findings = json.load(open(path))
    by_id = {f["id"]: f for f in findings}
    print(f"  {'check':<24} {'severity':<8} finding")
    for check in SHOWN:
        f = by_id.get(check)
        if f:
            print(f"  {check:<24} {f['severity']:<8} {f['finding'][:90]}")
    failed = [f for f in findings if TLS_CONFIG.match(f["id"]) and f["severity"] not in GOOD]
    other = [
        f for f in findings
        if not TLS_CONFIG.match(f["id"]) and f["severity"] not in GOOD
        and not f["id"].startswith("clientsimulation")
    ]
    sims = [f for f in findings if f["id"].startswith("clientsimulation")]
    connected = [f for f in sims if f["finding"].startswith("TLS")]
    print(f"  client simulations: {len(connected)} of {len(sims)} clients connected")
    for f in other:
        print(f"  (not TLS configuration) {f['id']} {f['severity']}: {f['finding'][:90]}")
    for f in failed:
        print(f"  FAILED {f['id']} {f['severity']}: {f['finding']}")
    print(f"  TLS configuration: {'FAILED' if failed else 'no weak protocol, cipher, renegotiation or compression finding'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
