"""Schemathesis hooks for liutong's OpenAPI document.

liutong's schemas use one format of their own, `age-recipient` (an age X25519 recipient: Bech32
with the human-readable part "age" over a 32-byte key, checksum included). The server checks it
in the schema; this teaches the fuzzer to generate valid ones, so schema-valid requests carry
real recipients.
"""

import schemathesis
from hypothesis import strategies as st

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _polymod(values):
    generator = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            checksum ^= generator[i] if ((top >> i) & 1) else 0
    return checksum


def _bech32(hrp, data):
    # 8-bit bytes to 5-bit groups, padded.
    acc, bits, words = 0, 0, []
    for byte in data:
        acc = (acc << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            words.append((acc >> bits) & 31)
    if bits:
        words.append((acc << (5 - bits)) & 31)
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    polymod = _polymod(expanded + words + [0] * 6) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[w] for w in words + checksum)


def age_recipient(key: bytes) -> str:
    return _bech32("age", key)


schemathesis.openapi.format(
    "age-recipient", st.binary(min_size=32, max_size=32).map(age_recipient)
)


# A unified social credit code (GB 32100-2015), format `credit-code`: 17 characters of its set
# (positions 3-8 digits) and the check character over them.
_CREDIT_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def credit_code(head: str) -> str:
    total = sum(_CREDIT_CHARSET.index(c) * pow(3, i, 31) for i, c in enumerate(head))
    return head + _CREDIT_CHARSET[(31 - total % 31) % 31]


_credit_heads = st.tuples(
    st.text(_CREDIT_CHARSET, min_size=2, max_size=2),
    st.text("0123456789", min_size=6, max_size=6),
    st.text(_CREDIT_CHARSET, min_size=9, max_size=9),
).map("".join)

schemathesis.openapi.format("credit-code", _credit_heads.map(credit_code))
