"""`msgkpi ui` settings from the environment: defaults, and errors that name the variable."""

from __future__ import annotations

import pytest

from processor.errors import ConfigError
from processor.ui.settings import DEFAULT_DOCS_URL, DEFAULT_GRAFANA_URL, UiSettings


def test_defaults() -> None:
    ui = UiSettings.from_env({})
    assert (ui.host, ui.port, ui.token, ui.alertmanager_urls) == ("127.0.0.1", 8070, None, ())
    assert (ui.docs_url, ui.grafana_url) == (DEFAULT_DOCS_URL, DEFAULT_GRAFANA_URL)
    assert ui.public_url == "http://127.0.0.1:8070"
    assert ui.alert_resend_s == 60.0


def test_everything_set() -> None:
    ui = UiSettings.from_env({
        "MSGKPI_UI_HOST": "0.0.0.0", "MSGKPI_UI_PORT": "9000", "MSGKPI_UI_TOKEN": "s3cret",
        "MSGKPI_ALERTMANAGER_URL": "http://am-1:9093/, http://am-2:9093",
        "MSGKPI_DOCS_URL": "https://wiki.example/msgkpi/docs/",
        "MSGKPI_GRAFANA_URL": "https://grafana.example/",
        "MSGKPI_UI_PUBLIC_URL": "https://kpi.example", "MSGKPI_ALERT_RESEND_S": "15"})
    assert (ui.host, ui.port, ui.token) == ("0.0.0.0", 9000, "s3cret")
    assert ui.alertmanager_urls == ("http://am-1:9093", "http://am-2:9093")
    assert ui.docs_url == "https://wiki.example/msgkpi/docs"
    assert ui.grafana_url == "https://grafana.example"
    assert ui.public_url == "https://kpi.example" and ui.alert_resend_s == 15.0
    assert "s3cret" not in repr(ui)


@pytest.mark.parametrize(("name", "value"), [
    ("MSGKPI_UI_PORT", "http"), ("MSGKPI_UI_PORT", "70000"),
    ("MSGKPI_ALERTMANAGER_URL", "am:9093"), ("MSGKPI_DOCS_URL", "docs/"),
    ("MSGKPI_GRAFANA_URL", "grafana"), ("MSGKPI_ALERT_RESEND_S", "0"),
    ("MSGKPI_ALERT_RESEND_S", "often"),
])
def test_errors_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        UiSettings.from_env({name: value})
    assert caught.value.key == name
