"""
Certificates made on the spot for tests that speak TLS to a real server: a CA of the test's
own (trustme), and a certificate it issued for C{localhost} and C{127.0.0.1}.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme


def serverCertificate(directory: Path) -> tuple[Path, Path, ssl.SSLContext]:
    """
    Write a server's key and certificate chain into C{directory}, and the certificate of the
    authority that issued them as C{ca.pem} (what a client is told to trust).

    @return: the key's path, the chain's path (for an C{ssl:} endpoint's C{privateKey} and
        C{certKey}), and a client context that trusts the CA that issued them.
    """
    authority = trustme.CA()
    certificate = authority.issue_cert("localhost", "127.0.0.1")
    key, chain = directory / "key.pem", directory / "chain.pem"
    certificate.private_key_pem.write_to_path(str(key))
    certificate.cert_chain_pems[0].write_to_path(str(chain))
    authority.cert_pem.write_to_path(str(directory / "ca.pem"))
    context = ssl.create_default_context()
    authority.configure_trust(context)
    return key, chain, context
