"""The web service: the API in-process (httpx), its OpenAPI schema under schemathesis, the
command line, and the page in a real browser against a real server."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from PIL import Image
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from pinid.api import Model
from pinid.cli import main
from pinid.features.images import UnreadableImage
from pinid.service.app import MAX_TEXT_CHARS, Upload, create_app
from pinid.service.middleware import RequestLimits
from pinid.service.settings import Settings
from tests.browser import accessibility_violations, chromium
from tests.helpers import uncertain_text
from tests.live_server import start_server, stop

SMALL_CAP = 256 * 1024


@pytest.fixture(scope="module")
def model_dir(sample_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("service") / "model"
    assert main(["train", "--data", str(sample_corpus), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def pins(sample_corpus) -> list[dict]:
    rows = [json.loads(line) for line in sample_corpus.read_text().splitlines()]
    for row in rows:
        row["path"] = sample_corpus.parent / row["image"]
    return rows


@pytest.fixture(scope="module")
def predictor(model_dir) -> Model:
    return Model.load(model_dir, reject_below=None)  # every answer names a user


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app(predictor, max_body_bytes=SMALL_CAP)) as test_client:
        yield test_client


def _encoded(image: Image.Image, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format)
    return buffer.getvalue()


def _identify(client, text=None, image=None, name="pin.png"):
    files = {"image": (name, image, "application/octet-stream")} if image is not None else None
    data = {"text": text} if text is not None else None
    return client.post("/api/identify", data=data, files=files)


def test_a_training_pin_is_attributed_to_its_user_with_evidence(client, pins):
    pin = pins[0]
    response = _identify(client, pin["text"], pin["path"].read_bytes())
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["used"] == ["text", "image"]
    assert answer["candidates"][0]["user"] == pin["user"]
    assert answer["elapsed_ms"] > 0
    evidence = answer["candidates"][0]["evidence"]
    assert set(evidence) == {"pin_id", "text", "image", "image_url", "similarity"}
    assert evidence["image"] is None  # never a path on the server
    thumbnail = client.get(evidence["image_url"])
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumbnail.content)).size) <= 160


def test_predict_the_service_and_the_python_api_give_the_same_answer(
    client, pins, model_dir, capsys
):
    pin = pins[7]
    assert main(["predict", "--model", str(model_dir), "--image", str(pin["path"]),
                 "--text", pin["text"], "--json", "--reject-below", "none"]) == 0  # fmt: skip
    from_cli = json.loads(capsys.readouterr().out)
    from_python = Model.load(model_dir, reject_below=None).identify(pin["text"], pin["path"])
    from_python = from_python.model_dump()
    from_service = _identify(client, pin["text"], pin["path"].read_bytes()).json()
    assert from_python == from_cli
    # the service's own fields: its time, the model by name, thumbnails instead of paths
    assert from_service.pop("elapsed_ms") > 0
    assert from_service.pop("model") == model_dir.name and from_cli.pop("model") == str(model_dir)
    for candidate in from_cli["candidates"]:
        assert candidate["evidence"].pop("image_url") is None
        candidate["evidence"]["image"] = None
    for candidate in from_service["candidates"]:
        assert candidate["evidence"].pop("image_url").startswith("/api/thumbnails/")
    assert set(from_service) == set(from_cli)
    for field in from_cli:
        assert from_service[field] == from_cli[field], field


def test_the_answer_is_unknown_below_the_servers_threshold(model_dir, client, pins):
    text = uncertain_text(
        pins, lambda t: _identify(client, t).json()["candidates"][0]["probability"]
    )
    answer = _identify(client, text).json()
    assert answer["user"] == answer["candidates"][0]["user"] and answer["reject_below"] is None
    above = (answer["candidates"][0]["probability"] + 1) / 2
    with TestClient(create_app(Model.load(model_dir, reject_below=above))) as strict:
        rejected = _identify(strict, text).json()
    assert rejected["user"] == "unknown" and rejected["reject_below"] == above
    assert [e["user"] for e in rejected["candidates"]] == [e["user"] for e in answer["candidates"]]
    chosen = json.loads((model_dir / "model.json").read_text())["meta"]["reject_below"]
    assert chosen is not None and Model.load(model_dir).reject_below == chosen  # by default


def test_either_modality_alone_is_enough(client, pins):
    pin = pins[3]
    by_text = _identify(client, text=pin["text"]).json()
    by_image = _identify(client, image=pin["path"].read_bytes()).json()
    assert by_text["used"] == ["text"] and by_image["used"] == ["image"]
    assert all(e["image_prob"] is None for e in by_text["candidates"])
    assert all(e["text_prob"] is None for e in by_image["candidates"])


@pytest.mark.parametrize("text", [None, "", "   "])
def test_no_text_and_no_image_is_422(client, text):
    response = _identify(client, text=text)
    assert response.status_code == 422
    assert response.json() == {"detail": "give an image, a text or both"}


def test_a_text_of_nothing_known_alone_is_422_with_the_reason(client):
    response = _identify(client, text="※※※ ¶¶¶")
    assert response.status_code == 422 and "nothing the model knows" in response.json()["detail"]


def test_an_overlong_text_is_422(client):
    response = _identify(client, text="word " * (MAX_TEXT_CHARS // 5 + 1))
    assert response.status_code == 422 and "text" in response.json()["detail"]


def test_a_body_over_the_cap_is_413(client):
    response = _identify(client, "apple", b"\0" * (SMALL_CAP + 1))
    assert response.status_code == 413 and "limit" in response.json()["detail"]


def test_the_cap_counts_streamed_bytes_not_the_declared_length(client):
    chunks = (b"x" * 65536 for _ in range(SMALL_CAP // 65536 + 2))  # no Content-Length: chunked
    response = client.post(
        "/api/identify", content=chunks, headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert response.status_code == 413 and response.json()["detail"].startswith("request body")


@pytest.mark.parametrize(
    ("data", "name", "status"),
    [
        (b"this is a text file, not a picture", "pin.jpg", 415),
        (_encoded(Image.new("RGB", (8, 8)), "BMP"), "pin.bmp", 415),
        (_encoded(Image.new("RGB", (64, 64), "red"))[:60], "pin.png", 422),  # truncated
        (_encoded(Image.new("1", (7000, 7000))), "pin.png", 413),  # 49 Mpx: decompression bomb
    ],
    ids=["text-as-jpg", "bmp-not-accepted", "truncated-png", "bomb"],
)
def test_bad_images_get_415_422_or_413_with_a_json_reason(client, data, name, status):
    response = _identify(client, "apple", data, name)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["detail"].startswith("image: ")


def test_a_png_named_svg_is_decoded_and_a_text_named_svg_is_415(client, pins):
    png = _identify(client, image=pins[0]["path"].read_bytes(), name="pin.svg")
    assert png.status_code == 200 and png.json()["used"] == ["image"]
    text = _identify(client, image=b"# README\n\nnot a picture\n", name="pin.svg")
    assert text.status_code == 415 and text.json()["detail"].startswith("image: SVG")


def test_refusals_from_the_middleware_carry_the_security_headers(client):
    response = _identify(client, "apple", b"\0" * (SMALL_CAP + 1))
    assert response.status_code == 413 and response.headers["x-content-type-options"] == "nosniff"


def test_thumbnail_rows_out_of_range_are_404_even_absurd_ones(client, predictor):
    for row in (len(predictor.pins.pin_ids), 10**300):
        response = client.get(f"/api/thumbnails/{row}")
        assert response.status_code == 404 and "detail" in response.json()


def test_a_thumbnail_symlinked_out_of_the_model_folder_is_never_served(model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"private")
    (copy / "thumbnails" / "0.jpg").unlink()
    (copy / "thumbnails" / "0.jpg").symlink_to(secret)
    with TestClient(create_app(Model.load(copy))) as client:
        response = client.get("/api/thumbnails/0")
        assert response.status_code == 404 and b"private" not in response.content
        assert client.get("/api/thumbnails/1").status_code == 200


def test_head_requests_answer_like_get(client):
    assert client.head("/").status_code == 200
    assert client.head("/healthz").status_code == 200


def _asgi_request(method: str, path: str, chunks: list[bytes], stall: asyncio.Event | None = None):
    """An ASGI scope and a receive() that sends ``chunks``, then waits on ``stall`` (if given)
    before reporting a disconnect: a client that stops sending half-way."""
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
             "server": ("pinid", 80), "client": ("127.0.0.1", 1),
             "headers": [(b"content-type", b"multipart/form-data; boundary=b")]}  # fmt: skip
    pending = list(chunks)

    async def receive():
        if pending:
            body = pending.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(pending) or bool(stall)}
        if stall is not None:
            await stall.wait()
        return {"type": "http.disconnect"}

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    return scope, receive, send, sent


def test_bodies_share_a_memory_budget_and_slow_senders_time_out(predictor):
    async def scenario():
        app = RequestLimits(create_app(predictor), max_body_bytes=1000, buffer_budget=1500,
                            idle_timeout_s=0.5)  # fmt: skip
        stall = asyncio.Event()
        slow = _asgi_request("POST", "/api/identify", [b"x" * 1000], stall)
        holder = asyncio.create_task(app(*slow[:3]))
        await asyncio.sleep(0.05)
        assert app.buffered == 1000
        second = _asgi_request("POST", "/api/identify", [b"y" * 800])
        await app(*second[:3])
        health = _asgi_request("GET", "/healthz", [b""])
        await app(*health[:3])
        await holder  # the slow sender's pause exceeds the idle timeout
        return slow[3][0]["status"], second[3][0]["status"], health[3][0]["status"], app.buffered

    assert asyncio.run(scenario()) == (408, 503, 200, 0)


@pytest.mark.parametrize(
    ("option", "value"),
    [("--max-body-mb", "nan"), ("--max-body-mb", "0"), ("--port", "70000"), ("--batch", "0"),
     ("--batch-window-ms", "nan"), ("--batch-window-ms", "-1"), ("--batch-window-ms", "500")],
)  # fmt: skip
def test_serve_refuses_out_of_range_options_in_one_line(model_dir, option, value, capsys):
    assert main(["serve", "--model", str(model_dir), option, value]) == 2
    err = capsys.readouterr().err
    assert option in err and err.count("\n") == 1


def test_users_health_schema_and_page(client, predictor):
    users = client.get("/api/users").json()["users"]
    assert sum(u["pins"] for u in users) == len(predictor.pins.pin_ids)
    assert sorted(u["user"] for u in users) == sorted(predictor.users)
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["users"] == len(users)
    schema = client.get("/openapi.json").json()
    assert {"/api/identify", "/api/users", "/api/links", "/healthz"} <= set(schema["paths"])
    page = client.get("/")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["x-content-type-options"] == "nosniff"
    assert 'id="pin-form"' in page.text and "http" not in page.text.replace("/openapi.json", "")
    assert client.get("/static/app.js").status_code == 200
    missing = client.get(f"/api/thumbnails/{len(predictor.pins.pin_ids)}")
    assert missing.status_code == 404 and "detail" in missing.json()


def test_links_answer_the_likeliest_account_pairs_with_thumbnails_as_evidence(client, predictor):
    response = client.get("/api/links")
    assert response.status_code == 200, response.text
    pairs = response.json()["pairs"]
    users = set(predictor.users)
    assert 0 < len(pairs) <= len(users) * (len(users) - 1) // 2  # every pair at most once
    scores = [pair["score"] for pair in pairs]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    fetched = 0
    for pair in pairs:
        assert set(pair) == {"accounts", "score", "evidence"}
        a, b = pair["accounts"]
        assert a != b and {a, b} <= users
        for evidence in pair["evidence"]:
            assert set(evidence) == {"pins", "texts", "images", "image_urls", "view", "similarity"}
            assert evidence["images"] == [None, None]  # never a path on the server
            assert evidence["view"] in {"words", "chars", "image"}
            assert -1 <= evidence["similarity"] <= 1 and len(evidence["texts"]) == 2
            for pin_id, account, url in zip(evidence["pins"], (a, b), evidence["image_urls"],
                                            strict=True):  # fmt: skip
                assert predictor.pins.users[predictor.pins.pin_ids.index(pin_id)] == account
                assert url.startswith("/api/thumbnails/")  # every sample pin has an image
                thumbnail = client.get(url)
                assert thumbnail.status_code == 200, url
                assert thumbnail.headers["content-type"] == "image/jpeg"
                fetched += 1
    assert fetched > 0
    first = client.get("/api/links", params={"top": 1}).json()["pairs"]
    assert first == pairs[:1]
    assert client.get("/api/links", params={"top": 1000}).json()["pairs"] == pairs


@pytest.mark.parametrize("top", ["0", "-1", "1001", "abc", "2.5", ""])
def test_links_refuse_a_top_out_of_range_with_422(client, top):
    response = client.get("/api/links", params={"top": top})
    assert response.status_code == 422 and response.json()["detail"].startswith("top:")


@pytest.mark.slow
def test_links_follow_a_reloaded_model(model_dir, sample_corpus, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    corpus = tmp_path / "corpus"
    shutil.copytree(sample_corpus.parent, corpus)
    rows = [json.loads(line) for line in sample_corpus.read_text().splitlines()]
    kept = [r for r in rows if r["user"] != rows[0]["user"]]  # a model without the first user
    manifest = corpus / "fewer-users.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in kept))
    app = create_app(Model.load(folder))
    service = app.state.service
    with TestClient(app) as client:
        before = client.get("/api/links").json()["pairs"]
        assert main(["train", "--data", str(manifest), "--out", str(folder)]) == 0
        assert client.portal.call(service.reload, "test") is True
        new_id = service.serving.model_id
        after = client.get("/api/links").json()["pairs"]
    assert rows[0]["user"] in {account for pair in before for account in pair["accounts"]}
    assert after and {a for pair in after for a in pair["accounts"]} <= {r["user"] for r in kept}
    urls = [url for pair in after for e in pair["evidence"] for url in e["image_urls"]]
    assert urls and all(url.endswith(f"?model={new_id}") for url in urls)


def test_a_full_inference_queue_answers_503_at_once_then_recovers(predictor, pins):
    pin = pins[0]

    async def scenario() -> tuple[int, int]:
        app = create_app(predictor, queue=1)
        pool = app.state.service.pool
        release = threading.Event()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pinid") as client:
            blocker = asyncio.create_task(pool.run(release.wait))
            await asyncio.sleep(0.05)
            started = time.perf_counter()
            busy = await client.post("/api/identify", data={"text": pin["text"]})
            assert time.perf_counter() - started < 5
            assert busy.json() == {"detail": "identification queue full; retry shortly"}
            assert busy.headers["retry-after"] == "1"
            release.set()
            await blocker
            after = await client.post("/api/identify", data={"text": pin["text"]})
        return busy.status_code, after.status_code

    assert asyncio.run(scenario()) == (503, 200)


def _same_answer(batched, alone) -> None:
    """The same users, evidence and fields; probabilities and similarities within float
    rounding (a batch's matrix products sum in another order)."""
    batched, alone = batched.model_dump(), alone.model_dump()
    numbers = ("probability", "text_prob", "image_prob")
    for one, other in zip(batched.pop("candidates"), alone.pop("candidates"), strict=True):
        for field in numbers:
            expected = other.pop(field)  # None for a modality the pin lacks
            close = None if expected is None else pytest.approx(expected, rel=1e-6, abs=1e-9)
            assert one.pop(field) == close
        assert one["evidence"].pop("similarity") == pytest.approx(
            other["evidence"].pop("similarity"), abs=1e-6
        )
        assert one == other
    assert batched.pop("probability") == pytest.approx(alone.pop("probability"), rel=1e-6)
    assert batched == alone


def test_a_batchs_answers_are_each_pins_own_and_a_bad_image_fails_alone(predictor, pins):
    uploads = [Upload(p["text"], p["path"].read_bytes(), p["path"].name) for p in pins[:6]]
    uploads[1] = Upload(pins[1]["text"], b"not a picture", "pin.jpg")
    uploads[2] = Upload(None, pins[2]["path"].read_bytes(), "pin.png")  # image alone
    uploads[3] = Upload(pins[3]["text"], None, "")  # text alone
    service = create_app(predictor).state.service
    batched = service.identify(uploads)
    alone = [service.identify([upload])[0] for upload in uploads]
    assert isinstance(batched[1], UnreadableImage) and batched[1].kind == "format"
    assert str(batched[1]) == str(alone[1])
    for row in (0, 2, 3, 4, 5):
        _same_answer(batched[row], alone[row])
    assert [a.used for a in batched[2:4]] == [["image"], ["text"]]


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(predictor, pins):
    chosen = pins[:6]

    async def scenario() -> tuple[list[httpx.Response], list[int]]:
        app = create_app(predictor, batch=4)
        service = app.state.service
        sizes: list[int] = []

        def recorded(uploads):
            sizes.append(len(uploads))
            return service.identify(uploads)

        service.batcher._run_batch = recorded
        release = threading.Event()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pinid") as client:
            blocker = asyncio.create_task(service.pool.run(release.wait))  # the worker is busy
            await asyncio.sleep(0.05)
            posts = [client.post("/api/identify", data={"text": p["text"]},
                                 files={"image": (p["path"].name, p["path"].read_bytes())})
                     for p in chosen]  # fmt: skip
            posts.append(client.post("/api/identify", files={"image": ("pin.jpg", b"nonsense")}))
            sent = asyncio.gather(*posts)
            await asyncio.sleep(0.2)
            release.set()
            await blocker
            return await sent, sizes

    responses, sizes = asyncio.run(scenario())
    assert sum(sizes) == len(chosen) + 1 and max(sizes) == 4  # capped at --batch
    assert responses[-1].status_code == 415
    assert responses[-1].json()["detail"].startswith("image: not an image")
    with TestClient(create_app(predictor, batch=1)) as alone:
        for pin, response in zip(chosen, responses, strict=False):
            assert response.status_code == 200, response.text
            expected = _identify(alone, pin["text"], pin["path"].read_bytes(), pin["path"].name)
            got, expected = response.json(), expected.json()
            assert got.pop("elapsed_ms") > 0 and expected.pop("elapsed_ms") > 0
            assert [c["evidence"]["pin_id"] for c in got["candidates"]] == [
                c["evidence"]["pin_id"] for c in expected["candidates"]
            ]
            assert got["probability"] == pytest.approx(expected["probability"], rel=1e-6)


def test_batch_settings_reach_worker_processes_through_the_environment(model_dir):
    settings = Settings(model_dir, batch=3, batch_window_ms=2.5)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings.to_environment().items():
            patch.setenv(name, value)
        assert Settings.from_environment() == Settings(str(model_dir), batch=3,
                                                       batch_window_ms=2.5)  # fmt: skip


@pytest.fixture(scope="module")
def api_schema(predictor):
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(predictor, queue=64))


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_generated_request_makes_the_server_fail(api_schema, mode):
    """Requests generated from the OpenAPI schema (valid and invalid ones): never a 5xx, and
    every answer as the schema documents it. Schema-valid requests may still be refused: the
    schema cannot say "random bytes are not a picture" or "text or image, at least one"."""

    @given(case=api_schema.as_strategy(mode))
    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def call(case) -> None:
        case.call_and_validate(excluded_checks=[positive_data_acceptance])

    call()


def test_serve_refuses_a_bad_model_folder_in_one_line(tmp_path, capsys):
    assert main(["serve", "--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a pinid model folder" in err and err.count("\n") == 1


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_refuses_a_broken_stored_threshold_in_one_line(model_dir, workers, tmp_path, capsys):
    broken = tmp_path / "model"
    shutil.copytree(model_dir, broken)
    document = json.loads((broken / "model.json").read_text())
    document["meta"]["reject_below"] = "high"
    (broken / "model.json").write_text(json.dumps(document))
    assert main(["serve", "--model", str(broken), "--workers", workers]) == 2
    err = capsys.readouterr().err
    assert "rejection threshold is not a number" in err and err.count("\n") == 1


@pytest.mark.slow
def test_serve_refuses_a_port_in_use_in_one_line(model_dir, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--model", str(model_dir), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and err.count("\n") == 1


@pytest.fixture(scope="module")
def live_server(model_dir):
    server, url = start_server(model_dir, "--max-body-mb", "1")
    yield url
    stop(server)


@pytest.mark.slow
def test_a_real_server_refuses_an_oversized_chunked_upload(live_server):
    chunks = (b"x" * 65536 for _ in range(40))  # 2.5 MB against a 1 MB cap, no Content-Length
    response = httpx.post(
        f"{live_server}/api/identify",
        content=chunks,
        headers={"content-type": "multipart/form-data; boundary=b"},
        timeout=30,
    )
    assert response.status_code == 413 and "limit" in response.json()["detail"]


@pytest.mark.slow
def test_a_pin_dropped_on_the_page_shows_its_user_first_with_evidence(live_server, pins):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    pin = pins[12]
    browser = chromium()
    try:
        browser.get(live_server + "/")
        WebDriverWait(browser, 20).until(  # the page has loaded all it loads by itself
            lambda b: (
                "users" in b.find_element(By.ID, "model-info").text
                and not b.find_element(By.ID, "links-status").text.startswith("Looking")
            )
        )
        empty_page = accessibility_violations(browser)
        browser.find_element(By.ID, "image-input").send_keys(str(pin["path"].resolve()))
        browser.find_element(By.ID, "text-input").send_keys(pin["text"])
        browser.find_element(By.ID, "identify").click()
        WebDriverWait(browser, 30).until(
            lambda b: (
                b.find_elements(By.CSS_SELECTOR, "#ranking li .thumb")
                or b.find_element(By.ID, "error").is_displayed()
            )
        )
        assert not browser.find_element(By.ID, "error").is_displayed()
        first = browser.find_element(By.CSS_SELECTOR, "#ranking li")
        WebDriverWait(browser, 10).until(
            lambda b: b.execute_script(
                "const i = document.querySelector('#ranking li img.thumb');"
                "return i && i.complete && i.naturalWidth > 0"
            )
        )
        user = first.find_element(By.CSS_SELECTOR, ".user .name").text
        summary = browser.find_element(By.ID, "summary").text
        answered_page = accessibility_violations(browser)
    finally:
        browser.quit()
    assert user == pin["user"]
    assert summary.startswith("Used text + image")
    assert not empty_page, "axe-core before an answer:\n" + "\n".join(empty_page)
    assert not answered_page, "axe-core with the answer shown:\n" + "\n".join(answered_page)


@pytest.mark.slow
def test_the_page_lists_accounts_that_look_alike_with_their_thumbnails(
    live_server, predictor, pins
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = chromium()
    try:
        browser.get(live_server + "/")
        WebDriverWait(browser, 30).until(
            lambda b: (
                b.find_elements(By.CSS_SELECTOR, "#link-pairs > li")
                or "could not" in b.find_element(By.ID, "links-status").text
            )
        )
        status = browser.find_element(By.ID, "links-status").text
        loaded = WebDriverWait(browser, 10).until(
            lambda b: b.execute_script(
                "const images = [...document.querySelectorAll('#links img')];"
                "return images.length && images.every(i => i.complete && i.naturalWidth > 0)"
                "  && images.map(i => i.alt)"
            )
        )
        heading = browser.find_element(By.ID, "links-heading").text
        pairs = browser.find_elements(By.CSS_SELECTOR, "#link-pairs > li")
        names = [[n.text for n in p.find_elements(By.CSS_SELECTOR, "h3 .name")] for p in pairs]
        numbers = pairs[0].find_element(By.CSS_SELECTOR, ".numbers").text
        # identification still works beside it
        browser.find_element(By.ID, "text-input").send_keys(pins[0]["text"])
        browser.find_element(By.ID, "identify").click()
        WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#ranking li"))
    finally:
        browser.quit()
    assert heading == "Accounts that look alike" and status.startswith("The ")
    assert 0 < len(pairs) <= 10
    assert all(len(pair) == 2 and set(pair) <= set(predictor.users) for pair in names)
    assert numbers.startswith("score ") and numbers.endswith("(how likely one person runs both)")
    assert all(alt.startswith("pin ") and " of " in alt for alt in loaded)


@pytest.mark.slow
def test_the_page_says_unknown_plainly_and_still_lists_the_candidates(model_dir, pins):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server, url = start_server(model_dir, "--reject-below", "1")  # any answer short of 1.0
    browser = chromium()
    try:
        text = uncertain_text(pins, lambda t: _post(url, t)["probability"])
        browser.get(url + "/")
        browser.find_element(By.ID, "text-input").send_keys(text)
        browser.find_element(By.ID, "identify").click()
        WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "verdict").is_displayed())
        verdict = browser.find_element(By.ID, "verdict").text
        names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#ranking li .name")]
    finally:
        browser.quit()
        stop(server)
    assert verdict.startswith("Unknown user: none of the users this model knows")
    assert "needs 100.0%" in verdict and len(names) == 4  # the sample's four users, listed


def _post(url: str, text: str) -> dict:
    return httpx.post(f"{url}/api/identify", data={"text": text}, timeout=30).json()


@pytest.mark.slow
def test_several_worker_processes_serve_the_same_model(model_dir, pins):
    server, url = start_server(model_dir, "--workers", "2", "--no-access-log")
    try:
        answers = [
            httpx.post(f"{url}/api/identify", data={"text": pins[0]["text"]}, timeout=30).json()
            for _ in range(4)
        ]
    finally:
        stop(server)
    assert all(a["candidates"][0]["user"] == pins[0]["user"] for a in answers)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_a_phone_photo_in_heic_or_avif_is_answered_as_its_png(client, pins, fmt):
    png = pins[0]["path"].read_bytes()
    photo = _encoded(Image.open(io.BytesIO(png)).convert("RGB"), fmt)
    expected = _identify(client, image=png).json()["candidates"][0]["user"]
    response = _identify(client, image=photo, name=f"IMG_0001.{fmt.lower()}")
    assert response.status_code == 200 and response.json()["used"] == ["image"]
    assert response.json()["candidates"][0]["user"] == expected
