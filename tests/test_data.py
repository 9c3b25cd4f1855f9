"""Datasets from manifests and folder trees, and every validation error."""

from __future__ import annotations

import json
import os
import warnings

import pytest

from pinid.data import DataError, PinidWarning, load_dataset
from tests.conftest import write_image, write_manifest


def _row(pin_id="p1", user="u", text="hello", image="a.png", **extra):
    return {"pin_id": pin_id, "user": user, "text": text, "image": image, **extra}


def test_manifest_jsonl_loads_pins_with_relative_images(small_manifest):
    dataset = load_dataset(small_manifest)
    assert len(dataset) == 18
    assert dataset.users == ["alice", "bob", "carol"]
    first = dataset.pins[0]
    assert (first.pin_id, first.user, first.text) == ("alice-0", "alice", "pin 0")
    assert first.image == small_manifest.parent / "images/alice_0.png"
    assert first.board is None


def test_manifest_csv_loads_with_board(tmp_path):
    write_image(tmp_path / "img" / "x.png", 1)
    path = tmp_path / "pins.csv"
    path.write_text(
        'pin_id,user,text,image,board\n7,ann,"a, quoted text",img/x.png,cats\n', encoding="utf-8"
    )
    (pin,) = load_dataset(path).pins
    assert (pin.pin_id, pin.user, pin.text, pin.board) == ("7", "ann", "a, quoted text", "cats")


def test_missing_column_names_file_and_line(tmp_path):
    write_image(tmp_path / "a.png", 1)
    path = write_manifest(tmp_path, [_row(), {"pin_id": "p2", "user": "u", "image": "a.png"}])
    with pytest.raises(DataError, match=r"manifest\.jsonl:2: missing column\(s\) text"):
        load_dataset(path)


def test_missing_column_in_csv_header(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("pin_id,user,image\n1,u,a.png\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"m\.csv:1: missing column\(s\) text"):
        load_dataset(path)


def test_duplicate_pin_id_names_both_lines(tmp_path):
    write_image(tmp_path / "a.png", 1)
    path = write_manifest(tmp_path, [_row(), _row(text="again")])
    with pytest.raises(
        DataError, match=r"manifest\.jsonl:2: duplicate pin_id 'p1' \(first at .*:1\)"
    ):
        load_dataset(path)


def test_absolute_image_path_refused(tmp_path):
    image = write_image(tmp_path / "a.png", 1)
    path = write_manifest(tmp_path, [_row(image=str(image))])
    with pytest.raises(DataError, match=r"manifest\.jsonl:1: image path .* is absolute"):
        load_dataset(path)


def test_escaping_image_path_refused(tmp_path):
    write_image(tmp_path / "outside.png", 1)
    data = tmp_path / "data"
    data.mkdir()
    path = write_manifest(data, [_row(image="../outside.png")])
    with pytest.raises(
        DataError, match=r"manifest\.jsonl:1: image path .* escapes the data folder"
    ):
        load_dataset(path)


def test_symlink_leading_outside_refused(tmp_path):
    outside = write_image(tmp_path / "secret.png", 1)
    data = tmp_path / "data"
    data.mkdir()
    os.symlink(outside, data / "link.png")
    path = write_manifest(data, [_row(image="link.png")])
    with pytest.raises(DataError, match=r"manifest\.jsonl:1: .* symlink leading outside"):
        load_dataset(path)


def test_symlink_inside_data_folder_accepted(tmp_path):
    write_image(tmp_path / "real.png", 1)
    os.symlink(tmp_path / "real.png", tmp_path / "alias.png")
    path = write_manifest(tmp_path, [_row(image="alias.png")])
    assert len(load_dataset(path)) == 1


def test_missing_image_file(tmp_path):
    path = write_manifest(tmp_path, [_row(image="nope.png")])
    with pytest.raises(DataError, match=r"manifest\.jsonl:1: image file 'nope.png' not found"):
        load_dataset(path)


def test_invalid_utf8_is_replaced_with_a_warning(tmp_path):
    write_image(tmp_path / "a.png", 1)
    path = tmp_path / "m.csv"
    path.write_bytes(b"pin_id,user,text,image\n1,u,caf\xe9 au lait,a.png\n")
    with pytest.warns(PinidWarning, match=r"m\.csv: text is not valid UTF-8"):
        (pin,) = load_dataset(path).pins
    assert pin.text == "caf\ufffd au lait"


def test_not_json_names_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"pin_id": 1}\n{oops\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"m\.jsonl:2: not valid JSON"):
        load_dataset(path)


def test_folder_tree_reads_user_board_pin_and_text(tmp_path):
    write_image(tmp_path / "ann" / "cats" / "p1.png", 1)
    (tmp_path / "ann" / "cats" / "p1.txt").write_text("my cat", encoding="utf-8")
    write_image(tmp_path / "ann" / "dogs" / "p2.jpg", 2)
    write_image(tmp_path / "bob" / "food" / "p3.webp", 3)
    import pinid.features.images  # noqa: F401  (registers the HEIC encoder for write_image)

    write_image(tmp_path / "bob" / "trip" / "IMG_4.HEIC", 4)  # phones' names, upper case
    write_image(tmp_path / "bob" / "trip" / "p5.avif", 5)
    dataset = load_dataset(tmp_path)
    pins = {p.pin_id: p for p in dataset.pins}
    assert set(pins) == {"ann/cats/p1", "ann/dogs/p2", "bob/food/p3", "bob/trip/IMG_4",
                         "bob/trip/p5"}  # fmt: skip
    assert (pins["ann/cats/p1"].user, pins["ann/cats/p1"].board) == ("ann", "cats")
    assert pins["ann/cats/p1"].text == "my cat"
    assert pins["ann/dogs/p2"].text == ""  # no .txt = empty text


def test_folder_tree_two_images_same_stem_is_duplicate(tmp_path):
    write_image(tmp_path / "ann" / "b" / "p1.png", 1)
    write_image(tmp_path / "ann" / "b" / "p1.gif", 2)
    with pytest.raises(DataError, match="duplicate pin_id 'ann/b/p1'"):
        load_dataset(tmp_path)


def test_folder_tree_symlink_outside_refused(tmp_path):
    outside = write_image(tmp_path / "elsewhere.png", 1)
    root = tmp_path / "root"
    (root / "ann" / "b").mkdir(parents=True)
    os.symlink(outside, root / "ann" / "b" / "p.png")
    with pytest.raises(DataError, match="symlink leading outside"):
        load_dataset(root)


def test_small_users_dropped_with_warning_or_refused_when_strict(tmp_path):
    rows = []
    for user, n in (("big", 6), ("large", 3), ("tiny", 2)):
        for i in range(n):
            write_image(tmp_path / f"{user}{i}.png", i)
            rows.append(_row(pin_id=f"{user}{i}", user=user, image=f"{user}{i}.png"))
    dataset = load_dataset(write_manifest(tmp_path, rows))
    with pytest.warns(PinidWarning, match=r"1 user\(s\) with fewer than 3 pins .*'tiny' \(2\)"):
        kept = dataset.drop_small_users()
    assert kept.users == ["big", "large"]
    with pytest.raises(DataError, match="'tiny'"):
        dataset.drop_small_users(strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kept.drop_small_users() is kept


def test_jsonl_text_may_hold_unicode_line_separators(tmp_path):
    write_image(tmp_path / "a.png", 1)
    path = tmp_path / "m.jsonl"
    row = json.dumps(_row(text="one\u2028two\u0085three"), ensure_ascii=False)
    path.write_text(row + "\n", encoding="utf-8")
    assert load_dataset(path).pins[0].text == "one\u2028two\u0085three"


@pytest.mark.parametrize("name", ["m.csv", "m.jsonl"])
def test_byte_order_mark_is_accepted(tmp_path, name):
    write_image(tmp_path / "a.png", 1)
    path = tmp_path / name
    body = ("pin_id,user,text,image\n1,u,hi,a.png\n" if name.endswith("csv")
            else json.dumps(_row()) + "\n")  # fmt: skip
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    assert len(load_dataset(path)) == 1


def test_nul_byte_in_image_path_is_one_line(tmp_path):
    path = write_manifest(tmp_path, [_row(image="a\u0000.png")])
    with pytest.raises(DataError, match=r"manifest\.jsonl:1: unusable image path"):
        load_dataset(path)


def test_text_that_is_a_fifo_or_a_folder_is_refused_not_waited_on(tmp_path):
    write_image(tmp_path / "ann" / "b" / "p1.png", 1)
    os.mkfifo(tmp_path / "ann" / "b" / "p1.txt")
    with pytest.raises(DataError, match=r"p1\.txt: text is not a regular file"):
        load_dataset(tmp_path)
    os.unlink(tmp_path / "ann" / "b" / "p1.txt")
    (tmp_path / "ann" / "b" / "p1.txt").mkdir()
    with pytest.raises(DataError, match=r"p1\.txt: text is not a regular file"):
        load_dataset(tmp_path)


def test_symlink_loop_is_one_line(tmp_path):
    os.symlink(tmp_path / "loop.png", tmp_path / "loop.png")
    path = write_manifest(tmp_path, [_row(image="loop.png")])
    with pytest.raises(DataError, match=r"manifest\.jsonl:1: unusable image path"):
        load_dataset(path)


def test_fewer_than_two_users_cannot_be_identified(tmp_path):
    rows = []
    for i in range(6):
        write_image(tmp_path / f"{i}.png", i)
        rows.append(_row(pin_id=str(i), user="solo", image=f"{i}.png"))
    with pytest.raises(DataError, match=r"1 user\(s\) with 3 or more pins; .* at least 2"):
        load_dataset(write_manifest(tmp_path, rows)).drop_small_users()
