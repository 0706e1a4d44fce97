"""`orderlearn serve`: the page in a real headless Chromium (Debian's package) shows, for an
uploaded SCUT-FBP5500 test face, the score `orderlearn predict` gives for the same file.

The browser is driven over the DevTools protocol on Chromium's ``--remote-debugging-pipe``
(NUL-terminated JSON on file descriptors 3 and 4), so no driver or websocket package is needed.
Skipped cleanly where Chromium or gradio is absent. Run as a script, it writes the page's
screenshot: ``python tests/test_serve.py --model BUNDLE --photo FACE --screenshot docs/serve_page.png``.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
SCORE_JS = "(() => { const e = document.querySelector('#score textarea, #score input'); return e ? e.value : null; })()"
FILE_INPUT = "#photo input[type=file]"


def find_chromium() -> Optional[str]:
    return next((shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n)), None)


class DevToolsPipe:
    """A headless Chromium and one page, commanded over the DevTools pipe."""

    def __init__(self, binary: str, width: int = 1200, height: int = 1000) -> None:
        self.profile = tempfile.mkdtemp(prefix="orderlearn-chromium-")
        to_browser, self.writer = os.pipe()
        self.reader, from_browser = os.pipe()

        def child_fds() -> None:  # fds 3 and 4 are the browser's end of the protocol
            os.dup2(to_browser, 100)
            os.dup2(from_browser, 101)
            os.dup2(100, 3)
            os.dup2(101, 4)
            os.close(100)
            os.close(101)

        self.process = subprocess.Popen(
            [binary, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-dev-shm-usage", f"--user-data-dir={self.profile}", f"--window-size={width},{height}"],
            preexec_fn=child_fds, pass_fds=(3, 4),  # every other descriptor is closed after child_fds
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self.buffer, self.next_id, self.session, self.width = b"", 0, None, width
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if self.session is not None and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self.writer, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            chunk = os.read(self.reader, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 60.0) -> Any:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.25)
        raise TimeoutError(f"page never satisfied {expression!r} within {timeout_s:g} s")

    def upload(self, selector: str, path: Path) -> None:
        root = self.call("DOM.getDocument", depth=-1, pierce=True)["root"]["nodeId"]
        node = self.call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        if not node:
            raise RuntimeError(f"no element {selector!r} on the page")
        self.call("DOM.setFileInputFiles", files=[str(Path(path).resolve())], nodeId=node)

    def screenshot(self, out: Path, height: Optional[int] = None) -> Path:
        """The page as PNG; ``height``: only its top that many pixels."""
        clip = {} if height is None else {"clip": {"x": 0, "y": 0, "width": self.width, "height": height, "scale": 1}}
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=False, **clip)["data"]
        Path(out).write_bytes(base64.b64decode(data))
        return Path(out)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        os.close(self.writer)
        os.close(self.reader)
        shutil.rmtree(self.profile, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def score_on_the_page(bundle: Path, photo: Path, align: str, screenshot: Optional[Path] = None,
                      screenshot_height: Optional[int] = None) -> str:
    """Start the page of ``bundle``, upload ``photo`` in headless Chromium, return the score it shows."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from orderlearn.runs.loaded import LoadedRun
    from orderlearn.commands.serve import build_app

    app = build_app(LoadedRun.load(bundle), align=align)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, show_error=True, quiet=True)
    browser = DevToolsPipe(find_chromium())
    try:
        browser.call("Page.navigate", url=f"http://127.0.0.1:{port}/")
        browser.wait_for(f"document.querySelector({json.dumps(FILE_INPUT)}) !== null")
        browser.upload(FILE_INPUT, photo)
        shown = browser.wait_for(SCORE_JS, timeout_s=120)
        browser.wait_for("document.querySelector('#decision img') !== null", timeout_s=60)
        if screenshot is not None:
            time.sleep(1.0)  # let the images paint
            browser.screenshot(screenshot, screenshot_height)
        return shown
    finally:
        browser.close()
        app.close()


@pytest.fixture(scope="module")
def bundle(scut_root, tmp_path_factory) -> Path:
    from orderlearn.cli import main

    from test_predict import tiny_scut_run

    root = tmp_path_factory.mktemp("serve")
    run = tiny_scut_run(scut_root, root / "run")
    assert main(["export", str(run), "--out", str(root / "bundle"), "--template-faces", "20"]) == 0
    return root / "bundle"


@pytest.mark.slow  # a headless browser and a server
@pytest.mark.parametrize("align", ["none", "mtcnn"])
def test_the_page_shows_the_score_predict_gives(bundle, align, tmp_path, one_thread):
    if find_chromium() is None:
        pytest.skip("no Chromium here (`apt-get install chromium` where apt is available)")
    pytest.importorskip("gradio")
    if align == "mtcnn":
        pytest.importorskip("facenet_pytorch")
    from orderlearn.cli import main

    from test_predict import read_csv

    face = Path(read_csv(bundle.parent / "run" / "scores.csv")[0]["path"])
    assert main(["predict", str(face), "--model", str(bundle), "--align", align, "--json", str(tmp_path / "p.json")]) == 0
    expected = json.loads((tmp_path / "p.json").read_text())["predictions"][0]["score"]
    shown = score_on_the_page(bundle, face, align, screenshot=tmp_path / "page.png")
    assert shown == f"{expected:.6f}"
    assert (tmp_path / "page.png").stat().st_size > 10_000  # the page rendered


def test_without_gradio_serve_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    from orderlearn.cli import main

    monkeypatch.setitem(sys.modules, "gradio", None)
    assert main(["serve", "--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "orderlearn[serve]" in err


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="screenshot of the page after scoring one photo")
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--photo", required=True, type=Path)
    parser.add_argument("--screenshot", required=True, type=Path)
    parser.add_argument("--align", default="mtcnn", choices=["mtcnn", "none"])
    parser.add_argument("--height", type=int, default=700, help="keep the top this many pixels of the page")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    print("score on the page:", score_on_the_page(args.model, args.photo, args.align, args.screenshot, args.height))
