"""Secret masking: one rule for which values are secret, one way to hide them.

A value is secret when its name looks secret (``HF_TOKEN``, ``API_KEY``, ``DLT_SUDO_PASSWORD``)
and, whatever its name, the password part of a URL (``postgres://u:pw@db/x``). Text we print or
write (dry runs, records, logs) goes through :func:`scrub`, which hides both: the known secret
values and any URL's password, even one we were never told about.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

MASK = "****"
_SECRET_NAME = re.compile(
    r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|AUTH|PRIVATE|COOKIE|SESSION)",
    re.IGNORECASE,
)
#: A URL's userinfo (RFC 3986): ``scheme://`` (group 1), the user (2), ``:password`` (3), up to
#: the last ``@`` before the host (passwords may hold ``@`` and ``/`` unescaped; never a
#: quote or the next URL's ``://``, so a URL cannot swallow the text after it).
_URL_USERINFO = re.compile(
    r"([A-Za-z][A-Za-z0-9+.-]*://)([^\s/:@\"'<>]*)(:(?:(?!://)[^\s\"'<>])*?)?@"
    r"(?=[^\s@/?#\"'<>]*(?:[/?#\s\"'<>]|$))")
#: A user part alone this long is a token (``https://ghp_...@github.com``), not a login name.
TOKEN_USER_LEN = 20


def is_secret_name(name: str) -> bool:
    """Whether an environment/setting name looks like it holds a secret (API_KEY, HF_TOKEN...)."""
    return bool(_SECRET_NAME.search(name))


def mask(value: str) -> str:
    return MASK if value else value


def mask_urls(text: str) -> str:
    """``text`` with the credentials of every URL masked: the password of
    ``scheme://user:password@host``, the whole user part of ``scheme://token@host``."""
    def hide(m: re.Match[str]) -> str:
        if m.group(3):
            return f"{m.group(1)}{m.group(2)}:{MASK}@" if len(m.group(3)) > 1 else m.group(0)
        return f"{m.group(1)}{MASK}@" if m.group(2) else m.group(0)

    return _URL_USERINFO.sub(hide, text)


def url_passwords(text: str) -> list[str]:
    """The credentials inside the URLs of ``text``: passwords, and user parts long enough to
    be tokens."""
    out = []
    for m in _URL_USERINFO.finditer(text):
        if m.group(3) and len(m.group(3)) > 1:
            out.append(m.group(3)[1:])
        elif not m.group(3) and len(m.group(2)) >= TOKEN_USER_LEN:
            out.append(m.group(2))
    return out


def mask_env(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``env`` with secret-looking names' values masked, and URL passwords in all."""
    return {k: (mask(v) if is_secret_name(k) else mask_urls(v)) for k, v in env.items()}


def secret_values(env: Mapping[str, str]) -> list[str]:
    """The values to scrub from any text we print or write (longest first, 4+ chars): those of
    secret-looking names, and every URL password in any value."""
    vals = {v for k, v in env.items() if is_secret_name(k) and len(v) >= 4}
    vals.update(p for v in env.values() for p in url_passwords(v) if len(p) >= 4)
    return sorted(vals, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret value in ``text``, and every URL's password,
    with the mask."""
    for s in secrets:
        text = text.replace(s, MASK)
    return mask_urls(text)
