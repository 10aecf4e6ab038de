#!/usr/bin/env python3
"""Browser tests of stampd's web interface: headless Debian chromium driven by selenium
through /usr/bin/chromedriver (nothing is downloaded), against a real `stampd serve` that
tests/web.rs starts. One scenario per run:

    browser.py SCENARIO --admin URL --public URL --ca CA.pem --work DIR --shots DIR
               [--token FILE] [--auditor-token FILE]

Exits 0 when every check of the scenario holds; otherwise prints what failed and exits 1.
Each scenario saves screenshots under --shots so a reviewer can look at the pages.
"""
import argparse
import hashlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

WAIT = 20


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


def browser(downloads):
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,1800", "--no-first-run", "--disable-extensions",
              "--disable-background-networking", "--disable-sync"):
        o.add_argument(a)
    o.add_experimental_option("prefs", {
        "download.default_directory": downloads,
        "download.prompt_for_download": False,
        "safebrowsing.enabled": False,
    })
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    d.execute_cdp_cmd("Browser.setDownloadBehavior",
                      {"behavior": "allow", "downloadPath": downloads})
    return d


class Run:
    def __init__(self, args):
        self.a = args
        self.downloads = os.path.join(args.work, "downloads")
        os.makedirs(self.downloads, exist_ok=True)
        os.makedirs(args.shots, exist_ok=True)
        self.d = browser(self.downloads)
        self.shot_n = 0

    def shot(self, name):
        self.shot_n += 1
        self.d.save_screenshot(os.path.join(
            self.a.shots, f"{self.a.scenario}-{self.shot_n:02d}-{name}.png"))

    def wait(self, cond, what, timeout=WAIT):
        try:
            # A page that reloads under the condition (a form's redirect, the dashboard's
            # refresh) leaves stale elements: look again, as for one not there yet.
            return WebDriverWait(
                self.d, timeout,
                ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
            ).until(lambda d: cond(d))
        except Exception as e:
            self.shot("failed")
            raise Failed(f"{what} (waited {timeout} s): {e.__class__.__name__}")

    def text(self, css):
        return self.d.find_element(By.CSS_SELECTOR, css).text

    def login(self, token_file):
        token = open(token_file).read().strip()
        self.d.get(self.a.admin + "/login")
        self.d.find_element(By.ID, "secret").send_keys(token)
        self.d.find_element(By.ID, "login").click()
        self.wait(lambda d: "/login" not in d.current_url, "logged in")

    def downloaded(self, suffix, before):
        def done(_):
            names = [n for n in os.listdir(self.downloads)
                     if n.endswith(suffix) and n not in before]
            return names[0] if names else False
        name = self.wait(done, f"a {suffix} file downloaded")
        return os.path.join(self.downloads, name)

    def post_token_request(self, data_file):
        """A timestamp request from openssl, POSTed with urllib: (status, body)."""
        tsq = os.path.join(self.a.work, "req.tsq")
        subprocess.run(["openssl", "ts", "-query", "-data", data_file, "-sha256", "-cert",
                        "-out", tsq], check=True, capture_output=True)
        req = urllib.request.Request(self.a.public, data=open(tsq, "rb").read(),
                                     headers={"Content-Type": "application/timestamp-query"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def openssl_verify(self, tsr, data):
        r = subprocess.run(["openssl", "ts", "-verify", "-in", tsr, "-data", data,
                            "-CAfile", self.a.ca], capture_output=True, text=True)
        return r.returncode == 0 and "Verification: OK" in r.stdout, r.stdout + r.stderr

    def fetch_post(self, path, body, csrf_header=None):
        """A POST from the page itself (with its session cookie): the HTTP status."""
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if csrf_header:
            headers["X-CSRF-Token"] = csrf_header
        return self.d.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(arguments[0], {method: 'POST', body: arguments[1], headers: arguments[2],"
            " credentials: 'same-origin'}).then(r => done(r.status), e => done(String(e)));",
            path, body, headers)

    def write(self, name, data):
        p = os.path.join(self.a.work, name)
        with open(p, "wb") as f:
            f.write(data)
        return p


def login(r):
    # Without a session: redirected to the login page.
    r.d.get(r.a.admin + "/")
    r.wait(lambda d: d.current_url.endswith("/login"), "the dashboard redirects to /login")
    r.d.get(r.a.admin + "/audit")
    r.wait(lambda d: d.current_url.endswith("/login"), "the audit pages redirect to /login")
    r.shot("login")
    # A wrong token is refused (after the failed-login delay).
    r.d.find_element(By.ID, "secret").send_keys("wrong-token-0123456789")
    started = time.monotonic()
    r.d.find_element(By.ID, "login").click()
    r.wait(lambda d: d.find_elements(By.ID, "login-error"), "the wrong token is refused")
    check(time.monotonic() - started >= 0.9, "a failed login is delayed")
    r.shot("refused")
    r.login(r.a.token)
    check(r.d.find_element(By.ID, "services"), "the dashboard after login")
    # A POST without the CSRF token is refused, even with the session cookie.
    status = r.fetch_post("/services/default/disable", "x=1")
    check(status == 403, f"a POST without the CSRF token is refused (got {status})")
    status = r.fetch_post("/reload", "csrf=not-the-token")
    check(status == 403, f"a POST with a wrong CSRF token is refused (got {status})")
    check("enabled" in r.text("#service-default .state"), "the refused POST changed nothing")
    # Log out: the session ends.
    r.d.find_element(By.ID, "logout").click()
    r.wait(lambda d: d.current_url.endswith("/login"), "logged out")
    r.d.get(r.a.admin + "/")
    r.wait(lambda d: d.current_url.endswith("/login"), "the session ended at logout")


def dashboard(r):
    r.login(r.a.token)
    for section in ("services", "signers", "clock", "audit"):
        check(r.d.find_element(By.ID, section).is_displayed(), f"the dashboard shows {section}")
    check("default" in r.text("#services"), "the service is listed")
    check("http://" in r.text("#service-default"), "with its URL")
    check("2.999.1.1" in r.text("#services"), "with its policy OID")
    check("main" in r.text("#signers") and "stampd development TSA" in r.text("#signers"),
          "the signer and its certificate subject")
    check("in sync" in r.text("#clock-sync"), "the clock's state")
    check("Head seq" in r.text("#audit-shards"), "the journal shards and their heads")
    total = "live-default-total"
    r.wait(lambda d: d.find_element(By.ID, total).text.replace(",", "").isdigit(),
           "the live figures load")
    before = int(r.d.find_element(By.ID, total).text.replace(",", ""))
    r.shot("before-burst")
    data = r.write("burst.txt", b"burst\n")
    for _ in range(120):
        status, _ = r.post_token_request(data)
        check(status == 200, f"a request of the burst is answered 200 (got {status})")
    r.wait(lambda d: int(d.find_element(By.ID, total).text.replace(",", "")) >= before + 120,
           "the live request count moves after the burst")
    rate = r.text("#live-default-rate")
    r.shot("after-burst")
    check(r.text("#live-default-p50").endswith("µs") or rate != "0", "latency or rate shown")


def disable_enable(r):
    r.login(r.a.token)
    data = r.write("switch.txt", b"switch\n")
    status, _ = r.post_token_request(data)
    check(status == 200, f"granted while enabled (got {status})")
    r.d.find_element(By.ID, "disable-default").click()
    r.wait(lambda d: "disabled" in d.find_element(By.CSS_SELECTOR, "#service-default .state").text,
           "the dashboard shows the service disabled")
    r.shot("disabled")
    status, _ = r.post_token_request(data)
    check(status == 503, f"a disabled service refuses with 503 (got {status})")
    r.d.find_element(By.ID, "enable-default").click()
    r.wait(lambda d: "enabled" in d.find_element(By.CSS_SELECTOR, "#service-default .state").text,
           "the dashboard shows the service enabled again")
    status, _ = r.post_token_request(data)
    check(status == 200, f"granted again once enabled (got {status})")
    # Both actions are in the audit trail, naming the administrator.
    r.d.get(r.a.admin + "/audit?kind=admin")
    r.wait(lambda d: "service-enabled" in d.find_element(By.ID, "results").text,
           "the audit browser lists the admin actions")
    rows = r.text("#results")
    check("service-disabled" in rows and "service-enabled" in rows, "both actions audited")
    check("by admin" in rows, "the events name the administrator")
    r.shot("audited")


def audit_browser(r):
    r.login(r.a.token)
    data = r.write("audited.txt", b"audited data\n")
    status, _ = r.post_token_request(data)
    check(status == 200, "a token issued")
    digest = hashlib.sha256(open(data, "rb").read()).hexdigest()
    r.d.get(r.a.admin + "/audit")
    r.d.find_element(By.ID, "imprint").send_keys(digest)
    r.d.find_element(By.ID, "search-button").click()
    r.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#results tr.record"),
           "the search by imprint finds the record")
    rows = r.d.find_elements(By.CSS_SELECTOR, "#results tr.record")
    check(len(rows) == 1, f"exactly one record for the imprint (got {len(rows)})")
    serial = rows[0].find_element(By.CSS_SELECTOR, ".serial").text
    check(serial, "the record shows its serial")
    r.shot("by-imprint")
    r.d.get(r.a.admin + "/audit")
    r.d.find_element(By.ID, "serial").send_keys("0x" + serial)
    Select(r.d.find_element(By.ID, "status")).select_by_value("granted")
    r.d.find_element(By.ID, "search-button").click()
    r.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#results tr.record"),
           "the search by serial finds the record")
    rows = r.d.find_elements(By.CSS_SELECTOR, "#results tr.record")
    check(len(rows) == 1 and serial in rows[0].text, "exactly that record by serial")
    rows[0].find_element(By.TAG_NAME, "a").click()
    r.wait(lambda d: d.find_elements(By.ID, "download-tsr"), "the record page")
    page = r.text("main")
    check("TSTInfo" in page and digest in page, "the record page decodes the token")
    check("stampd development TSA" in page, "and lists its certificates")
    r.shot("record")
    before = set(os.listdir(r.downloads))
    r.d.find_element(By.ID, "download-tsr").click()
    tsr = r.downloaded(".tsr", before)
    ok, out = r.openssl_verify(tsr, data)
    check(ok, f"openssl ts -verify accepts the downloaded .tsr: {out}")


def public(r):
    r.d.get(r.a.public)
    r.wait(lambda d: d.find_elements(By.ID, "policies"), "the public page")
    check("2.999.1.1" in r.text("#policies"), "the public page shows the policy OID")
    check("stampd development TSA" in r.text("#chain"), "and the certificate chain")
    check("openssl ts -query" in r.text("#commands"), "and commands to copy")
    r.shot("public")
    # Stamp a small file (WebCrypto) and a large one (the streaming SHA-256).
    for name, data in (("small.txt", b"a file to stamp\n"),
                       ("large.bin", os.urandom(1 << 20) * 17 + b"tail")):
        path = r.write(name, data)
        r.d.get(r.a.public)
        r.d.find_element(By.ID, "stamp-file").send_keys(path)
        r.d.find_element(By.ID, "stamp-button").click()
        r.wait(lambda d: d.find_elements(By.ID, "stamp-download"), f"{name} stamped", 60)
        summary = r.text("#stamp-result")
        how = "WebCrypto" if name == "small.txt" else "streaming SHA-256"
        check(how in summary, f"{name} hashed with {how}: {summary}")
        check(hashlib.sha256(data).hexdigest() in summary, "the summary shows the digest")
        check("2.999.1.1" in summary and "genTime" in summary, "and the token's facts")
        r.shot(f"stamped-{name}")
        before = set(os.listdir(r.downloads))
        r.d.find_element(By.ID, "stamp-download").click()
        tsr = r.downloaded(".tsr", before)
        ok, out = r.openssl_verify(tsr, path)
        check(ok, f"openssl ts -verify -data {name} accepts the browser's token: {out}")
        if name == "small.txt":
            small_tsr, small = tsr, path
    # Verify: valid for the original file, invalid for a changed one.
    changed = r.write("changed.txt", b"a file to stamp, changed\n")
    for data, valid in ((small, True), (changed, False)):
        r.d.get(r.a.public)
        r.d.find_element(By.ID, "verify-token-file").send_keys(small_tsr)
        r.d.find_element(By.ID, "verify-data-file").send_keys(data)
        r.d.find_element(By.ID, "verify-button").click()
        r.wait(lambda d: d.find_elements(By.ID, "verify-verdict"), "the verification result")
        verdict = r.text("#verify-verdict")
        checks = r.text("#verify-result")
        if valid:
            check(verdict.startswith("Valid"), f"valid for the original file: {checks}")
            for c in ("imprint", "signature", "ESS signing certificate", "chain", "EKU"):
                check(c in checks, f"the {c} check is shown")
        else:
            check(verdict.startswith("Invalid"), f"invalid for a changed file: {checks}")
            check("imprint: message imprint does not match" in checks, "the imprint check fails")
        r.shot("verified-" + ("original" if valid else "changed"))


def auditor(r):
    r.login(r.a.auditor_token)
    r.wait(lambda d: d.current_url.endswith("/audit"), "an auditor starts on the audit pages")
    r.shot("auditor")
    r.d.get(r.a.admin + "/")
    r.wait(lambda d: d.current_url.endswith("/audit"), "an auditor has no dashboard")
    csrf = r.d.find_element(By.CSS_SELECTOR, "input[name=csrf]").get_attribute("value")
    for path in ("/services/default/disable", "/reload", "/audit/verify"):
        status = r.fetch_post(path, "csrf=" + csrf)
        check(status == 403, f"an auditor may not act: POST {path} answered {status}")
    token = open(r.a.auditor_token).read().strip()
    req = urllib.request.Request(r.a.admin + "/api/services/default/disable", data=b"",
                                 headers={"Authorization": "Bearer " + token})
    try:
        urllib.request.urlopen(req, timeout=10)
        raise Failed("the API let an auditor act")
    except urllib.error.HTTPError as e:
        check(e.code == 403, f"the API refuses an auditor's action with 403 (got {e.code})")
    data = r.write("still.txt", b"still served\n")
    status, _ = r.post_token_request(data)
    check(status == 200, "the service is still enabled")


SCENARIOS = {"login": login, "dashboard": dashboard, "disable-enable": disable_enable,
             "audit-browser": audit_browser, "public": public, "auditor": auditor}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--admin", required=True)
    p.add_argument("--public", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--shots", required=True)
    p.add_argument("--token")
    p.add_argument("--auditor-token")
    args = p.parse_args()
    r = Run(args)
    try:
        SCENARIOS[args.scenario](r)
        r.shot("done")
    except Failed as e:
        print(f"FAILED: {args.scenario}: {e}", file=sys.stderr)
        try:
            r.shot("failed")
        except Exception:
            pass
        sys.exit(1)
    finally:
        r.d.quit()
    print(f"ok: {args.scenario}")


if __name__ == "__main__":
    main()
