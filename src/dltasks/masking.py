"""Secret masking: one rule for which names are secret, one way to hide their values."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

MASK = "****"
_SECRET_NAME = re.compile(
    r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|AUTH|PRIVATE|COOKIE|SESSION)",
    re.IGNORECASE,
)


def is_secret_name(name: str) -> bool:
    """Whether an environment/setting name looks like it holds a secret (API_KEY, HF_TOKEN...)."""
    return bool(_SECRET_NAME.search(name))


def mask(value: str) -> str:
    return MASK if value else value


def mask_env(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``env`` with the values of secret-looking names masked."""
    return {k: (mask(v) if is_secret_name(k) else v) for k, v in env.items()}


def secret_values(env: Mapping[str, str]) -> list[str]:
    """The values to scrub from any text we print or write (longest first, 4+ chars)."""
    vals = {v for k, v in env.items() if is_secret_name(k) and len(v) >= 4}
    return sorted(vals, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret value in ``text`` with the mask."""
    for s in secrets:
        text = text.replace(s, MASK)
    return text
