import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from authlib.tokens import same_token, scopes  # noqa: E402


def test_same_token_accepts_equal_and_refuses_different():
    assert same_token("abc", "abc")
    assert not same_token("abc", "abd")


def test_scopes_drop_empty_entries():
    assert scopes("read  write ") == {"read", "write"}
