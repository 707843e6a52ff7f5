#!/usr/bin/env python3
"""The dashboard in a real headless browser (Debian's chromium and chromium-driver, driven by selenium).

Run by Tests/ServicesTests/DashboardBrowserTests.swift against running services, after it sent a known workload:

    dashboard_test.py --base URL --key KEY --empty-key KEY --artifacts DIR --handshake DIR

It checks what a user sees against what the API answers, saves a screenshot of every view in --artifacts, and
coordinates the live-anomaly check through files in --handshake: it writes `ready` once the anomalies view is live,
the Swift test then writes `anomaly-id` and publishes that anomaly on llm.anomalies.v1, and the page must show it
without a reload. Exits non-zero with the failed check's message.
"""
import argparse
import json
import os
import sys
import time
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

args = None
driver = None
checks = []


def check(condition, message):
    if not condition:
        raise AssertionError(message)
    checks.append(message)


def api(path, key):
    req = urllib.request.Request(args.base + path, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def wait_for(css, timeout=20, visible=True):
    condition = EC.visibility_of_element_located if visible else EC.presence_of_element_located
    try:
        return WebDriverWait(driver, timeout).until(condition((By.CSS_SELECTOR, css)))
    except TimeoutException:
        shot("failure")
        raise AssertionError(f"{css} did not appear within {timeout} s on {driver.current_url}")


def wait_until(predicate, timeout, message):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: predicate())
    except TimeoutException:
        shot("failure")
        raise AssertionError(message)


def shot(name):
    os.makedirs(args.artifacts, exist_ok=True)
    driver.save_screenshot(os.path.join(args.artifacts, f"{name}.png"))


def sign_in(key):
    field = wait_for("#api-key")
    field.clear()
    field.send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "form.signin button[type=submit]").click()


def go(hash_):
    driver.execute_script("location.hash = arguments[0]", hash_)


def totals_match(range_from, range_to, key, provider=None, model=None):
    """The totals cards against the API's totals for the same range (or the model's breakdown item)."""
    query = {"from": range_from, "to": range_to, "by": "model", "limit": "1000" if model else "1"}
    answer = api("/v1/breakdown?" + urllib.parse.urlencode(query), key)
    values = answer["totals"]
    if model:
        values = next(i["values"] for i in answer["items"] if i["provider"] == provider and i["model"] == model)
    shown = {c.get_attribute("data-testid")[6:]: c.get_attribute("data-value") for c in driver.find_elements(By.CSS_SELECTOR, ".total")}
    check(int(shown["requests"]) == values["requests"], f"requests shown {shown['requests']} = API {values['requests']}")
    check(int(shown["tokens"]) == values["input_tokens"] + values["output_tokens"], f"tokens shown {shown['tokens']} = API")
    check(abs(float(shown["cost"]) - float(values["cost_usd"])) < 1e-9, f"cost shown {shown['cost']} = API {values['cost_usd']}")
    check(abs(float(shown["error_rate"]) - values["error_rate"]) < 1e-9, f"error rate shown {shown['error_rate']} = API {values['error_rate']}")
    check(abs(float(shown["latency_p95"]) - values["latency_ms"]["p95"]) < 1e-6, f"p95 shown = API {values['latency_ms']['p95']}")
    # And the visible text is a formatting of the same number.
    visible = driver.find_element(By.CSS_SELECTOR, "[data-testid=total-requests] .value").text
    check(visible.replace(",", "").replace("\u202f", "").replace(".", "") != "", "requests are visible")
    return values


def charts_match(key, filters=None):
    """Every chart has as many points as the series API answers for its range and step."""
    for chart in ["requests", "error_rate", "cost", "tokens", "latency"]:
        fig = wait_for(f"[data-testid=chart-{chart}]")
        metric = {"requests": "requests", "error_rate": "error_rate", "cost": "cost_usd", "tokens": "input_tokens", "latency": "latency_p95"}[chart]
        query = {"metric": metric, "from": fig.get_attribute("data-from"), "to": fig.get_attribute("data-to"), "step": "1m"}
        query.update(filters or {})
        points = api("/v1/series?" + urllib.parse.urlencode(query), key)["points"]
        check(int(fig.get_attribute("data-points")) == len(points), f"chart {chart}: {fig.get_attribute('data-points')} points = API {len(points)}")
        check(len(fig.find_elements(By.CSS_SELECTOR, "path.line")) == {"tokens": 2, "latency": 3}.get(chart, 1), f"chart {chart} draws its lines")
    return points


def main():
    global args, driver
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--empty-key", required=True)
    parser.add_argument("--artifacts", required=True)
    parser.add_argument("--handshake", required=True)
    args = parser.parse_args()

    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("TW_CHROMIUM", "/usr/bin/chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1366,1000", "--disable-gpu",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps", "--disable-extensions", "--lang=en-US"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(os.environ.get("TW_CHROMEDRIVER", "/usr/bin/chromedriver")), options=options)
    try:
        run()
    finally:
        driver.quit()
    print(json.dumps({"passed": len(checks), "checks": checks}, indent=1))


def run():
    # Security headers on the page itself.
    with urllib.request.urlopen(args.base + "/") as r:
        csp = r.headers.get("Content-Security-Policy", "")
        check("default-src 'none'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp, "the page is served with a strict CSP")
        check(r.headers.get("X-Content-Type-Options") == "nosniff", "nosniff")

    # A wrong key: a clear message, nothing stored.
    driver.get(args.base + "/")
    sign_in("tw_0123456789abcdef_" + "0" * 64)
    message = wait_for("#signin-feedback .notice.error").text
    check("was not accepted" in message and "tw_" in message, f"a wrong key shows a clear message: {message!r}")
    check(driver.execute_script("return sessionStorage.getItem('tokenwatch.key')") is None, "a wrong key is not kept")
    shot("signin-wrong-key")

    # The real key: overview with totals equal to the API's.
    sign_in(args.key)
    wait_for("[data-testid=total-requests]")
    check("tw_" not in driver.current_url, "the key is not in the URL")
    fig = wait_for("[data-testid=chart-requests]")
    range_from, range_to = fig.get_attribute("data-from"), fig.get_attribute("data-to")
    values = totals_match(range_from, range_to, args.key)
    check(values["requests"] > 0, "the workload is visible")
    points = charts_match(args.key)
    check(len(points) == 60, f"last hour at one-minute steps: 60 points ({len(points)})")
    wait_for("[data-testid=top-volume] table")
    models = {row.get_attribute("data-model") for row in driver.find_elements(By.CSS_SELECTOR, "[data-testid=top-volume] tbody tr")}
    api_models = {i["model"] for i in api("/v1/breakdown?" + urllib.parse.urlencode({"from": range_from, "to": range_to, "by": "model", "order": "requests", "limit": "5"}), args.key)["items"]}
    check(models == api_models, f"top models by volume {sorted(models)} = API {sorted(api_models)}")
    wait_for("[data-testid=recent-anomalies] h2")
    # Rejected input: the totals by reason and the samples are the API's.
    wait_for("[data-testid=dead-letter-totals]")
    dead = api("/v1/dead-letters?" + urllib.parse.urlencode({"from": range_from, "to": range_to}), args.key)
    shown = {li.get_attribute("data-reason"): int(li.find_element(By.TAG_NAME, "strong").text.replace(",", "")) for li in driver.find_elements(By.CSS_SELECTOR, "[data-testid=dead-letter-totals] li")}
    check(shown == dead["totals"] and sum(shown.values()) == 3, f"rejected input by reason {shown} = API {dead['totals']}")
    ids = {row.get_attribute("data-event-id") for row in driver.find_elements(By.CSS_SELECTOR, "[data-testid=dead-letters] tbody tr")}
    check(ids == {d["event_id"] for d in dead["samples"]} and len(ids) == 3, f"rejected samples {sorted(ids)} = API")
    shot("overview")

    # Keyboard: the chart readout moves with the arrow keys.
    chart_svg = driver.find_element(By.CSS_SELECTOR, "[data-testid=chart-requests] svg")
    driver.execute_script("arguments[0].focus()", chart_svg)
    chart_svg.send_keys("\ue012")  # ArrowLeft
    readout = driver.find_element(By.CSS_SELECTOR, "[data-testid=chart-requests] .readout").text
    check(readout != "", f"keyboard moves the chart readout ({readout!r})")

    # The 24-hour range: hourly points.
    driver.find_element(By.CSS_SELECTOR, "[data-range='24h']").click()
    wait_until(lambda: driver.find_element(By.CSS_SELECTOR, "[data-testid=chart-requests]").get_attribute("data-points") == "24", 20, "24 h range shows 24 hourly points")
    check(True, "24 h range: 24 hourly points")
    driver.find_element(By.CSS_SELECTOR, "[data-range='1h']").click()
    wait_until(lambda: driver.find_element(By.CSS_SELECTOR, "[data-testid=chart-requests]").get_attribute("data-points") == "60", 20, "back to the last hour")

    # Drill-down into the busiest model.
    link = wait_for("[data-testid=top-volume] tbody tr a")
    row = driver.find_element(By.CSS_SELECTOR, "[data-testid=top-volume] tbody tr")
    provider, model = row.get_attribute("data-provider"), row.get_attribute("data-model")
    link.click()
    wait_until(lambda: driver.find_element(By.TAG_NAME, "h1").text.startswith(model), 20, "model drill-down opens")
    wait_for("[data-testid=total-requests]")
    fig = wait_for("[data-testid=chart-requests]")
    totals_match(fig.get_attribute("data-from"), fig.get_attribute("data-to"), args.key, provider, model)
    charts_match(args.key, {"provider": provider, "model": model})
    shot("model")

    # Attribution: the breakdown by app and the top users are the API's; every table exports as CSV.
    driver.find_element(By.CSS_SELECTOR, "nav a[data-view=attribution]").click()
    wait_for("[data-testid=attribution] tbody tr")
    shown_apps = {row.get_attribute("data-key") for row in driver.find_elements(By.CSS_SELECTOR, "[data-testid=attribution] tbody tr")}
    fig_range = {"from": range_from, "to": range_to}
    api_apps = {i["app"] for i in api("/v1/breakdown?" + urllib.parse.urlencode({**fig_range, "by": "app", "order": "cost", "limit": "100"}), args.key)["items"]}
    check(shown_apps == api_apps == {"search", "chat"}, f"apps shown {sorted(shown_apps)} = API {sorted(api_apps)}")
    wait_for("[data-testid=users] tbody tr")
    shown_users = [row.get_attribute("data-user") for row in driver.find_elements(By.CSS_SELECTOR, "[data-testid=users] tbody tr")]
    day = lambda t: t[:10]
    import datetime as _dt
    to_day = (_dt.datetime.fromisoformat(range_to.replace("Z", "+00:00")) + _dt.timedelta(days=1) - _dt.timedelta(microseconds=1)).strftime("%Y-%m-%d")
    api_users = [u["user_id"] for u in api("/v1/users?" + urllib.parse.urlencode({"from": day(range_from), "to": to_day, "order": "cost", "limit": "50"}), args.key)["items"]]
    check(shown_users == api_users and len(api_users) == 7, f"top users shown {shown_users} = API {api_users}")
    csv = driver.execute_script("return tableCSV(document.querySelector('[data-testid=users] table'))")
    check(csv.splitlines()[0] == "User,Requests,Cost,Tokens,Errors" and len(csv.splitlines()) == 8, f"the users table exports as CSV ({csv.splitlines()[:2]})")
    check(len(driver.find_elements(By.CSS_SELECTOR, "[data-testid=users] button[data-testid^=csv-]")) == 1, "with an Export CSV button")
    # Drill into an app: its totals are the API's for that app.
    driver.find_element(By.CSS_SELECTOR, "[data-testid=attribution] tbody tr a").click()
    heading = lambda: driver.execute_script("const h = document.querySelector('h1'); return h ? h.textContent : ''")
    wait_until(lambda: heading().startswith("App "), 20, "app drill-down opens")
    app_name = heading()[4:]
    wait_for("[data-testid=total-requests]")
    fig = wait_for("[data-testid=chart-requests]")
    app_totals = api("/v1/breakdown?" + urllib.parse.urlencode({"from": fig.get_attribute("data-from"), "to": fig.get_attribute("data-to"), "by": "app", "app": app_name}), args.key)["totals"]
    shown_requests = int(driver.find_element(By.CSS_SELECTOR, "[data-testid=total-requests]").get_attribute("data-value"))
    check(shown_requests == app_totals["requests"] and 0 < shown_requests < values["requests"], f"app {app_name}: {shown_requests} requests shown = API {app_totals['requests']}")
    shot("attribution")

    # Anomalies, live: the page is open and connected; an anomaly published now appears without a reload.
    driver.find_element(By.CSS_SELECTOR, "nav a[data-view=anomalies]").click()
    wait_until(lambda: driver.find_element(By.ID, "live-status").get_attribute("data-state") == "live", 20, "the live stream connects")
    wait_for("#anomaly-list", visible=False)
    with open(os.path.join(args.handshake, "ready"), "w") as f:
        f.write("ready\n")
    id_file = os.path.join(args.handshake, "anomaly-id")
    wait_until(lambda: os.path.exists(id_file) and open(id_file).read().strip(), 60, "the test published an anomaly")
    anomaly_id = open(id_file).read().strip()
    published = time.time()
    item = wait_for(f"li[data-anomaly-id='{anomaly_id}']", timeout=15)
    check(True, f"the injected anomaly appeared live in {time.time() - published:.1f} s")
    check("new" in item.text, "it is marked new")
    shot("anomalies")
    # The filters' choices are the server's vocabularies (read from its OpenAPI document, not listed in the page).
    with urllib.request.urlopen(args.base + "/openapi.json") as r:
        anomaly_params = json.load(r)["paths"]["/v1/anomalies"]["get"]["parameters"]
    declared = {p["name"]: p["schema"]["enum"] for p in anomaly_params if p["name"] in ("metric", "severity")}
    options = lambda sid: [o.get_attribute("value") for o in driver.find_elements(By.CSS_SELECTOR, f"#{sid} option") if o.get_attribute("value")]
    check(options("f-metric") == declared["metric"], f"the metric filter offers the declared metrics: {options('f-metric')}")
    check(options("f-severity") == declared["severity"], f"the severity filter offers the declared severities: {options('f-severity')}")
    # Filters: a metric it does not have hides it.
    driver.execute_script("const s = document.getElementById('f-metric'); s.value = 'error_rate'; s.dispatchEvent(new Event('change'))")
    wait_until(lambda: not driver.find_elements(By.CSS_SELECTOR, f"li[data-anomaly-id='{anomaly_id}']"), 10, "the metric filter hides it")
    driver.execute_script("const s = document.getElementById('f-metric'); s.value = ''; s.dispatchEvent(new Event('change'))")
    item = wait_for(f"li[data-anomaly-id='{anomaly_id}']")
    item.find_element(By.TAG_NAME, "a").click()
    chart = wait_for("[data-testid=anomaly-chart]")
    check(len(chart.find_elements(By.CSS_SELECTOR, "rect[data-role=expected-band]")) == 1, "the expected band is drawn")
    check(len(chart.find_elements(By.CSS_SELECTOR, "rect[data-role=anomalous-window]")) == 1, "the anomalous window is marked")
    check(chart.find_element(By.CSS_SELECTOR, "path.line").get_attribute("d").count("L") > 10, "the series is drawn around it")
    explanation = driver.find_element(By.CSS_SELECTOR, "[data-testid=explanation]").text
    check("p95 latency" in explanation, f"its explanation is shown: {explanation!r}")
    evidence_panel = wait_for("[data-testid=evidence] h2")
    wait_until(lambda: driver.find_element(By.CSS_SELECTOR, "[data-testid=evidence] > div").get_attribute("aria-busy") is None, 20, "the evidence loads")
    check(not driver.find_elements(By.CSS_SELECTOR, "[data-testid=evidence] .notice.error"), "the evidence panel loads without an error")
    shot("anomaly")

    # Settings: the detector's settings and, with an admin-scoped key, the tenant's keys.
    driver.find_element(By.CSS_SELECTOR, "nav a[data-view=settings]").click()
    sensitivity = wait_for("#sensitivity")
    settings = api("/v1/detector/settings", args.key)
    check(float(sensitivity.get_attribute("value")) == float(settings["sensitivity"]), "sensitivity shown = API")
    wait_for("[data-testid=api-keys] table")
    listed = len(driver.find_elements(By.CSS_SELECTOR, "[data-testid=api-keys] tbody tr"))
    check(listed == len(api("/v1/keys", args.key)["items"]), f"keys listed = API ({listed})")
    # Change the settings through the page: sensitivity, a muted metric, a new key; the API reflects them.
    sensitivity.clear()
    sensitivity.send_keys("1.5")
    driver.execute_script("const s = document.getElementById('mute-metric'); s.value = 'ttft_p95'")
    driver.find_element(By.XPATH, "//button[text()='Add rule']").click()
    driver.find_element(By.CSS_SELECTOR, "[data-testid=detector-settings] button[type=submit]").click()
    wait_for("[data-testid=detector-settings] .notice.success")
    saved = api("/v1/detector/settings", args.key)
    check(float(saved["sensitivity"]) == 1.5 and {"metric": "ttft_p95"} in saved["muted"], f"settings saved through the page: {saved}")
    keys_before = len(api("/v1/keys", args.key)["items"])
    driver.find_element(By.ID, "key-name").send_keys("from-the-dashboard")
    driver.find_element(By.XPATH, "//button[text()='Create key']").click()
    new_key = wait_for("[data-testid=new-key]").text.strip()
    check(new_key.startswith("tw_") and len(api("/v1/keys", args.key)["items"]) == keys_before + 1, "a key created through the page is shown once and listed by the API")
    # A webhook channel through the page: its secret shown once, listed by the API without it; a test message
    # appears in the delivery log as the API reports it.
    wait_for("[data-testid=channels] h3")
    driver.find_element(By.ID, "channel-name").send_keys("on-call")
    driver.find_element(By.ID, "channel-url").send_keys("http://127.0.0.1:9/tokenwatch")
    Select(driver.find_element(By.ID, "channel-kind")).select_by_value("slack")
    driver.find_element(By.ID, "channel-providers").send_keys("openai, anthropic")
    driver.find_element(By.ID, "channel-cap").send_keys("5")
    driver.find_element(By.XPATH, "//button[text()='Add channel']").click()
    secret = wait_for("[data-testid=channel-secret]").text.strip()
    listed_channels = api("/v1/channels", args.key)["items"]
    check(secret.startswith("whsec_") and [c["name"] for c in listed_channels] == ["on-call"] and all("secret" not in c for c in listed_channels),
          "a channel created through the page shows its secret once; the API lists it without")
    check([(c["kind"], c["providers"], c["models"], c["max_per_hour"]) for c in listed_channels] == [("slack", ["openai", "anthropic"], [], 5)],
          f"the page's kind, filters and cap reach the API: {listed_channels}")
    wait_for("[data-testid=channels] tbody tr")
    driver.find_element(By.XPATH, "//button[text()='Send test']").click()
    wait_for("[data-testid=delivery-log] tbody tr")
    shown_log = [row.get_attribute("data-message-id") for row in driver.find_elements(By.CSS_SELECTOR, "[data-testid=delivery-log] tbody tr")]
    api_log = [d["message_id"] for d in api(f"/v1/channels/{listed_channels[0]['channel_id']}/deliveries", args.key)["items"]]
    check(shown_log == api_log and len(shown_log) == 1 and shown_log[0].startswith("test-"), f"the delivery log shown {shown_log} = API {api_log}")
    unlabeled = driver.execute_script(
        "return [...document.querySelectorAll('input, select')].filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.id || e.name)")
    check(unlabeled == [], f"every field has a label ({unlabeled})")
    shot("settings")

    # A phone: no sideways scrolling.
    driver.set_window_size(390, 844)
    go("#overview")
    wait_for("[data-testid=chart-requests]")
    overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    check(overflow <= 1, f"readable on a phone without sideways scrolling (overflow {overflow}px)")
    shot("overview-phone")
    driver.set_window_size(1366, 1000)

    # A tenant with no data: the empty state says how to send the first event.
    driver.find_element(By.ID, "sign-out").click()
    sign_in(args.empty_key)
    empty = wait_for("[data-testid=empty-state]")
    check("curl" in empty.text and "/v1/events" in empty.text, "the empty state shows how to send the first event")
    check(not driver.find_element(By.ID, "live-count").is_displayed(), "nothing of the previous tenant's is shown")
    shot("empty")

    # No request left the gateway's origin; no console errors (CSP violations would be).
    urls = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.add(message["params"]["request"]["url"])
    foreign = sorted(u for u in urls if not (u.startswith(args.base + "/") or u == args.base or u.startswith("data:")))
    check(urls and not foreign, f"{len(urls)} distinct requests, all to the gateway (foreign: {foreign})")
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE" and "/v1/tenant" not in e["message"]]
    check(not errors, f"no console errors ({errors})")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAILED: {e}\npassed before it: {json.dumps(checks, indent=1)}", file=sys.stderr)
        sys.exit(1)
