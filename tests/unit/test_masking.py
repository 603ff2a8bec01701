"""Secret masking: secret-looking names, and the passwords inside URLs whatever the name."""

from __future__ import annotations

import pytest

from dltasks.runs.plan import dotenv_without_settings
from dltasks.settings.masking import MASK, mask_env, mask_urls, scrub, secret_values


@pytest.mark.parametrize(("text", "masked"), [
    ("postgres://u:pw@db/x", f"postgres://u:{MASK}@db/x"),
    ("https://user:p@ss@host:8443/a", f"https://user:{MASK}@host:8443/a"),
    ("redis://:s3cret@cache:6379/0", f"redis://:{MASK}@cache:6379/0"),
    ("a=mysql+pymysql://root:toor@127.0.0.1/x b", f"a=mysql+pymysql://root:{MASK}@127.0.0.1/x b"),
    ("http://host/a:b@c", "http://host/a:b@c"),                 # no userinfo
    ("https://user@host/x", f"https://{MASK}@host/x"),          # a user alone: maybe a token
    ("https://ghp_0123456789abcdefghij@github.com/o/r", f"https://{MASK}@github.com/o/r"),
    ("postgres://u:pa/ss@db/x?mail=a@b.c", f"postgres://u:{MASK}@db/x?mail=a@b.c"),
    ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
    ("s3://bucket/key", "s3://bucket/key"),
])
def test_url_passwords_are_masked(text: str, masked: str) -> None:
    assert mask_urls(text) == masked
    assert scrub(text, []) == masked


def test_mask_env_masks_names_and_url_passwords() -> None:
    env = {"HF_TOKEN": "hf_abc", "DATABASE_URL": "postgres://u:pw@db/x", "LR": "0.1"}
    assert mask_env(env) == {"HF_TOKEN": MASK, "DATABASE_URL": f"postgres://u:{MASK}@db/x",
                             "LR": "0.1"}


def test_secret_values_include_url_passwords_longest_first() -> None:
    env = {"API_KEY": "abcd", "DATABASE_URL": "postgres://u:longer-pw@db/x", "X": "plain"}
    assert secret_values(env) == ["longer-pw", "abcd"]
    text = "connect with longer-pw, key abcd"
    assert scrub(text, secret_values(env)) == f"connect with {MASK}, key {MASK}"


def test_dotenv_without_settings_keeps_everything_else_byte_for_byte() -> None:
    text = ('# comment\nDLT_GPUS=0\nA=1\n\nexport DLT_SUDO_PASSWORD="multi\nline"\n'
            "B='x y'  # trailing\nDLT_X\n")
    assert dotenv_without_settings(text) == "# comment\nA=1\n\nB='x y'  # trailing\n"


def test_url_tokens_as_users_are_secret_values_login_names_are_not() -> None:
    env = {"REPO": "https://ghp_0123456789abcdefghij@github.com/o/r",
           "DB": "mysql://root@db/x"}
    assert secret_values(env) == ["ghp_0123456789abcdefghij"]


def test_a_url_never_swallows_the_text_after_it() -> None:
    text = '{"a":"https://x.com:8080/p","b":"postgres://u:pw@db/x"}'
    assert mask_urls(text) == '{"a":"https://x.com:8080/p","b":"postgres://u:****@db/x"}'


def test_an_unparsable_dlt_line_is_dropped_too() -> None:
    text = 'A=1\nDLT_SUDO_PASSWORD="unterminated\nB=2\n'
    kept = dotenv_without_settings(text)
    assert "DLT_" not in kept and "unterminated" not in kept and kept.startswith("A=1\n")
