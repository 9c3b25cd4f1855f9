"""The service under load and faults, with real servers and real clients: every client sees
its 413, a stop lets requests in flight finish, a retrained model is picked up without a mixed
or dropped answer."""

from __future__ import annotations

import io
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.browser import chromium
from tests.live_server import start_server, stop

pytestmark = pytest.mark.slow  # real servers, clients and a browser

CAP_MB = 1
OVER = 3 * 2**20  # three times the cap: sent whole by clients that do not wait for 100-continue


@pytest.fixture(scope="module")
def capped_server(sample_model):
    server, url = start_server(sample_model, "--max-body-mb", str(CAP_MB), "--no-access-log")
    yield url
    stop(server)


def _multipart(size: int) -> tuple[bytes, str]:
    boundary = "pinid-test-boundary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n'
            "Content-Type: image/png\r\n\r\n").encode()  # fmt: skip
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head + b"\0" * size + tail, f"multipart/form-data; boundary={boundary}"


def test_urllib_which_sends_the_whole_body_first_gets_the_413_every_time(capped_server):
    body, kind = _multipart(OVER)
    for _ in range(10):
        request = urllib.request.Request(
            f"{capped_server}/api/identify", data=body, headers={"Content-Type": kind}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=60)
        assert refused.value.code == 413
        assert "limit" in json.loads(refused.value.read())["detail"]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_httpx_gets_the_413_with_or_without_a_declared_length(capped_server, chunked):
    body, kind = _multipart(OVER)
    content = (body[i : i + 65536] for i in range(0, len(body), 65536)) if chunked else body
    for _ in range(5):
        response = httpx.post(f"{capped_server}/api/identify", content=content,
                              headers={"content-type": kind}, timeout=60)  # fmt: skip
        assert response.status_code == 413 and "limit" in response.json()["detail"]
        content = (body[i : i + 65536] for i in range(0, len(body), 65536)) if chunked else body


def _noise_png(path, size_bytes: int) -> None:
    side = int((size_bytes / 3) ** 0.5) + 16
    pixels = np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=0)
    path.write_bytes(buffer.getvalue())


def test_the_page_refuses_an_over_limit_file_before_sending_and_fetch_sees_the_413(
    capped_server, tmp_path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    big = tmp_path / "photo.png"
    _noise_png(big, 2 * 2**20)
    browser = chromium()
    try:
        browser.get(capped_server + "/")
        WebDriverWait(browser, 20).until(
            expected_conditions.text_to_be_present_in_element((By.ID, "size-limit"), "1 MB")
        )
        browser.find_element(By.ID, "image-input").send_keys(str(big))
        error = browser.find_element(By.ID, "error")
        WebDriverWait(browser, 10).until(lambda _: error.is_displayed())
        on_choice = error.text
        browser.find_element(By.ID, "identify").click()
        on_submit = error.text
        verdict_shown = browser.find_element(By.ID, "verdict").is_displayed()
        # a client that skips the page's check still gets the server's answer, not a reset
        status, detail = browser.execute_async_script(
            "const done = arguments[0];"
            "const data = new FormData();"
            "data.append('image', new Blob([new Uint8Array(3 * 1048576)]), 'big.png');"
            "fetch('/api/identify', {method: 'POST', body: data})"
            "  .then(r => r.json().then(b => done([r.status, b.detail])))"
            "  .catch(e => done([0, String(e)]));"
        )
    finally:
        browser.quit()
    assert "the server accepts up to 1 MB" in on_choice and on_submit == on_choice
    assert not verdict_shown
    assert status == 413 and "limit" in detail


def _pin_upload(pin: dict) -> tuple[bytes, str]:
    boundary = "pinid-pin-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="text"\r\n\r\n{pin["text"]}\r\n',
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="pin.png"\r\n'
        "Content-Type: image/png\r\n\r\n",
    ]
    body = "".join(parts).encode() + pin["path"].read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def pins(sample_corpus) -> list[dict]:
    rows = [json.loads(line) for line in sample_corpus.read_text().splitlines()]
    return [{**row, "path": sample_corpus.parent / row["image"]} for row in rows]


def _read_response(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_sigterm_finishes_requests_in_flight_refuses_new_ones_and_exits_0(sample_model, pins):
    server, url = start_server(sample_model, "--no-access-log")
    port = int(url.rsplit(":", 1)[1])
    body, kind = _pin_upload(pins[0])
    head = (f"POST /api/identify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(head + body[: len(body) // 2])  # in flight: half its body sent
            time.sleep(0.5)
            server.send_signal(signal.SIGTERM)
            assert _wait_for(lambda: not _answers(url), 10)  # the listener is closed
            sock.sendall(body[len(body) // 2 :])
            status, answer = _read_response(sock)
        assert status == 200 and answer["user"] == pins[0]["user"]
        assert server.wait(timeout=30) == 0
    finally:
        stop(server)


def _fewer_users(sample_corpus: Path, tmp_path: Path) -> tuple[Path, set[str]]:
    """The sample corpus without its first user: a retrained model that answers differently."""
    folder = tmp_path / "corpus"
    shutil.copytree(sample_corpus.parent, folder)
    rows = [json.loads(line) for line in sample_corpus.read_text().splitlines()]
    kept = [r for r in rows if r["user"] != rows[0]["user"]]
    manifest = folder / "fewer-users.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return manifest, {r["user"] for r in kept}


def _health(url: str) -> dict:
    return httpx.get(f"{url}/healthz", timeout=10).json()


def _answers(url: str) -> bool:
    try:
        httpx.get(f"{url}/healthz", timeout=2)
    except httpx.TransportError:
        return False
    return True


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def _train(manifest: Path, out: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pinid", "train", "--data", str(manifest), "--out", str(out)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_a_model_retrained_under_load_is_taken_up_whole_and_a_broken_one_is_not(
    sample_model, sample_corpus, pins, tmp_path
):
    folder = tmp_path / "model"
    shutil.copytree(sample_model, folder)
    manifest, new_users = _fewer_users(sample_corpus, tmp_path)
    server, url = start_server(folder, "--watch", "--no-access-log")
    old_users = {u["user"] for u in httpx.get(f"{url}/api/users").json()["users"]}
    old_id = _health(url)["model_id"]
    answers: list[tuple[int, dict]] = []
    stopping = threading.Event()

    def client(i: int) -> None:
        pin = pins[i]
        upload = {"image": ("pin.png", pin["path"].read_bytes())}
        with httpx.Client(timeout=60) as http:
            while not stopping.is_set():
                response = http.post(
                    f"{url}/api/identify", data={"text": pin["text"]}, files=upload
                )
                answers.append((response.status_code, response.json()))

    clients = [threading.Thread(target=client, args=(i,)) for i in (1, 7, 13)]
    try:
        for thread in clients:
            thread.start()
        trained = _train(manifest, folder)
        assert trained.returncode == 0, trained.stderr
        assert _wait_for(lambda: _health(url)["model_id"] != old_id, 30)
        new_id = _health(url)["model_id"]
        time.sleep(2)
        stopping.set()
        for thread in clients:
            thread.join(timeout=60)
        # a broken folder: the old (here: the retrained) model goes on serving
        broken = folder / "model.json.new"
        broken.write_text("{not json")
        broken.replace(folder / "model.json")
        time.sleep(3)
        after = httpx.post(f"{url}/api/identify", data={"text": pins[1]["text"]}, timeout=30)
        kept_id = _health(url)["model_id"]
    finally:
        stopping.set()
        stop(server)
    log = server.stdout.read().decode()
    assert {status for status, _ in answers} == {200}
    # never a mix: each answer's users and its thumbnails' model are one model's
    models = {(frozenset(old_users), old_id), (frozenset(new_users), new_id)}
    served = [
        (frozenset(c["user"] for c in answer["candidates"]),
         {c["evidence"]["image_url"].rsplit("=", 1)[1] for c in answer["candidates"]})
        for _, answer in answers
    ]  # fmt: skip
    assert all(len(ids) == 1 and (users, *ids) in models for users, ids in served)
    assert {(users, *ids) for users, ids in served} == models  # both served, in turn
    assert after.status_code == 200 and kept_id == new_id != old_id
    assert log.count(f"now serving model {new_id}") == 1
    assert log.count(f"kept model {new_id} in service") == 1, log


def test_sighup_takes_up_a_retrained_model(sample_model, sample_corpus, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(sample_model, folder)
    manifest, new_users = _fewer_users(sample_corpus, tmp_path)
    server, url = start_server(folder, "--no-access-log")
    try:
        old_id = _health(url)["model_id"]
        assert _train(manifest, folder).returncode == 0
        time.sleep(2)
        assert _health(url)["model_id"] == old_id  # without --watch: only on SIGHUP
        server.send_signal(signal.SIGHUP)
        assert _wait_for(lambda: _health(url)["model_id"] != old_id, 30)
        users = {u["user"] for u in httpx.get(f"{url}/api/users").json()["users"]}
    finally:
        stop(server)
    assert users == new_users


def soak_kinds() -> tuple[str, ...]:
    return ("text", "text+image", "oversize", "damaged", "slow-drip")


def test_a_short_soak_answers_every_kind_of_client_as_documented(sample_model, tmp_path):
    out = tmp_path / "soak.json"
    soak = Path(__file__).parents[1] / "benchmarks" / "soak.py"
    done = subprocess.run([sys.executable, str(soak), "--model", str(sample_model), "--seconds",
                           "25", "--clients", "6", "--json", str(out)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    result = json.loads(out.read_text())
    assert result["answers"] > 20 and result["unexpected"] == {}, result
    assert not [s for s in result["errors_by_status"] if s.startswith("5") and s != "503"]
    assert all(result["by_kind"][kind] for kind in soak_kinds())  # every kind of client came
    assert result["p50_ms"] > 0 and result["rss_mb_end"] > 0
    # its exit status is the goals' (RSS growth and p99 on a 25 s run on a shared machine are
    # not asserted here: they are the 10-minute run's figures)
    assert done.returncode in (0, 1) and "no 5xx but 503" in done.stdout, done.stderr
