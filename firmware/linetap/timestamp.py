"""RFC 3161 trusted time-stamps: the only module that imports ``rfc3161_client`` (and
``cryptography``, for the certificates a verifier trusts).

With ``[evidence] tsa_url`` set, each new signed checkpoint is also sent to that time-stamping
authority (:mod:`linetap.evidence.timestamps`): the TSA signs "this hash existed at time T"
with its own key, so the checkpoint's time no longer rests on the box's clock alone.

The request carries the SHA-256 of the checkpoint's signed message, a random nonce and asks
for the TSA's certificate; the reply is accepted only if it is granted, for that hash, with
that nonce. The token is kept as DER: anyone can check it later with ``openssl ts -verify``
or :func:`verify` and the TSA's root certificate.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime

import rfc3161_client as tsp
from cryptography import x509

MAX_REPLY_BYTES = 64 * 1024  # a token with its certificate is 2-6 KiB
GRANTED = (0, 1)  # PKIStatus granted, grantedWithMods


class TimestampError(Exception):
    """The TSA could not be reached, refused, or answered something else than asked."""


@dataclass(frozen=True, slots=True)
class Stamp:
    token_der: bytes  # the TimeStampResp as received
    gen_time: datetime  # the TSA's time


def request(url: str, message: bytes, *, timeout_s: float) -> Stamp:
    """Time-stamp ``message`` (its SHA-256) at the TSA ``url`` (HTTP POST, RFC 3161 section 3.4)."""
    req = (tsp.TimestampRequestBuilder().data(message).hash_algorithm(tsp.HashAlgorithm.SHA256)
           .nonce(nonce=True).cert_request(cert_request=True).build())
    http = urllib.request.Request(url, data=req.as_bytes(), method="POST",
                                  headers={"Content-Type": "application/timestamp-query",
                                           "Accept": "application/timestamp-reply"})
    try:
        with urllib.request.urlopen(http, timeout=timeout_s) as reply:  # noqa: S310 - an http(s) URL (config)
            body = reply.read(MAX_REPLY_BYTES + 1)
    except (urllib.error.URLError, OSError) as e:
        raise TimestampError(f"{url}: {getattr(e, 'reason', e)}") from e
    if len(body) > MAX_REPLY_BYTES:
        raise TimestampError(f"{url}: reply larger than {MAX_REPLY_BYTES} bytes")
    try:
        resp = tsp.decode_timestamp_response(body)
    except ValueError as e:
        raise TimestampError(f"{url}: not a time-stamp reply: {e}") from e
    if resp.status not in GRANTED:
        raise TimestampError(f"{url}: refused (status {resp.status})")
    info = resp.tst_info
    if info.nonce != req.nonce or info.message_imprint.message != hashlib.sha256(message).digest():
        raise TimestampError(f"{url}: the reply is for another request")
    return Stamp(body, info.gen_time)


def verify(token_der: bytes, message: bytes, root_pem: bytes) -> datetime:
    """The TSA's time for ``message`` if ``token_der`` is a valid time-stamp of it under ``root_pem``."""
    try:
        resp = tsp.decode_timestamp_response(token_der)
        root = x509.load_pem_x509_certificate(root_pem)
        tsp.VerifierBuilder().add_root_certificate(root).build().verify_message(resp, message)
    except (ValueError, tsp.VerificationError) as e:
        raise TimestampError(f"the time-stamp does not verify: {e}") from e
    return resp.tst_info.gen_time
