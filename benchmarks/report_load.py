"""How long a MultiQC report takes to open in Chromium: the load event, and until MultiQC has drawn its plots.

Usage::

    python benchmarks/report_load.py results/multiqc/multiqc_report.html [OTHER.html ...] [--reps 3]

Each report is copied, with a small probe script before ``</body>``, into a temporary folder served by a
local HTTP server (127.0.0.1 only; Chromium gets no other network). Headless Chromium opens it in real
time (no virtual time budget, so the page's timers run as a reader's would); the probe polls every
50 ms and, once the number of drawn plotly plots (``.js-plotly-plot``) has not changed for 3 s after
the load event, sends a beacon with ``performance.now()`` (ms since navigation start) at

- **load**: the window's load event (HTML parsed, inline images decoded, scripts run);
- **last plot**: when the last plot appeared (the count then unchanged for 3 s; a page that draws no plot
  settles 30 s after its load event).

Chromium's own start (~1.5 s here for an empty page) is not included. Plots that MultiQC defers behind
a "Show plot" click, or that sit in a hidden tab, are not drawn and not counted. Not a timed test:
milliseconds depend on the machine and on what else runs on it (say the load average when recording
numbers). Issue 18's target: a 100-sample report opens in under 10 s.
"""

from __future__ import annotations

import argparse
import http.server
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--window-size=1400,1000",
]
STABLE_MS = 3000
GIVE_UP_MS = 120_000
NO_PLOT_MS = 30_000  # a page without any plot settles this long after its load event
PROBE = f"""<script>(function () {{
  var load = -1, first = -1, last = -1, n = 0;
  window.addEventListener('load', function () {{ load = performance.now(); }});
  var timer = setInterval(function () {{
    var now = performance.now(), drawn = document.querySelectorAll('.js-plotly-plot').length;
    if (drawn > 0 && first < 0) first = now;
    if (drawn !== n) {{ n = drawn; last = now; }}
    var settled = load > 0 && (n > 0 ? now - last > {STABLE_MS} : now - load > {NO_PLOT_MS});
    if (settled || now > {GIVE_UP_MS}) {{
      clearInterval(timer);
      navigator.sendBeacon('/done?load=' + load.toFixed(0) + '&first=' + first.toFixed(0) + '&last=' + last.toFixed(0)
                           + '&plots=' + n + (settled ? '' : '&timeout=1'), 'x');
    }}
  }}, 50);
}})();</script>"""


def probe_copy(page: Path, target: Path) -> Path:
    html = page.read_text()
    body = html.rindex("</body>")  # the page's own; inlined libraries carry "</body>" strings earlier
    target.write_text(html[:body] + PROBE + html[body:])
    return target


def serve(folder: Path, results: dict) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args):
            pass

        def do_POST(self):  # the probe's beacon
            results.update(urllib.parse.parse_qsl(urllib.parse.urlparse(self.path).query))
            self.send_response(204)
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def open_once(chromium: str, url: str, profile: Path, results: dict) -> dict:
    results.clear()
    browser = subprocess.Popen(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        start = time.perf_counter()
        while not results and time.perf_counter() - start < GIVE_UP_MS / 1000 + 30:
            time.sleep(0.1)
    finally:
        os.killpg(browser.pid, signal.SIGTERM)  # the browser and the renderers it started
        browser.wait(timeout=30)
    return dict(results) or {"timeout": "1"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", type=Path)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("Chromium is not installed (Debian package 'chromium')")
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        server = serve(folder, results)
        try:
            print(f"load average {os.getloadavg()[0]:.1f}; ms since navigation start, median of {args.reps} (all)")
            print("| report | MB | load | last plot drawn | plots |")
            print("|---|---:|---:|---:|---:|")
            for number, report in enumerate(args.reports):
                page = probe_copy(report, folder / f"report{number}.html")
                url = f"http://127.0.0.1:{server.server_port}/{page.name}"
                runs = [
                    open_once(chromium, url, folder / f"profile{number}_{rep}", results) for rep in range(args.reps)
                ]
                ok = [run for run in runs if "timeout" not in run]
                cell = {
                    key: f"{statistics.median(int(run[key]) for run in ok):.0f} ({', '.join(run[key] for run in ok)})"
                    if ok
                    else "timeout"
                    for key in ("load", "last")
                }
                plots = ok[0]["plots"] if ok else "-"
                print(
                    f"| {report} | {report.stat().st_size / 1e6:.2f} | {cell['load']} | {cell['last']} | {plots} |",
                    flush=True,
                )
        finally:
            server.shutdown()


if __name__ == "__main__":
    main()
