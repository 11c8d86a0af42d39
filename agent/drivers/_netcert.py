"""The expiry date of an X.509 certificate, read straight from its DER bytes.

Enough DER to walk Certificate → tbsCertificate → validity → notAfter, so the
gateway needs no crypto library to say how many days a site's certificate has
left, whether or not it was verified.
"""

from datetime import UTC, datetime


class CertError(ValueError):
    pass


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the element at ``pos``."""
    if pos + 2 > len(data):
        raise CertError("truncated certificate")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise CertError("bad length in certificate")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise CertError("truncated certificate")
    return tag, pos, pos + length


def _time(tag: int, text: bytes) -> datetime:
    try:
        raw = text.decode("ascii")
        if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ; years 50-99 are 19xx
            year = int(raw[:2])
            raw = f"{1900 + year if year >= 50 else 2000 + year}{raw[2:]}"
        elif tag != 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
            raise CertError(f"unexpected time tag 0x{tag:02x}")
        return datetime.strptime(raw, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CertError(f"bad certificate time {text!r}") from exc


def not_after(der: bytes) -> datetime:
    """The certificate's ``notAfter`` (UTC); raises CertError on malformed input."""
    tag, start, _end = _tlv(der, 0)
    if tag != 0x30:
        raise CertError("not a certificate")
    tag, pos, tbs_end = _tlv(der, start)
    if tag != 0x30:
        raise CertError("no tbsCertificate")
    fields: list[tuple[int, int, int]] = []
    while pos < tbs_end and len(fields) < 6:
        tag, content, end = _tlv(der, pos)
        fields.append((tag, content, end))
        pos = end
    if fields and fields[0][0] == 0xA0:  # [0] version, present for v2/v3
        fields = fields[1:]
    if len(fields) < 4 or fields[3][0] != 0x30:  # serial, signature, issuer, validity
        raise CertError("no validity in certificate")
    _tag, pos, validity_end = fields[3]
    tag, content, end = _tlv(der, pos)  # notBefore
    tag, content, end = _tlv(der, end)  # notAfter
    if end > validity_end:
        raise CertError("bad validity in certificate")
    return _time(tag, der[content:end])
