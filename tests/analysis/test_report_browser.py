"""The report in a real browser: headless Chromium (Debian `chromium`) loads index.html offline and every
table and figure the analysis wrote is there and rendered."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from llmseg_mlflow.analysis import AnalyzeConfig, run_analyze

# Injected into a copy of the report: after load, record what the browser actually rendered.
PROBE = """<script>
window.addEventListener('load', () => {
  const figs = [...document.querySelectorAll('img.llmseg-figure')].map(i => ({
    name: i.dataset.name, ok: i.complete && i.naturalWidth > 0 && i.getBoundingClientRect().width > 0}));
  const tables = [...document.querySelectorAll('div.table-output')].map(d => ({
    name: d.dataset.name, rows: d.querySelectorAll('tbody tr').length,
    ok: d.querySelector('table').getBoundingClientRect().height > 0}));
  const fetched = performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('data:'));
  const pre = document.createElement('pre');
  pre.id = 'llmseg-probe';
  pre.textContent = JSON.stringify({figs, tables, fetched});
  document.body.appendChild(pre);
});
</script>"""


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):  # `make setup` and .ci/run install it as root
        pytest.fail("chromium is missing: run `make setup` (or `apt-get install -y chromium`)")
    pytest.skip("chromium is missing and cannot be installed without root: `sudo apt-get install -y chromium`")


def test_every_table_and_figure_renders_in_headless_chromium(on_server, tmp_path):
    browser = _chromium()
    report = run_analyze(
        AnalyzeConfig(
            study=on_server.name,
            output=tmp_path / "report",
            data_root=on_server.data_root,
            cache_dir=tmp_path / "cache",
            log_run=False,
        ),
        progress=lambda m: None,
    )
    probe = report.parent / "probe.html"
    probe.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=15000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    found = re.search(r'<pre id="llmseg-probe">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"the page did not finish loading: {proc.stderr[-2000:]}"
    result = json.loads(
        found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    )
    on_disk_figs = {p.stem for p in (report.parent / "figures").glob("*.png")}
    on_disk_tables = {p.stem for p in (report.parent / "tables").glob("*.csv")}
    assert {f["name"] for f in result["figs"]} == on_disk_figs and len(on_disk_figs) >= 15
    assert {t["name"] for t in result["tables"]} == on_disk_tables and len(on_disk_tables) >= 15
    assert [f["name"] for f in result["figs"] if not f["ok"]] == []
    assert [t["name"] for t in result["tables"] if not (t["ok"] and t["rows"] > 0)] == []
    assert result["fetched"] == []  # nothing loaded from outside the file: it opens offline
