from sidecar.core.redaction import mask_url, redact_text, url_secrets


def test_mask_url_hides_password_and_secret_query() -> None:
    assert mask_url("postgres://u:p4ss@h:5432/db?sslmode=require&password=x1") == (
        "postgres://u:***@h:5432/db?sslmode=require&password=***"
    )
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"
    assert url_secrets("redis://:hunter22@h/0?token=abc") == ["hunter22", "abc"]


def test_redact_text_removes_known_and_shaped_secrets() -> None:
    text = "auth failed for postgres://app:hunter22@db/x with password=hunter22 Bearer abcdefghijkl"
    out = redact_text(text, ["hunter22"])
    assert "hunter22" not in out and "abcdefghijkl" not in out
    assert "authenticated" in redact_text("user authenticated fine")
