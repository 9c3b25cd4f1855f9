"""The service under load and faults, with real servers and real clients: every client sees
its 413, a stop lets requests in flight finish, a retrained model is picked up without a mixed
or dropped answer."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request

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
