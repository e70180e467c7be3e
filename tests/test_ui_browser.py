"""End to end: the real `airflow api-server` serves the Delivery page; headless Chromium renders it.

Airflow runs with its own temporary AIRFLOW_HOME (metadata DB migrated first), the repository's
plugins folder and the simple auth manager in all-admins mode (every request is an admin, so the
browser needs no sign-in; refusing anonymous users is covered by tests/test_ui_routes.py). The
warehouse is a per-test Postgres database wired as AIRFLOW_CONN_MAILTRACE_WAREHOUSE.

Chromium is Debian's (`/usr/bin/chromium`), installed by `make browser` (which `make test` runs first),
never from inside a test; without it the test is skipped, saying so.
The screenshot is saved under test-artifacts/
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from eventlog import insert_logged_from

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO_ROOT / "test-artifacts"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
SERVER_START_SECONDS = 180
ALICE = "alice.smith@example.gov"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("headless Chromium not found: run `make browser` (apt-get install chromium, as root)")


@pytest.fixture(scope="module")
def chromium():
    return find_chromium()


def populate(conn) -> None:
    """Two weeks of sends with failures of every kind, and one subject's full history."""
    with conn.transaction():
        insert_logged_from(
            conn,
            """event_id, subject_type, subject_id, notification_type, recipient_email, provider,
               provider_reference, sent_at, local_status, delivery_status, failure_reason""",
            """
            SELECT format('B-%s-%s', d, i), 'registration',
                   format('STR-%s', lpad((1000 + i)::text, 6, '0')),
                   (ARRAY['NOC', 'APPROVAL', 'RENEWAL_REMINDER'])[1 + i % 3],
                   format('person%s@example.gov', i), 'gc_notify', format('nb-%s-%s', d, i),
                   date_trunc('day', now()) - make_interval(days => d) + interval '1 minute' * i,
                   'SENT', v.status, v.reason
              FROM generate_series(0, 13) AS d,
                   generate_series(1, 40 + d * 2) AS i,
                   LATERAL (SELECT CASE
                       WHEN (i * 7 + d * 3) % 19 = 0 THEN 'permanent_failure'
                       WHEN (i + d) % 23 = 0 THEN 'temporary_failure'
                       WHEN (i * 3 + d) % 29 = 0 THEN 'technical_failure'
                       WHEN (i + 2 * d) % 41 = 0 THEN 'not_at_provider'
                       WHEN d = 0 AND i % 4 = 0 THEN 'pending'
                       ELSE 'delivered' END AS status) s,
                   LATERAL (SELECT s.status,
                       CASE s.status
                           WHEN 'permanent_failure' THEN
                               (ARRAY['invalid_address', 'suppressed'])[1 + (i + d) % 2]
                           WHEN 'temporary_failure' THEN 'mailbox_full'
                           WHEN 'technical_failure' THEN 'provider_error'
                           WHEN 'not_at_provider' THEN 'unknown'
                       END AS reason) v
            """,
        )
        insert_logged_from(
            conn,
            """event_id, subject_type, subject_id, notification_type, recipient_email, provider,
               provider_reference, sent_at, local_status, delivery_status, failure_reason, delivery_detail""",
            """
            VALUES ('T-1', 'registration', 'STR-000001', 'NOC', %(alice)s, 'gc_notify', 'tn-1',
                    now() - interval '6 days', 'SENT', 'delivered', NULL, NULL),
                   ('T-2', 'registration', 'STR-000001', 'APPROVAL', %(alice)s, 'gc_notify', 'tn-2',
                    now() - interval '3 days', 'SENT', 'permanent_failure', 'invalid_address',
                    'No such mailbox')
            """,
            {"alice": ALICE},
        )
        conn.execute(
            """
            INSERT INTO mailtrace.provider_event
                (provider, provider_reference, raw_status, delivery_status, failure_reason, detail,
                 event_at, source)
            VALUES ('gc_notify', 'tn-1', 'sending', 'pending', NULL, NULL, now() - interval '6 days', 'test'),
                   ('gc_notify', 'tn-1', 'delivered', 'delivered', NULL, NULL,
                    now() - interval '6 days' + interval '2 minutes', 'test'),
                   ('gc_notify', 'tn-2', 'sending', 'pending', NULL, NULL, now() - interval '3 days', 'test'),
                   ('gc_notify', 'tn-2', 'permanent-failure', 'permanent_failure', 'invalid_address',
                    'No such mailbox', now() - interval '3 days' + interval '4 minutes', 'test')
            """
        )
        conn.execute(
            "INSERT INTO mailtrace.contact (subject_type, subject_id, email) "
            "VALUES ('registration', 'STR-000001', %s)",
            (ALICE,),
        )
        conn.execute(
            """
            INSERT INTO mailtrace.address_flag
                (subject_type, subject_id, email, failure_reason, cause, flagged_at, last_failed_event_id)
            VALUES ('registration', 'STR-000001', %(alice)s, 'invalid_address', 'bounce',
                    now() - interval '3 days', 'T-2')
            """,
            {"alice": ALICE},
        )
        conn.execute(
            """
            INSERT INTO mailtrace.flag_history
                (subject_type, subject_id, email, action, failure_reason, cause, event_id, happened_at)
            VALUES ('registration', 'STR-000001', %s, 'set', 'invalid_address', 'bounce', 'T-2',
                    now() - interval '3 days')
            """,
            (ALICE,),
        )
        conn.execute(
            """
            INSERT INTO mailtrace.report_manifest
                (bucket, s3_key, period_kind, period_start, period_end, period_timezone, period_label,
                 row_count, byte_count, checksum_sha256, summary)
            VALUES ('mailtrace-reports', 'failed-notifications/2026-W10.csv', 'weekly',
                    '2026-03-02T08:00:00Z', '2026-03-09T07:00:00Z', 'America/Vancouver', '2026-W10',
                    42, 4096, repeat('a', 64), '{}')
            """
        )


def get(base_url: str, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(base_url + path, timeout=30) as response:  # noqa: S310 - loopback
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture
def api_server(tmp_path, warehouse_dsn):
    """The real api-server on a free loopback port, with this repository's plugins; yields its URL."""
    home = tmp_path / "airflow-home"
    dags = tmp_path / "dags"
    home.mkdir()
    dags.mkdir()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API_AUTH__JWT_SECRET": "mailtrace-browser-test-" + "s" * 48,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "MAILTRACE_SQL_DIR": str(REPO_ROOT / "sql"),
        "MAILTRACE_TEMPLATES_DIR": str(REPO_ROOT / "templates"),
    }
    migrated = subprocess.run([AIRFLOW, "db", "migrate"], capture_output=True, text=True, env=env)
    assert migrated.returncode == 0, migrated.stderr[-2000:]

    port = free_port()
    log_path = tmp_path / "api-server.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [AIRFLOW, "api-server", "--apps", "core", "-H", "127.0.0.1", "-p", str(port), "-w", "1"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if server.poll() is not None:
                pytest.fail(f"api-server exited with {server.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                status, _ = get(base_url, "/api/v2/monitor/health")
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"api-server did not answer:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        yield base_url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def run_chromium(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def loaded_dom(chromium: str, profile: Path, page: str, *flags: str) -> str:
    """The page's DOM once its script has drawn everything (`data-loaded` on <body>)."""
    dumped = run_chromium(chromium, profile, "--virtual-time-budget=10000", *flags, "--dump-dom", page)
    assert 'data-loaded="true"' in dumped.stdout, dumped.stderr[-2000:]
    return dumped.stdout


def element_screenshot(chromium: str, profile: Path, url: str, selector: str, target: Path) -> None:
    """Save a PNG of one element of the loaded page, wherever it is on the page.

    Chromium's `--screenshot` only captures the top of the page, so this drives Chromium through the
    DevTools protocol: load the page, wait until it has drawn everything (`data-loaded` on <body>),
    then capture the element's box.
    """
    import base64

    from websockets.sync.client import connect

    process = subprocess.Popen(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "--window-size=1280,900", "--hide-scrollbars", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            time.sleep(0.2)
        port = port_file.read_text().splitlines()[0]
        _, targets = get(f"http://127.0.0.1:{port}", "/json/list")
        page_ws = next(t["webSocketDebuggerUrl"] for t in json.loads(targets) if t["type"] == "page")
        with connect(page_ws, max_size=None) as ws:
            calls = iter(range(1, 1_000_000))

            def call(method: str, **params):
                call_id = next(calls)
                ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
                while True:
                    message = json.loads(ws.recv(timeout=60))
                    if message.get("id") == call_id:
                        assert "error" not in message, message
                        return message["result"]

            def evaluate(expression: str):
                answer = call("Runtime.evaluate", expression=expression, returnByValue=True)
                return answer["result"].get("value")

            call("Page.navigate", url=url)
            while evaluate("document.body && document.body.dataset.loaded") != "true":
                assert time.monotonic() < deadline + 60, "the page never finished loading"
                time.sleep(0.2)
            box = evaluate(
                f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
                " return {x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height}; })()"
            )
            shot = call(
                "Page.captureScreenshot", format="png", captureBeyondViewport=True, clip={**box, "scale": 1}
            )
        target.write_bytes(base64.b64decode(shot["data"]))
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_delivery_page_renders_chart_and_timeline_in_chromium(chromium, warehouse_conn, api_server, tmp_path):
    populate(warehouse_conn)

    # The api-server loaded the plugin: its app answers, and the UI is told about the nav entry.
    status, body = get(api_server, "/api/v2/plugins")
    assert status == 200
    plugins = {p["name"]: p for p in json.loads(body)["plugins"]}
    views = plugins["mailtrace_delivery"]["external_views"]
    assert [(v["name"], v["url_route"], v["destination"]) for v in views] == [("Delivery", "delivery", "nav")]
    status, body = get(api_server, "/mailtrace/api/me")
    assert status == 200 and json.loads(body)["full_addresses"] is True

    page = f"{api_server}/mailtrace/?subject=STR-000001"
    dom = loaded_dom(chromium, tmp_path / "profile-dom", page, "--window-size=1280,900")

    # The chart: an SVG with one column per day, failure bars and the delivery-rate line.
    chart = re.search(r'<svg[^>]*id="trend-chart"[^>]*>.*?</svg>', dom, re.S)
    assert chart, "trend chart not drawn"
    assert 'data-days="30"' in chart.group(0)
    assert len(re.findall(r'<rect class="bar"', chart.group(0))) >= 14
    assert re.search(r'<path class="rate-line" d="M[\d. ]+(L[\d. ]+){10,}"', chart.group(0))

    # The looked-up timeline: both notifications, their provider events in order, the flag.
    timeline = re.search(r'<div id="timeline-result" data-subject="STR-000001">.*?</ol></div>', dom, re.S)
    assert timeline, "timeline not rendered"
    text = timeline.group(0)
    assert text.count('class="tl-event"') == 2
    assert text.count('class="provider-event"') == 4
    assert text.index(">sending<") < text.index(">permanent-failure<")
    assert 'class="tl-flag set"' in text
    assert ALICE in text  # all-admins: the admin sees addresses in full

    # Lists and reports filled in.
    assert "s3://mailtrace-reports/failed-notifications/2026-W10.csv" in dom
    assert re.search(r'id="flagged-count">\(1–1 of 1\)<', dom)
    assert "Could not load" not in dom
    # The report's download link is a link, the S3 URI beside it as text.
    assert re.search(
        r'<a class="report-download" href="/mailtrace/api/reports/\d+/download"[^>]*>Download CSV</a>', dom
    )
    # Newest first, in words: no "set set", no internal source names.
    assert text.index(">permanent failure<") < text.index(">delivered<")
    assert "Address flagged" in text and "set set" not in text
    assert "(test," not in text and "(from test," in text
    # Every table fits a 1280 px window.
    assert 'data-overflowing-tables="0"' in dom

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "delivery-page.png"
    screenshot.unlink(missing_ok=True)
    shot = run_chromium(
        chromium,
        tmp_path / "profile-shot",
        "--virtual-time-budget=10000",
        "--hide-scrollbars",
        f"--screenshot={screenshot}",
        "--window-size=1400,1000",
        page,
    )
    assert screenshot.exists(), shot.stderr[-2000:]
    png = screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[16:20], "big") == 1400  # IHDR width


def test_delivery_nav_entry_opens_the_page_inside_the_airflow_ui(
    chromium, warehouse_conn, api_server, tmp_path
):
    populate(warehouse_conn)
    # The UI's route for an external view with url_route "delivery" frames the plugin page.
    dumped = run_chromium(
        chromium,
        tmp_path / "profile-ui",
        "--virtual-time-budget=15000",
        "--dump-dom",
        f"{api_server}/plugin/delivery",
    )
    frame = re.search(r"<iframe[^>]*>", dumped.stdout)
    assert frame, dumped.stdout[-3000:]
    assert 'title="Delivery"' in frame.group(0)
    assert 'src="mailtrace/"' in frame.group(0)
    assert ">Delivery<" in dumped.stdout  # the top-level nav entry

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "delivery-in-airflow.png"
    screenshot.unlink(missing_ok=True)
    run_chromium(
        chromium,
        tmp_path / "profile-ui-shot",
        "--virtual-time-budget=15000",
        "--hide-scrollbars",
        f"--screenshot={screenshot}",
        "--window-size=1400,1000",
        f"{api_server}/plugin/delivery",
    )
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def add_dag_run(airflow_home: Path, dag_id: str, state: str, ended_minutes_ago: int) -> None:
    """A DAG run in the api-server's metadata DB (SQLite here), as the scheduler would leave it."""
    import sqlite3

    with sqlite3.connect(airflow_home / "airflow.db") as db:
        db.execute(
            """INSERT INTO dag_run (dag_id, run_id, run_type, state, start_date, end_date, run_after,
                                    logical_date, clear_number, span_status)
               VALUES (?, ?, 'scheduled', ?, datetime('now', ?), datetime('now', ?), datetime('now', ?),
                       datetime('now', ?), 0, 'ended')""",
            (
                dag_id,
                f"scheduled__{dag_id}__{ended_minutes_ago}",
                state,
                f"-{ended_minutes_ago + 1} minutes",
                f"-{ended_minutes_ago} minutes",
                f"-{ended_minutes_ago + 1} minutes",
                f"-{ended_minutes_ago + 1} minutes",
            ),
        )


def test_health_panel_shows_dag_runs_receipts_and_set_aside_items(
    chromium, warehouse_conn, api_server, tmp_path
):
    populate(warehouse_conn)
    with warehouse_conn.transaction():
        warehouse_conn.execute(
            "INSERT INTO mailtrace.ses_dead_letter (message_id, body, error) VALUES ('m-1', '{', 'not JSON')"
        )
        warehouse_conn.execute(
            """INSERT INTO mailtrace.pipeline_warning
                   (kind, subject, message, first_seen_at, last_seen_at, run_count)
               VALUES ('missing_input_index', 'mailtrace.contact (updated_at)',
                       'mailtrace.contact: no index serves look-ups by (updated_at)',
                       '2026-11-30 08:00+00', now() - interval '5 minutes', 7)"""
        )
    home = tmp_path / "airflow-home"
    add_dag_run(home, "mailtrace_notify_pipeline", "success", 5)
    add_dag_run(home, "mailtrace_ses_events", "failed", 3)

    page = f"{api_server}/mailtrace/"
    dom = loaded_dom(chromium, tmp_path / "profile-health", page)
    panel = re.search(r'<div id="health-panel">.*?</section>', dom, re.S)
    assert panel, "health panel not rendered"
    text = panel.group(0)
    assert re.search(r'data-check="dag:mailtrace_notify_pipeline"><span class="lvl lvl-green"', text)
    assert re.search(r'data-check="dag:mailtrace_ses_events"><span class="lvl lvl-red"', text)
    assert "newest run failed" in text
    assert re.search(
        r'data-check="dead-letters"><span class="lvl lvl-red"[^>]*>failing</span><span>1 SES', text
    )
    assert re.search(r'data-check="receipts:gc_notify"><span class="lvl lvl-', text)
    assert re.search(
        r'data-check="warning:missing_input_index"><span class="lvl lvl-amber"[^>]*>warning</span>'
        r"<span>mailtrace.contact: no index serves look-ups by \(updated_at\)"
        r'<span class="muted"> · last seen \d+ min ago, by 7 run\(s\) since 2026-11-30 08:00 UTC</span>',
        text,
    )
    assert re.search(r'id="health-level"><span class="lvl lvl-red"', dom)
    assert "[object Object]" not in dom and "Could not load" not in dom

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "delivery-health.png"
    screenshot.unlink(missing_ok=True)
    run_chromium(
        chromium,
        tmp_path / "profile-health-shot",
        "--virtual-time-budget=10000",
        "--hide-scrollbars",
        f"--screenshot={screenshot}",
        "--window-size=1280,720",
        page,
    )
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def add_ses_sends(conn) -> None:
    """A week of SES sends: 6 % bounces (above SES's 5 % limit), 1 complaint in 100 a day."""
    insert_logged_from(
        conn,
        """event_id, subject_type, subject_id, notification_type, recipient_email, provider,
           provider_reference, sent_at, local_status, delivery_status, failure_reason""",
        """
        SELECT format('SES-%s-%s', d, i), 'tax_return', format('TR-%s-%s', d, i), 'NOC',
               format('payer%s@example.gov', i), 'ses', format('ses-%s-%s', d, i),
               date_trunc('day', now()) - make_interval(days => d) + interval '1 minute' * i, 'SENT',
               CASE WHEN i <= 6 THEN 'permanent_failure' WHEN i = 7 THEN 'complaint' ELSE 'delivered' END,
               CASE WHEN i <= 6 THEN 'invalid_address' END
          FROM generate_series(1, 6) AS d, generate_series(1, 100) AS i
        """,
    )


def test_trend_splits_providers_and_draws_reputation_limits(chromium, warehouse_conn, api_server, tmp_path):
    populate(warehouse_conn)
    with warehouse_conn.transaction():
        add_ses_sends(warehouse_conn)
    dom = loaded_dom(chromium, tmp_path / "profile-trend", f"{api_server}/mailtrace/")
    chart = re.search(r'<svg[^>]*id="trend-chart"[^>]*>.*?</svg>', dom, re.S).group(0)
    assert re.search(r'<path class="rate-line" d="M[^"]+"[^>]*data-provider="gc_notify"', chart)
    assert re.search(r'<path class="rate-line" d="M[^"]+"[^>]*data-provider="ses"', chart)
    # Rates run 85-94 %: the axis starts well above 0 %.
    assert float(re.search(r'data-rate-min="([\d.]+)"', chart).group(1)) >= 0.5
    bounce = re.search(r'<svg[^>]*id="bounce-chart".*?</svg>', dom, re.S).group(0)
    assert re.search(r'class="threshold"[^>]*data-provider="ses" data-value="0.05"', bounce)
    assert "Amazon SES limit 5%" in bounce
    complaint = re.search(r'<svg[^>]*id="complaint-chart".*?</svg>', dom, re.S).group(0)
    assert re.search(r'class="threshold"[^>]*data-provider="ses" data-value="0.001"', complaint)
    assert "Amazon SES limit 0.1%" in complaint
    assert re.search(r'<path class="reputation-line" d="M[^"]+"[^>]*data-provider="ses"', complaint)

    # The URL carries the view: one provider over 7 days, read on load.
    dumped = run_chromium(
        chromium,
        tmp_path / "profile-trend-ses",
        "--virtual-time-budget=10000",
        "--dump-dom",
        f"{api_server}/mailtrace/?provider=ses&days=7",
    )
    chart = re.search(r'<svg[^>]*id="trend-chart"[^>]*>.*?</svg>', dumped.stdout, re.S).group(0)
    assert 'data-days="7"' in chart
    assert 'data-provider="ses"' in chart and 'data-provider="gc_notify"' not in chart


def test_empty_warehouse_says_no_data_in_dark_mode(chromium, warehouse_conn, api_server, tmp_path):
    dom = loaded_dom(
        chromium,
        tmp_path / "profile-empty",
        f"{api_server}/mailtrace/?pending_hours=0",
        "--blink-settings=preferredColorScheme=0",
    )
    # A bad parameter is said in words.
    assert "Could not load: hours: Input should be greater than or equal to 1" in dom
    assert "[object Object]" not in dom
    assert re.search(r'id="trend-empty"[^>]*>No data: nothing was sent from \d{4}-\d\d-\d\d to', dom)
    assert 'id="trend-chart"' not in dom  # no axes with made-up labels
    assert 'data-theme="dark"' in dom


def test_search_by_address_and_export_a_filtered_list(chromium, warehouse_conn, api_server, tmp_path):
    populate(warehouse_conn)
    ARTIFACTS.mkdir(exist_ok=True)

    # An address in another letter case finds its subject and opens the timeline; the URL then names the
    # subject, not the address.
    page = f"{api_server}/mailtrace/?q=Alice.Smith%40EXAMPLE.gov"
    dom = loaded_dom(chromium, tmp_path / "profile-search", page, "--window-size=1280,900")
    assert '<div id="timeline-result" data-subject="STR-000001">' in dom
    screenshot = ARTIFACTS / "delivery-search-by-address.png"
    screenshot.unlink(missing_ok=True)
    run_chromium(
        chromium,
        tmp_path / "profile-search-shot",
        "--virtual-time-budget=10000",
        "--hide-scrollbars",
        f"--screenshot={screenshot}",
        "--window-size=1280,2200",
        page,
    )
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # A filtered list pages with a total and offers the export of exactly what the filters keep.
    page = f"{api_server}/mailtrace/?pending_hours=1&pending_type=NOC&pending_status=pending"
    dumped = run_chromium(
        chromium,
        tmp_path / "profile-list",
        "--virtual-time-budget=10000",
        "--window-size=1280,900",
        "--dump-dom",
        page,
    )
    dom = dumped.stdout
    listing = re.search(r'<div class="scroll" id="pending-table">.*?</section>', dom, re.S).group(0)
    count = re.search(r'id="pending-count">\(1–(\d+) of (\d+)\)<', dom)
    assert count, re.search(r'id="pending-count">[^<]*<', dom)
    shown, total = int(count.group(1)), int(count.group(2))
    assert 0 < shown <= total
    export = re.search(r'<a class="export" href="([^"]+)"', listing).group(1).replace("&amp;", "&")
    assert "format=csv" in export and "notification_type=NOC" in export and "status=pending" in export
    status, csv_bytes = get(api_server, export)
    assert status == 200
    lines = csv_bytes.decode().splitlines()
    assert lines[0].startswith("sent_at,subject_type,subject_id,notification_type")
    assert len(lines) == total + 1
    assert all(",NOC," in line for line in lines[1:])
    (ARTIFACTS / "delivery-export-pending.csv").write_bytes(csv_bytes)
    screenshot = ARTIFACTS / "delivery-export.png"
    screenshot.unlink(missing_ok=True)
    run_chromium(
        chromium,
        tmp_path / "profile-list-shot",
        "--virtual-time-budget=10000",
        "--hide-scrollbars",
        f"--screenshot={screenshot}",
        "--window-size=1280,3000",
        page,
    )
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resend_section_shows_each_runs_decisions_and_emails(
    chromium, warehouse_conn, notify_sim, s3_bucket, aws, monkeypatch, api_server, tmp_path
):
    import resend_seed

    resend_seed.configure(monkeypatch, s3_bucket)
    resend_seed.seed(warehouse_conn, aws.client("s3"), s3_bucket)
    page = f"{api_server}/mailtrace/?resend_incident={resend_seed.INCIDENT}"
    dom = loaded_dom(chromium, tmp_path / "profile-resend", page, "--window-size=1280,900")
    assert "Could not load" not in dom and "[object Object]" not in dom
    section = re.search(r'<section id="resend">.*?</section>', dom, re.S).group(0)
    # The URL named one incident: only its runs, the real run above the dry run.
    assert re.search(r'id="resend-count">\(1–1 of 1 incident\(s\)\)<', section)
    assert f'data-incident="{resend_seed.OLDER_INCIDENT}"' not in section
    real, dry = re.findall(r"<tr>.*?</tr>", section.split("<tbody>", 1)[1], re.S)
    assert resend_seed.REAL_RUN_ID in real and resend_seed.DRY_RUN_ID in dry
    assert ">real run<" in real and ">dry run<" in dry
    assert 'data-decision="send" data-count="3">send 3<' in real
    assert 'data-decision="skip" data-count="1">skip 1<' in real
    assert 'data-decision="reject" data-count="3">reject 3<' in real
    assert 'data-ledger="sent" data-count="3">sent 3<' in real
    assert 'data-decision="would_send" data-count="3">would send 3<' in dry
    assert "dry run: nothing sent" in dry
    for reason in ("malformed_id", "unknown_id", "no_contact_email", "duplicate"):
        assert f'data-reason="{reason}"' in real and f'data-reason="{reason}"' in dry
    download = r'<a class="outcome-download" href="/mailtrace/api/resend/outcome\?run_id=manual__'
    assert re.search(download, real)
    assert f"/resend-requests/{resend_seed.INCIDENT}/ids.csv" in real
    assert 'data-overflowing-tables="0"' in dom

    # Without the filter every incident is listed, newest first; the S3 drop's dry run like any other.
    every = page.split("?")[0]
    dumped = run_chromium(
        chromium, tmp_path / "profile-resend-all", "--virtual-time-budget=10000", "--dump-dom", every
    )
    section = re.search(r'<section id="resend">.*?</section>', dumped.stdout, re.S).group(0)
    assert section.index(f'data-incident="{resend_seed.INCIDENT}"') < section.index(
        f'data-incident="{resend_seed.OLDER_INCIDENT}"'
    )
    assert "started by an S3 drop" in section

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "delivery-resend.png"
    screenshot.unlink(missing_ok=True)
    element_screenshot(chromium, tmp_path / "profile-resend-shot", page, "#resend", screenshot)
    png = screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[16:20], "big") > 1000  # IHDR width: the section, not an empty clip
